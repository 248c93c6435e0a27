"""pretrain_motion's split: whole source clips held out, held-out actions performed in training too."""

from __future__ import annotations

import json

from components.motion.pretrain import held_out_split


def _index(tmp_path, rows):
    lines = []
    for mid, group, action in rows:
        lines.append(json.dumps({"id": mid, "group": group, "action": action}))
    (tmp_path / "index.jsonl").write_text("\n".join(lines) + "\n")
    return [{"id": m, "group": g} for m, g, _ in rows]


def test_held_out_groups_are_whole_and_their_actions_are_trained(tmp_path) -> None:
    rows = []
    clips = [("walk", "walk"), ("walker_fwd", "walk"), ("turn_l0", "turn"), ("turn_l1", "turn")]
    clips += [(a, a) for a in ("backflip", "kick", "run", "roll")]
    for group, action in clips:
        rows += [(group, group, action), (group + "~mirror", group, action)]
    index = _index(tmp_path, rows)
    train, test, how = held_out_split(tmp_path, index, 0.25, seed=0)
    assert how == "group, stratified by action"
    assert set(train) | set(test) == {r[0] for r in rows} and not set(train) & set(test)
    group_of = {m: g for m, g, _ in rows}
    action_of = {g: a for _, g, a in rows}
    test_groups = {group_of[m] for m in test}
    train_groups = {group_of[m] for m in train}
    assert len(test_groups) == 2 and not test_groups & train_groups  # mirrors stay with their clip
    for g in test_groups:
        assert action_of[g] in {action_of[t] for t in train_groups}
    assert held_out_split(tmp_path, index, 0.25, seed=0)[1] == test  # deterministic


def test_without_action_labels_it_is_a_plain_group_split(tmp_path) -> None:
    index = [{"id": f"m{i}", "group": f"g{i // 2}"} for i in range(10)]
    train, test, how = held_out_split(tmp_path, index, 0.2, seed=1)
    assert how == "group" and len(test) == 2 and {m[1:] for m in test} <= {str(i) for i in range(10)}
    assert {int(m[1:]) // 2 for m in test}.isdisjoint({int(m[1:]) // 2 for m in train})


def test_evaluator_on_real_mocap_ranks_true_pairs_high_and_shuffled_pairs_at_chance(tmp_path) -> None:
    """The evaluator trained on the real mocap text–motion set: ground-truth (text, motion) pairs get a
    high R-precision, the same motions with shuffled texts sit near chance (3/32 for top-3)."""
    import numpy as np
    import torch

    from components.data.config import SyntheticSource
    from components.data.synthetic_source import write_motion_set
    from components.motion.config import EvaluatorConfig
    from components.motion.dataset import MotionDataset
    from components.motion.evaluator import MotionTextEvaluator, train_evaluator
    from components.motion.t2m_metrics import r_precision
    from components.motion.text_encoder import build_text_encoder

    write_motion_set([SyntheticSource(clips=1)], tmp_path)
    ds = MotionDataset(tmp_path / "motions", window=16, text_source="prompt")
    enc = build_text_encoder("minilm")
    ev = MotionTextEvaluator(EvaluatorConfig(hidden_dim=64, embed_dim=32), stats=ds.stats)

    def raw(b):
        return torch.from_numpy(
            ds.stats.denormalize(b["features"].numpy().astype(np.float64)).astype(np.float32)
        )

    def batches(step):
        b = ds.batch(step, 32, seed=0)
        return {"features": raw(b), "lengths": b["lengths"], "text_emb": enc.encode(b["texts"])}

    train_evaluator(ev, batches, steps=150, lr=2e-3, seed=0)
    win = ds.held_out_windows(ds.ids, window=16, stride=4)
    with torch.no_grad():
        m = ev.embed_motion(raw(win), win["lengths"]).numpy()
        t = ev.embed_text(enc.encode(win["texts"])).numpy()
    rng = np.random.default_rng(0)
    true_top3 = r_precision(t, m, batch_size=32, rng=rng)[2]
    shuffled_top3 = r_precision(t[rng.permutation(len(t))], m, batch_size=32, rng=rng)[2]
    assert true_top3 > 0.5, true_top3
    assert shuffled_top3 < 0.25, shuffled_top3


def test_reports_of_several_evaluators_are_averaged_with_their_spread() -> None:
    from components.motion.pretrain import combine_reports

    a = {"r_precision_top3": 0.4, "fid": 1.0, "mm_dist": 2.0, "gt_multimodality": None, "note": "x"}
    b = {"r_precision_top3": 0.6, "fid": 3.0, "mm_dist": 4.0, "gt_multimodality": None, "note": "x"}
    out = combine_reports([a, b])
    assert out["r_precision_top3"] == 0.5 and out["fid"] == 2.0 and out["mm_dist"] == 3.0
    assert abs(out["r_precision_top3_evaluator_sd"] - 0.1) < 1e-12 and out["fid_evaluator_sd"] == 1.0
    assert "mm_dist_evaluator_sd" not in out  # spread only for the headline keys
    assert out["gt_multimodality"] is None and out["note"] == "x" and out["evaluators"] == 2
    assert combine_reports([a])["r_precision_top3_evaluator_sd"] == 0.0


def test_other_clips_reference_takes_real_windows_of_the_held_out_meanings(tmp_path) -> None:
    """gt_other_clips_fid compares the held-out windows with real training windows of the same
    meanings: another walk clip counts, a jump does not; without meanings every motion counts."""
    import shutil

    from components.data.config import SyntheticSource
    from components.data.synthetic_source import write_motion_set
    from components.motion.dataset import MotionDataset
    from components.motion.pretrain import _other_clip_windows

    write_motion_set([SyntheticSource(motions=["walk", "walker/0walk_forward", "jump"])], tmp_path)
    ds = MotionDataset(tmp_path / "motions", window=16)
    test = ds.subset(["walk", "walk~mirror"])
    train = ds.subset([i for i in ds.ids if not i.startswith("walk") or i.startswith("walker")])
    feats, lengths = _other_clip_windows(train, test, window=16, stride=4)
    walker = ds.held_out_windows(["walker__0walk_forward", "walker__0walk_forward~mirror"], 16, 4)
    assert feats.shape[0] == len(lengths) == walker["features"].shape[0]
    raw = ds.stats.denormalize(walker["features"].numpy().astype("float64"))
    assert abs(feats.numpy() - raw).max() < 1e-3  # raw features of the walker windows, not the jump's
    # a set whose index has no action labels (like HumanML3D): nothing says what a motion means
    plain = tmp_path / "plain"
    shutil.copytree(tmp_path / "motions", plain)
    rows = [json.loads(x) for x in (plain / "index.jsonl").read_text().splitlines()]
    (plain / "index.jsonl").write_text(
        "".join(json.dumps({k: v for k, v in r.items() if k != "action"}) + "\n" for r in rows)
    )
    unlabelled = MotionDataset(plain, window=16)
    assert unlabelled.record("walk").meaning is None
    everything = _other_clip_windows(unlabelled.subset(train.ids), unlabelled.subset(["walk"]), 16, 4)[0]
    assert everything.shape[0] == ds.held_out_windows(train.ids, 16, 4)["features"].shape[0]
