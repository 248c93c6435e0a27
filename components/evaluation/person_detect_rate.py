"""``person_detect_rate``: does the video show a person at all? The share of frames in which the pose
estimator (MediaPipe Pose, packaged, by default) finds a person with mean landmark visibility ≥ 0.5
(higher is better; ours, the check of issue 16 "the CPU default generates a recognisable person").

Per frame, from ``MetricContext.detected_pose`` (a :class:`components.annotation.pose.PoseResult`):
the frame counts as *person detected* when MediaPipe returned landmarks for it (``found``) and the
**mean landmark visibility** — the mean over the 18 OpenPose-18 keypoints of their confidence, which is
the MediaPipe visibility of the BlazePose landmark each keypoint maps to (the neck takes the smaller of
the two shoulders' visibility, and a keypoint that falls outside the image counts 0; mapping table in
``components.annotation.pose``) — is at least the threshold (option ``threshold``, default 0.5). A
frame where nobody is found counts as not detected. Per clip: detected frames / frames; the value is
the mean over clips; ``frames`` counts every frame judged. ``details["person_frames"]`` counts the
frames with a detection at any visibility, ``details["detected_frames"]`` those that passed.

What it is NOT: not a check that the person has the skeleton's pose (that is ``skeleton_alignment_pck``),
nor of identity, realism or temporal coherence: a badly drawn body that MediaPipe still fits with
visible landmarks passes, and MediaPipe's video-mode tracker carries a detection from frame to frame.
It is not the mean of the 33 BlazePose visibilities (the face and hand landmarks that OpenPose-18 drops
are not counted). Values from another estimator (``ctx.pose_estimator="dwpose"``) use that estimator's
scores and are not comparable; ``details["estimator"]`` names it.
"""

from __future__ import annotations

from components.annotation.pose import (  # noqa: F401 (the metric's criterion, defined beside PoseResult)
    PERSON_VISIBILITY_THRESHOLD,
    detected_frames,
    mean_landmark_visibility,
)
from components.evaluation.metric_registry import (
    MODEL_UNAVAILABLE,
    MetricContext,
    MetricResult,
    VideoSample,
    register,
)

NAME = "person_detect_rate"
DEFAULT_THRESHOLD = PERSON_VISIBILITY_THRESHOLD


@register(NAME, higher_is_better=True)
def compute(samples: list[VideoSample], ctx: MetricContext) -> MetricResult:
    """Share of frames with a detected person per clip, averaged over clips."""
    threshold = float(ctx.option(NAME, "threshold", DEFAULT_THRESHOLD))
    details = {"estimator": ctx.pose_estimator, "threshold": threshold}
    if not samples:
        return MetricResult.unavailable(
            NAME, "no clips given: no frame to look for a person in", True, **details
        )
    try:
        poses = [ctx.detected_pose(s) for s in samples]
    except MODEL_UNAVAILABLE as exc:
        return MetricResult.unavailable(NAME, str(exc), True, **details)
    hits = [detected_frames(p, threshold) for p in poses]
    frames = sum(len(h) for h in hits)
    detected = int(sum(h.sum() for h in hits))
    person = int(sum(p.found.sum() for p in poses))
    if detected == 0:
        details["note"] = (
            "nobody found in any frame" if person == 0 else f"a person was found in {person} frames, "
            f"never with mean landmark visibility >= {threshold}"
        )  # fmt: skip
    return MetricResult.from_per_video(
        NAME, [float(h.mean()) for h in hits], True, frames=frames, person_frames=person,
        detected_frames=detected, **details,
    )  # fmt: skip
