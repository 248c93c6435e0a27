"""Tests for the HumanML3D 263-d features: round trip, canonical frame, invariance, contacts, IK, stats."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter1d

from components.motion.config import FEATURE_DIM
from components.motion.humanml3d import (
    SLICES,
    FeatureStats,
    canonicalize,
    compute_stats,
    features_to_joints,
    joints_to_features,
)
from components.motion.skeleton import FACE_JOINTS, SMPL22_PARENTS, SMPL22_REST_DIRECTIONS

# Rough SMPL bone lengths (metres) of the bone parent(j) → j.
BONE_LENGTHS = np.array(
    [0.0, 0.09, 0.09, 0.11, 0.38, 0.38, 0.13, 0.40, 0.40, 0.05, 0.13, 0.13, 0.22, 0.08, 0.08, 0.10,
     0.10, 0.10, 0.26, 0.26, 0.25, 0.25]
)  # fmt: skip
IDENTITY_6D = np.array([1.0, 0, 0, 0, 1, 0])


def rot_y(a: float | np.ndarray) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def rot_x(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def rest_pose(root_height: float = 0.95) -> np.ndarray:
    """Joints [22,3] exactly along the rest directions, scaled by the bone lengths."""
    pos = np.zeros((22, 3))
    pos[0] = [0, root_height, 0]
    for j in range(1, 22):
        pos[j] = pos[SMPL22_PARENTS[j]] + BONE_LENGTHS[j] * SMPL22_REST_DIRECTIONS[j]
    return pos


def make_walk(num_frames: int = 80, fps: float = 20.0) -> np.ndarray:
    """Forward-kinematics walk: swinging legs and arms, bobbing root, heading that turns ~120°."""
    t = np.arange(num_frames) / fps
    phase = 2 * np.pi * 1.0 * t
    yaw = 0.3 + 0.7 * t + 0.2 * np.sin(0.5 * phase)
    out = np.zeros((num_frames, 22, 3))
    root = np.array([1.5, 0.0, -2.0])
    for f in range(num_frames):
        swing = 0.5 * np.sin(phase[f])
        local = {j: np.eye(3) for j in range(22)}
        local[4], local[5] = rot_x(swing), rot_x(-swing)  # hips
        local[7], local[8] = rot_x(0.4 + 0.4 * np.sin(phase[f])), rot_x(0.4 - 0.4 * np.sin(phase[f]))
        local[16], local[17] = rot_x(-swing), rot_x(swing)  # shoulders
        local[18], local[19] = rot_x(-0.3), rot_x(-0.3)  # elbows
        world = {0: rot_y(yaw[f])}
        if f > 0:
            root = root + 1.2 / fps * (rot_y(yaw[f]) @ np.array([0, 0, 1.0]))
        out[f, 0] = root + np.array([0, 0.93 + 0.02 * np.sin(2 * phase[f]), 0])
        for j in range(1, 22):
            p = SMPL22_PARENTS[j]
            world[j] = world[p] @ local[j]
            out[f, j] = out[f, p] + world[j] @ (BONE_LENGTHS[j] * SMPL22_REST_DIRECTIONS[j])
    return out


def make_random_smooth(seed: int, num_frames: int = 60) -> np.ndarray:
    """Rest pose with smooth random joint jitter, a smooth random root path and a random spin."""
    rng = np.random.default_rng(seed)
    jitter = gaussian_filter1d(rng.normal(size=(num_frames, 22, 3)), sigma=3, axis=0) * 0.3
    path = np.cumsum(gaussian_filter1d(rng.normal(size=(num_frames, 3)), sigma=4, axis=0), axis=0) * 0.1
    yaw = np.cumsum(gaussian_filter1d(rng.normal(size=num_frames), sigma=4)) * 0.5 + rng.uniform(0, 6.3)
    base = rest_pose() + jitter
    centred = base - base[:, :1]
    spun = np.einsum("tij,tkj->tki", np.stack([rot_y(a) for a in yaw]), centred)
    return spun + base[:, :1] + path[:, None, :] + rng.normal(size=3)


MOTIONS = {
    "walk": make_walk(),
    "random0": make_random_smooth(0),
    "random1": make_random_smooth(1),
    "random2": make_random_smooth(2, num_frames=7),
}


def facing_vector(frame: np.ndarray) -> np.ndarray:
    r_hip, l_hip, r_sh, l_sh = FACE_JOINTS
    across = frame[r_hip] - frame[l_hip] + frame[r_sh] - frame[l_sh]
    forward = np.cross([0.0, 1.0, 0.0], across)
    return forward / np.linalg.norm(forward)


@pytest.mark.parametrize("name", list(MOTIONS))
def test_round_trip_recovers_canonical_joints(name):
    x = MOTIONS[name]
    rec = features_to_joints(joints_to_features(x))
    expected = canonicalize(x)[:-1]
    assert rec.shape == expected.shape
    assert np.abs(rec - expected).max() < 1e-4


def test_walk_actually_turns_and_moves():
    """Guard that the walk exercises the root integration (otherwise the round trip is trivial)."""
    f = joints_to_features(MOTIONS["walk"])
    assert np.abs(f[:, 0]).sum() > 1.5  # total yaw change in rad
    assert np.linalg.norm(f[:, 1:3], axis=1).mean() > 0.04  # m per frame


@pytest.mark.parametrize("name", list(MOTIONS))
def test_canonicalize_floor_origin_facing_and_idempotent(name):
    c = canonicalize(MOTIONS[name])
    assert abs(c[..., 1].min()) < 1e-12
    np.testing.assert_allclose(c[0, 0, [0, 2]], 0.0, atol=1e-12)
    np.testing.assert_allclose(facing_vector(c[0]), [0.0, 0.0, 1.0], atol=1e-9)
    np.testing.assert_allclose(canonicalize(c), c, atol=1e-12)


def test_canonical_body_has_left_at_plus_x():
    turned = rest_pose() @ rot_y(np.pi).T  # facing −Z, left at −X
    c = canonicalize(turned[None])[0]
    assert c[1, 0] > 0 > c[2, 0]  # left hip at +X, right hip at −X
    np.testing.assert_allclose(c - c[0] * [1, 0, 1], rest_pose() - [0, 0.95 - c[0, 1], 0], atol=1e-12)


def test_feature_layout():
    assert FEATURE_DIM == 263
    covered = np.concatenate([np.arange(263)[s] for s in SLICES.values()])
    np.testing.assert_array_equal(covered, np.arange(263))
    for name, x in MOTIONS.items():
        assert joints_to_features(x).shape == (len(x) - 1, 263), name


@pytest.mark.parametrize("name", ["walk", "random0"])
def test_features_invariant_to_yaw_and_translation(name):
    x = MOTIONS[name]
    moved = x @ rot_y(2.1).T + np.array([3.0, 0.4, -7.5])
    np.testing.assert_allclose(joints_to_features(moved), joints_to_features(x), atol=1e-6)


def test_foot_contact_stationary_vs_moving():
    pose = rest_pose()
    x = np.repeat(pose[None], 5, axis=0)
    x[:, [8, 11], 2] += 0.1 * np.arange(5)[:, None]  # right ankle and foot move 10 cm per frame
    contact = joints_to_features(x)[:, SLICES["foot_contact"]]
    np.testing.assert_array_equal(contact, np.tile([1.0, 1.0, 0.0, 0.0], (4, 1)))


def test_root_height_feature_is_canonical_pelvis_height():
    x = MOTIONS["walk"]
    f = joints_to_features(x)
    np.testing.assert_allclose(f[:, 3], canonicalize(x)[:-1, 0, 1], atol=1e-12)
    assert f[:, 3].min() > 0.5  # pelvis well above the floor


def test_rest_pose_rotations_are_identity():
    x = np.stack([rest_pose() @ rot_y(a).T + [1.0, 0.2, 3.0] for a in (0.0, 0.7, -2.5)])
    rot = joints_to_features(x)[:, SLICES["rot"]].reshape(-1, 21, 6)
    np.testing.assert_allclose(rot, np.broadcast_to(IDENTITY_6D, rot.shape), atol=1e-12)


def test_rotations_accumulate_along_the_chain():
    """Shin pointing back (90° about +X at the knee) with the foot pointing down: the ankle's
    local rotation (bone 7→10) is the identity because it is measured in the shin's frame."""
    pose = rest_pose()
    pose[7] = pose[4] + BONE_LENGTHS[7] * np.array([0, 0, -1.0])
    pose[10] = pose[7] + BONE_LENGTHS[10] * np.array([0, -1.0, 0])
    rot = joints_to_features(np.stack([pose, pose]))[0, SLICES["rot"]].reshape(21, 6)
    np.testing.assert_allclose(rot[7 - 1], [1, 0, 0, 0, 0, 1], atol=1e-12)  # R_x(90°)
    np.testing.assert_allclose(rot[10 - 1], IDENTITY_6D, atol=1e-12)
    np.testing.assert_allclose(rot[4 - 1], IDENTITY_6D, atol=1e-12)


