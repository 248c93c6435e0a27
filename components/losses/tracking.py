"""Dense tracking loss (Eq. 7–8): match the displacements of tracks on the generated video to the
ground-truth tracks over every pair of frames.

For tracks ``T̂`` (generated) and ``T`` (ground truth), ``[B,T,N,2]`` as ``(x, y)``, and every pair
``0 ≤ t₁ < t₂ < T``: ``d = (T̂_{t₂} − T̂_{t₁}) − (T_{t₂} − T_{t₁})``, error ``‖d‖₂`` per point, counted only
where the point is visible in both frames. The loss is ``Σ w(Δ)·‖d‖ / Σ w(Δ)`` over valid
(pair, point) entries with ``Δ = t₂ − t₁``. Comparing displacements, not positions, makes the loss
blind to a constant offset between the two videos' tracks.

Weighting modes (the paper's Eq. 8 is lost; the text asks for weights increasing with the interval):
- ``"temporal"``: ``w(Δ) = Δ/(T−1)`` — linear in the interval, 1 for the longest pair, so long-range
  motion counts more (our choice of increasing function);
- ``"static"``: ``w ≡ 1`` (the paper's "static weights" ablation);
- ``"off"``: the loss is a constant 0 with no graph (the "w/o tracking loss" ablation).

``frame_size=(H, W)`` divides both coordinates by ``max(H, W)`` so errors are fractions of the longer
side: the weight λ₂ then means the same at every resolution, and the norm stays isotropic (a pixel
costs the same in x and y). Without it, errors are in pixels.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

TrackMode = Literal["temporal", "static", "off"]
TRACK_MODES: tuple[str, ...] = ("temporal", "static", "off")


def pair_weights(num_frames: int, mode: TrackMode, device: torch.device | None = None) -> tuple[Tensor, ...]:
    """All pairs ``t₁ < t₂`` of ``num_frames`` frames → ``(t1 [P], t2 [P], w [P])`` for ``mode``."""
    if mode not in TRACK_MODES:
        raise ValueError(f"tracking loss mode must be one of {TRACK_MODES}, got {mode!r}")
    t1, t2 = torch.triu_indices(num_frames, num_frames, offset=1, device=device)
    delta = (t2 - t1).float()
    w = delta / max(num_frames - 1, 1) if mode == "temporal" else torch.ones_like(delta)
    return t1, t2, w


def tracking_loss(
    pred: Tensor,
    gt: Tensor,
    vis: Tensor,
    mode: TrackMode = "temporal",
    frame_size: tuple[int, int] | None = None,
) -> Tensor:
    """Pairwise displacement error between ``pred`` and ``gt`` tracks ``[B,T,N,2]`` → scalar.

    ``vis`` ``[B,T,N]`` (bool, or 0/1) marks where the ground-truth point is visible. Gradients flow
    to ``pred``; ``gt`` is a constant. Returns 0 (attached to ``pred``'s graph) when no pair is valid.
    """
    if mode not in TRACK_MODES:
        raise ValueError(f"tracking loss mode must be one of {TRACK_MODES}, got {mode!r}")
    if pred.ndim != 4 or pred.shape[-1] != 2:
        raise ValueError(f"pred tracks must be [B,T,N,2] (x, y), got {tuple(pred.shape)}")
    if gt.shape != pred.shape:
        raise ValueError(f"gt tracks {tuple(gt.shape)} must match pred tracks {tuple(pred.shape)}")
    if vis.shape != pred.shape[:3]:
        raise ValueError(f"vis must be [B,T,N] = {tuple(pred.shape[:3])}, got {tuple(vis.shape)}")
    if mode == "off":
        return pred.new_zeros(())
    err = pred - gt.detach().to(pred.dtype)  # displacement error of a pair = err[t2] − err[t1]
    if frame_size is not None:
        h, w = frame_size
        if h <= 0 or w <= 0:
            raise ValueError(f"frame_size must be positive (H, W), got {frame_size}")
        err = err / float(max(h, w))
    t1, t2, w_pair = pair_weights(pred.shape[1], mode, device=pred.device)
    dist = torch.linalg.vector_norm(err[:, t2] - err[:, t1], dim=-1)  # [B,P,N]
    v = vis.bool()
    weight = (v[:, t1] & v[:, t2]).to(dist.dtype) * w_pair.to(dist.dtype)[None, :, None]
    denom = weight.sum()
    num = (weight * dist).sum()
    if denom == 0:
        return num
    return num / denom
