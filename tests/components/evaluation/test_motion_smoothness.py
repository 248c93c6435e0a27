"""motion_smoothness: a steady pan interpolates well, the same frames shuffled do not."""

from __future__ import annotations

import numpy as np
import pytest

from components.data.quality import motion_smoothness_flowinterp
from components.evaluation.metric_registry import MetricContext, VideoSample, compute_metrics
from components.evaluation.motion_smoothness import NAME
from tests.components.evaluation.conftest import panning


def test_steady_motion_beats_shuffled_frames():
    smooth = panning(9, 64, 80, speed=2)
    shuffled = smooth[np.random.default_rng(0).permutation(9)]
    static = np.repeat(smooth[:1], 9, axis=0)
    r = compute_metrics([NAME], [VideoSample(f, 8.0) for f in (smooth, shuffled, static)], MetricContext())[
        NAME
    ]
    s, sh, st = r.per_video
    print(f"smooth {s:.4f}, shuffled {sh:.4f}, static {st:.4f}")
    assert st == pytest.approx(1.0, abs=1e-6)
    assert s > 0.95 and sh < s - 0.05
    assert all(0.0 <= v <= 1.0 for v in r.per_video) and r.higher_is_better
    assert r.value == pytest.approx(np.mean([s, sh, st]))
    assert "DIS" in r.details["interpolator"]


def test_it_is_the_ingest_score_and_short_clips_are_not_measured():
    clip = panning(5, 48, 64, speed=3, seed=2)
    r = compute_metrics([NAME], [VideoSample(clip, 8.0), VideoSample(clip[:2], 8.0)], MetricContext())[NAME]
    assert r.per_video[0] == pytest.approx(motion_smoothness_flowinterp(clip))
    assert r.per_video[1] is None and r.details["measured"] == 1
