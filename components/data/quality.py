"""Cheap per-clip quality scores for the ingest stage's quality filter.

The scores follow VBench's definitions where one exists (dynamic degree, motion smoothness) but use
OpenCV's DIS optical flow instead of RAFT and a flow-based halfway warp instead of a learned frame
interpolator, so they run on CPU in milliseconds per clip. They are meant for filtering and ranking
raw clips, not for reporting numbers comparable with published VBench results.

All functions take ``frames``: a uint8 numpy array of shape [T, H, W, 3] (RGB) with T >= 3.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

# VBench dynamic degree: threshold 6.0 at a short side of 256 px, scaled linearly with resolution,
# and a clip counts as dynamic when at least round(4 * T / 16) frame pairs exceed it.
_VBENCH_THRESHOLD_AT_256 = 6.0
_VBENCH_COUNT_PER_16_FRAMES = 4
_TOP_FRACTION = 0.05
# Gray levels treated as clipped (crushed blacks / blown highlights).
_DARK_CLIP = 5
_BRIGHT_CLIP = 250
_DIS_PRESET = cv2.DISOPTICAL_FLOW_PRESET_MEDIUM


@dataclass(frozen=True)
class QualityScores:
    """Quality scores of one clip, one row of the ingest manifest's quality columns."""

    dynamic_degree_dis: float
    """Share of consecutive frame pairs whose top-5% flow magnitude exceeds 6.0 * min(H, W) / 256."""
    is_dynamic_dis: bool
    """VBench's rule: at least max(1, round(4 * T / 16)) frame pairs over the threshold."""
    motion_smoothness_flowinterp: float
    """In [0, 1]: 1 - mean |interpolated - actual| / 255 over odd frames (flow-warp interpolation)."""
    sharpness_laplacian: float
    """Mean over frames of the variance of the grayscale Laplacian (higher is sharper)."""
    exposure_clipped_fraction: float
    """Mean share of pixels with gray <= 5 or >= 250."""

    def as_row(self) -> dict:
        """The scores as a flat dict keyed by field name (for a manifest/table row)."""
        return asdict(self)


def _validate(frames: np.ndarray) -> np.ndarray:
    """Raise ValueError unless ``frames`` is a uint8 array of shape [T, H, W, 3] with T >= 3."""
    if not isinstance(frames, np.ndarray):
        raise ValueError(f"frames must be a numpy array, got {type(frames).__name__}")
    if frames.dtype != np.uint8:
        raise ValueError(f"frames must have dtype uint8, got {frames.dtype}")
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must have shape [T, H, W, 3], got {frames.shape}")
    if frames.shape[0] < 3:
        raise ValueError(f"frames must have at least 3 frames (T >= 3), got T={frames.shape[0]}")
    if frames.shape[1] < 1 or frames.shape[2] < 1:
        raise ValueError(f"frames must have non-empty height and width, got {frames.shape}")
    return frames


def _gray(image: np.ndarray) -> np.ndarray:
    """Single-channel uint8 version of an RGB (H, W, 3) or gray (H, W) uint8 image."""
    if image.dtype != np.uint8:
        raise ValueError(f"image must have dtype uint8, got {image.dtype}")
    if image.ndim == 2:
        return np.ascontiguousarray(image)
    if image.ndim == 3 and image.shape[-1] == 3:
        return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    raise ValueError(f"image must have shape [H, W] or [H, W, 3], got {image.shape}")


