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
