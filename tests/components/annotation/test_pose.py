"""Pose estimators: MediaPipe on synthetic renders with exact keypoints, mappings, DWPose adapter, factory."""

from __future__ import annotations

import re
import sys
import time

import cv2
import numpy as np
import pytest

from components.annotation.pose import (
    BLAZEPOSE_TO_OPENPOSE18,
    COCO17_TO_OPENPOSE18,
    DWPoseOnnx,
    MediaPipePose,
    PoseEstimator,
    PoseResult,
    blazepose_to_openpose18,
    build_pose_estimator,
    coco17_to_openpose18,
    crop_transform,
    decode_simcc,
)
from components.motion.config import CameraSpec
from components.motion.deepmimic import load_deepmimic
from components.motion.skeleton import OPENPOSE18_LR_PAIRS, OPENPOSE18_NAMES
from components.synthetic.render import render_clip

L_WRIST, R_WRIST = OPENPOSE18_NAMES.index("left_wrist"), OPENPOSE18_NAMES.index("right_wrist")


def render_walk(height: int, width: int):
    """6 frames of the DeepMimic walk towards a fixed camera (the person faces the camera)."""
    motion = load_deepmimic("walk")
    return render_clip(
        motion, CameraSpec(kind="fixed", distance=3.5), height, width, fps=16, seed=0, num_frames=6
    )


def pck(pred: PoseResult, gt_kp: np.ndarray, gt_visible: np.ndarray, alpha: float = 0.1) -> float:
    """PCK@alpha: share of GT-visible keypoints (over all frames) whose prediction lies within
    alpha × the diagonal of the frame's GT bounding box (of its visible keypoints). Keypoints of
    frames where no person was found count as misses."""
    hits, total = 0, 0
    for t in range(len(gt_kp)):
        vis = gt_visible[t]
        if not vis.any():
            continue
        g = gt_kp[t, vis]
        diag = float(np.linalg.norm(g.max(0) - g.min(0)))
        total += int(vis.sum())
        if pred.found[t]:
            err = np.linalg.norm(pred.keypoints[t, vis] - g, axis=-1)
            hits += int((err < alpha * diag).sum())
    return hits / max(total, 1)


@pytest.fixture(scope="module")
def walk192():
    frames, gt = render_walk(192, 288)
    t0 = time.perf_counter()
    res = MediaPipePose()(frames)
    print(f"MediaPipePose 6×192×288: {time.perf_counter() - t0:.2f} s")
    return frames, gt, res


@pytest.fixture(scope="module")
def walk96():
    frames, gt = render_walk(96, 144)
    return frames, gt, MediaPipePose()(frames)


def test_shapes_dtypes_and_protocol(walk192):
    frames, _gt, res = walk192
    T = len(frames)
    assert isinstance(MediaPipePose(), PoseEstimator)
    assert res.keypoints.shape == (T, 18, 2) and res.keypoints.dtype == np.float32
    assert res.confidence.shape == (T, 18) and res.confidence.dtype == np.float32
    assert res.found.shape == (T,) and res.found.dtype == bool
    assert (res.confidence >= 0).all() and (res.confidence <= 1).all()


def test_finds_the_person_with_good_pck(walk192):
    _frames, gt, res = walk192
    assert res.found.sum() >= 5
    score = pck(res, gt.keypoints2d, gt.visible)
    print(f"PCK@0.1 at 192×288: {score:.3f}")
    assert score > 0.5
    # found frames carry real confidences on the body
    assert res.confidence[res.found][:, [1, 2, 5, 8, 11]].mean() > 0.5


def test_neck_is_the_shoulder_midpoint(walk192):
    _frames, _gt, res = walk192
    f = res.found
    np.testing.assert_allclose(
        res.keypoints[f, 1], 0.5 * (res.keypoints[f, 2] + res.keypoints[f, 5]), atol=1e-4
    )
    assert (res.confidence[f, 1] <= np.minimum(res.confidence[f, 2], res.confidence[f, 5]) + 1e-6).all()


def test_left_and_right_are_not_swapped(walk192):
    _frames, gt, res = walk192
    f = res.found
    det, ref = res.keypoints[f], gt.keypoints2d[f]
    same = np.linalg.norm(det[:, L_WRIST] - ref[:, L_WRIST], axis=-1).mean()
    swapped = np.linalg.norm(det[:, L_WRIST] - ref[:, R_WRIST], axis=-1).mean()
    assert same < swapped
    # over every left/right pair as well
    for rj, lj in OPENPOSE18_LR_PAIRS:
        same = np.linalg.norm(det[:, [rj, lj]] - ref[:, [rj, lj]], axis=-1).mean()
        swapped = np.linalg.norm(det[:, [rj, lj]] - ref[:, [lj, rj]], axis=-1).mean()
        assert same < swapped, (OPENPOSE18_NAMES[rj], OPENPOSE18_NAMES[lj])


