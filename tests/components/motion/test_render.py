"""Skeleton rendering: exact DWPose/ControlNet colours, confidence gating, presets, projection, previews."""

from __future__ import annotations

import numpy as np
import pytest

from components.motion import render
from components.motion.camera import Cameras, build_cameras, project
from components.motion.config import CameraSpec
from components.motion.skeleton import OPENPOSE18_COLORS, OPENPOSE18_LIMBS, smpl22_to_openpose18
from tests.components.motion.conftest import STAND

H = W = 512
# A front-facing hand-built OpenPose-18 pose in pixels (the person's right is on the image left).
POSE = np.array(
    [
        [256, 100], [256, 160], [186, 160], [150, 240], [130, 320], [326, 160], [362, 240], [382, 320],
        [216, 300], [210, 400], [205, 490], [296, 300], [302, 400], [307, 490], [244, 88], [268, 88],
        [228, 96], [284, 96],
    ],
    dtype=np.float64,
)  # fmt: skip
ONES = np.ones(18)


def _segment_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    ab = b - a
    s = np.clip(np.dot(p - a, ab) / max(np.dot(ab, ab), 1e-12), 0.0, 1.0)
    return float(np.linalg.norm(p - (a + s * ab)))


def _limb_colour(i: int) -> np.ndarray:
    return np.array(OPENPOSE18_COLORS[i]) * 0.6  # the convention, not the constant


def _isolated_limbs(pose: np.ndarray) -> list[int]:
    """Limbs whose midpoint is well clear of every other limb and of every joint disc."""
    out = []
    for i, (a, b) in enumerate(OPENPOSE18_LIMBS):
        mid = (pose[a] + pose[b]) / 2
        others = [j for j in range(len(OPENPOSE18_LIMBS)) if j != i]
        far_limbs = all(
            _segment_distance(mid, pose[OPENPOSE18_LIMBS[j][0]], pose[OPENPOSE18_LIMBS[j][1]]) > 8
            for j in others
        )
        far_joints = np.linalg.norm(pose - mid, axis=1).min() > 7
        if far_limbs and far_joints:
            out.append(i)
    return out


def test_limb_midpoints_have_dimmed_limb_colour_and_joints_full_colour():
    img = render.draw_skeleton(POSE, ONES, H, W)
    assert img.dtype == np.uint8 and img.shape == (H, W, 3)
    limbs = _isolated_limbs(POSE)
    assert len(limbs) >= 11  # every body limb; the short face limbs overlap their discs
    for i in limbs:
        a, b = OPENPOSE18_LIMBS[i]
        x, y = np.round((POSE[a] + POSE[b]) / 2).astype(int)
        np.testing.assert_allclose(img[y, x], _limb_colour(i), atol=2, err_msg=f"limb {i}")
    for k in range(18):
        x, y = POSE[k].astype(int)
        np.testing.assert_array_equal(img[y, x], OPENPOSE18_COLORS[k], err_msg=f"keypoint {k}")
    # Background stays black; limbs are thin (half-width 4): 8 px off the neck → shoulder axis is black.
    assert (img[5, 5] == 0).all() and (img[480, 20] == 0).all()
    assert img[163, 221].any() and not img[168, 221].any()


def test_low_confidence_endpoint_hides_limb_but_not_other_disc():
    conf = ONES.copy()
    conf[4] = 0.2  # right wrist below the 0.3 threshold
    img = render.draw_skeleton(POSE, conf, H, W)
    x, y = np.round((POSE[3] + POSE[4]) / 2).astype(int)
    assert (img[y, x] == 0).all()  # elbow → wrist not drawn
    wx, wy = POSE[4].astype(int)
    assert (img[wy, wx] == 0).all()  # no wrist disc
    ex, ey = POSE[3].astype(int)
    np.testing.assert_array_equal(img[ey, ex], OPENPOSE18_COLORS[3])  # elbow disc still there
    # Exactly at the threshold is also hidden (strictly greater is required); lower threshold shows it.
    conf[4] = 0.3
    assert (render.draw_skeleton(POSE, conf, H, W)[wy, wx] == 0).all()
    shown = render.draw_skeleton(POSE, conf, H, W, threshold=0.1)
    np.testing.assert_allclose(shown[y, x], _limb_colour(3), atol=2)


