"""Every MLOps chore the stages share, once: one MLflow run per stage (params, tags, step curves,
metrics, artifacts), ``metrics/S.json``, the Prefect summary artifact, the ``| metric | value |``
summary table, loss-curve CSVs for ``plots/S/``, the quarantine file, and checkpoint folders keyed by
the run's fingerprint. Flows import MLflow through nothing else.

Usage inside a flow::

    with stage_run("ingest", params) as run:
        ...
        run.log_step(step, {"loss": 0.3}, prefix="vae")
        run.finish(metrics, markdown=metrics_table("ingest", metrics), artifacts=[path, ...])
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import logging
import os
import subprocess
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from components.config import ConfigError
from components.io.atomic import write_json_atomic, write_text_atomic

REPO_ROOT = Path(__file__).resolve().parents[1]
CODE_ROOTS = ("flows", "components")
EXPERIMENT = "mosa"
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
ARTIFACT_DIR = Path("mlartifacts")


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI if set, else the local sqlite file ``mlflow.db``."""
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def is_rank_zero() -> bool:
    """True outside distributed runs and on global rank 0."""
    return os.environ.get("RANK", "0") == "0"


def git_commit() -> str:
    """Current commit (with '-dirty' if the tree has changes), or 'unknown' outside git."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout
        dirty = subprocess.run(
            # DVC deletes a stage's outs (metrics included) before running it: not a dirty tree.
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!metrics", ":!dvc.lock"],
            capture_output=True,
            text=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha.strip() + ("-dirty" if dirty.strip() else "")


def dvc_dep_hashes(stage: str, lock: Path = Path("dvc.lock")) -> dict[str, str]:
    """md5 hashes of the stage's deps as recorded in dvc.lock (the last successful reproduction)."""
    if not lock.is_file():
        return {}
    data = yaml.safe_load(lock.read_text()) or {}
    deps = (data.get("stages") or {}).get(stage, {}).get("deps") or []
    return {d["path"]: d.get("md5") or d.get("hash", "") for d in deps if "path" in d}


def stage_definition(stage: str, dvc_yaml: Path | None = None) -> dict[str, Any]:
    """The stage's ``deps`` and ``params`` as dvc.yaml declares them; ``name@key`` resolves a
    ``foreach`` stage (``${key}`` substituted)."""
    path = dvc_yaml or REPO_ROOT / "dvc.yaml"
    stages = (yaml.safe_load(path.read_text()) or {}).get("stages") or {}
    name, _, key = stage.partition("@")
    if name not in stages:
        raise KeyError(f"{path}: no stage {name!r} (stages: {sorted(stages)})")
    body = stages[name].get("do", stages[name]) if key else stages[name]

    def sub(item: Any) -> str:
        text = next(iter(item)) if isinstance(item, dict) else str(item)
        return text.replace("${key}", key)

    return {
        "deps": [sub(d) for d in body.get("deps") or []],
        "params": [sub(p) for p in body.get("params") or []],
    }


def dvc_md5(path: Path, root: Path | None = None) -> str:
    """DVC's own content hash of a file or folder (``<md5>.dir`` for folders, .dvcignore applied) —
    the value ``dvc.lock`` records; ``missing`` when the path does not exist."""
    if not path.exists():
        return "missing"
    import tempfile

    from dvc.ignore import DvcIgnoreFilter
    from dvc_data.hashfile.build import build
    from dvc_data.hashfile.db import HashFileDB
    from dvc_objects.fs.local import LocalFileSystem

    fs = LocalFileSystem()
    ignore = DvcIgnoreFilter(fs, str(root or REPO_ROOT))
    with tempfile.TemporaryDirectory() as staging:
        _, _, obj = build(
            HashFileDB(fs, staging), str(path.resolve()), fs, "md5", dry_run=True, ignore=ignore
        )
    return str(obj.hash_info.value)


def _wiring_fields(params: BaseModel) -> dict[str, Path]:
    """Top-level fields that say where files are (a ``Path`` default): not part of what a run computes."""
    return {
        name: Path(field.default)
        for name, field in type(params).model_fields.items()
        if isinstance(field.default, Path)
    }


def run_fingerprint(
    stage: str,
    params: BaseModel,
    paths: dict[str, Path] | None = None,
    root: Path | None = None,
) -> dict[str, Any]:
    """Everything a run of ``stage`` depends on, and its sha256: DVC's hash of every dep dvc.yaml
    declares for the stage (code and data) and the stage's effective params.

    A data dep is hashed where this run reads it: ``paths[dep]`` if given, else the params field whose
    default is that dep (``train_dit.ingest`` for ``data/ingest``), else the dep under the working
    directory (DVC runs stages from the repository root). Code deps are hashed in the repository
    ``root`` (default: the one this module belongs to). Path fields (where inputs and outputs live)
    are not hashed as params: the inputs are hashed by content. Checkpoints keyed by this resume
    only a run with identical inputs."""
    root = Path(root or REPO_ROOT)
    definition = stage_definition(stage, root / "dvc.yaml")
    wiring = _wiring_fields(params)
    by_default = {str(default): name for name, default in wiring.items()}
    deps: dict[str, str] = {}
    for dep in definition["deps"]:
        if dep.split("/")[0] in CODE_ROOTS:
            where = root / dep
        elif paths and dep in paths:
            where = Path(paths[dep])
        elif dep in by_default:
            where = Path(getattr(params, by_default[dep]))
        else:
            where = Path.cwd() / dep
        deps[dep] = dvc_md5(where, root)
    values = params.model_dump(mode="json", exclude=set(wiring))
    digest = hashlib.sha256(json.dumps({"deps": deps, "params": values}, sort_keys=True).encode()).hexdigest()
    return {"stage": stage, "fingerprint": digest, "deps": deps, "params": values}


