"""A procedural SMPL-22 walk (swinging legs and arms, pelvis ~0.9 m) so tests need no mocap files."""

from __future__ import annotations

import numpy as np

from components.motion.motion import Motion


def _swing(angle: np.ndarray) -> np.ndarray:
    """Unit vectors [T,3] pointing down, rotated forward (+Z) by ``angle`` radians about X."""
    return np.stack([np.zeros_like(angle), -np.cos(angle), np.sin(angle)], axis=-1)


def walking_motion(
    seconds: float = 2.0, fps: float = 30.0, speed: float = 1.2, facing_deg: float = 0.0, cadence: float = 0.9
) -> Motion:
    """A person walking forward (canonical facing +Z, left = +X), rotated to face ``facing_deg``."""
    T = round(seconds * fps)
    tt = np.arange(T) / fps
    ph = 2 * np.pi * cadence * tt
    j = np.zeros((T, 22, 3))
    z = speed * tt
    pelvis = np.stack([np.zeros(T), np.full(T, 0.93), z], -1)
    up = np.array([0.0, 1.0, 0.0])
    j[:, 0] = pelvis
    for k, h in ((3, 0.11), (6, 0.24), (9, 0.30), (12, 0.50)):
        j[:, k] = pelvis + h * up + [0, 0, -0.01]
    j[:, 15] = j[:, 12] + [0, 0.14, 0.03]
    for side, sx, sgn in (("left", 0.09, 1.0), ("right", -0.09, -1.0)):
        hip_i, knee_i, ankle_i, foot_i = (1, 4, 7, 10) if side == "left" else (2, 5, 8, 11)
        hip_a = 0.42 * np.sin(ph) * sgn
        knee_a = 0.1 + 0.55 * np.maximum(0.0, np.sin(ph * sgn + 0.9 * np.pi))
        j[:, hip_i] = pelvis + np.array([sx, -0.08, 0.0])
        j[:, knee_i] = j[:, hip_i] + 0.40 * _swing(hip_a)
        j[:, ankle_i] = j[:, knee_i] + 0.42 * _swing(hip_a - knee_a)
        j[:, foot_i] = j[:, ankle_i] + [0.02 * np.sign(sx), -0.06, 0.13]
        col_i, sh_i, el_i, wr_i = (13, 16, 18, 20) if side == "left" else (14, 17, 19, 21)
        j[:, col_i] = j[:, 9] + [0.07 * np.sign(sx), 0.12, 0.0]
        j[:, sh_i] = j[:, 9] + [0.18 * np.sign(sx), 0.14, -0.01]
        arm_a = -0.35 * np.sin(ph) * sgn
        j[:, el_i] = j[:, sh_i] + 0.27 * _swing(arm_a) + [0.03 * np.sign(sx), 0, 0]
        j[:, wr_i] = j[:, el_i] + 0.25 * _swing(arm_a + 0.35 + 0.2 * np.maximum(0, -np.sin(ph) * sgn))
    # Ground the lowest foot point (ankle or toe) at ~2 cm.
    low = j[:, [7, 8, 10, 11], 1].min(1)
    j[..., 1] += (0.02 - low)[:, None]
    a = np.radians(facing_deg)
    rot = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    j = j @ rot.T
    return Motion(j, fps=fps, name="procedural-walk", action="walk", source="procedural")
