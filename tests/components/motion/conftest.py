"""Motion fixtures: a hand-built SMPL-22 standing pose and simple procedural motions."""

from __future__ import annotations

import numpy as np

from components.motion.motion import Motion

# A standing SMPL-22 pose facing +Z (left = +X), metres, feet on y=0.
STAND = np.array(
    [
        [0.0, 0.95, 0.0], [0.09, 0.88, 0.0], [-0.09, 0.88, 0.0], [0.0, 1.06, -0.01], [0.1, 0.5, 0.01],
        [-0.1, 0.5, 0.01], [0.0, 1.19, -0.01], [0.1, 0.08, -0.02], [-0.1, 0.08, -0.02], [0.0, 1.25, 0.0],
        [0.1, 0.02, 0.1], [-0.1, 0.02, 0.1], [0.0, 1.45, -0.02], [0.07, 1.38, -0.01], [-0.07, 1.38, -0.01],
        [0.0, 1.6, 0.02], [0.18, 1.4, -0.02], [-0.18, 1.4, -0.02], [0.2, 1.14, -0.03], [-0.2, 1.14, -0.03],
        [0.21, 0.9, 0.0], [-0.21, 0.9, 0.0],
    ]
)  # fmt: skip


def yaw_matrix(deg: float) -> np.ndarray:
    a = np.radians(deg)
    return np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])


def translating(
    velocity_xz=(0.0, 1.2),
    seconds: float = 3.0,
    fps: float = 20.0,
    facing_deg: float = 0.0,
    turn_deg: float = 0.0,
    action: str = "walk",
) -> Motion:
    """The standing pose facing ``facing_deg`` (0 = +Z, 90 = +X), moving at ``velocity_xz`` m/s,
    yawing by ``turn_deg`` over the clip."""
    n = int(seconds * fps)
    frames = []
    for i in range(n):
        s = i / max(n - 1, 1)
        R = yaw_matrix(facing_deg + turn_deg * s)
        pose = STAND @ R.T
        pose = pose + np.array([velocity_xz[0], 0, velocity_xz[1]]) * (i / fps)
        frames.append(pose)
    return Motion(np.stack(frames), fps=fps, name=f"{action}-{facing_deg}-{turn_deg}", action=action)