def flow_dis(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Dense DIS optical flow from image ``a`` to image ``b`` as an (H, W, 2) float32 array (dx, dy).

    Images are RGB (H, W, 3) or gray (H, W) uint8; flow is computed on grayscale. A fresh DIS
    instance is created per call (cheap, and OpenCV algorithm objects are not thread-safe).
    """
    ga, gb = _gray(a), _gray(b)
    if ga.shape != gb.shape:
        raise ValueError(f"images must have the same size, got {ga.shape} and {gb.shape}")
    dis = cv2.DISOpticalFlow_create(_DIS_PRESET)
    flow = dis.calc(ga, gb, None)
    return np.asarray(flow, dtype=np.float32)


def top5_flow_magnitude(flow: np.ndarray) -> float:
    """Mean of the largest 5% of per-pixel flow magnitudes (at least one pixel), as in VBench.

    Using the top tail rather than the mean makes a moving subject on a static background count.
    """
    if flow.ndim != 3 or flow.shape[-1] != 2:
        raise ValueError(f"flow must have shape [H, W, 2], got {flow.shape}")
    mag = np.hypot(flow[..., 0].astype(np.float64), flow[..., 1].astype(np.float64)).ravel()
    if mag.size == 0:
        raise ValueError("flow must have at least one pixel")
    k = max(1, int(mag.size * _TOP_FRACTION))
    top = np.partition(mag, mag.size - k)[mag.size - k :]
    return float(top.mean())


def _dynamic_threshold(height: int, width: int) -> float:
    """VBench's resolution-scaled flow threshold in pixels."""
    return _VBENCH_THRESHOLD_AT_256 * min(height, width) / 256.0


def _dynamic_min_count(num_frames: int) -> int:
    """VBench's minimum number of over-threshold pairs, round(4 * T / 16), and at least 1."""
    return max(1, round(_VBENCH_COUNT_PER_16_FRAMES * num_frames / 16.0))


def dynamic_degree_dis(frames: np.ndarray) -> tuple[float, bool]:
    """(share of consecutive pairs over VBench's motion threshold, VBench's is-dynamic verdict).

    Flags near-static clips, which teach a video model nothing about motion.
    """
    frames = _validate(frames)
    t, h, w, _ = frames.shape
    threshold = _dynamic_threshold(h, w)
    over = sum(top5_flow_magnitude(flow_dis(frames[i], frames[i + 1])) > threshold for i in range(t - 1))
    return over / (t - 1), over >= _dynamic_min_count(t)


def _backward_warp(image: np.ndarray, displacement: np.ndarray) -> np.ndarray:
    """Sample ``image`` at x + displacement(x), bilinear, border replicate; returns float32."""
    h, w = displacement.shape[:2]
    grid_x, grid_y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    map_x = grid_x + displacement[..., 0]
    map_y = grid_y + displacement[..., 1]
    return cv2.remap(
        image.astype(np.float32),
        map_x,
        map_y,
        interpolation=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )


def _interpolate_middle(prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
    """Estimate the frame halfway between ``prev`` and ``nxt`` (float32 RGB).

    Backward warping with the flow evaluated at the target pixel rather than at the source pixel
    (a standard approximation, exact for locally uniform motion): ``prev`` is sampled at
    x - 0.5 * F(prev->nxt)(x), ``nxt`` at x - 0.5 * F(nxt->prev)(x), and the two are averaged.
    """
    flow_fwd = flow_dis(prev, nxt)
    flow_bwd = flow_dis(nxt, prev)
    from_prev = _backward_warp(prev, -0.5 * flow_fwd)
    from_next = _backward_warp(nxt, -0.5 * flow_bwd)
    return 0.5 * (from_prev + from_next)


def motion_smoothness_flowinterp(frames: np.ndarray) -> float:
    """Score in [0, 1] of how well each odd frame is predicted from its two neighbours.

    For odd indices t = 1, 3, 5, ... with a frame t + 1, the frame is interpolated from t - 1 and
    t + 1 by a DIS-flow halfway warp and scored as 1 - mean |interp - actual| / 255 (averaged over
    frames). Jittery or flickering clips score low; this stands in for VBench's learned-interpolator
    motion smoothness.
    """
    frames = _validate(frames)
    errors = []
    for t in range(1, frames.shape[0] - 1, 2):
        interp = _interpolate_middle(frames[t - 1], frames[t + 1])
        errors.append(float(np.mean(np.abs(interp - frames[t].astype(np.float32)))) / 255.0)
    return float(min(1.0, max(0.0, 1.0 - float(np.mean(errors)))))


def sharpness_laplacian(frames: np.ndarray) -> float:
    """Mean over frames of the variance of the grayscale Laplacian (a standard focus measure).

    Low values mean blurry or heavily compressed clips.
    """
    frames = _validate(frames)
    values = [float(cv2.Laplacian(_gray(frame), cv2.CV_64F).var()) for frame in frames]
    return float(np.mean(values))


def exposure_clipped_fraction(frames: np.ndarray) -> float:
    """Mean share of pixels whose gray level is <= 5 or >= 250 (crushed shadows / blown highlights)."""
    frames = _validate(frames)
    shares = []
    for frame in frames:
        gray = _gray(frame)
        shares.append(float(np.mean((gray <= _DARK_CLIP) | (gray >= _BRIGHT_CLIP))))
    return float(np.mean(shares))


def score_clip(frames: np.ndarray) -> QualityScores:
    """All quality scores of one clip."""
    frames = _validate(frames)
    degree, dynamic = dynamic_degree_dis(frames)
    return QualityScores(
        dynamic_degree_dis=float(degree),
        is_dynamic_dis=bool(dynamic),
        motion_smoothness_flowinterp=motion_smoothness_flowinterp(frames),
        sharpness_laplacian=sharpness_laplacian(frames),
        exposure_clipped_fraction=exposure_clipped_fraction(frames),
    )
