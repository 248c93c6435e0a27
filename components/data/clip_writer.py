"""One clip's verdict and write, shared by real and synthetic sources: the quality filter's reasons, the
H.264 file of a kept clip under ``clips/`` and its manifest row, and the train/val split of a source group."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from components.data import quality
from components.data.config import IngestParams
from components.io.hashing import file_sha256
from components.io.manifest import STATUS_FILTERED, STATUS_KEPT
from components.io.video import write_h264

CLIPS_DIR = "clips"


def split_for_group(key: str, params: IngestParams) -> str:
    """Deterministic train/val split by source group: one recording never spans both."""
    h = int(hashlib.sha256(f"{params.seed}:{key}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "val" if h < params.val_fraction else "train"


def _filter_reasons(scores: quality.QualityScores, params: IngestParams) -> list[str]:
    q = params.quality
    reasons = []
    if scores.dynamic_degree_dis < q.min_dynamic_degree:
        reasons.append(f"low_dynamic_degree: {scores.dynamic_degree_dis:.3f} < {q.min_dynamic_degree}")
    if q.require_dynamic and not scores.is_dynamic_dis:
        reasons.append("not_dynamic: too few frame pairs over VBench's flow threshold")
    if scores.motion_smoothness_flowinterp < q.min_motion_smoothness:
        reasons.append(
            f"low_motion_smoothness: {scores.motion_smoothness_flowinterp:.3f} < {q.min_motion_smoothness}"
        )
    if scores.sharpness_laplacian < q.min_sharpness:
        reasons.append(f"low_sharpness: {scores.sharpness_laplacian:.1f} < {q.min_sharpness}")
    if scores.exposure_clipped_fraction > q.max_exposure_clipped:
        reasons.append(f"bad_exposure: {scores.exposure_clipped_fraction:.3f} > {q.max_exposure_clipped}")
    return reasons


def finish_clip(
    common: dict, frames: np.ndarray, scores: quality.QualityScores, params: IngestParams, out_dir: Path
) -> dict:
    """Apply the quality filter; write a kept clip as H.264 and return its manifest row."""
    cp = params.clip
    reasons = _filter_reasons(scores, params)
    row = {
        **common,
        **scores.as_row(),
        "fps": cp.fps,
        "frames": int(frames.shape[0]),
        "height": int(frames.shape[1]),
        "width": int(frames.shape[2]),
    }
    if reasons:
        row.update(status=STATUS_FILTERED, reason="; ".join(reasons))
    else:
        rel = f"{CLIPS_DIR}/{common['clip_id']}.mp4"
        write_h264(out_dir / rel, frames, cp.fps, crf=cp.crf)
        row.update(status=STATUS_KEPT, clip_path=rel, content_hash=file_sha256(out_dir / rel))
    return row
