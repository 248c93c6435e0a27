"""The evaluation report draws the keypoints MediaPipe detected (not the conditioning skeleton) over the
generated frames, and lays out the held-out skeleton clips with the real clip beside."""

from __future__ import annotations

import imageio.v2 as imageio
import numpy as np

from components.evaluation.metric_registry import MetricContext, VideoSample
from components.evaluation.report import detected_overlay, write_report
from components.motion.render import skeleton_video
from components.motion.skeleton import OPENPOSE18_COLORS


def test_detected_keypoints_are_drawn_in_openpose_colours(walk):
    frames, _gt = walk
    pose = MetricContext().detected_pose(VideoSample(frames[:3], 8.0))
    drawn = detected_overlay(frames[:3], pose)
    assert drawn.shape == (3, 2 * frames.shape[1], 2 * frames.shape[2], 3)
    plain = detected_overlay(frames[:3], type(pose).empty(3))  # nobody found: the frames, upscaled
    changed = np.abs(drawn.astype(int) - plain.astype(int)).max(-1) > 60
    assert changed.mean() > 0.005  # limbs and joints drawn where the person was found
    # the drawing lies on the person: the changed pixels sit inside the detected box (at 2x)
    ys, xs = np.nonzero(changed[0])
    x0, y0, x1, y1 = pose.boxes()[0] * 2
    assert np.mean((xs > x0 - 20) & (xs < x1 + 20) & (ys > y0 - 20) & (ys < y1 + 20)) > 0.95
    # joints are discs in the OpenPose keypoint colours
    colours = {tuple(c) for c in drawn[0][changed[0]].tolist()}
    assert len(colours & {tuple(c) for c in OPENPOSE18_COLORS}) >= 5


def test_report_has_both_sections_with_real_and_detected(walk, tmp_path):
    frames, gt = walk
    frames = frames[:3]
    ctx = MetricContext()
    pose = ctx.detected_pose(VideoSample(frames, 8.0))
    skel = skeleton_video(gt.keypoints2d[:3], gt.visible[:3].astype(np.float32), *frames.shape[1:3])
    clip = {"prompt": "a person walks", "motion_prompt": "walk", "frames": frames, "skeleton": skel,
            "pose": pose, "base": frames[::-1].copy(), "base_pose": None}  # fmt: skip
    held = {**clip, "clip_id": "synthetic_walk_0", "real": frames}
    page = write_report(tmp_path, {"person_detect_rate": 1.0}, {"person_detect_rate": "d"}, [clip], 8.0,
                        skeleton_clips=[held])  # fmt: skip
    html = page.read_text()
    assert "From held-out skeletons" in html and "synthetic_walk_0" in html
    names = {p.name for p in (tmp_path / "clips").glob("*.gif")}
    assert {"000_skeleton.gif", "000_detected.gif", "000_base_alone.gif"} <= names
    assert {"skel000_real.gif", "skel000_generated.gif", "skel000_detected.gif"} <= names
    assert "000_base_detected.gif" not in names  # no detection given for the base clip
    assert len(imageio.mimread(tmp_path / "clips" / "000_detected.gif")) == 3
