"""Promotion: move the ``champion`` alias to a candidate only when the gate (:mod:`components.registry.gate`)
says its metrics beat the champion's.

Every decision (and every rollback) is appended to the promotion log and kept in MLflow
(:mod:`components.registry.history`).

Aliases, never the deprecated stages: ``candidate`` (set at registration), ``champion`` (what
``models:/<name>@champion`` serves) and ``previous-champion`` (the champion a promotion replaced;
also kept as the version tag ``previous_champion`` so repeated rollbacks walk back in history).

Concurrency: every alias change happens under an inter-process ``fcntl`` lock on a file beside the
tracking store (``<db>.registry.lock`` for ``sqlite:///<db>``), and the champion is re-read inside
the lock, so two promotions at once are serialised and the second compares against the first's
result. A lock file only serialises processes that share that file system. With a shared
``mlflow server`` (several hosts), use a server-side lock instead, e.g. a Postgres advisory lock
(``SELECT pg_advisory_lock(<key>)`` on the backend database) held around :func:`promote`; for such
URIs this module falls back to a per-machine lock and warns.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import logging
import math
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from components.io.atomic import write_text_atomic
from components.registry.config import GateConfig
from components.registry.gate import Decision, decide, rule_records
from components.registry.history import (
    append_record,
    make_record,
    record_line,
    restore_log,
    tag_record,
)
from components.registry.lineage import default_tracking_uri

CANDIDATE = "candidate"
CHAMPION = "champion"
PREVIOUS = "previous-champion"
PREVIOUS_TAG = "previous_champion"
METRIC_TAG_PREFIX = "metric."
DECISION_TAG = "gate.decision"
REASON_TAG = "gate.reason"
DECISION_MD_TAG = "gate.decision_md"
MAX_TAG_VALUE = 7900

log = logging.getLogger(__name__)


class RegistryError(RuntimeError):
    """A registry operation cannot be done as asked; the message says why and what to do."""


class RegistryLockTimeout(RegistryError):
    """Another process held the registry lock for longer than the timeout."""


# ---------------------------------------------------------------- gate configuration and decision


# ---------------------------------------------------------------------------------------- locking


def lock_file_for(tracking_uri: str) -> Path:
    """The lock file beside the tracking store: ``<db>.registry.lock`` for sqlite, a file in the
    store folder for file stores, and a per-machine file in the temp folder for server URIs."""
    if tracking_uri.startswith("sqlite:///") and tracking_uri != "sqlite:///:memory:":
        db = Path(tracking_uri.removeprefix("sqlite:///"))
        return db.with_name(db.name + ".registry.lock")
    parsed = urlparse(tracking_uri)
    if parsed.scheme in ("", "file"):
        return Path(parsed.path if parsed.scheme else tracking_uri) / ".mosa-registry.lock"
    log.warning(
        "tracking URI %s is a server: the registry lock only serialises promotions on this machine; "
        "a shared deployment needs a server-side lock (e.g. a Postgres advisory lock)",
        tracking_uri,
    )
    digest = hashlib.sha1(tracking_uri.encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"mosa-registry-{digest}.lock"


@contextlib.contextmanager
def registry_lock(
    tracking_uri: str, lock_path: Path | str | None = None, timeout: float = 120.0
) -> Iterator[Path]:
    """Hold an exclusive ``fcntl.flock`` on the store's lock file (or ``lock_path``) while inside."""
    path = Path(lock_path) if lock_path is not None else lock_file_for(tracking_uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout
    with open(path, "a+") as handle:
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise RegistryLockTimeout(
                        f"registry lock {path} still held after {timeout:.0f} s: another promotion is "
                        "running (or hung); wait for it, or stop it and retry"
                    ) from None
                time.sleep(0.05)
        try:
            yield path
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


# --------------------------------------------------------------------------- registry operations


def client_for(tracking_uri: str | None = None) -> tuple[MlflowClient, str]:
    """A client whose tracking and registry URIs are both ``tracking_uri`` (default: the project's)."""
    uri = tracking_uri or default_tracking_uri()
    return MlflowClient(tracking_uri=uri, registry_uri=uri), uri


def parse_metric(value: str | None) -> float | None:
    """A ``metric.*`` tag value back to a number; absent, ``null``, non-numeric or non-finite → None."""
    try:
        v = float(value) if value is not None else None
    except ValueError:
        return None
    return v if v is not None and math.isfinite(v) else None


def version_metrics(mv: ModelVersion) -> dict[str, float | None]:
    """The evaluation metrics stored as ``metric.<name>`` tags on a model version."""
    return {
        k[len(METRIC_TAG_PREFIX) :]: parse_metric(v)
        for k, v in mv.tags.items()
        if k.startswith(METRIC_TAG_PREFIX)
    }


def aliases(client: MlflowClient, model_name: str) -> dict[str, str]:
    """``{alias: version}`` of a registered model; RegistryError if the model does not exist."""
    try:
        found = client.get_registered_model(model_name).aliases
    except MlflowException as exc:
        raise RegistryError(
            f"registered model '{model_name}' not found ({exc.message}): register a version first "
            "(components.registry.register.register or `dvc repro register`)"
        ) from exc
    return {alias: str(version) for alias, version in found.items()}  # the sqlite store gives ints


def _version(client: MlflowClient, model_name: str, version: str) -> ModelVersion:
    try:
        return client.get_model_version(model_name, version)
    except MlflowException as exc:
        raise RegistryError(
            f"model '{model_name}' has no version {version!r} ({exc.message}): check the version number "
            "in the MLflow UI or with MlflowClient().search_model_versions"
        ) from exc


@dataclasses.dataclass(frozen=True)
class PromotionResult:
    """Outcome of :func:`promote`: the decision, the champion before and after, and the log record."""

    model_name: str
    version: str
    decision: Decision
    champion_before: str | None
    champion_after: str | None
    previous_champion: str | None
    markdown: str
    report_path: Path | None
    record: dict = dataclasses.field(default_factory=dict)


def decision_markdown(
    model_name: str,
    version: str,
    decision: Decision,
    champion: tuple[str | None, str | None],
    previous: tuple[str | None, str | None],
) -> str:
    """``decision.md``: verdict, reason, the two aliases (before, after) and the comparison table."""
    verdict = "promoted" if decision.promote else "not promoted"
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")

    def v(x: str | None) -> str:
        return f"v{x}" if x else "none"

    return (
        f"# Promotion gate: {model_name} v{version}\n\n"
        f"**Decision: {verdict}.** {decision.reason}\n\n"
        f"| alias | before | after |\n|---|---|---|\n"
        f"| {CHAMPION} | {v(champion[0])} | {v(champion[1])} |\n"
        f"| {PREVIOUS} | {v(previous[0])} | {v(previous[1])} |\n\n"
        f"{decision.table_markdown()}\n"
        f"_decided {when}_\n"
    )


def _keep_record(
    client: MlflowClient, record: dict, history_path: Path | str | None, run_id: str | None = None
) -> None:
    """Keep a decision in MLflow (version tag, and the run's ``promotions.jsonl`` artifact when a run
    is given) and append it to the local log ``history_path`` (restored from MLflow first if lost)."""
    if history_path is not None:
        restore_log(history_path, client, record["model_name"])
    tag_record(client, record)
    if history_path is not None:
        append_record(history_path, record)
    if run_id:
        if history_path is not None:
            client.log_artifact(run_id, str(history_path))
        else:
            client.log_text(run_id, record_line(record), "promotions.jsonl")


def promote(
    model_name: str,
    version: str | int,
    gate: GateConfig,
    *,
    tracking_uri: str | None = None,
    report_path: Path | str | None = None,
    run_id: str | None = None,
    lock_path: Path | str | None = None,
    lock_timeout: float = 120.0,
    history_path: Path | str | None = None,
    manual: bool = False,
    force: bool = False,
) -> PromotionResult:
    """Gate ``version`` against the current champion and move ``champion`` to it only if it passes.

    Under the registry lock: re-read the champion, decide, and on success point ``previous-champion``
    (and the version tag ``previous_champion``) at the old champion and ``champion`` at ``version``.
    ``manual`` marks a promotion asked for by hand (logged as ``manual`` instead of ``promoted``);
    ``force`` (by hand only) moves the champion even when the gate rejects, with the gate's verdict
    in the reason. Writes ``decision.md`` to ``report_path`` (if given) and to MLflow: an artifact of
    run ``run_id`` when given, else the version tag ``gate.decision_md``. The decision is kept as a
    promotion-log record: the version tag ``gate.record.<time>``, a line appended to
    ``history_path`` (if given) and, with ``run_id``, the run's artifact ``promotions.jsonl``.
    """
    if force and not manual:
        raise ValueError("force=True overrides the gate by hand: pass manual=True with it")
    client, uri = client_for(tracking_uri)
    version = str(version)
    with registry_lock(uri, lock_path, lock_timeout):
        candidate = _version(client, model_name, version)
        current = aliases(client, model_name)
        before, previous_before = current.get(CHAMPION), current.get(PREVIOUS)
        cand_metrics = version_metrics(candidate)
        if before == version:
            table = decide(cand_metrics, cand_metrics, gate)
            decision = Decision(False, table.rows, f"v{version} is already the champion: nothing to do")
        else:
            champ_metrics = version_metrics(_version(client, model_name, before)) if before else None
            decision = decide(cand_metrics, champ_metrics, gate)
            if force and not decision.promote:
                reason = decision.reason.removeprefix("rejected: ")
                decision = Decision(
                    True, decision.rows, f"promoted by hand over the gate (--force); gate: {reason}"
                )
        label = ("manual" if manual else "promoted") if decision.promote else "rejected"
        previous = previous_before
        if decision.promote:
            if before:
                client.set_registered_model_alias(model_name, PREVIOUS, before)
                client.set_model_version_tag(model_name, version, PREVIOUS_TAG, before)
                previous = before
            client.set_registered_model_alias(model_name, CHAMPION, version)
        after = version if decision.promote else before
        if before != version:
            client.set_model_version_tag(model_name, version, DECISION_TAG, label)
            client.set_model_version_tag(model_name, version, REASON_TAG, decision.reason[:MAX_TAG_VALUE])
        record = make_record(
            model_name, version, label, before, after, decision.reason, rule_records(gate, decision)
        )
        _keep_record(client, record, history_path, run_id)
    markdown = decision_markdown(model_name, version, decision, (before, after), (previous_before, previous))
    if report_path is not None:
        write_text_atomic(report_path, markdown)
    if run_id:
        client.log_text(run_id, markdown, "decision.md")
    else:
        client.set_model_version_tag(model_name, version, DECISION_MD_TAG, markdown[:MAX_TAG_VALUE])
    log.info("%s v%s: %s", model_name, version, decision.reason)
    return PromotionResult(
        model_name,
        version,
        decision,
        before,
        after,
        previous,
        markdown,
        Path(report_path) if report_path else None,
        record,
    )


@dataclasses.dataclass(frozen=True)
class RollbackResult:
    """Champion before and after a rollback, what ``previous-champion`` points at now, the log record."""

    model_name: str
    champion_before: str | None
    champion_after: str
    previous_champion: str | None
    record: dict = dataclasses.field(default_factory=dict)


def rollback(
    model_name: str,
    *,
    tracking_uri: str | None = None,
    lock_path: Path | str | None = None,
    lock_timeout: float = 120.0,
    history_path: Path | str | None = None,
) -> RollbackResult:
    """Point ``champion`` back at ``previous-champion``; that alias then moves one step further
    back (the restored version's ``previous_champion`` tag) or is removed when history ends.

    Kept as a ``rollback`` record about the restored version (its tag ``gate.record.<time>``, and a
    line appended to ``history_path`` if given)."""
    client, uri = client_for(tracking_uri)
    with registry_lock(uri, lock_path, lock_timeout):
        current = aliases(client, model_name)
        target = current.get(PREVIOUS)
        if target is None:
            raise RegistryError(
                f"model '{model_name}' has no '{PREVIOUS}' alias: nothing to roll back to (it is set when "
                f"a promotion replaces a champion; to pick a version by hand use "
                f"`mosa promote <version> --force`)"
            )
        before = current.get(CHAMPION)
        client.set_registered_model_alias(model_name, CHAMPION, target)
        older = _version(client, model_name, target).tags.get(PREVIOUS_TAG)
        if older and older not in (target, before):
            client.set_registered_model_alias(model_name, PREVIOUS, older)
        else:
            client.delete_registered_model_alias(model_name, PREVIOUS)
            older = None
        if before:
            client.set_model_version_tag(model_name, before, DECISION_TAG, f"rolled back to v{target}")
        reason = (
            f"rolled back by hand: champion v{before} -> v{target} (the previous champion); "
            f"{PREVIOUS} is now {f'v{older}' if older else 'unset'}"
        )
        record = make_record(model_name, target, "rollback", before, target, reason, [])
        _keep_record(client, record, history_path)
    log.info("%s: champion v%s -> v%s (rollback)", model_name, before, target)
    return RollbackResult(model_name, before, target, older, record)


def copy_to_prod(
    model_name: str,
    version: str | int,
    prod_name: str = "mosa-dit-prod",
    *,
    tracking_uri: str | None = None,
    lock_path: Path | str | None = None,
    lock_timeout: float = 120.0,
) -> ModelVersion:
    """Copy a version into the production model ``prod_name`` and make the copy its ``champion``."""
    client, uri = client_for(tracking_uri)
    version = str(version)
    with registry_lock(uri, lock_path, lock_timeout):
        _version(client, model_name, version)
        copy = client.copy_model_version(f"models:/{model_name}/{version}", prod_name)
        client.set_model_version_tag(
            prod_name, copy.version, "source_model", f"models:/{model_name}/{version}"
        )
        client.set_registered_model_alias(prod_name, CHAMPION, copy.version)
    return client.get_model_version(prod_name, copy.version)
