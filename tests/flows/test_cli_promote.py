"""`mosa promote` and `mosa rollback` on a real sqlite registry: they move the aliases and append
`manual` / `rejected` / `rollback` records to the promotion log without touching earlier lines."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import pytest

from components.registry.history import RECORD_KEYS, RECORD_TAG_PREFIX
from components.registry.promote import CHAMPION, PREVIOUS, aliases, client_for
from flows.cli import main

LOG = Path("reports/register/promotions.jsonl")


@pytest.fixture
def project(tmp_path, monkeypatch, empty_store) -> str:
    """A folder with params.yaml (gate: score higher, margin 0) and a fresh store; returns its URI."""
    monkeypatch.chdir(tmp_path)
    shutil.copy(empty_store, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    (tmp_path / "params.yaml").write_text(
        textwrap.dedent(
            """
            register:
              model_name: mosa-dit
              gate:
                rules: [{metric: score, direction: higher, margin: 0.0}]
            """
        )
    )
    client, _ = client_for(uri)
    client.create_registered_model("mosa-dit")
    for score in (0.5, 0.7, 0.4):
        client.create_model_version("mosa-dit", "s3://b/m", tags={"metric.score": repr(score)})
    return uri


def _records() -> list[dict]:
    return [json.loads(line) for line in LOG.read_text().splitlines()]


def test_promote_and_rollback_append_manual_rejected_and_rollback(project, capsys):
    client, _ = client_for(project)
    assert main(["promote", "1"]) == 0
    assert main(["promote", "2"]) == 0
    first = LOG.read_bytes()
    assert main(["promote", "3"]) == 1  # 0.4 < 0.7: the gate refuses, the command says so
    assert aliases(client, "mosa-dit") == {CHAMPION: "2", PREVIOUS: "1"}
    assert main(["rollback"]) == 0
    assert aliases(client, "mosa-dit") == {CHAMPION: "1"}
    out = capsys.readouterr().out
    assert "promote: rejected" in out and "rollback: mosa-dit champion v2 -> v1" in out
    assert LOG.read_bytes().startswith(first)
    recs = _records()
    assert all(tuple(r) == RECORD_KEYS for r in recs)
    assert [(r["version"], r["decision"], r["champion_before"], r["champion_after"]) for r in recs] == [
        ("1", "manual", None, "1"),
        ("2", "manual", "1", "2"),
        ("3", "rejected", "2", "2"),
        ("1", "rollback", "2", "1"),
    ]
    assert recs[2]["rules"][0]["passed"] is False and "score 0.4 vs champion 0.7" in recs[2]["reason"]
    tags = client.get_model_version("mosa-dit", "1").tags
    kept = [json.loads(v) for k, v in sorted(tags.items()) if k.startswith(RECORD_TAG_PREFIX)]
    assert kept == [recs[0], recs[3]]


def test_promote_force_moves_the_champion_over_the_gate_and_says_so(project):
    client, _ = client_for(project)
    assert main(["promote", "2"]) == 0
    assert main(["promote", "3", "--force"]) == 0
    assert aliases(client, "mosa-dit") == {CHAMPION: "3", PREVIOUS: "2"}
    rec = _records()[-1]
    assert (rec["decision"], rec["champion_before"], rec["champion_after"]) == ("manual", "2", "3")
    assert "by hand over the gate" in rec["reason"] and "score 0.4 vs champion 0.7" in rec["reason"]
    assert client.get_model_version("mosa-dit", "3").tags["gate.decision"] == "manual"


def test_rollback_without_history_exits_2_and_logs_nothing(project, capsys):
    assert main(["rollback"]) == 2
    assert "nothing to roll back to" in capsys.readouterr().err
    assert not LOG.exists()
