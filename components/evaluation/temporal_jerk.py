"""``temporal_jerk``: mean jerk of point tracks in the person region (lower is smoother), the paper's
"temporal smoothness".

Per clip:
1. query frame q = the first frame whose person region (``MetricContext.person_region``: given mask,
   else skeleton box, else detected mask) is not empty;
2. query points on a grid inside that region eroded by ``win // 2`` px
   (``components.annotation.tracks.query_points``; the grid spacing grows so that at most ``max_points``
   points, option, default 400, are used);
3. tracked through the clip with pyramidal Lucas–Kanade (``track_lk``, forward–backward checked) with a
   ``win``×``win`` window (option, default 9). The erosion keeps most of each window on the person: a
   window straddling a moving edge is pulled by the static background (on a square moving at constant
   velocity, 15-px windows from 1-px-eroded points gave 0.1–0.3 px/frame³ of spurious jerk; 9-px windows
   from 4-px-eroded points about 0.001);
4. jerk of a track at t = p(t+3) − 3p(t+2) + 3p(t+1) − p(t) (third finite difference, px/frame³),
   counted where the point is visible in all four frames; the clip's value is the mean jerk magnitude
   divided by the frame diagonal √(H² + W²) (so it does not depend on resolution).
Per frame step, not per second: clips are compared at their own frame rate (``details["fps"]``).
Clips with fewer than 4 frames, no person region or no track visible over 4 frames are not measured.
"""

from __future__ import annotations

import math

import numpy as np

from components.annotation.tracks import query_points, track_lk
from components.evaluation.metric_registry import (
    MODEL_UNAVAILABLE,
    MetricContext,
    MetricResult,
    VideoSample,
    register,
)

NAME = "temporal_jerk"
DEFAULT_MAX_POINTS = 400
DEFAULT_WIN = 9
MIN_STRIDE = 4


def jerk_magnitudes(points: np.ndarray, visible: np.ndarray) -> np.ndarray:
    """|third finite difference| of tracks ``points`` [T,N,2] where ``visible`` [T,N] in all four frames."""
    p = np.asarray(points, dtype=np.float64)
    v = np.asarray(visible, dtype=bool)
    if len(p) < 4:
        return np.zeros(0)
    jerk = p[3:] - 3.0 * p[2:-1] + 3.0 * p[1:-2] - p[:-3]
    ok = v[3:] & v[2:-1] & v[1:-2] & v[:-3]
    return np.linalg.norm(jerk, axis=-1)[ok]


def grid_stride(area: int, max_points: int) -> int:
    """Grid spacing (px) that puts at most about ``max_points`` points on ``area`` pixels (≥ 4 px)."""
    return max(MIN_STRIDE, math.ceil(math.sqrt(area / max(max_points, 1))))


def clip_jerk(
    frames: np.ndarray, region: np.ndarray, max_points: int = DEFAULT_MAX_POINTS, win: int = DEFAULT_WIN
) -> tuple[float | None, int]:
    """(mean jerk / frame diagonal or None, number of tracked points) of one clip."""
    if len(frames) < 4:
        return None, 0
    with_person = np.flatnonzero(region.reshape(len(region), -1).any(1))
    if len(with_person) == 0:
        return None, 0
    q = int(with_person[0])
    stride = grid_stride(int(region[q].sum()), max_points)
    pts, on_person = query_points(region[q], person_stride=stride, background_stride=10**6, erode=win // 2)
    pts = pts[on_person]
    if len(pts) == 0:
        return None, 0
    tracks = track_lk(frames, pts, query_frame=q, win=win)
    mags = jerk_magnitudes(tracks.points, tracks.visible)
    if mags.size == 0:
        return None, len(pts)
    h, w = frames.shape[1:3]
    return float(mags.mean() / math.hypot(h, w)), len(pts)


@register(NAME, higher_is_better=False)
def compute(samples: list[VideoSample], ctx: MetricContext) -> MetricResult:
    """Mean LK-track jerk in the person region per clip (normalised by the frame diagonal)."""
    max_points = int(ctx.option(NAME, "max_points", DEFAULT_MAX_POINTS))
    win = int(ctx.option(NAME, "win", DEFAULT_WIN))
    values, sources, counts = [], [], []
    frames = 0
    try:
        for s in samples:
            region, src = ctx.person_region(s)
            v, n = clip_jerk(s.frames, region, max_points, win)
            if v is not None:  # frames of the clips whose person region gave tracks
                frames += int(region.reshape(len(region), -1).any(1).sum())
            values.append(v)
            sources.append(src)
            counts.append(n)
    except MODEL_UNAVAILABLE as exc:  # no mask or skeleton given and the mask estimator is missing
        return MetricResult.unavailable(NAME, str(exc), False, mask_estimator=ctx.mask_estimator)
    return MetricResult.from_per_video(
        NAME,
        values,
        False,
        frames=frames,
        tracker=f"lucas-kanade (OpenCV), window {win}",
        units="px/frame^3 / frame diagonal",
        fps=[s.fps for s in samples],
        region=sources,
        points=counts,
    )
