"""person_detect_rate: a rendered person is found in most frames, noise in none (counted, with the
details saying nobody was found), an empty clip set is null with a reason, the threshold matters."""

from __future__ import annotations

import numpy as np
import pytest

from components.annotation.pose import PoseResult
from components.evaluation.metric_registry import (
    BUILTIN_METRIC_MODULES,
    MetricContext,
    VideoSample,
    compute_metrics,
)
from components.evaluation.person_detect_rate import (
    DEFAULT_THRESHOLD,
    NAME,
    detected_frames,
    mean_landmark_visibility,
)


def test_rendered_person_scores_high(walk):
    frames, _gt = walk
    ctx = MetricContext()
    r = compute_metrics([NAME], [VideoSample(frames, 8.0)], ctx)[NAME]
    print(f"walk: {r.value:.3f} of {r.frames} frames")
    assert r.value is not None and r.value >= 0.75
    assert r.frames == len(frames) and r.details["detected_frames"] == round(r.value * len(frames))
    assert r.details["threshold"] == DEFAULT_THRESHOLD == 0.5 and r.details["estimator"] == "mediapipe"
    assert NAME in BUILTIN_METRIC_MODULES


def test_noise_frames_score_zero_with_frames_counted():
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, size=(6, 96, 128, 3), dtype=np.uint8)
    r = compute_metrics([NAME], [VideoSample(noise, 8.0)], MetricContext())[NAME]
    assert r.value == 0.0 and r.reason is None
    assert r.frames == 6 and r.details["detected_frames"] == 0
    assert r.details["person_frames"] == 0 and r.details["note"] == "nobody found in any frame"


def test_no_clips_is_null_with_a_reason():
    r = compute_metrics([NAME], [], MetricContext())[NAME]
    assert r.value is None and "no clips" in r.reason and r.frames is None


def test_frame_rule_is_found_and_mean_visibility_at_threshold():
    conf = np.zeros((4, 18), np.float32)
    conf[0] = 0.9  # confident person
    conf[1, :9] = 1.0  # half the keypoints fully visible: mean exactly 0.5
    conf[2, :8] = 1.0  # mean 8/18 < 0.5
    pose = PoseResult(np.zeros((4, 18, 2)), conf, np.array([True, True, True, False]))
    assert mean_landmark_visibility(pose) == pytest.approx([0.9, 0.5, 8 / 18, 0.0])
    assert detected_frames(pose).tolist() == [True, True, False, False]
    assert detected_frames(pose, threshold=0.95).tolist() == [False, False, False, False]


def test_threshold_option_changes_the_value(walk):
    frames, _gt = walk
    sample = VideoSample(frames[:4], 8.0)
    strict = compute_metrics([NAME], [sample], MetricContext(options={NAME: {"threshold": 1.01}}))[NAME]
    assert strict.value == 0.0 and strict.details["threshold"] == 1.01
    assert "never with mean landmark visibility" in strict.details["note"]
