"""The ``pretrain_base`` recipe (CPU profile): tiny VAE (→ its decoder fine-tuned on noisy latents) → tiny
text-to-video base DiT → depth network,
trained on the ingested clips, then held-out scores and sample videos. The flow
(``flows/pretrain_base.py``) only parses params and writes what this returns."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from components.annotation.mask import video_detect_rate
from components.backbone.spec import get_spec
from components.base.bundle import BaseBundle
from components.base.config import PretrainBaseParams
from components.base.sample import sample_video
from components.base.token_encoder import build_token_encoder
from components.base.train_base_dit import captions, encode_latents, train_base_dit, validation_loss
from components.base.train_depth import evaluate_depth, median_depth, train_depth
from components.base.train_vae import evaluate_vae, mean_frame, train_vae
from components.base.train_vae_decoder import train_vae_decoder
from components.data.clipset import load_clipset

PhaseLog = Callable[[str, int, dict[str, float]], None]


@dataclass
class BaseRun:
    """What one ``pretrain_base`` run made: the bundle to save, its scores, the per-phase loss curves
    (one row per step) and the sample videos (one ``[T,H,W,3]`` uint8 array per prompt)."""

    bundle: BaseBundle
    metrics: dict[str, Any]
    curves: dict[str, list[dict[str, float]]]
    samples: list[np.ndarray]


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 3)


def train_base(params: PretrainBaseParams, ckpt: Path, on_log: PhaseLog | None = None) -> BaseRun:
    """Train the three base models (each resumes from ``ckpt/<phase>`` when that run's checkpoints
    exist), score them on the held-out clips and sample ``params.samples.prompts``."""
    curves: dict[str, list[dict[str, float]]] = {}

    def logger(phase: str):
        def log_fn(step: int, logs: dict[str, float]) -> None:
            curves.setdefault(phase, []).append({"step": step, **logs})
            if on_log is not None:
                on_log(phase, step, logs)

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
    # held-out rendered clips (they carry depth) and held-out real clips, reported apart
    val_synthetic = [s for s in val if s.has_depth]
    val_real = [s for s in val if not s.has_depth]
    resumed = [vae_history.resumed_from]
    psnr_before_decoder = None
    if params.vae_decoder is not None:
        if val_synthetic:
            psnr_before_decoder = evaluate_vae(spec, vae, val_synthetic, mean_frame(train))["psnr"]
        crop = None if params.vae_crop is None else tuple(params.vae_crop[1:])
        vae, decoder_history = train_vae_decoder(
            train, spec, vae, params.vae_decoder, noise=params.vae_decoder_noise, crop=crop,
            person_weight=params.vae_person_weight, person_crops=params.vae_person_crops,
            seed=params.seed, ckpt_dir=ckpt / "vae_decoder", log_fn=logger("vae_decoder"),
        )  # fmt: skip
        resumed.append(decoder_history.resumed_from)
    models.vae = vae
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
        train, spec, models, text, params.dit, cond_dropout=params.cond_dropout,
        short_caption_prob=params.short_caption_prob,
        min_snr_gamma=params.dit_min_snr_gamma, seed=params.seed,
        latents=latents, ckpt_dir=ckpt / "dit", log_fn=logger("dit"),
    )  # fmt: skip
    models.transformer = transformer
    val_latents = encode_latents(spec, vae, val)
    val_loss = validation_loss(spec, models, val_latents, text.encode(captions(val)), seed=params.seed)
    with_depth = [s for s in train if s.has_depth]
    val_depth = [s for s in val if s.has_depth] or with_depth[:2]
    depth_net, depth_scores = None, {}
    resumed.append(dit_history.resumed_from)
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
        # the same clips before the decoder fine-tune (None: no fine-tune configured)
        "vae_psnr_val_before_decoder_finetune": _round(psnr_before_decoder),
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
    }
    return BaseRun(bundle=bundle, metrics=metrics, curves=curves, samples=frames)
