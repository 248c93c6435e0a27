"""Overlay frame grids: what the annotators saw, for a person to check by eye.

Every ``step``-th frame of a clip, upscaled, with the person mask tinted, the clip's subject drawn as
an OpenPose-18 skeleton and other people drawn thinner; frames side by side in rows of ``per_row``.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from components.io.atomic import atomic_path
from components.motion.render import draw_skeleton

MASK_TINT = np.array([40, 90, 255], np.float32)  # RGB


def overlay_frames(
    frames: np.ndarray,
    keypoints: np.ndarray,
    confidence: np.ndarray,
    masks: np.ndarray | None = None,
    extra_keypoints: np.ndarray | None = None,
    extra_confidence: np.ndarray | None = None,
    upscale: int = 3,
) -> np.ndarray:
    """uint8 [T, H·upscale, W·upscale, 3]: frames with mask tint, subject and other people drawn."""
    T, H, W = frames.shape[:3]
    if keypoints.shape != (T, 18, 2) or confidence.shape != (T, 18):
        raise ValueError(f"keypoints [T,18,2] / confidence [T,18] must match {T} frames")
    big_h, big_w = H * upscale, W * upscale
    out = np.empty((T, big_h, big_w, 3), np.uint8)
    people = [] if extra_keypoints is None else list(zip(extra_keypoints, extra_confidence, strict=True))
    for t in range(T):
        img = cv2.resize(frames[t], (big_w, big_h), interpolation=cv2.INTER_CUBIC).astype(np.float32)
        if masks is not None:
            m = cv2.resize(masks[t].astype(np.uint8), (big_w, big_h), interpolation=cv2.INTER_NEAREST) > 0
            img[m] = 0.55 * img[m] + 0.45 * MASK_TINT
        canvas = img.astype(np.uint8)
        for kp, conf, width in [(p[0][t], p[1][t], 1.5) for p in people] + [(keypoints[t], confidence[t], 3)]:
            big = (kp + 0.5) * upscale - 0.5
            draw_skeleton(big, conf, big_h, big_w, stick_width=width, radius=width + 1, canvas=canvas)
        out[t] = canvas
    return out


def frame_grid(frames: np.ndarray, step: int = 4, per_row: int = 5) -> np.ndarray:
    """Every ``step``-th frame tiled into rows of ``per_row`` (black padding at the end)."""
    picked = frames[::step]
    rows = []
    for i in range(0, len(picked), per_row):
        row = list(picked[i : i + per_row])
        row += [np.zeros_like(picked[0])] * (per_row - len(row))
        rows.append(np.concatenate(row, axis=1))
    return np.concatenate(rows, axis=0)


def save_png(path: str | Path, image: np.ndarray) -> Path:
    """Write an RGB uint8 image as PNG atomically."""
    path = Path(path)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"could not encode {path} as PNG")
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(buf.tobytes())
    return path
