"""A point tracker that is differentiable with respect to the video frames (for the tracking loss).

CoTracker3 tracks the ground truth offline; the generated video needs tracks whose gradient reaches
the pixels. For each query point we take a ``(2·patch+1)²`` patch around it in the query frame and
score it against every integer offset of a ``(2·radius+1)²`` search window around a centre in frame
``t`` with normalised cross-correlation (zero-mean, unit-norm patches: robust to brightness and
contrast changes). A softmax over the scores (``temperature``) turns them into a distribution whose
mean is the sub-pixel offset: ``track_t = centre_t + Σ softmax(ncc/τ)·offset``. Patches are read with
bilinear ``grid_sample`` at sub-pixel positions, so the tracks are smooth functions of the frames.

Conventions: frames ``[B,T,C,H,W]`` float (a unit range such as [-1, 1] keeps the local variances
precise in float32; 0–255 values lose digits), points ``(x, y)`` in pixels with pixel centres
at integers (as in ``components.annotation.tracks``); samples outside the frame repeat the border.
A query patch without texture (zero variance) scores 0 everywhere and its track stays at the centre.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

_EPS = 1e-6  # added to sums of squares before the square root (flat patches, gradient at 0)


def _offsets(half: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """Integer ``(dx, dy)`` offsets of a ``(2·half+1)²`` square, row-major (y outer) → ``[(2h+1)², 2]``."""
    r = torch.arange(-half, half + 1, device=device, dtype=dtype)
    dy, dx = torch.meshgrid(r, r, indexing="ij")
    return torch.stack([dx.reshape(-1), dy.reshape(-1)], dim=-1)


def _sample(images: Tensor, xy: Tensor) -> Tensor:
    """Samples of ``images`` ``[M,C,H,W]`` at pixel positions ``xy`` ``[M,N,S,2]`` → ``[M,C,N,S]``."""
    h, w = images.shape[-2:]
    scale = torch.tensor([2.0 / (w - 1), 2.0 / (h - 1)], device=xy.device, dtype=xy.dtype)
    grid = xy * scale - 1.0
    return F.grid_sample(
        images, grid.to(images.dtype), mode="bilinear", padding_mode="border", align_corners=True
    )


def _query_patches(frames: Tensor, query_xy: Tensor, query_t: Tensor, patch: int) -> Tensor:
    """Zero-mean unit-norm patches around ``query_xy`` in each sample's query frame → ``[B,N,C,P,P]``."""
    b, _, c = frames.shape[:3]
    size = 2 * patch + 1
    images = frames[torch.arange(b, device=frames.device), query_t]  # [B,C,H,W]
    pos = query_xy[:, :, None, :] + _offsets(patch, query_xy.device, query_xy.dtype)
    q = _sample(images, pos).permute(0, 2, 1, 3)  # [B,N,C,P²]
    q = q - q.mean(dim=(2, 3), keepdim=True)
    q = q / torch.sqrt(q.pow(2).sum(dim=(2, 3), keepdim=True) + _EPS)
    return q.reshape(b, -1, c, size, size)


def _match(images: Tensor, centres: Tensor, q: Tensor, radius: int, patch: int, temperature: float) -> Tensor:
    """Soft-argmax NCC match of patches ``q`` ``[M,N,C,P,P]`` in ``images`` ``[M,C,H,W]`` around
    ``centres`` ``[M,N,2]`` (constants) → positions ``[M,N,2]``."""
    m, n, c = q.shape[:3]
    size = 2 * (radius + patch) + 1
    win = _sample(images, centres[:, :, None, :] + _offsets(radius + patch, centres.device, centres.dtype))
    win = win.permute(0, 2, 1, 3).reshape(m * n, c, size, size)  # one search window per (image, point)
    # NCC numerator: the query is zero-mean, so Σ q·f = Σ q·(f − mean f); one conv group per point
    num = F.conv2d(win.reshape(1, m * n * c, size, size), q.reshape(m * n, c, *q.shape[-2:]), groups=m * n)
    k = 2 * patch + 1
    mean = F.avg_pool2d(win, k, stride=1).mean(dim=1)
    mean_sq = F.avg_pool2d(win.pow(2), k, stride=1).mean(dim=1)
    var_sum = (mean_sq - mean.pow(2)).clamp_min(0) * (c * k * k)
    ncc = num[0] / torch.sqrt(var_sum + _EPS)  # [M·N, 2r+1, 2r+1]
    prob = torch.softmax(ncc.reshape(m * n, -1) / temperature, dim=-1)
    offset = prob @ _offsets(radius, centres.device, prob.dtype)
    return centres + offset.reshape(m, n, 2).to(centres.dtype)


