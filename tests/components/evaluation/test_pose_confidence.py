"""pose_confidence: MediaPipe is confident on a rendered person, 0 on a clip without anyone."""

from __future__ import annotations

import numpy as np
import pytest

from components.evaluation.metric_registry import MetricContext, VideoSample, compute_metrics
from components.evaluation.pose_confidence import NAME
from tests.components.evaluation.conftest import panning


def test_person_scores_high_and_empty_clips_score_zero(walk):
    frames, _gt = walk
    samples = [VideoSample(frames, 8.0), VideoSample(panning(4, 96, 128), 8.0), VideoSample(frames * 0, 8.0)]
    ctx = MetricContext()
    r = compute_metrics([NAME], samples, ctx)[NAME]
    person, texture, black = r.per_video
    print(f"walk {person:.3f}, texture {texture:.3f}, black {black:.3f}")
    assert person > 0.7 and texture == 0.0 and black == 0.0
    assert r.value == pytest.approx((person + texture + black) / 3)
    assert r.details["estimator"] == "mediapipe" and r.details["frames_with_person"][0] >= 0.8


def test_detections_are_shared_within_a_call_and_dropped_after(walk):
    frames, _gt = walk
    ctx = MetricContext()
    s = VideoSample(frames[:2], 8.0)
    first = ctx.detected_pose(s)
    assert ctx.detected_pose(s) is first and ctx.detected_masks(s).shape == (2, *frames.shape[1:3])
    compute_metrics([NAME], [s], ctx)
    assert ctx.detected_pose(s) is not first  # cleared at the end of compute_metrics, detected anew


def test_dwpose_without_a_model_is_none_with_reason(walk):
    frames, _gt = walk
    r = compute_metrics([NAME], [VideoSample(frames[:2], 8.0)], MetricContext(pose_estimator="dwpose"))[NAME]
    assert r.value is None and "model path" in r.reason and r.details["estimator"] == "dwpose"


def test_partial_frames_lower_the_score(walk):
    frames, _gt = walk
    half = frames.copy()
    half[::2] = 0  # every other frame black: no person there
    ctx = MetricContext()
    r = compute_metrics([NAME], [VideoSample(frames, 8.0), VideoSample(half, 8.0)], ctx)[NAME]
    full, holes = r.per_video
    assert holes < 0.75 * full and np.isfinite(holes)
    # every frame is scored (0 where nobody is found); the person was found on at most 8 + 4 of them
    assert r.frames == 2 * len(frames) and 0 < r.details["person_frames"] <= len(frames) + len(frames) // 2
