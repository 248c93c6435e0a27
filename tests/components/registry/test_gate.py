"""The promotion gate, pure: directions, absolute and relative margins, ties, missing metrics, the
first model, and config errors that name the problem."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from components.registry.config import GateConfig, GateRule
from components.registry.gate import decide

GATE = GateConfig(rules=[GateRule(metric="score", direction="higher")])


def test_higher_and_lower_with_absolute_and_relative_margins():
    gate = GateConfig(
        rules=[
            GateRule(metric="clip", direction="higher", margin=0.01),
            GateRule(metric="fd", direction="lower", margin=0.1, margin_type="relative"),
        ]
    )
    champ = {"clip": 0.30, "fd": 100.0}
    ok = decide({"clip": 0.311, "fd": 89.0}, champ, gate)
    assert ok.promote, ok.reason
    assert [r.threshold for r in ok.rows] == pytest.approx([0.31, 90.0])
    # improves clip, but fd 91 is not 10% below 100
    no = decide({"clip": 0.4, "fd": 91.0}, champ, gate)
    assert not no.promote
    assert "fd 91 vs champion 100" in no.reason and "< 90" in no.reason
    assert [r.passed for r in no.rows] == [True, False]
    # an improvement smaller than the absolute margin is not enough
    assert not decide({"clip": 0.305, "fd": 50.0}, champ, gate).promote


def test_negative_margin_tolerates_a_small_regression_and_ties_fail_at_zero_margin():
    tolerant = GateConfig(rules=[GateRule(metric="score", direction="higher", margin=-0.05)])
    assert decide({"score": 0.46}, {"score": 0.5}, tolerant).promote
    assert decide({"score": 0.5}, {"score": 0.5}, tolerant).promote
    assert not decide({"score": 0.44}, {"score": 0.5}, tolerant).promote
    assert not decide({"score": 0.5}, {"score": 0.5}, GATE).promote


def test_required_missing_metric_blocks_advisory_failure_does_not():
    gate = GateConfig(
        rules=[
            GateRule(metric="score", direction="higher"),
            GateRule(metric="jerk", direction="lower", required=False),
        ]
    )
    d = decide({"score": 0.9, "jerk": 5.0}, {"score": 0.5, "jerk": 1.0}, gate)
    assert d.promote and "advisory" in d.reason and "jerk" in d.reason
    for bad in ({}, {"score": None}, {"score": float("nan")}):
        d = decide({"jerk": 0.1, **bad}, {"score": 0.5, "jerk": 1.0}, gate)
        assert not d.promote and "lacks required metric(s) score" in d.reason
    # a champion without the required metric cannot be compared: the gate fails, naming it
    d = decide({"score": 0.1}, {"other": 1.0}, gate)
    assert not d.promote and "champion lacks required metric(s) score" in d.reason


def test_first_model_promoted_by_default_and_configurable():
    d = decide({"score": 0.1}, None, GATE)
    assert d.promote and "no champion" in d.reason
    assert d.rows[0].passed is None and d.rows[0].champion is None
    strict = GateConfig(rules=GATE.rules, promote_first=False)
    d = decide({"score": 0.1}, None, strict)
    assert not d.promote and "promote_first=false" in d.reason


def test_gate_config_errors_name_the_problem():
    with pytest.raises(ValidationError, match="rules"):
        GateConfig(rules=[])
    with pytest.raises(ValidationError, match=r"\['score'\] appear in more than one rule"):
        GateConfig(
            rules=[{"metric": "score", "direction": "higher"}, {"metric": "score", "direction": "lower"}]
        )
    with pytest.raises(ValidationError, match="direction"):
        GateConfig(rules=[{"metric": "score", "direction": "up"}])
    with pytest.raises(ValidationError, match="margin_typ"):
        GateConfig(rules=[{"metric": "score", "direction": "higher", "margin_typ": "relative"}])
