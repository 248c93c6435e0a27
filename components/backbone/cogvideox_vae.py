"""A CogVideoX VAE whose GroupNorms are per-position RMS norms over channels (the tiny CPU base).

Why: the published ``AutoencoderKLCogVideoX`` normalises with ``GroupNorm`` (in the encoder's
resnets and ``norm_out``, and inside the decoder's ``CogVideoXSpatialNorm3D``). GroupNorm subtracts
a mean taken over each sample's whole space-time extent; at the tiny widths of the CPU default
(8–16 channels, 4 groups) that removes the clip's colour statistics, and a trained tiny VAE
reconstructs every clip grey (measured: mean saturation max(RGB)−min(RGB) 8.6 in the
reconstructions vs 30.9 in the held-out clips, 22.6 dB after 1200 steps; linear probes lose the
chroma between the encoder's first and last stage). A norm that divides each position's channel
vector by its RMS (learned scale and bias, no mean over space-time) keeps colour: 24.2 dB and
saturation 23.8 at the same budget. Wan 2.1's VAE normalises this way already.

What it is *not*: the published CogVideoX VAE. Layers, convolutions, compression and the
``save_pretrained``/``from_pretrained`` format are the same, only the norm layers differ, so a
published checkpoint is still loaded with ``AutoencoderKLCogVideoX`` (the GPU profiles do).
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKLCogVideoX
from diffusers.configuration_utils import register_to_config
from torch import Tensor, nn


class PixelRMSNorm(nn.Module):
    """``x / rms_c(x) · γ + β`` at every position of a ``[B, C, ...]`` tensor (RMS over channels)."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        shape = (1, -1) + (1,) * (x.ndim - 2)
        rms = x.float().pow(2).mean(dim=1, keepdim=True).add(self.eps).rsqrt().to(x.dtype)
        return x * rms * self.weight.view(shape) + self.bias.view(shape)


def replace_group_norms(module: nn.Module) -> int:
    """Swap every ``nn.GroupNorm`` below ``module`` for a ``PixelRMSNorm`` of the same width."""
    count = 0
    for name, child in list(module.named_children()):
        if isinstance(child, nn.GroupNorm):
            setattr(module, name, PixelRMSNorm(child.num_channels, eps=child.eps))
            count += 1
        else:
            count += replace_group_norms(child)
    return count


class AutoencoderKLCogVideoXPixelNorm(AutoencoderKLCogVideoX):
    """``AutoencoderKLCogVideoX`` with per-position RMS norms instead of GroupNorm (see module doc).

    The constructor takes the parent's arguments (diffusers rebuilds it from ``config.json``, whose
    ``_class_name`` is this class's name); ``norm_num_groups`` is stored as 1 (no GroupNorm is left,
    so any widths work).
    """

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        down_block_types: tuple[str, ...] = ("CogVideoXDownBlock3D",) * 4,
        up_block_types: tuple[str, ...] = ("CogVideoXUpBlock3D",) * 4,
        block_out_channels: tuple[int, ...] = (128, 256, 256, 512),
        latent_channels: int = 16,
        layers_per_block: int = 3,
        act_fn: str = "silu",
        norm_eps: float = 1e-6,
        norm_num_groups: int = 32,
        temporal_compression_ratio: float = 4,
        sample_height: int = 480,
        sample_width: int = 720,
        scaling_factor: float = 1.15258426,
        shift_factor: float | None = None,
        latents_mean: tuple[float, ...] | None = None,
        latents_std: tuple[float, ...] | None = None,
        force_upcast: float = True,
        use_quant_conv: bool = False,
        use_post_quant_conv: bool = False,
        invert_scale_latents: bool = False,
    ) -> None:
        super().__init__(
            in_channels=in_channels,
            out_channels=out_channels,
            down_block_types=down_block_types,
            up_block_types=up_block_types,
            block_out_channels=block_out_channels,
            latent_channels=latent_channels,
            layers_per_block=layers_per_block,
            act_fn=act_fn,
            norm_eps=norm_eps,
            norm_num_groups=1,  # the GroupNorms are replaced below; 1 group fits any width
            temporal_compression_ratio=temporal_compression_ratio,
            sample_height=sample_height,
            sample_width=sample_width,
            scaling_factor=scaling_factor,
            shift_factor=shift_factor,
            latents_mean=latents_mean,
            latents_std=latents_std,
            force_upcast=force_upcast,
            use_quant_conv=use_quant_conv,
            use_post_quant_conv=use_post_quant_conv,
            invert_scale_latents=invert_scale_latents,
        )
        if replace_group_norms(self) == 0:
            raise RuntimeError("AutoencoderKLCogVideoX has no GroupNorm left to replace (diffusers changed?)")


# Project classes a saved ``config.json`` may name, beside diffusers' own.
PROJECT_VAE_CLASSES: dict[str, type[nn.Module]] = {
    AutoencoderKLCogVideoXPixelNorm.__name__: AutoencoderKLCogVideoXPixelNorm,
}