def test_stats_group_std_save_load_and_inverse(tmp_path):
    feats = [joints_to_features(x) for x in MOTIONS.values()]
    stats = compute_stats(feats)
    data = np.concatenate(feats)
    np.testing.assert_allclose(stats.mean, data.mean(0), atol=1e-12)
    for name, sl in SLICES.items():
        block = stats.std[sl]
        assert np.all(block == block[0]), name
        assert block[0] == pytest.approx(max(data[:, sl].std(0).mean(), 1e-8)), name
    assert np.all(stats.std >= 1e-8)

    path = tmp_path / "sub" / "stats.npz"
    stats.save(path)
    loaded = FeatureStats.load(path)
    np.testing.assert_array_equal(loaded.mean, stats.mean)
    np.testing.assert_array_equal(loaded.std, stats.std)
    assert [p.name for p in path.parent.iterdir()] == ["stats.npz"]  # no temp file left behind

    normed = stats.normalize(data)
    assert np.abs(normed.mean(0)).max() < 1e-9
    np.testing.assert_allclose(stats.denormalize(normed), data, atol=1e-12)
    t = torch.tensor(data, dtype=torch.float32)
    np.testing.assert_allclose(stats.denormalize(stats.normalize(t)).numpy(), data, atol=1e-4)


def test_constant_feature_std_is_floored():
    f = np.zeros((10, FEATURE_DIM))
    stats = compute_stats([f])
    assert np.all(stats.std == 1e-8)
    assert np.isfinite(stats.normalize(f)).all()


