"""How closely generated videos follow their skeletons: two cheap measures for MoSA vs. the base alone.

Both are computed on held-out clips, generating with the same prompts and seeds with the MoSA model
and with the base alone (structure branch off), so the difference isolates the structure branch.

- ``person_region_l1(generated, reference, mask, dilate)``: mean absolute error, in [0, 1] units
  (uint8 values / 255), between generated and ground-truth frames inside the ground-truth person
  region, dilated by ``dilate`` pixels (a square structuring element per frame) so that a person
  drawn slightly off still counts as near. 0 for a perfect copy; higher when the person is missing
  or elsewhere. Only meaningful where the generated clip is meant to reproduce the reference (the
  skeleton came from the reference video, as in training).
- ``skeleton_mask_iou(generated, skeleton, threshold, thickness)``: IoU over all frames between a
  foreground estimate of the generated video and the region of its skeleton. Foreground = pixels
  whose largest channel difference from the per-pixel temporal median exceeds ``threshold`` (default
  25/255 ≈ 0.1): a static background equals its median, a moving person does not, as long as every
  pixel shows the background in more than half of the frames. So a person who stands still (or a
  moving camera) defeats it: a known limit; the score then only sees the parts that move. The
  skeleton region is every non-black skeleton pixel, dilated by ``thickness`` pixels so thin
  sticks cover about a body's width.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

DEFAULT_THRESHOLD = 25.0 / 255.0
DEFAULT_THICKNESS = 3


def _as_unit(video: np.ndarray, name: str) -> np.ndarray:
    """uint8 ``[T,H,W,3]`` (or float in [0, 1]) → float64 in [0, 1]; checks the layout."""
    v = np.asarray(video)
    if v.ndim != 4 or v.shape[-1] != 3:
        raise ValueError(f"{name} must be a video [T,H,W,3], got shape {v.shape}")
    if v.dtype == np.uint8:
        return v.astype(np.float64) / 255.0
    if not np.issubdtype(v.dtype, np.floating):
        raise ValueError(f"{name} must be uint8 or float in [0, 1], got dtype {v.dtype}")
    return v.astype(np.float64)


def dilate_frames(mask: np.ndarray, pixels: int) -> np.ndarray:
    """Dilate each frame of a bool ``[T,H,W]`` mask by ``pixels`` (square element; 0 = unchanged)."""
    m = np.asarray(mask, bool)
    if pixels < 0:
        raise ValueError(f"dilation must be >= 0 pixels, got {pixels}")
    if pixels == 0:
        return m.copy()
    size = 2 * pixels + 1
    return ndimage.binary_dilation(m, structure=np.ones((1, size, size), bool))


def person_region_l1(
    generated: np.ndarray, reference: np.ndarray, mask: np.ndarray, dilate: int = 0
) -> float:
    """Mean |generated − reference| (in [0, 1]) inside the dilated person mask; NaN for an empty mask."""
    g, r = _as_unit(generated, "generated"), _as_unit(reference, "reference")
    if g.shape != r.shape:
        raise ValueError(f"generated {g.shape} and reference {r.shape} must have the same shape")
    m = np.asarray(mask, bool)
    if m.shape != g.shape[:3]:
        raise ValueError(f"mask must be [T,H,W] = {g.shape[:3]}, got {m.shape}")
    region = dilate_frames(m, dilate)
    if not region.any():
        return float("nan")
    return float(np.abs(g - r)[region].mean())


def foreground(video: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> np.ndarray:
    """bool ``[T,H,W]``: pixels whose largest channel difference from the temporal median > threshold."""
    v = _as_unit(video, "video")
    median = np.median(v, axis=0, keepdims=True)
    return np.abs(v - median).max(axis=-1) > threshold


def skeleton_region(skeleton: np.ndarray, thickness: int = DEFAULT_THICKNESS) -> np.ndarray:
    """bool ``[T,H,W]``: non-black skeleton pixels, dilated by ``thickness``."""
    s = np.asarray(skeleton)
    if s.ndim != 4 or s.shape[-1] != 3:
        raise ValueError(f"skeleton must be a video [T,H,W,3], got shape {s.shape}")
    return dilate_frames(s.max(axis=-1) > 0, thickness)


def skeleton_mask_iou(
    generated: np.ndarray,
    skeleton: np.ndarray,
    threshold: float = DEFAULT_THRESHOLD,
    thickness: int = DEFAULT_THICKNESS,
) -> float:
    """IoU, all frames, of ``foreground(generated)`` and ``skeleton_region(skeleton)``; NaN if both empty."""
    if np.shape(generated)[:3] != np.shape(skeleton)[:3]:
        raise ValueError(
            f"generated {np.shape(generated)} and skeleton {np.shape(skeleton)} must have the same frame "
            "count and size"
        )
    fg, sk = foreground(generated, threshold), skeleton_region(skeleton, thickness)
    union = np.logical_or(fg, sk).sum()
    if union == 0:
        return float("nan")
    return float(np.logical_and(fg, sk).sum() / union)


@dataclass(frozen=True)
class FollowScores:
    """Means over clips (NaN clips left out) of the two measures for one model."""

    person_l1: float
    skeleton_iou: float
    clips: int

    def as_dict(self, prefix: str = "") -> dict[str, float]:
        return {
            f"{prefix}person_region_l1": self.person_l1,
            f"{prefix}skeleton_mask_iou": self.skeleton_iou,
        }


def score_following(
    generated: Sequence[np.ndarray],
    references: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    skeletons: Sequence[np.ndarray],
    dilate: int = 2,
    threshold: float = DEFAULT_THRESHOLD,
    thickness: int = DEFAULT_THICKNESS,
) -> FollowScores:
    """Both measures averaged over clips (one generated video per reference clip, in the same order)."""
    n = len(generated)
    if not n or not len(references) == len(masks) == len(skeletons) == n:
        raise ValueError(
            f"need one reference, mask and skeleton per generated video, got {n} generated, "
            f"{len(references)} references, {len(masks)} masks, {len(skeletons)} skeletons"
        )
    l1 = [person_region_l1(g, r, m, dilate) for g, r, m in zip(generated, references, masks, strict=True)]
    iou = [skeleton_mask_iou(g, s, threshold, thickness) for g, s in zip(generated, skeletons, strict=True)]
    return FollowScores(_nanmean(l1), _nanmean(iou), n)


def compare_following(mosa: FollowScores, base: FollowScores) -> dict[str, float]:
    """Flat metrics for both models and the gains of MoSA over the base (positive = MoSA follows better)."""
    return {
        **mosa.as_dict("mosa_"),
        **base.as_dict("base_"),
        "person_region_l1_gain": base.person_l1 - mosa.person_l1,
        "skeleton_mask_iou_gain": mosa.skeleton_iou - base.skeleton_iou,
    }


def _nanmean(values: Sequence[float]) -> float:
    arr = np.asarray(values, np.float64)
    arr = arr[np.isfinite(arr)]
    return float(arr.mean()) if arr.size else float("nan")
