"""Ingest never keeps a clip of a file cut short: real demo videos cut mid-stream are quarantined
whole as ``truncated_or_corrupt`` with the declared and decoded frame counts; intact ones are kept."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from components.config import validate_section
from components.data import ingest as ing
from components.io.manifest import to_manifest
from tests.components.data.demo_cuts import cut, segment

LENIENT = {"min_motion_smoothness": 0.0, "min_sharpness": 0.0, "max_exposure_clipped": 1.0}
# (segment, cut) pairs that decord still opens and indexes, so they used to give kept clips, plus
# one it cannot open (whose reason used to name no counts)
CUT_FILES = {
    "vp9-webm-90.webm": ("vp9-webm", 0.9),
    "vp9-webm-end4k.webm": ("vp9-webm", -4096),
    "vp9-mp4-90.mp4": ("vp9-mp4", 0.9),
    "h264-end4k.mp4": ("h264-moov-first", -4096),
    "h264-moov-last-60.mp4": ("h264-moov-last", 0.6),
}
INTACT = {"vp9-webm.webm": "vp9-webm", "h264.mp4": "h264-moov-first"}


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    segments = tmp_path_factory.getbasetemp() / "demo-segments"
    root = tmp_path_factory.mktemp("cut-demos")
    for name, seg in INTACT.items():
        shutil.copyfile(segment(seg, segments), root / name)
    for name, (seg, where) in CUT_FILES.items():
        cut(segment(seg, segments), where, root, "x").rename(root / name)
    return root


def _run(root: Path, out: Path):
    params = validate_section(
        "ingest",
        {
            "sources": [{"kind": "folder", "path": str(root)}],
            "clip": {"frames": 17, "stride": 17, "fps": 16, "height": 64, "width": 96},
            "quality": LENIENT,
        },
    )
    rows = []
    for p in ing.plan(params):
        rows.extend(ing.process(p, params, out))
    return params, to_manifest(rows)


def test_cut_demo_videos_are_quarantined_whole_and_intact_ones_kept(folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    params, manifest = _run(folder, out)

    kept = manifest[manifest.status == "kept"]
    assert set(kept.source) == set(INTACT)
    for name in CUT_FILES:
        rows = manifest[manifest.source == name]
        assert len(rows) == 1, f"{name}: {rows[['status', 'reason']].to_dict('records')}"
        row = rows.iloc[0]
        assert row.status == "quarantined"
        assert row.reason.startswith("truncated_or_corrupt: declared "), row.reason
        m = re.search(r"declared (\d+|frames unknown)[^,]*, decoded (\d+)", row.reason)
        assert m, row.reason
        if m.group(1) != "frames unknown":
            assert int(m.group(2)) < int(m.group(1))
        assert "cut short" in row.reason
    # nothing of a cut file reached the clips folder
    written = sorted(p.name for p in (out / "clips").iterdir())
    assert written == sorted(f"{c}.mp4" for c in kept.clip_id)

    summary = ing.summarise(manifest, params, seconds=1.0)
    assert summary["quarantine_reasons"] == {"truncated_or_corrupt": len(CUT_FILES)}
    records = {r["source"]: r for r in ing.quarantine_records(manifest)}
    assert records["vp9-mp4-90.mp4"]["detail"].startswith("declared 60 frames, decoded 45;")
    assert records["vp9-webm-end4k.webm"]["detail"].startswith(
        "declared 60 frames (2.000 s at 30 fps), decoded "
    )
