"""``python -m flows.evaluate`` fails (exit 1, the metric and its error on stderr) when a metric that is
not in ``evaluate.optional_metrics`` raises; the params section accepts that list."""

from __future__ import annotations

import pytest

from components.config import ConfigError, validate_section
from components.evaluation.registry import MetricError
from flows import evaluate as ev


def test_a_failing_metric_exits_1_naming_it(monkeypatch, capsys):
    def failing_flow(flow, argv=None):
        raise MetricError("temporal_jerk", ValueError("tracks disagree in length"))

    monkeypatch.setattr(ev, "stage_main", failing_flow)
    assert ev.main([]) == 1
    err = capsys.readouterr().err
    assert "metric 'temporal_jerk' failed: ValueError: tracks disagree in length" in err
    assert "evaluate.optional_metrics" in err


def test_optional_metrics_param_is_a_list_of_names():
    assert validate_section("evaluate", {}).optional_metrics == []
    assert validate_section("evaluate", {"optional_metrics": ["clipsim"]}).optional_metrics == ["clipsim"]
    with pytest.raises(ConfigError, match="optional_metrics"):
        validate_section("evaluate", {"optional_metrics": "clipsim"})
