"""Render throughput at the ingest resolution: skeleton videos (DWPose style) and synthetic humans."""

from __future__ import annotations

import time

import numpy as np

from components.data.config import ClipParams
from components.motion.camera import build_cameras
from components.motion.config import CameraSpec
from components.motion.render import project_motion_to_openpose, skeleton_video


def _motion():
    from components.motion.deepmimic import load_deepmimic

    return load_deepmimic("walk")


def run(clip: ClipParams | None = None) -> dict:
    clip = clip or ClipParams()
    motion = _motion()
    joints = np.asarray(motion.joints)
    h, w = clip.height, clip.width
    cams = build_cameras(CameraSpec(kind="orbit"), len(joints), h, w, root=joints[:, 0])
    kp, conf, _ = project_motion_to_openpose(joints, cams)
    skeleton_video(kp[:4], conf[:4], h, w)  # warm-up
    t0 = time.perf_counter()
    skeleton_video(kp, conf, h, w)
    skel_fps = len(joints) / (time.perf_counter() - t0)

    from components.synthetic.render import render_clip

    n = 2 * clip.frames
    render_clip(motion, CameraSpec(kind="orbit"), h, w, clip.fps, seed=0, num_frames=2)  # warm-up
    t0 = time.perf_counter()
    frames, _ = render_clip(motion, CameraSpec(kind="orbit"), h, w, clip.fps, seed=0, num_frames=n)
    synth_fps = len(frames) / (time.perf_counter() - t0)
    return {
        "resolution": f"{w}x{h}",
        "skeleton_video_fps": round(skel_fps, 1),
        "synthetic_render_fps": round(synth_fps, 1),
        "synthetic_frames": n,
    }
