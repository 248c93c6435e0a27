"""Stage ``pretrain_base`` (CPU profile only): tiny VAE → tiny text-to-video base DiT → depth network,
trained on the ingested clips, so that ``train_dit`` can freeze a base like the paper does
(DVC cmd: ``python -m flows.pretrain_base``). GPU profiles set ``enabled: false``."""

from __future__ import annotations

import csv
import io
import sys
import time
from pathlib import Path
from typing import Any

from prefect import flow

from components.base.config import PretrainBaseParams
from components.config import load_section
from components.io.atomic import atomic_dir, write_json_atomic, write_text_atomic
from flows.stage import checkpoint_folder, is_rank_zero, run_fingerprint, stage_main, stage_run


def _curve_csv(history: list[dict[str, float]]) -> str:
    keys = sorted({k for row in history for k in row}, key=lambda k: (k != "step", k))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    w.writerows(history)
    return buf.getvalue()


def _history(result: Any) -> list[dict[str, float]]:
    rows = getattr(result, "losses", result)
    return [dict(r) for r in rows]


def checkpoint_dir(params: PretrainBaseParams) -> Path:
    """This run's checkpoints, keyed by everything the stage declares in dvc.yaml (code, data, params);
    a changed run never resumes another's checkpoints (their folders are removed)."""
    return checkpoint_folder(params.checkpoints, run_fingerprint("pretrain_base", params))


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 3)


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
    import numpy as np

    from components.annotation.mask import video_detect_rate
    from components.annotation.overlay import save_png
    from components.backbone.spec import get_spec
    from components.base.bundle import BaseBundle
    from components.base.sample import sample_video
    from components.base.text import build_token_encoder
    from components.base.train_depth import evaluate_depth, median_depth, train_depth
    from components.base.train_dit import captions, encode_latents, train_base_dit, validation_loss
    from components.base.train_vae import evaluate_vae, mean_frame, train_vae
    from components.data.clipset import load_clipset

    params: PretrainBaseParams = load_section("pretrain_base", params_path, overrides)
    if not params.enabled:
        with stage_run("pretrain_base", params) as run:
            metrics = _skip(params)
            run.finish(metrics, markdown=f"# pretrain_base\n\n{metrics['reason']}\n")
        return metrics
    t0 = time.perf_counter()
    ckpt = checkpoint_dir(params)
    with stage_run("pretrain_base", params) as run:
        curves: dict[str, list] = {}

        def logger(phase: str):
            def log_fn(step: int, logs: dict[str, float]) -> None:
                curves.setdefault(phase, []).append({"step": step, **logs})
                if run.run_id is not None:
                    import mlflow

                    mlflow.log_metrics({f"{phase}/{k}": float(v) for k, v in logs.items()}, step=step)

            return log_fn

        samples = load_clipset(params.input, progress=True)
        train = [s for s in samples if s.split == "train"] or samples
        val = [s for s in samples if s.split != "train"] or samples[:2]
        spec = get_spec(params.backbone)
        tiny = params.tiny
        models = spec.build_tiny(tiny)
        vae, vae_history = train_vae(
            train, spec, models.vae, params.vae, beta=params.vae_beta, crop=params.vae_crop,
            person_weight=params.vae_person_weight, person_crops=params.vae_person_crops,
            seed=params.seed, ckpt_dir=ckpt / "vae", log_fn=logger("vae"),
        )  # fmt: skip
        models.vae = vae
        # held-out rendered clips (they carry depth) and held-out real clips, reported apart
        val_synthetic = [s for s in val if s.has_depth]
        val_real = [s for s in val if not s.has_depth]
        vae_scores = evaluate_vae(spec, vae, val_synthetic, mean_frame(train)) if val_synthetic else {}
        vae_real = evaluate_vae(spec, vae, val_real, mean_frame(train)) if val_real else {}
        # the detector's verdict on the reconstructions bounds what any sample decoded by this VAE shows
        recon_detect = (
            video_detect_rate(vae_scores["reconstructions"]) if val_synthetic else None,
            video_detect_rate([s.video for s in val_synthetic]) if val_synthetic else None,
        )
        text = build_token_encoder(
            params.text_encoder.name, params.text_encoder.path, params.text_encoder.max_tokens
        )
        latents = encode_latents(spec, vae, train)
        transformer, dit_history = train_base_dit(
            train, spec, models, text, params.dit, cond_dropout=params.cond_dropout, seed=params.seed,
            latents=latents, ckpt_dir=ckpt / "dit", log_fn=logger("dit"),
        )  # fmt: skip
        models.transformer = transformer
        val_latents = encode_latents(spec, vae, val)
        val_loss = validation_loss(spec, models, val_latents, text.encode(captions(val)), seed=params.seed)
        with_depth = [s for s in train if s.has_depth]
        val_depth = [s for s in val if s.has_depth] or with_depth[:2]
        depth_net, depth_scores, resumed = None, {}, [vae_history.resumed_from, dit_history.resumed_from]
        if with_depth:
            const = median_depth(with_depth)
            cfg = params.depth_net.model_copy(update={"init_depth": const})
            depth_net, depth_history = train_depth(
                with_depth,
                cfg,
                params.depth,
                seed=params.seed,
                ckpt_dir=ckpt / "depth",
                log_fn=logger("depth"),
            )
            depth_scores = evaluate_depth(depth_net, val_depth, const)
            resumed.append(depth_history.resumed_from)
        bundle = BaseBundle(
            spec=spec, models=models, text=text, depth=depth_net,
            config={"tiny": tiny.model_dump(mode="json"), "frames": train[0].video.shape[0],
                    "height": train[0].video.shape[1], "width": train[0].video.shape[2], "fps": 16.0},
        )  # fmt: skip
        sp = params.samples
        frames = sample_video(bundle, sp.prompts, steps=sp.steps, guidance=sp.guidance, seed=sp.seed)
        metrics: dict[str, Any] = {
            "clips_train": len(train),
            "clips_val": len(val),
            # PSNR of held-out synthetic clips (the targets' domain) and of held-out real clips
            "vae_psnr_val": _round(vae_scores.get("psnr")),
            "vae_psnr_mean_frame_val": _round(vae_scores.get("psnr_mean_frame")),
            "vae_psnr_val_clips": vae_scores.get("clips", 0),
            "vae_psnr_person_val": _round(vae_scores.get("psnr_person")),
            "vae_recon_person_detect_rate_val": _round(recon_detect[0]),
            "vae_recon_person_detect_rate_val_reference": _round(recon_detect[1]),
            "vae_psnr_val_real": _round(vae_real.get("psnr")),
            "vae_psnr_val_real_clips": vae_real.get("clips", 0),
            **({} if vae_scores else {"vae_psnr_val_reason": "no held-out synthetic clip in the val split"}),
            "dit_val_loss": round(float(val_loss), 5),
            "dit_final_loss": curves["dit"][-1]["loss"] if curves.get("dit") else None,
            "depth_absrel_val": depth_scores.get("abs_rel"),
            "depth_absrel_constant_val": depth_scores.get("abs_rel_constant"),
            "depth_delta1_val": depth_scores.get("delta1"),
            # the latest step any phase resumed from (None: every phase trained from step 0)
            "resumed_from": max((r for r in resumed if r is not None), default=None),
            "seconds": round(time.perf_counter() - t0, 2),
        }
        if is_rank_zero():
            bundle.save(params.output)
            with atomic_dir(params.plots) as plots, atomic_dir(params.reports) as reports:
                for phase, rows in curves.items():
                    write_text_atomic(plots / f"{phase}_loss.csv", _curve_csv(rows))
                grid = np.concatenate([np.concatenate(list(v[::4]), axis=1) for v in frames], axis=0)
                save_png(reports / "samples.png", grid)
                summary = "# pretrain_base\n\n| metric | value |\n|---|---|\n" + "".join(
                    f"| {k} | {v} |\n" for k, v in metrics.items()
                )
                summary += "\nSamples (rows: " + "; ".join(sp.prompts) + "): `samples.png`\n"
                write_text_atomic(reports / "summary.md", summary)
            run.finish(metrics, markdown=summary, artifacts=[params.reports / "samples.png"])
    print("pretrain_base: " + ", ".join(f"{k} {v}" for k, v in metrics.items()))
    return metrics


if __name__ == "__main__":
    sys.exit(stage_main(pretrain_base))
