"""Augmentations: geometry is right, labels follow (mirror swaps left/right words), inputs untouched."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from components.motion.augment import (
    change_speed,
    crop,
    curve_path,
    mirror,
    offset_root,
    random_augment,
    rotate_yaw,
    swap_left_right,
)
from components.motion.deepmimic import load_deepmimic
from components.motion.skeleton import SMPL22_PARENTS, J
from tests.components.motion.conftest import translating

BONES = [(j, p) for j, p in enumerate(SMPL22_PARENTS) if p >= 0]


def bone_lengths(joints: np.ndarray) -> np.ndarray:
    return np.stack([np.linalg.norm(joints[:, j] - joints[:, p], axis=-1) for j, p in BONES], axis=1)


def yaw_deg(joints: np.ndarray) -> np.ndarray:
    across = joints[:, J["right_hip"]] - joints[:, J["left_hip"]]
    return np.degrees(np.unwrap(np.arctan2(across[:, 2], -across[:, 0])))  # forward=(sin, ·, cos)


@pytest.fixture
def walk():
    m = translating((0.3, 1.2), seconds=3.0, turn_deg=40.0, action="turn_left")
    caps = ("A person turns left, then walks to the RIGHT.", "Someone spins counterclockwise leftwards")
    return dataclasses.replace(m, captions=caps, meta={"origin": "test"})


def test_swap_left_right_words():
    assert swap_left_right("turns left") == "turns right"
    assert swap_left_right("Left hand up, RIGHT foot back, right.") == "Right hand up, LEFT foot back, left."
    assert swap_left_right("turn_left") == "turn_right"
    assert swap_left_right("moves leftward to the leftmost spot") == "moves rightward to the rightmost spot"
    assert swap_left_right("clockwise then counter-clockwise") == "counterclockwise then clockwise"
    for same in ("cleft palate", "lefty", "rightly so", "upright"):
        assert swap_left_right(same) == same


def test_mirror_twice_is_identity(walk):
    once = mirror(walk)
    twice = mirror(once)
    assert np.array_equal(twice.joints, walk.joints)
    assert twice.captions == walk.captions and twice.action == walk.action
    assert twice.meta["augment"] == ["mirror", "mirror"] and twice.meta["origin"] == "test"
    assert "augment" not in walk.meta  # input untouched


def test_mirror_geometry_and_labels(walk):
    m = mirror(walk)
    assert m.captions == (
        "A person turns right, then walks to the LEFT.",
        "Someone spins clockwise rightwards",
    )
    assert m.action == "turn_right"
    j, j0 = m.joints, walk.joints
    np.testing.assert_array_equal(j[:, J["left_hip"], 0], -j0[:, J["right_hip"], 0])
    np.testing.assert_array_equal(j[:, :, 1:], j0[:, [0, 2, 1, 3, 5, 4, 6, 8, 7, 9, 11, 10, 12, 14, 13, 15,
                                                          17, 16, 19, 18, 21, 20], 1:])  # fmt: skip
    assert (j[:, J["left_hip"], 0] > j[:, J["right_hip"], 0]).all()  # still a body whose left is +X
    np.testing.assert_allclose(bone_lengths(j), bone_lengths(j0))
    turn0, turn1 = yaw_deg(j0), yaw_deg(j)
    assert turn0[-1] - turn0[0] == pytest.approx(40.0, abs=1e-6)
    assert turn1[-1] - turn1[0] == pytest.approx(-40.0, abs=1e-6)  # now turns right


def test_mirror_real_turn_clip():
    m = load_deepmimic("walker/turn_left0")
    mm = mirror(m)
    assert mm.action == "turn_right"
    y0, y1 = yaw_deg(m.joints), yaw_deg(mm.joints)
    assert (y0[-5:].mean() - y0[:5].mean()) > 15 and (y1[-5:].mean() - y1[:5].mean()) < -15


def test_rotate_yaw(walk):
    walk = offset_root(walk, 2.0, 3.0)  # pivot away from the origin
    r = rotate_yaw(walk, 90.0)
    np.testing.assert_allclose(bone_lengths(r.joints), bone_lengths(walk.joints), atol=1e-12)
    np.testing.assert_array_equal(r.joints[..., 1], walk.joints[..., 1])  # heights (root height) kept
    np.testing.assert_allclose(r.joints[0, 0], walk.joints[0, 0], atol=1e-12)  # pivot: first root
    assert yaw_deg(r.joints)[0] == pytest.approx(yaw_deg(walk.joints)[0] + 90.0, abs=1e-6)  # +Z → +X
    back = rotate_yaw(r, -90.0)
    np.testing.assert_allclose(back.joints, walk.joints, atol=1e-12)
    assert r.captions == walk.captions and r.action == walk.action


def test_change_speed(walk):
    fast = change_speed(walk, 2.0)
    assert walk.num_frames == 60 and fast.num_frames == 30 and fast.fps == walk.fps
    np.testing.assert_allclose(fast.joints, walk.joints[::2])
    slow = change_speed(walk, 0.5)
    assert slow.num_frames == 120
    np.testing.assert_allclose(slow.joints[1], 0.5 * (walk.joints[0] + walk.joints[1]))
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="speed factor"):
            change_speed(walk, bad)


def test_curve_path_turns_a_straight_walk_into_an_arc():
    from components.motion.humanml3d import joints_to_features

    straight = translating((0.0, 1.2), seconds=3.0)  # facing +Z, walking along +Z, no turn
    left = curve_path(straight, 60.0)
    np.testing.assert_allclose(bone_lengths(left.joints), bone_lengths(straight.joints), atol=1e-9)
    np.testing.assert_array_equal(left.joints[..., 1], straight.joints[..., 1])
    np.testing.assert_allclose(left.joints[0], straight.joints[0], atol=1e-12)
    # body heading turns 60°/s toward +X (the body's left), the speed along the path is unchanged
    turned = yaw_deg(left.joints) - yaw_deg(straight.joints)
    np.testing.assert_allclose(turned, 60.0 * np.arange(60) / 20.0, atol=1e-6)
    step = np.linalg.norm(np.diff(left.joints[:, 0, [0, 2]], axis=0), axis=1)
    np.testing.assert_allclose(step, 1.2 / 20.0, atol=1e-9)
    assert left.joints[-1, 0, 0] > 0.5  # the arc bends toward +X
    # HumanML3D root angular velocity reads the turn rate (rad per frame), left positive
    f = joints_to_features(left.joints)
    assert np.degrees(f[:, 0].mean() * 20.0) == pytest.approx(60.0, abs=1e-6)
    right = curve_path(straight, -60.0)
    np.testing.assert_allclose(right.joints[:, 0, 0], -left.joints[:, 0, 0], atol=1e-9)  # mirrored arc
    assert left.meta["augment"] == ["curve:60"] and left.captions == straight.captions
    np.testing.assert_array_equal(curve_path(straight, 0.0).joints, straight.joints)
    with pytest.raises(ValueError, match="turn rate"):
        curve_path(straight, float("nan"))


def test_offset_and_crop(walk):
    o = offset_root(walk, 1.5, -2.0)
    np.testing.assert_allclose(o.joints - walk.joints, np.broadcast_to([1.5, 0.0, -2.0], walk.joints.shape))
    c = crop(walk, 10, 20)
    assert c.num_frames == 20
    np.testing.assert_array_equal(c.joints, walk.joints[10:30])
    assert crop(walk, 0, 60).num_frames == 60
    for start, length in ((-1, 5), (0, 0), (50, 11), (60, 1), (1.5, 3)):
        with pytest.raises(ValueError, match="crop"):
            crop(walk, start, length)


def test_random_augment(walk):
    a = random_augment(walk, 7, crop_length=40)
    b = random_augment(walk, np.random.default_rng(7), crop_length=40)
    np.testing.assert_array_equal(a.joints, b.joints)
    assert a.num_frames == 40 and a.meta["augment"] == b.meta["augment"]
    none = random_augment(walk, 0, p_mirror=0, p_speed=0, p_yaw=0, p_offset=0)
    np.testing.assert_array_equal(none.joints, walk.joints)
    ops = set()
    for seed in range(30):
        out = random_augment(walk, seed)
        ops.update(op.split(":")[0] for op in out.meta["augment"])
        mirrored = out.meta["augment"].count("mirror") % 2 == 1
        assert out.action == ("turn_right" if mirrored else "turn_left")
        if not any(op.startswith("speed") for op in out.meta["augment"]):
            np.testing.assert_allclose(bone_lengths(out.joints), bone_lengths(walk.joints), atol=1e-9)
    assert ops == {"mirror", "speed", "yaw", "offset"}
