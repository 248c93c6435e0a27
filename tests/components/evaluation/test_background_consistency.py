"""background_consistency: 1.0 for a static shot, the person painted out, a moving camera scores lower."""

from __future__ import annotations

import numpy as np
import pytest

from components.evaluation.background_consistency import NAME, dilation_pixels, remove_person
from components.evaluation.metric_registry import VideoSample, compute_metrics
from components.evaluation.subject_consistency import NEUTRAL_GREY
from tests.components.evaluation.conftest import composite, panning


def test_person_is_painted_out_with_a_margin():
    frames = np.full((2, 100, 120, 3), 10, np.uint8)
    region = np.zeros((2, 100, 120), bool)
    region[0, 40:50, 50:60] = True
    out = remove_person(frames, region)
    r = dilation_pixels(100, 120)
    assert r == 3
    assert (out[0, 40 - r : 50 + r, 55] == NEUTRAL_GREY).all() and out[0, 40 - r - 1, 55, 0] == 10
    assert (out[1] == 10).all() and (frames == 10).all()  # other frame and the input untouched


def test_static_shot_scores_one(ctx):
    frames = np.repeat(panning(1, 64, 80)[:1], 5, axis=0)
    r = compute_metrics([NAME], [VideoSample(frames, 8.0, person_mask=np.zeros((5, 64, 80), bool))], ctx)[
        NAME
    ]
    assert r.value == pytest.approx(1.0, abs=1e-5) and r.details["features"] == "efficientnet-lite0"


def test_background_score_follows_the_background_not_the_subject(ctx, scenes):
    a, b = scenes["subject_a"], scenes["subject_b"]
    car, walk = scenes["car"], scenes["walk"]
    clips = {
        "person_moves": composite([car] * 6, [a] * 6),
        "subject_flicker": composite([car] * 6, [a, b] * 3),
        "background_cut": composite([car] * 3 + [walk] * 3, [a] * 6),
    }
    samples = [VideoSample(f, 8.0, person_mask=m) for f, m in clips.values()]
    r = compute_metrics([NAME], samples, ctx)[NAME]
    v = dict(zip(clips, r.per_video, strict=True))
    print({k: round(x, 4) for k, x in v.items()})
    assert v["person_moves"] > 0.9 and v["subject_flicker"] == pytest.approx(v["person_moves"], abs=1e-6)
    assert v["background_cut"] < v["person_moves"] - 0.1
    assert r.details["region"] == ["given mask"] * 3


def test_single_frame_clip_is_not_measured(ctx):
    r = compute_metrics([NAME], [VideoSample(panning(1, 32, 32), 8.0)], ctx)[NAME]
    assert r.value is None and r.per_video == [None]
