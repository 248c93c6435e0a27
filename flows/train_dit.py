"""Stage ``train_dit``: the MoSA modules (structure generation blocks + HADC) trained around the frozen
base with L_diff + λ₁L_mask + λ₂L_track + λ₃L_contact through the DeepSpeed engine; then a check that
the trained model follows held-out skeletons better than the base alone
(DVC cmd: ``python -m flows.train_dit``)."""

from __future__ import annotations

import sys
import time
from typing import Any

from prefect import flow

from components.config import load_section
from components.dit.config import TrainDiTParams
from components.io.atomic import atomic_dir, write_text_atomic
from flows.stage import (
    curve_csv,
    is_rank_zero,
    metrics_table,
    stage_checkpoints,
    stage_main,
    stage_run,
    write_quarantine,
)


@flow(name="train_dit", log_prints=True)
def train_dit(params_path: str = "params.yaml", overrides: dict[str, Any] | None = None) -> dict:
    """Train the MoSA modules, save the generation pipeline to ``models/dit``, measure skeleton following."""
    params: TrainDiTParams = load_section("train_dit", params_path, overrides)

    # lazy: torch and the models load after the params validate (a bad params.yaml fails fast)
    from components.annotation.overlay import save_png
    from components.dit.experiment import LOSS_KEYS, train_and_follow
    from components.dit.mosa import count_parameters

    t0 = time.perf_counter()
    # keyed by everything the stage declares in dvc.yaml: another run's checkpoints are never resumed
    ckpt = stage_checkpoints("train_dit", params)
    with stage_run("train_dit", params) as run:
        out = train_and_follow(params, ckpt, run.step_logger())
        result = out.result
        steps_done = result.steps - (result.resumed_from or 0)
        train_seconds = max(result.seconds, 1e-9)
        counts = count_parameters(out.model)
        metrics: dict[str, Any] = {
            "steps": result.steps,
            # the names: loss_diffusion (logged per step as "diff"), loss_mask, loss_track, ...
            **{f"loss_{'diffusion' if k == 'diff' else k}": out.tail_mean(k) for k in LOSS_KEYS},
            "loss_total": out.tail_mean("loss"),
            "samples_per_sec": round(steps_done * params.batch_size * params.grad_accum / train_seconds, 4),
            "zero_stage": result.zero_stage,
            "world_size": result.world_size,
            "resumed_from": result.resumed_from,
            "clips_train": out.train_clips,
            "clips_quarantined": len(out.quarantine),
            "follow_clips": len(out.references),
            **{k: round(float(v), 5) for k, v in out.follow.items()},
            "parameters_trainable": counts["trainable"],
            "parameters_frozen": counts["frozen"],
            "seconds": round(time.perf_counter() - t0, 2),
        }
        if is_rank_zero():
            out.pipe.save_pretrained(params.output)
            with atomic_dir(params.plots) as plots, atomic_dir(params.reports) as rep:
                write_text_atomic(plots / "loss.csv", curve_csv(out.history))
                write_quarantine(rep, out.quarantine)
                save_png(rep / "follow_grid.png", out.grid())
                summary = metrics_table("train_dit", metrics)
                summary += (
                    "\n`follow_grid.png`: per held-out clip, rows skeleton | base alone | MoSA | ground "
                    "truth (every 4th frame). `person_region_l1` = mean |generated − ground truth| inside "
                    "the dilated person mask (lower is better); `skeleton_mask_iou` = IoU of the moving "
                    "foreground with the skeleton region (higher is better).\n"
                )
                write_text_atomic(rep / "summary.md", summary)
            run.finish(metrics, markdown=summary, artifacts=[params.reports])
    print("train_dit: " + ", ".join(f"{k} {v}" for k, v in metrics.items()))
    return metrics


if __name__ == "__main__":
    sys.exit(stage_main(train_dit))
