"""HumanML3D 263-d motion features for SMPL-22 joints (20 fps, metres, Y up).

Feature row ``t`` (of ``T - 1``) describes frame ``t`` and the step from ``t`` to ``t + 1``:

====================  =======  ===========================================================
group                 dims     content
====================  =======  ===========================================================
``root_rot_vel``      1        yaw change θ[t+1] − θ[t] (rad, wrapped to (−π, π])
``root_lin_vel``      2        root (x, z) displacement t → t+1 in the facing frame of t
``root_y``            1        pelvis height of frame t
``ric``               21×3     joints 1..21 minus the root's xz, rotated into the facing frame
                               of t (y stays absolute height)
``rot``               21×6     6D rotation (first two matrix columns) of the bone ending at
                               joints 1..21, relative to its parent bone's frame
``local_vel``         22×3     displacement t → t+1 of all joints in the facing frame of t
``foot_contact``      4        left ankle, left foot, right ankle, right foot
====================  =======  ===========================================================

Conventions and where they differ from the HumanML3D scripts (all deliberate):

* Facing: ``across = (r_hip − l_hip) + (r_shoulder − l_shoulder)``, ``forward = up × across``
  projected onto xz; yaw θ with ``forward = (sin θ, 0, cos θ)``. A body whose left is +X faces +Z.
* Every per-step quantity of row ``t`` (root velocities, joint velocities, contacts) uses the
  facing of frame ``t`` — HumanML3D rotates velocities with frame ``t + 1`` but recovers them with
  frame ``t``; using one frame for both makes ``features_to_joints`` reproduce the canonical joints
  of frames ``0..T-2`` exactly (up to float error).
* Velocities are per-frame displacements (not multiplied by fps), as in HumanML3D.
* Foot contact: squared per-frame displacement (m², summed over x, y, z) below ``feet_thre``
  (HumanML3D's rule and default 0.002, i.e. about 4.5 cm per frame = 0.9 m/s at 20 fps).
* Rotations: a swing-only IK. The root frame is the facing rotation; for each joint ``j`` the
  current bone direction (parent → j) is expressed in the parent's frame and ``rot[j]`` is the
  minimal rotation taking ``SMPL22_REST_DIRECTIONS[j]`` onto it; the joint frame is then
  ``parent_frame @ rot[j]``. (HumanML3D restarts every chain from the root frame; here the arm
  chains hang off the spine3 frame.) The features are never used for recovery, which relies on
  ``ric`` and the root channels only.
* No smoothing of the facing direction.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from components.motion.config import FEATURE_DIM
from components.motion.skeleton import (
    FACE_JOINTS,
    FOOT_LEFT,
    FOOT_RIGHT,
    SMPL22_PARENTS,
    SMPL22_REST_DIRECTIONS,
)

NUM_JOINTS = 22
SLICES: dict[str, slice] = {
    "root_rot_vel": slice(0, 1),
    "root_lin_vel": slice(1, 3),
    "root_y": slice(3, 4),
    "ric": slice(4, 4 + 21 * 3),
    "rot": slice(67, 67 + 21 * 6),
    "local_vel": slice(193, 193 + 22 * 3),
    "foot_contact": slice(259, 263),
}
DEFAULT_FEET_THRE = 0.002
_EPS = 1e-9


# --- validation and small rotation helpers -------------------------------------------------------
def _check_joints(joints: Any, min_frames: int) -> np.ndarray:
    arr = np.asarray(joints, dtype=np.float64)
    if arr.ndim != 3 or arr.shape[1:] != (NUM_JOINTS, 3):
        raise ValueError(f"joints must have shape [T,22,3], got {arr.shape}")
    if arr.shape[0] < min_frames:
        raise ValueError(f"joints need at least {min_frames} frame(s), got {arr.shape[0]}")
    if not np.isfinite(arr).all():
        raise ValueError("joints contain NaN or inf")
    return arr


def _rot_y(theta: np.ndarray) -> np.ndarray:
    """Rotation matrices [...,3,3] about +Y; maps +Z to (sin θ, 0, cos θ)."""
    c, s = np.cos(theta), np.sin(theta)
    z, o = np.zeros_like(theta), np.ones_like(theta)
    return np.stack([np.stack([c, z, s], -1), np.stack([z, o, z], -1), np.stack([-s, z, c], -1)], -2)


def facing_yaw(joints: np.ndarray) -> np.ndarray:
    """Facing yaw θ [...] of joints [...,22,3], with forward = (sin θ, 0, cos θ)."""
    r_hip, l_hip, r_sh, l_sh = FACE_JOINTS
    across = (joints[..., r_hip, :] - joints[..., l_hip, :]) + (joints[..., r_sh, :] - joints[..., l_sh, :])
    # forward = (0,1,0) × across = (across_z, 0, −across_x)
    return np.arctan2(across[..., 2], -across[..., 0])


def _wrap(angle: np.ndarray) -> np.ndarray:
    return (angle + np.pi) % (2 * np.pi) - np.pi


def rotation_between(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Minimal rotations [...,3,3] taking unit vectors u onto unit vectors v (Rodrigues form)."""
    u, v = np.broadcast_arrays(u, v)
    k = np.cross(u, v)
    c = (u * v).sum(-1)
    kx = np.zeros((*k.shape[:-1], 3, 3))
    kx[..., 0, 1], kx[..., 0, 2], kx[..., 1, 2] = -k[..., 2], k[..., 1], -k[..., 0]
    kx[..., 1, 0], kx[..., 2, 0], kx[..., 2, 1] = k[..., 2], -k[..., 1], k[..., 0]
    opposite = c < -1 + 1e-6
    denom = np.where(opposite, 1.0, 1.0 + c)[..., None, None]
    rot = np.eye(3) + kx + kx @ kx / denom
    if opposite.any():  # half turn about an axis perpendicular to u
        uo = u[opposite]
        helper = np.where(np.abs(uo[:, :1]) < 0.9, [[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]])
        axis = np.cross(uo, helper)
        axis /= np.linalg.norm(axis, axis=-1, keepdims=True)
        rot[opposite] = 2 * axis[:, :, None] * axis[:, None, :] - np.eye(3)
    return rot


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), _EPS)


