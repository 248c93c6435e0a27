"""Human-Aware Dynamic Control (HADC, MoSA Eq. 4–6): inject structure features with predicted weights.

After base block ``i`` the video tokens ``z_i``, the structure features ``s_i`` and the text tokens
``c`` (as that block left them) give a per-token, per-channel weight map
``W = P(s_i, z_i, c)`` (Eq. 4) and the update ``z_i' = z_i + W ⊙ s_i`` (Eq. 5). ``P`` is three linear
layers with two activations over ``[s_i, z_i, mean-pooled c broadcast to every token]``; its last
layer starts at zero, so ``W = 0`` and the model starts as the base. A mask head ``M`` (P's design,
then unpatchify to the token grid, upsample by the patch size, one 3-D conv) turns ``W`` into a mask
latent ``m̂`` trained with ``L_mask = ‖m̂ − E(mask)‖²`` (Eq. 6), which makes ``W`` spread over the
visible person.

Ablation switch ``hadc`` (``MoSAConfig.hadc``), one per row of the paper's ablation:
- ``"on"``: as above.
- ``"no_w"`` (paper "w/o W"): ``z_i' = z_i + w ⊙ s_i`` with ``w`` a learned *static* per-channel
  vector (size ``dim``, zero-initialised, so the model still starts as the base): no input-dependent
  weights, and no mask head (``M`` is defined on ``W``), so no mask loss.
- ``"off"`` (paper "w/o HADC"): no HADC module is built; the structure features are added directly,
  ``z_i' = z_i + s_i`` (``direct_injection``, control-net style with unit weight), after the same
  blocks. The structure blocks still train. Unlike ``"on"``/``"no_w"`` this does *not* start as the
  base: ``s_i`` enters at full strength from step 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from components.dit.config import HADCMode


def activation_layer(name: str) -> nn.Module:
    """``"gelu"`` or ``"silu"`` as a module."""
    if name == "gelu":
        return nn.GELU()
    if name == "silu":
        return nn.SiLU()
    raise ValueError(f"activation must be 'gelu' or 'silu', got {name!r}")


def three_layer_mlp(in_dim: int, hidden: int, out_dim: int, activation: str = "gelu") -> nn.Sequential:
    """Linear → act → Linear → act → Linear, the paper's predictor design."""
    return nn.Sequential(
        nn.Linear(in_dim, hidden),
        activation_layer(activation),
        nn.Linear(hidden, hidden),
        activation_layer(activation),
        nn.Linear(hidden, out_dim),
    )


class WeightPredictor(nn.Module):
    """``P``: ``[s, z, pooled c]`` per token → ``W`` with the hidden size; zero at initialisation."""

    def __init__(self, dim: int, hidden: int, activation: str = "gelu") -> None:
        super().__init__()
        self.mlp = three_layer_mlp(3 * dim, hidden, dim, activation)
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, s: Tensor, z: Tensor, c: Tensor) -> Tensor:
        """``s``, ``z``: [B,T,D]; ``c``: text tokens [B,L,D] → ``W`` [B,T,D]."""
        if s.shape != z.shape:
            raise ValueError(
                f"structure features {tuple(s.shape)} must match the video tokens {tuple(z.shape)}"
            )
        if c.ndim != 3 or c.shape[0] != z.shape[0] or c.shape[2] != z.shape[2]:
            raise ValueError(f"text tokens must be [B, L, {z.shape[2]}], got {tuple(c.shape)}")
        pooled = c.mean(dim=1, keepdim=True).expand(-1, z.shape[1], -1)
        return self.mlp(torch.cat([s, z, pooled], dim=-1))


