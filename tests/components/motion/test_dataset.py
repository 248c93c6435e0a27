"""Motion dataset: folder layouts, deterministic batches, group-safe splits, evaluation windows, errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from components.data.config import SyntheticSource
from components.data.synthetic_source import write_motion_set
from components.motion.augment import mirror
from components.motion.dataset import MotionDataset, split_by_group
from components.motion.deepmimic import load_deepmimic
from components.motion.humanml3d import FeatureStats, compute_stats, joints_to_features

CLIPS = ["walk", "run", "jump", "punch", "walker/turn_left0"]


@pytest.fixture(scope="module")
def motions_dir(tmp_path_factory):
    """A real motions folder (5 DeepMimic clips and their mirrors) written by write_motion_set."""
    out = tmp_path_factory.mktemp("ingest")
    write_motion_set([SyntheticSource(motions=CLIPS)], out, seed=0)
    return out / "motions"


@pytest.fixture(scope="module")
def ds(motions_dir) -> MotionDataset:
    return MotionDataset(motions_dir, window=32)


def test_loads_every_motion_with_its_group_and_texts(ds, motions_dir):
    assert len(ds) == 10 and ds.problems == []
    groups = {r["group"] for r in ds.index}
    assert groups == set(CLIPS)
    rec = ds._by_id["walk"]
    row = next(json.loads(x) for x in (motions_dir / "index.jsonl").read_text().splitlines() if '"walk"' in x)
    assert set(rec.texts) == {*row["captions"], row["motion_prompt"]}
    assert rec.num_frames == row["frames"] - 1
    # the parent of motions/ works too
    assert len(MotionDataset(motions_dir.parent, window=32)) == 10


def test_batch_is_a_pure_function_of_step(ds):
    a = ds.batch(3, batch_size=6, seed=1)
    ds.batch(5, batch_size=6, seed=1)
    b = ds.batch(3, batch_size=6, seed=1)
    assert torch.equal(a["features"], b["features"]) and a["texts"] == b["texts"] and a["ids"] == b["ids"]
    c = ds.batch(4, batch_size=6, seed=1)
    assert not torch.equal(a["features"], c["features"])
    d = ds.batch(3, batch_size=6, seed=2)
    assert a["ids"] != d["ids"] or not torch.equal(a["features"], d["features"])
    assert a["features"].shape == (6, 32, 263) and a["features"].dtype == torch.float32
    assert a["lengths"].dtype == torch.long and a["ends"].dtype == torch.bool


def test_batch_windows_are_normalised_crops_padded_with_zeros(ds):
    out = ds.batch(0, batch_size=10, seed=0)
    for feats, length, end, mid in zip(out["features"], out["lengths"], out["ends"], out["ids"], strict=True):
        rec = ds._by_id[mid]
        length = int(length)
        assert length % 4 == 0 and 4 <= length <= 32
        assert length == min(32, rec.num_frames - rec.num_frames % 4)
        assert torch.all(feats[length:] == 0)
        raw = ds.stats.normalize(np.load(rec.path))
        starts = [
            s
            for s in range(rec.num_frames - length + 1)
            if np.allclose(raw[s : s + length], feats[:length], atol=1e-5)
        ]
        assert starts, f"{mid}: window is no crop of its motion"
        assert bool(end) == (starts[0] + length > rec.num_frames - 4)


def test_an_epoch_visits_every_motion_once_and_ranks_do_not_overlap(ds):
    seen = ds.batch(0, 5, seed=3)["ids"] + ds.batch(1, 5, seed=3)["ids"]
    assert sorted(seen) == sorted(ds.ids)
    r0 = ds.batch(0, 5, seed=3, rank=0, world_size=2)["ids"]
    r1 = ds.batch(0, 5, seed=3, rank=1, world_size=2)["ids"]
    assert sorted(r0 + r1) == sorted(ds.ids)
    with pytest.raises(ValueError, match="rank"):
        ds.batch(0, 5, rank=2, world_size=2)


def test_split_never_shares_a_group(ds):
    for seed in range(5):
        train, test = split_by_group(ds.index, 0.4, seed)
        assert sorted(train + test) == sorted(ds.ids)
        group = {r["id"]: r["group"] for r in ds.index}
        assert not {group[i] for i in train} & {group[i] for i in test}
        assert len({group[i] for i in test}) == 2
    assert split_by_group(ds.index, 0.4, 0) == split_by_group(ds.index, 0.4, 0)
    index = [{"id": f"m{g}{s}", "group": f"g{g}"} for g in range(100) for s in ("", "~mirror")]
    splits = {tuple(split_by_group(index, 0.2, seed)[1]) for seed in range(3)}
    assert len(splits) == 3 and all(len(t) == 40 for t in splits)
    with pytest.raises(ValueError, match="test_fraction"):
        split_by_group(index, 1.0, 0)
    with pytest.raises(ValueError, match="cannot split 1 group"):
        split_by_group([{"id": "a", "group": "g"}], 0.5, 0)


def test_held_out_windows_are_fixed_and_plentiful(ds):
    _, test = split_by_group(ds.index, 0.4, 0)
    sub = ds.subset([i for i in ds.ids if i not in test])
    assert set(sub.ids).isdisjoint(test)
    ev = ds.held_out_windows(test, window=8, stride=2)
    expected = sum((ds._by_id[i].num_frames - 8) // 2 + 1 for i in test)
    assert len(ev["texts"]) == expected >= 32
    assert ev["features"].shape == (expected, 8, 263)
    again = ds.held_out_windows(test, window=8, stride=2)
    assert torch.equal(ev["features"], again["features"]) and ev["texts"] == again["texts"]
    first = [k for k, i in enumerate(ev["ids"]) if i == test[0]]
    texts = ds._by_id[test[0]].texts
    assert [ev["texts"][k] for k in first[: len(texts)]] == list(texts)[: len(first)]
    with pytest.raises(KeyError, match="held-out ids"):
        ds.held_out_windows(["nope"])


def test_bad_files_are_reported_not_silently_dropped(motions_dir, tmp_path):
    bad = tmp_path / "motions"
    shutil.copytree(motions_dir, bad)
    np.save(bad / "run.npy", np.zeros((10, 100), dtype=np.float32))
    np.save(bad / "jump.npy", np.zeros((3, 263), dtype=np.float32))
    nan = np.load(bad / "punch.npy")
    nan[2, 5] = np.nan
    np.save(bad / "punch.npy", nan)
    ds = MotionDataset(bad, window=16)
    assert len(ds) == 7
    reasons = {p.item.split("/")[-1]: p.reason for p in ds.problems}
    assert "features must be [N, 263]" in reasons["run.npy"]
    assert "fewer than one token" in reasons["jump"]
    assert "NaN" in reasons["punch"]


def test_clear_errors(motions_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="holds no motions"):
        MotionDataset(tmp_path, window=16)
    no_stats = tmp_path / "nostats"
    shutil.copytree(motions_dir, no_stats)
    (no_stats / "stats.npz").unlink()
    with pytest.raises(FileNotFoundError, match=r"no normalisation statistics \(stats\.npz\)"):
        MotionDataset(no_stats, window=16)
    with pytest.raises(ValueError, match="window=30 must be a positive multiple of"):
        MotionDataset(motions_dir, window=30)
    with pytest.raises(KeyError, match="ids not among"):
        MotionDataset(motions_dir, window=16, ids=["walk", "nope"])
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "index.jsonl").write_text("")
    with pytest.raises(ValueError, match="no usable motions"):
        MotionDataset(empty, window=16, stats=FeatureStats(np.zeros(263), np.ones(263)))


def test_humanml3d_layout_with_spans_and_mirror_groups(tmp_path):
    root = tmp_path / "HumanML3D"
    (root / "new_joint_vecs").mkdir(parents=True)
    (root / "texts").mkdir()
    walk = load_deepmimic("spin")
    feats = {}
    for mid, motion in (("000001", walk), ("M000001", mirror(walk))):
        feats[mid] = joints_to_features(motion.joints).astype(np.float32)
        np.save(root / "new_joint_vecs" / f"{mid}.npy", feats[mid])
    (root / "texts" / "000001.txt").write_text(
        "a person spins around#a/DET person/NOUN#0.0#0.0\n"
        "a person turns in place#a/DET person/NOUN#0.0#0.0\n"
        "someone starts to spin#someone/PRON#1.0#2.5\n"
    )
    (root / "texts" / "M000001.txt").write_text("a person spins around#a/DET#0.0#0.0\n")
    stats = compute_stats(list(feats.values()))
    np.save(root / "Mean.npy", stats.mean)
    np.save(root / "Std.npy", stats.std)
    ds = MotionDataset(root, window=16)
    assert sorted(ds.ids) == ["000001", "000001#20-50", "M000001"]
    assert {r["group"] for r in ds.index} == {"000001"}
    assert ds._by_id["000001"].texts == ("a person spins around", "a person turns in place")
    span = ds._by_id["000001#20-50"]
    assert span.num_frames == 30 and span.texts == ("someone starts to spin",)
    ev = ds.held_out_windows(["000001#20-50"], window=16, stride=16)
    assert torch.allclose(
        ev["features"][0], torch.tensor(stats.normalize(feats["000001"][20:36]), dtype=torch.float32)
    )


def test_meanings_pair_a_clip_with_its_mirror_and_split_variants(tmp_path, motions_dir):
    """A mirror of a clip whose captions name no side means the same; a turn or speed variant does not."""
    from components.motion.variants import expand_motion_set

    out = tmp_path / "variants"
    expand_motion_set(motions_dir, out, {"sped up": 1.6}, {"turning to the left": 60.0})
    ds = MotionDataset(out, window=16)
    m = {r.id: r.meaning for r in ds.records}
    assert m["walk"] == m["walk~mirror"] == "walk|speed=1|turn=0"
    assert m["walk~sped-up"] == "walk|speed=1.6|turn=0" != m["walk"]
    assert m["walk~turning-to-the-left"] == "walk|speed=1|turn=60"
    # the mirrored left turn is a right turn: a different meaning
    assert m["walker__turn_left0"] != m["walker__turn_left0~mirror"]
    b = ds.batch(0, batch_size=8, seed=0)
    assert b["meanings"] == [m[i] for i in b["ids"]]


def test_meaning_is_none_without_an_action_label(motions_dir, tmp_path):
    out = tmp_path / "motions"
    shutil.copytree(motions_dir, out)
    rows = [json.loads(x) for x in (out / "index.jsonl").read_text().splitlines() if x.strip()]
    stripped = [{k: v for k, v in r.items() if k != "action"} for r in rows]
    (out / "index.jsonl").write_text("".join(json.dumps(r) + "\n" for r in stripped))
    assert {r.meaning for r in MotionDataset(out, window=16).records} == {None}


def test_with_window_draws_windows_of_the_new_length(ds):
    short = ds.with_window(16)
    b = short.batch(0, batch_size=4, seed=0)
    assert b["features"].shape == (4, 16, 263) and int(b["lengths"].max()) == 16
    assert ds.window == 32 and short.ids == ds.ids
    with pytest.raises(ValueError, match="multiple of frames_per_token"):
        ds.with_window(10)
