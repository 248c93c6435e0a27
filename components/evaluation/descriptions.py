"""What each metric of ``metrics/evaluate.json`` computes, in the words the report and README show."""

from __future__ import annotations

from typing import Any

DESCRIPTIONS = {
    "fvd_i3d": "Fréchet video distance on I3D features (null without i3d_path)",
    "fd_effnet_frames": "Fréchet distance of EfficientNet-Lite0 frame features vs held-out real clips "
    "(not FVD)",
    "fd_effnet_frames_reference": "its noise floor: the same distance between two disjoint halves of the "
    "real reference clips (mean over random splits)",
    "clipsim": "mean CLIP cosine of prompt and frames (null without clip_path)",
    "subject_consistency": "VBench formula on EfficientNet-Lite0 features of the person region",
    "background_consistency": "VBench formula on EfficientNet-Lite0 features with the person masked out",
    "motion_smoothness": "1 − error of odd frames interpolated from their neighbours along DIS flow",
    "dynamic_degree": "share of videos judged dynamic by VBench's rule on DIS flow",
    "imaging_quality_proxy": "Laplacian sharpness and exposure proxy in [0,1] (not MUSIQ)",
    "pose_confidence": "mean MediaPipe keypoint confidence on generated frames",
    "temporal_jerk": "mean |third difference| of LK tracks in the person region / frame diagonal "
    "(lower is better)",
    "contact_violation": "share of frames with human points inside the scene hull of depth-net point "
    "maps (a geometric upper bound, not the paper's VLM judgement)",
    "skeleton_alignment_pck": "PCK@0.1 of MediaPipe keypoints on the clips generated from the prompts vs "
    "the generated conditioning skeleton (ours); mean over evaluate.seeds",
    "person_detect_rate": "share of frames of the clips generated from the prompts in which MediaPipe Pose "
    "finds a person with mean visibility of the 18 OpenPose keypoints >= 0.5 (ours; says a person is "
    "there, not that it has the skeleton's pose); mean over evaluate.seeds",
    "person_detect_rate_base": "person_detect_rate of the base alone (structure branch off), same prompts "
    "and seeds",
    "skeleton_alignment_pck_base": "skeleton_alignment_pck of the base alone against the skeleton MoSA is "
    "conditioned on for the same prompt and seed (the base never sees it: the floor)",
    "person_detect_rate_from_skeleton": "person_detect_rate of clips generated from held-out clips' "
    "skeletons (annotate stage) with their captions as prompts",
    "person_detect_rate_from_skeleton_base": "the same with the base alone (skeleton ignored)",
    "skeleton_alignment_pck_from_skeleton": "PCK@0.1 of MediaPipe keypoints on clips generated from "
    "held-out skeletons vs the clips' true keypoints (rendered clips: the exact projection of their 3D "
    "joints; real clips: the annotate stage's detections that drew the skeleton)",
    "skeleton_alignment_pck_from_skeleton_base": "the same with the base alone (skeleton ignored: the floor)",
    "person_detect_rate_reference": "person_detect_rate on the real held-out clips of those skeletons, at "
    "the generated clips' size (the ceiling; one measurement, no seed)",
    "skeleton_alignment_pck_reference": "skeleton_alignment_pck of MediaPipe on the real held-out clips vs "
    "the same true keypoints (the ceiling; on real clips, whose truth is MediaPipe's own detection, 1.0 "
    "by construction)",
    "generate_seconds_per_clip": "wall time per clip of the first seed's prompt set (MoSA)",
    "added_generations": "clips generated for the person metrics beyond the first seed's prompt set "
    "(other seeds, base alone, held-out skeletons)",
    "added_generation_seconds": "their wall time",
    "seeds": "how many seeds the person metrics average over (<metric>_sd: their spread)",
    "mask_skeleton_iou": "IoU of the detected person mask with the thick-drawn conditioning skeleton (ours)",
}
# Metrics of the generated clips measured on the first seed of evaluate.seeds only (the person metrics
# above average over every seed).
FIRST_SEED_ONLY = (
    "fvd_i3d", "fd_effnet_frames", "clipsim", "subject_consistency", "background_consistency",
    "motion_smoothness", "dynamic_degree", "imaging_quality_proxy", "pose_confidence", "temporal_jerk",
    "contact_violation", "mask_skeleton_iou",
)  # fmt: skip
DESCRIPTIONS.update({k: f"{DESCRIPTIONS[k]}; first seed of evaluate.seeds only" for k in FIRST_SEED_ONLY})


def describe(metrics: dict[str, Any]) -> dict[str, str]:
    """Descriptions of ``metrics``' keys: the fixed ones, the text-to-motion figures carried over from
    ``pretrain_motion``, and the ``*_sd`` spreads over seeds."""
    t2m_note = "from pretrain_motion (our evaluator on our data)"
    descriptions = {**DESCRIPTIONS, **{k: t2m_note for k in metrics if k.startswith("t2m_")}}
    descriptions.update(
        {
            k: f"sample standard deviation of {k[:-3]} over evaluate.seeds"
            for k in metrics
            if k.endswith("_sd")
        }
    )
    return descriptions
