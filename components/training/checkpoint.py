"""Atomic, verifiable DeepSpeed checkpoints and exact resume.

Layout of a checkpoint folder (one training run per folder)::

    ckpt_dir/
      latest                  text: the tag of the newest complete checkpoint (DeepSpeed's convention)
      step-00000006/          a complete checkpoint: DeepSpeed files + rng_rank*.pt + COMPLETE.json
      .tmp-step-00000008/     being written (or left by a killed run): never loaded

Protocol: every rank writes into the temporary tag (DeepSpeed needs ``save_checkpoint`` on all
ranks; each rank adds its RNG states), barrier, then rank 0 writes ``COMPLETE.json`` (step, run
metadata, size and sha256 of every file), renames the folder into place, rewrites ``latest``
atomically and prunes old checkpoints. A folder named ``step-*`` with a valid marker is therefore
complete; anything else is ignored on resume, with a warning naming it. The marker, not ``latest``,
is the authority: resume takes the highest complete step. ``ckpt_dir`` must be visible to all
ranks (a shared filesystem on multi-node runs).
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from components.io.atomic import write_json_atomic, write_text_atomic
from components.io.hashing import file_sha256

log = logging.getLogger(__name__)

MARKER = "COMPLETE.json"
LATEST = "latest"
TAG_PREFIX = "step-"
TMP_PREFIX = ".tmp-"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class CheckpointInfo:
    """A complete checkpoint: its folder, optimizer step and the marker's contents."""

    path: Path
    step: int
    meta: dict[str, Any]


def tag_for(step: int) -> str:
    """Folder name of the checkpoint taken after ``step`` optimizer updates (sorts by step)."""
    return f"{TAG_PREFIX}{step:08d}"


def _step_of(name: str) -> int | None:
    if not name.startswith(TAG_PREFIX):
        return None
    digits = name[len(TAG_PREFIX) :]
    return int(digits) if digits.isdigit() else None


# ---------------------------------------------------------------- RNG state (per rank)


