"""The gate's rule, exactly: a rule passes only when the candidate improves on the champion by
strictly more than the margin, and a required metric missing on either side fails the gate."""

from __future__ import annotations

import math

import pytest

from components.registry.config import GateConfig, GateRule
from components.registry.gate import decide
from components.registry.promote import CHAMPION, aliases, client_for, promote


def _gate(direction: str, margin: float = 0.0, margin_type: str = "absolute") -> GateConfig:
    return GateConfig(
        rules=[GateRule(metric="fd", direction=direction, margin=margin, margin_type=margin_type)]
    )


@pytest.mark.parametrize("direction", ["lower", "higher"])
@pytest.mark.parametrize("margin_type", ["absolute", "relative"])
def test_a_tie_fails_at_margin_zero(direction, margin_type):
    d = decide({"fd": 12.5}, {"fd": 12.5}, _gate(direction, 0.0, margin_type))
    assert not d.promote
    assert d.rows[0].passed is False
    assert d.reason.startswith("rejected: fd 12.5 vs champion 12.5, a tie")
    assert ("< 12.5" if direction == "lower" else "> 12.5") in d.reason


def test_a_tie_passes_only_when_a_negative_margin_allows_it():
    assert decide({"fd": 12.5}, {"fd": 12.5}, _gate("lower", -0.1)).promote
    assert decide({"fd": 12.5}, {"fd": 12.5}, _gate("higher", -0.01, "relative")).promote
    # a positive margin: a gain equal to the margin is not more than it
    assert not decide({"fd": 12.0}, {"fd": 12.5}, _gate("lower", 0.5)).promote
    assert decide({"fd": 11.9}, {"fd": 12.5}, _gate("lower", 0.5)).promote
    # the smallest strict improvement passes at margin 0
    assert decide({"fd": math.nextafter(12.5, 0)}, {"fd": 12.5}, _gate("lower")).promote
    assert decide({"fd": math.nextafter(12.5, 99)}, {"fd": 12.5}, _gate("higher")).promote


def test_a_champion_of_zero_with_a_relative_margin_needs_a_strict_gain():
    assert not decide({"fd": 0.0}, {"fd": 0.0}, _gate("lower", -0.5, "relative")).promote
    assert decide({"fd": -0.001}, {"fd": 0.0}, _gate("lower", 0.0, "relative")).promote


GATE2 = GateConfig(
    rules=[
        GateRule(metric="fd", direction="lower"),
        GateRule(metric="smooth", direction="higher", margin=-0.01),
        GateRule(metric="jerk", direction="lower", required=False),
    ]
)


@pytest.mark.parametrize("missing", ["absent", "null", "nan"])
def test_a_required_metric_missing_on_either_side_fails_naming_it(missing):
    def without_smooth(values: dict) -> dict:
        out = dict(values)
        if missing == "absent":
            out.pop("smooth")
        else:
            out["smooth"] = None if missing == "null" else float("nan")
        return out

    full = {"fd": 10.0, "smooth": 0.9, "jerk": 1.0}
    better = {"fd": 9.0, "smooth": 0.95, "jerk": 0.5}
    assert decide(better, full, GATE2).promote  # the comparison itself would pass

    cand_side = decide(without_smooth(better), full, GATE2)
    assert not cand_side.promote
    assert "the candidate lacks required metric(s) smooth" in cand_side.reason

    champ_side = decide(better, without_smooth(full), GATE2)
    assert not champ_side.promote
    assert "the champion lacks required metric(s) smooth" in champ_side.reason
    row = next(r for r in champ_side.rows if r.metric == "smooth")
    assert row.passed is False and row.note == "champion lacks this metric"


def test_an_advisory_metric_missing_on_the_champion_does_not_block():
    d = decide({"fd": 9.0, "smooth": 0.95, "jerk": 0.5}, {"fd": 10.0, "smooth": 0.9}, GATE2)
    assert d.promote, d.reason
    assert next(r for r in d.rows if r.metric == "jerk").passed is None


# ------------------------------------------------------------------ the same through a real registry


def _version(uri: str, tags: dict[str, str]) -> str:
    client, _ = client_for(uri)
    try:
        client.get_registered_model("m")
    except Exception:
        client.create_registered_model("m")
    return str(client.create_model_version("m", source="s3://b/m", tags=tags).version)


def test_registry_tie_and_null_tags_never_move_the_champion(store):
    gate = GateConfig(rules=[GateRule(metric="fd_effnet_frames", direction="lower", margin=0.0)])
    client, _ = client_for(store)
    v1 = _version(store, {"metric.fd_effnet_frames": "12.5"})
    assert promote("m", v1, gate, tracking_uri=store).decision.promote
    tie = _version(store, {"metric.fd_effnet_frames": "12.5"})
    res = promote("m", tie, gate, tracking_uri=store)
    assert not res.decision.promote and "a tie" in res.decision.reason
    null = _version(store, {"metric.fd_effnet_frames": "null"})
    res = promote("m", null, gate, tracking_uri=store)
    assert (
        not res.decision.promote
        and "candidate lacks required metric(s) fd_effnet_frames" in res.decision.reason
    )
    assert aliases(client, "m")[CHAMPION] == v1
    # a champion whose metric is null cannot be beaten by the gate either
    client.set_model_version_tag("m", v1, "metric.fd_effnet_frames", "null")
    better = _version(store, {"metric.fd_effnet_frames": "1.0"})
    res = promote("m", better, gate, tracking_uri=store)
    assert not res.decision.promote
    assert "champion lacks required metric(s) fd_effnet_frames" in res.decision.reason
    assert aliases(client, "m")[CHAMPION] == v1
