"""The Prefect flows `promote` and `rollback` (flows/promote.py) on a real sqlite registry and a real
(ephemeral) Prefect API: the same records as `mosa promote` / `mosa rollback` land in the promotion
log, a rejection fails the flow run (its record kept), and the `promote` run publishes its decision."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from components.registry.history import RECORD_KEYS
from components.registry.promote import CHAMPION, PREVIOUS, aliases, client_for

REPO = Path(__file__).resolve().parents[2]

SCRIPT = """
import json
import httpx
from prefect import get_client
from flows.promote import PromotionRejected, promote, rollback

out = {}
promote(1)
promote(version=2, model_name="mosa-dit")
try:
    promote(3)
except PromotionRejected as exc:
    out["rejected"] = str(exc)
out["rollback"] = rollback()
with get_client(sync_client=True) as client:  # its API; raw requests: the pinned server refuses nulls
    api = str(client.api_url).rstrip("/")
runs = httpx.post(f"{api}/flow_runs/filter", json={}).json()
out["states"] = sorted(r["state_type"] for r in runs)
arts = httpx.post(f"{api}/artifacts/filter", json={}).json()
out["artifacts"] = sorted({a["key"] for a in arts if a["key"]})
print("RESULT " + json.dumps(out, default=str))
"""


@pytest.fixture
def project(tmp_path, empty_store) -> Path:
    """params.yaml (gate: score higher, margin 0) and a fresh store with versions scoring 0.5, 0.7, 0.4."""
    shutil.copy(empty_store, tmp_path / "mlflow.db")
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
    client, _ = client_for(f"sqlite:///{tmp_path / 'mlflow.db'}")
    client.create_registered_model("mosa-dit")
    for score in (0.5, 0.7, 0.4):
        client.create_model_version("mosa-dit", "s3://b/m", tags={"metric.score": repr(score)})
    return tmp_path


def test_promote_and_rollback_flows_log_like_the_cli(project):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_"))}
    env.update(
        PYTHONPATH=str(REPO),
        PREFECT_HOME=str(project / ".prefect"),
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="180",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        MLFLOW_TRACKING_URI=f"sqlite:///{project / 'mlflow.db'}",
    )
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=project, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(proc.stdout.split("RESULT ", 1)[1])

    client, _ = client_for(f"sqlite:///{project / 'mlflow.db'}")
    assert aliases(client, "mosa-dit") == {CHAMPION: "1"}  # 1, 2 promoted; 3 rejected; rolled back to 1
    assert (
        "mosa-dit v3 not promoted" in result["rejected"] and "score 0.4 vs champion 0.7" in result["rejected"]
    )
    assert result["rollback"]["decision"] == "rollback" and result["rollback"]["champion_after"] == "1"
    assert result["states"] == ["COMPLETED", "COMPLETED", "COMPLETED", "FAILED"]
    assert result["artifacts"] == ["promote-decision"]
    log = project / "reports" / "register" / "promotions.jsonl"
    recs = [json.loads(line) for line in log.read_text().splitlines()]
    assert all(tuple(r) == RECORD_KEYS for r in recs)
    assert [(r["version"], r["decision"], r["champion_before"], r["champion_after"]) for r in recs] == [
        ("1", "manual", None, "1"),
        ("2", "manual", "1", "2"),
        ("3", "rejected", "2", "2"),
        ("1", "rollback", "2", "1"),
    ]
    assert PREVIOUS not in aliases(client, "mosa-dit")
