"""Mocap loaders: DeepMimic clips retargeted to SMPL-22, BVH parsing/FK/mapping, HumanML3D folders."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from components.motion.bvh import bvh_forward_kinematics, load_bvh, parse_bvh
from components.motion.captions import ACTION_PHRASES
from components.motion.deepmimic import (
    list_deepmimic_clips,
    load_all_deepmimic,
    load_deepmimic,
    parse_deepmimic_urdf,
)
from components.motion.humanml3d_folder import load_humanml3d
from components.motion.skeleton import SMPL22_NAMES, SMPL22_PARENTS, J
from tests.components.motion.conftest import STAND, translating

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


# --- DeepMimic --------------------------------------------------------------------------------
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


# --- BVH ----------------------------------------------------------------------------------------
TWO_LEVEL = """HIERARCHY
ROOT Hips
{
  OFFSET 0 0 0
  CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation
  JOINT Chest
  {
    OFFSET 0 20 0
    CHANNELS 3 Xrotation Yrotation Zrotation
    End Site
    {
      OFFSET 0 0 10
    }
  }
}
MOTION
Frames: 2
Frame Time: 0.05
10 90 5 90 90 0 0 90 0
10 90 5 0 0 0 90 0 90
"""


def test_bvh_fk_matches_hand_computation(tmp_path):
    path = tmp_path / "two.bvh"
    path.write_text(TWO_LEVEL)
    data = parse_bvh(path)
    assert data.names == ["Hips", "Chest", "Chest_end"]
    assert data.frame_time == 0.05 and data.values.shape == (2, 9)
    pos = bvh_forward_kinematics(data)
    # frame 0: root ZXY (Z=90, X=90): Rz·Rx maps (0,20,0) → (0,0,20); chest XYZ (Y=90) maps the
    # end offset (0,0,10) → (10,0,0), then the root rotation maps it to (0,10,0).
    np.testing.assert_allclose(pos[0], [[10, 90, 5], [10, 90, 25], [10, 100, 25]], atol=1e-9)
    # frame 1: root unrotated; chest XYZ (X=90, Z=90): Rx·Rz maps (0,0,10) → (0,-10,0).
    np.testing.assert_allclose(pos[1], [[10, 90, 5], [10, 110, 5], [10, 100, 5]], atol=1e-9)


# SMPL joint → Mixamo-style BVH name (LeftShoulder is the collar there).
MIXAMO = {
    "pelvis": "Hips", "spine1": "Spine", "spine2": "Spine1", "spine3": "Spine2", "neck": "Neck",
    "head": "Head",
    **{f"{s}_{k}": f"{s.title()}{v}" for s in ("left", "right") for k, v in (
        ("hip", "UpLeg"), ("knee", "Leg"), ("ankle", "Foot"), ("foot", "ToeBase"), ("collar", "Shoulder"),
        ("shoulder", "Arm"), ("elbow", "ForeArm"), ("wrist", "Hand"))},
}  # fmt: skip


def write_bvh(path: Path, names, parents, offsets, root_frames, frame_time=0.1, end_site=None) -> None:
    """Hierarchy from a parent list; only the root has channels (Xpos Ypos Zpos Yrot Xrot Zrot);
    leaves get an End Site ``end_site`` above them (or none)."""
    lines = ["HIERARCHY"]

    def emit(i: int, depth: int) -> None:
        pad = "  " * depth
        lines.append(f"{pad}{'ROOT' if parents[i] < 0 else 'JOINT'} {names[i]}")
        lines.append(pad + "{")
        lines.append(f"{pad}  OFFSET {offsets[i][0]:.6f} {offsets[i][1]:.6f} {offsets[i][2]:.6f}")
        if parents[i] < 0:
            lines.append(f"{pad}  CHANNELS 6 Xposition Yposition Zposition Yrotation Xrotation Zrotation")
        kids = [k for k, p in enumerate(parents) if p == i]
        for k in kids:
            emit(k, depth + 1)
        if not kids and end_site is not None:
            lines.extend([f"{pad}  End Site", f"{pad}  {{", f"{pad}    OFFSET 0 {end_site} 0", f"{pad}  }}"])
        lines.append(pad + "}")

    emit(0, 0)
    lines += ["MOTION", f"Frames: {len(root_frames)}", f"Frame Time: {frame_time}"]
    lines += [" ".join(f"{v:.6f}" for v in row) for row in root_frames]
    path.write_text("\n".join(lines) + "\n")


def stand_bvh(path: Path, units: float = 100.0) -> None:
    names = [MIXAMO[n] for n in SMPL22_NAMES]
    offsets = [STAND[0] * 0 if p < 0 else (STAND[j] - STAND[p]) * units for j, p in enumerate(SMPL22_PARENTS)]
    r = STAND[0] * units
    frames = [[*r, 0, 0, 0], [r[0], r[1], r[2] + 10, 0, 0, 0], [r[0], r[1], r[2] + 20, 90, 0, 0]]
    write_bvh(path, names, list(SMPL22_PARENTS), offsets, frames, end_site=0.05 * units)


def test_load_bvh_mixamo_names_cm(tmp_path):
    path = tmp_path / "stand.bvh"
    stand_bvh(path)
    m = load_bvh(path)
    assert m.meta["scale"] == 0.01 and m.meta["filled_joints"] == []
    assert m.meta["joint_map"]["left_collar"] == "LeftShoulder"
    assert m.meta["joint_map"]["left_shoulder"] == "LeftArm"
    assert m.fps == 20.0 and m.num_frames == 5  # 0.2 s at 20 fps
    np.testing.assert_allclose(m.joints[0], STAND, atol=1e-6)
    np.testing.assert_allclose(m.joints[1], STAND + np.array([0, 0, 0.05]), atol=1e-6)  # lerped root
    # t=0.15: root at +0.15 m and yaw slerped halfway (45°) between frames 1 and 2
    rot = Rotation.from_euler("y", 45, degrees=True)
    expected = rot.apply(STAND - STAND[0]) + STAND[0] + np.array([0, 0, 0.15])
    np.testing.assert_allclose(m.joints[3], expected, atol=1e-6)
    assert load_bvh(path, scale=0.02).joints[0, J["head"], 1] == pytest.approx(2 * STAND[J["head"], 1])
    assert load_bvh(path, fps=10.0).num_frames == 3


def test_load_bvh_fills_missing_joints_and_joint_map(tmp_path):
    keep = [n for n in SMPL22_NAMES if n not in ("spine1", "spine3", "left_collar", "right_collar")]
    keep = [n for n in keep if not n.endswith("_foot")]
    parent_of = {}
    for n in keep:
        p = SMPL22_PARENTS[SMPL22_NAMES.index(n)]
        while p >= 0 and SMPL22_NAMES[p] not in keep:
            p = SMPL22_PARENTS[p]
        parent_of[n] = keep.index(SMPL22_NAMES[p]) if p >= 0 else -1
    names = {"pelvis": "Bassin", "spine2": "Chest", "neck": "Neck", "head": "Head"}
    for s, c in (("left", "L"), ("right", "R")):
        for k, v in (("hip", "Hip"), ("knee", "Knee"), ("ankle", "Ankle"), ("shoulder", "Shoulder"),
                     ("elbow", "Elbow"), ("wrist", "Wrist")):  # fmt: skip
            names[f"{s}_{k}"] = f"{c}{v}"
    idx = [SMPL22_NAMES.index(n) for n in keep]
    parents = [parent_of[n] for n in keep]
    offsets = [
        np.zeros(3) if parents[i] < 0 else STAND[idx[i]] - STAND[idx[parents[i]]] for i in range(len(keep))
    ]
    path = tmp_path / "short.bvh"
    write_bvh(path, [names[n] for n in keep], parents, offsets, [[*STAND[0], 0, 0, 0]] * 2)
    with pytest.raises(ValueError, match="pelvis"):
        load_bvh(path, scale=1.0)
    m = load_bvh(path, joint_map={"Bassin": "pelvis"})
    assert m.meta["scale"] == 1.0
    filled = set(m.meta["filled_joints"])
    assert filled == {"spine1", "spine3", "left_collar", "right_collar", "left_foot", "right_foot"}
    j = m.joints[0]
    for n in keep:
        np.testing.assert_allclose(j[J[n]], STAND[J[n]], atol=1e-9)
    np.testing.assert_allclose(j[J["spine1"]], 0.55 * STAND[0] + 0.45 * STAND[J["spine2"]], atol=1e-9)
    for s in ("left", "right"):
        toe, ankle = j[J[f"{s}_foot"]], j[J[f"{s}_ankle"]]
        assert toe[2] - ankle[2] == pytest.approx(0.13) and toe[1] < ankle[1]  # forward (+Z), lower
    with pytest.raises(ValueError, match="not an SMPL-22 joint"):
        load_bvh(path, joint_map={"Bassin": "hips"})
    with pytest.raises(ValueError, match="has no joint 'Pelvis'"):
        load_bvh(path, joint_map={"Pelvis": "pelvis"})


@pytest.mark.parametrize(
    ("old", "new", "line", "msg"),
    [
        ("ROOT Hips\n{", "ROOT Hips\n(", 3, "expected '\\{'"),
        ("OFFSET 0 20 0", "OFFSET 0 twenty 0", 8, "expected a number"),
        ("CHANNELS 3 Xrotation", "CHANNELS 3 Wrotation", 9, "unknown channel"),
        ("10 90 5 0 0 0 90 0 90", "10 90 5 0 0 0 90 0", 20, "expected 9 channel values, got 8"),
        ("10 90 5 0 0 0 90 0 90", "10 90 5 0 0 0 90 0 x", 20, "non-numeric"),
        ("Frames: 2", "Frames: 3", 17, "Frames says 3"),
        ("Frame Time: 0.05", "Frame Tim: 0.05", 18, "Frame Time"),
        ("    }\n  }\n}", "    }\n  }\n", 14, "unexpected end of file"),
    ],
)
def test_malformed_bvh_names_the_line(tmp_path, old, new, line, msg):
    assert old in TWO_LEVEL
    path = tmp_path / "bad.bvh"
    path.write_text(TWO_LEVEL.replace(old, new, 1))
    with pytest.raises(ValueError, match=rf"bad\.bvh: line {line}: .*{msg}"):
        load_bvh(path)


def test_bvh_without_motion_section(tmp_path):
    path = tmp_path / "nomotion.bvh"
    path.write_text(TWO_LEVEL.split("MOTION")[0])
    with pytest.raises(ValueError, match="no MOTION section"):
        parse_bvh(path)


# --- HumanML3D folder -----------------------------------------------------------------------------
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
