"""The video training set: ingest clips joined with their annotations and, for synthetic clips, the
rendered truth (depth and cameras, which the contact loss's depth network learns from).

One :class:`ClipSample` per clip, decoded once and kept in memory (the CPU default has a few dozen
17×96×144 clips, ~0.7 MB each); GPU profiles stream the same samples through a DataLoader.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from components.annotation.storage import ClipAnnotation
from components.io.manifest import STATUS_KEPT, read_manifest
from components.io.video import probe, read_frames
from components.motion.render import skeleton_video
from components.synthetic.render import GroundTruth

ANNOTATIONS_TABLE = "annotations.parquet"


class ClipSetError(ValueError):
    """The inputs of a training stage are missing or inconsistent (the message says which and how to fix)."""


@dataclass
class ClipSample:
    """One training clip. Arrays are numpy; tensors are made by the trainer.

    ``video`` uint8 [T,H,W,3]; ``skeleton`` uint8 [T,H,W,3] (the training condition, None without an
    annotation); ``mask`` bool [T,H,W]; ``tracks`` float32 [T,N,2] pixels with ``track_visible`` bool
    [T,N]; ``depth`` float32 [T,H,W] metres and ``K``/``R``/``t`` ([T,3,3], [T,3,3], [T,3]) only for
    synthetic clips; ``truth_keypoints`` float32 [T,18,2] pixels and ``truth_visible`` bool [T,18] —
    the OpenPose-18 projection of the clip's 3D joints — and ``truth_mask`` bool [T,H,W] (the rendered
    body's pixels; ``mask`` is the annotate stage's detected one) only for synthetic clips.
    """

    clip_id: str
    split: str
    caption: str
    motion_prompt: str
    video: np.ndarray
    skeleton: np.ndarray | None = None
    mask: np.ndarray | None = None
    tracks: np.ndarray | None = None
    track_visible: np.ndarray | None = None
    depth: np.ndarray | None = None
    K: np.ndarray | None = None
    R: np.ndarray | None = None
    t: np.ndarray | None = None
    truth_keypoints: np.ndarray | None = None
    truth_visible: np.ndarray | None = None
    truth_mask: np.ndarray | None = None

    @property
    def annotated(self) -> bool:
        return self.skeleton is not None and self.mask is not None

    @property
    def has_depth(self) -> bool:
        return self.depth is not None


def _text(v) -> str:
    return "" if v is None or (isinstance(v, float) and np.isnan(v)) or pd.isna(v) else str(v)


def clip_table(
    ingest_dir: Path, annotate_dir: Path | None = None, annotated_only: bool = False
) -> pd.DataFrame:
    """Kept ingest clips, with annotation columns (``annotation_path``, ``skeleton_path``, annotate's
    ``status``) joined where ``annotate_dir`` is given. ``annotated_only`` keeps the clips the annotate
    stage kept (its filters passed) — the clips MoSA modules train on."""
    ingest_dir = Path(ingest_dir)
    manifest_path = ingest_dir / "manifest.parquet"
    if not manifest_path.is_file():
        raise ClipSetError(f"{manifest_path} not found: run the ingest stage first (dvc repro ingest)")
    m = read_manifest(manifest_path)
    m = m[m.status == STATUS_KEPT].copy()
    if annotate_dir is None:
        return m.reset_index(drop=True)
    table_path = Path(annotate_dir) / ANNOTATIONS_TABLE
    if not table_path.is_file():
        raise ClipSetError(f"{table_path} not found: run the annotate stage first (dvc repro annotate)")
    a = pd.read_parquet(table_path)[["clip_id", "annotation_path", "skeleton_path", "status", "reason"]]
    a = a.rename(columns={"status": "annotate_status", "reason": "annotate_reason"})
    out = m.merge(a, on="clip_id", how="left")
    if annotated_only:
        out = out[out.annotate_status == STATUS_KEPT]
    if out.empty:
        raise ClipSetError(
            f"no usable clips in {ingest_dir}" + (f" annotated in {annotate_dir}" if annotated_only else "")
        )
    return out.reset_index(drop=True)


def load_sample(row: dict, ingest_dir: Path, annotate_dir: Path | None = None) -> ClipSample:
    """Decode one clip (and its annotation, skeleton video and synthetic truth when present)."""

    ingest_dir = Path(ingest_dir)
    path = ingest_dir / row["clip_path"]
    video = read_frames(path, list(range(probe(path).frames)))
    s = ClipSample(
        clip_id=str(row["clip_id"]),
        split=_text(row.get("split")) or "train",
        caption=_text(row.get("caption")),
        motion_prompt=_text(row.get("motion_prompt")),
        video=video,
    )
    ann_rel, skel_rel = _text(row.get("annotation_path")), _text(row.get("skeleton_path"))
    if annotate_dir is not None and ann_rel:
        ann = ClipAnnotation.load(Path(annotate_dir) / ann_rel)
        s.mask, s.tracks, s.track_visible = ann.mask, ann.tracks, ann.track_visible
        s.caption = s.caption or ann.caption
        s.motion_prompt = s.motion_prompt or ann.motion_prompt
        if skel_rel:
            skel_path = Path(annotate_dir) / skel_rel
            s.skeleton = read_frames(skel_path, list(range(len(video))))
    gt_rel = _text(row.get("ground_truth_path"))
    if gt_rel:
        gt = GroundTruth.load(ingest_dir / gt_rel)
        if gt.depth.shape[0] == len(video):
            s.depth = gt.depth.astype(np.float32)
            s.K = np.broadcast_to(np.asarray(gt.K, np.float32), (len(video), 3, 3)).copy()
            s.R, s.t = np.asarray(gt.R, np.float32), np.asarray(gt.t, np.float32)
            s.truth_keypoints = np.asarray(gt.keypoints2d, np.float32)
            s.truth_visible = np.asarray(gt.visible, bool)
            s.truth_mask = np.asarray(gt.mask, bool)
    if s.mask is not None and s.mask.shape != video.shape[:3]:
        raise ClipSetError(f"{s.clip_id}: mask {s.mask.shape} does not match the video {video.shape[:3]}")
    return s


def load_clipset(
    ingest_dir: Path,
    annotate_dir: Path | None = None,
    annotated_only: bool = False,
    split: str | None = None,
    limit: int | None = None,
    progress: bool = False,
) -> list[ClipSample]:
    """All (or ``split``'s, or the first ``limit``) clips as samples, in clip-id order."""
    from tqdm import tqdm

    table = clip_table(ingest_dir, annotate_dir, annotated_only).sort_values("clip_id")
    if split is not None:
        table = table[table.split == split]
    rows = table.to_dict("records")[:limit]
    return [
        load_sample(r, ingest_dir, annotate_dir)
        for r in tqdm(rows, desc="load clips", unit="clip", disable=not progress)
    ]


SkeletonSource = Literal["pose2d", "joints3d"]
NO_3D_JOINTS = "no 3D joints to project (mosa.structure 3d trains on synthetic clips only)"


def select_skeletons(
    samples: list[ClipSample], source: SkeletonSource
) -> tuple[list[ClipSample], list[dict[str, str]]]:
    """(samples to train on, set-aside rows {clip_id, reason}) for a skeleton source.

    ``pose2d``: the skeleton videos the annotate stage drew from detected 2D keypoints (every sample
    kept as is). ``joints3d``: skeletons drawn from the projection of each clip's 3D joints (the
    structure MoSA generates at inference: 3D motion → camera → 2D skeleton); only synthetic clips have
    3D joints, so the others are set aside with that reason rather than mixed with 2D skeletons.
    """
    if source == "pose2d":
        return list(samples), []
    if source != "joints3d":
        raise ValueError(f"skeleton source must be 'pose2d' or 'joints3d', got {source!r}")

    kept, aside = [], []
    for s in samples:
        if s.truth_keypoints is None or s.truth_visible is None or len(s.truth_keypoints) != len(s.video):
            aside.append({"clip_id": s.clip_id, "reason": NO_3D_JOINTS})
            continue
        H, W = s.video.shape[1:3]
        skel = skeleton_video(s.truth_keypoints, s.truth_visible.astype(np.float32), H, W)
        kept.append(dataclasses.replace(s, skeleton=skel))
    return kept, aside


def point_map(depth: np.ndarray, K: np.ndarray, R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """World points float32 [T,H,W,3] of a depth video; NaN where the depth is not finite (backdrop).

    x_cam = depth · K⁻¹ [u, v, 1] and x_world = Rᵀ(x_cam − t): depth is camera z (metres), pixel centres
    are at integer coordinates, ``K`` is [3,3] or [T,3,3], and ``R`` [T,3,3], ``t`` [T,3] map world to
    camera (x_cam = R x_world + t) as the synthetic renderer stores them.
    """
    depth = np.asarray(depth, np.float64)
    T, H, W = depth.shape
    K = np.broadcast_to(np.asarray(K, np.float64), (T, 3, 3))
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    pix = np.stack([u, v, np.ones_like(u)], -1)  # [H,W,3]
    out = np.empty((T, H, W, 3), np.float32)
    for i in range(T):
        cam = (pix @ np.linalg.inv(K[i]).T) * depth[i][..., None]  # rays with z = 1, scaled by depth
        with np.errstate(invalid="ignore"):
            out[i] = (cam - t[i]) @ np.asarray(R[i], np.float64)  # Rᵀ(x − t) for row vectors
    out[~np.isfinite(depth)] = np.nan
    return out
