"""Tests for components.data.quality on synthetic clips built here."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from components.data.quality import (
    QualityScores,
    dynamic_degree_dis,
    exposure_clipped_fraction,
    flow_dis,
    motion_smoothness_flowinterp,
    score_clip,
    sharpness_laplacian,
    top5_flow_magnitude,
)

T, H, W = 17, 96, 144
STEP = 8  # px per frame for the translating clip


def _texture(height: int, width: int, sigma: float = 4.0, seed: int = 0) -> np.ndarray:
    """Smooth random RGB texture stretched to the full 0..255 range (trackable by optical flow)."""
    noise = np.random.default_rng(seed).random((height, width, 3)).astype(np.float32)
    smooth = cv2.GaussianBlur(noise, (0, 0), sigma)
    smooth = (smooth - smooth.min()) / (smooth.max() - smooth.min())
    return np.round(smooth * 255).astype(np.uint8)


def _pan(positions: list[int], seed: int = 0) -> np.ndarray:
    """Clip of H x W windows cut from one texture at horizontal offsets ``positions``."""
    canvas = _texture(H + 16, W + max(positions) + 16, seed=seed)
    return np.stack([canvas[8 : 8 + H, x : x + W] for x in positions])


@pytest.fixture(scope="module")
def static_clip() -> np.ndarray:
    return _pan([0] * T)


@pytest.fixture(scope="module")
def translating_clip() -> np.ndarray:
    return _pan([STEP * t for t in range(T)])


@pytest.fixture(scope="module")
def noise_clip() -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, size=(T, H, W, 3), dtype=np.uint8)


# --- flow ---------------------------------------------------------------------------------------


def test_flow_dis_recovers_translation(translating_clip: np.ndarray) -> None:
    flow = flow_dis(translating_clip[0], translating_clip[1])
    assert flow.shape == (H, W, 2)
    assert flow.dtype == np.float32
    # The window moves right by STEP, so content moves left by STEP.
    assert np.median(flow[..., 0]) == pytest.approx(-STEP, abs=0.5)
    assert np.median(flow[..., 1]) == pytest.approx(0.0, abs=0.5)


def test_top5_flow_magnitude_known_values() -> None:
    flow = np.zeros((10, 20, 2), dtype=np.float32)  # 200 px -> top 5% = 10 px
    flow[..., 0] = 1.0  # background magnitude 1
    flow[0, :5] = (6.0, 8.0)  # magnitude 10
    flow[1, :5] = (3.0, -4.0)  # magnitude 5
    assert top5_flow_magnitude(flow) == pytest.approx(7.5)

    flow[2, :5] = (0.0, 20.0)  # now the top 10 are 5 x 20 and 5 x 10
    assert top5_flow_magnitude(flow) == pytest.approx(15.0)


def test_top5_flow_magnitude_uses_at_least_one_pixel() -> None:
    flow = np.zeros((3, 3, 2), dtype=np.float32)  # 9 px: 5% rounds down to 0 -> use 1 px
    flow[1, 1] = (0.0, -2.0)
    flow[0, 0] = (1.0, 0.0)
    assert top5_flow_magnitude(flow) == pytest.approx(2.0)


def test_top5_flow_magnitude_rejects_bad_shape() -> None:
    with pytest.raises(ValueError, match="shape"):
        top5_flow_magnitude(np.zeros((4, 4, 3), dtype=np.float32))


# --- dynamic degree -----------------------------------------------------------------------------


def test_static_clip_is_not_dynamic(static_clip: np.ndarray) -> None:
    degree, dynamic = dynamic_degree_dis(static_clip)
    assert degree == 0.0
    assert dynamic is False


def test_translating_clip_is_dynamic(translating_clip: np.ndarray) -> None:
    degree, dynamic = dynamic_degree_dis(translating_clip)
    assert degree > 0.5
    assert dynamic is True


def test_slow_motion_is_below_vbench_threshold() -> None:
    # Threshold at 96 px short side is 6 * 96 / 256 = 2.25 px; 1 px/frame stays below it.
    degree, dynamic = dynamic_degree_dis(_pan(list(range(T))))
    assert degree == 0.0
    assert dynamic is False


@pytest.mark.parametrize(("n_moving_pairs", "expected_dynamic"), [(3, False), (4, True)])
def test_dynamic_needs_round_4t_over_16_pairs(n_moving_pairs: int, expected_dynamic: bool) -> None:
    # T = 17 -> round(4 * 17 / 16) = 4 pairs over the threshold are needed.
    positions = [0] * 6 + [STEP * (i + 1) for i in range(n_moving_pairs)]
    positions += [positions[-1]] * (T - len(positions))
    degree, dynamic = dynamic_degree_dis(_pan(positions))
    assert degree == pytest.approx(n_moving_pairs / (T - 1))
    assert dynamic is expected_dynamic


# --- motion smoothness --------------------------------------------------------------------------


def test_static_clip_is_perfectly_smooth(static_clip: np.ndarray) -> None:
    assert motion_smoothness_flowinterp(static_clip) >= 0.99


def test_translation_is_smoother_than_noise(translating_clip: np.ndarray, noise_clip: np.ndarray) -> None:
    smooth = motion_smoothness_flowinterp(translating_clip)
    noisy = motion_smoothness_flowinterp(noise_clip)
    assert smooth >= 0.95  # a warp with the wrong sign or no warp scores about 0.88-0.91
    assert 0.0 <= noisy <= 1.0
    assert noisy < smooth - 0.1


def test_jittery_clip_is_less_smooth_than_steady_one(translating_clip: np.ndarray) -> None:
    # Same start and end, but odd frames jump back and forth instead of sitting halfway.
    jitter = _pan([STEP * t + (12 if t % 2 else 0) for t in range(T)])
    assert motion_smoothness_flowinterp(jitter) < motion_smoothness_flowinterp(translating_clip) - 0.02


def test_smoothness_handles_even_frame_count(translating_clip: np.ndarray) -> None:
    # T = 4: only frame 1 has both neighbours; frame 3 is skipped.
    assert motion_smoothness_flowinterp(translating_clip[:4]) >= 0.95


# --- sharpness and exposure ---------------------------------------------------------------------


def test_blurred_clip_is_less_sharp() -> None:
    # Hard-edged 4x4 px random blocks, then the same clip Gaussian-blurred.
    blocks = np.random.default_rng(2).integers(0, 256, size=(5, H // 4, W // 4, 3), dtype=np.uint8)
    sharp = np.repeat(np.repeat(blocks, 4, axis=1), 4, axis=2)
    blurred = np.stack([cv2.GaussianBlur(frame, (0, 0), 2.0) for frame in sharp])
    sharp_score = sharpness_laplacian(sharp)
    assert sharp_score > 0
    assert sharpness_laplacian(blurred) < 0.5 * sharp_score


def test_flat_clip_has_zero_sharpness() -> None:
    assert sharpness_laplacian(np.full((3, 16, 16, 3), 128, dtype=np.uint8)) == pytest.approx(0.0)


def test_exposure_clipped_fraction() -> None:
    white = np.full((5, 32, 48, 3), 255, dtype=np.uint8)
    gray = np.full((5, 32, 48, 3), 128, dtype=np.uint8)
    half_black = gray.copy()
    half_black[:, :, :24] = 0
    assert exposure_clipped_fraction(white) == pytest.approx(1.0)
    assert exposure_clipped_fraction(gray) == pytest.approx(0.0)
    assert exposure_clipped_fraction(half_black) == pytest.approx(0.5)


def test_exposure_clip_levels_are_inclusive() -> None:
    frames = np.full((3, 4, 4, 3), 128, dtype=np.uint8)
    frames[:, 0, :] = 5  # clipped (<= 5)
    frames[:, 1, :] = 6  # not clipped
    frames[:, 2, :] = 250  # clipped (>= 250)
    frames[:, 3, :] = 249  # not clipped
    assert exposure_clipped_fraction(frames) == pytest.approx(0.5)


# --- score_clip, as_row, validation -------------------------------------------------------------


def test_score_clip_and_as_row(translating_clip: np.ndarray) -> None:
    scores = score_clip(translating_clip)
    assert isinstance(scores, QualityScores)
    assert scores.is_dynamic_dis is True
    assert scores.dynamic_degree_dis == pytest.approx(dynamic_degree_dis(translating_clip)[0])
    assert scores.motion_smoothness_flowinterp == pytest.approx(
        motion_smoothness_flowinterp(translating_clip)
    )
    row = scores.as_row()
    assert list(row) == [f.name for f in dataclasses.fields(QualityScores)]
    assert row == {
        "dynamic_degree_dis": scores.dynamic_degree_dis,
        "is_dynamic_dis": scores.is_dynamic_dis,
        "motion_smoothness_flowinterp": scores.motion_smoothness_flowinterp,
        "sharpness_laplacian": scores.sharpness_laplacian,
        "exposure_clipped_fraction": scores.exposure_clipped_fraction,
    }
    with pytest.raises(dataclasses.FrozenInstanceError):
        scores.sharpness_laplacian = 0.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("frames", "message"),
    [
        ([[[[0, 0, 0]]]] * 3, "numpy array"),
        (np.zeros((3, 8, 8, 3), dtype=np.float32), "uint8"),
        (np.zeros((3, 8, 8), dtype=np.uint8), "shape"),
        (np.zeros((3, 8, 8, 4), dtype=np.uint8), "shape"),
        (np.zeros((2, 8, 8, 3), dtype=np.uint8), "at least 3 frames"),
    ],
)
@pytest.mark.parametrize(
    "fn",
    [
        score_clip,
        dynamic_degree_dis,
        motion_smoothness_flowinterp,
        sharpness_laplacian,
        exposure_clipped_fraction,
    ],
)
def test_bad_input_raises(fn, frames, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fn(frames)
