"""Synthetic human videos with exact labels: an analytic ray-caster over a capsule body and a simple scene.

``render_clip(motion, camera, height, width, fps)`` → uint8 frames and a ``GroundTruth`` (3D joints,
OpenPose-18 keypoints with visibility, person mask, depth, part labels, cameras, scene geometry).
"""

from components.synthetic.body import Body, BodyStyle, build_body, random_style
from components.synthetic.render import GroundTruth, render_clip, render_frame, resample_joints
from components.synthetic.scene import Box, SceneSpec, random_scene

__all__ = [
    "Body",
    "BodyStyle",
    "Box",
    "GroundTruth",
    "SceneSpec",
    "build_body",
    "random_scene",
    "random_style",
    "render_clip",
    "render_frame",
    "resample_joints",
]
