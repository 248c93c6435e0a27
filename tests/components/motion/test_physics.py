"""MPJPE, foot skating and floor penetration on hand-built and real (DeepMimic) motions."""

from __future__ import annotations

import numpy as np
import pytest

from components.motion.deepmimic import load_deepmimic
from components.motion.humanml3d import canonicalize
from components.motion.physics import floor_penetration, foot_skate_ratio, mpjpe_mm
from tests.components.motion.conftest import STAND, translating


@pytest.fixture(scope="module")
def walk() -> np.ndarray:
    """Three cycles of the DeepMimic walk at 20 fps (feet land on y≈0)."""
    motion = load_deepmimic("walk", fps=20.0, repeats=3)
    assert motion.fps == 20.0
    return np.asarray(motion.joints)


# --- MPJPE -----------------------------------------------------------------------------------------
def test_mpjpe_known_values(walk):
    assert mpjpe_mm(walk, walk) == 0.0
    moved = walk + np.array([0.01, 0.0, 0.0])
    assert mpjpe_mm(moved, walk, align_root=False) == pytest.approx(10.0)
    assert mpjpe_mm(moved, walk, align_root=True) == pytest.approx(0.0, abs=1e-9)
    assert mpjpe_mm(moved, walk) == pytest.approx(0.0, abs=1e-9)  # default: root-aligned
    one_joint = walk.copy()
    one_joint[:, 20, 1] += 0.022  # left wrist 22 mm higher in every frame
    assert mpjpe_mm(one_joint, walk) == pytest.approx(22.0 / 22)


def test_mpjpe_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="same shape"):
        mpjpe_mm(np.zeros((5, 22, 3)), np.zeros((6, 22, 3)))
    with pytest.raises(ValueError, match=r"SMPL-22 joints \[T,22,3\]"):
        mpjpe_mm(np.zeros((5, 24, 3)), np.zeros((5, 24, 3)))


# --- foot skating ----------------------------------------------------------------------------------
def test_feet_sliding_on_the_floor_skate_every_frame():
    sliding = translating(velocity_xz=(0.0, 1.0), seconds=3.0).joints  # toes 2 cm above y=0
    assert foot_skate_ratio(sliding) == pytest.approx(1.0)
    standing = translating(velocity_xz=(0.0, 0.0)).joints
    assert foot_skate_ratio(standing) == 0.0


def test_skating_needs_contact_and_the_floor_choice_matters():
    floating = translating(velocity_xz=(1.0, 0.0)).joints + np.array([0.0, 0.3, 0.0])
    assert foot_skate_ratio(floating) == 0.0  # 30 cm up: no contact with y=0
    assert foot_skate_ratio(floating, floor="lowest") == pytest.approx(1.0)
    slow = translating(velocity_xz=(0.3, 0.0)).joints
    assert foot_skate_ratio(slow) == 0.0
    assert foot_skate_ratio(slow, speed_threshold=0.2) == pytest.approx(1.0)


def test_one_step_glitch_is_smoothed_out():
    frames = np.repeat(STAND[None], 40, axis=0)
    frames[20:] += np.array([0.04, 0.0, 0.0])  # one 4 cm jump: 0.8 m/s on a single step
    assert foot_skate_ratio(frames) == 0.0
    assert foot_skate_ratio(frames, window=1) == pytest.approx(1 / 39)


def test_real_walk_is_mostly_planted_and_drift_makes_it_skate(walk):
    planted = foot_skate_ratio(walk)
    assert planted < 0.2
    t = np.arange(len(walk)) / 20.0
    drifting = walk + np.stack([t, 0 * t, 0 * t], axis=1)[:, None, :]  # +1 m/s sideways
    assert foot_skate_ratio(drifting) > 0.5 > planted + 0.3


def test_foot_skate_errors_name_the_argument():
    with pytest.raises(ValueError, match="at least 2 frame"):
        foot_skate_ratio(STAND[None])
    with pytest.raises(ValueError, match="lowest"):
        foot_skate_ratio(np.repeat(STAND[None], 3, 0), floor="min")
    with pytest.raises(ValueError, match="feet must list"):
        foot_skate_ratio(np.repeat(STAND[None], 3, 0), feet=((7, 30),))
    with pytest.raises(ValueError, match="fps"):
        foot_skate_ratio(np.repeat(STAND[None], 3, 0), fps=0)


# --- floor penetration -----------------------------------------------------------------------------
def test_floor_penetration_of_a_sunk_motion(walk):
    grounded = canonicalize(walk)  # lowest joint of the clip exactly on y=0
    clean = floor_penetration(grounded)
    assert (clean.mean_depth_m, clean.max_depth_m, clean.frame_ratio) == (0.0, 0.0, 0.0)
    sunk = floor_penetration(grounded - np.array([0.0, 0.1, 0.0]))
    assert sunk.max_depth_m == pytest.approx(0.1)
    assert 0.08 < sunk.mean_depth_m <= 0.1  # per frame, 10 cm minus the lowest joint's clearance
    assert sunk.frame_ratio == 1.0


def test_floor_penetration_counts_only_penetrating_frames():
    frames = np.repeat(STAND[None], 10, axis=0)  # lowest joints (toes) at y = 0.02
    frames[3, 10, 1] = -0.05  # left toe 5 cm below the floor in one frame
    res = floor_penetration(frames)
    assert res.max_depth_m == pytest.approx(0.05)
    assert res.mean_depth_m == pytest.approx(0.005)
    assert res.frame_ratio == pytest.approx(0.1)
    assert floor_penetration(frames, tolerance=0.06).frame_ratio == 0.0
    assert floor_penetration(frames, floor=0.03).frame_ratio == 1.0
