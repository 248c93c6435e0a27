"""Skeleton conventions and the SMPL-22 → OpenPose-18 mapping."""

from __future__ import annotations

import itertools

import numpy as np

from components.motion import skeleton as sk
from tests.components.motion.conftest import STAND, yaw_matrix


def test_tables_are_consistent():
    assert len(sk.SMPL22_NAMES) == len(sk.SMPL22_PARENTS) == 22
    assert all(p < i for i, p in enumerate(sk.SMPL22_PARENTS))  # parents come first
    for chain in sk.SMPL22_CHAINS:
        for a, b in itertools.pairwise(chain):
            assert sk.SMPL22_PARENTS[b] == a
    assert len(sk.OPENPOSE18_LIMBS) == 17 and len(sk.OPENPOSE18_COLORS) == 18
    assert sk.OPENPOSE18_COLORS[0] == (255, 0, 0) and sk.OPENPOSE18_COLORS[-1] == (255, 0, 85)
    assert sk.OPENPOSE18_LIMBS[0] == (1, 2) and sk.OPENPOSE18_LIMBS[-1] == (15, 17)
    perm = sk.smpl22_mirror_permutation()
    assert (perm[perm] == np.arange(22)).all()
    for a, b in sk.SMPL22_LR_PAIRS:
        assert sk.SMPL22_NAMES[a].replace("left", "right") == sk.SMPL22_NAMES[b]
    for a, b in sk.OPENPOSE18_LR_PAIRS:
        assert sk.OPENPOSE18_NAMES[a].replace("right", "left") == sk.OPENPOSE18_NAMES[b]


def test_openpose_mapping_body_and_neck():
    op = sk.smpl22_to_openpose18(STAND)
    for k, j in enumerate(sk.SMPL_TO_OPENPOSE):
        if j >= 0:
            assert sk.OPENPOSE18_NAMES[k] == sk.SMPL22_NAMES[j]
            np.testing.assert_allclose(op[k], STAND[j])
    np.testing.assert_allclose(op[1], (STAND[16] + STAND[17]) / 2)


def test_face_points_in_front_of_head_and_on_the_right_sides():
    op = sk.smpl22_to_openpose18(STAND)
    head = STAND[15]
    nose, r_eye, l_eye, r_ear, l_ear = op[0], op[14], op[15], op[16], op[17]
    assert nose[2] > head[2] + 0.05  # facing +Z: the nose is in front
    assert r_eye[0] < head[0] < l_eye[0]  # the body's right is -X
    assert r_ear[0] < r_eye[0] and l_ear[0] > l_eye[0]
    assert abs(r_ear[2] - head[2]) < abs(nose[2] - head[2])


def test_face_follows_head_orientation_and_batches():
    R = yaw_matrix(90.0)  # facing +X now
    rotated = STAND @ R.T
    op = sk.smpl22_to_openpose18(np.stack([STAND, rotated]))
    assert op.shape == (2, 18, 3)
    np.testing.assert_allclose(op[1], op[0] @ R.T, atol=1e-9)
    assert op[1, 0, 0] > rotated[15, 0] + 0.05  # nose now in +X
