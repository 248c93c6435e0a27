"""Action complexity (DIS flow inside person masks) and the dataset statistics table."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from components.annotation.stats import action_complexity, dataset_statistics

H, W, T, S = 120, 160, 6, 40


def texture(height: int, width: int, seed: int) -> np.ndarray:
    t = gaussian_filter(np.random.default_rng(seed).normal(size=(height, width)), 1.5)
    return ((t - t.min()) / (t.max() - t.min()) * 200 + 25).astype(np.uint8)


def square_clip(square_speed: float, background_speed: float) -> tuple[np.ndarray, np.ndarray]:
    """A textured S×S square moving right over a textured background (which may pan); the mask is
    the square."""
    bg, sq = texture(H, W + 60, 0), texture(S, S, 1)
    frames = np.zeros((T, H, W, 3), np.uint8)
    masks = np.zeros((T, H, W), bool)
    for t in range(T):
        x0 = round(background_speed * t)
        f = bg[:, x0 : x0 + W].copy()
        x = 30 + round(square_speed * t)
        f[40 : 40 + S, x : x + S] = sq
        masks[t, 40 : 40 + S, x : x + S] = True
        frames[t] = f[..., None]
    return frames, masks


def test_moving_square_has_flow_about_its_speed() -> None:
    frames, masks = square_clip(3.0, 0.0)
    c = action_complexity(frames, masks)
    # the union of the two masks also holds uncovered background (zero flow), so a bit under 3 px
    assert 2.0 < c < 3.5


def test_static_square_has_no_flow() -> None:
    frames, masks = square_clip(0.0, 0.0)
    assert action_complexity(frames, masks) < 0.1


def test_flow_outside_the_mask_is_ignored() -> None:
    frames, masks = square_clip(0.0, 4.0)  # the background pans 4 px/frame, the person stands still
    assert action_complexity(frames, masks) < 0.6
    everywhere = np.ones_like(masks)
    assert action_complexity(frames, everywhere) > 2.5


def test_empty_mask_short_clip_and_normalised_variant() -> None:
    frames, masks = square_clip(3.0, 0.0)
    assert math.isnan(action_complexity(frames, np.zeros_like(masks)))
    assert math.isnan(action_complexity(frames[:1], masks[:1]))
    px = action_complexity(frames, masks)
    assert action_complexity(frames, masks, per_short_side=True) == pytest.approx(px / H)
    with pytest.raises(ValueError, match=r"\[T,H,W\]"):
        action_complexity(frames, masks[:, :10])
    with pytest.raises(ValueError, match="uint8"):
        action_complexity(frames.astype(np.float32), masks)


def test_dataset_statistics() -> None:
    rows = [
        {"caption": "A man walks forward, turning left", "height": 480, "width": 720, "complexity": 1.0},
        {"caption": "A woman walks slowly in a park", "height": 480, "width": 720, "complexity": 3.0},
        {"caption": "Someone does a backflip", "height": 1080, "width": 1920, "complexity": float("nan")},
        {
            "caption": "A boy is walking and jumps over a bench",
            "height": 480,
            "width": 720,
            "complexity": None,
        },
        {"caption": None, "height": None, "width": None, "complexity": 2.0},
    ]
    ds = dataset_statistics(rows)
    assert ds["clips"] == 5
    assert ds["resolutions"] == {"720x480": 3, "1920x1080": 1}
    assert list(ds["resolutions"]) == ["720x480", "1920x1080"]
    # walk, turn left, do a backflip, jump over a bench
    assert ds["action_types"] == 4
    assert ds["top_actions"][0] == ["walk", 3]
    assert sorted(p for p, _ in ds["top_actions"]) == [
        "do a backflip",
        "jump over a bench",
        "turn left",
        "walk",
    ]
    assert ds["action_complexity"] == pytest.approx(2.0)  # NaN and None skipped


def test_dataset_statistics_top_k_and_empty() -> None:
    rows = [
        {"caption": f"A man {v}", "height": 64, "width": 64, "complexity": 0.5}
        for v in ("runs", "jumps", "runs")
    ]
    ds = dataset_statistics(rows, top_k=1)
    assert ds["top_actions"] == [["run", 2]] and ds["action_types"] == 2
    empty = dataset_statistics([])
    assert empty == {
        "clips": 0,
        "resolutions": {},
        "action_types": 0,
        "top_actions": [],
        "action_complexity": None,
    }
