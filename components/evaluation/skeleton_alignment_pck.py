"""``skeleton_alignment_pck``: does the generated person follow the conditioning skeleton? PCK@0.1
between keypoints detected on the generated frames and the skeleton the video was generated from
(higher is better; ours, beyond the paper's metrics).

Per clip: ``components.annotation.accuracy.pck`` with the conditioning skeleton as ground truth — its
keypoints with confidence ≥ 0.3 are counted, a detected keypoint (``MetricContext.detected_pose``,
MediaPipe by default) is correct when its confidence exceeds 0.3 and it lies within α = 0.1 (option
``alpha``) × the diagonal of that frame's skeleton box (the box around the counted skeleton keypoints).
Undetected keypoints count as misses. Clips without a conditioning skeleton are not measured;
``frames`` counts the frames whose skeleton has a keypoint to check.
"""

from __future__ import annotations

import math

from components.annotation.accuracy import pck
from components.evaluation.metric_registry import (
    MODEL_UNAVAILABLE,
    SKELETON_MIN_CONFIDENCE,
    MetricContext,
    MetricResult,
    VideoSample,
    register,
)

NAME = "skeleton_alignment_pck"
DEFAULT_ALPHA = 0.1


@register(NAME, higher_is_better=True)
def compute(samples: list[VideoSample], ctx: MetricContext) -> MetricResult:
    """PCK@alpha of detected vs conditioning keypoints per clip, averaged over clips."""
    alpha = float(ctx.option(NAME, "alpha", DEFAULT_ALPHA))
    details = {"estimator": ctx.pose_estimator, "alpha": alpha, "normaliser": "skeleton box diagonal"}
    if not any(s.has_skeleton for s in samples):
        return MetricResult.unavailable(
            NAME, "no conditioning skeletons given (VideoSample.skeleton_keypoints)", True, **details
        )
    values: list[float | None] = []
    frames = 0
    for s in samples:
        if not s.has_skeleton:
            values.append(None)
            continue
        try:
            det = ctx.detected_pose(s)
        except MODEL_UNAVAILABLE as exc:
            return MetricResult.unavailable(NAME, str(exc), True, **details)
        score = pck(
            det.keypoints,
            det.confidence,
            s.skeleton_keypoints,
            s.skeleton_confidence >= SKELETON_MIN_CONFIDENCE,
            alpha=alpha,
            conf_threshold=SKELETON_MIN_CONFIDENCE,
        )
        values.append(None if math.isnan(score) else score)
        frames += int((s.skeleton_confidence >= SKELETON_MIN_CONFIDENCE).any(axis=1).sum())
    return MetricResult.from_per_video(NAME, values, True, frames=frames, **details)
