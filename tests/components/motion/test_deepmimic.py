"""DeepMimic clips → SMPL-22 motions: listing, skeleton, rigid bones, feet, facing, turns, loops, errors."""

from __future__ import annotations

import numpy as np
import pytest

from components.motion.captions import ACTION_PHRASES
from components.motion.deepmimic import (
    list_deepmimic_clips,
    load_all_deepmimic,
    load_deepmimic,
    parse_deepmimic_urdf,
)
from components.motion.skeleton import SMPL22_NAMES, SMPL22_PARENTS, J

BONES = [(j, p) for j, p in enumerate(SMPL22_PARENTS) if p >= 0]
FEET = [J["left_ankle"], J["right_ankle"], J["left_foot"], J["right_foot"]]


def bone_lengths(joints: np.ndarray) -> np.ndarray:
    return np.stack([np.linalg.norm(joints[:, j] - joints[:, p], axis=-1) for j, p in BONES], axis=1)


def facing_xz(joints: np.ndarray) -> np.ndarray:
    """Unit facing [T,2] (x, z) from the hips: forward = up × (right_hip − left_hip)."""
    across = joints[:, J["right_hip"]] - joints[:, J["left_hip"]]
    f = np.stack([across[:, 2], -across[:, 0]], axis=-1)
    return f / np.linalg.norm(f, axis=-1, keepdims=True)


@pytest.fixture(scope="module")
def clips():
    return {m.name: m for m in load_all_deepmimic()}


def test_clip_listing():
    names = list_deepmimic_clips()
    assert len(names) == 20
    assert sum(n.startswith("walker/") for n in names) == 5
    for n in ("walk", "run", "backflip", "cartwheel", "dance_a", "getup_faceup", "walker/turn_left0"):
        assert n in names and names[n].is_file()


def test_urdf_skeleton_offsets():
    sk = parse_deepmimic_urdf()
    assert sk.offsets["chest"] == pytest.approx([0, 0.2362, 0], abs=1e-3)
    assert sk.offsets["right_hip"][2] == pytest.approx(0.0849, abs=1e-3)  # right is +Z
    assert sk.offsets["left_hip"][2] == pytest.approx(-0.0849, abs=1e-3)
    assert sk.offsets["right_knee"][1] == pytest.approx(-0.4215, abs=1e-3)
    assert sk.offsets["left_wrist"][1] == pytest.approx(-0.2589, abs=1e-3)
    assert sk.axes["left_knee"] == pytest.approx([0, 0, 1])
    assert sk.toe[0] > 0.1 and 0.12 <= np.linalg.norm(sk.toe) <= 0.14  # foot points +X (forward)


def test_every_clip_loads(clips):
    assert len(clips) == 20
    for name, m in clips.items():
        assert m.fps == 20.0
        assert m.joints.shape[1:] == (22, 3) and np.isfinite(m.joints).all()
        assert m.action in ACTION_PHRASES, (name, m.action)
        assert m.source.startswith("deepmimic:") and m.source.endswith(".txt")
        expected = int(m.meta["source_seconds"] * 20 + 1e-6) + 1
        assert m.num_frames == expected, name
    assert clips["dance_b"].action == "dance"
    assert clips["walker/turn_right1"].action == "turn_right"
    assert clips["walker/0walk_forward"].action == "walk"
    assert clips["walker/turn_left0"].source == "deepmimic:walker/turn_left0.txt"


def test_bones_rigid_and_plausible(clips):
    for name, m in clips.items():
        bl = bone_lengths(m.joints)
        assert (bl.std(0) / bl.mean(0)).max() < 0.01, name
        mean = dict(zip([SMPL22_NAMES[j] for j, _ in BONES], bl.mean(0), strict=True))
        for side in ("left", "right"):
            assert 0.35 <= mean[f"{side}_knee"] <= 0.5, name  # thigh
            assert 0.35 <= mean[f"{side}_ankle"] <= 0.5, name  # shin
            assert 0.2 <= mean[f"{side}_elbow"] <= 0.35, name  # upper arm
            assert 0.2 <= mean[f"{side}_wrist"] <= 0.35, name  # forearm
            assert 0.08 <= mean[f"{side}_foot"] <= 0.16, name
    walk0 = clips["walk"].joints[0]
    assert 1.4 <= walk0[J["head"], 1] - walk0[FEET, 1].min() <= 1.9


def test_walk_feet_on_floor_and_alternating():
    m = load_deepmimic("walk", repeats=2)
    j = m.joints
    lowest = j[:, FEET, 1].min(axis=1)
    assert np.mean(np.abs(lowest) < 0.05) > 0.9
    assert lowest.min() > -0.03
    left = j[:, [J["left_ankle"], J["left_foot"]], 1].min(axis=1) < 0.03
    right = j[:, [J["right_ankle"], J["right_foot"]], 1].min(axis=1) < 0.03
    single = ["L" if a else "R" for a, b in zip(left, right, strict=True) if a != b]
    runs = [s for k, s in enumerate(single) if k == 0 or s != single[k - 1]]
    assert len(runs) >= 4, runs  # L R L R ... over two gait cycles
    assert np.mean(left & right) < 0.5  # not both planted all the time


