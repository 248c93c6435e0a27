"""Train the tiny text-to-video base DiT of the CPU profile, with the backbone's own objective.

The VAE is frozen here, so each clip's latents are computed once (``spec.vae_encode``, posterior
mean) and kept in memory, as are the captions' token states. Per step (``DiTBatches``, a pure
function of the step, so resumes are exact):

- clips: a fresh seeded permutation per epoch;
- caption variants: with probability ``short_caption_prob`` an item trains under one of its clip's
  short rewordings instead of its caption (``components.data.caption_variants``);
- condition dropout: with probability ``cond_dropout`` a caption is replaced by the empty prompt's
  states, which teaches the unconditional prediction that classifier-free guidance needs;
- timesteps: CogVideoX (v-prediction) draws integer ``t`` uniformly in ``[0, N)``; Wan (flow
  matching) draws ``u ~ U(0, 1)`` and uses ``σ = s·u / (1 + (s−1)·u)`` with the scheduler's ``shift``
  ``s`` (the same warping its sampler applies to the σ grid), ``t = σ·N``;
- noise ε ~ N(0, I).

Loss: CogVideoX ``components.losses.diffusion.v_prediction_loss`` (x̂₀ error weighted by 1/(1−ᾱ_t));
Wan the flow-matching MSE between the predicted and the true velocity ``ε − x₀``.
``min_snr_gamma`` (CogVideoX only; ``components.losses.diffusion.min_snr_weights``) down-weights the
low-noise timesteps: at uniform weight the tiny base spent its few updates on recovering the input's
noise at high SNR (on a single clip after 300 updates its x̂₀ error at t = 300 was 3× that at t = 999)
and let that noise through to its own patch of x̂₀, which decodes as 16-px tile speckle.
``validation_loss`` always scores the plain objective, on fixed timesteps and fixed noise, so two
evaluations (before/after training, runs with and without Min-SNR) compare.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from components.backbone.spec import BackboneSpec, BaseModels, flow_shift
from components.base.phase import History, LogFn, fit_phase, unit_video
from components.base.token_encoder import TokenTextEncoder
from components.base.train_vae import check_clips, epoch_index
from components.data.caption_variants import caption_variants, pick_variant
from components.data.clipset import ClipSample
from components.losses.diffusion import v_prediction_loss
from components.training.config import TrainPhaseParams


class Denoiser(nn.Module):
    """The base transformer behind ``spec.predict``, as one module the engine can call."""

    def __init__(self, spec: BackboneSpec, transformer: nn.Module) -> None:
        super().__init__()
        self.spec = spec
        self.transformer = transformer

    def forward(self, noisy_latents: Tensor, timesteps: Tensor, text_emb: Tensor) -> Tensor:
        return self.spec.predict(self.transformer, noisy_latents, timesteps, text_emb)["v_pred"]


def captions(samples: Sequence[ClipSample]) -> list[str]:
    """Each clip's caption (its motion prompt when the caption is empty)."""
    return [s.caption or s.motion_prompt for s in samples]


def encode_caption_variants(
    text: TokenTextEncoder, samples: Sequence[ClipSample]
) -> tuple[Tensor, list[int]]:
    """Token states ``[N,V,L,D]`` of every clip's caption variants (``V`` the most any clip has; a clip
    with fewer repeats its caption in the spare slots) and each clip's variant count."""
    variants = [caption_variants(s.caption, s.motion_prompt) for s in samples]
    width = max(len(v) for v in variants)
    emb = text.encode([t for v in variants for t in v + [v[0]] * (width - len(v))])
    return emb.reshape(len(samples), width, *emb.shape[1:]), [len(v) for v in variants]


@torch.no_grad()
def encode_latents(
    spec: BackboneSpec, vae: nn.Module, samples: Sequence[ClipSample], progress: bool = False
) -> Tensor:
    """Posterior-mean latents ``[N,F,C,h,w]`` (float32, CPU) of the clips through the frozen VAE."""
    check_clips(samples, spec, "encode_latents")
    vae.eval()
    out = [
        spec.vae_encode(vae, unit_video(s.video, s.clip_id).unsqueeze(0))[0].float().cpu()
        for s in tqdm(samples, desc="encode latents", unit="clip", disable=not progress)
    ]
    return torch.stack(out)


