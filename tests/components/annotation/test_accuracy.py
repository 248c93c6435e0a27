"""Annotator accuracy: PCK, mask IoU and track EPE on hand-made cases; ground-truth tracks on renders."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.ndimage import distance_transform_edt

from components.annotation.accuracy import (
    TrackScore,
    _move_body_points,
    _surface_distance,
    bbox_diagonal,
    ground_truth_tracks,
    mask_bbox_diagonal,
    mask_iou,
    pck,
    track_epe,
)
from components.annotation.tracks import Tracks, query_points, track_lk
from components.motion.config import CameraSpec
from components.motion.deepmimic import load_deepmimic
from components.synthetic.body import build_body
from components.synthetic.labels import FIRST_BODY_PART
from components.synthetic.render import render_clip

H, W, FPS, T = 192, 288, 16.0, 8


# --- PCK -----------------------------------------------------------------------------------------
def test_bbox_diagonals():
    kp = np.array([[[0, 0], [30, 40], [100, 100]], [[5, 5], [5, 5], [9, 9]]], dtype=float)
    vis = np.array([[True, True, False], [False, False, False]])
    d = bbox_diagonal(kp, vis)
    assert d[0] == 50.0 and math.isnan(d[1])
    mask = np.zeros((2, 10, 10), dtype=bool)
    mask[0, 2:5, 3:7] = True  # 4 wide, 3 tall
    np.testing.assert_allclose(mask_bbox_diagonal(mask), [5.0, np.nan])


def test_pck_exact_cases():
    gt = np.array([[[0, 0], [30, 40], [10, 10], [20, 20]]], dtype=float)  # box 30×40 → diagonal 50
    vis = np.array([[True, True, True, True]])
    pred = gt + np.array([[[4.9, 0], [0, 5.1], [3, 4], [0, 0]]])  # within 5 px: 0, 2, 3
    conf = np.array([[0.9, 0.9, 0.9, 0.9]])
    assert pck(pred, conf, gt, vis) == 0.75
    conf2 = np.array([[0.9, 0.9, 0.9, 0.2]])  # a low-confidence keypoint counts as wrong
    assert pck(pred, conf2, gt, vis) == 0.5
    vis2 = np.array([[True, True, True, False]])  # invisible GT is not counted; the box is unchanged
    assert pck(pred, conf2, gt, vis2) == pytest.approx(2 / 3)
    pred_nan = pred.copy()
    pred_nan[0, 0] = np.nan  # a missing prediction counts as wrong
    assert pck(pred_nan, conf, gt, vis) == 0.5
    assert pck(pred, conf, gt, vis, bbox_diag=np.array([100.0])) == 1.0  # threshold 10 px
    assert pck(pred, conf, gt, vis, alpha=0.2) == 1.0
    assert math.isnan(pck(pred, conf, gt, np.zeros_like(vis)))
    with pytest.raises(ValueError, match="bbox_diag"):
        pck(pred, conf, gt, vis, bbox_diag=np.ones(3))


# --- mask IoU ------------------------------------------------------------------------------------
def test_mask_iou_exact_cases():
    pred = np.zeros((3, 4, 4), dtype=bool)
    gt = np.zeros((3, 4, 4), dtype=bool)
    pred[0, 0, :2] = True  # 2 px
    gt[0, 0, 1:3] = True  # 2 px, overlap 1 → IoU 1/3
    # frame 1: both empty → left out
    pred[2, 1:3, 1:3] = gt[2, 1:3, 1:3] = True  # IoU 1
    assert mask_iou(pred, gt) == pytest.approx((1 / 3 + 1) / 2)
    assert mask_iou(pred[2], gt[2]) == 1.0
    assert mask_iou(pred[0], ~pred[0]) == 0.0
    assert math.isnan(mask_iou(pred[1], gt[1]))
    with pytest.raises(ValueError, match="shape"):
        mask_iou(pred, gt[:2])


# --- track EPE -----------------------------------------------------------------------------------
def test_track_epe_exact():
    truth = np.zeros((3, 3, 2))
    truth[:, :, 0] = np.arange(3)[:, None] * 2.0  # every point moves +2 px in x per frame
    gt_vis = np.ones((3, 3), dtype=bool)
    gt_vis[2, 2] = False
    pred_pts = truth.copy()
    pred_pts[1, 0] += [3.0, 4.0]  # error 5 on a person point
    pred_pts[2, 1] += [0.0, 1.0]  # error 1 on a background point
    pred_vis = np.ones((3, 3), dtype=bool)
    pred_vis[2, 0] = False  # the tracker lost person point 0 in frame 2
    pred = Tracks(pred_pts.astype(np.float32), pred_vis, np.array([True, False, False]))
    s = track_epe(pred, truth, gt_vis)
    # scored (frames 1-2, query frame 0 left out): (1,0)=5 (1,1)=0 (1,2)=0 (2,1)=1 → mean 1.5
    assert isinstance(s, TrackScore) and s.count == 4
    assert s.epe_px == pytest.approx(1.5)
    assert s.kept_fraction == pytest.approx(4 / 5)  # GT-visible: 3 + 2 entries
    assert s.epe_person_px == pytest.approx(5.0) and s.epe_background_px == pytest.approx(1 / 3)
    s0 = track_epe(pred, truth, gt_vis, include_query_frame=True)
    assert s0.count == 7 and s0.epe_px == pytest.approx(6 / 7)
    with pytest.raises(ValueError, match="does not match"):
        track_epe(pred, truth[:2], gt_vis[:2])


# --- ground-truth tracks on renders --------------------------------------------------------------
def _render(camera: CameraSpec):
    return render_clip(load_deepmimic("walk"), camera, H, W, FPS, num_frames=T)


@pytest.fixture(scope="module")
def fixed_clip():
    frames, gt = _render(CameraSpec(kind="fixed", distance=3.5))
    pts, on = query_points(gt.mask[0])
    return frames, gt, pts, on, *ground_truth_tracks(gt, pts)


@pytest.fixture(scope="module")
def orbit_clip():
    frames, gt = _render(CameraSpec(kind="orbit", distance=3.5))
    pts, on = query_points(gt.mask[0])
    return frames, gt, pts, on, *ground_truth_tracks(gt, pts)


@pytest.fixture(scope="module")
def side_clip():
    frames, gt = _render(CameraSpec(kind="fixed", distance=3.5, azimuth=90.0))
    pts, on = query_points(gt.mask[0])
    return frames, gt, pts, on, *ground_truth_tracks(gt, pts)


def test_ground_truth_tracks_start_at_the_query_points(fixed_clip):
    _, gt, pts, on, tracks, vis = fixed_clip
    assert tracks.shape == (T, len(pts), 2) and vis.shape == (T, len(pts))
    assert on.sum() > 50 and (~on).sum() > 50
    np.testing.assert_array_equal(tracks[0], pts)
    assert vis[0].all()
    q = 4
    tq, vq = ground_truth_tracks(gt, pts, query_frame=q)
    np.testing.assert_array_equal(tq[q], pts)
    assert vq[q].all()
    outside = ground_truth_tracks(gt, np.array([[-5.0, 3.0], [W + 2.0, 3.0]]))
    assert np.isnan(outside[0]).all() and not outside[1].any()


def test_static_background_stays_put_for_a_fixed_camera(fixed_clip):
    _, gt, pts, on, tracks, vis = fixed_clip
    bg = ~on
    np.testing.assert_allclose(tracks[:, bg], np.broadcast_to(pts[bg], tracks[:, bg].shape), atol=1e-4)
    # hidden only where the person now covers them
    hidden = ~vis[:, bg]
    px = np.rint(pts[bg]).astype(int)
    covered = gt.mask[:, px[:, 1], px[:, 0]]
    np.testing.assert_array_equal(hidden, covered)


def test_person_points_follow_the_body(fixed_clip, orbit_clip):
    for _, gt, _pts, on, tracks, vis in (fixed_clip, orbit_clip):
        assert vis[1, on].mean() > 0.9
        moved = np.linalg.norm(tracks[-1, on] - tracks[0, on], axis=-1)
        assert np.nanmedian(moved) > 2.0  # the person moves, so must the points
        for t in range(1, T):
            sel = vis[t] & on
            px = np.rint(tracks[t, sel]).astype(int)
            # visible person points land on the person mask, or within a pixel of it at the silhouette
            dist = distance_transform_edt(~gt.mask[t])[px[:, 1], px[:, 0]]
            assert (dist <= 1.0).all(), (t, dist.max())
            assert gt.mask[t, px[:, 1], px[:, 0]].mean() > 0.8


def test_body_points_stay_on_their_primitive_and_round_trip(fixed_clip):
    _, gt, pts, on, _, _ = fixed_clip
    body = build_body(gt.joints3d.astype(np.float64), gt.style)
    xs, ys = pts[on, 0].astype(int), pts[on, 1].astype(int)
    z = gt.depth[0, ys, xs].astype(np.float64)
    ray = np.stack([xs, ys, np.ones_like(xs)], -1) @ np.linalg.inv(gt.K).T
    world = (z[:, None] * ray - gt.t[0]) @ gt.R[0]
    labels = gt.parts[0, ys, xs]
    assert (labels >= FIRST_BODY_PART).all()
    moved = _move_body_points(body, 0, world, labels)
    np.testing.assert_allclose(moved[0], world, atol=1e-9)
    for t in range(T):
        d = np.abs(_surface_distance(body, t, moved[t])).min(1)
        assert d.max() < 1e-6, (t, d.max())  # still on a surface of the body
    back = _move_body_points(body, 5, moved[5], labels)
    np.testing.assert_allclose(back[0], world, atol=1e-6)  # 0 → 5 → 0 returns home


def test_background_moves_with_an_orbiting_camera(orbit_clip):
    _, gt, _pts, on, tracks, vis = orbit_clip
    bg = ~on & vis[-1]
    assert bg.sum() > 20
    shift = np.linalg.norm(tracks[-1, bg] - tracks[0, bg], axis=-1)
    assert np.median(shift) > 20.0
    # visible scene points are on scene surfaces (or the backdrop) in the frame they are seen
    px = np.rint(tracks[-1, bg]).astype(int)
    assert (~gt.mask[-1, px[:, 1], px[:, 0]]).mean() > 0.98


def test_lk_beats_a_zero_motion_baseline(fixed_clip, side_clip):
    """LK vs 'nothing moves' on person points; prints the figures (pytest -s)."""
    for name, (frames, _, pts, on, tracks, vis), ratio in (
        ("front", fixed_clip, 0.8),
        ("side", side_clip, 0.35),
    ):
        lk = track_epe(track_lk(frames, pts, on), tracks, vis)
        zero = Tracks(np.repeat(pts[None], T, 0), np.ones((T, len(pts)), bool), on)
        still = track_epe(zero, tracks, vis)
        print(
            f"{name}: LK person EPE {lk.epe_person_px:.2f} px (kept {lk.kept_fraction:.2f}, background "
            f"{lk.epe_background_px:.2f} px) vs zero-motion {still.epe_person_px:.2f} px"
        )
        assert np.isfinite(lk.epe_px) and np.isfinite(lk.epe_person_px) and lk.count > 100
        assert lk.epe_person_px < ratio * still.epe_person_px
