"""Lineage of a registered model: the code, data, params and runs that produced it, as flat tags.

A model version carries, as ``lineage.*`` tags:

- ``lineage.git_commit``: the commit of the code (``-dirty`` when tracked files differ from it);
- ``lineage.profile``: the profile name (``default`` for the laptop CPU profile);
- ``lineage.dvc_lock_md5``: md5 of the whole ``dvc.lock`` (one value that pins every stage);
- per stage in ``dvc.lock``: ``lineage.dvc.<stage>.deps`` / ``.outs`` (JSON ``{path: md5}``) and
  ``lineage.dvc.<stage>.params_md5`` (md5 of the stage's params as DVC recorded them);
- per stage: ``lineage.run.<stage>``, the id of the latest MLflow run tagged ``stage=<stage>`` in the
  experiment (``mosa``), i.e. the run that logged that stage's params, metrics and artifacts.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

EXPERIMENT = "mosa"
PREFIX = "lineage."
# MLflow tag values are capped at 8000 characters; longer JSON is replaced by its digest.
MAX_TAG_VALUE = 8000
_BAD_KEY_CHARS = re.compile(r"[^\w.\-/ ]")


class LineageError(ValueError):
    """dvc.lock (or another lineage source) cannot be read; the message names the file and the fix."""


def default_tracking_uri() -> str:
    """MLFLOW_TRACKING_URI if set, else the local ``sqlite:///mlflow.db`` every stage logs to."""
    return os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db"


def git_commit(repo: Path | str = ".") -> str:
    """HEAD of ``repo`` (``-dirty`` if tracked files changed), or ``unknown`` outside git.

    Changes under ``metrics/`` and to ``dvc.lock`` do not count: DVC rewrites them while it runs.
    """
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!metrics", ":!dvc.lock"],
            cwd=repo,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + ("-dirty" if status.strip() else "")


def _md5_json(obj: Any) -> str:
    return hashlib.md5(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _tag_key(*parts: str) -> str:
    """A valid MLflow tag key: characters MLflow rejects (e.g. the ``@`` of foreach stages) become ``_``."""
    return PREFIX + ".".join(_BAD_KEY_CHARS.sub("_", p) for p in parts)


def _json_value(mapping: dict[str, str]) -> str:
    text = json.dumps(mapping, sort_keys=True)
    if len(text) <= MAX_TAG_VALUE:
        return text
    return f"md5:{_md5_json(mapping)} ({len(mapping)} entries, too long for a tag; see dvc.lock)"


def _hashes(entries: Iterable[dict[str, Any]] | None) -> dict[str, str]:
    return {e["path"]: str(e.get("md5") or e.get("hash") or "") for e in entries or [] if "path" in e}


def read_dvc_lock(lock_path: Path | str = "dvc.lock") -> dict[str, dict[str, Any]]:
    """Per stage of ``dvc.lock``: ``{"deps": {path: md5}, "outs": {path: md5}, "params_md5": str}``.

    An absent file gives ``{}`` (nothing reproduced yet); an unreadable one raises LineageError.
    """
    lock_path = Path(lock_path)
    if not lock_path.is_file():
        return {}
    try:
        data = yaml.safe_load(lock_path.read_text()) or {}
    except yaml.YAMLError as exc:
        detail = " ".join(str(exc).split())
        raise LineageError(
            f"{lock_path} is not valid YAML ({detail}); restore it with `git checkout dvc.lock`"
        ) from exc
    stages = data.get("stages") if isinstance(data, dict) else None
    if stages is None:
        return {}
    if not isinstance(stages, dict):
        raise LineageError(f"{lock_path}: 'stages' must be a mapping of stage name to lock entry")
    out: dict[str, dict[str, Any]] = {}
    for name, entry in stages.items():
        entry = entry or {}
        out[str(name)] = {
            "deps": _hashes(entry.get("deps")),
            "outs": _hashes(entry.get("outs")),
            "params_md5": _md5_json(entry.get("params") or {}),
        }
    return out


def latest_stage_runs(
    stages: Iterable[str], tracking_uri: str | None = None, experiment: str = EXPERIMENT
) -> dict[str, str]:
    """``{stage: run id}`` of the latest run tagged ``stage=<stage>`` in ``experiment``; stages
    without a run are left out. A sqlite store that does not exist yet is not created."""
    uri = tracking_uri or default_tracking_uri()
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        return {}
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return {}
    found: dict[str, str] = {}
    for stage in stages:
        quoted = stage.replace("'", "\\'")
        runs = client.search_runs(
            [exp.experiment_id],
            filter_string=f"tags.stage = '{quoted}'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        if runs:
            found[stage] = runs[0].info.run_id
    return found


def lineage_tags(
    *,
    profile: str = "default",
    tracking_uri: str | None = None,
    experiment: str = EXPERIMENT,
    lock_path: Path | str = "dvc.lock",
    repo: Path | str = ".",
    stages: Iterable[str] | None = None,
    commit: str | None = None,
) -> dict[str, str]:
    """All ``lineage.*`` tags for a model version (see the module doc).

    ``stages`` adds stage names to look up runs for beyond those in dvc.lock (e.g. the running
    ``register`` stage); ``commit`` overrides the git lookup.
    """
    lock_path = Path(lock_path)
    locked = read_dvc_lock(lock_path)
    tags = {
        _tag_key("git_commit"): commit or git_commit(repo),
        _tag_key("profile"): profile,
        _tag_key("dvc_lock_md5"): hashlib.md5(lock_path.read_bytes()).hexdigest()
        if lock_path.is_file()
        else "none",
    }
    for stage, entry in locked.items():
        tags[_tag_key("dvc", stage, "deps")] = _json_value(entry["deps"])
        tags[_tag_key("dvc", stage, "outs")] = _json_value(entry["outs"])
        tags[_tag_key("dvc", stage, "params_md5")] = entry["params_md5"]
    wanted = list(dict.fromkeys([*locked, *(stages or [])]))
    for stage, run_id in latest_stage_runs(wanted, tracking_uri, experiment).items():
        tags[_tag_key("run", stage)] = run_id
    return tags