def sample_timesteps(spec: BackboneSpec, scheduler: Any, n: int, rng: np.random.Generator) -> Tensor:
    """Training timesteps ``[n]`` for the backbone's objective (see the module docstring)."""
    total = int(scheduler.config.num_train_timesteps)
    if spec.objective == "v_prediction":
        return torch.from_numpy(rng.integers(0, total, size=n)).long()
    shift = flow_shift(scheduler)
    u = rng.random(n)
    sigma = shift * u / (1 + (shift - 1) * u)
    return torch.from_numpy(sigma * total).float()


def eval_timesteps(spec: BackboneSpec, scheduler: Any, k: int = 5) -> Tensor:
    """``k`` timesteps evenly spread over the noise levels (strictly inside the schedule's ends)."""
    total = int(scheduler.config.num_train_timesteps)
    frac = (np.arange(k) + 0.5) / k
    if spec.objective == "v_prediction":
        return torch.from_numpy(np.floor(frac * total)).long()
    return torch.from_numpy(frac * total).float()


def check_min_snr(spec: BackboneSpec, min_snr_gamma: float | None) -> None:
    """Refuse a min-SNR weighting for a backbone whose objective is not v-prediction."""
    if min_snr_gamma is not None and spec.objective != "v_prediction":
        raise ValueError(
            f"min_snr_gamma weighs the v-prediction objective (cogvideox); the {spec.name} base trains "
            "with flow matching: set pretrain_base.dit_min_snr_gamma to null"
        )


def diffusion_loss(
    spec: BackboneSpec,
    scheduler: Any,
    v_pred: Tensor,
    x0: Tensor,
    noise: Tensor,
    t: Tensor,
    min_snr_gamma: float | None = None,
) -> Tensor:
    """The backbone's training loss for one prediction (v-prediction or flow matching); ``min_snr_gamma``
    weighs the v-prediction terms (module docstring; flow matching refuses it)."""
    if spec.objective == "v_prediction":
        loss, _ = v_prediction_loss(
            v_pred, x0, noise, t.long(), scheduler.alphas_cumprod, min_snr_gamma=min_snr_gamma
        )
        return loss
    check_min_snr(spec, min_snr_gamma)
    target = spec.velocity_target(scheduler, x0, noise, t)
    return F.mse_loss(v_pred.float(), target.float())


class DiTBatches:
    """``batches(step)`` for the Trainer: latents, text states (caption variant, condition dropout), noise,
    timesteps. ``text_emb`` is ``[N,L,D]`` (one caption per clip) or ``[N,V,L,D]`` with ``counts[i]``
    variants of clip ``i`` (``encode_caption_variants``)."""

    def __init__(
        self,
        spec: BackboneSpec,
        scheduler: Any,
        latents: Tensor,
        text_emb: Tensor,
        empty_emb: Tensor,
        batch_size: int,
        cond_dropout: float = 0.1,
        seed: int = 0,
        counts: Sequence[int] | None = None,
        short_caption_prob: float = 0.0,
    ) -> None:
        if not 0.0 <= cond_dropout <= 1.0:
            raise ValueError(f"cond_dropout must lie in [0, 1], got {cond_dropout}")
        if not 0.0 <= short_caption_prob <= 1.0:
            raise ValueError(f"short_caption_prob must lie in [0, 1], got {short_caption_prob}")
        if text_emb.ndim == 3:
            text_emb = text_emb.unsqueeze(1)
        counts = [1] * text_emb.shape[0] if counts is None else [int(c) for c in counts]
        if len(counts) != text_emb.shape[0] or not all(1 <= c <= text_emb.shape[1] for c in counts):
            raise ValueError(
                f"counts {counts} must give 1..{text_emb.shape[1]} variants for each of "
                f"{text_emb.shape[0]} clips"
            )
        if latents.shape[0] != text_emb.shape[0]:
            raise ValueError(
                f"{latents.shape[0]} latents but {text_emb.shape[0]} text embeddings; one per clip"
            )
        if empty_emb.shape != text_emb.shape[2:]:
            raise ValueError(
                f"empty-prompt states {tuple(empty_emb.shape)} must match one caption's "
                f"{tuple(text_emb.shape[2:])}"
            )
        self.spec, self.scheduler = spec, scheduler
        self.latents, self.text_emb, self.empty_emb = latents, text_emb, empty_emb
        self.batch_size, self.cond_dropout, self.seed = batch_size, cond_dropout, seed
        self.counts, self.short_caption_prob = counts, short_caption_prob

    def __call__(self, step: int) -> dict[str, Tensor]:
        n, b = self.latents.shape[0], self.batch_size
        idx = [epoch_index(step, k, b, n, self.seed) for k in range(b)]
        rng = np.random.default_rng([self.seed, step, 2])
        dropped = torch.from_numpy(rng.random(b) < self.cond_dropout)
        vrng = np.random.default_rng([self.seed, step, 3])
        picks = [pick_variant(vrng, self.counts[i], self.short_caption_prob) for i in idx]
        chosen = self.text_emb[idx, picks]
        text = torch.where(dropped[:, None, None], self.empty_emb.unsqueeze(0), chosen)
        t = sample_timesteps(self.spec, self.scheduler, b, rng)
        g = torch.Generator().manual_seed(int(rng.integers(2**62)))
        noise = torch.randn(self.latents[idx].shape, generator=g)
        return {
            "latents": self.latents[idx],
            "text_emb": text,
            "noise": noise,
            "timesteps": t,
            "dropped": dropped,
        }


