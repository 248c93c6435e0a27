"""Stage ``ingest``: sources → clips + manifest (DVC cmd: ``python -m flows.ingest``)."""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from tqdm import tqdm

from components.config import load_section, validate_section
from components.data import ingest as ing
from components.data.config import IngestParams
from components.data.expectations import ManifestLimits, ensure_valid, validate_manifest
from components.io.atomic import atomic_dir, write_text_atomic
from components.io.manifest import to_manifest, write_manifest
from flows.stage import metrics_table, stage_main, stage_run, write_quarantine


@task(name="plan", retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE)
def plan_task(params: IngestParams) -> list[ing.PlannedItem]:
    """Discover sources, hash files, mark duplicates."""
    return ing.plan(params)


@task(name="clip-video", retries=1, retry_delay_seconds=1, cache_policy=NO_CACHE)
def process_task(planned: ing.PlannedItem, params: IngestParams, out_dir: Path) -> list[dict]:
    """Probe, clip, score and write one video's clips."""
    rows = ing.process(planned, params, out_dir)
    log = get_run_logger()
    for r in rows:
        if r["status"] != "kept":
            log.warning("%s %s: %s", r["status"], r["source"], r["reason"])
    return rows


@task(name="motion-set", cache_policy=NO_CACHE)
def motion_set_task(sources: list, out_dir: Path, seed: int) -> dict:
    """HumanML3D features, captions and normalisation stats of the synthetic source motions."""
    # lazy: torch and the models load after the params validate (a bad params.yaml fails fast)
    from components.data.synthetic_source import write_motion_set

    return write_motion_set(sources, out_dir, seed)


@task(name="validate-manifest", cache_policy=NO_CACHE)
def validate_task(manifest, docs_dir: Path, params: IngestParams):
    """Great Expectations suite on the manifest; data docs into ``docs_dir``."""
    limits = ManifestLimits(
        min_fps=1.0,
        max_fps=120.0,
        min_frames=params.clip.frames,
        max_frames=params.clip.frames,
        min_side=min(params.clip.height, params.clip.width),
        max_side=max(params.clip.height, params.clip.width),
        require_caption=params.limits.require_caption,
    )
    return validate_manifest(manifest, docs_dir, limits)


def _summary_markdown(metrics: dict[str, Any], quarantine: list[dict]) -> str:
    lines = [metrics_table("ingest", metrics, skip_dicts=True) + "\n## Quarantine", ""]
    if quarantine:
        lines += ["| source | reason | detail |", "|---|---|---|"]
        lines += [f"| {q['source']} | {q['reason']} | {q['detail'][:120]} |" for q in quarantine]
    else:
        lines.append("nothing quarantined")
    return "\n".join(lines) + "\n"


def _reports_dir(params: IngestParams, out_tmp: Path):
    """Reports commit with the output when they live inside it, else atomically on their own."""
    if params.reports.resolve().is_relative_to(params.output.resolve()):
        rep = out_tmp / params.reports.resolve().relative_to(params.output.resolve())
        rep.mkdir(parents=True, exist_ok=True)
        return contextlib.nullcontext(rep)
    return atomic_dir(params.reports)


@flow(name="ingest", log_prints=True)
def ingest(
    params_path: str | None = "params.yaml",
    overrides: dict[str, Any] | None = None,
    metrics_file: str | None = "metrics/ingest.json",
) -> dict[str, Any]:
    """Run the ingest stage; returns its metrics. Outputs are replaced atomically on success.

    ``params_path=None`` uses the schema defaults plus ``overrides`` (no params.yaml needed).
    """
    if params_path is None:
        params: IngestParams = validate_section("ingest", overrides or {}, origin="--input/--output")
    else:
        params = load_section("ingest", params_path, overrides)
    t0 = time.perf_counter()
    with stage_run("ingest", params) as run:
        with atomic_dir(params.output) as out_tmp, _reports_dir(params, out_tmp) as rep_tmp:
            planned = plan_task(params)
            rows: list[dict] = []
            for p in tqdm(planned, desc="ingest", unit="video", disable=None):
                rows.extend(process_task(p, params, out_tmp))
            synthetic = [s for s in params.sources if s.kind == "synthetic" and s.clips > 0]
            motion_counts = motion_set_task(synthetic, out_tmp, params.seed) if synthetic else {}
            manifest = to_manifest(rows)
            write_manifest(manifest, out_tmp / ing.MANIFEST_FILE)
            quarantine = ing.quarantine_records(manifest)
            write_quarantine(rep_tmp, quarantine)
            report = validate_task(manifest, rep_tmp / "data_docs", params)
            metrics = ing.summarise(manifest, params, time.perf_counter() - t0)
            metrics.update(motion_counts)
            metrics["expectations_evaluated"] = report.evaluated
            metrics["expectations_failed"] = len(report.failed)
            summary = _summary_markdown(metrics, quarantine)
            write_text_atomic(rep_tmp / "summary.md", summary)
            if not report.success:  # keep the evidence beside the untouched previous outputs
                failed_dir = params.reports.with_name(params.reports.name + "-failed")
                shutil.rmtree(failed_dir, ignore_errors=True)
                shutil.copytree(rep_tmp, failed_dir)
                report = dataclasses.replace(report, docs_index=failed_dir / "data_docs" / "index.html")
            ensure_valid(report)  # a failing suite leaves the previous outputs in place
        run.finish(
            metrics,
            markdown=summary,
            artifacts=[params.output / ing.MANIFEST_FILE, params.reports / "quarantine.jsonl"],
            metrics_file=Path(metrics_file) if metrics_file else params.reports / "metrics.json",
        )
    print(
        f"ingest: {metrics['clips_kept']} kept, {metrics['clips_filtered']} filtered, "
        f"{metrics['quarantined']} quarantined from {metrics['videos_seen']} inputs -> {params.output}"
    )
    return metrics


if __name__ == "__main__":
    sys.exit(stage_main(ingest))
