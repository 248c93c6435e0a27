"""HumanML3D folders → SMPL-22 motions with captions; splits, limits, reported problems."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from components.motion.humanml3d_folder import load_humanml3d
from tests.components.motion.conftest import translating


@pytest.fixture
def hml_root(tmp_path):
    from components.motion.humanml3d import joints_to_features

    (tmp_path / "new_joint_vecs").mkdir()
    (tmp_path / "texts").mkdir()
    np.save(tmp_path / "new_joint_vecs" / "000001.npy", joints_to_features(translating(seconds=3.0).joints))
    np.save(tmp_path / "new_joint_vecs" / "000002.npy", joints_to_features(translating((0.5, 0.5)).joints))
    (tmp_path / "new_joint_vecs" / "000003.npy").write_bytes(b"not a numpy file")
    (tmp_path / "texts" / "000001.txt").write_text(
        "a person walks forward.#a/DET person/NOUN walk/VERB forward/ADV#0.0#0.0\n"
        "someone strolls ahead#someone/PRON stroll/VERB ahead/ADV#0.0#0.0\n"
        "the person takes a few steps#the/DET person/NOUN take/VERB#0.5#1.5\n"
        "a person walks far#a/DET#2.0#9.0\n"
    )
    return tmp_path


def test_load_humanml3d_folder(hml_root, caplog):
    from components.motion.humanml3d import features_to_joints

    with caplog.at_level(logging.WARNING):
        motions, problems = load_humanml3d(hml_root)
    by_name = {m.name: m for m in motions}
    assert set(by_name) == {"000001", "000001@0.5-1.5", "000002"}
    whole, part, bare = by_name["000001"], by_name["000001@0.5-1.5"], by_name["000002"]
    assert whole.captions == ("a person walks forward.", "someone strolls ahead")
    assert part.captions == ("the person takes a few steps",)
    assert bare.captions == ()
    assert whole.fps == 20.0 and whole.num_frames == 59 and whole.source == "humanml3d:000001"
    ref = features_to_joints(np.load(hml_root / "new_joint_vecs" / "000001.npy"))
    np.testing.assert_allclose(whole.joints, ref)
    np.testing.assert_allclose(part.joints, ref[10:30])
    reasons = {Path(p.item.split(":")[0]).name: p.reason for p in problems}
    assert set(reasons) == {"000003.npy", "000001.txt"}  # bad npy + span past the end
    assert "unreadable features" in reasons["000003.npy"]
    assert "outside" in reasons["000001.txt"]
    assert "000003.npy" in caplog.text


def test_load_humanml3d_split_and_limit(hml_root):
    (hml_root / "val.txt").write_text("000002\n000001\n000404\n")
    motions, problems = load_humanml3d(hml_root, split_file="val.txt")
    assert [m.name for m in motions][:1] == ["000002"]
    assert any("000404" in p.item for p in problems)
    motions, problems = load_humanml3d(hml_root, split_file=hml_root / "val.txt", limit=1)
    assert [m.name for m in motions] == ["000002"] and problems == []
