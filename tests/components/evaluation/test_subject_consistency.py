"""subject_consistency: VBench's formula on known features, 1.0 for an unchanging subject, lower when
the subject changes, the person crop, region sources and the DINO alternative."""

from __future__ import annotations

import numpy as np
import pytest

from components.evaluation.metric_registry import MetricContext, VideoSample, compute_metrics
from components.evaluation.subject_consistency import NAME, NEUTRAL_GREY, consistency_score, person_crop
from tests.components.evaluation.conftest import composite, moving_square


def test_formula_on_known_features():
    e1, e2 = np.eye(3)[0], np.eye(3)[1]
    assert consistency_score(np.stack([e1, e1, 2 * e1])) == pytest.approx(1.0)
    # t=1: (cos(f0,f1) + cos(f0,f1)) / 2 = 1; t=2: f2 ⟂ f0 and f1 → 0; mean 0.5
    assert consistency_score(np.stack([e1, e1, e2])) == pytest.approx(0.5)
    # negative cosines count as 0 (VBench clamps them)
    assert consistency_score(np.stack([e1, -e1])) == pytest.approx(0.0)
    # t=1: cos 60° = 0.5 to both → 0.5; t=2: back to f0: (1 + 0.5) / 2
    f1 = np.array([0.5, np.sqrt(3) / 2, 0])
    assert consistency_score(np.stack([e1, f1, e1])) == pytest.approx((0.5 + 0.75) / 2)
    with pytest.raises(ValueError, match="T >= 2"):
        consistency_score(np.ones((1, 4)))


def test_person_crop_is_square_greys_out_the_rest_and_pads_at_borders():
    frame = np.full((20, 30, 3), 200, np.uint8)
    region = np.zeros((20, 30), bool)
    region[2:6, 0:10] = True  # 4 × 10 box at the left border
    region[3, 4] = False  # a hole: grey
    crop = person_crop(frame, region)
    assert crop.shape == (10, 10, 3)
    # box rows 2..5 centred in a 10-row square: rows -1..8 of the frame; all columns 0..9 are inside
    assert (crop[3:7, :, 0] == 200).sum() == 39 and crop[4, 4, 0] == NEUTRAL_GREY
    assert (crop[:3] == NEUTRAL_GREY).all() and (crop[7:] == NEUTRAL_GREY).all()
    assert person_crop(frame, np.zeros((20, 30), bool)) is None


def test_subject_score_follows_the_subject_not_the_background(ctx, scenes):
    a, b = scenes["subject_a"], scenes["subject_b"]
    car, walk = scenes["car"], scenes["walk"]
    clips = {
        "still": composite([car] * 6, [a] * 6),
        "background_cut": composite([car] * 3 + [walk] * 3, [a] * 6),
        "subject_cut": composite([car] * 6, [a] * 3 + [b] * 3),
        "subject_flicker": composite([car] * 6, [a, b] * 3),
    }
    samples = [VideoSample(f, 8.0, person_mask=m) for f, m in clips.values()]
    r = compute_metrics([NAME], samples, ctx)[NAME]
    v = dict(zip(clips, r.per_video, strict=True))
    print({k: round(x, 4) for k, x in v.items()})
    assert v["still"] == pytest.approx(1.0, abs=1e-4) and v["background_cut"] == pytest.approx(1.0, abs=1e-4)
    assert v["subject_flicker"] < v["subject_cut"] < 0.95
    assert r.details["features"] == "efficientnet-lite0" and r.details["region"] == ["given mask"] * 4


def test_frames_without_a_person_are_left_out(ctx):
    frames, masks = moving_square(5, 64, 80)
    masks[2] = False
    r = compute_metrics([NAME], [VideoSample(frames, 8.0, person_mask=masks)], ctx)[NAME]
    assert r.value == pytest.approx(1.0, abs=1e-4) and r.frames == 4
    masks[1:] = False
    r = compute_metrics([NAME], [VideoSample(frames, 8.0, person_mask=masks)], ctx)[NAME]
    assert r.value is None and r.per_video == [None] and r.frames == 0


def test_skeleton_box_and_detected_regions_on_a_rendered_walk(walk, ctx):
    frames, gt = walk
    with_skel = VideoSample(
        frames, 8.0, skeleton_keypoints=gt.keypoints2d, skeleton_confidence=gt.visible * 1.0
    )
    bare = VideoSample(frames, 8.0)
    r = compute_metrics([NAME], [with_skel, bare], ctx)[NAME]
    assert r.details["region"] == ["skeleton box", "detected mask (mediapipe)"]
    print(f"walk: skeleton box {r.per_video[0]:.3f}, detected mask {r.per_video[1]:.3f}")
    assert all(0.7 < v <= 1.0 for v in r.per_video)


def test_missing_mask_model_is_a_reason_not_a_crash(walk, ctx):
    frames, _gt = walk
    ctx.mask_estimator = "sam"  # no checkpoint configured
    r = compute_metrics([NAME], [VideoSample(frames[:2], 8.0)], ctx)[NAME]
    assert r.value is None and "SamAdapter needs a model path" in r.reason


def test_dino_backbone_by_path_and_none_without_it(tmp_path):
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    frames, masks = moving_square(4, 48, 64)
    s = [VideoSample(frames, 8.0, person_mask=masks)]
    r = compute_metrics([NAME], s, MetricContext(feature_backbone="dino"))[NAME]
    assert r.value is None and "none was configured" in r.reason and r.details["features"] == "dino"
    cfg = ViTConfig(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=32,
        patch_size=8,
    )
    ViTModel(cfg).save_pretrained(tmp_path)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp_path)
    r = compute_metrics([NAME], s, MetricContext(feature_backbone="dino", dino_path=tmp_path))[NAME]
    assert r.value == pytest.approx(1.0, abs=1e-4) and r.details["features"].startswith("dino:")