class MaskHead(nn.Module):
    """``M``: ``W`` [B,T,D] → mask latent [B,F,C,h,w] with the VAE latent's channels and size.

    Per-token MLP (P's design) to ``mid_channels``, reshape to the token grid ``(f, h/p, w/p)``,
    upsample by the patch ``(p_t, p, p)`` (nearest or a transposed conv), then a 3×3×3 conv.
    """

    def __init__(
        self,
        dim: int,
        hidden: int,
        latent_channels: int,
        patch: tuple[int, int, int],
        mid_channels: int = 16,
        upsample: Literal["nearest", "transposed"] = "nearest",
        activation: str = "gelu",
    ) -> None:
        super().__init__()
        self.mlp = three_layer_mlp(dim, hidden, mid_channels, activation)
        self.patch = tuple(int(v) for v in patch)
        if upsample == "nearest":
            self.upsample: nn.Module = nn.Upsample(scale_factor=self.patch, mode="nearest")
        elif upsample == "transposed":
            self.upsample = nn.ConvTranspose3d(
                mid_channels, mid_channels, kernel_size=self.patch, stride=self.patch
            )
        else:
            raise ValueError(f"mask upsample must be 'nearest' or 'transposed', got {upsample!r}")
        self.conv = nn.Conv3d(mid_channels, latent_channels, kernel_size=3, padding=1)

    def forward(self, weights: Tensor, grid: tuple[int, int, int]) -> Tensor:
        b, t, _ = weights.shape
        f, h, w = grid
        if t != f * h * w:
            raise ValueError(f"{t} tokens do not fill the token grid {grid} ({f * h * w} tokens)")
        x = self.mlp(weights).transpose(1, 2).reshape(b, -1, f, h, w)
        return self.conv(self.upsample(x)).permute(0, 2, 1, 3, 4)


@dataclass
class HADCOutput:
    """Updated video tokens, the weight map (``"on"`` only) and the mask latent (if computed)."""

    hidden: Tensor
    weights: Tensor | None = None
    mask_latent: Tensor | None = None


def _check_same_shape(s: Tensor, z: Tensor) -> None:
    if s.shape != z.shape:
        raise ValueError(f"structure features {tuple(s.shape)} must match the video tokens {tuple(z.shape)}")


def direct_injection(z: Tensor, s: Tensor) -> Tensor:
    """``hadc="off"`` (no HADC module): ``z + s``, the structure features added with unit weight."""
    _check_same_shape(s, z)
    return z + s.to(z.dtype)


class HADC(nn.Module):
    """One HADC module placed after one base block.

    ``mode="on"``: predictor ``P`` and mask head ``M``, ``z + W ⊙ s``. ``mode="no_w"``: one static
    per-channel weight ``alpha`` [dim] (zero-initialised), ``z + alpha ⊙ s``, no mask head. With
    ``"off"`` no module is built (``direct_injection`` instead).
    """

    def __init__(
        self,
        mode: HADCMode,
        dim: int,
        latent_channels: int,
        patch: tuple[int, int, int],
        hidden: int | None = None,
        mask_channels: int = 16,
        upsample: Literal["nearest", "transposed"] = "nearest",
        activation: str = "gelu",
    ) -> None:
        super().__init__()
        if mode not in ("on", "no_w"):
            raise ValueError(
                f"HADC mode must be 'on' or 'no_w' (with 'off' no module is built), got {mode!r}"
            )
        self.mode = mode
        hidden = hidden or dim
        if mode == "on":
            self.predictor = WeightPredictor(dim, hidden, activation)
            self.mask_head = MaskHead(
                dim, hidden, latent_channels, patch, mask_channels, upsample, activation
            )
        else:
            self.alpha = nn.Parameter(torch.zeros(dim))

    def forward(
        self, z: Tensor, s: Tensor, c: Tensor, grid: tuple[int, int, int], compute_mask: bool = True
    ) -> HADCOutput:
        """``z`` video tokens, ``s`` structure features (both [B,T,D]), ``c`` text tokens [B,L,D]."""
        if self.mode == "no_w":
            _check_same_shape(s, z)
            return HADCOutput(hidden=z + (self.alpha * s).to(z.dtype))
        weights = self.predictor(s, z, c)
        mask = self.mask_head(weights, grid) if compute_mask else None
        return HADCOutput(hidden=z + (weights * s).to(z.dtype), weights=weights, mask_latent=mask)