def local_bone_rotations(joints: np.ndarray) -> np.ndarray:
    """Swing-only IK: rotations [...,22,3,3] of each bone relative to its parent's frame.

    Entry 0 is the root (facing) rotation in world coordinates; entry j ≥ 1 maps the rest
    direction of bone parent(j) → j onto its current direction in the parent's frame.
    """
    joints = np.asarray(joints, dtype=np.float64)
    lead = joints.shape[:-2]
    local = np.zeros((*lead, NUM_JOINTS, 3, 3))
    world = np.zeros_like(local)
    local[..., 0, :, :] = world[..., 0, :, :] = _rot_y(facing_yaw(joints))
    for j in range(1, NUM_JOINTS):
        p = SMPL22_PARENTS[j]
        bone = _unit(joints[..., j, :] - joints[..., p, :])
        bone_in_parent = np.einsum("...ki,...k->...i", world[..., p, :, :], bone)  # R_pᵀ · bone
        local[..., j, :, :] = rotation_between(SMPL22_REST_DIRECTIONS[j], bone_in_parent)
        world[..., j, :, :] = world[..., p, :, :] @ local[..., j, :, :]
    return local


def matrix_to_6d(rot: np.ndarray) -> np.ndarray:
    """6D continuous encoding [...,6]: first column then second column of each rotation matrix."""
    return np.concatenate([rot[..., :, 0], rot[..., :, 1]], axis=-1)


# --- public API ----------------------------------------------------------------------------------
def canonicalize(joints: np.ndarray) -> np.ndarray:
    """Floor at y=0, first-frame root xz at the origin, first frame facing +Z.

    The floor is the minimum y over all joints and frames (HumanML3D's rule), so feet that
    never touch the ground still end up on it.
    """
    out = _check_joints(joints, min_frames=1).copy()
    out[..., 1] -= out[..., 1].min()
    out[..., [0, 2]] -= out[0, 0, [0, 2]]
    rot = _rot_y(-facing_yaw(out[0]))
    return out @ rot.T


