"""Rendered clips: labels agree exactly with the ray-cast geometry, occlusion, determinism, file format."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy.ndimage import binary_dilation

from components.motion.camera import build_cameras, pixel_rays, project
from components.motion.config import CameraSpec
from components.synthetic.body import BodyStyle, build_body, random_style
from components.synthetic.labels import BOX, FIRST_BODY_PART, GROUND
from components.synthetic.render import GroundTruth, render_clip, render_frame, resample_joints
from components.synthetic.scene import Box, SceneSpec, random_scene, scene_geometry

from .conftest import walking_motion

H, W = 96, 144
SCENE = SceneSpec(boxes=(Box((1.0, 0.0, -1.5), (1.8, 0.5, -0.9), (150, 110, 70), "crate"),))
STYLE = BodyStyle()


@pytest.fixture(scope="module")
def clip():
    motion = walking_motion(seconds=1.0, fps=30.0)
    return render_clip(motion, CameraSpec(azimuth=30.0), H, W, fps=10.0, style=STYLE, scene=SCENE)


def test_shapes_dtypes_and_resampling(clip):
    frames, gt = clip
    T = len(frames)
    assert T == 10  # (30 - 1) / 30 s at 10 fps → frames at 0, 0.1, ..., 0.9 s
    assert frames.shape == (T, H, W, 3) and frames.dtype == np.uint8
    assert gt.mask.shape == gt.depth.shape == gt.parts.shape == (T, H, W)
    assert gt.depth.dtype == np.float32 and gt.mask.dtype == bool and gt.parts.dtype == np.uint8
    assert gt.keypoints2d.shape == (T, 18, 2) and gt.visible.shape == (T, 18)
    assert gt.joints3d.shape == (T, 22, 3) and gt.R.shape == (T, 3, 3) and gt.t.shape == (T, 3)
    np.testing.assert_array_equal(gt.mask, gt.parts >= FIRST_BODY_PART)
    assert 0.01 < gt.mask.mean() < 0.3
    assert np.isinf(gt.depth[gt.parts == 0]).all() and np.isfinite(gt.depth[gt.parts != 0]).all()
    assert (gt.parts == GROUND).any() and (gt.parts == BOX).any()


def test_resample_is_linear_in_time():
    j = np.zeros((5, 22, 3))
    j[:, :, 0] = np.arange(5)[:, None]  # x = frame index at 10 fps
    out = resample_joints(j, 10.0, 25.0)
    assert len(out) == 11  # 0.4 s at 25 fps
    np.testing.assert_allclose(out[:, 0, 0], np.arange(11) * 10 / 25)
    held = resample_joints(j, 10.0, 10.0, num_frames=7)
    np.testing.assert_allclose(held[:, 0, 0], [0, 1, 2, 3, 4, 4, 4])


def _frame_setup(gt: GroundTruth, i: int):
    cams = build_cameras(gt.camera, gt.num_frames, H, W, root=gt.joints3d[:, 0].astype(np.float64))
    body = build_body(gt.joints3d.astype(np.float64), gt.style)
    return cams, body


def test_mask_is_exactly_where_the_body_is_the_closest_hit(clip):
    _, gt = clip
    i = 4
    cams, body = _frame_setup(gt, i)
    with_body = render_frame(cams, i, SCENE, body)
    without = render_frame(cams, i, SCENE, None)
    np.testing.assert_array_equal(with_body.mask, gt.mask[i])
    np.testing.assert_array_equal(with_body.depth, gt.depth[i])
    changed = with_body.depth != without.depth
    np.testing.assert_array_equal(changed, gt.mask[i])
    assert (with_body.depth[gt.mask[i]] < without.depth[gt.mask[i]]).all()
    # The body's pixels look different from the scene behind them.
    diff = np.abs(with_body.rgb - without.rgb).sum(-1)
    assert (diff[gt.mask[i]] > 0.02).mean() > 0.95
    # Labels are from the centre samples only: the scene-only render has no body labels.
    assert not without.mask.any()


def test_depth_is_camera_z_of_a_point_on_the_hit_primitive(clip):
    _, gt = clip
    i = 2
    cams, body = _frame_setup(gt, i)
    fb = render_frame(cams, i, SCENE, body)
    origin, dirs = pixel_rays(cams, i)
    ys, xs = np.nonzero(fb.mask)
    fwd = cams.R[i][2]
    d = dirs[ys, xs]
    z = fb.depth[ys, xs].astype(np.float64)
    X = origin + (z / (d @ fwd))[:, None] * d  # back-project along the pixel's ray
    uv, zc = project(X[None], cams.frame(i))
    np.testing.assert_allclose(uv[0], np.stack([xs, ys], -1), atol=1e-3)
    np.testing.assert_allclose(zc[0], z, rtol=1e-9)
    # The point lies on the surface of the primitive the z-buffer says it hit.
    k = fb.prim[ys, xs] - len(scene_geometry(SCENE))
    C = body.num_capsules
    cap = k < C
    a, b, r = body.cap_a[i, k[cap]], body.cap_b[i, k[cap]], body.cap_r[k[cap]]
    ba = b - a
    s = np.clip(((X[cap] - a) * ba).sum(-1) / (ba * ba).sum(-1), 0, 1)
    dist = np.linalg.norm(X[cap] - (a + s[:, None] * ba), axis=-1)
    np.testing.assert_allclose(dist, r, atol=2e-5)  # depth is float32 (~1e-6 relative)
    e = k[~cap] - C
    q = np.einsum("pk,pkj->pj", X[~cap] - body.ell_center[i, e], body.ell_axes[i, e]) / body.ell_radii[e]
    np.testing.assert_allclose(np.linalg.norm(q, axis=-1), 1.0, atol=2e-4)
    assert cap.any() and (~cap).any()


def test_visible_keypoints_lie_on_the_mask(clip):
    _, gt = clip
    near = binary_dilation(gt.mask, structure=np.ones((1, 5, 5), bool))  # within 2 px
    px = np.rint(gt.keypoints2d).astype(int)
    t, k = np.nonzero(gt.visible)
    assert len(t) > 0.6 * gt.visible.size
    assert near[t, px[t, k, 1], px[t, k, 0]].all()


def test_a_box_between_camera_and_body_hides_keypoints():
    motion = walking_motion(seconds=0.5, fps=10.0, speed=0.0, cadence=0.0)  # standing still
    cam = CameraSpec(azimuth=0.0, elevation=5.0, distance=4.0)
    wall = Box((-0.8, 0.0, 1.4), (0.8, 0.7, 1.7), (120, 120, 120), "step")  # hides the legs
    _, open_gt = render_clip(motion, cam, H, W, 10.0, style=STYLE, scene=SceneSpec())
    _, hidden_gt = render_clip(motion, cam, H, W, 10.0, style=STYLE, scene=SceneSpec(boxes=(wall,)))
    ankles, head = [10, 13], [0, 1, 2, 5]  # OpenPose: ankles; nose, neck, shoulders
    assert open_gt.visible[:, ankles].all()
    assert not hidden_gt.visible[:, ankles].any()
    assert hidden_gt.visible[:, head].all()
    assert hidden_gt.mask.sum() < open_gt.mask.sum()


def test_self_occlusion_hides_the_far_side():
    # Side view of a person standing still: the right side (-X) is behind the body from +X.
    motion = walking_motion(seconds=0.5, fps=10.0, speed=0.0, cadence=0.0)
    _, gt = render_clip(motion, CameraSpec(azimuth=90.0), H, W, 10.0, style=STYLE, scene=SceneSpec())
    assert gt.visible[:, [5, 11, 15, 17]].all()  # left shoulder, hip, eye, ear
    assert not gt.visible[:, [2, 8, 16]].any()  # right shoulder, hip, ear


def test_frames_change_with_motion_and_orbit(clip):
    frames, gt = clip
    moved = (np.abs(frames[1:].astype(int) - frames[:-1].astype(int)).sum(-1) > 0).mean((1, 2))
    assert (moved > 0.002).all()
    assert (gt.mask[1:] != gt.mask[:-1]).any((1, 2)).all()
    motion = walking_motion(seconds=1.0, fps=10.0, speed=0.0)
    f, g = render_clip(motion, CameraSpec(kind="orbit", sweep=180.0), H, W, 10.0, seed=5)
    assert g.mask.any((1, 2)).all()  # the orbiting camera keeps the person in view
    assert not np.allclose(g.R[0], g.R[-1])
    assert np.abs(f[0].astype(int) - f[-1].astype(int)).mean() > 5


def test_same_seed_same_output_other_seed_other_style():
    motion = walking_motion(seconds=0.4, fps=10.0)
    cam = CameraSpec(azimuth=-20.0)
    f1, g1 = render_clip(motion, cam, 48, 72, 10.0, seed=7)
    f2, g2 = render_clip(motion, cam, 48, 72, 10.0, seed=7)
    f3, g3 = render_clip(motion, cam, 48, 72, 10.0, seed=8)
    np.testing.assert_array_equal(f1, f2)
    np.testing.assert_array_equal(g1.depth, g2.depth)
    np.testing.assert_array_equal(g1.visible, g2.visible)
    assert g1.style == g2.style and g1.scene == g2.scene
    assert g3.style != g1.style
    assert not np.array_equal(f1, f3)


def test_random_styles_and_scenes_are_varied_and_keep_boxes_off_the_path():
    rng = np.random.default_rng(0)
    styles = [random_style(rng) for _ in range(30)]
    assert len({s.shirt for s in styles}) > 20 and len({s.skin for s in styles}) > 3
    assert {s.sleeves for s in styles} == {"short", "long"}
    path = np.stack([np.zeros(50), np.linspace(-1, 2, 50)], -1)
    n_boxes = 0
    for seed in range(30):
        sc = random_scene(np.random.default_rng(seed), path)
        for b in sc.boxes:
            n_boxes += 1
            dx = np.maximum(np.maximum(b.lo[0] - path[:, 0], path[:, 0] - b.hi[0]), 0)
            dz = np.maximum(np.maximum(b.lo[2] - path[:, 1], path[:, 1] - b.hi[2]), 0)
            assert np.hypot(dx, dz).min() >= 0.12 - 1e-9
            assert b.lo[1] == 0.0 and b.hi[1] > 0.1
    assert n_boxes > 20


def test_ground_truth_save_load_round_trip(clip, tmp_path):
    _, gt = clip
    path = gt.save(tmp_path / "clip.npz")
    back = GroundTruth.load(path)
    for f in dataclasses.fields(GroundTruth):
        a, b = getattr(gt, f.name), getattr(back, f.name)
        if isinstance(a, np.ndarray):
            assert a.dtype == b.dtype and a.shape == b.shape, f.name
            np.testing.assert_array_equal(a, b, err_msg=f.name)
        else:
            assert a == b, f.name
    assert back.scene.boxes == SCENE.boxes and back.style == STYLE
    with np.load(path) as z:
        assert "header" in z.files and z["ground_plane"].tolist() == [0, 1, 0, 0]
