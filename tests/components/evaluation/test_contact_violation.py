"""contact_violation: the share of frames with a human point inside the scene hull, on point maps with a
known answer; None without point maps."""

from __future__ import annotations

import numpy as np
import pytest

from components.evaluation.contact_violation import NAME
from components.evaluation.metric_registry import MetricContext, VideoSample, compute_metrics
from tests.components.evaluation.conftest import point_maps

T, H, W = 4, 16, 16


def cube_surface(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` points on the surface of the unit cube [0, 1]³."""
    p = rng.random((n, 3))
    axis = rng.integers(0, 3, n)
    p[np.arange(n), axis] = rng.integers(0, 2, n)
    return p


def scene(penetrating_frames: tuple[int, ...], depth: float = 0.5) -> VideoSample:
    """Point maps: the top two rows are a person standing beside a unit cube (x ≈ 2); in
    ``penetrating_frames`` one of the person's points is pushed ``depth`` into the cube."""
    rng = np.random.default_rng(0)
    points = np.empty((T, H, W, 3), np.float32)
    mask = np.zeros((T, H, W), bool)
    mask[:, :2] = True
    for t in range(T):
        points[t, 2:] = cube_surface((H - 2) * W, rng).reshape(H - 2, W, 3)
        points[t, :2] = np.array([2.0, 0.5, 0.5]) + 0.1 * rng.standard_normal((2, W, 3))
        if t in penetrating_frames:
            points[t, 0, 3] = (1.0 - depth, 0.5, 0.5)  # `depth` inside the face x = 1
    frames = np.zeros((T, H, W, 3), np.uint8)
    return VideoSample(frames, 8.0, person_mask=mask, point_maps=points)


def test_share_of_penetrating_frames():
    samples = [scene(()), scene((2,)), scene((0, 1, 3))]
    r = compute_metrics([NAME], samples, MetricContext())[NAME]
    assert r.per_video == pytest.approx([0.0, 0.25, 0.75])
    assert r.value == pytest.approx(1 / 3) and r.higher_is_better is False
    assert r.details["method"].startswith("convex hull") and r.details["region"] == ["given mask"] * 3


def test_tolerance_forgives_shallow_penetration():
    s = [scene((1,), depth=0.05)]
    assert compute_metrics([NAME], s, MetricContext())[NAME].value == pytest.approx(0.25)
    tolerant = MetricContext(options={NAME: {"tau": 0.1}})
    assert compute_metrics([NAME], s, tolerant)[NAME].value == 0.0


def test_invalid_points_are_ignored():
    s = scene((2,))
    s.point_maps[:, 5, :4] = np.nan  # no depth there
    assert compute_metrics([NAME], [s], MetricContext())[NAME].value == pytest.approx(0.25)


def test_none_without_point_maps_or_a_3d_scene():
    plain = VideoSample(np.zeros((T, H, W, 3), np.uint8), 8.0)
    r = compute_metrics([NAME], [plain], MetricContext())[NAME]
    assert r.value is None and "no point maps" in r.reason
    flat = scene(())
    flat.point_maps[:, 2:, :, 1] = 0.0  # the scene is a floor only: no 3D hull
    r = compute_metrics([NAME], [flat, plain], MetricContext())[NAME]
    assert r.value is None and r.per_video == [None, None]


def test_no_person_in_any_frame_is_null_with_a_reason_never_a_perfect_score():
    """The scene and point maps are there but the mask is empty everywhere (nobody was detected): there
    is nothing to measure, so no value — the old code reported 0.0, a perfect score."""
    empty = scene((1, 2))
    empty.person_mask[:] = False
    r = compute_metrics([NAME], [empty], MetricContext())[NAME]
    assert r.value is None and "no person found in any of the 4 frames" in r.reason
    assert r.frames == 0


def test_only_frames_with_a_person_are_measured_and_counted():
    s = scene((1,))
    s.person_mask[2:] = False  # the person is found in frames 0 and 1 only; frame 1 penetrates
    s.point_maps[2:, :2] = np.nan  # ... and the rows where it stood hold no scene points either
    r = compute_metrics([NAME], [s, scene(())], MetricContext())[NAME]
    assert r.per_video == pytest.approx([0.5, 0.0])  # 1 of 2 measured frames, not 1 of 4
    assert r.frames == 2 + 4


def test_rendered_person_is_measured_and_blank_frames_are_not(walk):
    """Real inputs, person detected by MediaPipe (no mask given): a rendered walk with its exact point
    maps is measured on the frames where the walker is found; the same scene geometry behind blank
    frames (nobody to detect) has no value and 0 frames — the old code scored it 0.0, a perfect score."""
    frames, gt = walk
    points = point_maps(gt)
    person = VideoSample(frames, 8.0, point_maps=points, sample_id="walk")
    blank = VideoSample(np.zeros_like(frames), 8.0, point_maps=points, sample_id="blank")
    ctx = MetricContext()
    nobody = compute_metrics([NAME], [blank], ctx)[NAME]
    assert nobody.value is None and nobody.frames == 0
    assert (
        nobody.reason
        == f"no person found in any of the {len(frames)} frames with point maps (nothing to measure)"
    )
    both = compute_metrics([NAME], [person, blank], ctx)[NAME]
    assert both.value is not None and 0.0 <= both.value <= 1.0
    assert both.per_video[1] is None and both.per_video[0] == pytest.approx(both.value)
    assert 0 < both.frames <= len(frames)
    assert both.details["region"] == ["detected mask (mediapipe)"] * 2
