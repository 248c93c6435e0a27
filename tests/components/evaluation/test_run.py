"""Person metrics over seeds: mean, spread and per-seed detail; null with the reason when no seed has a
value, no spread from one value."""

from __future__ import annotations

import pytest

from components.evaluation.metric_registry import MetricResult
from components.evaluation.run import over_seeds


def _r(value: float | None, frames: int = 9) -> MetricResult:
    if value is None:
        return MetricResult.unavailable("m", "no clips given", True, frames=None)
    return MetricResult("m", value, [value], True, {}, None, frames)


def test_mean_spread_frames_and_detail_per_seed():
    flat, detail = over_seeds("m", {0: _r(0.2), 1: _r(0.6), 2: _r(0.4)})
    assert flat["m"] == pytest.approx(0.4) and flat["m_sd"] == pytest.approx(0.2)
    assert flat["m_frames"] == 27 and "m_reason" not in flat and "m_sd_reason" not in flat
    assert detail["seeds"] == [0, 1, 2] and detail["per_seed"]["1"]["value"] == 0.6


def test_seeds_without_a_value_are_left_out_and_one_value_has_no_spread():
    flat, _ = over_seeds("m", {0: _r(0.3), 1: _r(None)})
    assert flat["m"] == pytest.approx(0.3) and flat["m_sd"] is None and "two seeds" in flat["m_sd_reason"]


def test_no_value_on_any_seed_is_null_with_the_reason():
    flat, detail = over_seeds("m", {0: _r(None), 1: _r(None)})
    assert flat["m"] is None and flat["m_reason"] == "no clips given" and detail["value"] is None
    assert "m_frames" not in flat
