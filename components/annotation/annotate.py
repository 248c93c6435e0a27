"""The annotate stage's per-clip work: pose, mask, tracks, captions, filters, skeleton video, and —
for synthetic clips — the annotators' accuracy against the rendered truth.

``annotate_clip`` never raises on a bad clip: a decode error or a clip where no person is found
becomes a row with ``status=quarantined`` and the reason.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from components.annotation import filters, stats
from components.annotation.accuracy import ground_truth_tracks, mask_iou, pck, track_epe
from components.annotation.captioning import build_captioner, build_prompt_extractor
from components.annotation.config import AnnotateParams
from components.annotation.mask import MaskEstimator, build_mask_estimator, clean_mask
from components.annotation.overlay import frame_grid, overlay_frames, save_png
from components.annotation.people import (
    PeopleTracker,
    choose_subject,
    is_steady,
    map_to_clip,
    mask_to_clip,
    parse_transform,
)
from components.annotation.pose import PoseEstimator, build_pose_estimator
from components.annotation.storage import ClipAnnotation
from components.annotation.tracks import LKTracker, Tracker, build_tracker, query_points
from components.io.manifest import STATUS_FILTERED, STATUS_KEPT, STATUS_QUARANTINED
from components.io.video import VideoError, probe, read_frames, write_h264
from components.motion.render import skeleton_video
from components.synthetic.render import GroundTruth

ANNOTATIONS_DIR = "annotations"
SKELETONS_DIR = "skeletons"
OVERLAYS_DIR = "overlays"  # real clips: a PNG grid of frames with mask and skeletons, to check by eye
MANIFEST_FILE = "annotations.parquet"

# The annotation table (one row per kept ingest clip) and its dtypes.
ANNOTATION_COLUMNS: dict[str, str] = {
    "clip_id": "string",
    "clip_path": "string",  # relative to the ingest output (the input of this stage)
    "source_kind": "string",
    "split": "string",
    "content_hash": "string",  # of the ingest clip: annotations are reused while it is unchanged
    "annotation_path": "string",  # relative to this stage's output
    "skeleton_path": "string",
    "overlay_path": "string",  # real clips: PNG grid of frames with mask and skeletons
    "caption": "string",
    "motion_prompt": "string",
    "frames": "Int64",
    "height": "Int64",
    "width": "Int64",
    "pose_resolution": "string",  # source (full-resolution multi-person pass) | clip
    "people": "Int64",  # people followed in the clip (the subject + others)
    "person_found_fraction": "Float64",  # frames where the pose detector found a person
    "mean_confidence": "Float64",
    "keypoint_in_frame_or_hidden": "boolean",  # every confident keypoint lies inside the frame
    "mask_coverage": "Float64",  # mean share of pixels on the person
    "visible_tracks": "Int64",  # tracks visible in the query frame
    "motion_score": "Float64",  # mean keypoint displacement / body size per frame
    "lower_body_fraction": "Float64",
    "action_complexity": "Float64",  # mean DIS flow magnitude (px/frame) inside the person mask
    "pose_pck": "Float64",  # synthetic clips: PCK@0.1 against the rendered truth
    "mask_iou": "Float64",
    "track_epe_px": "Float64",
    "status": "string",  # kept | filtered (motion / upper-body filters) | quarantined
    "reason": "string",
}


@dataclass
class Annotators:
    """The configured annotators, built once per stage run."""

    pose: PoseEstimator
    mask: MaskEstimator
    tracker: Tracker
    captioner: Any
    prompt_extractor: Any
    names: dict


def build_annotators(params: AnnotateParams) -> Annotators:
    """Annotators from params (real offline defaults; the paper's models from local paths)."""

    t = params.tracks
    tracker = (
        LKTracker(fb_threshold=t.fb_threshold) if t.name == "lk" else build_tracker(t.name, t.model_path)
    )
    c = params.captions
    return Annotators(
        pose=build_pose_estimator(params.pose.name, params.pose.model_path),
        mask=build_mask_estimator(params.mask.name, params.mask.model_path),
        tracker=tracker,
        captioner=build_captioner(c.captioner, c.vlm_path),
        prompt_extractor=build_prompt_extractor(c.prompt_extractor, c.llm_path),
        names={
            "pose": params.pose.name,
            "mask": params.mask.name,
            "tracks": t.name,
            "captioner": c.captioner,
            "prompt_extractor": c.prompt_extractor,
        },
    )


def _text(value) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    try:
        import pandas as pd

        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return str(value)


def annotate_clip(
    clip: dict, params: AnnotateParams, in_dir: Path, out_dir: Path, ann: Annotators
) -> dict[str, Any]:
    """Annotate one kept ingest clip (a manifest row as a dict); returns its annotation-table row."""
    base = {
        "clip_id": clip["clip_id"],
        "clip_path": clip["clip_path"],
        "source_kind": _text(clip.get("source_kind")),
        "split": _text(clip.get("split")),
        "content_hash": _text(clip.get("content_hash")),
    }
    try:
        path = in_dir / clip["clip_path"]
        info = probe(path)
        frames = read_frames(path, list(range(info.frames)))
    except VideoError as exc:
        return {**base, "status": STATUS_QUARANTINED, "reason": f"{exc.reason}: {exc.detail}"}
    T, H, W = frames.shape[:3]
    names = dict(ann.names)
    people = _people_at_source(clip, params, H, W) if _use_people(clip, params, ann) else None
    extra_kp = extra_conf = None
    if people is not None:
        pose, masks, extra_kp, extra_conf = people
        names["pose"] = names["mask"] = "mediapipe-people@source"
    elif ann.names["pose"] == ann.names["mask"] == "mediapipe" and hasattr(ann.mask, "with_pose"):
        masks, pose = ann.mask.with_pose(frames)  # one MediaPipe pass gives both
    else:
        pose, masks = ann.pose(frames), None
    if not pose.found.any():
        return {
            **base, "frames": T, "height": H, "width": W, "person_found_fraction": 0.0,
            "status": STATUS_QUARANTINED, "reason": f"no_person_found: the {ann.names['pose']} pose detector "
            f"found nobody in any of {T} frames",
        }  # fmt: skip
    if masks is None:
        masks = ann.mask(frames)
    q = int(np.argmax(masks.reshape(T, -1).sum(1))) if masks.any() else 0  # frame with the most person
    points, on_person = query_points(masks[q], params.tracks.person_stride, params.tracks.background_stride)
    tracks = ann.tracker.track(frames, points, on_person, query_frame=q)

    caption = _text(clip.get("caption")) or ann.captioner(frames)
    prompt = _text(clip.get("motion_prompt")) or ann.prompt_extractor(caption or "")
    f = params.filters
    decision = filters.decide(
        pose.keypoints,
        pose.confidence,
        min_motion=f.min_motion,
        min_lower_body=f.min_lower_body,
        threshold=f.confidence_threshold,
    )
    conf_ok = pose.confidence > f.confidence_threshold
    kp = pose.keypoints
    inside = (kp[..., 0] >= -0.5) & (kp[..., 0] <= W - 0.5) & (kp[..., 1] >= -0.5) & (kp[..., 1] <= H - 0.5)

    rel = f"{ANNOTATIONS_DIR}/{clip['clip_id']}.npz"
    ClipAnnotation(
        clip_id=clip["clip_id"],
        keypoints=pose.keypoints,
        confidence=pose.confidence,
        mask=masks,
        tracks=tracks.points,
        track_visible=tracks.visible,
        track_on_person=tracks.on_person,
        query_frame=q,
        caption=caption or "",
        motion_prompt=prompt or "",
        annotators=names,
        extra_keypoints=extra_kp,
        extra_confidence=extra_conf,
    ).save(out_dir / rel)
    row = {
        **base,
        "annotation_path": rel,
        "caption": caption,
        "motion_prompt": prompt,
        "frames": T,
        "height": H,
        "width": W,
        "pose_resolution": "source" if people is not None else "clip",
        "people": 1 + (0 if extra_kp is None else len(extra_kp)),
        "person_found_fraction": float(pose.found.mean()),
        "mean_confidence": float(pose.confidence[pose.found].mean()),
        "keypoint_in_frame_or_hidden": bool((inside | ~conf_ok).all()),
        "mask_coverage": float(masks.mean()),
        "visible_tracks": int(tracks.visible[q].sum()),
        "motion_score": float(decision.motion),
        "lower_body_fraction": float(decision.lower_body),
        "action_complexity": float(stats.action_complexity(frames, masks)),
        "status": STATUS_KEPT if decision.keep else STATUS_FILTERED,
        "reason": decision.reason,
    }
    if params.skeleton_videos:
        skel_rel = f"{SKELETONS_DIR}/{clip['clip_id']}.mp4"
        kp, conf = pose.keypoints[:, None], pose.confidence[:, None]
        if extra_kp is not None and len(extra_kp):
            kp = np.concatenate([kp, extra_kp.transpose(1, 0, 2, 3)], axis=1)
            conf = np.concatenate([conf, extra_conf.transpose(1, 0, 2)], axis=1)
        write_h264(out_dir / skel_rel, skeleton_video(kp, conf, H, W), info.fps)
        row["skeleton_path"] = skel_rel
    if base["source_kind"] not in (None, "synthetic"):
        over = overlay_frames(frames, pose.keypoints, pose.confidence, masks, extra_kp, extra_conf)
        row["overlay_path"] = f"{OVERLAYS_DIR}/{clip['clip_id']}.png"
        save_png(out_dir / row["overlay_path"], frame_grid(over))
    gt_path = _text(clip.get("ground_truth_path"))
    if gt_path:
        row.update(synthetic_accuracy(in_dir / gt_path, pose, masks, tracks))
    return row


def _use_people(clip: dict, params: AnnotateParams, ann: Annotators) -> bool:
    """The full-resolution multi-person pass applies to real clips whose source is known."""
    return (
        params.people.enabled
        and ann.names["pose"] == "mediapipe"
        and _text(clip.get("source_kind")) not in (None, "synthetic")
        and all(_text(clip.get(k)) for k in ("source_path", "source_frames", "source_to_clip"))
    )


def _people_at_source(clip: dict, params: AnnotateParams, H: int, W: int):
    """Pose + mask of the clip's most active person found at the source's resolution, plus the other
    people ([P,T,18,2], [P,T,18]), all in clip pixels; None if the source cannot be read or nobody is
    found there (the caller falls back to the clip-level pass)."""

    p = params.people
    try:
        src = Path(_text(clip["source_path"]))
        indices = [int(v) for v in _text(clip["source_frames"]).split(",")]
        sx, sy, ox, oy = parse_transform(_text(clip["source_to_clip"]))
        info = probe(src)
        scale = min(1.0, p.max_side / max(info.height, info.width))
        h, w = round(info.height * scale), round(info.width * scale)
        frames = read_frames(src, indices, height=h, width=w) if scale < 1 else read_frames(src, indices)
    except (VideoError, ValueError, OSError):
        return None
    if len(frames) != len(indices):
        return None
    # frames were resized by `scale`: a source-resolution pixel x sits at (x + 0.5)·scale − 0.5
    a, b = sx / (w / info.width), sy / (h / info.height)
    transform = (a, b, ox + 0.5 * (a - sx), oy + 0.5 * (b - sy))
    tracks = PeopleTracker(tile=p.tile, reseed_every=p.reseed_every, max_people=p.max_people).track(frames)
    tracks = [tr for tr in tracks if map_to_clip(tr.pose(), transform, H, W).found.any()]
    if not tracks:
        return None
    subject_track = tracks[choose_subject(tracks)]
    # other people must be seen steadily: brief, low-confidence tracks (lens flare, foliage) are noise
    tracks = [subject_track, *(tr for tr in tracks if tr is not subject_track and is_steady(tr))]
    poses = [map_to_clip(tr.pose(), transform, H, W) for tr in tracks]
    pose, others = poses[0], poses[1:]
    T = len(indices)
    masks = np.stack([clean_mask(mask_to_clip(tracks, t, transform, H, W) > 0.5) for t in range(T)])
    extra_kp = np.stack([q.keypoints for q in others]) if others else np.zeros((0, T, 18, 2), np.float32)
    extra_conf = np.stack([q.confidence for q in others]) if others else np.zeros((0, T, 18), np.float32)
    return pose, masks, extra_kp, extra_conf


def synthetic_accuracy(gt_path: Path, pose, masks: np.ndarray, tracks) -> dict[str, float]:
    """PCK@0.1, mask IoU and track EPE of the detections against the rendered ground truth."""

    gt = GroundTruth.load(gt_path)
    gt_tracks, gt_visible = ground_truth_tracks(gt, tracks.points[tracks.query_frame], tracks.query_frame)
    score = track_epe(tracks, gt_tracks, gt_visible)
    return {
        "pose_pck": float(pck(pose.keypoints, pose.confidence, gt.keypoints2d, gt.visible)),
        "mask_iou": float(mask_iou(masks, gt.mask)),
        "track_epe_px": float(score.epe_px),
    }


def reuse_previous(
    previous: pd.DataFrame | None, clip: dict, fingerprint: str, old_dir: Path, out_dir: Path
) -> dict | None:
    """The previous row of an unchanged clip (same content hash and annotator params), files linked over."""
    if previous is None or clip["clip_id"] not in previous.index:
        return None
    row = previous.loc[clip["clip_id"]].to_dict()
    if row.get("content_hash") != clip.get("content_hash") or row.get("params_fingerprint") != fingerprint:
        return None
    for key in ("annotation_path", "skeleton_path", "overlay_path"):
        rel = row.get(key)
        if isinstance(rel, str) and rel:
            src, dst = old_dir / rel, out_dir / rel
            if not src.is_file():
                return None
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.link(src, dst)
    return {"clip_id": clip["clip_id"], **row}
