"""Tests for the Great Expectations manifest suite (each validation runs real GX, ~1 s)."""

from __future__ import annotations

from pathlib import Path

import pytest

from components.data.expectations import (
    ManifestLimits,
    ManifestValidationError,
    ValidationReport,
    ensure_valid,
    manifest_expectation_names,
    validate_manifest,
)
from components.io.manifest import to_manifest

HASH_A = "a" * 64
HASH_B = "0123456789abcdef" * 4

UNIQUE_ID = "expect_column_values_to_be_unique(clip_id)"
HASH_REGEX = "expect_column_values_to_match_regex(content_hash, kept rows)"
FPS_RANGE = "expect_column_values_to_be_between(fps, kept rows)"
ROW_COUNT = "expect_table_row_count_to_be_between(table)"
HAS_KEPT = "expect_column_distinct_values_to_contain_set(status)"
CAPTION = "expect_column_values_to_not_be_null(caption, kept rows)"
REASON = "expect_column_values_to_not_be_null(reason, non-kept rows)"


def _kept(clip_id: str, content_hash: str, **extra: object) -> dict:
    row = {
        "clip_id": clip_id,
        "source": f"demo:{clip_id}.mp4",
        "clip_path": f"clips/{clip_id}.mp4",
        "content_hash": content_hash,
        "fps": 8.0,
        "frames": 17,
        "height": 64,
        "width": 96,
        "caption": "a person walks",
        "split": "train",
        "status": "kept",
    }
    row.update(extra)
    return row


def good_rows() -> list[dict]:
    """2 kept, 1 filtered, 1 quarantined (the quarantined input has no hash, fps or caption)."""
    return [
        _kept("k1", HASH_A),
        _kept("k2", HASH_B),
        {
            "clip_id": "f1",
            "source": "demo:f1.mp4",
            "content_hash": HASH_A,
            "fps": 8.0,
            "frames": 17,
            "height": 64,
            "width": 96,
            "status": "filtered",
            "reason": "static: dynamic_degree_dis below threshold",
        },
        {"clip_id": "q1", "source": "broken.mp4", "status": "quarantined", "reason": "unreadable video"},
    ]


def run(rows: list[dict], tmp_path: Path, **kwargs: object) -> ValidationReport:
    return validate_manifest(to_manifest(rows), tmp_path / "docs", **kwargs)


# --- pure (no GX run) ------------------------------------------------------------------------------


def test_names_are_unique_and_caption_is_optional() -> None:
    names = manifest_expectation_names()
    assert len(names) == len(set(names))
    for name in (UNIQUE_ID, HASH_REGEX, FPS_RANGE, ROW_COUNT, HAS_KEPT, REASON):
        assert name in names
    assert CAPTION not in names
    assert CAPTION in manifest_expectation_names(ManifestLimits(require_caption=True))


def test_ensure_valid_passes_a_successful_report() -> None:
    ensure_valid(ValidationReport(success=True, failed=[], evaluated=3, docs_index=None))


# --- real GX validations ---------------------------------------------------------------------------


def test_good_manifest_passes_and_builds_docs(tmp_path: Path) -> None:
    report = run(good_rows(), tmp_path, suite_name="manifest_suite_under_test")
    assert report.success, report.failed
    assert report.failed == []
    assert report.evaluated == len(manifest_expectation_names())
    assert report.docs_index == (tmp_path / "docs" / "index.html").resolve()
    assert report.docs_index.is_file()
    assert "manifest_suite_under_test" in report.docs_index.read_text(encoding="utf-8")
    # the validation result itself is rendered, not only the index
    pages = list((tmp_path / "docs" / "validations" / "manifest_suite_under_test").rglob("*.html"))
    assert pages, "no validation result page in the data docs"
    ensure_valid(report)


def test_duplicate_clip_id_fails_and_ensure_valid_names_it(tmp_path: Path) -> None:
    rows = good_rows()
    rows[1]["clip_id"] = rows[0]["clip_id"]
    report = run(rows, tmp_path)
    assert not report.success
    assert report.failed == [UNIQUE_ID]
    with pytest.raises(ManifestValidationError, match=r"expect_column_values_to_be_unique\(clip_id\)"):
        ensure_valid(report)


def test_malformed_hash_on_kept_row_fails(tmp_path: Path) -> None:
    rows = good_rows()
    rows[0]["content_hash"] = "ABC" + HASH_A[3:]  # uppercase: not lower-hex
    report = run(rows, tmp_path)
    assert report.failed == [HASH_REGEX]


def test_kept_row_with_zero_fps_fails(tmp_path: Path) -> None:
    rows = good_rows()
    rows[1]["fps"] = 0.0
    report = run(rows, tmp_path)
    assert report.failed == [FPS_RANGE]


def test_non_kept_rows_are_exempt_from_kept_row_checks(tmp_path: Path) -> None:
    """The row conditions really filter: bad values on non-kept rows do not fail the suite."""
    rows = good_rows()
    rows[2].update(content_hash="not-a-hash", fps=0.0, frames=3, height=1, width=99999)  # filtered
    rows[3].update(content_hash=None, clip_path=None)  # quarantined
    report = run(rows, tmp_path)
    assert report.success, report.failed


def test_non_kept_row_without_reason_fails(tmp_path: Path) -> None:
    rows = good_rows()
    rows[3]["reason"] = None
    report = run(rows, tmp_path)
    assert report.failed == [REASON]


def test_empty_manifest_fails(tmp_path: Path) -> None:
    report = run([], tmp_path)
    assert not report.success
    assert ROW_COUNT in report.failed
    assert report.docs_index is not None


def test_manifest_without_kept_rows_fails(tmp_path: Path) -> None:
    rows = [r for r in good_rows() if r["status"] != "kept"]
    report = run(rows, tmp_path)
    assert report.failed == [HAS_KEPT]


def test_require_caption(tmp_path: Path) -> None:
    limits = ManifestLimits(require_caption=True)
    # the quarantined row has no caption: only kept rows need one
    ok = run(good_rows(), tmp_path / "ok", limits=limits)
    assert ok.success, ok.failed

    rows = good_rows()
    rows[0]["caption"] = None
    bad = run(rows, tmp_path / "bad", limits=limits)
    assert bad.failed == [CAPTION]
    with pytest.raises(ManifestValidationError) as err:
        ensure_valid(bad)
    assert CAPTION in str(err.value)

    # without require_caption the same manifest passes
    assert run(rows, tmp_path / "off").success


def test_missing_column_fails(tmp_path: Path) -> None:
    df = to_manifest(good_rows()).drop(columns=["split"])
    report = validate_manifest(df, tmp_path / "docs")
    assert "expect_column_to_exist(split)" in report.failed
