"""The motion record every loader returns and every consumer (features, renderers, captions) takes."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

HUMANML3D_FPS = 20.0


@dataclass(frozen=True)
class Motion:
    """SMPL-22 joint positions [T,22,3] in metres, Y up, at ``fps``, with what the clip shows.

    ``action`` is a short verb phrase key (e.g. "walk", "backflip") used by the caption generator;
    ``captions`` are natural-language descriptions if the source has them (HumanML3D texts);
    ``source`` names where it came from (e.g. "deepmimic:humanoid3d_walk.txt").
    """

    joints: np.ndarray
    fps: float = HUMANML3D_FPS
    name: str = ""
    action: str = ""
    source: str = ""
    captions: tuple[str, ...] = ()
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        j = np.asarray(self.joints)
        if j.ndim != 3 or j.shape[1:] != (22, 3):
            raise ValueError(f"Motion.joints must be [T,22,3], got {j.shape} ({self.name or self.source})")
        if not np.isfinite(j).all():
            raise ValueError(f"Motion.joints of {self.name or self.source} contain NaN or inf")
        if self.fps <= 0:
            raise ValueError(f"Motion.fps must be positive, got {self.fps}")

    @property
    def num_frames(self) -> int:
        return int(np.asarray(self.joints).shape[0])

    @property
    def seconds(self) -> float:
        return self.num_frames / self.fps
