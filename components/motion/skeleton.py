"""Skeleton conventions: SMPL-22 in the HumanML3D layout and OpenPose-18 (DWPose/ControlNet colours).

Coordinates of SMPL-22 motions are metres, Y up; a canonical motion faces +Z, so the body's
left is +X (SMPL convention). OpenPose keypoints are image pixels (x right, y down).
"""

from __future__ import annotations

import numpy as np

# --- SMPL-22 (HumanML3D order) --------------------------------------------------------------
SMPL22_NAMES: tuple[str, ...] = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar",
    "right_collar", "head", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist",
)  # fmt: skip
J = {name: i for i, name in enumerate(SMPL22_NAMES)}
SMPL22_PARENTS: tuple[int, ...] = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19)
# Kinematic chains (HumanML3D t2m_kinematic_chain): right leg, left leg, spine, right arm, left arm.
SMPL22_CHAINS: tuple[tuple[int, ...], ...] = (
    (0, 2, 5, 8, 11),
    (0, 1, 4, 7, 10),
    (0, 3, 6, 9, 12, 15),
    (9, 14, 17, 19, 21),
    (9, 13, 16, 18, 20),
)
# Joints that define the facing direction: right hip, left hip, right shoulder, left shoulder.
FACE_JOINTS: tuple[int, int, int, int] = (2, 1, 17, 16)
FOOT_RIGHT: tuple[int, int] = (8, 11)  # ankle, foot
FOOT_LEFT: tuple[int, int] = (7, 10)
# Unit bone directions of the rest pose (HumanML3D's t2m_raw_offsets), used by inverse kinematics.
SMPL22_REST_DIRECTIONS = np.array(
    [
        [0, 0, 0], [1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, -1, 0], [0, 1, 0], [0, -1, 0],
        [0, -1, 0], [0, 1, 0], [0, 0, 1], [0, 0, 1], [0, 1, 0], [1, 0, 0], [-1, 0, 0], [0, 0, 1],
        [0, -1, 0], [0, -1, 0], [0, -1, 0], [0, -1, 0], [0, -1, 0], [0, -1, 0],
    ],
    dtype=np.float64,
)  # fmt: skip
# Left/right joint pairs (mirroring swaps them).
SMPL22_LR_PAIRS: tuple[tuple[int, int], ...] = (
    (1, 2),
    (4, 5),
    (7, 8),
    (10, 11),
    (13, 14),
    (16, 17),
    (18, 19),
    (20, 21),
)


def smpl22_mirror_permutation() -> np.ndarray:
    """Index array that swaps left and right joints."""
    perm = np.arange(22)
    for a, b in SMPL22_LR_PAIRS:
        perm[a], perm[b] = b, a
    return perm


# --- OpenPose-18 ----------------------------------------------------------------------------
OPENPOSE18_NAMES: tuple[str, ...] = (
    "nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
    "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
    "right_eye", "left_eye", "right_ear", "left_ear",
)  # fmt: skip
# Limbs as 0-based keypoint pairs, in the order that fixes their colours.
OPENPOSE18_LIMBS: tuple[tuple[int, int], ...] = tuple(
    (a - 1, b - 1)
    for a, b in (
        (2, 3), (2, 6), (3, 4), (4, 5), (6, 7), (7, 8), (2, 9), (9, 10), (10, 11), (2, 12), (12, 13),
        (13, 14), (2, 1), (1, 15), (15, 17), (1, 16), (16, 18),
    )
)  # fmt: skip
# 18 colours (RGB) from red stepping through hue to [255, 0, 85]; limb i and keypoint i use colour i.
OPENPOSE18_COLORS: tuple[tuple[int, int, int], ...] = (
    (255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0), (0, 255, 0),
    (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255), (0, 0, 255), (85, 0, 255),
    (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85),
)  # fmt: skip
OPENPOSE18_LR_PAIRS: tuple[tuple[int, int], ...] = (
    (2, 5),
    (3, 6),
    (4, 7),
    (8, 11),
    (9, 12),
    (10, 13),
    (14, 15),
    (16, 17),
)

# SMPL-22 joint for each OpenPose keypoint that has a direct counterpart (-1: derived).
SMPL_TO_OPENPOSE: tuple[int, ...] = (-1, -1, 17, 19, 21, 16, 18, 20, 2, 5, 8, 1, 4, 7, -1, -1, -1, -1)

# Face keypoints relative to the SMPL head joint, in metres, in the head frame
# (forward, up, right). The SMPL head joint sits near the centre of the skull.
_FACE_OFFSETS = {
    0: (0.10, -0.02, 0.0),  # nose
    14: (0.085, 0.03, 0.032),  # right eye
    15: (0.085, 0.03, -0.032),  # left eye
    16: (0.0, 0.01, 0.075),  # right ear
    17: (0.0, 0.01, -0.075),  # left ear
}


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-9)


def head_frame(joints: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(forward, up, right) unit vectors of the head for joints [..., 22, 3].

    up = neck → head; right = left shoulder → right shoulder made orthogonal to up;
    forward = up × right (for a body facing +Z with Y up this is +Z).
    """
    up = _unit(joints[..., J["head"], :] - joints[..., J["neck"], :])
    across = joints[..., J["right_shoulder"], :] - joints[..., J["left_shoulder"], :]
    right = _unit(across - (across * up).sum(-1, keepdims=True) * up)
    forward = np.cross(up, right)
    return forward, up, right


def smpl22_to_openpose18(joints: np.ndarray) -> np.ndarray:
    """OpenPose-18 3D keypoints [..., 18, 3] from SMPL-22 joints [..., 22, 3].

    Body keypoints copy their SMPL joint; neck is the shoulder midpoint; nose, eyes and ears are
    placed from the head joint with fixed offsets in the head frame (see ``head_frame``).
    """
    joints = np.asarray(joints, dtype=np.float64)
    out = np.zeros((*joints.shape[:-2], 18, 3))
    for k, j in enumerate(SMPL_TO_OPENPOSE):
        if j >= 0:
            out[..., k, :] = joints[..., j, :]
    out[..., 1, :] = 0.5 * (joints[..., J["left_shoulder"], :] + joints[..., J["right_shoulder"], :])
    forward, up, right = head_frame(joints)
    head = joints[..., J["head"], :]
    for k, (f, u, r) in _FACE_OFFSETS.items():
        out[..., k, :] = head + f * forward + u * up + r * right
    return out
