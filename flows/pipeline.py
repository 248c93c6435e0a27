"""Parent flow ``pipeline``: every stage of dvc.yaml, in file order, one ``dvc repro`` at a time.

Each stage runs as ``dvc repro --single-item <stage>``: DVC alone decides from dvc.lock whether the
stage must run (so DVC stays the source of truth for caching), while the flow walks the stages
itself. ``--single-item`` makes one Prefect task map to exactly one DVC stage, so the seconds, exit
code, skip and retry recorded for a stage are that stage's own (plain ``dvc repro <stage>`` would
also re-run any changed upstream stage inside the same task). A file lock held for the whole run
keeps two pipelines from reproducing the same workspace at once.

CLI: ``python -m flows.pipeline [--stages a,b] [--force] [--dvc PATH] [--retries N] [--retry-delay S]``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import os
import shutil
import subprocess
import sys
import time
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext
from prefect.runtime import task_run

from flows.stage import find_stage_run, tracking_uri

STAGES_FILE = Path("dvc.yaml")
LOCK_FILE = Path(".dvc/tmp/mosa-pipeline.lock")
SUMMARY_KEY = "pipeline-summary"
# What `dvc repro` prints when it does not execute the stage's command.
SKIP_MARKERS = ("didn't change, skipping", "Data and pipelines are up to date", "is cached - skipping run")
TAIL_LINES = 20


class PipelineError(RuntimeError):
    """The pipeline could not run or a stage failed; the message says which and what to do."""


class PipelineLocked(PipelineError):
    """Another pipeline run holds the workspace lock."""


class StageFailed(PipelineError):
    """``dvc repro`` of one stage exited non-zero on its last attempt."""

    def __init__(
        self,
        stage: str,
        exit_code: int,
        attempts: int,
        seconds: float,
        tail: str = "",
        not_run: Sequence[str] = (),
    ):
        skipped = f"; later stages not run: {', '.join(not_run)}" if not_run else ""
        detail = f"\nlast output lines:\n{tail}" if tail else ""
        super().__init__(
            f"stage '{stage}' failed: dvc repro exited {exit_code} (attempt {attempts}){skipped}{detail}"
        )
        self.stage, self.exit_code, self.attempts, self.seconds = stage, exit_code, attempts, seconds
        self.tail, self.not_run = tail, tuple(not_run)

    def __reduce__(self):  # keep the fields when Prefect pickles the failed task's exception
        return (
            type(self),
            (self.stage, self.exit_code, self.attempts, self.seconds, self.tail, self.not_run),
        )


@dataclasses.dataclass
class StageRecord:
    """What happened to one stage in this pipeline run."""

    stage: str
    status: str  # ran | skipped | failed | not run
    seconds: float | None = None
    exit_code: int | None = None
    attempts: int = 0
    mlflow_run_id: str | None = None
    mlflow_experiment_id: str | None = None


def dvc_stages(path: Path = STAGES_FILE) -> list[str]:
    """The stage names of dvc.yaml in file order (read at run time: stages are added over time)."""
    if not path.is_file():
        raise PipelineError(f"{path} not found in {Path.cwd()}: run the pipeline from the repository root")
    data = yaml.safe_load(path.read_text()) or {}
    stages = data.get("stages") or {}
    if not isinstance(stages, dict) or not stages:
        raise PipelineError(f"{path} defines no stages under 'stages:'")
    return list(stages)


def select_stages(requested: Sequence[str] | None, known: Sequence[str]) -> list[str]:
    """``requested`` (None = all) validated against ``known`` and put in dvc.yaml order."""
    if requested is None:
        return list(known)
    wanted = [s.strip() for s in requested if s.strip()]
    if not wanted:
        raise PipelineError(f"no stages given; choose from: {', '.join(known)} (or omit --stages for all)")
    unknown = [s for s in wanted if s not in known]
    if unknown:
        raise PipelineError(
            f"unknown stage(s): {', '.join(repr(s) for s in unknown)}; dvc.yaml defines: {', '.join(known)}"
        )
    return [s for s in known if s in wanted]


def resolve_dvc(dvc: str) -> str:
    """Absolute path of the dvc executable; the one beside this Python when 'dvc' is not on PATH."""
    found = shutil.which(dvc)
    if found is None and dvc == "dvc":
        beside = Path(sys.executable).with_name("dvc")
        found = str(beside) if os.access(beside, os.X_OK) else None
    if found is None:
        raise PipelineError(
            f"dvc executable {dvc!r} not found: install DVC (pip install dvc) or pass --dvc PATH"
        )
    return str(Path(found).absolute())


@contextlib.contextmanager
def pipeline_lock(path: Path = LOCK_FILE) -> Iterator[Path]:
    """Hold an exclusive, non-blocking fcntl lock on ``path`` for the duration of the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "unknown process"
            raise PipelineLocked(
                f"another pipeline run holds {path} ({holder}); only one `dvc repro` may run at a time: "
                "wait for it to finish (or stop it) and run again"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        fh.flush()
        try:
            yield path
        finally:
            fh.seek(0)
            fh.truncate()
            fcntl.flock(fh, fcntl.LOCK_UN)


def repro_command(dvc: str, stage: str, force: bool) -> list[str]:
    """The command that reproduces exactly one stage."""
    return [dvc, "repro", "--single-item", *(["--force"] if force else []), stage]


def _is_notable(line: str) -> bool:
    return line.startswith("Running stage") or any(marker in line for marker in SKIP_MARKERS)


def was_skipped(lines: Sequence[str]) -> bool:
    """True when DVC reported the stage unchanged (or restored from its run cache) and ran nothing."""
    ran = any(line.startswith("Running stage") for line in lines)
    return not ran and any(marker in line for line in lines for marker in SKIP_MARKERS)


def prefect_api_url() -> str | None:
    """The API this flow run reports to (also a temporary server's), for the stages to share it."""
    url = os.environ.get("PREFECT_API_URL")
    ctx = FlowRunContext.get()
    if not url and ctx is not None and ctx.client is not None:
        url = str(ctx.client.api_url)
    return url.rstrip("/") if url and url.startswith("http") and "ephemeral-prefect" not in url else None


def stage_env(api_url: str | None) -> dict[str, str]:
    """Environment of a stage: unbuffered Python output (so lines stream), this interpreter's bin
    first on PATH (the stage cmd is ``python -m ...``), and ``api_url`` as PREFECT_API_URL, so stage
    flows report to the pipeline's server instead of starting their own temporary one."""
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return env


@task(name="dvc-repro", cache_policy=NO_CACHE)
def repro_stage(stage: str, dvc: str, force: bool, api_url: str | None) -> dict[str, Any]:
    """``dvc repro`` one stage, streaming its output lines to the Prefect log as they come."""
    log = get_run_logger()
    cmd = repro_command(dvc, stage, force)
    attempt = task_run.run_count or 1
    log.info("attempt %d: %s", attempt, " ".join(cmd))
    notable: list[str] = []
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        bufsize=1,
        env=stage_env(api_url),
    )
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.rstrip("\n")
            tail.append(line)
            if _is_notable(line):
                notable.append(line)
            log.info("[%s] %s", stage, line)
        code = proc.wait()
    finally:
        if proc.poll() is None:  # interrupted: do not leave a half-run stage behind
            proc.terminate()
            proc.wait()
    seconds = time.perf_counter() - t0
    if code != 0:
        raise StageFailed(stage, code, attempt, seconds, "\n".join(tail))
    return {"seconds": seconds, "exit_code": code, "attempts": attempt, "skipped": was_skipped(notable)}


