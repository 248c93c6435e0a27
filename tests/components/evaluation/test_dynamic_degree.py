"""dynamic_degree: static clips are not dynamic, moving ones are; VBench's ~8 fps frame sampling."""

from __future__ import annotations

import numpy as np
import pytest

from components.evaluation.dynamic_degree import NAME, is_dynamic, vbench_frame_step
from components.evaluation.metric_registry import MetricContext, VideoSample, compute_metrics
from tests.components.evaluation.conftest import panning


def test_frame_step_targets_eight_fps():
    assert [vbench_frame_step(f) for f in (8, 12, 16, 24, 30, 60, 4)] == [1, 2, 2, 3, 4, 8, 1]


def test_static_is_zero_moving_is_one_and_the_value_is_the_share():
    rng = np.random.default_rng(0)
    still = np.repeat(panning(1, 64, 80)[:1], 8, axis=0)
    noisy_still = np.clip(still + rng.normal(0, 2, still.shape), 0, 255).astype(np.uint8)  # sensor noise
    moving = panning(8, 64, 80, speed=4)  # 4 px/frame > 6·64/256 = 1.5 px
    r = compute_metrics([NAME], [VideoSample(f, 8.0) for f in (still, noisy_still, moving)], MetricContext())[
        NAME
    ]
    assert r.per_video == [0.0, 0.0, 1.0]
    assert r.value == pytest.approx(1 / 3) and r.details["flow"] == "DIS (OpenCV)"


def test_sampling_at_eight_fps_sees_more_motion_per_step():
    # 1 px/frame is under the 1.5 px threshold at 8 fps, but at 32 fps VBench keeps every 4th frame (4 px)
    slow = panning(32, 64, 80, speed=1)
    assert is_dynamic(slow, 8.0) is False
    assert is_dynamic(slow, 32.0) is True
    assert is_dynamic(slow[:8], 32.0) is None  # 2 frames left after sampling
    r = compute_metrics([NAME], [VideoSample(slow[:8], 32.0)], MetricContext())[NAME]
    assert r.value is None and "no clip" in r.reason
