"""The metric contract: sample validation, results, the registry and dispatcher, person regions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from components.evaluation import metric_registry as registry
from components.evaluation.metric_registry import (
    BUILTIN_METRIC_MODULES,
    MetricContext,
    MetricResult,
    VideoSample,
    available_metrics,
    boxes_to_mask,
    compute_metrics,
    evenly_spaced_indices,
    get_metric,
    register,
    skeleton_boxes,
)


def frames(t: int = 4, h: int = 16, w: int = 20) -> np.ndarray:
    return np.zeros((t, h, w, 3), np.uint8)


# --- VideoSample ------------------------------------------------------------------------------
def test_sample_accepts_full_inputs_and_normalises_dtypes():
    s = VideoSample(
        frames(),
        8.0,
        "a man walks",
        skeleton_keypoints=np.zeros((4, 18, 2), np.float64),
        skeleton_confidence=np.ones((4, 18)),
        person_mask=np.zeros((4, 16, 20), np.uint8),
        point_maps=np.zeros((4, 16, 20, 3), np.float32),
    )
    assert s.skeleton_keypoints.dtype == np.float32 and s.person_mask.dtype == bool
    assert s.num_frames == 4 and s.size == (16, 20) and s.has_skeleton


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"frames": np.zeros((4, 16, 20, 3), np.float32)}, "frames must be uint8"),
        ({"frames": np.zeros((4, 16, 20), np.uint8)}, "frames must be uint8"),
        ({"fps": 0.0}, "fps must be a positive"),
        ({"fps": float("nan")}, "fps must be a positive"),
        ({"skeleton_keypoints": np.zeros((4, 18, 2))}, "together"),
        ({"skeleton_keypoints": np.zeros((3, 18, 2)), "skeleton_confidence": np.ones((3, 18))}, "T=4"),
        ({"person_mask": np.zeros((4, 16, 21), bool)}, "person_mask must be"),
        ({"point_maps": np.zeros((4, 16, 20, 3), np.int32)}, "point_maps must be float"),
    ],
)
def test_sample_rejects_bad_inputs_naming_them(kwargs, message):
    args = {"frames": frames(), "fps": 8.0, "sample_id": "clip7", **kwargs}
    with pytest.raises(ValueError, match=message) as err:
        VideoSample(**args)
    assert "clip7" in str(err.value)


# --- MetricResult -----------------------------------------------------------------------------
def test_result_needs_a_reason_when_unmeasured_and_a_finite_value():
    with pytest.raises(ValueError, match="needs a reason"):
        MetricResult("m", None, [], True)
    with pytest.raises(ValueError, match="finite"):
        MetricResult("m", float("inf"), [], True)
    r = MetricResult.unavailable("m", "no model", False, model="x")
    assert r.value is None and r.reason == "no model" and r.details == {"model": "x"}


def test_from_per_video_averages_measured_values_only():
    r = MetricResult.from_per_video("m", [0.2, None, 0.6, float("nan")], True, source="test")
    assert r.value == pytest.approx(0.4)
    assert r.per_video == [0.2, None, 0.6, None]
    assert r.details == {"videos": 4, "measured": 2, "source": "test"}
    none = MetricResult.from_per_video("m", [None, None], True)
    assert none.value is None and "no clip" in none.reason
    d = r.as_dict()
    assert d["value"] == pytest.approx(0.4) and d["higher_is_better"] is True and d["reason"] is None


# --- registry and dispatcher ------------------------------------------------------------------
def test_every_builtin_module_registers_its_metric():
    names = available_metrics()
    assert set(BUILTIN_METRIC_MODULES) - {"fvd_i3d"} <= set(names)
    assert "fvd_i3d" in names and len(names) >= len(BUILTIN_METRIC_MODULES)


def test_unknown_metric_lists_the_known_ones_before_running_anything():
    calls = []

    @register("test_counter_metric")
    def counter(samples, ctx):
        calls.append(1)
        return MetricResult("test_counter_metric", 1.0, [], True)

    try:
        with pytest.raises(KeyError, match=r"unknown metric 'fvd'.*fd_effnet_frames"):
            compute_metrics(["test_counter_metric", "fvd"], [])
        assert calls == []  # the good metric before the bad name did not run
        with pytest.raises(KeyError, match="subject_consistency"):
            get_metric("nope")
    finally:
        registry._METRICS.pop("test_counter_metric")


def test_register_refuses_a_second_metric_under_a_taken_name():
    with pytest.raises(ValueError, match="already registered"):

        @register("dynamic_degree")
        def other(samples, ctx):  # pragma: no cover - never registered
            raise AssertionError


def test_dispatcher_runs_in_order_and_records_errors_with_the_direction():
    @register("test_boom", higher_is_better=False)
    def boom(samples, ctx):
        raise RuntimeError("kaput")

    @register("test_count")
    def count(samples, ctx):
        return MetricResult.from_per_video("test_count", [float(s.num_frames) for s in samples], True)

    try:
        samples = [VideoSample(frames(3), 8.0), VideoSample(frames(5), 8.0)]
        with pytest.raises(
            registry.MetricError, match="metric 'test_boom' failed: RuntimeError: kaput"
        ) as err:
            compute_metrics(["test_count", "test_boom"], samples)
        assert err.value.metric == "test_boom" and "evaluate.optional_metrics" in str(err.value)
        optional = compute_metrics(["test_count", "test_boom"], samples, optional={"test_boom"})
        assert optional["test_boom"].value is None and "RuntimeError: kaput" in optional["test_boom"].reason
        assert optional["test_count"].value == pytest.approx(4.0)
        with pytest.raises(KeyError, match="optional metrics \\['fvd'\\]"):
            compute_metrics(["test_count"], samples, optional={"fvd"})
        out = compute_metrics(["test_count", "test_boom"], samples, on_error="record")
        assert list(out) == ["test_count", "test_boom"]
        assert out["test_count"].value == pytest.approx(4.0)
        assert out["test_boom"].value is None and "RuntimeError: kaput" in out["test_boom"].reason
        assert out["test_boom"].higher_is_better is False
        with pytest.raises(TypeError, match="list of metric names"):
            compute_metrics("test_count", samples)
        with pytest.raises(ValueError, match="on_error"):
            compute_metrics(["test_count"], samples, on_error="ignore")
    finally:
        registry._METRICS.pop("test_boom")
        registry._METRICS.pop("test_count")


# --- context helpers --------------------------------------------------------------------------
def test_cached_builds_once_and_options_default():
    ctx = MetricContext(options={"m": {"k": 3}})
    built = []
    assert ctx.cached("x", lambda: built.append(1) or "v") == "v"
    assert ctx.cached("x", lambda: built.append(1) or "w") == "v"
    assert built == [1]
    assert ctx.option("m", "k", 0) == 3 and ctx.option("m", "other", 7) == 7 and ctx.option("z", "k", 1) == 1


def test_evenly_spaced_indices():
    assert evenly_spaced_indices(5, 16).tolist() == [0, 1, 2, 3, 4]
    assert evenly_spaced_indices(9, 3).tolist() == [0, 4, 8]
    assert evenly_spaced_indices(9, None).tolist() == list(range(9))
    with pytest.raises(ValueError, match="max_frames"):
        evenly_spaced_indices(9, 0)


def test_skeleton_boxes_pad_and_skip_unconfident_keypoints():
    kp = np.zeros((2, 18, 2))
    kp[0, :, 0] = np.linspace(10, 30, 18)  # x from 10 to 30
    kp[0, :, 1] = np.linspace(20, 60, 18)  # y from 20 to 60
    kp[0, 5] = (500, 500)  # an outlier with low confidence
    conf = np.ones((2, 18))
    conf[0, 5] = 0.1
    conf[1] = 0.0
    boxes = skeleton_boxes(kp, conf, padding=0.1)
    np.testing.assert_allclose(boxes[0], [8, 16, 32, 64])
    assert np.isnan(boxes[1]).all()
    mask = boxes_to_mask(boxes, 80, 40)
    assert mask[0, 16:65, 8:33].all() and mask[0].sum() == 49 * 25 and not mask[1].any()


def test_person_region_prefers_given_mask_then_skeleton_box():
    kp = np.tile(np.array([[4.0, 4.0], [10.0, 12.0]]), (3, 9, 1))
    with_mask = VideoSample(
        frames(3), 8.0, person_mask=np.ones((3, 16, 20), bool), skeleton_keypoints=kp,
        skeleton_confidence=np.ones((3, 18)),
    )  # fmt: skip
    region, source = MetricContext().person_region(with_mask)
    assert source == "given mask" and region.all()
    skel = VideoSample(frames(3), 8.0, skeleton_keypoints=kp, skeleton_confidence=np.ones((3, 18)))
    region, source = MetricContext().person_region(skel)
    assert source == "skeleton box"
    # box 4..10 × 4..12 padded by 10% of its size (0.6, 0.8 px) → columns 4..10, rows 4..12 (pixel centres)
    assert region[0, 4:13, 4:11].all() and region[0].sum() == 9 * 7


def test_per_sample_results_are_cached_until_cleared_and_models_stay():
    ctx = MetricContext()
    s = VideoSample(frames(3), 8.0)
    calls = []
    first = ctx._per_sample("k", s, lambda: calls.append(1) or np.ones(1))
    again = ctx._per_sample("k", s, lambda: calls.append(1) or np.zeros(1))
    assert calls == [1] and first is again and not math.isnan(float(first[0]))
    ctx.cached(("model", "m"), object)
    ctx.clear_sample_cache()
    assert list(ctx.cache) == [("model", "m")]
    ctx._per_sample("k", s, lambda: calls.append(1) or np.ones(1))
    assert calls == [1, 1]


def test_all_builtin_metrics_run_on_one_fully_annotated_clip(walk, ctx):
    frames, gt = walk
    T, H, W = gt.depth.shape
    u, v = np.meshgrid(np.arange(W), np.arange(H))
    rays = np.stack([u, v, np.ones_like(u)], -1) @ np.linalg.inv(gt.K).T
    with np.errstate(invalid="ignore"):  # backdrop pixels have infinite depth
        points = np.stack([(rays * gt.depth[t][..., None] - gt.t[t]) @ gt.R[t] for t in range(T)])
    sample = VideoSample(
        frames, 8.0, "a person walks", skeleton_keypoints=gt.keypoints2d,
        skeleton_confidence=gt.visible.astype(np.float32), person_mask=gt.mask,
        point_maps=points.astype(np.float32), sample_id="walk",
    )  # fmt: skip
    ctx.reference = [VideoSample(frames[::-1].copy(), 8.0), VideoSample(frames.copy(), 8.0)]
    names = available_metrics()
    out = compute_metrics(names, [sample], ctx)
    assert list(out) == names
    for name, r in out.items():
        assert isinstance(r, MetricResult) and r.name == name
        assert (r.value is None) == bool(r.reason), name
    unmeasured = {n for n, r in out.items() if r.value is None}
    assert unmeasured == {"fvd_i3d", "clipsim"}  # no I3D / CLIP model configured
    # the same frames in other orders (the reference holds them twice: the covariance estimate differs a bit)
    assert out["fd_effnet_frames"].value == pytest.approx(0.0, abs=0.05)
    assert out["fd_effnet_frames_reference"].value == pytest.approx(0.0, abs=1e-3)  # two equal halves
    assert out["subject_consistency"].value > 0.8 and out["skeleton_alignment_pck"].value > 0.7


def test_evaluate_samples_without_names_runs_every_registered_metric():
    from components.evaluation.run import evaluate_samples

    @register("test_frames_only")
    def frames_only(samples, ctx):
        return MetricResult.from_per_video("test_frames_only", [float(s.num_frames) for s in samples], True)

    try:
        samples = [VideoSample(frames(3), 8.0)]
        picked = evaluate_samples(["test_frames_only"], samples, [])
        assert list(picked) == ["test_frames_only"] and picked["test_frames_only"].value == 3.0
        every = evaluate_samples(None, samples, [])
        assert list(every) == available_metrics()
        assert {"fd_effnet_frames", "temporal_jerk", "test_frames_only"} <= set(every)
    finally:
        registry._METRICS.pop("test_frames_only", None)
        registry._DIRECTIONS.pop("test_frames_only", None)
