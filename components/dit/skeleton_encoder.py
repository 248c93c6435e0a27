"""Skeleton video → latent grid, for the structure branch's input ``S``.

Two routes, chosen by ``MoSAConfig.skeleton_encoder``:
- ``"vae"``: the base's frozen VAE (``vae_encode_skeleton``); latents can be cached like the video's.
- ``"conv"``: ``SkeletonConvEncoder``, a light trainable 3-D conv stack with the VAE's compression
  (×4 in time, ×8 in space), so the skeleton video never goes through the large VAE.
Both give ``[B, F', C, h, w]``, the layout and size of the video latents.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

from components.backbone.spec import BackboneSpec
from components.dit.hadc import activation_layer


class CausalConv3d(nn.Module):
    """3×3×3 conv that sees only the current and earlier frames (the first frame repeats as padding)."""

    def __init__(self, in_channels: int, out_channels: int, stride: tuple[int, int, int] = (1, 1, 1)) -> None:
        super().__init__()
        self.conv = nn.Conv3d(in_channels, out_channels, kernel_size=3, stride=stride, padding=(0, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(torch.cat([x[:, :, :1], x[:, :, :1], x], dim=2))


class SkeletonConvEncoder(nn.Module):
    """3-D conv encoder: ``[B,3,F,H,W]`` in [-1,1] → ``[B,(F-1)/t+1,C,H/s,W/s]``.

    A stem conv, then one stride-2 spatial stage per factor of two of ``spatial_factor`` (the first
    ``log2(temporal_factor)`` stages also halve time), then a conv to the latent channels. Every conv
    is causal in time, like the base VAEs: ``tN+1`` frames give ``N+1`` latent frames, latent frame
    ``k`` depends on frames ``≤ t·k`` only, and the first latent frame on the first frame alone.
    """

    def __init__(
        self,
        latent_channels: int,
        width: int = 32,
        spatial_factor: int = 8,
        temporal_factor: int = 4,
        activation: Literal["gelu", "silu"] = "silu",
    ) -> None:
        super().__init__()
        for what, v in (("spatial_factor", spatial_factor), ("temporal_factor", temporal_factor)):
            if v < 1 or v & (v - 1):
                raise ValueError(f"SkeletonConvEncoder {what} must be a power of two, got {v}")
        levels_s, levels_t = int(math.log2(spatial_factor)), int(math.log2(temporal_factor))
        if levels_t > levels_s:
            raise ValueError(
                f"SkeletonConvEncoder: temporal_factor {temporal_factor} needs at least as many spatial "
                f"stages (spatial_factor {spatial_factor})"
            )
        self.spatial_factor, self.temporal_factor = spatial_factor, temporal_factor
        layers: list[nn.Module] = [CausalConv3d(3, width), activation_layer(activation)]
        for i in range(levels_s):
            stride_t = 2 if i < levels_t else 1
            layers += [CausalConv3d(width, width, stride=(stride_t, 2, 2)), activation_layer(activation)]
        layers.append(CausalConv3d(width, latent_channels))
        self.net = nn.Sequential(*layers)

    def output_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int]:
        """``(F', h, w)`` for a clip, or a clear error if it does not fit the compression."""
        t, s = self.temporal_factor, self.spatial_factor
        if frames < 1 or (frames - 1) % t:
            raise ValueError(
                f"skeleton video frames must be {t}N+1 for ×{t} temporal compression, got {frames}"
            )
        if height % s or width % s:
            raise ValueError(
                f"skeleton video height and width must be multiples of {s}, got {height}×{width}"
            )
        return (frames - 1) // t + 1, height // s, width // s

    def forward(self, video: Tensor) -> Tensor:
        BackboneSpec.check_video(video, "SkeletonConvEncoder")
        self.output_shape(*video.shape[2:])
        weight = self.net[0].conv.weight
        out = self.net(video.to(device=weight.device, dtype=weight.dtype))
        return out.permute(0, 2, 1, 3, 4)


@torch.no_grad()
def vae_encode_skeleton(spec: BackboneSpec, vae: nn.Module, video: Tensor) -> Tensor:
    """Skeleton video through the frozen base VAE (posterior mean) → latents ``[B,F',C,h,w]``."""
    return spec.vae_encode(vae, video)
