"""`mosa ingest` end to end: real Prefect (ephemeral API), real MLflow (sqlite), real GX, real videos.

Each CLI call runs in its own working directory, so mlflow.db and .prefect/ land in tmp_path.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import BAD_REASONS, GOOD, build_mixed_folder

REPO = Path(__file__).resolve().parents[2]
MOSA = str(Path(sys.executable).with_name("mosa"))


def _env(cwd: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_"))}
    env["PREFECT_HOME"] = str(cwd / ".prefect")
    env["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "180"
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    env["MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING"] = "false"
    return env


def _mosa(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([MOSA, *args], cwd=cwd, env=_env(cwd), capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def ingested(tmp_path_factory):
    """One `mosa ingest` run over the mixed folder (shared by the assertions below)."""
    base = tmp_path_factory.mktemp("flow")
    root = build_mixed_folder(base)
    work = base / "work"
    work.mkdir()
    # Lenient quality thresholds: this test is about quarantine, not the quality filter.
    (work / "params.yaml").write_text(
        textwrap.dedent(
            """
            ingest:
              sources: [{kind: demo, videos: [sports2d/demo]}]
              clip: {frames: 17, stride: 17, fps: 16, height: 64, width: 96}
              quality: {min_motion_smoothness: 0.0, min_sharpness: 0.0, max_exposure_clipped: 1.0}
            """
        )
    )
    proc = _mosa(work, "ingest", "--input", str(root), "--output", "out")
    return work, proc


def test_cli_exits_zero_and_reports(ingested):
    _work, proc = ingested
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "4 kept" in proc.stdout + proc.stderr


def test_every_good_clip_kept_every_bad_file_quarantined(ingested):
    work, _ = ingested
    out = work / "out"
    manifest = pd.read_parquet(out / "manifest.parquet")
    kept = manifest[manifest.status == "kept"]
    assert set(kept.source) == set(GOOD) and len(kept) == 4
    assert all((out / p).is_file() for p in kept.clip_path)
    lines = (out / "reports" / "quarantine.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert {r["source"]: r["reason"] for r in records} == BAD_REASONS
    metrics = json.loads((out / "reports" / "metrics.json").read_text())
    assert metrics["clips_kept"] == 4 and metrics["quarantined"] == len(BAD_REASONS)
    for key in (
        "sources",
        "videos_seen",
        "clips_total",
        "clips_kept",
        "clips_filtered",
        "quarantined",
        "seconds",
    ):
        assert key in metrics
    assert (out / "reports" / "data_docs" / "index.html").is_file()
    assert not (work / "metrics" / "ingest.json").exists()  # CLI runs never touch the DVC metrics


def test_mlflow_run_recorded_with_params_and_metrics(ingested):
    work, _ = ingested
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{work / 'mlflow.db'}")
    exp = client.get_experiment_by_name("mosa")
    runs = client.search_runs([exp.experiment_id], filter_string="tags.stage = 'ingest'")
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.params["clip.frames"] == "17"
    assert run.data.metrics["clips_kept"] == 4.0
    assert run.data.metrics["quarantined"] == float(len(BAD_REASONS))
    assert run.data.tags["git_commit"]


def test_prefect_flow_run_named_ingest_recorded(ingested):
    work, _ = ingested
    script = textwrap.dedent(
        """
        import asyncio
        from prefect.client.orchestration import get_client
        from prefect.client.schemas import filters as f
        from prefect.client.schemas.sorting import FlowRunSort

        # prefect 3.8 with fastapi<0.155 rejects explicit nulls for limit/sort/filters: pass them all
        async def main():
            async with get_client() as c:
                runs = await c.read_flow_runs(
                    flow_filter=f.FlowFilter(name=f.FlowFilterName(any_=["ingest"])),
                    sort=FlowRunSort.START_TIME_DESC, limit=50, offset=0,
                )
                print([r.state_type.value for r in runs])
                resp = await c.request("POST", "/artifacts/filter", json={"limit": 50, "offset": 0})
                print(sorted({a["key"] for a in resp.json() if a["key"]}))

        asyncio.run(main())
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=work, env=_env(work), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    states, keys = proc.stdout.strip().splitlines()[-2:]
    assert states == "['COMPLETED']"
    assert "ingest-summary" in keys


def test_failing_suite_fails_the_run_and_keeps_previous_outputs(ingested, tmp_path):
    work, _ = ingested
    before = (work / "out" / "manifest.parquet").read_bytes()
    bad_only = tmp_path / "bad_only"
    bad_only.mkdir()
    (bad_only / "a.mp4").write_text("not a video")
    proc = _mosa(work, "ingest", "--input", str(bad_only), "--output", "out")
    assert proc.returncode == 1
    assert "expect_column_distinct_values_to_contain_set(status)" in proc.stderr
    assert (work / "out" / "manifest.parquet").read_bytes() == before
    assert (work / "out" / "reports-failed" / "data_docs" / "index.html").is_file()
    assert not list((work).glob(".out.*"))  # no temp folders left behind


def test_bad_params_named(tmp_path):
    (tmp_path / "params.yaml").write_text(
        "ingest:\n  sources: [{kind: demo, videos: [sports2d/demo]}]\n  clp: {}\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "flows.ingest", "--params", str(tmp_path / "params.yaml")],
        cwd=REPO,
        env={**_env(tmp_path), "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    assert "ingest.clp: unknown key" in proc.stderr
