"""HADC mask loss (Eq. 6): ``L_mask = ‖m̂ − E(mask)‖²`` as a mean squared error over latent elements.

``m̂`` is the mask head's output and ``E(mask)`` the VAE latent of the ground-truth person mask; both
batch-first with the same shape (e.g. ``[B,F,C,h,w]``). The target is a constant (frozen VAE).
"""

from __future__ import annotations

import torch
from torch import Tensor


def mask_loss(mask_pred_latent: Tensor, mask_latent: Tensor, weight: Tensor | None = None) -> Tensor:
    """Mean squared error between predicted and encoded mask latents → scalar.

    ``weight`` (optional, ``[B]``, ≥ 0) weights each sample's MSE: the result is
    ``Σ_b w_b·mse_b / Σ_b w_b``, so ``w_b = 0`` drops a clip without a usable mask; if every weight is
    zero the loss is 0 (still attached to the graph, so backward works).
    """
    if mask_pred_latent.shape != mask_latent.shape:
        raise ValueError(
            f"mask_pred_latent {tuple(mask_pred_latent.shape)} and mask_latent {tuple(mask_latent.shape)} "
            "must have the same shape: encode the person mask with the same VAE (and frame count) "
            "as the video latents"
        )
    if mask_pred_latent.ndim < 1 or mask_pred_latent.shape[0] == 0:
        raise ValueError(f"mask latents need a batch dimension, got {tuple(mask_pred_latent.shape)}")
    b = mask_pred_latent.shape[0]
    diff = mask_pred_latent - mask_latent.detach().to(mask_pred_latent.dtype)
    if diff.dtype in (torch.float16, torch.bfloat16):
        diff = diff.float()
    per_sample = diff.pow(2).reshape(b, -1).mean(dim=1)
    if weight is None:
        return per_sample.mean()
    if weight.shape != (b,):
        raise ValueError(f"mask loss weight must be [B] = [{b}] (one per sample), got {tuple(weight.shape)}")
    w = weight.detach().to(per_sample)
    if bool((w < 0).any()) or not bool(w.isfinite().all()):
        raise ValueError(f"mask loss weights must be finite and >= 0, got {weight.tolist()}")
    total = w.sum()
    if total == 0:
        return (per_sample * w).sum()
    return (per_sample * w).sum() / total
