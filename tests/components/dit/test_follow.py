"""Skeleton-following measures: known answers on drawn scenes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from components.dit.follow import (
    compare_following,
    dilate_frames,
    foreground,
    person_region_l1,
    score_following,
    skeleton_mask_iou,
    skeleton_region,
)

T, H, W = 6, 40, 96


def scene(x0: int, speed: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(video, person mask, skeleton): a grey static background and a bright 8-px block moving right
    by 6 px a frame, so every pixel shows the background in most frames (the median is background)."""
    rng = np.random.default_rng(seed)
    video = np.full((T, H, W, 3), 90, np.uint8) + rng.integers(0, 4, (1, H, W, 3), dtype=np.uint8)
    mask = np.zeros((T, H, W), bool)
    skeleton = np.zeros((T, H, W, 3), np.uint8)
    for t in range(T):
        x = x0 + speed * t
        video[t, 10:30, x : x + 8] = (230, 200, 40)
        mask[t, 10:30, x : x + 8] = True
        skeleton[t, 12:28, x + 3 : x + 5] = (255, 0, 85)
    return video, mask, skeleton


def test_person_region_l1_known_answers() -> None:
    video, mask, _ = scene(5)
    assert person_region_l1(video, video, mask) == 0.0
    elsewhere, _, _ = scene(50)
    off = person_region_l1(elsewhere, video, mask, dilate=2)
    assert off > 0.15
    near, _, _ = scene(6)  # one pixel off: much closer than a person drawn elsewhere
    assert 0 < person_region_l1(near, video, mask, dilate=2) < off / 3
    # a uniform darkening by 30 levels (no value clips) costs exactly 30/255
    assert video.min() >= 30
    darker = video - np.uint8(30)
    assert person_region_l1(darker, video, mask, dilate=4) == pytest.approx(30 / 255)
    assert math.isnan(person_region_l1(video, video, np.zeros_like(mask)))


def test_skeleton_mask_iou_prefers_a_person_on_the_skeleton() -> None:
    video, mask, skeleton = scene(5)
    fg = foreground(video)
    assert np.array_equal(fg[:, 10:30].any(axis=1), mask[:, 10:30].any(axis=1))  # the moving block only
    on = skeleton_mask_iou(video, skeleton, thickness=3)
    elsewhere, _, _ = scene(50)
    assert on > 0.5 and skeleton_mask_iou(elsewhere, skeleton, thickness=3) < 0.05
    # IoU of the foreground with itself drawn as a skeleton is 1
    as_skeleton = np.where(fg[..., None], 255, 0).astype(np.uint8).repeat(3, axis=-1)
    assert skeleton_mask_iou(video, as_skeleton, thickness=0) == 1.0
    static = np.repeat(video[:1], T, axis=0)
    assert skeleton_mask_iou(static, np.zeros_like(skeleton)) != skeleton_mask_iou(
        static, np.zeros_like(skeleton)
    )


def test_helpers_and_aggregation() -> None:
    m = np.zeros((1, 7, 7), bool)
    m[0, 3, 3] = True
    assert dilate_frames(m, 1).sum() == 9 and dilate_frames(m, 0).sum() == 1
    assert skeleton_region(np.zeros((1, 7, 7, 3), np.uint8)).sum() == 0
    video, mask, skeleton = scene(5)
    elsewhere, _, _ = scene(50)
    good = score_following([video, video], [video, video], [mask, mask], [skeleton, skeleton])
    bad = score_following([elsewhere, elsewhere], [video, video], [mask, mask], [skeleton, skeleton])
    assert good.clips == 2 and good.person_l1 == 0.0 and bad.person_l1 > 0.15
    out = compare_following(good, bad)
    assert out["person_region_l1_gain"] > 0.15 and out["skeleton_mask_iou_gain"] > 0.5
    assert out["mosa_person_region_l1"] == 0.0


def test_clear_errors() -> None:
    video, mask, skeleton = scene(5)
    with pytest.raises(ValueError, match=r"generated .* and reference .* must have the same shape"):
        person_region_l1(video[:3], video, mask)
    with pytest.raises(ValueError, match=r"mask must be \[T,H,W\]"):
        person_region_l1(video, video, mask[:, :5])
    with pytest.raises(ValueError, match=r"must be a video \[T,H,W,3\]"):
        person_region_l1(video[..., 0], video[..., 0], mask)
    with pytest.raises(ValueError, match="must have the same frame count and size"):
        skeleton_mask_iou(video, skeleton[:2])
    with pytest.raises(ValueError, match="need one reference, mask and skeleton per generated video"):
        score_following([video], [], [mask], [skeleton])
    with pytest.raises(ValueError, match="dilation must be >= 0"):
        dilate_frames(mask, -1)
