"""`python -m flows.register` (the DVC cmd) twice in a project folder: real Prefect (ephemeral API),
real MLflow (sqlite), a tiny real pipeline. Each run appends exactly one record to the promotion log,
earlier lines stay byte-identical, and the record is also a version tag and a run artifact. The second
run registers the same model with the same metrics: a tie, so the gate rejects it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import mlflow
import pytest
import torch

from components.registry.history import RECORD_KEYS, RECORD_TAG_PREFIX
from components.registry.promote import CHAMPION, aliases, client_for

REPO = Path(__file__).resolve().parents[2]
EARLIER = (
    '{"time": "2020-01-01T00:00:00.000000+00:00", "model_name": "mosa-dit", "version": "0", '
    '"decision": "manual", "champion_before": null, "champion_after": "0", "reason": "kept from an '
    'earlier machine", "rules": []}\n'
)


def _env(cwd: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_"))}
    env.update(
        PYTHONPATH=str(REPO),
        PREFECT_HOME=str(cwd / ".prefect"),
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="180",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING="false",
        HF_HUB_OFFLINE="1",
    )
    return env


def _register(work: Path) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "flows.register"],
        cwd=work,
        env=_env(work),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads((work / "metrics" / "register.json").read_text())


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    from tests.helpers.tiny_pipeline import build_tiny_pipeline

    torch.set_num_threads(1)
    cached = tmp_path_factory.getbasetemp() / "registry-tiny-pipeline"  # shared with the registry tests
    if not (cached / "config.json").is_file():
        build_tiny_pipeline(cached, seed=0)
    work = tmp_path_factory.mktemp("register-flow")
    shutil.copytree(cached, work / "models" / "dit")
    (work / "metrics").mkdir()
    evaluation = {"fd_effnet_frames": 12.5, "motion_smoothness": 0.9, "subject_consistency": 0.8}
    (work / "metrics" / "evaluate.json").write_text(json.dumps(evaluation))
    (work / "params.yaml").write_text(
        textwrap.dedent(
            """
            register:
              gate:
                rules:
                  - {metric: fd_effnet_frames, direction: lower, margin: 0.0}
                  - {metric: motion_smoothness, direction: higher, margin: -0.01}
            """
        )
    )
    log = work / "reports" / "register" / "promotions.jsonl"
    log.parent.mkdir(parents=True)
    log.write_text(EARLIER)
    return work


def _check_run(work: Path, before: bytes, metrics: dict) -> dict:
    """One record appended after ``before``; it is also a tag of the version and the run's artifact."""
    log = work / "reports" / "register" / "promotions.jsonl"
    after = log.read_bytes()
    assert after.startswith(before)
    added = after[len(before) :].decode()
    assert added.count("\n") == 1
    rec = json.loads(added)
    assert tuple(rec) == RECORD_KEYS
    version = str(metrics["model_version"])
    assert (rec["model_name"], rec["version"], rec["decision"]) == ("mosa-dit", version, metrics["decision"])
    assert (rec["champion_before"], rec["champion_after"]) == (
        metrics["champion_before"],
        metrics["champion_after"],
    )
    assert rec["reason"] == metrics["reason"]
    assert [r["metric"] for r in rec["rules"]] == ["fd_effnet_frames", "motion_smoothness"]

    uri = f"sqlite:///{work / 'mlflow.db'}"
    client, _ = client_for(uri)
    mv = client.get_model_version("mosa-dit", version)
    kept = [json.loads(v) for k, v in mv.tags.items() if k.startswith(RECORD_TAG_PREFIX)]
    assert kept == [rec]
    assert mv.tags["gate.decision"] == rec["decision"]
    run_id = mv.run_id
    assert client.get_run(run_id).info.run_name == "register"
    local = mlflow.artifacts.download_artifacts(
        run_id=run_id,
        artifact_path="promotions.jsonl",
        dst_path=str(work / f"dl-{version}"),
        tracking_uri=uri,
    )
    assert Path(local).read_bytes() == after
    assert (work / "reports" / "register" / "decision.md").is_file()
    return rec


def test_each_register_run_appends_one_record_kept_in_mlflow(work):
    log = work / "reports" / "register" / "promotions.jsonl"
    before = log.read_bytes()
    first = _register(work)
    rec = _check_run(work, before, first)
    assert rec["decision"] == "promoted" and rec["champion_after"] == rec["version"] == "1"

    before = log.read_bytes()
    second = _register(work)  # the same model and metrics again: a tie on fd_effnet_frames
    rec = _check_run(work, before, second)
    assert rec["decision"] == "rejected" and not second["promoted"]
    assert "fd_effnet_frames 12.5 vs champion 12.5, a tie" in rec["reason"]
    assert (rec["champion_before"], rec["champion_after"]) == ("1", "1")
    client, _ = client_for(f"sqlite:///{work / 'mlflow.db'}")
    assert aliases(client, "mosa-dit")[CHAMPION] == "1"
    assert log.read_text().startswith(EARLIER) and len(log.read_text().splitlines()) == 3
