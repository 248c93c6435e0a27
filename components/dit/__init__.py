"""Appearance branch: structure blocks, HADC, the MoSA transformer around a frozen base, its training
and its generation pipeline. The base backbones' adapters live one room down, in ``components.backbone``.

Import what you need from its module (``components.dit.mosa``, ...): this package re-exports nothing,
so a stage that needs one module does not depend on the others in dvc.yaml.
"""
