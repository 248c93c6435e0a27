"""The ``evaluate`` recipe: generate clips for the prompt set with the trained pipeline, compute the video
metrics on the first seed, the person metrics over ``evaluate.seeds`` (prompt set, held-out skeletons,
base alone, real clips: ``run.person_evaluation``) and collect the text-to-motion metrics. The flow
(``flows/evaluate.py``) writes the report from what this returns."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from components.data.clipset import ClipSetError, load_clipset
from components.dit.pipeline import MoSAPipeline
from components.evaluation.config import EvaluateParams
from components.evaluation.metric_registry import MetricResult, VideoSample, available_metrics
from components.evaluation.run import (
    SEEDED_METRICS,
    PersonRun,
    evaluate_samples,
    generate_all,
    held_out_clips,
    load_prompts,
    person_evaluation,
    to_samples,
)


@dataclass
class EvaluationRun:
    """What one evaluation measured: the metrics (``metrics/evaluate.json`` but its ``seconds``), each
    first-seed metric's full result, the person evaluation (None when no seeded metric ran), the
    clips of the first seed, the seconds per generated clip and the frame rate."""

    metrics: dict[str, Any]
    results: dict[str, MetricResult]
    person: PersonRun | None
    generated: list
    per_clip: float
    fps: float


def held_out_skeletons(params: EvaluateParams, pipe) -> tuple[list, str | None]:
    """The held-out clips to generate from (``evaluate.skeleton_clips`` of them) and, when there are
    none, why (missing annotate outputs never fail the stage: the from-skeleton metrics are null)."""
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


def run_evaluation(params: EvaluateParams) -> EvaluationRun:
    """Generate and measure (see the module docstring)."""
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
    reference = [VideoSample(frames=s.video, fps=fps, prompt=s.caption, sample_id=s.clip_id) for s in held]
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
    metrics.update({"prompts": len(prompts), "reference_clips": len(reference), "seeds": len(params.seeds)})
    return EvaluationRun(metrics, results, person, generated, per_clip, fps)
