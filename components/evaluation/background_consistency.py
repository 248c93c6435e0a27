"""``background_consistency``: VBench-style background consistency on frames with the person removed,
with EfficientNet-Lite0 features by default (higher is better; the feature source is in
``details["features"]``).

VBench embeds whole frames with CLIP; here the person is removed first: the person region
(``MetricContext.person_region``: given mask, else skeleton box, else detected mask) is dilated by
``max(3, round(0.02 · min(H, W)))`` pixels (to cover the soft edge of a mask) and painted grey 127 — the
zero input of EfficientNet-Lite0 — in the full frame, which is then embedded whole (resized to the
network's input). Frames without a person are embedded as they are. The score is VBench's
(first + previous) / 2 cosine formula (``subject_consistency.consistency_score``); clips need ≥ 2 frames.
"""

from __future__ import annotations

import cv2
import numpy as np

from components.evaluation.metric_registry import (
    MODEL_UNAVAILABLE,
    MetricContext,
    MetricResult,
    VideoSample,
    register,
)
from components.evaluation.subject_consistency import NEUTRAL_GREY, consistency_score

NAME = "background_consistency"
DILATE_FRACTION = 0.02
MIN_DILATE = 3


def dilation_pixels(height: int, width: int) -> int:
    """How far the person region is grown before it is painted out."""
    return max(MIN_DILATE, round(DILATE_FRACTION * min(height, width)))


def remove_person(frames: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Copy of ``frames`` [T,H,W,3] with the dilated person ``region`` [T,H,W] painted grey 127."""
    r = dilation_pixels(*frames.shape[1:3])
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    out = frames.copy()
    for t, m in enumerate(region):
        if m.any():
            out[t][cv2.dilate(m.astype(np.uint8), kernel) > 0] = NEUTRAL_GREY
    return out


@register(NAME, higher_is_better=True)
def compute(samples: list[VideoSample], ctx: MetricContext) -> MetricResult:
    """Background consistency per clip (see the module docstring), averaged over clips."""
    values: list[float | None] = []
    sources = []
    try:
        extractor = ctx.feature_extractor()
        for s in samples:
            if s.num_frames < 2:
                values.append(None)
                sources.append("")
                continue
            region, src = ctx.person_region(s)
            values.append(consistency_score(extractor(remove_person(s.frames, region))))
            sources.append(src)
    except MODEL_UNAVAILABLE as exc:
        return MetricResult.unavailable(NAME, str(exc), True, features=ctx.feature_backbone)
    return MetricResult.from_per_video(
        NAME, values, True, features=extractor.name, region=sources, formula="vbench (first + previous) / 2"
    )
