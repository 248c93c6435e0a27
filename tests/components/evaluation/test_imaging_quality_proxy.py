"""imaging_quality_proxy: sharp > blurred, well exposed > clipped, in [0, 1], resolution-independent."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from components.evaluation.imaging_quality_proxy import NAME, imaging_quality, to_work_size
from components.evaluation.metric_registry import MetricContext, VideoSample, compute_metrics
from tests.components.evaluation.conftest import panning


def test_sharp_beats_blurred_and_well_exposed_beats_clipped():
    sharp = np.repeat(panning(4, 96, 128)[..., :1], 3, axis=-1)  # grey, so clipping shows in the grey level
    blurred = np.stack([cv2.GaussianBlur(f, (0, 0), 3.0) for f in sharp])
    clipped = np.clip(sharp.astype(np.int16) * 3 - 200, 0, 255).astype(np.uint8)  # crushed and blown
    flat = np.full_like(sharp, 128)
    r = compute_metrics(
        [NAME], [VideoSample(f, 8.0) for f in (sharp, blurred, clipped, flat)], MetricContext()
    )[NAME]
    s, b, c, f = r.per_video
    print(f"sharp {s:.3f} blurred {b:.3f} clipped {c:.3f} flat {f:.3f}")
    assert min(r.per_video) >= 0.0 and max(r.per_video) <= 1.0
    assert s > 0.8 and b < s - 0.3 and c < s - 0.2 and f == pytest.approx(0.0)
    assert "laplacian" in r.details["what"] and "clipped" in r.details["what"]


def test_large_frames_are_scored_at_a_256_px_short_side():
    big = np.kron(panning(3, 96, 128), np.ones((4, 4, 1), np.uint8))  # 384×512, same content
    assert to_work_size(big).shape == (3, 256, 341, 3)
    small = panning(3, 96, 128)
    assert to_work_size(small) is small
    assert 0.0 < imaging_quality(big) < 1.0


def test_clips_under_three_frames_are_not_measured():
    r = compute_metrics([NAME], [VideoSample(panning(2, 32, 32), 8.0)], MetricContext())[NAME]
    assert r.value is None and r.per_video == [None]
