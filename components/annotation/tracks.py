"""Dense point tracks of a clip: query grids, a pyramidal Lucas–Kanade tracker and a CoTracker3 adapter.

Conventions: points are pixels ``(x, y)`` (x right, y down, pixel centres at integers), frames are
uint8 RGB ``[T,H,W,3]``. A point is inside the image when ``0 <= x <= W-1`` and ``0 <= y <= H-1``.
Both trackers return a ``Tracks``: positions ``[T,N,2]`` and visibility ``[T,N]`` for every frame,
plus the query label (on the person or not) and the query frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
from scipy.ndimage import binary_dilation, binary_erosion


@dataclass(frozen=True)
class Tracks:
    """Point tracks: ``points`` float32 [T,N,2] pixels, ``visible`` bool [T,N], ``on_person`` bool [N]
    (the label of the query point) and ``query_frame`` (where the points were given)."""

    points: np.ndarray
    visible: np.ndarray
    on_person: np.ndarray
    query_frame: int = 0

    def __post_init__(self) -> None:
        p, v, o = self.points, self.visible, self.on_person
        if p.ndim != 3 or p.shape[-1] != 2:
            raise ValueError(f"Tracks.points must be [T,N,2], got {p.shape}")
        if v.shape != p.shape[:2]:
            raise ValueError(f"Tracks.visible must be [T,N] = {p.shape[:2]}, got {v.shape}")
        if o.shape != (p.shape[1],):
            raise ValueError(f"Tracks.on_person must be [N] = ({p.shape[1]},), got {o.shape}")
        if not 0 <= self.query_frame < max(p.shape[0], 1):
            raise ValueError(f"Tracks.query_frame {self.query_frame} is outside 0..{p.shape[0] - 1}")

    @property
    def num_frames(self) -> int:
        return int(self.points.shape[0])

    @property
    def num_points(self) -> int:
        return int(self.points.shape[1])


class Tracker(Protocol):
    """Anything that tracks query points through a clip."""

    def track(
        self,
        frames: np.ndarray,
        points: np.ndarray,
        on_person: np.ndarray | None = None,
        query_frame: int = 0,
    ) -> Tracks: ...


# --- query points ------------------------------------------------------------------------------
def _grid(height: int, width: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices of a regular grid with spacing ``stride``, offset stride // 2."""
    if stride < 1:
        raise ValueError(f"grid stride must be >= 1, got {stride}")
    ys, xs = np.mgrid[stride // 2 : height : stride, stride // 2 : width : stride]
    return ys.ravel(), xs.ravel()


def query_points(
    mask0: np.ndarray,
    person_stride: int = 4,
    background_stride: int = 12,
    erode: int = 1,
    margin: int = 2,
) -> tuple[np.ndarray, np.ndarray]:
    """Grid query points for frame ``mask0`` (bool [H,W] person mask) → points float32 [N,2], on_person [N].

    Person points: a grid with spacing ``person_stride`` px kept where the mask eroded by ``erode`` px is
    true (so they lie on the person, not on its anti-aliased edge; if erosion leaves nothing, the mask
    itself is used). Background points: a sparser grid (``background_stride``) kept where the mask
    dilated by ``margin`` px is false. Person points come first, each set in row-major order.
    """
    mask0 = np.asarray(mask0, dtype=bool)
    if mask0.ndim != 2:
        raise ValueError(f"mask0 must be [H,W], got {mask0.shape}")
    H, W = mask0.shape
    inner = binary_erosion(mask0, iterations=erode) if erode > 0 else mask0
    if not inner.any():
        inner = mask0
    outer = binary_dilation(mask0, iterations=margin) if margin > 0 else mask0
    ys, xs = _grid(H, W, person_stride)
    keep = inner[ys, xs]
    person = np.stack([xs[keep], ys[keep]], axis=-1)
    ys, xs = _grid(H, W, background_stride)
    keep = ~outer[ys, xs]
    background = np.stack([xs[keep], ys[keep]], axis=-1)
    points = np.concatenate([person, background]).astype(np.float32).reshape(-1, 2)
    on_person = np.concatenate([np.ones(len(person), bool), np.zeros(len(background), bool)])
    return points, on_person


# --- Lucas–Kanade ------------------------------------------------------------------------------
def _inside(p: np.ndarray, height: int, width: int) -> np.ndarray:
    x, y = p[..., 0], p[..., 1]
    return np.isfinite(x) & np.isfinite(y) & (x >= 0) & (x <= width - 1) & (y >= 0) & (y <= height - 1)


def _check_inputs(
    frames: np.ndarray, points: np.ndarray, on_person: np.ndarray | None, query_frame: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 [T,H,W,3], got {frames.dtype} {frames.shape}")
    points = np.asarray(points, dtype=np.float32)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"points must be [N,2] (x, y), got {points.shape}")
    if on_person is None:
        on_person = np.zeros(len(points), dtype=bool)
    on_person = np.asarray(on_person, dtype=bool)
    if on_person.shape != (len(points),):
        raise ValueError(f"on_person must be [N] = ({len(points)},), got {on_person.shape}")
    if not 0 <= query_frame < len(frames):
        raise ValueError(f"query_frame {query_frame} is outside 0..{len(frames) - 1}")
    return frames, points, on_person


def track_lk(
    frames: np.ndarray,
    points: np.ndarray,
    on_person: np.ndarray | None = None,
    query_frame: int = 0,
    win: int = 15,
    levels: int = 3,
    fb_threshold: float = 1.0,
    max_error: float | None = None,
) -> Tracks:
    """Track ``points`` [N,2] (given in ``query_frame``) through ``frames`` with pyramidal Lucas–Kanade.

    Frame to frame on grayscale (``cv2.calcOpticalFlowPyrLK``, window ``win`` px, ``levels`` pyramid
    levels above the base), forward from the query frame to the end and backward from it to the start.
    Each step runs a forward–backward check: track t → t±1, then back; a point is lost when either
    pass reports status 0, when it does not come back within ``fb_threshold`` px of where it started,
    or when it leaves the image; with ``max_error`` also when the forward pass's patch error (OpenCV's
    mean absolute grey-level difference over the window) exceeds it. A lost point stays invisible for
    the rest of the pass (it is never re-acquired) and its position is held at the last tracked
    position. Query points outside the image are invisible from the start.
    """
    frames, points, on_person = _check_inputs(frames, points, on_person, query_frame)
    T, H, W = frames.shape[:3]
    N = len(points)
    gray = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    pos = np.empty((T, N, 2), dtype=np.float32)
    vis = np.zeros((T, N), dtype=bool)
    pos[query_frame] = points
    vis[query_frame] = _inside(points, H, W)
    params = {
        "winSize": (win, win),
        "maxLevel": levels,
        "criteria": (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01),
    }
    steps = [(t, t + 1) for t in range(query_frame, T - 1)] + [(t, t - 1) for t in range(query_frame, 0, -1)]
    for src, dst in steps:
        pos[dst] = pos[src]
        alive = np.flatnonzero(vis[src])
        if len(alive) == 0:
            continue
        p0 = np.ascontiguousarray(pos[src, alive].reshape(-1, 1, 2))
        p1, st1, err = cv2.calcOpticalFlowPyrLK(gray[src], gray[dst], p0, None, **params)
        p0b, st2, _ = cv2.calcOpticalFlowPyrLK(gray[dst], gray[src], p1, None, **params)
        p1, p0b = p1.reshape(-1, 2), p0b.reshape(-1, 2)
        fb = np.linalg.norm(p0b - p0.reshape(-1, 2), axis=-1)
        ok = (st1.ravel() == 1) & (st2.ravel() == 1) & (fb <= fb_threshold) & _inside(p1, H, W)
        if max_error is not None:
            ok &= err.ravel() <= max_error
        pos[dst, alive[ok]] = p1[ok]
        vis[dst, alive[ok]] = True
    return Tracks(points=pos, visible=vis, on_person=on_person.copy(), query_frame=query_frame)


@dataclass(frozen=True)
class LKTracker:
    """``track_lk`` with fixed parameters (the ``Tracker`` interface)."""

    win: int = 15
    levels: int = 3
    fb_threshold: float = 1.0
    max_error: float | None = None

    def track(
        self,
        frames: np.ndarray,
        points: np.ndarray,
        on_person: np.ndarray | None = None,
        query_frame: int = 0,
    ) -> Tracks:
        return track_lk(
            frames, points, on_person, query_frame, self.win, self.levels, self.fb_threshold, self.max_error
        )


# --- CoTracker3 --------------------------------------------------------------------------------
class CoTrackerAdapter:
    """A CoTracker3 model exported as TorchScript, behind the ``Tracker`` interface.

    The model is called as ``model(video, queries)`` with ``video`` float32 [1,T,3,H,W] (0–255 RGB) and
    ``queries`` float32 [1,N,3] rows ``(t, x, y)``; it must return ``(tracks, visibility)`` with tracks
    [1,T,N,2] pixels and visibility [1,T,N] (bool, or a score > ``visibility_threshold`` is visible;
    a trailing singleton dimension is accepted). Only the glue is ours; the model is CoTracker's.
    """

    def __init__(self, checkpoint_path: str | Path, device: str = "cpu", visibility_threshold: float = 0.5):
        path = Path(checkpoint_path)
        if not path.is_file():
            raise FileNotFoundError(f"CoTracker3 TorchScript file not found: {path}")
        import torch

        self.path = path
        self.device = device
        self.visibility_threshold = visibility_threshold
        try:
            self.model = torch.jit.load(str(path), map_location=device)
        except RuntimeError as e:
            raise ValueError(f"{path} is not a loadable TorchScript file: {e}") from e
        self.model.eval()

    def track(
        self,
        frames: np.ndarray,
        points: np.ndarray,
        on_person: np.ndarray | None = None,
        query_frame: int = 0,
    ) -> Tracks:
        """Track ``points`` [N,2] given in ``query_frame`` through ``frames`` uint8 [T,H,W,3]."""
        import torch

        frames, points, on_person = _check_inputs(frames, points, on_person, query_frame)
        T, N = len(frames), len(points)
        video = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)[None].float()
        q = np.concatenate([np.full((N, 1), query_frame, np.float32), points], axis=1)
        queries = torch.from_numpy(q)[None]
        with torch.no_grad():
            out = self.model(video.to(self.device), queries.to(self.device))
        if not isinstance(out, (tuple, list)) or len(out) < 2:
            raise ValueError(
                f"{self.path}: the model must return (tracks, visibility), got {type(out).__name__}"
            )
        tracks, visibility = out[0], out[1]
        if tuple(tracks.shape) != (1, T, N, 2):
            raise ValueError(
                f"{self.path}: tracks must be [1,T,N,2] = [1,{T},{N},2], got {list(tracks.shape)}"
            )
        if visibility.ndim == 4 and visibility.shape[-1] == 1:
            visibility = visibility[..., 0]
        if tuple(visibility.shape) != (1, T, N):
            raise ValueError(
                f"{self.path}: visibility must be [1,T,N] = [1,{T},{N}], got {list(visibility.shape)}"
            )
        pos = tracks[0].detach().cpu().numpy().astype(np.float32)
        vis = visibility[0].detach().cpu()
        vis = vis.numpy() if vis.dtype == torch.bool else vis.float().numpy() > self.visibility_threshold
        return Tracks(
            points=pos, visible=vis.astype(bool), on_person=on_person.copy(), query_frame=query_frame
        )


def build_tracker(name: str, model_path: str | Path | None = None) -> Tracker:
    """``"lk"`` → ``LKTracker()``; ``"cotracker3"`` → ``CoTrackerAdapter(model_path)`` (needs the path)."""
    key = name.strip().lower()
    if key == "lk":
        return LKTracker()
    if key == "cotracker3":
        if model_path is None:
            raise ValueError("tracker 'cotracker3' needs model_path (a TorchScript file)")
        return CoTrackerAdapter(model_path)
    raise ValueError(f"unknown tracker {name!r}: expected 'lk' or 'cotracker3'")