def test_walk_forward_along_facing_and_left_is_plus_x(clips):
    for name in ("walk", "walker/0walk_forward", "run"):
        j = clips[name].joints
        face = facing_xz(j).mean(axis=0)
        face /= np.linalg.norm(face)
        assert face[1] > 0.95, (name, face)  # faces +Z
        disp = j[-1, 0, [0, 2]] - j[0, 0, [0, 2]]
        assert np.linalg.norm(disp) > 1.0
        assert disp @ face > 0.95 * np.linalg.norm(disp), name
        assert (j[:, J["left_hip"], 0] > j[:, J["right_hip"], 0]).all()
        assert (j[:, J["left_shoulder"], 0] > j[:, J["right_shoulder"], 0]).all()
        assert (j[:, J["head"], 1] > j[:, J["pelvis"], 1]).all()
        # toes point forward of the ankles
        assert (j[:, J["left_foot"], 2] - j[:, J["left_ankle"], 2]).mean() > 0.05


def test_turn_clips_turn_the_named_way(clips):
    for name, sign in (("walker/turn_left0", 1), ("walker/turn_left1", 1), ("walker/turn_right0", -1)):
        f = facing_xz(clips[name].joints)
        yaw = np.unwrap(np.arctan2(f[:, 0], f[:, 1]))  # grows when turning from +Z toward +X (left)
        assert sign * np.degrees(yaw[-5:].mean() - yaw[:5].mean()) > 15, name


def test_repeats_tile_loop_clips():
    one = load_deepmimic("walk")
    three = load_deepmimic("walk", repeats=3)
    assert abs(three.num_frames - 3 * (one.num_frames - 1) - 1) <= 1
    d1 = np.linalg.norm(one.joints[-1, 0, [0, 2]] - one.joints[0, 0, [0, 2]])
    d3 = np.linalg.norm(three.joints[-1, 0, [0, 2]] - three.joints[0, 0, [0, 2]])
    assert d3 == pytest.approx(3 * d1, rel=0.1)
    step = np.linalg.norm(np.diff(three.joints, axis=0), axis=-1).max()
    assert step < 1.5 * np.linalg.norm(np.diff(one.joints, axis=0), axis=-1).max()  # no seam jumps
    bl = bone_lengths(three.joints)
    assert (bl.std(0) / bl.mean(0)).max() < 0.01
    turn = load_deepmimic("walker/turn_left0", repeats=3)
    f = facing_xz(turn.joints)
    yaw = np.degrees(np.unwrap(np.arctan2(f[:, 0], f[:, 1])))
    assert yaw[-5:].mean() - yaw[:5].mean() > 60  # keeps turning across cycles


def test_loop_repeats_tile_only_ongoing_activities():
    from components.motion.deepmimic import loop_repeats

    assert loop_repeats("run", 3.0) == 4  # a 0.8 s stride cycle
    assert loop_repeats("walk", 3.0) == 3  # 1.27 s
    assert loop_repeats("walker/turn_left0", 2.0) == 2
    assert load_deepmimic("run", repeats=loop_repeats("run", 3.0)).num_frames / 20.0 >= 3.0
    assert loop_repeats("jump", 3.0) == 1  # a "wrap" file, but one jump is one action
    assert loop_repeats("kick", 3.0) == 1  # not a looping clip
    assert loop_repeats("run", 0.0) == 1
    assert loop_repeats("spin", 3.0) == 1  # not an ongoing locomotion in the list
    with pytest.raises(ValueError, match="min_seconds"):
        loop_repeats("run", -1.0)


def test_deepmimic_options_and_errors():
    m30 = load_deepmimic("walk", fps=30.0)
    assert m30.fps == 30.0 and m30.num_frames == int(m30.meta["source_seconds"] * 30 + 1e-6) + 1
    by_path = load_deepmimic(list_deepmimic_clips()["jump"])
    assert by_path.name == "jump" and by_path.action == "jump"
    with pytest.raises(ValueError, match="unknown DeepMimic clip"):
        load_deepmimic("moonwalk")
    with pytest.raises(ValueError, match="only 'wrap'"):
        load_deepmimic("kick", repeats=2)


def test_deepmimic_malformed_file(tmp_path):
    bad = tmp_path / "humanoid3d_bad.txt"
    bad.write_text('{"Loop": "none", "Frames": [[0.1, 0, 0.9, 0, 1, 0, 0, 0]]}')
    with pytest.raises(ValueError, match="frame 0 has 8 values"):
        load_deepmimic(bad)
