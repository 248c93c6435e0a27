"""Text-to-video sampling from a base bundle, with classifier-free guidance; the MoSA model plugs in here.

``sample_latents`` runs the bundle's scheduler from seeded Gaussian latents: CogVideoX's
``CogVideoXDDIMScheduler`` (deterministic DDIM on a v-prediction: ``x̂₀ = √ᾱ_t x_t − √(1−ᾱ_t) v̂``, then
``x_prev = a x_t + b x̂₀``) or Wan's flow-matching Euler scheduler (``x_prev = x_t + (σ_prev − σ_t) v̂``).
Any diffusers scheduler with ``set_timesteps``/``step`` and the backbone's prediction type works the
same way. A private copy of the scheduler is used, so the bundle's is never mutated.

Guidance: ``v̂ = v̂(∅) + g·(v̂(c) − v̂(∅))`` with ``∅`` the empty prompt's token states, evaluated as one
batch of ``2B`` ordered ``[∅ × B; prompts]``; with ``g = 1`` only the conditional prediction is made
(batch ``B``). ``predict_fn(latents [N,F,C,h,w], timesteps [N], text_emb [N,L,D]) -> v̂`` with
``N = 2B`` or ``B`` replaces the base transformer (the MoSA model with its structure branch goes
here; per-sample extra inputs such as skeleton latents are repeated in the same order when
``N = 2B``); by default it is ``spec.predict`` on the bundle's transformer. Noise comes from a
``torch.Generator`` seeded with ``seed`` on the CPU, so a seed gives the same video on any device.
``sample_video`` decodes with the VAE and returns uint8 frames.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from components.backbone.spec import BackboneSpec
from components.base.bundle import BaseBundle

PredictFn = Callable[[Tensor, Tensor, Tensor], Tensor]


def latent_shape(bundle: BaseBundle) -> tuple[int, int, int, int]:
    """``(F, C, h, w)`` of the bundle's clips."""
    spec, tr = bundle.spec, bundle.models.transformer
    spatial = spec.vae_spatial_compression(bundle.models.vae)
    return spec.latent_shape(
        bundle.frames, bundle.height, bundle.width, spec.latent_channels(tr), spec.patch_size(tr)[1], spatial
    )


def fresh_scheduler(scheduler: Any) -> Any:
    """A new scheduler of the same class and config (sampling state is per call)."""
    return type(scheduler).from_config(scheduler.config)


@torch.no_grad()
def sample_latents(
    bundle: BaseBundle,
    prompts: Sequence[str],
    steps: int = 25,
    guidance: float = 5.0,
    seed: int = 0,
    predict_fn: PredictFn | None = None,
    latents: Tensor | None = None,
    progress: bool = True,
) -> Tensor:
    """Denoised latents ``[B,F,C,h,w]`` for ``prompts`` (see the module docstring).

    ``latents`` replaces the seeded initial noise (shape ``[B,F,C,h,w]``, already scaled by the
    scheduler's ``init_noise_sigma`` where it has one; flow-matching schedulers start from unit noise).
    """
    if isinstance(prompts, str):
        raise TypeError("prompts must be a list of strings, got a single str; wrap it as [prompt]")
    prompts = list(prompts)
    if not prompts:
        raise ValueError("prompts is empty: give at least one prompt")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if guidance < 0:
        raise ValueError(f"guidance must be >= 0 (1 = no guidance), got {guidance}")
    spec, tr = bundle.spec, bundle.models.transformer
    p = next(tr.parameters())
    n = len(prompts)
    shape = (n, *latent_shape(bundle))
    scheduler = fresh_scheduler(bundle.models.scheduler)
    scheduler.set_timesteps(steps, device=p.device)
    if latents is None:
        g = torch.Generator().manual_seed(seed)
        latents = torch.randn(shape, generator=g) * getattr(scheduler, "init_noise_sigma", 1.0)
    elif tuple(latents.shape) != shape:
        raise ValueError(
            f"latents must have shape {shape} ([B,F,C,h,w] for {n} prompts), got {tuple(latents.shape)}"
        )
    x = latents.to(device=p.device, dtype=p.dtype)
    cond = bundle.text.encode(prompts).to(x)
    guided = guidance != 1.0
    if guided:
        uncond = bundle.text.encode([""]).to(x).expand_as(cond)
        text = torch.cat([uncond, cond])
    if predict_fn is None:
        predict_fn = _base_predict(spec, tr)
    tr.eval()
    for t in tqdm(scheduler.timesteps, desc="sample", unit="step", disable=not progress):
        x_in = scheduler.scale_model_input(x, t) if hasattr(scheduler, "scale_model_input") else x
        if guided:
            v_u, v_c = predict_fn(torch.cat([x_in, x_in]), t.expand(2 * n), text).chunk(2)
            v = v_u + guidance * (v_c - v_u)
        else:
            v = predict_fn(x_in, t.expand(n), cond)
        if v.shape != x.shape:
            raise ValueError(f"predict_fn returned shape {tuple(v.shape)}, expected {tuple(x.shape)}")
        x = scheduler.step(v.to(x.dtype), t, x, return_dict=False)[0]
    return x


def _base_predict(spec: BackboneSpec, transformer: torch.nn.Module) -> PredictFn:
    def predict(latents: Tensor, timesteps: Tensor, text_emb: Tensor) -> Tensor:
        return spec.predict(transformer, latents, timesteps, text_emb)["v_pred"]

    return predict


@torch.no_grad()
def decode_frames(bundle: BaseBundle, latents: Tensor) -> np.ndarray:
    """Latents ``[B,F,C,h,w]`` → uint8 frames ``[B,T,H,W,3]`` through the bundle's VAE (clamped to ±1)."""
    video = bundle.spec.vae_decode(bundle.models.vae.eval(), latents).float().clamp(-1, 1)
    return ((video + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 4, 1).cpu().numpy()


def sample_video(
    bundle: BaseBundle,
    prompts: Sequence[str],
    steps: int = 25,
    guidance: float = 5.0,
    seed: int = 0,
    predict_fn: PredictFn | None = None,
    latents: Tensor | None = None,
    progress: bool = True,
) -> np.ndarray:
    """uint8 frames ``[B,T,H,W,3]`` generated for ``prompts`` (``sample_latents`` then ``decode_frames``)."""
    z = sample_latents(bundle, prompts, steps, guidance, seed, predict_fn, latents, progress)
    return decode_frames(bundle, z)
