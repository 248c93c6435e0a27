"""``pose_confidence``: mean keypoint confidence of a pose estimator on the generated frames (higher is
better): plausible bodies are detected with confident keypoints, broken ones (missing limbs, melted
torsos) are not.

Per clip: the mean over all frames and the 18 OpenPose keypoints of the estimator's confidence, with 0
for frames where no person is found and for keypoints outside the image. The paper uses DWPose; the
default here is MediaPipe BlazePose (``ctx.pose_estimator``; ``"dwpose"`` with ``ctx.pose_model_path``
runs DWPose), so values from different estimators are not comparable — ``details["estimator"]`` says
which one produced the number. ``frames`` is every frame scored; ``details["person_frames"]`` those in
which the estimator found a person.
"""

from __future__ import annotations

import numpy as np

from components.evaluation.metric_registry import (
    MODEL_UNAVAILABLE,
    MetricContext,
    MetricResult,
    VideoSample,
    register,
)

NAME = "pose_confidence"


@register(NAME, higher_is_better=True)
def compute(samples: list[VideoSample], ctx: MetricContext) -> MetricResult:
    """Mean detected keypoint confidence per clip (0 where nobody is found), averaged over clips."""
    try:
        poses = [ctx.detected_pose(s) for s in samples]
    except MODEL_UNAVAILABLE as exc:
        return MetricResult.unavailable(NAME, str(exc), True, estimator=ctx.pose_estimator)
    values = [float(np.mean(p.confidence)) for p in poses]
    found = [float(np.mean(p.found)) for p in poses]
    frames = sum(len(p.confidence) for p in poses)  # every frame counts (0 where nobody is found)
    return MetricResult.from_per_video(
        NAME, values, True, frames=frames, estimator=ctx.pose_estimator, frames_with_person=found,
        person_frames=int(sum(np.sum(p.found) for p in poses)),
    )  # fmt: skip
