"""``imaging_quality_proxy``: a no-reference image quality proxy in [0, 1] (higher is better).

Not MUSIQ (VBench's imaging quality): a hand-made score from two classic measures, reported under its
own name. Per clip, frames whose short side exceeds 256 px are first shrunk to 256 px (area
averaging) so the score does not depend on resolution; then

    score = s / (s + 100) · (1 − c)

with ``s`` the mean variance of the grayscale Laplacian (a focus measure; 100 is the usual blur
threshold, which maps to 0.5) and ``c`` the mean share of pixels with gray ≤ 5 or ≥ 250 (crushed
shadows, blown highlights), both from ``components.data.quality``. Clips need ≥ 3 frames.
"""

from __future__ import annotations

import cv2
import numpy as np

from components.data.quality import exposure_clipped_fraction, sharpness_laplacian
from components.evaluation.metric_registry import MetricContext, MetricResult, VideoSample, register

NAME = "imaging_quality_proxy"
WORK_SHORT_SIDE = 256
SHARPNESS_HALF = 100.0


def to_work_size(frames: np.ndarray) -> np.ndarray:
    """Frames shrunk so their short side is at most 256 px (unchanged when already smaller)."""
    h, w = frames.shape[1:3]
    scale = WORK_SHORT_SIDE / min(h, w)
    if scale >= 1.0:
        return frames
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames])


def imaging_quality(frames: np.ndarray) -> float:
    """The proxy score of one clip (see the module docstring)."""
    small = to_work_size(frames)
    s = sharpness_laplacian(small)
    return s / (s + SHARPNESS_HALF) * (1.0 - exposure_clipped_fraction(small))


@register(NAME, higher_is_better=True)
def compute(samples: list[VideoSample], ctx: MetricContext) -> MetricResult:
    """Sharpness × exposure proxy per clip, averaged over clips."""
    values = [imaging_quality(s.frames) if s.num_frames >= 3 else None for s in samples]
    return MetricResult.from_per_video(
        NAME,
        values,
        True,
        what="laplacian-variance sharpness s/(s+100) x (1 - clipped-exposure share), at <=256 px short side",
    )