def code_fingerprint(stage: str, root: Path | None = None) -> str:
    """sha256 of the code ``stage`` declares in dvc.yaml (its ``flows/`` and ``components/`` deps, by
    DVC's own hashes): per-item caches keyed by it (annotate's reuse of unchanged clips) are never
    reused by other code, while other clips' data may change."""
    root = Path(root or REPO_ROOT)
    deps = [d for d in stage_definition(stage, root / "dvc.yaml")["deps"] if d.split("/")[0] in CODE_ROOTS]
    h = hashlib.sha256()
    for dep in sorted(deps):
        h.update(f"{dep}\0{dvc_md5(root / dep, root)}\n".encode())
    return h.hexdigest()


def checkpoint_folder(root: Path, fingerprint: dict[str, Any], keep: set[str] = frozenset()) -> Path:
    """``root/<fingerprint[:12]>`` for this run's checkpoints; on rank 0, every other folder under
    ``root`` but those named in ``keep`` (content-keyed caches) is removed — checkpoints of other
    code, data or params are never resumable — and the fingerprint's inputs are written beside the
    checkpoints (``fingerprint.json``, to see why a run started over)."""
    folder = Path(root) / fingerprint["fingerprint"][:12]
    if is_rank_zero():
        import shutil

        if Path(root).is_dir():
            for old in Path(root).iterdir():
                if old.is_dir() and old != folder and old.name not in keep:
                    shutil.rmtree(old)
        folder.mkdir(parents=True, exist_ok=True)
        write_json_atomic(folder / "fingerprint.json", fingerprint)
    return folder


def stage_checkpoints(
    stage: str,
    params: BaseModel,
    *,
    keep: set[str] = frozenset(),
    paths: dict[str, Path] | None = None,
) -> Path:
    """This run's checkpoint folder under ``params.checkpoints``, keyed by everything ``stage`` declares
    in dvc.yaml (code, data, params; ``paths`` as in ``run_fingerprint``): a changed run never resumes
    another's checkpoints (their folders are removed, but those named in ``keep``)."""
    fingerprint = run_fingerprint(stage, params, paths=paths)
    return checkpoint_folder(Path(params.checkpoints), fingerprint, keep=keep)


def curve_csv(history: Iterable[Mapping[str, float]]) -> str:
    """A loss curve (one row per step) as CSV text: ``step`` first, then the other keys sorted; a key
    a row lacks is left empty. DVC plots read these files from ``plots/<stage>/``."""
    rows = [dict(r) for r in history]
    keys = sorted({k for row in rows for k in row}, key=lambda k: (k != "step", k))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys, restval="")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def metrics_table(title: str, metrics: Mapping[str, Any], *, skip_dicts: bool = False) -> str:
    """The stage summary's head: ``# title`` and a ``| metric | value |`` table (nested dicts left out
    when ``skip_dicts``)."""
    rows = "".join(f"| {k} | {v} |\n" for k, v in metrics.items() if not (skip_dicts and isinstance(v, dict)))
    return f"# {title}\n\n| metric | value |\n|---|---|\n" + rows


