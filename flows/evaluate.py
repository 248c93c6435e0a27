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


@flow(name="evaluate", log_prints=True)
def evaluate(params_path: str = "params.yaml", overrides: dict[str, Any] | None = None) -> dict:
    """Generate, measure and report (see the module docstring)."""
    params: EvaluateParams = load_section("evaluate", params_path, overrides)

    # lazy: torch and the models load after the params validate (a bad params.yaml fails fast)
    from components.evaluation.descriptions import describe
    from components.evaluation.experiment import run_evaluation
    from components.evaluation.report import write_report

    t0 = time.perf_counter()
    with stage_run("evaluate", params) as run:
        made = run_evaluation(params)
        metrics, results, person, per_clip, fps = (
            made.metrics,
            made.results,
            made.person,
            made.per_clip,
            made.fps,
        )
        metrics["seconds"] = round(time.perf_counter() - t0, 2)
        with atomic_dir(params.reports) as rep:
            clips = person.prompt_clips if person is not None else [
                {"prompt": g.prompt, "motion_prompt": g.motion_prompt, "frames": g.frames,
                 "skeleton": g.skeleton} for g in made.generated
            ]  # fmt: skip
            descriptions = describe(metrics)
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
    # lazy: the metric registry imports numpy and the annotation room; only a failing run needs it
    from components.evaluation.metric_registry import MetricError

    try:
        return stage_main(evaluate, argv)
    except MetricError as exc:
        print(f"evaluate: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