def test_scale_and_canvas():
    thin = render.draw_skeleton(POSE, ONES, H, W)
    thick = render.draw_skeleton(POSE, ONES, H, W, scale=2.0)
    assert (thick.any(-1)).sum() > 1.6 * (thin.any(-1)).sum()
    assert render.resolution_scale(256, 384) == pytest.approx(0.5)
    canvas = np.zeros((H, W, 3), np.uint8)
    out = render.draw_skeleton(POSE, ONES, H, W, canvas=canvas)
    assert out is canvas and canvas.any()
    with pytest.raises(ValueError):
        render.draw_skeleton(POSE, ONES, H, W, canvas=np.zeros((H, W + 1, 3), np.uint8))
    with pytest.raises(ValueError):
        render.draw_skeleton(POSE[:17], ONES[:17], H, W)


def test_nonfinite_keypoints_are_skipped():
    pose = POSE.copy()
    pose[4] = np.nan
    pose[7] = 1e12
    img = render.draw_skeleton(pose, ONES, H, W)
    x, y = np.round((POSE[3] + POSE[4]) / 2).astype(int)
    assert (img[y, x] == 0).all()


def test_draw_people_composes_and_orders_by_depth():
    small = POSE * 0.5
    two = np.stack([small, small + np.array([256, 0])])
    img = render.draw_people(two, np.ones((2, 18)), H, W)
    for offset in (0, 256):
        x, y = (small[1] + [offset, 0]).astype(int)
        np.testing.assert_array_equal(img[y, x], OPENPOSE18_COLORS[1])

    # Person A: only the right upper arm (limb 2) crossing point X; person B: only a left-hip disc at X.
    X = np.array([200.0, 200.0])
    a, b = np.zeros((18, 2)), np.zeros((18, 2))
    ca, cb = np.zeros(18), np.zeros(18)
    a[2], a[3] = X - np.array([60, 0]), X + np.array([60, 0])
    ca[[2, 3]] = 1
    b[11] = X
    cb[11] = 1
    kp, conf = np.stack([a, b]), np.stack([ca, cb])
    a_near = render.draw_people(kp, conf, H, W, depth=np.array([2.0, 5.0]))
    b_near = render.draw_people(kp, conf, H, W, depth=np.array([[2.0] * 18, [1.0] * 18]))
    np.testing.assert_allclose(a_near[200, 200], _limb_colour(2), atol=2)
    np.testing.assert_array_equal(b_near[200, 200], OPENPOSE18_COLORS[11])


def test_apply_preset_zeroes_exactly_the_named_keypoints():
    conf = np.full((3, 18), 0.9)
    expected = {
        "full": set(),
        "upper_body": {9, 10, 12, 13},
        "no_face": {0, 14, 15, 16, 17},
    }
    for name, dropped in expected.items():
        out = render.apply_preset(conf, name)
        assert set(np.flatnonzero(out[0] == 0)) == dropped, name
        assert (out[:, sorted(set(range(18)) - dropped)] == 0.9).all()
    assert set(render.HALF_BODY_PRESETS) >= {
        "full",
        "upper_body",
        "lower_body",
        "no_face",
        "head_and_shoulders",
    }
    lower = render.apply_preset(conf, "lower_body")
    assert set(np.flatnonzero(lower[0] > 0)) == {8, 9, 10, 11, 12, 13}
    hs = render.apply_preset(conf, "head_and_shoulders")
    assert set(np.flatnonzero(hs[0] > 0)) == {0, 1, 2, 5, 14, 15, 16, 17}
    assert (conf == 0.9).all()  # input untouched
    with pytest.raises(ValueError, match="upper_body"):
        render.apply_preset(conf, "torso")


