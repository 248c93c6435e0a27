"""mask_skeleton_iou: the thick-limb skeleton region, high IoU with the detected mask of a rendered person
when aligned, low when shifted."""

from __future__ import annotations

import numpy as np

from components.annotation.accuracy import mask_iou
from components.evaluation.mask_skeleton_iou import NAME, limb_thickness, skeleton_region
from components.evaluation.metric_registry import MetricContext, VideoSample, compute_metrics


def standing(cx: float = 100.0) -> np.ndarray:
    """A front-facing OpenPose-18 skeleton [18,2]: neck at y=50, hips at y=150 (torso 100 px)."""
    kp = np.zeros((18, 2))
    kp[0], kp[1] = (cx, 30), (cx, 50)
    kp[2], kp[3], kp[4] = (cx - 30, 50), (cx - 35, 100), (cx - 35, 140)
    kp[5], kp[6], kp[7] = (cx + 30, 50), (cx + 35, 100), (cx + 35, 140)
    kp[8], kp[9], kp[10] = (cx - 15, 150), (cx - 15, 200), (cx - 15, 250)
    kp[11], kp[12], kp[13] = (cx + 15, 150), (cx + 15, 200), (cx + 15, 250)
    kp[14], kp[15], kp[16], kp[17] = (cx - 5, 25), (cx + 5, 25), (cx - 10, 28), (cx + 10, 28)
    return kp


def test_thickness_follows_the_torso_or_the_box():
    kp, ok = standing(), np.ones(18, bool)
    assert limb_thickness(kp, ok) == 27  # 0.27 × 100 px
    ok[8] = False  # a hip missing: 0.08 × box diagonal (70 × 230 px box)
    assert limb_thickness(kp, ok) == round(0.08 * np.hypot(70, 225))
    assert limb_thickness(kp[:, :] * 0.01, np.ones(18, bool)) == 3  # tiny skeletons keep 3 px


def test_region_covers_limbs_and_torso_only():
    kp = standing()
    region = skeleton_region(kp, np.ones(18), 280, 200)
    assert region[100, 100] and region[200, 85] and region[120, 65]  # torso, right shin, right forearm
    assert not region[200, 100 - 15 - 20] and not region[10, 10]  # beside the leg, far away
    # the shin is a 27-px-wide vertical band around x = 85
    cols = np.flatnonzero(region[225, :100])
    assert 25 <= len(cols) <= 29 and abs(cols.mean() - 85) <= 1
    low = np.ones(18)
    low[[9, 10]] = 0.1  # right knee and ankle unconfident: the right leg below the hip is gone
    assert not skeleton_region(kp, low, 280, 200)[225, 85]
    assert not skeleton_region(kp, np.zeros(18), 280, 200).any()


def test_region_matches_the_rendered_person(walk):
    frames, gt = walk
    regions = np.stack([skeleton_region(k, np.ones(18), *frames.shape[1:3]) for k in gt.keypoints2d])
    iou = mask_iou(regions, gt.mask)
    print(f"skeleton region vs exact mask: IoU {iou:.3f}")
    assert iou > 0.65


def test_aligned_skeleton_overlaps_the_detected_mask_and_a_shifted_one_does_not(walk):
    frames, gt = walk
    conf = np.ones(gt.visible.shape, np.float32)  # occluded joints still outline the body
    aligned = VideoSample(frames, 8.0, skeleton_keypoints=gt.keypoints2d, skeleton_confidence=conf)
    shifted = VideoSample(
        frames, 8.0, skeleton_keypoints=gt.keypoints2d + np.array([40.0, 0.0]), skeleton_confidence=conf
    )
    r = compute_metrics([NAME], [aligned, shifted], MetricContext())[NAME]
    a, s = r.per_video
    print(f"IoU aligned {a:.3f}, shifted by 40 px {s:.3f}")
    assert a > 0.55 and s < 0.25
    assert r.details["mask_estimator"] == "mediapipe"
    assert r.frames == 2 * len(frames)  # every frame shows the walker and its skeleton


def test_none_without_conditioning_skeletons_or_a_mask_model(walk):
    frames, gt = walk
    r = compute_metrics([NAME], [VideoSample(frames[:2], 8.0)], MetricContext())[NAME]
    assert r.value is None and "skeleton" in r.reason
    s = VideoSample(
        frames[:2], 8.0, skeleton_keypoints=gt.keypoints2d[:2], skeleton_confidence=gt.visible[:2]
    )
    r = compute_metrics([NAME], [s], MetricContext(mask_estimator="sam"))[NAME]
    assert r.value is None and "SamAdapter needs a model path" in r.reason
