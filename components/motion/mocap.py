"""Mocap → SMPL-22 ``Motion``s (metres, Y up, faces +Z, 20 fps by default): the shared part.

The loaders: ``deepmimic`` (the clips shipped in ``pybullet_data``), ``bvh`` (BVH files) and
``humanml3d_folder`` (HumanML3D folders). This module holds what they share: time resampling and the
filling of SMPL-22 joints a source lacks.

SMPL joints with no source counterpart are filled by ``_fill_smpl`` (documented there).
"""

from __future__ import annotations

import logging
import math

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

from components.motion.skeleton import SMPL22_NAMES

log = logging.getLogger(__name__)

# --- shared: time resampling and filling SMPL-22 joints ---------------------------------------


def _sample_times(duration: float, fps: float) -> np.ndarray:
    """Times 0, 1/fps, ... up to ``duration`` (inclusive, with a small tolerance)."""
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    n = math.floor(max(duration, 0.0) * fps + 1e-6) + 1
    return np.arange(n, dtype=np.float64) / fps


def _slerp(times: np.ndarray, rots: Rotation, new_times: np.ndarray) -> Rotation:
    """Slerp a rotation track sampled at strictly increasing ``times``."""
    if len(times) == 1:
        return Rotation.from_quat(np.repeat(rots.as_quat()[:1], len(new_times), axis=0))
    return Slerp(times, rots)(np.clip(new_times, times[0], times[-1]))


def _lerp(times: np.ndarray, values: np.ndarray, new_times: np.ndarray) -> np.ndarray:
    """Linear interpolation of ``values`` [N, ...] along axis 0."""
    flat = values.reshape(len(times), -1)
    out = np.stack([np.interp(new_times, times, flat[:, k]) for k in range(flat.shape[1])], axis=1)
    return out.reshape(len(new_times), *values.shape[1:])


# Where the spine joints sit on the pelvis → neck path (fraction of the way), used to interpolate
# missing ones. For DeepMimic, spine2 is the chest joint (≈ half way), so spine1 = lerp(pelvis,
# chest, 0.45) and spine3 = lerp(chest, neck, 0.25) — close to SMPL's proportions.
_SPINE_CHAIN = ("pelvis", "spine1", "spine2", "spine3", "neck")
_SPINE_FRACTION = (0.0, 0.225, 0.5, 0.625, 1.0)
_REQUIRED = (
    "pelvis", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
)  # fmt: skip
FOOT_FORWARD = 0.13  # m, ankle → toe along the facing, when a source has no toe
FOOT_DOWN = 0.05  # m, toe below the ankle, same case
HEAD_ABOVE_NECK = 0.15  # m, along spine3 → neck, when a source has no head


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-9)


def _fill_smpl(pos: dict[str, np.ndarray], what: str) -> tuple[np.ndarray, list[str]]:
    """Assemble [T,22,3] from named joint tracks, filling missing SMPL joints from neighbours.

    Fill rules (returned as the list of filled joint names):

    * pelvis, hips, knees, ankles, shoulders, elbows, wrists are required (ValueError otherwise);
    * neck: midpoint of the shoulders;
    * spine1/2/3: linear interpolation between the nearest present joints of the chain
      pelvis → spine1 → spine2 → spine3 → neck, at fractions 0, .225, .5, .625, 1;
    * head: neck + 0.15 m along spine3 → neck;
    * collars: ½·midpoint(spine3, neck) + ½·shoulder;
    * feet (toes): ankle + 0.13 m along the horizontal facing (from the hips) − 0.05 m in y.
    """
    missing = [n for n in _REQUIRED if n not in pos]
    if missing:
        raise ValueError(f"{what}: cannot map required SMPL joints {missing}; pass joint_map")
    pos = dict(pos)
    filled: list[str] = []
    if "neck" not in pos:
        pos["neck"] = 0.5 * (pos["left_shoulder"] + pos["right_shoulder"])
        filled.append("neck")
    present = [i for i, n in enumerate(_SPINE_CHAIN) if n in pos]
    for i, name in enumerate(_SPINE_CHAIN):
        if name in pos:
            continue
        lo = max(k for k in present if k < i)
        hi = min(k for k in present if k > i)
        w = (_SPINE_FRACTION[i] - _SPINE_FRACTION[lo]) / (_SPINE_FRACTION[hi] - _SPINE_FRACTION[lo])
        pos[name] = (1 - w) * pos[_SPINE_CHAIN[lo]] + w * pos[_SPINE_CHAIN[hi]]
        filled.append(name)
    if "head" not in pos:
        pos["head"] = pos["neck"] + HEAD_ABOVE_NECK * _unit(pos["neck"] - pos["spine3"])
        filled.append("head")
    upper_mid = 0.5 * (pos["spine3"] + pos["neck"])
    for side in ("left", "right"):
        if f"{side}_collar" not in pos:
            pos[f"{side}_collar"] = 0.5 * upper_mid + 0.5 * pos[f"{side}_shoulder"]
            filled.append(f"{side}_collar")
    if "left_foot" not in pos or "right_foot" not in pos:
        across = pos["right_hip"] - pos["left_hip"]
        fwd = np.stack([across[:, 2], np.zeros(len(across)), -across[:, 0]], axis=-1)  # up × across
        fwd = _unit(fwd)
        for side in ("left", "right"):
            if f"{side}_foot" not in pos:
                toe = pos[f"{side}_ankle"] + FOOT_FORWARD * fwd
                toe[:, 1] -= FOOT_DOWN
                pos[f"{side}_foot"] = toe
                filled.append(f"{side}_foot")
    return np.stack([pos[n] for n in SMPL22_NAMES], axis=1), filled
