"""Ingest throughput on the default demo sources: clips/s of the clipping work alone, and of the
whole stage as DVC runs it (Prefect ephemeral API, MLflow run, GX suite included)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from components.config import load_params, validate_section
from components.data import ingest as ing

REPO = Path(__file__).resolve().parents[1]


def run(params_path: Path = REPO / "params.yaml") -> dict:
    raw = load_params(params_path)["ingest"]
    with tempfile.TemporaryDirectory(prefix="mosa-bench-") as tmp:
        tmp = Path(tmp)
        params = validate_section("ingest", {**raw, "output": str(tmp / "out"), "reports": str(tmp / "rep")})
        t0 = time.perf_counter()
        rows = [r for p in ing.plan(params) for r in ing.process(p, params, tmp / "out")]
        work_s = time.perf_counter() - t0
        clips = sum(r["status"] != "quarantined" for r in rows)

        stage_dir = tmp / "stage"
        stage_dir.mkdir()
        (stage_dir / "params.yaml").write_text(yaml.safe_dump({"ingest": raw}))
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "PREFECT_HOME": str(stage_dir / ".prefect"),
            "MLFLOW_TRACKING_URI": f"sqlite:///{stage_dir / 'mlflow.db'}",
        }
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "flows.ingest"], cwd=stage_dir, env=env, check=True, capture_output=True
        )
        stage_s = time.perf_counter() - t0
        metrics = json.loads((stage_dir / "metrics" / "ingest.json").read_text())
    return {
        "videos": len({r["source"] for r in rows}),
        "clips": clips,
        "clipping_seconds": round(work_s, 2),
        "clipping_clips_per_s": round(clips / work_s, 2),
        "stage_seconds": round(stage_s, 2),
        "stage_clips_per_s": round(metrics["clips_total"] / stage_s, 2),
    }
