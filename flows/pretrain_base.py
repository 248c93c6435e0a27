"""Stage ``pretrain_base`` (CPU profile only): tiny VAE → tiny text-to-video base DiT → depth network,
trained on the ingested clips, so that ``train_dit`` can freeze a base like the paper does
(DVC cmd: ``python -m flows.pretrain_base``). GPU profiles set ``enabled: false``.
The recipe is ``components.base.recipe.train_base``; this flow writes what it returns."""

from __future__ import annotations

import sys
import time
from typing import Any

from prefect import flow

from components.base.config import PretrainBaseParams
from components.config import load_section
from components.io.atomic import atomic_dir, write_json_atomic, write_text_atomic
from flows.stage import curve_csv, is_rank_zero, metrics_table, stage_checkpoints, stage_main, stage_run


def _skip(params: PretrainBaseParams) -> dict[str, Any]:
    """GPU profiles: the base is pretrained; write placeholders DVC expects and say why."""
    reason = "disabled: GPU profiles load a pretrained base (train_dit.base_path)"
    with atomic_dir(params.output) as out, atomic_dir(params.reports) as rep, atomic_dir(params.plots):
        write_json_atomic(out / "SKIPPED.json", {"reason": reason})
        write_text_atomic(rep / "summary.md", f"# pretrain_base\n\n{reason}\n")
    params.checkpoints.mkdir(parents=True, exist_ok=True)
    return {"skipped": True, "reason": reason}


@flow(name="pretrain_base", log_prints=True)
def pretrain_base(params_path: str = "params.yaml", overrides: dict[str, Any] | None = None) -> dict:
    """Train the tiny base models and save ``models/base`` (see components/base)."""
    params: PretrainBaseParams = load_section("pretrain_base", params_path, overrides)

    # lazy: torch and the models load after the params validate (a bad params.yaml fails fast)
    import numpy as np

    from components.annotation.overlay import save_png
    from components.base.recipe import train_base

    if not params.enabled:
        with stage_run("pretrain_base", params) as run:
            metrics = _skip(params)
            run.finish(metrics, markdown=f"# pretrain_base\n\n{metrics['reason']}\n")
        return metrics
    t0 = time.perf_counter()
    # keyed by everything the stage declares in dvc.yaml: another run's checkpoints are never resumed
    ckpt = stage_checkpoints("pretrain_base", params)
    with stage_run("pretrain_base", params) as run:
        made = train_base(params, ckpt, on_log=run.log_phase_step)
        metrics: dict[str, Any] = {**made.metrics, "seconds": round(time.perf_counter() - t0, 2)}
        if is_rank_zero():
            made.bundle.save_pretrained(params.output)
            with atomic_dir(params.plots) as plots, atomic_dir(params.reports) as reports:
                for phase, rows in made.curves.items():
                    write_text_atomic(plots / f"{phase}_loss.csv", curve_csv(rows))
                grid = np.concatenate([np.concatenate(list(v[::4]), axis=1) for v in made.samples], axis=0)
                save_png(reports / "samples.png", grid)
                summary = metrics_table("pretrain_base", metrics)
                summary += "\nSamples (rows: " + "; ".join(params.samples.prompts) + "): `samples.png`\n"
                write_text_atomic(reports / "summary.md", summary)
            run.finish(metrics, markdown=summary, artifacts=[params.reports / "samples.png"])
    print("pretrain_base: " + ", ".join(f"{k} {v}" for k, v in metrics.items()))
    return metrics


if __name__ == "__main__":
    sys.exit(stage_main(pretrain_base))
