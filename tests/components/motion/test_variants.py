"""Text-distinguishable motion variants: captions say what changed, features are of the changed motion,
every variant stays in its source's split group."""

from __future__ import annotations

import json

import numpy as np
import pytest

from components.data.config import SyntheticSource
from components.data.synthetic_source import write_motion_set
from components.motion.dataset import MotionDataset, split_by_group
from components.motion.humanml3d import FeatureStats, features_to_joints
from components.motion.variants import expand_motion_set, variant_plan

SPEEDS = {"in slow motion": 0.5, "sped up": 2.0}
TURNS = {"turning to the left": 60.0, "turning to the right": -60.0}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    out = tmp_path_factory.mktemp("variants")
    write_motion_set([SyntheticSource(motions=["walk", "jump", "walker/turn_left0"])], out, seed=0)
    src, dst = out / "motions", out / "expanded"
    counts = expand_motion_set(src, dst, SPEEDS, TURNS)
    rows = {r["id"]: r for r in map(json.loads, (dst / "index.jsonl").read_text().splitlines())}
    return src, dst, counts, rows


def test_plan_skips_turns_for_captions_that_name_a_side():
    plain = variant_plan(["A person jumps"], SPEEDS, TURNS)
    assert len(plain) == 9 and plain[0] == ("", 1.0, 0.0, ())
    assert ("turning-to-the-left~sped-up", 2.0, 60.0, ("turning to the left", "sped up")) in plain
    sided = variant_plan(["A person walks and turns left"], SPEEDS, TURNS)
    assert [p[0] for p in sided] == ["", "in-slow-motion", "sped-up"]
    assert len(variant_plan(["Someone spins clockwise"], SPEEDS, TURNS)) == 3


def test_every_source_motion_gets_its_variants(folders):
    _, dst, counts, rows = folders
    # walk and jump (and mirrors): 9 each; the left/right turn clip and its mirror: 3 each
    assert counts == {"source_motions": 6, "motions": 4 * 9 + 2 * 3}
    assert len(rows) == counts["motions"]
    for rid, row in rows.items():
        assert (dst / f"{rid}.npy").is_file()
        source = rid.split("~")[0]
        assert row["group"] == rows[source]["group"]
    slow = rows["jump~in-slow-motion"]
    assert all(c.endswith(", in slow motion") for c in slow["captions"])
    assert slow["motion_prompt"] == rows["jump"]["motion_prompt"] + ", in slow motion"
    both = rows["jump~turning-to-the-right~sped-up"]["captions"][0]
    assert both.endswith(", turning to the right, sped up")


def test_variant_features_are_of_the_changed_motion(folders):
    src, dst, _, _ = folders
    walk = np.load(dst / "walk.npy")
    np.testing.assert_array_equal(walk, np.load(src / "walk.npy"))  # the original is copied unchanged
    slow = np.load(dst / "walk~in-slow-motion.npy")
    fast = np.load(dst / "walk~sped-up.npy")
    # features of n frames have n-1 rows; the variant is made from the len(walk) recovered frames
    assert len(slow) == 2 * len(walk) - 1 and len(fast) == pytest.approx(len(walk) / 2 - 1, abs=1)
    speed = lambda f: np.linalg.norm(f[:, 1:3], axis=1).mean()  # noqa: E731 root xz speed per frame
    assert speed(slow) == pytest.approx(speed(walk) / 2, rel=0.1)
    assert speed(fast) == pytest.approx(speed(walk) * 2, rel=0.1)
    turn = lambda f: np.degrees(f[:, 0].mean() * 20.0)  # noqa: E731 deg/s, left positive
    left = np.load(dst / "walk~turning-to-the-left.npy")
    right = np.load(dst / "walk~turning-to-the-right.npy")
    assert turn(left) == pytest.approx(turn(walk) + 60.0, abs=1.0)
    assert turn(right) == pytest.approx(turn(walk) - 60.0, abs=1.0)
    j = features_to_joints(left.astype(np.float64))
    assert np.isfinite(j).all() and j.shape == (len(left), 22, 3)
    stats = FeatureStats.load(dst / "stats.npz")
    assert stats.mean.shape == (263,) and np.isfinite(stats.std).all()


def test_split_keeps_a_source_and_all_its_variants_together(folders):
    _, dst, _, _ = folders
    ds = MotionDataset(dst, window=16)
    train, test = split_by_group(ds.index, 0.34, seed=0)
    assert train and test
    group = {r["id"]: r["group"] for r in ds.index}
    assert not {group[i] for i in train} & {group[i] for i in test}


def test_errors_name_the_fix(tmp_path, folders):
    src = folders[0]
    with pytest.raises(FileNotFoundError, match=r"variants\.enabled: false"):
        expand_motion_set(tmp_path, tmp_path / "out", SPEEDS, TURNS)
    with pytest.raises(ValueError, match="positive and not 1"):
        expand_motion_set(src, tmp_path / "out", {"same": 1.0}, TURNS)
    assert not (tmp_path / "out").exists()