def test_small_render_is_found(walk96):
    _frames, gt, res = walk96
    score = pck(res, gt.keypoints2d, gt.visible)
    print(f"PCK@0.1 at 96×144: {score:.3f}")
    assert res.found.sum() >= 5 and score > 0.5


def test_upscaling_rescues_tiny_frames(walk96):
    """At 48×72 the detector needs the upscale; coordinates come back in the tiny frame's pixels."""
    frames, gt, _ = walk96
    tiny = np.stack([cv2.resize(f, (72, 48), interpolation=cv2.INTER_AREA) for f in frames])
    kp_tiny = (gt.keypoints2d + 0.5) * 0.5 - 0.5  # pixel centres at integers in both images
    raw = MediaPipePose(upscale_to=None)(tiny)
    up = MediaPipePose(upscale_to=256)(tiny)
    score = pck(up, kp_tiny, gt.visible)
    print(f"48×72: found {raw.found.sum()} without upscaling, {up.found.sum()} with; PCK@0.1 {score:.3f}")
    assert up.found.sum() >= 4 and up.found.sum() > raw.found.sum()
    assert score > 0.4


def test_black_clip_finds_nobody():
    res = MediaPipePose()(np.zeros((3, 96, 144, 3), np.uint8))
    assert not res.found.any()
    assert (res.confidence == 0).all()
    assert res.keypoints.shape == (3, 18, 2)


def test_rejects_bad_frames():
    with pytest.raises(ValueError, match="uint8"):
        MediaPipePose()(np.zeros((2, 32, 32, 3), np.float32))
    with pytest.raises(ValueError, match=r"\[T,H,W,3\]"):
        MediaPipePose()(np.zeros((32, 32, 3), np.uint8))


def test_pose_result_validation_and_boxes():
    kp = np.zeros((2, 18, 2), np.float32)
    kp[0, :, 0], kp[0, :, 1] = np.arange(18), 10 + np.arange(18)
    conf = np.full((2, 18), 0.9, np.float32)
    res = PoseResult(kp, conf, np.array([True, False]))
    assert (res.confidence[1] == 0).all()  # not found → 0 confidence
    boxes = res.boxes()
    np.testing.assert_allclose(boxes[0], [0, 10, 17, 27])
    assert np.isnan(boxes[1]).all()
    with pytest.raises(ValueError, match="PoseResult"):
        PoseResult(kp[:, :17], conf[:, :17], np.array([True, True]))


def test_blazepose_mapping_on_handmade_landmarks():
    lm = np.stack([np.arange(33.0), 100 + np.arange(33.0)], -1)
    vis = np.linspace(0.1, 0.9, 33)
    kp, sc = blazepose_to_openpose18(lm, vis)
    expected = {0: 0, 2: 12, 3: 14, 4: 16, 5: 11, 6: 13, 7: 15, 8: 24, 9: 26, 10: 28, 11: 23, 12: 25, 13: 27}
    expected |= {14: 5, 15: 2, 16: 8, 17: 7}
    for o, b in expected.items():
        assert BLAZEPOSE_TO_OPENPOSE18[o] == b
        np.testing.assert_allclose(kp[o], lm[b])
        assert sc[o] == pytest.approx(vis[b])
    np.testing.assert_allclose(kp[1], (lm[11] + lm[12]) / 2)
    assert sc[1] == pytest.approx(min(vis[11], vis[12]))