def joints_to_features(joints: np.ndarray, feet_thre: float = DEFAULT_FEET_THRE) -> np.ndarray:
    """HumanML3D features [T-1, 263] (float64) of joints [T,22,3]; see the module docstring."""
    if not feet_thre > 0:
        raise ValueError(f"feet_thre must be positive, got {feet_thre}")
    pos = canonicalize(_check_joints(joints, min_frames=2))
    n = pos.shape[0] - 1
    theta = facing_yaw(pos)  # [T]
    inv_face = _rot_y(-theta[:-1])  # [N,3,3] world → facing frame of t
    root = pos[:, 0, :]

    root_rot_vel = _wrap(theta[1:] - theta[:-1])[:, None]
    step = pos[1:] - pos[:-1]  # [N,22,3]
    root_lin_vel = np.einsum("nij,nj->ni", inv_face, step[:, 0, :])[:, [0, 2]]
    root_y = root[:-1, 1:2]
    centred = pos[:-1, 1:, :] - root[:-1, None, :] * np.array([1.0, 0.0, 1.0])
    ric = np.einsum("nij,nkj->nki", inv_face, centred)
    rot6d = matrix_to_6d(local_bone_rotations(pos[:-1])[:, 1:])
    local_vel = np.einsum("nij,nkj->nki", inv_face, step)
    feet = list(FOOT_LEFT) + list(FOOT_RIGHT)
    contact = ((step[:, feet, :] ** 2).sum(-1) < feet_thre).astype(np.float64)

    feats = np.concatenate(
        [root_rot_vel, root_lin_vel, root_y, ric.reshape(n, -1), rot6d.reshape(n, -1),
         local_vel.reshape(n, -1), contact],
        axis=1,
    )  # fmt: skip
    assert feats.shape == (n, FEATURE_DIM)
    return feats


def _is_torch(x: Any) -> bool:
    return type(x).__module__.split(".")[0] == "torch"


def features_to_joints(features: Any) -> Any:
    """Recover joints [..., N, 22, 3] from features [..., N, 263] (numpy array or torch tensor).

    Integrates the root yaw and root xz velocity (exclusive cumulative sums: frame 0 sits at the
    origin facing +Z), takes the root height, and rotates ``ric`` back by the yaw. Torch inputs
    stay torch (same dtype/device, differentiable); other inputs are returned as numpy.
    """
    if _is_torch(features):
        import torch

        xp, f = torch, features
        if not torch.is_floating_point(f):
            f = f.double()
        finite = bool(torch.isfinite(f).all())

        def cumsum(a):
            return torch.cumsum(a, dim=-1)

        def cat(parts, axis):
            return torch.cat(parts, dim=axis)
    else:
        xp, f = np, np.asarray(features, dtype=np.float64)
        finite = bool(np.isfinite(f).all())

        def cumsum(a):
            return np.cumsum(a, axis=-1)

        def cat(parts, axis):
            return np.concatenate(parts, axis=axis)

    if f.ndim < 2 or f.shape[-1] != FEATURE_DIM:
        raise ValueError(f"features must have shape [..., N, {FEATURE_DIM}], got {tuple(f.shape)}")
    if f.shape[-2] < 1:
        raise ValueError("features need at least one frame")
    if not finite:
        raise ValueError("features contain NaN or inf")

    def exclusive_cumsum(a):
        return cat([a[..., :1] * 0, cumsum(a[..., :-1])], -1)

    theta = exclusive_cumsum(f[..., 0])  # [..., N]
    c, s = xp.cos(theta), xp.sin(theta)
    vx, vz = f[..., 1], f[..., 2]
    root_x = exclusive_cumsum(c * vx + s * vz)
    root_z = exclusive_cumsum(-s * vx + c * vz)
    ric = f[..., SLICES["ric"]].reshape(*f.shape[:-1], 21, 3)
    c, s = c[..., None], s[..., None]
    x = c * ric[..., 0] + s * ric[..., 2] + root_x[..., None]
    z = -s * ric[..., 0] + c * ric[..., 2] + root_z[..., None]
    others = xp.stack([x, ric[..., 1], z], -1)  # [..., N, 21, 3]
    root = xp.stack([root_x, f[..., 3], root_z], -1)[..., None, :]
    return cat([root, others], -2)


