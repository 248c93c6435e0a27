"""skeleton_alignment_pck: high when the skeleton lies on the rendered person, low when shifted."""

from __future__ import annotations

import numpy as np
import pytest

from components.evaluation.metric_registry import MetricContext, VideoSample, compute_metrics
from components.evaluation.skeleton_alignment_pck import NAME


def test_aligned_skeleton_scores_high_and_shifted_low(walk):
    frames, gt = walk
    conf = gt.visible.astype("float32")
    aligned = VideoSample(frames, 8.0, skeleton_keypoints=gt.keypoints2d, skeleton_confidence=conf)
    shifted = VideoSample(
        frames, 8.0, skeleton_keypoints=gt.keypoints2d + np.array([40.0, 0.0]), skeleton_confidence=conf
    )
    ctx = MetricContext()
    r = compute_metrics([NAME], [aligned, shifted], ctx)[NAME]
    a, s = r.per_video
    print(f"PCK@0.1 aligned {a:.3f}, shifted by 40 px {s:.3f}")
    assert a > 0.7 and s < 0.1
    assert r.details["alpha"] == 0.1 and r.details["estimator"] == "mediapipe"
    # a looser threshold forgives more
    loose = MetricContext(options={NAME: {"alpha": 0.5}})
    assert compute_metrics([NAME], [shifted], loose)[NAME].value > s


def test_none_without_conditioning_skeletons_or_a_pose_model(walk):
    frames, gt = walk
    r = compute_metrics([NAME], [VideoSample(frames[:2], 8.0)], MetricContext())[NAME]
    assert r.value is None and "skeleton" in r.reason
    s = VideoSample(
        frames[:2], 8.0, skeleton_keypoints=gt.keypoints2d[:2], skeleton_confidence=gt.visible[:2]
    )
    r = compute_metrics([NAME], [s], MetricContext(pose_estimator="dwpose"))[NAME]
    assert r.value is None and "DWPoseOnnx needs a model path" in r.reason


def test_clips_without_skeleton_are_skipped_not_zeroed(walk):
    frames, gt = walk
    with_skel = VideoSample(
        frames, 8.0, skeleton_keypoints=gt.keypoints2d, skeleton_confidence=gt.visible.astype("float32")
    )
    r = compute_metrics([NAME], [with_skel, VideoSample(frames, 8.0)], MetricContext())[NAME]
    assert r.per_video[1] is None and r.value == pytest.approx(r.per_video[0])
    assert r.frames == int(gt.visible.any(1).sum()) > 0  # frames of the clip with a skeleton only
