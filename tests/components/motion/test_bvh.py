"""BVH → SMPL-22 motions: FK by hand, Mixamo names in cm, missing joints, malformed files named by line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from components.motion.bvh import bvh_forward_kinematics, load_bvh, parse_bvh
from components.motion.skeleton import SMPL22_NAMES, SMPL22_PARENTS, J
from tests.components.motion.conftest import STAND

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
