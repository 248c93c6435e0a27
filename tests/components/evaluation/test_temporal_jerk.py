"""temporal_jerk: third differences of known trajectories, ≈0 for constant velocity, larger when frames
are shuffled."""

from __future__ import annotations

import numpy as np
import pytest

from components.evaluation.metric_registry import MetricContext, VideoSample, compute_metrics
from components.evaluation.temporal_jerk import NAME, grid_stride, jerk_magnitudes
from tests.components.evaluation.conftest import moving_square


def test_jerk_of_polynomial_trajectories():
    t = np.arange(8, dtype=np.float64)
    vis = np.ones((8, 3), bool)
    pts = np.zeros((8, 3, 2))
    pts[:, 0, 0] = 5 + 2 * t  # constant velocity → 0
    pts[:, 1, 1] = 0.5 * t**2  # constant acceleration → 0
    pts[:, 2, 0] = t**3  # third difference of t³ is 3! = 6
    j = jerk_magnitudes(pts, vis).reshape(5, 3)
    np.testing.assert_allclose(j[:, :2], 0.0, atol=1e-9)
    np.testing.assert_allclose(j[:, 2], 6.0)
    vis[4, 2] = False  # a point hidden in frame 4 drops the four windows that contain it
    assert len(jerk_magnitudes(pts, vis)) == 15 - 4
    assert jerk_magnitudes(pts[:3], vis[:3]).size == 0


def test_grid_stride_caps_the_point_count():
    assert grid_stride(100, 400) == 4
    assert grid_stride(64 * 64 * 4, 100) == 13  # √(16384/100) = 12.8 → 13


def test_constant_velocity_is_near_zero_and_shuffling_raises_it():
    frames, masks = moving_square(10, 80, 112, velocity=(3, 1), side=48)
    order = np.random.default_rng(0).permutation(10)
    shuffled = VideoSample(frames[order], 8.0, person_mask=masks[order])
    steady = VideoSample(frames, 8.0, person_mask=masks)
    r = compute_metrics([NAME], [steady, shuffled], MetricContext())[NAME]
    s, sh = r.per_video
    diag = np.hypot(80, 112)  # values are per frame diagonal
    print(f"steady {s * diag:.3f} px/frame³, shuffled {sh * diag:.3f} px/frame³")
    assert s * diag < 0.1
    assert sh > 20 * s and sh * diag > 1.0
    assert r.higher_is_better is False and r.details["region"] == ["given mask", "given mask"]
    assert r.details["points"][0] > 20 and r.frames == 20


def test_tracks_start_at_the_first_frame_with_a_person_and_clips_need_four_frames():
    frames, masks = moving_square(8, 80, 112, velocity=(2, 0), side=48)
    masks[:3] = False
    late = compute_metrics([NAME], [VideoSample(frames, 8.0, person_mask=masks)], MetricContext())[NAME]
    assert late.per_video[0] == pytest.approx(0.0, abs=0.1 / np.hypot(80, 112))
    assert late.frames == 5  # the frames with a person region, not all 8
    nobody = VideoSample(frames, 8.0, person_mask=np.zeros_like(masks))
    short = VideoSample(frames[:3], 8.0, person_mask=masks[:3])
    r = compute_metrics([NAME], [nobody, short], MetricContext())[NAME]
    assert r.value is None and r.per_video == [None, None] and r.frames == 0
