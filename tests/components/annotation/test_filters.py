"""Motion and upper-body filters on constructed OpenPose-18 keypoint sequences."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from components.annotation.filters import (
    LEGS,
    body_size,
    decide,
    is_upper_body_only,
    lower_body_visible_fraction,
    mean_keypoint_displacement,
)

# A standing person in pixels (x right, y down), OpenPose-18 order; torso (neck → mid-hip) = 100 px.
STANDING = np.array(
    [
        [0, -130], [0, -100], [-25, -100], [-35, -55], [-40, -10], [25, -100], [35, -55], [40, -10],
        [-15, 0], [-18, 60], [-20, 120], [15, 0], [18, 60], [20, 120], [-6, -136], [6, -136],
        [-12, -132], [12, -132],
    ],
    dtype=np.float64,
)  # fmt: skip
KNEES_ANKLES = np.array([9, 10, 12, 13])


def static_clip(frames: int = 30, jitter: float = 0.3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A person standing still with sub-pixel detector jitter, all keypoints confident."""
    rng = np.random.default_rng(seed)
    kp = STANDING[None] + np.array([320.0, 240.0]) + rng.normal(0, jitter, size=(frames, 18, 2))
    return kp, np.full((frames, 18), 0.9)


def walking_clip(frames: int = 30, speed: float = 6.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A person translating ``speed`` px/frame to the right with swinging legs and arms."""
    kp, conf = static_clip(frames, seed=seed)
    t = np.arange(frames)[:, None]
    kp[..., 0] += speed * t
    swing = 20 * np.sin(2 * np.pi * t / 15)
    kp[:, [9, 10, 7], 0] += swing * np.array([0.5, 1.0, 0.5])
    kp[:, [12, 13, 4], 0] -= swing * np.array([0.5, 1.0, 0.5])
    return kp, conf


def test_body_size_is_the_torso_length_and_falls_back_to_the_keypoint_box() -> None:
    kp, conf = static_clip(jitter=0.0)
    assert body_size(kp, conf) == pytest.approx(100.0)
    no_hips = conf.copy()
    no_hips[:, [8, 11]] = 0.0
    # keypoint box without the hips: x from -40 to 40, y from -136 to 120; diagonal / 3
    assert body_size(kp, no_hips) == pytest.approx(np.hypot(80, 256) / 3)
    one_hip = conf.copy()
    one_hip[:, 8] = 0.0
    assert body_size(kp, one_hip) == pytest.approx(np.hypot(15, 100))
    assert math.isnan(body_size(kp, np.zeros_like(conf)))


def test_static_person_is_dropped_for_low_motion() -> None:
    kp, conf = static_clip()
    d = decide(kp, conf, min_motion=0.02, min_lower_body=0.5)
    assert not d.keep
    assert d.motion < 0.01
    assert re.fullmatch(r"low_motion: [0-9.e-]+ < 0\.02", d.reason)
    assert d.lower_body == 1.0


def test_walking_person_is_kept() -> None:
    kp, conf = walking_clip()
    d = decide(kp, conf, min_motion=0.02, min_lower_body=0.5)
    assert d.keep and d.reason is None
    assert d.motion > 0.05  # at least the 6 px/frame translation over a 100 px torso
    assert d.lower_body == 1.0


def test_motion_score_is_scale_and_translation_invariant() -> None:
    kp, conf = walking_clip()
    base = mean_keypoint_displacement(kp, conf)
    assert mean_keypoint_displacement(2.0 * kp, conf) == pytest.approx(base, rel=1e-9)
    assert mean_keypoint_displacement(0.5 * kp + 1000.0, conf) == pytest.approx(base, rel=1e-9)
    assert body_size(2.0 * kp, conf) == pytest.approx(2.0 * body_size(kp, conf))


def test_motion_uses_only_keypoints_confident_in_both_frames() -> None:
    kp, conf = static_clip(jitter=0.0)
    kp[5:, 4] += 500.0  # the right wrist jumps away ...
    conf_bad = conf.copy()
    conf_bad[5, 4] = 0.1  # ... in a frame where it is not confident, and stays there
    conf_bad[4, 4] = 0.1
    assert mean_keypoint_displacement(kp, conf_bad) == pytest.approx(0.0, abs=1e-12)
    assert mean_keypoint_displacement(kp, conf) > 0.0  # a confident jump counts
    assert math.isnan(mean_keypoint_displacement(kp[:1], conf[:1]))  # no consecutive pair


def test_legs_never_confident_is_upper_body_only() -> None:
    kp, conf = walking_clip()
    conf[:, LEGS] = 0.05
    d = decide(kp, conf, min_motion=0.02, min_lower_body=0.5)
    assert not d.keep
    assert d.lower_body == 0.0
    assert d.reason.startswith("upper_body_only: ")
    assert is_upper_body_only(conf)


def test_lower_body_fraction_counts_frames_with_a_person() -> None:
    _, conf = static_clip(frames=20)
    conf[:10, KNEES_ANKLES] = 0.0  # legs hidden in half the frames
    assert lower_body_visible_fraction(conf) == pytest.approx(0.5)
    conf[:, KNEES_ANKLES[1:]] = 0.0  # one knee is not enough
    assert lower_body_visible_fraction(conf) == 0.0
    _, conf = static_clip(frames=20)
    conf[:5] = 0.0  # nobody in 5 frames: not counted
    conf[5:10, KNEES_ANKLES] = 0.0
    assert lower_body_visible_fraction(conf) == pytest.approx(10 / 15)
    assert not is_upper_body_only(conf, min_fraction=0.6)
    assert is_upper_body_only(conf, min_fraction=0.7)
    hips_only = np.zeros((4, 18))
    hips_only[:, [1, 8, 11]] = 1.0
    assert lower_body_visible_fraction(hips_only) == 0.0


def test_no_confident_keypoint_is_no_person() -> None:
    kp, conf = walking_clip()
    d = decide(kp, np.full_like(conf, 0.1), min_motion=0.02, min_lower_body=0.5)
    assert not d.keep and d.reason.startswith("no_person: ")
    assert math.isnan(d.motion) and d.lower_body == 0.0
    d = decide(np.full_like(kp, np.nan), conf, min_motion=0.02, min_lower_body=0.5)
    assert d.reason.startswith("no_person: ")


def test_motion_filter_comes_before_upper_body() -> None:
    kp, conf = static_clip()
    conf[:, LEGS] = 0.0
    assert decide(kp, conf, min_motion=0.02, min_lower_body=0.5).reason.startswith("low_motion")
    assert decide(kp, conf, min_motion=0.0, min_lower_body=0.5).reason.startswith("upper_body_only")


def test_shapes_are_checked() -> None:
    with pytest.raises(ValueError, match=r"\[T,18\]"):
        lower_body_visible_fraction(np.ones((5, 17)))
    with pytest.raises(ValueError, match=r"\[T,18,2\]"):
        mean_keypoint_displacement(np.ones((5, 18, 3)), np.ones((5, 18)))
