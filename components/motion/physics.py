"""Physical plausibility and reconstruction error of SMPL-22 joint motions (metres, Y up).

* ``mpjpe_mm``: mean per-joint position error in millimetres. Default ``align_root=True``
  subtracts each frame's pelvis from both motions first (Human3.6M protocol 1, and how VQ-VAE
  reconstruction MPJPE is usually reported); ``False`` also charges global drift.
* ``foot_skate_ratio``: share of frame steps in which a foot joint is on the floor at both ends
  of the step yet slides horizontally. Defaults follow Karunratanakul et al. 2023 (GMD): contact
  height 5 cm, slide speed 0.5 m/s both instantaneously and averaged over a 5-frame window.
* ``floor_penetration``: how far the body dips below the floor plane.

The floor is the plane y = 0 by default: HumanML3D-style motions are canonicalised so the lowest
joint of the real clip touches y = 0, and generated motions decode to absolute heights in that
frame, so a fixed plane is what exposes floating and sinking. ``foot_skate_ratio`` also accepts
``floor="lowest"`` (the lowest foot-joint height over the clip) for motions of unknown height.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.ndimage import uniform_filter1d

from components.motion.skeleton import FOOT_LEFT, FOOT_RIGHT

NUM_JOINTS = 22
DEFAULT_FEET: tuple[tuple[int, ...], ...] = (FOOT_LEFT, FOOT_RIGHT)  # (ankle, toe) per foot
CONTACT_HEIGHT_M = 0.05
SKATE_SPEED_MPS = 0.5
SKATE_WINDOW_FRAMES = 5


def _joints(x: np.ndarray, name: str, min_frames: int = 1) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 3 or arr.shape[1:] != (NUM_JOINTS, 3):
        raise ValueError(f"{name} must be SMPL-22 joints [T,22,3] in metres, got shape {arr.shape}")
    if arr.shape[0] < min_frames:
        raise ValueError(f"{name} needs at least {min_frames} frame(s), got {arr.shape[0]}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or inf")
    return arr


def mpjpe_mm(pred_joints: np.ndarray, true_joints: np.ndarray, align_root: bool = True) -> float:
    """Mean per-joint position error (mm) of ``pred_joints`` vs ``true_joints`` [T,22,3] (m).

    ``align_root`` (default True) subtracts the pelvis (joint 0) of each frame from each motion,
    so only the pose is compared; with False global translation errors count too.
    """
    pred = _joints(pred_joints, "pred_joints")
    true = _joints(true_joints, "true_joints")
    if pred.shape != true.shape:
        raise ValueError(f"pred_joints {pred.shape} and true_joints {true.shape} must have the same shape")
    if align_root:
        pred = pred - pred[:, :1]
        true = true - true[:, :1]
    return float(np.linalg.norm(pred - true, axis=-1).mean() * 1000.0)


def foot_skate_ratio(
    joints: np.ndarray,
    fps: float = 20.0,
    contact_height: float = CONTACT_HEIGHT_M,
    speed_threshold: float = SKATE_SPEED_MPS,
    window: int = SKATE_WINDOW_FRAMES,
    floor: float | Literal["lowest"] = 0.0,
    feet: tuple[tuple[int, ...], ...] = DEFAULT_FEET,
) -> float:
    """Share of the T−1 frame steps in which some foot skates.

    A foot joint skates on step t → t+1 when its height above the floor is below
    ``contact_height`` at both t and t+1, and its horizontal (xz) speed exceeds
    ``speed_threshold`` both on that step and as a ``window``-step moving average (edges
    replicate the end speeds). A foot (default: ankle and toe joints of each side) skates if any
    of its joints does; the step counts if any foot skates.
    """
    j = _joints(joints, "joints", min_frames=2)
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if not contact_height > 0 or not speed_threshold > 0:
        raise ValueError(
            f"contact_height and speed_threshold must be positive, got {contact_height}, {speed_threshold}"
        )
    if window < 1:
        raise ValueError(f"window must be >= 1 frame, got {window}")
    idx = [k for foot in feet for k in foot]
    if not idx or any(not 0 <= k < NUM_JOINTS for k in idx):
        raise ValueError(f"feet must list SMPL-22 joint indices in [0, 21], got {feet}")
    pts = j[:, idx]  # [T, K, 3]
    floor_y = float(pts[..., 1].min()) if floor == "lowest" else _floor_value(floor)
    low = pts[..., 1] - floor_y < contact_height
    contact = low[:-1] & low[1:]  # [T-1, K]
    speed = np.linalg.norm(np.diff(pts[..., [0, 2]], axis=0), axis=-1) * fps
    smooth = uniform_filter1d(speed, size=window, axis=0, mode="nearest")
    joint_skates = contact & (speed > speed_threshold) & (smooth > speed_threshold)
    return float(joint_skates.any(axis=1).mean())


def _floor_value(floor: object) -> float:
    try:
        value = float(floor)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        value = float("nan")
    if isinstance(floor, str) or not np.isfinite(value):
        raise ValueError(f'floor must be a finite height in metres or "lowest", got {floor!r}')
    return value


@dataclass(frozen=True)
class FloorPenetration:
    """Depth (m) of the lowest joint below the floor, per frame, summarised over the motion.

    ``mean_depth_m`` averages over all frames (0 where nothing is below), ``max_depth_m`` is the
    deepest frame, ``frame_ratio`` the share of frames deeper than the tolerance.
    """

    mean_depth_m: float
    max_depth_m: float
    frame_ratio: float


def floor_penetration(joints: np.ndarray, floor: float = 0.0, tolerance: float = 0.0) -> FloorPenetration:
    """How far joints [T,22,3] go below the plane y = ``floor`` (all 22 joints count)."""
    j = _joints(joints, "joints")
    floor_y = _floor_value(floor)
    if not tolerance >= 0:
        raise ValueError(f"tolerance must be >= 0 metres, got {tolerance}")
    depth = np.maximum(floor_y - j[..., 1].min(axis=1), 0.0)  # [T]
    return FloorPenetration(
        mean_depth_m=float(depth.mean()),
        max_depth_m=float(depth.max()),
        frame_ratio=float((depth > tolerance).mean()),
    )
