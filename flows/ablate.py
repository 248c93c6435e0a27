"""Stage ``ablate@<variant>``: one of the paper's ablation rows on the CPU default — the MoSA modules
trained with ``train_dit``'s params and the variant's switches for ``ablate.steps`` steps, then the
skeleton-following check and video metrics on held-out clips
(DVC cmd: ``python -m flows.ablate --variant NAME``; ``evaluate`` tabulates the variants)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from prefect import flow

from components.config import ConfigError, load_section
from components.dit.config import TrainDiTParams
from components.dit.data import seed_cache
from components.evaluation.ablations import variant_params
from components.evaluation.config import AblateParams
from components.io.atomic import atomic_dir, write_text_atomic
from flows.stage import (
    dvc_dep_hashes,
    is_rank_zero,
    metrics_table,
    stage_checkpoints,
    stage_run,
    write_quarantine,
)

# Video metrics computed on each variant's generated clips (the held-out clips are the reference).
VIDEO_METRICS = ("fd_effnet_frames", "subject_consistency", "motion_smoothness", "temporal_jerk")


@flow(name="ablate", log_prints=True)
def ablate(variant: str, params_path: str = "params.yaml") -> dict:
    """Train and measure one ablation variant; writes ``reports/ablate/<variant>/``."""
    t0 = time.perf_counter()
    ablate_params: AblateParams = load_section("ablate", params_path)
    train_params: TrainDiTParams = load_section("train_dit", params_path)

    # lazy: torch and the models load after the params validate (a bad params.yaml fails fast)
    from components.annotation.overlay import save_png
    from components.dit.experiment import LOSS_KEYS, train_and_follow
    from components.evaluation.metric_registry import VideoSample
    from components.evaluation.run import evaluate_samples

    params = variant_params(train_params, ablate_params, variant)
    stage = f"ablate@{variant}"
    with stage_run(f"ablate-{variant.replace('_', '-')}", params, extra_tags={"variant": variant}) as run:
        run.set_tags({f"dvc.dep.{k}": v for k, v in dvc_dep_hashes(stage).items()})
        # keyed by everything ablate@<variant> declares in dvc.yaml (train_dit's cache is read where
        # train_dit wrote it); the variant's content-keyed cache folder is kept across runs
        ckpt = stage_checkpoints(
            stage, params, keep={Path(params.cache).name}, paths={"cache/train_dit": train_params.cache}
        )
        if is_rank_zero():
            seed_cache(Path(train_params.cache), Path(params.cache))
        out = train_and_follow(params, ckpt)
        if is_rank_zero():  # the DVC out exists even when nothing trains (structure off)
            variant_file = Path(params.checkpoints) / "variant.json"
            write_text_atomic(variant_file, json.dumps(ablate_params.variants[variant]) + "\n")
        fps = float(out.pipe.defaults.fps)
        generated = [
            VideoSample(frames=f, fps=fps, prompt=p)
            for f, p in zip(out.generated["mosa"], out.prompts, strict=True)
        ]
        reference = [VideoSample(frames=f, fps=fps) for f in out.references]
        video = evaluate_samples(list(VIDEO_METRICS), generated, reference)
        metrics: dict[str, Any] = {
            "variant": variant,
            "mosa": params.mosa.model_dump(mode="json"),
            "losses": params.losses.model_dump(mode="json"),
            "train_clips": out.train_clips,
            "clips_quarantined": len(out.quarantine),
            "steps": out.result.steps,
            "resumed_from": out.result.resumed_from,
            **{f"loss_{k}": out.tail_mean(k) for k in LOSS_KEYS},
            **{k: round(v, 5) for k, v in out.follow.items()},
            **{name: r.value for name, r in video.items()},
            **{f"{name}_reason": r.reason for name, r in video.items() if r.value is None},
            "follow_clips": len(out.references),
            "seconds": round(time.perf_counter() - t0, 2),
        }
        folder = ablate_params.reports / variant
        summary = metrics_table(f"ablate@{variant}", metrics, skip_dicts=True)
        if is_rank_zero():
            with atomic_dir(folder) as rep:
                save_png(rep / "follow_grid.png", out.grid())
                write_text_atomic(rep / "summary.md", summary)
                write_quarantine(rep, out.quarantine)
            run.finish(metrics, markdown=summary, metrics_file=folder / "metrics.json", artifacts=[folder])
    print(
        f"ablate@{variant}: " + ", ".join(f"{k} {v}" for k, v in metrics.items() if not isinstance(v, dict))
    )
    return metrics


def main(argv: list[str] | None = None) -> int:
    """``python -m flows.ablate --variant NAME [--params FILE]``; a params error exits 2 with its message."""
    parser = argparse.ArgumentParser(prog="python -m flows.ablate", description="Run one ablation variant.")
    parser.add_argument("--variant", required=True, help="a key of params.yaml ablate.variants")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    try:
        variants = load_section("ablate", args.params).variants
        if args.variant not in variants:  # before the flow starts (no Prefect server for a typo)
            raise KeyError(
                f"unknown ablation variant {args.variant!r}; ablate.variants has {sorted(variants)}"
            )
        ablate(variant=args.variant, params_path=args.params)
    except (ConfigError, KeyError) as exc:
        print(f"ablate: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
