"""Appearance branch: backbone adapters (CogVideoX, Wan), structure blocks, HADC and the MoSA transformer.

Importing this package does not import diffusers; an adapter is loaded on its first ``get_spec``.
"""

from components.dit.mosa import MoSAConfig, MoSATransformer, count_parameters
from components.dit.spec import (
    SPECS,
    BackboneSpec,
    BaseModels,
    BlockContext,
    ControlHooks,
    TinyConfig,
    get_spec,
)

__all__ = [
    "SPECS",
    "BackboneSpec",
    "BaseModels",
    "BlockContext",
    "ControlHooks",
    "MoSAConfig",
    "MoSATransformer",
    "TinyConfig",
    "count_parameters",
    "get_spec",
]