def test_torch_matches_numpy_and_is_differentiable():
    f = joints_to_features(MOTIONS["walk"])
    ref = features_to_joints(f)
    t = torch.tensor(f, requires_grad=True)
    out = features_to_joints(t)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float64
    np.testing.assert_allclose(out.detach().numpy(), ref, atol=1e-10)
    out.sum().backward()
    assert t.grad is not None and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0
    assert t.grad[:, 0].abs().sum() > 0  # gradient flows through the integrated yaw

    batch = torch.tensor(np.stack([f, f[::-1].copy()]), dtype=torch.float32)
    out_b = features_to_joints(batch)
    assert out_b.shape == (2, len(f), 22, 3) and out_b.dtype == torch.float32
    np.testing.assert_allclose(out_b[0].numpy(), ref, atol=1e-3)
    np.testing.assert_allclose(out_b[1].numpy(), features_to_joints(f[::-1]), atol=1e-3)


def test_input_validation():
    good = MOTIONS["walk"]
    with pytest.raises(ValueError, match=r"\[T,22,3\]"):
        joints_to_features(good[:, :21])
    with pytest.raises(ValueError, match="at least 2"):
        joints_to_features(good[:1])
    bad = good.copy()
    bad[3, 4, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        joints_to_features(bad)
    with pytest.raises(ValueError, match="NaN"):
        canonicalize(bad)
    with pytest.raises(ValueError, match="263"):
        features_to_joints(np.zeros((4, 262)))
    nan_feats = np.zeros((4, 263))
    nan_feats[1, 5] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        features_to_joints(torch.tensor(nan_feats))
    with pytest.raises(ValueError, match=r"\[N,263\]"):
        compute_stats([np.zeros((3, 10))])
    with pytest.raises(ValueError, match="shape"):
        FeatureStats(mean=np.zeros(10), std=np.ones(10))
