"""Motion previews: a skeleton video under a camera beside a 3D stick view (``mosa motion-preview``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from components.motion.bvh import load_bvh
from components.motion.camera import build_cameras
from components.motion.config import CameraSpec
from components.motion.deepmimic import list_deepmimic_clips, load_deepmimic
from components.motion.motion import HUMANML3D_FPS, Motion
from components.motion.render import draw_stick_3d, project_motion_to_openpose, skeleton_video


def load_motion_source(source: str) -> Motion:
    """A motion from a DeepMimic clip name (``walk``, ``walker/turn_left0``), a DeepMimic ``.txt``,
    a ``.bvh`` file, or a ``.npy`` of SMPL-22 joints [T,22,3] at 20 fps."""
    path = Path(source)
    if path.suffix.lower() == ".npy":
        if not path.is_file():
            raise FileNotFoundError(f"{source}: no such .npy file")
        joints = np.load(path)
        if joints.ndim != 3 or joints.shape[1:] != (22, 3):
            raise ValueError(f"{source}: expected SMPL-22 joints [T,22,3], got {joints.shape}")
        return Motion(joints.astype(np.float64), fps=HUMANML3D_FPS, name=path.stem, source=str(path))

    if path.suffix.lower() == ".bvh":
        if not path.is_file():
            raise FileNotFoundError(f"{source}: no such .bvh file")
        return load_bvh(path)
    clips = list_deepmimic_clips()
    if source in clips or path.is_file():
        return load_deepmimic(source)
    raise ValueError(
        f"motion source {source!r} is not a DeepMimic clip name, .txt, .bvh or .npy file; "
        f"clip names: {', '.join(sorted(clips))}"
    )


def render_preview(
    motion: Motion,
    camera: CameraSpec,
    height: int = 256,
    width: int = 384,
    *,
    progress: bool = True,
) -> np.ndarray:
    """Frames [T,H,2W,3]: the OpenPose skeleton video seen by ``camera`` | a 3D stick view."""
    joints = np.asarray(motion.joints, dtype=np.float64)
    cams = build_cameras(camera, len(joints), height, width, root=joints[:, 0])
    keypoints, confidence, _ = project_motion_to_openpose(joints, cams)
    left = skeleton_video(keypoints, confidence, height, width, progress=False)
    right = np.empty_like(left)
    floor = float(joints[..., 1].min())
    for t in tqdm(range(len(joints)), desc="3D view", unit="frame", disable=not progress):
        right[t] = draw_stick_3d(joints[t], height, width, ground=floor)
    return np.concatenate([left, right], axis=2)
