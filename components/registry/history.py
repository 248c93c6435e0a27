"""The promotion log: every gate decision as one JSON line, kept locally and in MLflow.

Locally: ``reports/register/promotions.jsonl`` (``register.promotions``), an append-only file. Each
record is appended with one ``write`` on a file opened with ``O_APPEND`` under an exclusive
``flock``, then ``fsync``-ed; earlier bytes are never rewritten. A last line torn by a crash is left
as it is (readers skip it) and the next record starts on a new line.

In MLflow: the same record is the model version tag ``gate.record.<UTC stamp>`` of the version the
decision is about (the candidate; for a rollback, the version that became champion again), so the
history survives a lost working copy. When the local log is missing, :func:`restore_log` rebuilds
it from those tags before the next record is appended.

A record's keys: ``time`` (ISO 8601 UTC), ``model_name``, ``version``, ``decision`` (one of
:data:`DECISIONS`), ``champion_before``, ``champion_after``, ``reason`` and ``rules`` (the gate's
rules with both sides' values and the outcome; empty for a rollback).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from mlflow import MlflowClient

from components.io.atomic import write_text_atomic

DECISIONS = ("promoted", "rejected", "rollback", "manual")
RECORD_KEYS = (
    "time",
    "model_name",
    "version",
    "decision",
    "champion_before",
    "champion_after",
    "reason",
    "rules",
)
RECORD_TAG_PREFIX = "gate.record."
DEFAULT_LOG = Path("reports/register/promotions.jsonl")
MAX_RECORD_TAG = 7900

DecisionLabel = Literal["promoted", "rejected", "rollback", "manual"]
log = logging.getLogger(__name__)


def make_record(
    model_name: str,
    version: str | int,
    decision: DecisionLabel,
    champion_before: str | None,
    champion_after: str | None,
    reason: str,
    rules: Sequence[Mapping[str, Any]] = (),
    when: datetime | None = None,
) -> dict[str, Any]:
    """One log record with exactly :data:`RECORD_KEYS`; ValueError on an unknown ``decision``."""
    if decision not in DECISIONS:
        raise ValueError(f"decision {decision!r} is not one of {DECISIONS}")
    when = (when or datetime.now(UTC)).astimezone(UTC)
    return {
        "time": when.isoformat(timespec="microseconds"),
        "model_name": model_name,
        "version": str(version),
        "decision": decision,
        "champion_before": None if champion_before is None else str(champion_before),
        "champion_after": None if champion_after is None else str(champion_after),
        "reason": reason,
        "rules": [dict(r) for r in rules],
    }


def record_line(record: Mapping[str, Any]) -> str:
    """The record as one JSON line (newlines inside strings are escaped), ending in ``\\n``."""
    return json.dumps(dict(record), ensure_ascii=False, allow_nan=False) + "\n"


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def append_record(path: Path | str, record: Mapping[str, Any]) -> None:
    """Append ``record`` as one line to ``path`` (created if absent); earlier bytes stay untouched.

    ``O_APPEND`` + one ``write`` under an exclusive ``flock`` (so concurrent writers never interleave)
    + ``fsync``. If the file does not end in a newline (a line torn by a crash), the record starts a
    new line instead of being glued to the torn one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = record_line(record).encode("utf-8")
    created = not path.exists()
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            data = b"\n" + data
        view = memoryview(data)
        while view:  # one write for a regular file; the loop only guards against a short write
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)  # also releases the flock
    if created:
        _fsync_dir(path.parent)


def read_records(path: Path | str) -> list[dict[str, Any]]:
    """The records of a log, oldest first; [] if it does not exist. Unparseable (torn) lines are
    skipped with a warning naming the line."""
    path = Path(path)
    if not path.is_file():
        return []
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            log.warning("%s:%d is not a JSON record (torn write?): skipped", path, n)
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


def record_tag(record: Mapping[str, Any]) -> tuple[str, str]:
    """``(key, value)`` of the model version tag that keeps ``record`` in MLflow.

    The key is ``gate.record.<YYYYmmddTHHMMSSffffffZ>`` (one per decision, so a version gated several
    times keeps them all); the value is the JSON record, with the per-rule table cut down to metric
    and outcome if the whole would exceed :data:`MAX_RECORD_TAG` characters.
    """
    stamp = datetime.fromisoformat(record["time"]).astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    value = record_line(record).rstrip("\n")
    if len(value) > MAX_RECORD_TAG:
        short = dict(
            record, rules=[{"metric": r.get("metric"), "passed": r.get("passed")} for r in record["rules"]]
        )
        value = record_line(short).rstrip("\n")[:MAX_RECORD_TAG]
    return RECORD_TAG_PREFIX + stamp, value


def tag_record(client: MlflowClient, record: Mapping[str, Any]) -> str:
    """Store ``record`` as a tag of the model version it is about; returns the tag key."""
    key, value = record_tag(record)
    client.set_model_version_tag(record["model_name"], record["version"], key, value)
    return key


def records_from_registry(client: MlflowClient, model_name: str) -> list[dict[str, Any]]:
    """Every record kept in the ``gate.record.*`` tags of ``model_name``'s versions, oldest first."""
    found = []
    for mv in client.search_model_versions(f"name = '{model_name}'"):
        for key, value in mv.tags.items():
            if not key.startswith(RECORD_TAG_PREFIX):
                continue
            try:
                found.append(json.loads(value))
            except json.JSONDecodeError:
                log.warning("%s v%s tag %s is not a JSON record: skipped", model_name, mv.version, key)
    return sorted(found, key=lambda r: r.get("time", ""))


def restore_log(path: Path | str, client: MlflowClient, model_name: str) -> int:
    """If the log ``path`` is missing, write it from the registry's records of ``model_name``.

    Never touches an existing file. Returns how many records were restored (0: file present or
    nothing in MLflow). Only ``model_name``'s records come back: a log shared by several models
    regains the others when they are next gated.
    """
    path = Path(path)
    if path.exists():
        return 0
    records = records_from_registry(client, model_name)
    if not records:
        return 0
    write_text_atomic(path, "".join(record_line(r) for r in records))
    log.warning("%s was missing: restored %d record(s) of %s from MLflow", path, len(records), model_name)
    return len(records)
