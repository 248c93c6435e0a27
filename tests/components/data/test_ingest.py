"""The ingest domain logic on a folder of good and bad files (no Prefect, no MLflow)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from components.config import validate_section
from components.data import ingest as ing
from components.io.manifest import MANIFEST_COLUMNS, to_manifest
from components.io.video import probe, read_frames
from tests.conftest import BAD_REASONS, GOOD, moving_frames, write_video

LENIENT = {"min_motion_smoothness": 0.0, "min_sharpness": 0.0, "max_exposure_clipped": 1.0}


def _params(root: Path, **extra):
    raw = {
        "sources": [{"kind": "folder", "path": str(root)}],
        "clip": {"frames": 17, "stride": 17, "fps": 16, "height": 64, "width": 96},
        "quality": LENIENT,
        **extra,
    }
    return validate_section("ingest", raw)


def _run(params, out: Path):
    rows = []
    for p in ing.plan(params):
        rows.extend(ing.process(p, params, out))
    return to_manifest(rows)


def test_mixed_folder_keeps_good_and_quarantines_each_bad_file(mixed_folder, tmp_path):
    out = tmp_path / "out"
    manifest = _run(_params(mixed_folder), out)

    kept = manifest[manifest.status == "kept"]
    assert set(kept.source) == set(GOOD)
    # good1: 60 frames @24 fps = 2.5 s -> 40 target frames @16 fps -> 2 clips of 17
    # good2: 90 frames @30 fps = 3.0 s -> 48 target frames -> 2 clips
    assert kept.groupby("source").size().to_dict() == {"good1.mp4": 2, "sub/good2.mp4": 2}
    for row in kept.itertuples():
        info = probe(out / row.clip_path)
        assert (info.frames, info.height, info.width, info.fps) == (17, 64, 96, 16.0)
        assert len(row.content_hash) == 64
    assert kept.loc[kept.source == "good1.mp4", "caption"].unique().tolist() == ["a person walks to the left"]
    assert kept.loc[kept.source == "sub/good2.mp4", "caption"].isna().all()

    q = manifest[manifest.status == "quarantined"]
    got = {row.source: row.reason.split(":", 1)[0] for row in q.itertuples()}
    assert got == BAD_REASONS
    assert all(
        ":" in r and len(r.split(":", 1)[1].strip()) > 3 for r in q.reason
    )  # a detail, not just a code
    assert manifest.clip_id.is_unique
    assert list(manifest.columns) == list(MANIFEST_COLUMNS)


def test_duplicate_is_the_later_copy_and_the_first_is_kept(mixed_folder, tmp_path):
    manifest = _run(_params(mixed_folder), tmp_path / "out")
    dup = manifest[manifest.source == "sub/dup.mp4"].iloc[0]
    assert "good1.mp4" in dup.reason
    assert (manifest[manifest.source == "good1.mp4"].status == "kept").all()


def test_clips_of_one_source_share_a_split(mixed_folder, tmp_path):
    manifest = _run(_params(mixed_folder, val_fraction=0.5), tmp_path / "out")
    kept = manifest[manifest.status == "kept"]
    assert (kept.groupby("source").split.nunique() == 1).all()


def test_clip_content_follows_the_source_span(tmp_path):
    """The written clip shows the resampled source frames: compare with a direct decode."""
    src = write_video(tmp_path / "in" / "v.mp4", moving_frames(72, 64, 96, seed=7, speed=3), 24)
    params = _params(tmp_path / "in", clip={"frames": 17, "stride": 17, "fps": 12, "height": 64, "width": 96})
    out = tmp_path / "out"
    manifest = _run(params, out)
    row = manifest[manifest.status == "kept"].iloc[1]
    expected_idx = [round((17 + j) / 12 * 24) for j in range(17)]
    assert (row.start_frame, row.end_frame) == (expected_idx[0], expected_idx[-1] + 1)
    direct = read_frames(src, expected_idx).astype(float)
    written = read_frames(out / row.clip_path, list(range(17))).astype(float)
    assert np.abs(direct - written).mean() < 6.0
    shifted = read_frames(src, [i - 6 for i in expected_idx]).astype(float)
    assert np.abs(shifted - written).mean() > np.abs(direct - written).mean() + 5


def test_quality_filter_marks_static_clip_with_reason(tmp_path):
    frames = np.repeat(moving_frames(1, 64, 96, seed=9), 48, axis=0)  # no motion at all
    write_video(tmp_path / "in" / "static.mp4", frames, 24)
    write_video(tmp_path / "in" / "moving.mp4", moving_frames(48, 64, 96, seed=10, speed=6), 24)
    params = _params(tmp_path / "in", quality={**LENIENT, "require_dynamic": True})
    manifest = _run(params, tmp_path / "out")
    status = manifest.groupby("source").status.first().to_dict()
    assert status == {"moving.mp4": "kept", "static.mp4": "filtered"}
    static = manifest[manifest.source == "static.mp4"].iloc[0]
    assert static.reason.startswith("not_dynamic")
    assert pd_isna(static.clip_path)  # filtered clips are not written
    assert static.dynamic_degree_dis == 0.0


def pd_isna(x) -> bool:
    import pandas as pd

    return bool(pd.isna(x))


def test_summary_counts_and_quarantine_records(mixed_folder, tmp_path):
    params = _params(mixed_folder)
    manifest = _run(params, tmp_path / "out")
    metrics = ing.summarise(manifest, params, seconds=1.0)
    assert metrics["clips_kept"] == 4
    assert metrics["quarantined"] == len(BAD_REASONS)
    assert metrics["videos_seen"] == len(GOOD) + len(BAD_REASONS)
    assert metrics["clips_total"] == metrics["clips_kept"] + metrics["clips_filtered"]
    assert metrics["quarantine_reasons"]["outside_input_root"] == 2
    records = ing.quarantine_records(manifest)
    assert {r["source"]: r["reason"] for r in records} == BAD_REASONS
    json.dumps(records)  # JSON-able


def test_manifest_source_with_span_and_escape(tmp_path, make_video):
    make_video("clips/a.mp4", seconds=4.0, fps=24)
    make_video("clips/b.mp4", seconds=2.0, fps=24, seed=3)
    (tmp_path / "m.jsonl").write_text(
        "\n".join(
            [
                json.dumps({"path": "clips/a.mp4", "caption": "a person waves", "start": 1.0, "end": 3.0}),
                json.dumps({"path": "../elsewhere.mp4"}),
                json.dumps({"path": "clips/b.mp4"}),
            ]
        )
    )
    params = validate_section(
        "ingest",
        {
            "sources": [{"kind": "manifest", "path": str(tmp_path / "m.jsonl")}],
            "clip": {"frames": 17, "stride": 8, "fps": 16, "height": 64, "width": 96},
            "quality": LENIENT,
        },
    )
    manifest = _run(params, tmp_path / "out")
    a = manifest[manifest.source.str.endswith("clips/a.mp4")]
    # 2 s span at 16 fps = 32 target frames; starts 0, 8 (16 + 17 > 32) -> 2 clips, all inside [1 s, 3 s)
    assert len(a) == 2 and (a.status == "kept").all()
    assert (a.start_sec >= 1.0).all() and (a.end_sec <= 3.0 + 1e-6).all()
    assert (a.caption == "a person waves").all()
    esc = manifest[manifest.source.str.contains("elsewhere")]
    assert esc.status.tolist() == ["quarantined"] and esc.reason.iloc[0].startswith("outside_input_root")


@pytest.mark.parametrize("fit", ["crop", "pad"])
def test_portrait_source_fits_target(tmp_path, fit):
    write_video(tmp_path / "in" / "p.mp4", moving_frames(48, 160, 96, seed=11), 24)
    clip = {"frames": 17, "stride": 17, "fps": 16, "height": 64, "width": 96, "fit": fit}
    manifest = _run(_params(tmp_path / "in", clip=clip), tmp_path / "out")
    kept = manifest[manifest.status == "kept"]
    assert len(kept) == 1
    frames = read_frames(tmp_path / "out" / kept.iloc[0].clip_path, list(range(17)))
    assert frames.shape == (17, 64, 96, 3)
    left_bar = frames[:, :, :10].mean()
    assert (left_bar < 20) == (fit == "pad")  # pad adds black side bars, crop fills the frame
