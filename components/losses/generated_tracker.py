"""Point trackers for the generated video (the tracking loss): tracks differentiable w.r.t. the frames.

A ``GeneratedTracker`` is called as ``tracker(frames, query_xy, query_t, centres) -> tracks`` with
``frames`` ``[B,T,3,H,W]`` in [-1, 1] (decoded x̂₀), ``query_xy`` ``[B,N,2]`` pixels ``(x, y)`` in frame
``query_t`` ``[B]`` (long), ``centres`` ``[B,T,N,2]`` pixels (the ground-truth tracks) and returns
``[B,T,N,2]`` pixels whose gradient reaches ``frames``. Queries and centres are constants.

- ``SoftTracker``: our soft-argmax NCC tracker (``soft_tracker.soft_track``), search windows centred
  on ``centres``.
- ``CoTrackerLossTracker``: a CoTracker3 TorchScript file (the annotate stage's export, same call
  convention as ``components.annotation.tracks.CoTrackerAdapter``), frozen but run with autograd on,
  so the loss back-propagates through the network into the pixels. It tracks from the queries alone:
  ``centres`` are ignored, and its visibility output is unused (the loss masks with the ground truth).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import torch
from torch import Tensor

from components.losses.soft_tracker import soft_track

TrackerName = Literal["soft", "cotracker3"]


class GeneratedTracker(Protocol):
    """Tracks ``query_xy`` through generated ``frames``, differentiably (see the module docstring)."""

    def __call__(self, frames: Tensor, query_xy: Tensor, query_t: Tensor, centres: Tensor) -> Tensor: ...


@dataclass(frozen=True)
class SoftTracker:
    """``soft_track`` with fixed half-widths (``radius``, ``patch``, pixels) and ``temperature``."""

    radius: int = 4
    patch: int = 3
    temperature: float = 0.05

    def __call__(self, frames: Tensor, query_xy: Tensor, query_t: Tensor, centres: Tensor) -> Tensor:
        return soft_track(
            frames,
            query_xy,
            query_t,
            centres=centres,
            radius=self.radius,
            patch=self.patch,
            temperature=self.temperature,
        )


class CoTrackerLossTracker:
    """A frozen CoTracker3 TorchScript model whose tracks stay differentiable w.r.t. the frames.

    The model is called per sample (batch 1, the export's contract) as ``model(video, queries)`` with
    ``video`` float32 ``[1,T,3,H,W]`` = ``(frames + 1)·127.5`` (0–255 RGB, not clamped so the gradient
    survives slight overshoot) and ``queries`` float32 ``[1,N,3]`` rows ``(t, x, y)``; it must return
    ``(tracks, visibility, ...)`` with tracks ``[1,T,N,2]`` pixels. The samples' tracks are stacked.
    The parameters never require gradients; the model follows the frames' device.
    """

    def __init__(self, path: str | Path):
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"CoTracker3 TorchScript file not found: {path}")
        self.path = path
        try:
            self.model = torch.jit.load(str(path), map_location="cpu")
        except (RuntimeError, ValueError) as e:
            raise ValueError(f"{path} is not a loadable TorchScript file: {e}") from e
        self.model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self._device = torch.device("cpu")

    def __call__(self, frames: Tensor, query_xy: Tensor, query_t: Tensor, centres: Tensor) -> Tensor:
        if frames.ndim != 5 or frames.shape[2] != 3 or not frames.dtype.is_floating_point:
            raise ValueError(
                f"frames must be a float tensor [B,T,3,H,W], got {frames.dtype} {tuple(frames.shape)}"
            )
        b, t = frames.shape[:2]
        if query_xy.ndim != 3 or query_xy.shape[0] != b or query_xy.shape[-1] != 2:
            raise ValueError(
                f"query_xy must be [B,N,2] = [{b},N,2] pixels (x, y), got {tuple(query_xy.shape)}"
            )
        n = query_xy.shape[1]
        qt = torch.as_tensor(query_t, device=frames.device).reshape(-1)
        if qt.numel() not in (1, b) or bool(((qt < 0) | (qt >= t)).any()):
            raise ValueError(
                f"query_t must be an int or [B] = [{b}] frame indices in 0..{t - 1}, got {qt.tolist()}"
            )
        qt = qt.expand(b)
        if frames.device != self._device:
            self.model.to(frames.device)
            self._device = frames.device
        queries = torch.cat([qt.float()[:, None, None].expand(b, n, 1), query_xy.detach().float()], dim=-1)
        video = (frames.float() + 1.0) * 127.5
        out = []
        for i in range(b):
            res = self.model(video[i : i + 1], queries[i : i + 1])
            if not isinstance(res, (tuple, list)) or len(res) < 2:
                raise ValueError(
                    f"{self.path}: the model must return (tracks, visibility), got {type(res).__name__}"
                )
            if tuple(res[0].shape) != (1, t, n, 2):
                raise ValueError(
                    f"{self.path}: tracks must be [1,T,N,2] = [1,{t},{n},2], got {list(res[0].shape)}"
                )
            out.append(res[0][0])
        return torch.stack(out).to(frames.dtype)


def build_generated_tracker(
    name: TrackerName,
    path: str | Path | None = None,
    radius: int = 4,
    patch: int = 3,
    temperature: float = 0.05,
) -> GeneratedTracker:
    """``"soft"`` → ``SoftTracker(radius, patch, temperature)``; ``"cotracker3"`` →
    ``CoTrackerLossTracker(path)`` (needs the path)."""
    if name == "soft":
        return SoftTracker(radius, patch, temperature)
    if name == "cotracker3":
        if path is None:
            raise ValueError("tracker 'cotracker3' needs path (a CoTracker3 TorchScript file)")
        return CoTrackerLossTracker(path)
    raise ValueError(f"unknown tracker {name!r}: expected 'soft' or 'cotracker3'")