def rng_state() -> dict[str, Any]:
    """RNG states of python, numpy, torch (CPU) and the accelerator, as tensors and plain values.

    Stored without pickled numpy objects so it loads with ``torch.load(weights_only=True)``.
    """
    py_version, py_internal, py_gauss = random.getstate()
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python_version": py_version,
        "python_state": torch.tensor(py_internal, dtype=torch.int64),
        "python_gauss": py_gauss,
        "numpy_kind": np_kind,
        "numpy_keys": torch.from_numpy(np_keys.astype(np.int64)),
        "numpy_pos": int(np_pos),
        "numpy_has_gauss": int(np_has_gauss),
        "numpy_gauss": float(np_gauss),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    random.setstate(
        (
            state["python_version"],
            tuple(int(v) for v in state["python_state"].tolist()),
            state["python_gauss"],
        )
    )
    np.random.set_state(
        (
            state["numpy_kind"],
            state["numpy_keys"].numpy().astype(np.uint32),
            state["numpy_pos"],
            state["numpy_has_gauss"],
            state["numpy_gauss"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def _rng_file(rank: int) -> str:
    return f"rng_rank{rank:05d}.pt"


# ---------------------------------------------------------------- filesystem protocol (rank 0)


def _file_table(folder: Path) -> dict[str, dict[str, Any]]:
    """Size and sha256 of every file under ``folder`` (the marker excluded), flushed to disk first."""
    table: dict[str, dict[str, Any]] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MARKER):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        table[path.relative_to(folder).as_posix()] = {
            "size": path.stat().st_size,
            "sha256": file_sha256(path),
        }
    return table


def verify(folder: Path, check_hashes: bool = True) -> str | None:
    """Why ``folder`` is not a usable checkpoint, or None if its marker and files agree."""
    marker = folder / MARKER
    if not marker.is_file():
        return "no completion marker (not sealed by a finished save)"
    try:
        meta = json.loads(marker.read_text(encoding="utf-8"))
        files = meta["files"]
        int(meta["step"])
    except (ValueError, KeyError, TypeError) as e:
        return f"unreadable completion marker ({e})"
    for rel, entry in files.items():
        path = folder / rel
        if not path.is_file():
            return f"file {rel} is missing"
        if path.stat().st_size != entry["size"]:
            return f"file {rel} has {path.stat().st_size} bytes, the marker says {entry['size']}"
        if check_hashes and file_sha256(path) != entry["sha256"]:
            return f"file {rel} does not match its sha256 in the marker"
    return None


def commit(ckpt_dir: Path, tmp_tag: str, step: int, meta: dict[str, Any], keep: int) -> Path:
    """Seal a fully written temporary tag: marker, rename into place, update ``latest``, prune.

    Called by rank 0 only, after every rank has finished writing.
    """
    ckpt_dir = Path(ckpt_dir)
    tmp = ckpt_dir / tmp_tag
    final = ckpt_dir / tag_for(step)
    marker = {
        **meta,
        "format": FORMAT_VERSION,
        "step": step,
        "tag": final.name,
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "files": _file_table(tmp),
    }
    write_json_atomic(tmp / MARKER, marker)
    if final.exists():
        # Same step saved twice (an explicit save after a periodic one): drop the old copy's marker
        # first so a crash in between never leaves a complete-looking mix.
        (final / MARKER).unlink(missing_ok=True)
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync_dir(ckpt_dir)
    write_text_atomic(ckpt_dir / LATEST, final.name)
    prune(ckpt_dir, keep)
    return final


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def complete_checkpoints(ckpt_dir: Path) -> list[CheckpointInfo]:
    """Checkpoints that carry a readable marker, oldest first (files not verified)."""
    out = []
    for path in Path(ckpt_dir).glob(f"{TAG_PREFIX}*"):
        if _step_of(path.name) is None or not (path / MARKER).is_file():
            continue
        try:
            meta = json.loads((path / MARKER).read_text(encoding="utf-8"))
            out.append(CheckpointInfo(path=path, step=int(meta["step"]), meta=meta))
        except (ValueError, KeyError, TypeError):
            continue
    return sorted(out, key=lambda c: c.step)


def prune(ckpt_dir: Path, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` complete checkpoints, and leftover temporary tags."""
    if keep < 1:
        raise ValueError(f"keep must be >= 1 (the newest checkpoint is never deleted), got {keep}")
    removed = []
    for info in complete_checkpoints(ckpt_dir)[:-keep]:
        (info.path / MARKER).unlink(missing_ok=True)  # incomplete first, then gone
        shutil.rmtree(info.path, ignore_errors=True)
        removed.append(info.path)
    for tmp in Path(ckpt_dir).glob(f"{TMP_PREFIX}*"):
        shutil.rmtree(tmp, ignore_errors=True)
        removed.append(tmp)
    return removed


def find_latest(ckpt_dir: Path, check_hashes: bool = True) -> CheckpointInfo | None:
    """The newest checkpoint that verifies; warns about every folder it skips and why."""
    ckpt_dir = Path(ckpt_dir)
    if not ckpt_dir.is_dir():
        return None
    for tmp in sorted(ckpt_dir.glob(f"{TMP_PREFIX}*")):
        log.warning("ignoring incomplete checkpoint %s (still being written or left by a killed run)", tmp)
    candidates = sorted(
        (p for p in ckpt_dir.glob(f"{TAG_PREFIX}*") if p.is_dir() and _step_of(p.name) is not None),
        key=lambda p: _step_of(p.name) or 0,
        reverse=True,
    )
    for path in candidates:
        reason = verify(path, check_hashes=check_hashes)
        if reason is not None:
            log.warning("ignoring checkpoint %s: %s", path, reason)
            continue
        meta = json.loads((path / MARKER).read_text(encoding="utf-8"))
        return CheckpointInfo(path=path, step=int(meta["step"]), meta=meta)
    return None


# ---------------------------------------------------------------- collective save / load


def _rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def _barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def _on_rank0(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` on rank 0 and hand its result (or its failure) to every rank.

    Without this a failure on rank 0 would leave the other ranks waiting in the next collective.
    """
    payload: list[Any] = [None]
    error: Exception | None = None
    if _rank() == 0:
        try:
            payload[0] = ("ok", fn())
        except Exception as e:
            error = e
            payload[0] = ("error", f"{type(e).__name__}: {e}")
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.broadcast_object_list(payload, src=0)
    if error is not None:
        raise error
    status, value = payload[0]
    if status == "error":
        raise RuntimeError(f"rank 0 failed: {value}")
    return value


def save(
    engine: Any, ckpt_dir: Path, step: int, client_state: dict[str, Any], meta: dict[str, Any], keep: int
) -> Path:
    """Collective: write a complete checkpoint of ``engine`` after ``step`` updates; returns its folder."""
    ckpt_dir = Path(ckpt_dir)
    tmp_tag = TMP_PREFIX + tag_for(step)

    def _prepare() -> None:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(ckpt_dir / tmp_tag, ignore_errors=True)  # a killed run's leftovers of this step

    _on_rank0(_prepare)
    engine.save_checkpoint(str(ckpt_dir), tag=tmp_tag, client_state=client_state, save_latest=False)
    torch.save(rng_state(), ckpt_dir / tmp_tag / _rng_file(_rank()))
    _barrier()
    return Path(_on_rank0(lambda: str(commit(ckpt_dir, tmp_tag, step, meta, keep))))


def load(
    engine: Any, ckpt_dir: Path, validate: Callable[[CheckpointInfo], None] | None = None
) -> tuple[CheckpointInfo, dict[str, Any]] | None:
    """Collective: restore the newest complete checkpoint into ``engine`` (module, optimizer, LR
    scheduler) and this rank's RNG states. Returns the checkpoint and DeepSpeed's client state, or
    None if there is none. ``validate`` runs on every rank before loading and may raise."""
    found = _on_rank0(lambda: _as_payload(find_latest(Path(ckpt_dir))))
    if found is None:
        return None
    info = CheckpointInfo(path=Path(found[0]), step=found[1], meta=found[2])
    if validate is not None:
        validate(info)
    load_path, client_state = engine.load_checkpoint(
        str(info.path.parent), tag=info.path.name, load_optimizer_states=True, load_lr_scheduler_states=True
    )
    if load_path is None:
        raise RuntimeError(f"DeepSpeed could not load checkpoint {info.path}; see its log above")
    rng_path = info.path / _rng_file(_rank())
    if rng_path.is_file():
        set_rng_state(torch.load(rng_path, weights_only=True))
    else:
        log.warning(
            "checkpoint %s has no RNG state for rank %d: random draws will differ", info.path, _rank()
        )
    return info, client_state or {}


def _as_payload(info: CheckpointInfo | None) -> tuple[str, int, dict[str, Any]] | None:
    return None if info is None else (str(info.path), info.step, info.meta)
