"""Synthetic human videos with exact labels: an analytic ray-caster over a capsule body and a simple scene.

``render_clip(motion, camera, height, width, fps)`` → uint8 frames and a ``GroundTruth`` (3D joints,
OpenPose-18 keypoints with visibility, person mask, depth, part labels, cameras, scene geometry).

This package re-exports nothing: import from its modules."""
