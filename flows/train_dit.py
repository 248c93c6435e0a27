"""Stage ``train_dit``: the MoSA modules (structure generation blocks + HADC) trained around the frozen
base with L_diff + λ₁L_mask + λ₂L_track + λ₃L_contact through the DeepSpeed engine; then a check that
the trained model follows held-out skeletons better than the base alone
(DVC cmd: ``python -m flows.train_dit``)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from prefect import flow

from components.config import load_section
from components.config.schema import TrainDiTParams
from components.io.atomic import atomic_dir, write_text_atomic
from flows.stage import is_rank_zero, stage_main, stage_run

LOSS_KEYS = ("diff", "mask", "track", "contact")


def checkpoint_dir(params: TrainDiTParams) -> Path:
    """This run's checkpoints: params (not paths), base and annotation tables and the training code."""
    from components.dit import mosa, train

    data = params.model_dump(
        mode="json", exclude={"ingest", "annotate", "base", "motion", "output", "reports", "plots",
                              "checkpoints", "cache", "follow"},
    )  # fmt: skip
    h = hashlib.sha256(json.dumps(data, sort_keys=True).encode())
    for f in (params.base / "base.json", params.annotate / "annotations.parquet"):
        if f.is_file():
            h.update(f.read_bytes())
    for mod in (mosa, train):
        h.update(Path(mod.__file__).read_bytes())
    return params.checkpoints / h.hexdigest()[:12]


def _curve_csv(history: list[dict[str, float]]) -> str:
    keys = sorted({k for row in history for k in row}, key=lambda k: (k != "step", k))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys, restval="")
    w.writeheader()
    w.writerows(history)
    return buf.getvalue()


def _tail_mean(history: list[dict[str, float]], key: str, n: int = 20) -> float | None:
    values = [row[key] for row in history if key in row][-n:]
    return round(sum(values) / len(values), 6) if values else None


