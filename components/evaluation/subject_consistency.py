"""``subject_consistency``: VBench-style subject consistency on the person region, with EfficientNet-Lite0
features by default (higher is better; the feature source is in ``details["features"]``).

VBench's formula on per-frame features f₀..f_{T−1}: the mean over t = 1..T−1 of
(max(0, cos(f₀, f_t)) + max(0, cos(f_{t−1}, f_t))) / 2 — how much the subject drifts from the first
frame and flickers from frame to frame. VBench embeds whole frames with DINO; here each frame is reduced
to the person first (``MetricContext.person_region``: the given mask, else the conditioning skeleton's
box, else a detected mask):

1. crop the bounding box of the region's pixels, squared around its centre (side = the longer side);
2. set pixels of the crop outside the region, and any part of the square beyond the frame, to grey 127
   (the zero input of EfficientNet-Lite0), so the background does not count;
3. resize the crop to 224×224 and embed it with ``ctx.feature_backbone``
   (``"efficientnet-lite0"`` by default; ``"dino"`` / ``"clip"`` from ``ctx.dino_path`` / ``ctx.clip_path``).

Frames with an empty region are left out (the formula runs over the remaining frames in order); a clip
with fewer than two such frames is not measured; ``frames`` counts the frames scored.
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

NAME = "subject_consistency"
NEUTRAL_GREY = 127
CROP_SIZE = 224  # crops are brought to one size so a clip is embedded in one batch


def consistency_score(features: np.ndarray) -> float:
    """VBench's consistency of per-frame features [T,D] (T ≥ 2): mean over t ≥ 1 of
    (max(0, cos(f₀, f_t)) + max(0, cos(f_{t−1}, f_t))) / 2."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise ValueError(f"consistency needs features [T,D] with T >= 2, got {f.shape}")
    norms = np.linalg.norm(f, axis=1, keepdims=True)
    f = f / np.maximum(norms, 1e-12)
    to_first = np.clip(f[1:] @ f[0], 0.0, None)
    to_previous = np.clip(np.sum(f[1:] * f[:-1], axis=1), 0.0, None)
    return float(np.mean((to_first + to_previous) / 2.0))


def person_crop(frame: np.ndarray, region: np.ndarray) -> np.ndarray | None:
    """The square crop [S,S,3] around ``region`` (bool [H,W]) with non-region pixels set to grey 127;
    None when the region is empty."""
    ys, xs = np.nonzero(region)
    if len(ys) == 0:
        return None
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    side = max(y1 - y0, x1 - x0)
    cy, cx = (y0 + y1) // 2, (x0 + x1) // 2
    top, left = cy - side // 2, cx - side // 2
    out = np.full((side, side, 3), NEUTRAL_GREY, dtype=np.uint8)
    h, w = region.shape
    sy0, sy1 = max(top, 0), min(top + side, h)
    sx0, sx1 = max(left, 0), min(left + side, w)
    patch = np.where(region[sy0:sy1, sx0:sx1, None], frame[sy0:sy1, sx0:sx1], NEUTRAL_GREY)
    out[sy0 - top : sy1 - top, sx0 - left : sx1 - left] = patch
    return out


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
    """Square ``image`` resized to ``size``×``size`` (area-averaged when shrinking)."""
    interp = cv2.INTER_AREA if image.shape[0] > size else cv2.INTER_LINEAR
    return cv2.resize(np.ascontiguousarray(image), (size, size), interpolation=interp)


def subject_consistency(sample: VideoSample, ctx: MetricContext) -> tuple[float | None, str, int]:
    """(score or None, region source, number of frames scored: 0 with a None score) of one clip."""
    region, source = ctx.person_region(sample)
    crops = [person_crop(f, r) for f, r in zip(sample.frames, region, strict=True)]
    crops = [resize_square(c, CROP_SIZE) for c in crops if c is not None]
    if len(crops) < 2:
        return None, source, 0
    return consistency_score(ctx.feature_extractor()(np.stack(crops))), source, len(crops)


@register(NAME, higher_is_better=True)
def compute(samples: list[VideoSample], ctx: MetricContext) -> MetricResult:
    """Subject consistency per clip (see the module docstring), averaged over clips."""
    values, sources = [], []
    frames = 0
    try:
        extractor = ctx.feature_extractor()
        for s in samples:
            v, src, n = subject_consistency(s, ctx)
            values.append(v)
            sources.append(src)
            frames += n
    except MODEL_UNAVAILABLE as exc:
        return MetricResult.unavailable(NAME, str(exc), True, features=ctx.feature_backbone)
    return MetricResult.from_per_video(
        NAME, values, True, frames=frames, features=extractor.name, region=sources,
        formula="vbench (first + previous) / 2",
    )  # fmt: skip
