"""Stage ``annotate``: kept ingest clips → keypoints, masks, tracks, captions, skeleton videos
(DVC cmd: ``python -m flows.annotate``)."""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from tqdm import tqdm

from components.annotation import annotate as an
from components.annotation.annotate import reuse_previous
from components.annotation.config import AnnotateParams
from components.annotation.stats import summarise
from components.config import load_section
from components.data.expectations import annotation_expectation_specs, ensure_valid, validate_table
from components.io.atomic import atomic_dir, write_text_atomic
from components.io.manifest import STATUS_KEPT, STATUS_QUARANTINED, read_manifest
from flows.stage import code_fingerprint, metrics_table, stage_main, stage_run, write_quarantine


def params_fingerprint(params: AnnotateParams) -> str:
    """Hash of everything that changes an annotation: the params (not where files go) and the code the
    stage declares in dvc.yaml, so a code change never reuses stale annotations."""
    data = params.model_dump(mode="json", exclude={"input", "output", "reports"})
    h = hashlib.sha256(json.dumps(data, sort_keys=True).encode())
    h.update(code_fingerprint("annotate").encode())
    return h.hexdigest()[:16]


@task(name="annotate-clip", retries=1, retry_delay_seconds=1, cache_policy=NO_CACHE)
def annotate_task(clip: dict, params: AnnotateParams, out_dir: Path, ann: an.Annotators) -> dict:
    row = an.annotate_clip(clip, params, params.input, out_dir, ann)
    if row["status"] != STATUS_KEPT:
        get_run_logger().warning("%s %s: %s", row["status"], row["clip_id"], row["reason"])
    return row


@flow(name="annotate", log_prints=True)
def annotate(params_path: str = "params.yaml", overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run the annotate stage over every kept ingest clip; returns its metrics."""
    params: AnnotateParams = load_section("annotate", params_path, overrides)
    t0 = time.perf_counter()
    manifest = read_manifest(params.input / "manifest.parquet")
    clips = manifest[manifest.status == STATUS_KEPT].to_dict("records")
    fingerprint = params_fingerprint(params)
    old_table = params.output / an.MANIFEST_FILE
    previous = pd.read_parquet(old_table).set_index("clip_id") if old_table.is_file() else None
    with stage_run("annotate", params) as run:
        ann = an.build_annotators(params)
        with atomic_dir(params.output) as out_tmp, atomic_dir(params.reports) as rep_tmp:
            rows, reused = [], 0
            for clip in tqdm(clips, desc="annotate", unit="clip", disable=None):
                row = reuse_previous(previous, clip, fingerprint, params.output, out_tmp)
                if row is not None:
                    reused += 1
                else:
                    row = annotate_task(clip, params, out_tmp, ann)
                rows.append({**row, "params_fingerprint": fingerprint})
            table = pd.DataFrame(rows)
            for col, dtype in an.ANNOTATION_COLUMNS.items():
                if col not in table:
                    table[col] = pd.Series([None] * len(table))
                table[col] = table[col].astype(dtype)
            table.to_parquet(out_tmp / an.MANIFEST_FILE, index=False)
            report = validate_table(
                table,
                annotation_expectation_specs(params.min_visible_tracks),
                rep_tmp / "data_docs",
                "annotate_table",
            )
            metrics = summarise(table, time.perf_counter() - t0)
            metrics["clips_reused"] = reused
            metrics["expectations_failed"] = len(report.failed)
            quarantine = table[table.status == STATUS_QUARANTINED][["clip_id", "reason"]].to_dict("records")
            write_quarantine(rep_tmp, quarantine)
            summary = _markdown(metrics)
            write_text_atomic(rep_tmp / "summary.md", summary)
            ensure_valid(report)
        create_table_artifact(
            key="annotate-dataset-statistics",
            table=[
                {"statistic": k, "value": v} for k, v in metrics.items() if not isinstance(v, dict | list)
            ],
            description="dataset statistics of the annotated clips (paper appendix C)",
        )
        run.finish(metrics, markdown=summary, artifacts=[params.output / an.MANIFEST_FILE])
    print(
        f"annotate: {metrics['clips_annotated']} kept, {metrics['clips_dropped_motion']} dropped (motion), "
        f"{metrics['clips_dropped_upper_body']} dropped (upper body), {metrics['quarantined']} quarantined"
    )
    return metrics


def _markdown(metrics: dict[str, Any]) -> str:
    return metrics_table("annotate", metrics)


if __name__ == "__main__":
    sys.exit(stage_main(annotate))