def test_coco17_to_openpose18_on_handmade_arrays():
    kpts = np.stack([10 * np.arange(17.0), 5 + np.arange(17.0)], -1)
    scores = np.linspace(0.0, 0.8, 17)
    scores[5], scores[6] = 0.7, 0.4
    kp, sc = coco17_to_openpose18(kpts, scores)
    assert kp.shape == (18, 2) and sc.shape == (18,)
    np.testing.assert_allclose(kp[1], [(50 + 60) / 2, 5 + 5.5])  # neck = shoulder midpoint
    assert sc[1] == pytest.approx(0.4)  # min of the shoulder scores
    coco = {"nose": 0, "left_eye": 1, "right_eye": 2, "left_ear": 3, "right_ear": 4, "left_shoulder": 5}
    coco |= {"right_shoulder": 6, "left_elbow": 7, "right_elbow": 8, "left_wrist": 9, "right_wrist": 10}
    coco |= {"left_hip": 11, "right_hip": 12, "left_knee": 13, "right_knee": 14, "left_ankle": 15}
    coco |= {"right_ankle": 16}
    for o, name in enumerate(OPENPOSE18_NAMES):
        if name == "neck":
            continue
        assert COCO17_TO_OPENPOSE18[o] == coco[name], name
        np.testing.assert_allclose(kp[o], kpts[coco[name]])
        assert sc[o] == pytest.approx(scores[coco[name]])
    # batched inputs keep their leading dimensions
    kb, sb = coco17_to_openpose18(np.broadcast_to(kpts, (4, 3, 17, 2)), np.broadcast_to(scores, (4, 3, 17)))
    assert kb.shape == (4, 3, 18, 2) and sb.shape == (4, 3, 18)
    np.testing.assert_allclose(kb[2, 1], kp)
    with pytest.raises(ValueError, match="17"):
        coco17_to_openpose18(kpts[:16], scores[:16])


def test_crop_and_simcc_decoding_round_trip():
    """A point placed in the model crop decodes back to its image position (DWPose geometry)."""
    box = np.array([100.0, 50.0, 160.0, 210.0])
    m, centre, size = crop_transform(box, (192, 256))
    np.testing.assert_allclose(centre, [130, 130])
    assert size[0] / size[1] == pytest.approx(192 / 256) and size[1] == pytest.approx(160 * 1.25)
    pts = np.array([[120.0, 80.0], [150.5, 200.0], [130.0, 130.0]])
    crop = pts @ m[:, :2].T + m[:, 2]
    np.testing.assert_allclose(crop[2], [95.5, 127.5])  # box centre → crop centre
    split = 2.0
    sx, sy = np.zeros((3, 192 * 2)), np.zeros((3, 256 * 2))
    sx[np.arange(3), np.rint(crop[:, 0] * split).astype(int)] = 0.9
    sy[np.arange(3), np.rint(crop[:, 1] * split).astype(int)] = 0.6
    k, s = decode_simcc(sx, sy, split)
    np.testing.assert_allclose(s, 0.6)
    inv = cv2.invertAffineTransform(m)
    back = k @ inv[:, :2].T + inv[:, 2]
    np.testing.assert_allclose(back, pts, atol=0.5 / split / m[0, 0] + 1e-6)


def test_dwpose_missing_path_and_missing_onnxruntime(tmp_path, monkeypatch):
    missing = tmp_path / "nowhere" / "dw-ll_ucoco_384.onnx"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        DWPoseOnnx(missing)
    with pytest.raises(FileNotFoundError, match="model path"):
        DWPoseOnnx(None)
    model = tmp_path / "dwpose.onnx"
    model.write_bytes(b"not really a model")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if it were not installed
    with pytest.raises(ImportError, match="onnxruntime") as err:
        DWPoseOnnx(model)
    assert str(model) in str(err.value)


def test_factory(tmp_path):
    assert isinstance(build_pose_estimator("mediapipe"), MediaPipePose)
    assert build_pose_estimator("MediaPipe", upscale_to=128).upscale_to == 128
    absent = tmp_path / "absent.onnx"
    with pytest.raises(FileNotFoundError, match=re.escape(str(absent))):
        build_pose_estimator("dwpose", str(absent))
    with pytest.raises(ValueError, match="mediapipe, dwpose"):
        build_pose_estimator("openpose", None)


def test_bad_model_complexity():
    with pytest.raises(ValueError, match="model_complexity"):
        MediaPipePose(model_complexity=3)
    try:
        MediaPipePose(model_complexity=2)
    except FileNotFoundError as exc:  # the wheel bundles only the "full" model: fail early, offline
        assert "pose_landmark_heavy.tflite" in str(exc)


def test_sports2d_demo_runs():
    """Real video: shapes only (the person-found report is printed)."""
    from components.data.demo import DemoNotInstalled, locate
    from components.io.video import read_frames

    try:
        path = locate("sports2d/demo")
    except DemoNotInstalled as exc:
        pytest.skip(str(exc))
    idx = [0, 46, 92, 115, 161, 207]
    frames = read_frames(path, idx, width=442, height=248)
    t0 = time.perf_counter()
    res = MediaPipePose()(frames)
    print(f"sports2d frames {idx}: found {res.found.astype(int).tolist()} ({time.perf_counter() - t0:.2f} s)")
    assert res.keypoints.shape == (len(idx), 18, 2) and res.confidence.shape == (len(idx), 18)