def _check(
    frames: Tensor,
    query_xy: Tensor,
    query_t: int | Tensor,
    centres: Tensor | None,
    radius: int,
    patch: int,
    temperature: float,
) -> Tensor:
    """Validate the inputs of ``soft_track``; return ``query_t`` as a ``[B]`` long tensor."""
    if frames.ndim != 5 or not frames.dtype.is_floating_point:
        raise ValueError(
            f"frames must be a float tensor [B,T,C,H,W], got {frames.dtype} {tuple(frames.shape)}"
        )
    b, t, _, h, w = frames.shape
    if h < 2 or w < 2:
        raise ValueError(f"frames must be at least 2×2 pixels, got H={h} W={w}")
    if query_xy.ndim != 3 or query_xy.shape[0] != b or query_xy.shape[-1] != 2:
        raise ValueError(f"query_xy must be [B,N,2] = [{b},N,2] pixels (x, y), got {tuple(query_xy.shape)}")
    if centres is not None and centres.shape != (b, t, query_xy.shape[1], 2):
        raise ValueError(
            f"centres must be [B,T,N,2] = {(b, t, query_xy.shape[1], 2)} (search centre per frame), "
            f"got {tuple(centres.shape)}"
        )
    if radius < 0 or patch < 1:
        raise ValueError(f"need radius >= 0 and patch >= 1 (half-widths in pixels), got {radius}, {patch}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    qt = torch.as_tensor(query_t, device=frames.device).long()
    qt = qt.expand(b).clone() if qt.ndim == 0 else qt
    if qt.shape != (b,):
        raise ValueError(f"query_t must be an int or [B] = [{b}] frame indices, got shape {tuple(qt.shape)}")
    if bool(((qt < 0) | (qt >= t)).any()):
        raise ValueError(f"query_t must lie in 0..{t - 1}, got {qt.tolist()}")
    return qt


def soft_track(
    frames: Tensor,
    query_xy: Tensor,
    query_t: int | Tensor = 0,
    centres: Tensor | None = None,
    radius: int = 4,
    patch: int = 3,
    temperature: float = 0.05,
) -> Tensor:
    """Track ``query_xy`` ``[B,N,2]`` (pixels in frame ``query_t``) through ``frames`` → ``[B,T,N,2]``.

    ``centres`` ``[B,T,N,2]`` are the search-window centres per frame (e.g. the ground-truth tracks, so
    the estimate measures how far the generated content sits from them); they are treated as
    constants. Without ``centres`` the tracker chains outward from the query frame, centring each
    frame's window on the (detached) estimate of its neighbour, so motion up to ``radius`` px per frame
    is followed. ``radius``/``patch`` are half-widths of the search window and the patch; NCC scores lie
    in [-1, 1], so ``temperature`` 0.05 makes a 0.1 score gap an e² odds ratio.
    """
    qt = _check(frames, query_xy, query_t, centres, radius, patch, temperature)
    b, t, c, h, w = frames.shape
    n = query_xy.shape[1]
    q = _query_patches(frames, query_xy.detach(), qt, patch)  # [B,N,C,P,P]
    if centres is not None:
        q_all = q[:, None].expand(b, t, *q.shape[1:]).reshape(b * t, *q.shape[1:])
        pos = _match(
            frames.reshape(b * t, c, h, w),
            centres.detach().reshape(b * t, n, 2),
            q_all,
            radius,
            patch,
            temperature,
        )
        return pos.reshape(b, t, n, 2)
    rows = torch.arange(b, device=frames.device)
    start = _match(frames[rows, qt], query_xy.detach(), q, radius, patch, temperature)
    tracks = start.new_zeros(b, t, n, 2)
    tracks[rows, qt] = start
    for step in (1, -1):  # forward, then backward from each sample's query frame
        prev, ti = start, qt
        for _ in range(t - 1):
            ti = ti + step
            ok = (ti >= 0) & (ti < t)
            if not bool(ok.any()):
                break
            cur = _match(frames[rows, ti.clamp(0, t - 1)], prev.detach(), q, radius, patch, temperature)
            tracks[rows[ok], ti[ok]] = cur[ok]
            prev = cur
    return tracks