@flow(name="train_dit", log_prints=True)
def train_dit(params_path: str = "params.yaml", overrides: dict[str, Any] | None = None) -> dict:
    """Train the MoSA modules, save the generation pipeline to ``models/dit``, measure skeleton following."""
    import numpy as np

    from components.annotation.overlay import save_png
    from components.base.bundle import load_base
    from components.data.clipset import load_clipset
    from components.dit.data import build_examples, check_sample
    from components.dit.follow import compare_following, score_following
    from components.dit.mosa import MoSAConfig, count_parameters
    from components.dit.pipeline import MoSAPipeline
    from components.dit.train import DiTTrainConfig, train_mosa
    from components.losses.total import LossWeights
    from components.motion.structure import StructureModel
    from components.training.engine import EngineConfig

    params: TrainDiTParams = load_section("train_dit", params_path, overrides)
    t0 = time.perf_counter()
    ckpt = checkpoint_dir(params)
    if is_rank_zero() and params.checkpoints.is_dir():
        for old in params.checkpoints.iterdir():
            if old.is_dir() and old != ckpt:
                shutil.rmtree(old)  # another params/data/code: never resumable
    with stage_run("train_dit", params) as run:
        history: list[dict[str, float]] = []

        def log_fn(step: int, logs: dict[str, float]) -> None:
            history.append({"step": step, **logs})
            if run.run_id is not None:
                import mlflow

                mlflow.log_metrics({k: float(v) for k, v in logs.items()}, step=step)

        bundle = load_base(params.base)
        spec = bundle.spec
        samples = load_clipset(params.ingest, params.annotate, annotated_only=True, progress=True)
        quarantine = [{"clip_id": s.clip_id, "reason": r} for s in samples if (r := check_sample(s))]
        bad = {q["clip_id"] for q in quarantine}
        usable = [s for s in samples if s.clip_id not in bad]
        train = [s for s in usable if s.split == "train"] or usable
        held = [s for s in usable if s.split != "train" and s.has_depth] or train[: params.follow.clips]
        mosa_cfg = MoSAConfig(**params.mosa)
        train_cfg = DiTTrainConfig(
            weights=LossWeights(**params.losses), aux_every=params.aux_every,
            aux_samples=params.aux_samples, track_points=params.track_points, seed=params.seed,
        )  # fmt: skip
        examples = build_examples(
            train, spec, bundle.models.vae, bundle.text.encode, structure=mosa_cfg.skeleton_encoder,
            track_points=params.track_points, cache_dir=params.cache, progress=True,
        )  # fmt: skip
        engine_cfg = EngineConfig(
            zero_stage=params.zero_stage, lr=params.lr, weight_decay=params.weight_decay,
            warmup_steps=min(params.warmup_steps, params.steps), total_steps=params.steps,
            min_lr_ratio=params.min_lr_ratio, grad_accum=params.grad_accum, micro_batch=params.batch_size,
            grad_clip=params.grad_clip, checkpoint_every=params.checkpoint_every, seed=params.seed,
        )  # fmt: skip
        depth_fn = bundle.depth.eval().requires_grad_(False) if bundle.depth is not None else None
        model, result = train_mosa(
            examples, bundle.models, spec, mosa_cfg, train_cfg, engine_cfg, ckpt_dir=ckpt,
            depth_fn=depth_fn, log_fn=log_fn,
        )  # fmt: skip
        model.eval()
        motion = StructureModel.from_pretrained(params.motion)
        pipe = MoSAPipeline(bundle, model, motion)

        # skeleton following on held-out clips: the same prompt, seed and skeleton, MoSA vs base alone
        fp = params.follow
        picked = held[: fp.clips]
        gens: dict[str, list[np.ndarray]] = {"mosa": [], "base": []}
        for i, s in enumerate(picked):
            for name, use in (("mosa", True), ("base", False)):
                out = pipe(
                    s.caption or "a person moves", seed=fp.seed + i, steps=fp.steps, guidance=fp.guidance,
                    skeleton=s.skeleton, use_structure=use, progress=False,
                )  # fmt: skip
                gens[name].append(out.frames)
        refs = [s.video for s in picked]
        masks = [s.mask for s in picked]
        skels = [s.skeleton for s in picked]
        follow = compare_following(
            score_following(gens["mosa"], refs, masks, skels),
            score_following(gens["base"], refs, masks, skels),
        )
        steps_done = result.steps - (result.resumed_from or 0)
        train_seconds = max(result.seconds, 1e-9)
        metrics: dict[str, Any] = {
            "steps": result.steps,
            **{f"loss_{k}": _tail_mean(history, k) for k in LOSS_KEYS},
            "loss_total": _tail_mean(history, "loss"),
            "samples_per_sec": round(steps_done * params.batch_size * params.grad_accum / train_seconds, 4),
            "zero_stage": result.zero_stage,
            "world_size": result.world_size,
            "resumed_from": result.resumed_from,
            "clips_train": len(train),
            "clips_quarantined": len(quarantine),
            "follow_clips": len(picked),
            **{k: round(float(v), 5) for k, v in follow.items()},
            "parameters_trainable": count_parameters(model)["trainable"],
            "parameters_frozen": count_parameters(model)["frozen"],
            "seconds": round(time.perf_counter() - t0, 2),
        }
        if is_rank_zero():
            pipe.save_pretrained(params.output)
            with atomic_dir(params.plots) as plots, atomic_dir(params.reports) as rep:
                write_text_atomic(plots / "loss.csv", _curve_csv(history))
                write_text_atomic(
                    rep / "quarantine.jsonl",
                    "".join(json.dumps(q, sort_keys=True) + "\n" for q in quarantine),
                )
                rows = []
                for i in range(len(picked)):
                    cols = [skels[i], gens["base"][i], gens["mosa"][i], refs[i]]
                    rows.append(np.concatenate([np.concatenate(list(c[::4]), axis=1) for c in cols], axis=0))
                save_png(rep / "follow_grid.png", np.concatenate(rows, axis=0))
                summary = "# train_dit\n\n| metric | value |\n|---|---|\n" + "".join(
                    f"| {k} | {v} |\n" for k, v in metrics.items()
                )
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