def train_base_dit(
    samples: Sequence[ClipSample],
    spec: BackboneSpec,
    models: BaseModels,
    text: TokenTextEncoder,
    phase: TrainPhaseParams,
    *,
    cond_dropout: float = 0.1,
    short_caption_prob: float = 0.0,
    min_snr_gamma: float | None = None,
    seed: int = 0,
    latents: Tensor | None = None,
    ckpt_dir: Path | str | None = None,
    log_fn: LogFn | None = None,
    progress: bool = True,
) -> tuple[nn.Module, History]:
    """Train ``models.transformer`` on the clips, ``models.vae`` frozen; returns it frozen and the history.

    ``latents`` (``[N,F,C,h,w]``, from ``encode_latents``) skips the encoding when the caller has them;
    ``min_snr_gamma`` weighs the timesteps (module docstring; None: the backbone's plain objective).
    """
    spec.check_transformer(models.transformer)
    check_min_snr(spec, min_snr_gamma)
    models.vae.eval().requires_grad_(False)
    if latents is None:
        latents = encode_latents(spec, models.vae, samples, progress)
    if latents.shape[0] != len(samples):
        raise ValueError(f"latents hold {latents.shape[0]} clips for {len(samples)} samples; one per clip")
    text_emb, counts = encode_caption_variants(text, samples)
    empty = text.encode([""])[0]
    batches = DiTBatches(
        spec, models.scheduler, latents, text_emb, empty, phase.batch_size, cond_dropout, seed,
        counts=counts, short_caption_prob=short_caption_prob,
    )  # fmt: skip
    scheduler = models.scheduler

    def loss_fn(engine: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        dtype = next(engine.module.parameters()).dtype
        x0, noise, t = batch["latents"].to(dtype), batch["noise"].to(dtype), batch["timesteps"]
        v_pred = engine(spec.add_noise(scheduler, x0, noise, t), t, batch["text_emb"].to(dtype))
        loss = diffusion_loss(spec, scheduler, v_pred, x0, noise, t, min_snr_gamma)
        return loss, {"cond_dropped": float(batch["dropped"].float().mean())}

    models.transformer.train().requires_grad_(True)
    trained, history = fit_phase(
        Denoiser(spec, models.transformer), phase, seed, loss_fn, batches, ckpt_dir, log_fn, progress
    )
    return trained.transformer, history


@torch.no_grad()
def validation_loss(
    spec: BackboneSpec,
    models: BaseModels,
    latents: Tensor,
    text_emb: Tensor,
    timesteps: Tensor | None = None,
    seed: int = 0,
) -> float:
    """Mean diffusion loss over clips × ``timesteps`` (default ``eval_timesteps``) with fixed noise."""
    ts = eval_timesteps(spec, models.scheduler) if timesteps is None else timesteps
    transformer = models.transformer.eval()
    p = next(transformer.parameters())
    g = torch.Generator().manual_seed(seed)
    total = 0.0
    for i in range(latents.shape[0]):
        x0 = latents[i : i + 1].to(p)
        emb = text_emb[i : i + 1].to(p)
        for t in ts:
            noise = torch.randn(x0.shape, generator=g).to(p)
            tt = t.reshape(1)
            v = spec.predict(transformer, spec.add_noise(models.scheduler, x0, noise, tt), tt, emb)["v_pred"]
            total += float(diffusion_loss(spec, models.scheduler, v, x0, noise, tt))
    return total / (latents.shape[0] * len(ts))
