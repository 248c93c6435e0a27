"""Stage ``pretrain_motion``: the 3D structure transformer (text → motion), trained and evaluated
(DVC cmd: ``python -m flows.pretrain_motion``)."""

from __future__ import annotations

import sys
from typing import Any

from prefect import flow

from components.config import load_section
from components.io.atomic import atomic_dir, write_text_atomic
from components.motion.config import PretrainMotionParams
from flows.stage import curve_csv, is_rank_zero, stage_checkpoints, stage_main, stage_run

HEADLINE = (
    "r_precision_top1", "r_precision_top3", "fid", "mm_dist", "diversity", "multimodality",
    "recon_mpjpe_mm", "foot_skate_ratio",
)  # fmt: skip


def _markdown(metrics: dict[str, Any]) -> str:
    lines = [
        "# pretrain_motion",
        "",
        "Text-to-motion metrics on the held-out split, **our evaluator on our data** (not comparable",
        "with published HumanML3D numbers). `gt_` = the held-out ground-truth motions through the same",
        "evaluators.",
        f"Each figure is the mean over {metrics.get('evaluators', 1)} independently seeded evaluators; "
        "`*_evaluator_sd` is their spread.",
        "",
        "| metric | generated | ± 95% | ground truth |",
        "|---|---|---|---|",
    ]
    for k in HEADLINE:
        if k in metrics:
            lines.append(
                f"| {k} | {metrics.get(k)} | {metrics.get(k + '_ci95', '')} | {metrics.get('gt_' + k, '')} |"
            )
    ref = metrics.get("gt_other_clips_fid")
    if isinstance(ref, float) and ref > 0 and isinstance(metrics.get("fid"), float):
        lines += [
            "",
            f"FID references (real vs real): `gt_fid` {metrics.get('gt_fid')} resamples the held-out set "
            f"against itself (a finite-sample floor); `gt_other_clips_fid` {metrics['gt_other_clips_fid']} "
            "compares it with the training clips of the same meanings. Generated `fid` is "
            f"{metrics['fid'] / ref:.2f}x the latter.",
        ]
    lines += ["", "| other | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in metrics.items() if not any(k.endswith(h) for h in HEADLINE)]
    return "\n".join(lines) + "\n"


@flow(name="pretrain_motion", log_prints=True)
def pretrain_motion(params_path: str = "params.yaml", overrides: dict[str, Any] | None = None) -> dict:
    """Train the VQ-VAE and the generator, train the evaluator, evaluate, save ``models/motion``."""
    params: PretrainMotionParams = load_section("pretrain_motion", params_path, overrides)

    # lazy: torch and the models load after the params validate (a bad params.yaml fails fast)
    from components.motion.pretrain import train_and_evaluate

    # keyed by everything the stage declares in dvc.yaml (code, the motion set, params): a rerun after a
    # crash resumes its own checkpoints, a changed run never resumes another's
    ckpt = stage_checkpoints("pretrain_motion", params)
    with stage_run("pretrain_motion", params) as run:
        model, metrics, phases, evaluators = train_and_evaluate(params, ckpt, on_log=run.log_phase_step)
        if is_rank_zero():
            with atomic_dir(params.plots) as plots, atomic_dir(params.reports) as reports:
                for ph in phases:
                    write_text_atomic(plots / f"{ph.name}_loss.csv", curve_csv(ph.history))
                summary = _markdown(metrics)
                write_text_atomic(reports / "summary.md", summary)
                # lazy: torch and the models load after the params validate (a bad params.yaml fails fast)
                from components.annotation.overlay import save_png
                from components.motion.pretrain import prompt_grid

                ev = params.evaluation  # the grid shows motions sampled as they were measured
                grid = prompt_grid(model, guidance=ev.guidance, top_k=ev.top_k, temperature=ev.temperature)
                save_png(reports / "prompts_grid.png", grid)
            model.save_pretrained(params.output)
            for k, evaluator in enumerate(evaluators):  # evaluator/, evaluator_1/, ...
                evaluator.save_pretrained(params.output / ("evaluator" if k == 0 else f"evaluator_{k}"))
            run.finish(metrics, markdown=summary, artifacts=[params.output, params.plots])
    print(
        "pretrain_motion: "
        + ", ".join(f"{k} {metrics[k]:.3g}" for k in HEADLINE if isinstance(metrics.get(k), float))
    )
    return metrics


if __name__ == "__main__":
    sys.exit(stage_main(pretrain_motion))
