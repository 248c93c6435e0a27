"""Tests for components.io.atomic, components.io.hashing and components.io.manifest."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from components.io.atomic import atomic_dir, atomic_path, write_json_atomic, write_text_atomic
from components.io.hashing import array_sha256, file_sha256
from components.io.manifest import (
    MANIFEST_COLUMNS,
    STATUSES,
    empty_manifest,
    read_manifest,
    to_manifest,
    write_manifest,
)


def _listing(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


def _tree(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


class Boom(Exception):
    pass


# --- atomic_path --------------------------------------------------------------------------------


def test_atomic_path_writes_new_file(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "f.txt"
    with atomic_path(target) as tmp:
        assert tmp != target
        assert tmp.parent == target.parent  # same folder, so the rename is atomic
        assert not target.exists()
        tmp.write_text("new")
    assert target.read_text() == "new"
    assert _listing(target.parent) == ["f.txt"]


def test_atomic_path_replaces_existing(tmp_path: Path) -> None:
    target = tmp_path / "f.txt"
    target.write_text("old")
    with atomic_path(target) as tmp:
        tmp.write_text("new")
        assert target.read_text() == "old"  # readers see the old file until the end
    assert target.read_text() == "new"
    assert _listing(tmp_path) == ["f.txt"]


def test_atomic_path_exception_keeps_old_file(tmp_path: Path) -> None:
    target = tmp_path / "f.txt"
    target.write_text("old")
    with pytest.raises(Boom), atomic_path(target) as tmp:
        tmp.write_text("half-writ")
        raise Boom
    assert target.read_text() == "old"
    assert _listing(tmp_path) == ["f.txt"]


def test_atomic_path_exception_without_old_file_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(Boom), atomic_path(tmp_path / "f.txt") as tmp:
        tmp.write_text("x")
        raise Boom
    assert _listing(tmp_path) == []


def test_write_text_and_json_atomic(tmp_path: Path) -> None:
    write_text_atomic(tmp_path / "a.txt", "héllo")
    assert (tmp_path / "a.txt").read_text(encoding="utf-8") == "héllo"
    write_json_atomic(tmp_path / "b.json", {"b": 1, "a": Path("x/y")})
    text = (tmp_path / "b.json").read_text(encoding="utf-8")
    assert json.loads(text) == {"a": "x/y", "b": 1}
    assert text.index('"a"') < text.index('"b"')  # sorted keys
    assert text.endswith("\n")
    assert _listing(tmp_path) == ["a.txt", "b.json"]


# --- atomic_dir ---------------------------------------------------------------------------------


def test_atomic_dir_creates_folder(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with atomic_dir(target) as tmp:
        assert tmp.is_dir() and tmp.parent == tmp_path and tmp != target
        (tmp / "a.txt").write_text("a")
    assert _tree(target) == {"a.txt": b"a"}
    assert _listing(tmp_path) == ["out"]


def test_atomic_dir_replaces_folder_whole(tmp_path: Path) -> None:
    target = tmp_path / "out"
    (target / "nested").mkdir(parents=True)
    (target / "stale.txt").write_text("stale")
    (target / "nested" / "old.txt").write_text("old")
    with atomic_dir(target) as tmp:
        assert _tree(target) == {"nested/old.txt": b"old", "stale.txt": b"stale"}
        (tmp / "fresh.txt").write_text("fresh")
        (tmp / "d").mkdir()
        (tmp / "d" / "x.bin").write_bytes(b"\x00\x01")
    assert _tree(target) == {"d/x.bin": b"\x00\x01", "fresh.txt": b"fresh"}  # nothing stale survives
    assert _listing(tmp_path) == ["out"]  # no .tmp or .old folders left


def test_atomic_dir_exception_keeps_old_folder(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.mkdir()
    (target / "keep.txt").write_text("keep")
    with pytest.raises(Boom), atomic_dir(target) as tmp:
        (tmp / "partial.txt").write_text("partial")
        raise Boom
    assert _tree(target) == {"keep.txt": b"keep"}
    assert _listing(tmp_path) == ["out"]


def test_atomic_dir_keyboard_interrupt_cleans_up(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt), atomic_dir(target) as tmp:
        (tmp / "partial.txt").write_text("partial")
        raise KeyboardInterrupt
    assert _listing(tmp_path) == []


# --- hashing ------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 5, (1 << 20) + 17])  # empty, tiny, more than one read chunk
def test_file_sha256_matches_hashlib(tmp_path: Path, size: int) -> None:
    data = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()
    assert file_sha256(str(path)) == hashlib.sha256(data).hexdigest()


def test_file_sha256_changes_with_one_byte(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"abcdef")
    (tmp_path / "b").write_bytes(b"abcdeg")
    assert file_sha256(tmp_path / "a") != file_sha256(tmp_path / "b")


def test_array_sha256_is_deterministic_and_content_sensitive() -> None:
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    assert array_sha256(a) == array_sha256(a.copy())
    assert len(array_sha256(a)) == 64 and int(array_sha256(a), 16) >= 0
    b = a.copy()
    b[1, 2, 3] += 1
    assert array_sha256(a) != array_sha256(b)


def test_array_sha256_differs_with_shape_and_dtype() -> None:
    a = np.arange(24, dtype=np.uint8)
    assert a.tobytes() == a.reshape(4, 6).tobytes()
    hashes = {array_sha256(a), array_sha256(a.reshape(4, 6)), array_sha256(a.reshape(6, 4))}
    assert len(hashes) == 3
    assert array_sha256(np.zeros(4, np.int16)) != array_sha256(np.zeros(8, np.uint8))


def test_array_sha256_ignores_memory_layout() -> None:
    a = np.arange(60, dtype=np.uint8).reshape(3, 4, 5)
    view = np.asfortranarray(a)
    assert not view.flags.c_contiguous
    assert array_sha256(view) == array_sha256(a)
    assert array_sha256(a[:, ::2]) == array_sha256(np.ascontiguousarray(a[:, ::2]))


# --- manifest -----------------------------------------------------------------------------------


def _row(**kw) -> dict:
    row = {
        "clip_id": "c0",
        "source": "demo:x",
        "start_frame": 3,
        "end_frame": 20,
        "start_sec": 0.125,
        "fps": 16.0,
        "frames": 17,
        "status": "kept",
        "is_dynamic_dis": True,
        "sharpness_laplacian": 12.5,
    }
    row.update(kw)
    return row


def test_statuses() -> None:
    assert STATUSES == ("kept", "filtered", "quarantined")


def test_empty_manifest_has_columns_and_dtypes() -> None:
    df = empty_manifest()
    assert len(df) == 0
    assert list(df.columns) == list(MANIFEST_COLUMNS)
    assert {c: str(t) for c, t in df.dtypes.items()} == MANIFEST_COLUMNS


def test_to_manifest_rejects_unknown_keys() -> None:
    with pytest.raises(KeyError, match="clip_idd"):
        to_manifest([_row(), {"clip_idd": "x"}])


def test_to_manifest_fills_missing_columns_with_nulls() -> None:
    df = to_manifest([_row(), {"clip_id": "q1", "status": "quarantined", "reason": "empty_file"}])
    assert list(df.columns) == list(MANIFEST_COLUMNS)
    assert {c: str(t) for c, t in df.dtypes.items()} == MANIFEST_COLUMNS
    q = df.iloc[1]
    for col in ("source", "start_frame", "fps", "frames", "is_dynamic_dis", "height", "caption"):
        assert pd.isna(q[col]), col
    assert q["reason"] == "empty_file"
    k = df.iloc[0]
    assert k["frames"] == 17 and k["fps"] == 16.0 and bool(k["is_dynamic_dis"]) is True
    assert pd.isna(k["reason"]) and pd.isna(k["height"])


def test_to_manifest_empty_rows() -> None:
    df = to_manifest([])
    assert len(df) == 0 and list(df.columns) == list(MANIFEST_COLUMNS)


def test_manifest_round_trip_preserves_values_and_dtypes(tmp_path: Path) -> None:
    df = to_manifest(
        [
            _row(),
            _row(clip_id="c1", is_dynamic_dis=False, caption="a man walks", split="val"),
            {"clip_id": "q", "status": "quarantined", "reason": "not_a_video"},
        ]
    )
    path = tmp_path / "reports" / "manifest.parquet"
    write_manifest(df, path)
    assert _listing(path.parent) == ["manifest.parquet"]
    back = read_manifest(path)
    assert {c: str(t) for c, t in back.dtypes.items()} == MANIFEST_COLUMNS
    pd.testing.assert_frame_equal(back, df)
    assert pd.isna(back.loc[2, "frames"]) and pd.isna(back.loc[2, "is_dynamic_dis"])


def test_write_manifest_is_atomic_on_failure(tmp_path: Path) -> None:
    path = tmp_path / "manifest.parquet"
    write_manifest(to_manifest([_row()]), path)
    before = path.read_bytes()
    bad = pd.DataFrame({"clip_id": [object()]})  # pyarrow cannot write an arbitrary object
    with pytest.raises((pa.ArrowException, TypeError, ValueError)):
        write_manifest(bad, path)
    assert path.read_bytes() == before
    assert _listing(tmp_path) == ["manifest.parquet"]


def test_read_manifest_missing_column_names_it(tmp_path: Path) -> None:
    df = to_manifest([_row()]).drop(columns=["content_hash"])
    path = tmp_path / "m.parquet"
    df.to_parquet(path, index=False)
    with pytest.raises(ValueError, match="content_hash"):
        read_manifest(path)


def test_read_manifest_restores_dtypes_of_plain_parquet(tmp_path: Path) -> None:
    plain = to_manifest([_row()]).astype(object)
    plain["frames"] = [17]
    plain["fps"] = [16.0]
    path = tmp_path / "m.parquet"
    plain.to_parquet(path, index=False)
    back = read_manifest(path)
    assert {c: str(t) for c, t in back.dtypes.items()} == MANIFEST_COLUMNS
    assert back.loc[0, "frames"] == 17


def test_atomic_outputs_get_the_umask_mode_not_the_temp_files(tmp_path: Path) -> None:
    """mkstemp makes 0600 files and mkdtemp 0700 folders; outputs get what ``open``/``mkdir`` give."""
    old = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "metrics.json", "{}")
        with atomic_dir(tmp_path / "reports") as d:
            (d / "x.txt").write_text("x")
    finally:
        os.umask(old)
    assert (tmp_path / "metrics.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "reports").stat().st_mode & 0o777 == 0o755
