"""Stage ``evaluate``: generate clips for the repo's prompt set with the trained pipeline, compute the
video metrics (paper metrics where their models are configured, honest substitutes under their own
names), collect the text-to-motion metrics, write ``reports/eval/index.html``
(DVC cmd: ``python -m flows.evaluate``)."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from prefect import flow

from components.config import load_section
from components.config.sections.evaluate import EvaluateParams
from components.evaluation.ablations import ablation_markdown, load_variants
from components.io.atomic import atomic_dir, write_text_atomic
from flows.stage import stage_main, stage_run

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
    "skeleton_alignment_pck": "PCK@0.1 of detected keypoints vs the conditioning skeleton (ours)",
    "mask_skeleton_iou": "IoU of the detected person mask with the thick-drawn conditioning skeleton (ours)",
}


@flow(name="evaluate", log_prints=True)
def evaluate(params_path: str = "params.yaml", overrides: dict[str, Any] | None = None) -> dict:
    """Generate, measure and report (see the module docstring)."""
    from components.data.clipset import load_clipset
    from components.dit.pipeline import MoSAPipeline
    from components.evaluation.registry import VideoSample
    from components.evaluation.report import write_report
    from components.evaluation.run import evaluate_samples, generate_all, load_prompts, to_samples

    params: EvaluateParams = load_section("evaluate", params_path, overrides)
    t0 = time.perf_counter()
    with stage_run("evaluate", params) as run:
        pipe = MoSAPipeline.from_pretrained(params.pipeline)
        prompts = load_prompts(params.prompts, params.limit)
        fps = pipe.defaults.fps
        generated = generate_all(pipe, prompts, params.seed, params.steps, params.guidance, params.camera)
        samples = to_samples(pipe, generated, fps)
        held = [s for s in load_clipset(params.ingest) if s.split != "train"][: params.reference_clips]
        reference = [
            VideoSample(frames=s.video, fps=fps, prompt=s.caption, sample_id=s.clip_id) for s in held
        ]
        results = evaluate_samples(
            params.metrics, samples, reference, optional=params.optional_metrics,
            i3d_path=params.i3d_path, clip_path=params.clip_path, dino_path=params.dino_path,
        )  # fmt: skip
        metrics: dict[str, Any] = {name: r.value for name, r in results.items()}
        metrics.update({f"{name}_reason": r.reason for name, r in results.items() if r.value is None})
        metrics.update({f"{name}_frames": r.frames for name, r in results.items() if r.frames is not None})
        if params.motion_metrics.is_file():
            t2m = json.loads(params.motion_metrics.read_text())
            for k in ("fid", "r_precision_top1", "r_precision_top3", "mm_dist", "diversity", "multimodality",
                      "gt_fid", "gt_other_clips_fid", "gt_r_precision_top3", "recon_mpjpe_mm",
                      "foot_skate_ratio"):  # fmt: skip
                metrics[f"t2m_{k}"] = t2m.get(k)
        metrics.update({"prompts": len(prompts), "reference_clips": len(reference)})
        metrics["seconds"] = round(time.perf_counter() - t0, 2)
        with atomic_dir(params.reports) as rep:
            clips = [{"prompt": g.prompt, "motion_prompt": g.motion_prompt, "frames": g.frames,
                      "skeleton": g.skeleton} for g in generated]  # fmt: skip
            t2m_note = "from pretrain_motion (our evaluator on our data)"
            descriptions = {**DESCRIPTIONS, **{k: t2m_note for k in metrics if k.startswith("t2m_")}}
            write_report(rep, metrics, descriptions, clips, fps)
            details = {name: r.as_dict() for name, r in results.items()}
            write_text_atomic(rep / "metrics_detail.json", json.dumps(details, indent=2, default=str) + "\n")
            summary = "# evaluate\n\n| metric | value |\n|---|---|\n" + "".join(
                f"| {k} | {v} |\n" for k, v in metrics.items()
            )
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
    from components.evaluation.registry import MetricError

    try:
        return stage_main(evaluate, argv)
    except MetricError as exc:
        print(f"evaluate: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
