"""Base models of the CPU profile, trained by the ``pretrain_base`` stage.

No pretrained video model can be downloaded offline, so the CPU profile trains a tiny one here (VAE,
text-to-video DiT, depth network) and the ``train_dit`` stage then mirrors the paper: base frozen,
only the MoSA modules train. GPU profiles load the published models instead (``bundle``).

Modules: ``config`` (params), ``text`` (token-level text states), ``depth`` (depth network and
unprojection), ``bundle`` (the ``models/base/`` folder), ``phase`` (clip → tensor conversion and one
training phase through the engine), ``train_vae`` / ``train_base_dit`` / ``train_depth`` (the three
trainers), ``sample`` (text-to-video sampling with CFG). This package re-exports nothing.
"""
