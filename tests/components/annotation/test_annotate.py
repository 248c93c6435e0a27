"""annotate_clip on clips where an annotator cannot work: quarantined with the reason, no exception."""

from __future__ import annotations

import numpy as np

from components.annotation import annotate as an
from components.config import validate_section
from tests.conftest import write_video


def _clip(path: str) -> dict:
    return {
        "clip_id": "c",
        "clip_path": path,
        "source_kind": "folder",
        "split": "train",
        "content_hash": "0" * 64,
    }


def test_no_person_and_broken_clip_are_quarantined(tmp_path):
    params = validate_section("annotate", {"input": str(tmp_path)})
    ann = an.build_annotators(params)
    write_video(tmp_path / "empty_room.mp4", np.full((17, 96, 144, 3), 90, dtype=np.uint8), 16)
    (tmp_path / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64)
    nobody = an.annotate_clip(_clip("empty_room.mp4"), params, tmp_path, tmp_path / "out", ann)
    assert nobody["status"] == "quarantined" and nobody["reason"].startswith("no_person_found")
    broken = an.annotate_clip(_clip("broken.mp4"), params, tmp_path, tmp_path / "out", ann)
    assert broken["status"] == "quarantined" and broken["reason"].startswith("truncated_or_corrupt")
    assert not (tmp_path / "out" / "annotations").exists()  # nothing half-written for them
