"""MoVid's curation filters on detected OpenPose-18 keypoints (paper, appendix C).

* Motion: the paper drops clips whose average keypoint displacement between consecutive frames is
  below a threshold. We divide the displacement by the person's size in the image (torso length), so
  the score is a fraction of a torso per frame and does not depend on the resolution or on how far
  the person stands from the camera.
* Upper-body / face-only: clips where the legs are not visible in most frames are dropped.

Keypoints are ``[T,18,2]`` image pixels (x, y), confidences ``[T,18]``; a keypoint counts when its
confidence is above ``threshold`` and its coordinates are finite.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

NECK, R_HIP, L_HIP = 1, 8, 11
LOWER_BODY: tuple[int, ...] = (8, 9, 10, 11, 12, 13)  # hips, knees, ankles
LEGS: tuple[int, ...] = (9, 10, 12, 13)  # knees and ankles
# A standing body's keypoint box (nose to ankles) has a diagonal of about three torso lengths.
BOX_DIAGONAL_PER_TORSO = 3.0


def _check_confidence(confidence: np.ndarray) -> np.ndarray:
    conf = np.asarray(confidence, dtype=np.float64)
    if conf.ndim != 2 or conf.shape[1] != 18:
        raise ValueError(f"expected OpenPose-18 confidences [T,18], got {conf.shape}")
    return conf


def _check(keypoints: np.ndarray, confidence: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    conf = _check_confidence(confidence)
    kp = np.asarray(keypoints, dtype=np.float64)
    if kp.shape != (*conf.shape, 2):
        raise ValueError(f"expected keypoints [T,18,2] matching confidences {conf.shape}, got {kp.shape}")
    return kp, conf


def _confident(kp: np.ndarray, conf: np.ndarray, threshold: float) -> np.ndarray:
    return (conf > threshold) & np.isfinite(kp).all(axis=-1)


def body_size(keypoints: np.ndarray, confidence: np.ndarray, threshold: float = 0.3) -> float:
    """Robust per-clip person scale in pixels: median over frames of the torso length (neck → mid-hip,
    or neck → the one confident hip). When no frame shows a torso, the median diagonal of the
    confident keypoints' box divided by 3 (≈ torso lengths per box diagonal of a standing body).
    NaN if neither is measurable."""
    kp, conf = _check(keypoints, confidence)
    ok = _confident(kp, conf, threshold)
    hips = ok[:, [R_HIP, L_HIP]]
    torso: list[float] = []
    for t in np.flatnonzero(ok[:, NECK] & hips.any(axis=1)):
        hip = kp[t, [R_HIP, L_HIP]][hips[t]].mean(axis=0)
        length = float(np.linalg.norm(kp[t, NECK] - hip))
        if length > 1e-6:
            torso.append(length)
    if torso:
        return float(np.median(torso))
    diagonals = []
    for t in np.flatnonzero(ok.sum(axis=1) >= 2):
        pts = kp[t][ok[t]]
        diag = float(np.linalg.norm(pts.max(axis=0) - pts.min(axis=0)))
        if diag > 1e-6:
            diagonals.append(diag)
    return float(np.median(diagonals)) / BOX_DIAGONAL_PER_TORSO if diagonals else math.nan


def mean_keypoint_displacement(
    keypoints: np.ndarray, confidence: np.ndarray, threshold: float = 0.3
) -> float:
    """Mean displacement (px) of keypoints confident in both frames of each consecutive pair, pooled
    over pairs and keypoints, divided by :func:`body_size`: torso lengths per frame. NaN when no
    keypoint is confident in two consecutive frames or the size is not measurable."""
    kp, conf = _check(keypoints, confidence)
    ok = _confident(kp, conf, threshold)
    pair = ok[1:] & ok[:-1]
    if not pair.any():
        return math.nan
    size = body_size(kp, conf, threshold)
    if not math.isfinite(size) or size <= 0:
        return math.nan
    step = np.linalg.norm(kp[1:] - kp[:-1], axis=-1)
    return float(step[pair].mean() / size)


def lower_body_visible_fraction(
    confidence: np.ndarray, threshold: float = 0.3, min_keypoints: int = 2
) -> float:
    """Share of the frames with a person (any confident keypoint) in which at least ``min_keypoints``
    of the four knee/ankle keypoints are confident. Hips are not counted: waist-up shots often show
    them. 0.0 when no frame has a person."""
    conf = _check_confidence(confidence)
    ok = conf > threshold
    person = ok.any(axis=1)
    if not person.any():
        return 0.0
    legs = ok[:, list(LEGS)].sum(axis=1) >= min_keypoints
    return float(legs[person].mean())


def is_upper_body_only(confidence: np.ndarray, min_fraction: float = 0.5, threshold: float = 0.3) -> bool:
    """True when the legs are visible in fewer than ``min_fraction`` of the frames with a person."""
    return lower_body_visible_fraction(confidence, threshold) < min_fraction


@dataclass(frozen=True)
class FilterDecision:
    """Keep or drop a clip, why, and the two scores behind it."""

    keep: bool
    reason: str | None
    motion: float  # torso lengths per frame (NaN if not measurable)
    lower_body: float  # share of frames with the legs visible


def decide(
    keypoints: np.ndarray,
    confidence: np.ndarray,
    *,
    min_motion: float,
    min_lower_body: float,
    threshold: float = 0.3,
) -> FilterDecision:
    """Apply the filters in order: no person → low motion → upper body only."""
    kp, conf = _check(keypoints, confidence)
    ok = _confident(kp, conf, threshold)
    if not ok.any():
        return FilterDecision(
            False,
            f"no_person: no keypoint above confidence {threshold:g} in any of {len(conf)} frames",
            math.nan,
            0.0,
        )
    motion = mean_keypoint_displacement(kp, conf, threshold)
    lower = lower_body_visible_fraction(conf, threshold)
    if not math.isfinite(motion):
        reason = (
            "low_motion: not measurable (no keypoint confident in two consecutive frames or no body size)"
        )
        return FilterDecision(False, reason, motion, lower)
    if motion < min_motion:
        return FilterDecision(False, f"low_motion: {motion:.4g} < {min_motion:g}", motion, lower)
    if lower < min_lower_body:
        reason = f"upper_body_only: legs visible in {lower:.2f} of frames < {min_lower_body:g}"
        return FilterDecision(False, reason, motion, lower)
    return FilterDecision(True, None, motion, lower)