def run_link(run_id: str | None, experiment_id: str | None, uri: str) -> str:
    """A link into the MLflow UI when tracking over http(s), else the bare run id."""
    if not run_id:
        return "-"
    if uri.startswith(("http://", "https://")) and experiment_id:
        return f"[{run_id[:8]}]({uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id})"
    return f"`{run_id}`"


def summary_markdown(records: Sequence[StageRecord], uri: str, failed: str | None = None) -> str:
    """The ``pipeline-summary`` artifact: one table row per selected stage."""
    lines = [
        "# pipeline",
        "",
        f"**failed at stage `{failed}`**" if failed else "all selected stages succeeded",
        "",
        f"MLflow tracking: `{uri}`",
        "",
        "| stage | result | seconds | exit code | attempts | MLflow run |",
        "|---|---|---|---|---|---|",
    ]
    for r in records:
        secs = "-" if r.seconds is None else f"{r.seconds:.1f}"
        code = "-" if r.exit_code is None else str(r.exit_code)
        link = run_link(r.mlflow_run_id, r.mlflow_experiment_id, uri)
        lines.append(f"| {r.stage} | {r.status} | {secs} | {code} | {r.attempts} | {link} |")
    return "\n".join(lines) + "\n"


@flow(name="pipeline", log_prints=True)
def pipeline(
    stages: list[str] | None = None,
    force: bool = False,
    dvc: str = "dvc",
    retries: int = 1,
    retry_delay: float = 10.0,
) -> list[dict[str, Any]]:
    """Reproduce the dvc.yaml stages (all, or the ``stages`` subset) in order; stop at the first
    failure. Returns one record per selected stage; publishes the ``pipeline-summary`` artifact."""
    if retries < 0 or retry_delay < 0:
        raise PipelineError(f"retries ({retries}) and retry_delay ({retry_delay}) must be >= 0")
    selected = select_stages(stages, dvc_stages())
    dvc_exe = resolve_dvc(dvc)
    log = get_run_logger()
    uri = tracking_uri()
    records: list[StageRecord] = []
    failure: StageFailed | None = None
    with pipeline_lock():
        api_url = prefect_api_url()
        log.info("stages: %s (dvc: %s, force: %s)", ", ".join(selected), dvc_exe, force)
        for stage in selected:
            if failure is not None:
                records.append(StageRecord(stage, "not run"))
                continue
            started = time.time()
            run = repro_stage.with_options(
                retries=retries, retry_delay_seconds=retry_delay, task_run_name=f"repro-{stage}"
            )
            try:
                out = run(stage, dvc_exe, force, api_url)
            except StageFailed as exc:
                failure = exc
                records.append(StageRecord(stage, "failed", exc.seconds, exc.exit_code, exc.attempts))
                continue
            found = find_stage_run(stage, since=None if out["skipped"] else started, uri=uri)
            if found is None and not out["skipped"]:
                log.warning(
                    "stage %s ran but no MLflow run tagged stage=%s was found at %s", stage, stage, uri
                )
            run_id, exp_id = found or (None, None)
            status = "skipped" if out["skipped"] else "ran"
            records.append(
                StageRecord(stage, status, out["seconds"], out["exit_code"], out["attempts"], run_id, exp_id)
            )
            log.info("%s: %s in %.1f s (attempt %d)", stage, status, out["seconds"], out["attempts"])
    create_markdown_artifact(
        key=SUMMARY_KEY,
        markdown=summary_markdown(records, uri, failure.stage if failure else None),
        description="stages reproduced by this pipeline run",
    )
    if failure is not None:
        not_run = [r.stage for r in records if r.status == "not run"]
        raise StageFailed(
            failure.stage, failure.exit_code, failure.attempts, failure.seconds, failure.tail, not_run
        )
    return [dataclasses.asdict(r) for r in records]


