"""Great Expectations suite for the ingest clip manifest, with HTML data docs.

The suite is declared here as plain data (:func:`manifest_expectation_specs`) so its names can be
listed without importing Great Expectations; :func:`validate_manifest` turns it into a GX 1.x
``ExpectationSuite``, validates a manifest DataFrame through a ``Checkpoint`` in an ephemeral
context, and lets the checkpoint's ``UpdateDataDocsAction`` write the data docs (validation result
pages plus ``index.html``) straight into the requested folder.

Expectations that only make sense for some rows (a kept clip must have a path and a hash; a
filtered or quarantined one must say why) use GX row conditions on the ``status`` column.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from components.io.manifest import (
    MANIFEST_COLUMNS,
    STATUS_FILTERED,
    STATUS_KEPT,
    STATUS_QUARANTINED,
    STATUSES,
)

log = logging.getLogger(__name__)

HASH_REGEX = r"^[0-9a-f]{64}$"
DOCS_SITE_NAME = "manifest_docs"

Scope = Literal["all", "kept", "not_kept"]
_SCOPE_LABEL: dict[str, str] = {"all": "", "kept": ", kept rows", "not_kept": ", non-kept rows"}


@dataclass(frozen=True)
class ManifestLimits:
    """Accepted ranges for kept clips (inclusive bounds)."""

    min_fps: float = 1.0
    max_fps: float = 120.0
    min_frames: int = 9
    max_frames: int = 257
    min_side: int = 32
    max_side: int = 4096
    require_caption: bool = False


@dataclass
class ValidationReport:
    """Outcome of one manifest validation.

    Attributes:
        success: True when every expectation passed.
        failed: names of the failing expectations (see :func:`manifest_expectation_names`).
        evaluated: number of expectations evaluated.
        docs_index: the data docs ``index.html`` if it was built, else None.
    """

    success: bool
    failed: list[str]
    evaluated: int
    docs_index: Path | None


class ManifestValidationError(RuntimeError):
    """The manifest failed its expectation suite; the message lists the failing expectations."""


@dataclass(frozen=True)
class ExpectationSpec:
    """One expectation of the suite, independent of the GX import.

    Attributes:
        type: GX expectation type in snake case, e.g. ``expect_column_values_to_be_unique``.
        kwargs: keyword arguments of the GX expectation class (``column``, bounds, ...).
        scope: rows the expectation applies to: all rows, kept rows, or non-kept rows.
    """

    type: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    scope: Scope = "all"

    @property
    def name(self) -> str:
        """Human-readable, suite-unique name: ``type(column[, kept rows|, non-kept rows])``."""
        target = self.kwargs.get("column", "table")
        return f"{self.type}({target}{_SCOPE_LABEL[self.scope]})"

    @property
    def class_name(self) -> str:
        """GX class name, e.g. ``ExpectColumnValuesToBeUnique``."""
        return "".join(part.capitalize() for part in self.type.split("_"))


def manifest_expectation_specs(limits: ManifestLimits = ManifestLimits()) -> list[ExpectationSpec]:
    """The manifest suite as a list of specs (no GX import needed)."""
    specs: list[ExpectationSpec] = [
        ExpectationSpec("expect_table_row_count_to_be_between", {"min_value": 1, "max_value": None}),
    ]
    specs += [ExpectationSpec("expect_column_to_exist", {"column": c}) for c in MANIFEST_COLUMNS]
    specs += [
        ExpectationSpec("expect_column_values_to_not_be_null", {"column": "clip_id"}),
        ExpectationSpec("expect_column_values_to_be_unique", {"column": "clip_id"}),
        ExpectationSpec("expect_column_values_to_not_be_null", {"column": "status"}),
        ExpectationSpec(
            "expect_column_values_to_be_in_set", {"column": "status", "value_set": list(STATUSES)}
        ),
        # a manifest without a single kept clip gives the next stages nothing to work on
        ExpectationSpec(
            "expect_column_distinct_values_to_contain_set", {"column": "status", "value_set": [STATUS_KEPT]}
        ),
    ]
    # kept clips must be complete: range checks ignore nulls, so nulls are checked separately
    specs += [
        ExpectationSpec("expect_column_values_to_not_be_null", {"column": c}, "kept")
        for c in ("clip_path", "content_hash", "fps", "frames", "height", "width")
    ]
    specs += [
        ExpectationSpec(
            "expect_column_values_to_match_regex", {"column": "content_hash", "regex": HASH_REGEX}, "kept"
        ),
        ExpectationSpec(
            "expect_column_values_to_be_between",
            {"column": "fps", "min_value": limits.min_fps, "max_value": limits.max_fps},
            "kept",
        ),
        ExpectationSpec(
            "expect_column_values_to_be_between",
            {"column": "frames", "min_value": limits.min_frames, "max_value": limits.max_frames},
            "kept",
        ),
    ]
    specs += [
        ExpectationSpec(
            "expect_column_values_to_be_between",
            {"column": side, "min_value": limits.min_side, "max_value": limits.max_side},
            "kept",
        )
        for side in ("height", "width")
    ]
    if limits.require_caption:
        specs.append(ExpectationSpec("expect_column_values_to_not_be_null", {"column": "caption"}, "kept"))
    specs.append(ExpectationSpec("expect_column_values_to_not_be_null", {"column": "reason"}, "not_kept"))

    names = [s.name for s in specs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:  # pragma: no cover - guards future edits of the list above
        raise AssertionError(f"expectation names must be unique, repeated: {duplicates}")
    return specs


def annotation_expectation_specs(min_visible_tracks: int) -> list[ExpectationSpec]:
    """The GX suite of the annotation table (``annotate``'s output; ``validate_table`` runs it): one row
    per clip, known statuses, a reason for every clip not kept, and for kept clips their annotation
    file, confidence and mask coverage in range, at least ``min_visible_tracks`` tracks, and keypoints
    inside the frame or marked hidden."""
    kept = "kept"
    specs = [
        ExpectationSpec("expect_table_row_count_to_be_between", {"min_value": 1, "max_value": None}),
        ExpectationSpec("expect_column_values_to_be_unique", {"column": "clip_id"}),
        ExpectationSpec("expect_column_values_to_not_be_null", {"column": "clip_id"}),
        ExpectationSpec(
            "expect_column_values_to_be_in_set",
            {"column": "status", "value_set": [STATUS_KEPT, STATUS_FILTERED, STATUS_QUARANTINED]},
        ),
        ExpectationSpec("expect_column_values_to_not_be_null", {"column": "reason"}, "not_kept"),
    ]
    for col in ("annotation_path", "mean_confidence", "mask_coverage", "visible_tracks"):
        specs.append(ExpectationSpec("expect_column_values_to_not_be_null", {"column": col}, kept))
    specs += [
        ExpectationSpec(
            "expect_column_values_to_be_between",
            {"column": "mean_confidence", "min_value": 0, "max_value": 1},
            kept,
        ),
        ExpectationSpec(
            "expect_column_values_to_be_between",
            {
                "column": "mask_coverage",
                "min_value": 0,
                "max_value": 1,
                "strict_min": True,
                "strict_max": True,
            },
            kept,
        ),
        ExpectationSpec(
            "expect_column_values_to_be_between",
            {"column": "visible_tracks", "min_value": min_visible_tracks, "max_value": None},
            kept,
        ),
        ExpectationSpec(
            "expect_column_values_to_be_in_set",
            {"column": "keypoint_in_frame_or_hidden", "value_set": [True]},
            kept,
        ),
    ]
    return specs


def manifest_expectation_names(limits: ManifestLimits = ManifestLimits()) -> list[str]:
    """Names of the suite's expectations, in suite order."""
    return [s.name for s in manifest_expectation_specs(limits)]


def _to_gx_expectation(spec: ExpectationSpec) -> Any:
    """Instantiate the GX expectation for ``spec`` (GX must be importable)."""
    import great_expectations.expectations as gxe
    from great_expectations.expectations.row_conditions import Column

    kwargs: dict[str, Any] = dict(spec.kwargs)
    # GX >= 1.9 takes Condition objects; the pandas engine turns them into DataFrame.query filters.
    if spec.scope == "kept":
        kwargs["row_condition"] = Column("status") == STATUS_KEPT
    elif spec.scope == "not_kept":
        kwargs["row_condition"] = Column("status") != STATUS_KEPT
    cls = getattr(gxe, spec.class_name)
    return cls(**kwargs, meta={"name": spec.name})


def validate_manifest(
    df: pd.DataFrame,
    docs_dir: Path,
    limits: ManifestLimits = ManifestLimits(),
    suite_name: str = "ingest_manifest",
) -> ValidationReport:
    """Validate an ingest manifest with its suite (:func:`manifest_expectation_specs`)."""
    return validate_table(df, manifest_expectation_specs(limits), docs_dir, suite_name)


def validate_table(
    df: pd.DataFrame,
    specs: list[ExpectationSpec],
    docs_dir: Path,
    suite_name: str,
) -> ValidationReport:
    """Validate a table (a stage's manifest) with Great Expectations and write data docs into ``docs_dir``.

    Scoped specs ("kept"/"not_kept") filter on the table's ``status`` column.

    Runs in a fresh ephemeral GX context (nothing is read from or written to a GX project); the
    only files written are the data docs site under ``docs_dir``.

    Args:
        df: the table to validate.
        specs: the suite (see :class:`ExpectationSpec`).
        docs_dir: folder that receives the data docs site (``index.html``, validation pages).
        suite_name: expectation suite name, shown in the data docs.

    Returns:
        The report; ``failed`` names the failing expectations (an expectation that raised while
        being evaluated, e.g. on a missing column, counts as failed).
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"validate_table expects a pandas DataFrame, got {type(df).__name__}")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.checkpoint import UpdateDataDocsAction
    from great_expectations.data_context.types.base import ProgressBarsConfig

    docs_dir = Path(docs_dir).resolve()
    docs_dir.mkdir(parents=True, exist_ok=True)

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    for site in list(context.list_data_docs_sites()):  # the default site points at a temp dir
        context.delete_data_docs_site(site)
    context.add_data_docs_site(
        site_name=DOCS_SITE_NAME,
        site_config={
            "class_name": "SiteBuilder",
            "show_how_to_buttons": False,
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        },
    )

    batch_definition = (
        context.data_sources.add_pandas(name="manifest")
        .add_dataframe_asset(name="manifest")
        .add_batch_definition_whole_dataframe(name="whole_manifest")
    )
    suite = context.suites.add(gx.ExpectationSuite(name=suite_name))
    for spec in specs:
        suite.add_expectation(_to_gx_expectation(spec))
    validation = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{suite_name}_validation", data=batch_definition, suite=suite)
    )
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name=f"{suite_name}_checkpoint",
            validation_definitions=[validation],
            actions=[UpdateDataDocsAction(name="update_data_docs", site_names=[DOCS_SITE_NAME])],
        )
    )
    result = checkpoint.run(batch_parameters={"dataframe": df})

    failed: list[str] = []
    evaluated = 0
    for suite_result in result.run_results.values():
        for r in suite_result.results:
            evaluated += 1
            if r.success:
                continue
            config = r.expectation_config
            name = (config.meta or {}).get("name") or f"{config.type}({config.kwargs.get('column', 'table')})"
            if r.exception_info and r.exception_info.get("raised_exception"):
                log.warning("expectation %s raised: %s", name, r.exception_info.get("exception_message"))
            failed.append(name)

    index = docs_dir / "index.html"
    docs_index: Path | None = index
    if not index.is_file() or suite_name not in index.read_text(encoding="utf-8", errors="replace"):
        log.warning("data docs index %s was not built or does not mention suite %s", index, suite_name)
        docs_index = None

    success = bool(result.success) and not failed
    log.info("suite %s: %d/%d expectations passed", suite_name, evaluated - len(failed), evaluated)
    return ValidationReport(success=success, failed=failed, evaluated=evaluated, docs_index=docs_index)


def ensure_valid(report: ValidationReport) -> None:
    """Raise :class:`ManifestValidationError` naming the failing expectations if ``report`` failed."""
    if report.success:
        return
    where = f"; data docs: {report.docs_index}" if report.docs_index else ""
    names = "; ".join(report.failed) or "(no expectation named; checkpoint failed)"
    raise ManifestValidationError(
        f"manifest failed {len(report.failed)} of {report.evaluated} expectation(s): {names}{where}"
    )
