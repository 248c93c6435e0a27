"""Base backbones: one adapter per family (CogVideoX, Wan) behind ``BackboneSpec``, the tiny CPU-profile
configs, the pixel-norm CogVideoX VAE and the batch-1 conv3d layout the adapters use.

This room sits below ``components.base`` (which trains a tiny base through these adapters) and
``components.dit`` (which wraps a frozen base in the MoSA modules). Importing ``components.backbone.spec``
does not import diffusers; an adapter module is loaded on its first ``get_spec``.
"""