def write_quarantine(folder: Path, records: Iterable[Mapping[str, Any]]) -> Path:
    """``folder/quarantine.jsonl``: one JSON object (sorted keys) per quarantined input, with its reason;
    an empty file when nothing was quarantined. Written atomically."""
    path = Path(folder) / "quarantine.jsonl"
    write_text_atomic(path, "".join(json.dumps(dict(r), sort_keys=True) + "\n" for r in records))
    return path


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts → dotted keys; lists become JSON strings (MLflow params are flat strings)."""
    out: dict[str, Any] = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.update(flatten(v, f"{prefix}{k}."))
    elif isinstance(obj, list):
        out[prefix[:-1]] = json.dumps(obj, default=str)
    else:
        out[prefix[:-1]] = obj
    return out


def _experiment_id(mlflow) -> str:
    exp = mlflow.get_experiment_by_name(EXPERIMENT)
    if exp is not None:
        return exp.experiment_id
    location = None
    if tracking_uri().startswith("sqlite:"):
        ARTIFACT_DIR.mkdir(exist_ok=True)
        location = ARTIFACT_DIR.resolve().as_uri()
    return mlflow.create_experiment(EXPERIMENT, artifact_location=location)


class StageRun:
    """Handle to the stage's MLflow run; ``finish`` writes metrics and publishes the summary."""

    def __init__(self, stage: str, run_id: str | None):
        self.stage = stage
        self.run_id = run_id

    def log_step(self, step: int, logs: Mapping[str, float], prefix: str = "") -> None:
        """Log one training step's values to the run (keys ``prefix/key`` when a prefix is given);
        a no-op off rank 0 (no run is open there)."""
        if self.run_id is None:
            return
        import mlflow

        head = f"{prefix}/" if prefix else ""
        mlflow.log_metrics({f"{head}{k}": float(v) for k, v in logs.items()}, step=step)

    def log_phase_step(self, phase: str, step: int, logs: Mapping[str, float]) -> None:
        """``log_step`` with the training phase as prefix: the ``on_log(phase, step, logs)`` of
        multi-phase recipes (``pretrain_motion``, ``pretrain_base``)."""
        self.log_step(step, logs, phase)

    def step_logger(self, prefix: str = "") -> Callable[[int, Mapping[str, float]], None]:
        """``log_step`` bound to ``prefix``: the ``log_fn(step, logs)`` the trainers call."""
        return lambda step, logs: self.log_step(step, logs, prefix)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        """Add tags to the run (rank 0)."""
        if self.run_id is None:
            return
        import mlflow

        mlflow.set_tags(dict(tags))

    def finish(
        self,
        metrics: dict[str, Any],
        *,
        markdown: str,
        artifacts: list[Path] = (),
        metrics_file: Path | None = None,
    ) -> None:
        """Write ``metrics_file`` (default metrics/<stage>.json), log numeric metrics and artifacts
        to MLflow, and publish ``markdown`` as the Prefect artifact ``<stage>-summary``."""
        path = Path(f"metrics/{self.stage}.json") if metrics_file is None else metrics_file
        write_json_atomic(path, metrics)
        if not is_rank_zero():
            return
        import mlflow

        numeric = {k: float(v) for k, v in flatten(metrics).items() if isinstance(v, int | float)}
        mlflow.log_metrics(numeric)
        mlflow.log_dict(metrics, f"metrics/{self.stage}.json")
        for art in artifacts:
            art = Path(art)
            if art.is_dir():
                mlflow.log_artifacts(str(art), art.name)
            elif art.is_file():
                mlflow.log_artifact(str(art))
        from prefect.artifacts import create_markdown_artifact

        create_markdown_artifact(
            key=f"{self.stage.replace('_', '-')}-summary",
            markdown=markdown
            + (f"\n\nMLflow run: `{self.run_id}` at `{tracking_uri()}`" if self.run_id else ""),
            description=f"{self.stage} stage summary",
        )


@contextlib.contextmanager
def stage_run(stage: str, params: BaseModel, extra_tags: dict[str, str] | None = None) -> Iterator[StageRun]:
    """Open the stage's single MLflow run (rank 0 only), tagged with stage, commit and DVC hashes."""
    if not is_rank_zero():
        yield StageRun(stage, None)
        return
    import mlflow

    mlflow.set_tracking_uri(tracking_uri())
    tags = {"stage": stage, "git_commit": git_commit(), **(extra_tags or {})}
    tags.update({f"dvc.dep.{k}": v for k, v in dvc_dep_hashes(stage).items()})
    system_metrics = os.environ.get("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "true").lower() == "true"
    with mlflow.start_run(
        experiment_id=_experiment_id(mlflow), run_name=stage, tags=tags, log_system_metrics=system_metrics
    ) as run:
        mlflow.log_params(flatten(params.model_dump(mode="json")))
        yield StageRun(stage, run.info.run_id)


def find_stage_run(stage: str, since: float | None = None, uri: str | None = None) -> tuple[str, str] | None:
    """(run id, experiment id) of the latest MLflow run tagged ``stage`` in experiment "mosa".

    ``since`` (epoch seconds) only accepts runs started after it: the run of a stage that just ran.
    None when there is no such run or the tracking store cannot be read (never fails the pipeline).
    """
    uri = uri or tracking_uri()
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        return None  # nothing logged yet; do not create an empty store
    try:
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=uri)
        exp = client.get_experiment_by_name(EXPERIMENT)
        if exp is None:
            return None
        runs = client.search_runs(
            [exp.experiment_id],
            filter_string=f"tags.stage = '{stage}'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
    except Exception as exc:  # a tracking server being down must not fail a finished stage
        logging.getLogger(__name__).warning("MLflow lookup for %s at %s failed: %s", stage, uri, exc)
        return None
    if not runs or (since is not None and runs[0].info.start_time < since * 1000):
        return None
    return runs[0].info.run_id, exp.experiment_id


def use_tracking_uri() -> str:
    """Point this process's MLflow client at ``tracking_uri()`` and return it (CLI commands)."""
    import mlflow

    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    return uri


def stage_main(stage_flow, argv: list[str] | None = None) -> int:
    """``python -m flows.<stage> [--params FILE]``: run the flow; a params error exits 2 with its message."""
    import argparse
    import sys

    name = stage_flow.name
    parser = argparse.ArgumentParser(prog=f"python -m flows.{name}", description=f"Run the {name} stage.")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    try:
        stage_flow(params_path=args.params)
    except ConfigError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 2
    return 0