# --- normalisation statistics ---------------------------------------------------------------------
@dataclass(frozen=True)
class FeatureStats:
    """Per-dimension mean and std [263] used to normalise features for training."""

    mean: np.ndarray
    std: np.ndarray

    def __post_init__(self):
        for name in ("mean", "std"):
            arr = np.asarray(getattr(self, name), dtype=np.float64)
            if arr.shape != (FEATURE_DIM,):
                raise ValueError(f"FeatureStats.{name} must have shape ({FEATURE_DIM},), got {arr.shape}")
            if not np.isfinite(arr).all():
                raise ValueError(f"FeatureStats.{name} contains NaN or inf")
            object.__setattr__(self, name, arr)
        if (self.std <= 0).any():
            raise ValueError("FeatureStats.std must be positive")

    def _cast(self, features: Any) -> tuple[Any, Any]:
        if _is_torch(features):
            import torch

            kw = {"dtype": features.dtype if features.is_floating_point() else torch.float32}
            kw["device"] = features.device
            return torch.as_tensor(self.mean, **kw), torch.as_tensor(self.std, **kw)
        return self.mean, self.std

    def normalize(self, features: Any) -> Any:
        """(features − mean) / std; numpy or torch, any leading shape [..., 263]."""
        if features.shape[-1] != FEATURE_DIM:
            raise ValueError(f"features must end in {FEATURE_DIM}, got {tuple(features.shape)}")
        mean, std = self._cast(features)
        return (features - mean) / std

    def denormalize(self, features: Any) -> Any:
        """Inverse of ``normalize``."""
        if features.shape[-1] != FEATURE_DIM:
            raise ValueError(f"features must end in {FEATURE_DIM}, got {tuple(features.shape)}")
        mean, std = self._cast(features)
        return features * std + mean

    def save(self, path: str | Path) -> None:
        """Write ``mean``/``std`` to an .npz atomically (temp file in the same folder, then replace)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, mean=self.mean, std=self.std)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: str | Path) -> FeatureStats:
        """Read statistics written by ``save``."""
        with np.load(Path(path)) as data:
            missing = {"mean", "std"} - set(data.files)
            if missing:
                raise ValueError(f"{path} lacks {sorted(missing)}")
            return cls(mean=data["mean"], std=data["std"])


def compute_stats(features: Sequence[np.ndarray], min_std: float = 1e-8) -> FeatureStats:
    """Mean per dimension; std averaged within each feature group (HumanML3D), floored at min_std.

    Group-averaging keeps e.g. all joint positions on one scale, so rarely moving joints are not
    blown up by a tiny per-dimension std.
    """
    arrays = [np.asarray(f, dtype=np.float64) for f in features]
    if not arrays:
        raise ValueError("compute_stats needs at least one feature array")
    for i, a in enumerate(arrays):
        if a.ndim != 2 or a.shape[1] != FEATURE_DIM:
            raise ValueError(f"feature array {i} must be [N,{FEATURE_DIM}], got {a.shape}")
        if not np.isfinite(a).all():
            raise ValueError(f"feature array {i} contains NaN or inf")
    data = np.concatenate(arrays, axis=0)
    if data.shape[0] == 0:
        raise ValueError("compute_stats got no frames")
    mean = data.mean(axis=0)
    per_dim = data.std(axis=0)
    std = np.empty(FEATURE_DIM)
    for sl in SLICES.values():
        std[sl] = per_dim[sl].mean()
    return FeatureStats(mean=mean, std=np.maximum(std, min_std))
