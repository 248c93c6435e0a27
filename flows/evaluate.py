"""Stage ``evaluate``: generate clips for the repo's prompt set with the trained pipeline, compute the
video metrics (paper metrics where their models are configured, honest substitutes under their own
names) on the first seed, the person metrics (``person_detect_rate``, ``skeleton_alignment_pck``) over
``evaluate.seeds`` on the prompt set, on clips generated from held-out annotated skeletons, with the base
alone and on the real clips (``components.evaluation.run.person_evaluation``), collect the text-to-motion
metrics, write ``reports/eval/index.html`` (DVC cmd: ``python -m flows.evaluate``)."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from prefect import flow

from components.config import load_section
from components.evaluation.ablations import ablation_markdown, load_variants
from components.evaluation.config import EvaluateParams
from components.io.atomic import atomic_dir, write_text_atomic
from flows.stage import metrics_table, stage_main, stage_run

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


def held_out_skeletons(params: EvaluateParams, pipe) -> tuple[list, str | None]:
    """The held-out clips to generate from (``evaluate.skeleton_clips`` of them) and, when there are
    none, why (missing annotate outputs never fail the stage: the from-skeleton metrics are null)."""
    from components.data.clipset import ClipSetError
    from components.evaluation.run import held_out_clips

    if params.skeleton_clips == 0:
        return [], "evaluate.skeleton_clips is 0"
    d = pipe.defaults
    try:
        clips, aside = held_out_clips(
            params.ingest, params.annotate, params.skeleton_clips, pipe.mosa.config.structure,
            d.frames, d.height, d.width,
        )  # fmt: skip
    except ClipSetError as exc:
        return [], str(exc)
    for a in aside:
        print(f"evaluate: held-out clip {a['clip_id']} set aside: {a['reason']}")
    if not clips:
        why = "; ".join(sorted({a["reason"] for a in aside})) or "none with split != train"
        return [], f"no usable held-out annotated clip in {params.annotate}: {why}"
    return clips, None


@flow(name="evaluate", log_prints=True)
def evaluate(params_path: str = "params.yaml", overrides: dict[str, Any] | None = None) -> dict:
    """Generate, measure and report (see the module docstring)."""
    from components.data.clipset import load_clipset
    from components.dit.pipeline import MoSAPipeline
    from components.evaluation.metric_registry import VideoSample, available_metrics
    from components.evaluation.report import write_report
    from components.evaluation.run import (
        SEEDED_METRICS,
        evaluate_samples,
        generate_all,
        load_prompts,
        person_evaluation,
        to_samples,
    )

    params: EvaluateParams = load_section("evaluate", params_path, overrides)
    t0 = time.perf_counter()
    with stage_run("evaluate", params) as run:
        pipe = MoSAPipeline.from_pretrained(params.pipeline)
        prompts = load_prompts(params.prompts, params.limit)
        fps = pipe.defaults.fps
        names = params.metrics or available_metrics()
        seeded = [m for m in SEEDED_METRICS if m in names]  # measured on every seed below
        first_seed = params.seeds[0] * len(prompts)
        t_gen = time.perf_counter()
        generated = generate_all(pipe, prompts, first_seed, params.steps, params.guidance, params.camera)
        per_clip = (time.perf_counter() - t_gen) / len(prompts)
        samples = to_samples(pipe, generated, fps)
        held = [s for s in load_clipset(params.ingest) if s.split != "train"][: params.reference_clips]
        reference = [
            VideoSample(frames=s.video, fps=fps, prompt=s.caption, sample_id=s.clip_id) for s in held
        ]
        first_only = [m for m in names if m not in seeded]
        results = evaluate_samples(
            first_only, samples, reference, optional=params.optional_metrics,
            i3d_path=params.i3d_path, clip_path=params.clip_path, dino_path=params.dino_path,
        ) if first_only else {}  # fmt: skip
        person = None
        if seeded:
            clips, why = held_out_skeletons(params, pipe)
            person = person_evaluation(
                pipe, prompts, generated, clips, params.seeds, params.steps, params.guidance,
                params.camera, seeded, fps, clips_reason=why, optional=params.optional_metrics,
            )  # fmt: skip
            t = person.timing
            print(
                f"evaluate: first prompt set {per_clip:.1f} s/clip; {t['added_clips']} added generations "
                f"(seeds {params.seeds}, base alone, {len(clips)} held-out skeletons) took "
                f"{t['added_seconds']:.0f} s, {t['seconds_per_added_clip']} s/clip"
            )
        metrics: dict[str, Any] = {name: r.value for name, r in results.items()}
        metrics.update({f"{name}_reason": r.reason for name, r in results.items() if r.value is None})
        metrics.update({f"{name}_frames": r.frames for name, r in results.items() if r.frames is not None})
        if person is not None:
            metrics.update(person.metrics)
            metrics["generate_seconds_per_clip"] = round(per_clip, 3)
            metrics["added_generations"] = person.timing["added_clips"]
            metrics["added_generation_seconds"] = person.timing["added_seconds"]
        if params.motion_metrics.is_file():
            t2m = json.loads(params.motion_metrics.read_text())
            for k in ("fid", "r_precision_top1", "r_precision_top3", "mm_dist", "diversity", "multimodality",
                      "gt_fid", "gt_other_clips_fid", "gt_r_precision_top3", "recon_mpjpe_mm",
                      "foot_skate_ratio"):  # fmt: skip
                metrics[f"t2m_{k}"] = t2m.get(k)
        metrics.update(
            {"prompts": len(prompts), "reference_clips": len(reference), "seeds": len(params.seeds)}
        )
        metrics["seconds"] = round(time.perf_counter() - t0, 2)
        with atomic_dir(params.reports) as rep:
            clips = person.prompt_clips if person is not None else [
                {"prompt": g.prompt, "motion_prompt": g.motion_prompt, "frames": g.frames,
                 "skeleton": g.skeleton} for g in generated
            ]  # fmt: skip
            t2m_note = "from pretrain_motion (our evaluator on our data)"
            descriptions = {**DESCRIPTIONS, **{k: t2m_note for k in metrics if k.startswith("t2m_")}}
            descriptions.update(
                {
                    k: f"sample standard deviation of {k[:-3]} over evaluate.seeds"
                    for k in metrics
                    if k.endswith("_sd")
                }
            )
            skeleton_clips = person.skeleton_clips if person is not None else []
            write_report(rep, metrics, descriptions, clips, fps, skeleton_clips=skeleton_clips)
            details: dict[str, Any] = {name: r.as_dict() for name, r in results.items()}
            if person is not None:
                details.update(person.details)
                details["timing"] = {"first_prompt_set_seconds_per_clip": round(per_clip, 3), **person.timing}
            write_text_atomic(rep / "metrics_detail.json", json.dumps(details, indent=2, default=str) + "\n")
            summary = metrics_table("evaluate", metrics)
            ablations = load_variants(params.ablations)
            if ablations:
                steps = next((r.get("steps") for r in ablations.values() if r.get("steps")), None)
                write_text_atomic(rep / "ablations.md", ablation_markdown(ablations, steps))
                summary += f"\nAblations: {len(ablations)} variants in `ablations.md`.\n"
            write_text_atomic(rep / "summary.md", summary)
        run.finish(metrics, markdown=summary, artifacts=[params.reports])
    print("evaluate: " + ", ".join(f"{k} {v}" for k, v in metrics.items() if not k.endswith("_reason")))
    return metrics


def main(argv: list[str] | None = None) -> int:
    """``python -m flows.evaluate``: exit 1 naming the metric when one that is not optional raises."""
    from components.evaluation.metric_registry import MetricError

    try:
        return stage_main(evaluate, argv)
    except MetricError as exc:
        print(f"evaluate: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