def main(argv: list[str] | None = None) -> int:
    """CLI entry: exit 0 on success, 2 on bad arguments, 1 when a stage fails or the lock is held."""
    parser = argparse.ArgumentParser(
        prog="python -m flows.pipeline", description="Run the DVC stages in order."
    )
    parser.add_argument("--stages", help="comma-separated subset of the dvc.yaml stages (default: all)")
    parser.add_argument("--force", action="store_true", help="reproduce even unchanged stages")
    parser.add_argument("--dvc", default="dvc", help="dvc executable (default: dvc on PATH)")
    parser.add_argument("--retries", type=int, default=1, help="retries per stage (default 1)")
    parser.add_argument(
        "--retry-delay", type=float, default=10.0, help="seconds between retries (default 10)"
    )
    args = parser.parse_args(argv)
    stages = args.stages.split(",") if args.stages is not None else None
    try:  # argument errors exit before any Prefect run starts
        select_stages(stages, dvc_stages())
        resolve_dvc(args.dvc)
    except PipelineError as exc:
        print(f"pipeline: {exc}", file=sys.stderr)
        return 2
    try:
        with pipeline_lock():  # fail fast when busy; the flow takes the lock again for the whole run
            pass
        pipeline(
            stages=stages, force=args.force, dvc=args.dvc, retries=args.retries, retry_delay=args.retry_delay
        )
    except PipelineError as exc:
        print(f"pipeline: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