def test_skeleton_video_shapes_and_preset():
    T = 3
    single = np.repeat(POSE[None], T, 0)
    video = render.skeleton_video(single, np.ones((T, 18)), 128, 160, preset="no_face", scale=0.25)
    assert video.shape == (T, 128, 160, 3) and video.dtype == np.uint8
    full = render.skeleton_video(single * 0.25, np.ones((T, 18)), 128, 160)
    assert full[0, 25, 64].any()  # the nose disc at (64, 25)
    no_face = render.skeleton_video(single * 0.25, np.ones((T, 18)), 128, 160, preset="no_face")
    assert not no_face[0, 25, 64].any()
    multi = np.stack([single * 0.25, single * 0.25 + [60, 0]], axis=1)
    video = render.skeleton_video(multi, np.ones((T, 2, 18)), 128, 160, depth=np.ones((T, 2)), progress=True)
    assert video.shape == (T, 128, 160, 3)
    assert video[1, 40, 64].any() and video[1, 40, 124].any()  # both necks
    with pytest.raises(ValueError):
        render.skeleton_video(single, np.ones((T, 17)), 128, 160)


def test_project_motion_to_openpose_visibility_and_agreement():
    cams = build_cameras(CameraSpec(elevation=10.0, azimuth=20.0, distance=4.0), 1, 240, 320)
    motion = np.stack([STAND, STAND + np.array([0.0, 0.0, 0.3])])
    kp, conf, depth = render.project_motion_to_openpose(motion, cams)
    assert kp.shape == (2, 18, 2) and conf.shape == (2, 18) and depth.shape == (2, 18)
    uv, z = project(smpl22_to_openpose18(motion), cams)
    np.testing.assert_allclose(kp, uv)
    np.testing.assert_allclose(depth, z)
    assert (conf == 1).all()

    # Identity camera at the origin looking down +Z: put the right wrist behind it, the rest in view.
    K = np.array([[100.0, 0, 49.5], [0, 100.0, 39.5], [0, 0, 1]])
    eye = Cameras(K=K, R=np.eye(3)[None], t=np.zeros((1, 3)), height=80, width=100)
    joints = STAND.copy() - STAND[0]
    joints[:, 1] *= -1  # world Y up → camera y down, so the body is upright in the image
    joints[:, 2] += 5.0
    joints[21] = [0.0, 0.0, -1.0]
    kp, conf, depth = render.project_motion_to_openpose(joints[None], eye)
    assert conf[0, 4] == 0 and depth[0, 4] < 0  # right wrist (OpenPose 4) behind the camera
    assert conf[0, 1] == 1  # neck in view
    # Push the left wrist just outside the right image edge: 0, unless the margin admits it.
    u_target = eye.width - 0.5 + 3.0
    joints[20] = [(u_target - 49.5) * 5.0 / 100.0, 0.0, 5.0]
    _, conf, _ = render.project_motion_to_openpose(joints[None], eye)
    assert conf[0, 7] == 0
    _, conf, _ = render.project_motion_to_openpose(joints[None], eye, visibility_margin=5)
    assert conf[0, 7] == 1


def test_draw_stick_3d_draws_a_standing_skeleton():
    img = render.draw_stick_3d(STAND, 160, 160)
    assert img.shape == (160, 160, 3) and img.dtype == np.uint8
    colours = {tuple(c) for c in img.reshape(-1, 3)}
    for chain_colour in render.SMPL22_CHAIN_COLORS:
        assert chain_colour in colours
    # The body is tall: bright (non-grid) pixels span most of the image height.
    rows = np.flatnonzero((img.max(-1) > 150).any(1))
    assert rows.max() - rows.min() > 0.6 * 160
    no_grid = render.draw_stick_3d(STAND, 160, 160, elevation=0, azimuth=-90, grid=False)
    assert no_grid.any() and not (no_grid == img).all()
