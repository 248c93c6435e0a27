"""CogVideoX's v-prediction training objective, with the x̂₀ estimate the auxiliary losses decode.

With ``ᾱ = alphas_cumprod[t]`` (per sample) and Gaussian noise ``ε``:
``x_t = √ᾱ x₀ + √(1−ᾱ) ε`` (forward process), ``v = √ᾱ ε − √(1−ᾱ) x₀`` (velocity target) and
``x̂₀ = √ᾱ x_t − √(1−ᾱ) v̂`` (clean estimate from a predicted velocity). CogVideoX trains on the x̂₀ error
weighted by ``w_t = 1/(1−ᾱ_t)``; since ``x̂₀ − x₀ = −√(1−ᾱ)(v̂ − v)`` that equals the plain velocity MSE,
but x̂₀ is what the tracking and contact losses need after VAE decoding, so we compute it on the way.

``min_snr_weights`` is the Min-SNR-γ loss weighting (Hang et al., "Efficient Diffusion Training via
Min-SNR Weighting Strategy", ICCV 2023) for that objective, in a form that keeps zero-SNR timesteps:
the x̂₀-space weight ``1/(1−ᾱ) = SNR + 1`` is capped at ``γ``, i.e. the velocity MSE is scaled by
``min(SNR + 1, γ) / (SNR + 1)``. The published v-prediction form ``min(SNR, γ) / (SNR + 1)`` is 0 at the
final timestep of a zero-terminal-SNR schedule (CogVideoX's), which would never teach the prediction
sampling starts from. With γ ≥ the largest ``SNR + 1`` it is the plain objective.

Shapes are batch-first: latents ``[B, ...]`` (e.g. ``[B,F,C,h,w]``), timesteps ``[B]`` integer indices
into the 1-D ``alphas_cumprod`` of the scheduler (e.g. ``CogVideoXDDIMScheduler().alphas_cumprod``).
"""

from __future__ import annotations

import torch
from torch import Tensor


def _per_sample(alphas_cumprod: Tensor, t: Tensor, like: Tensor) -> Tensor:
    """``ᾱ_t`` gathered per sample and shaped ``[B,1,...]`` to broadcast against ``like``."""
    if alphas_cumprod.ndim != 1:
        raise ValueError(
            f"alphas_cumprod must be the scheduler's 1-D table [num_train_timesteps], got shape "
            f"{tuple(alphas_cumprod.shape)}"
        )
    if t.ndim != 1 or t.shape[0] != like.shape[0]:
        raise ValueError(
            f"timesteps t must be [B] = [{like.shape[0]}] (one per sample), got shape {tuple(t.shape)}"
        )
    if t.dtype.is_floating_point or t.dtype == torch.bool:
        raise ValueError(f"timesteps t must be integer indices into alphas_cumprod, got dtype {t.dtype}")
    n = alphas_cumprod.shape[0]
    if t.numel() and (int(t.min()) < 0 or int(t.max()) >= n):
        raise ValueError(f"timesteps t must lie in 0..{n - 1}, got min {int(t.min())} max {int(t.max())}")
    a = alphas_cumprod.to(device=like.device)[t.to(like.device)]
    return a.reshape(-1, *([1] * (like.ndim - 1)))


def _check_same(name: str, x: Tensor, ref: Tensor) -> None:
    if x.shape != ref.shape:
        raise ValueError(f"{name} must have the shape of x0 {tuple(ref.shape)}, got {tuple(x.shape)}")


def add_noise(x0: Tensor, noise: Tensor, t: Tensor, alphas_cumprod: Tensor) -> Tensor:
    """Forward process ``x_t = √ᾱ_t x₀ + √(1−ᾱ_t) ε``; same shape and dtype as ``x0``."""
    _check_same("noise", noise, x0)
    a = _per_sample(alphas_cumprod, t, x0)
    return (a.sqrt() * x0 + (1 - a).sqrt() * noise).to(x0.dtype)


def v_target(x0: Tensor, noise: Tensor, t: Tensor, alphas_cumprod: Tensor) -> Tensor:
    """Velocity target ``v = √ᾱ_t ε − √(1−ᾱ_t) x₀``; same shape and dtype as ``x0``."""
    _check_same("noise", noise, x0)
    a = _per_sample(alphas_cumprod, t, x0)
    return (a.sqrt() * noise - (1 - a).sqrt() * x0).to(x0.dtype)


def x0_from_v(x_t: Tensor, v_pred: Tensor, t: Tensor, alphas_cumprod: Tensor) -> Tensor:
    """Clean-latent estimate ``x̂₀ = √ᾱ_t x_t − √(1−ᾱ_t) v̂`` (differentiable in ``v_pred``)."""
    _check_same("v_pred", v_pred, x_t)
    a = _per_sample(alphas_cumprod, t, x_t)
    return (a.sqrt() * x_t - (1 - a).sqrt() * v_pred).to(v_pred.dtype)


def min_snr_weights(t: Tensor, alphas_cumprod: Tensor, gamma: float) -> Tensor:
    """Per-sample weights ``[B]`` on the velocity MSE: ``min(SNR_t + 1, γ) / (SNR_t + 1)`` (module
    docstring), in (0, 1]; 1 where ``SNR_t + 1 ≤ γ`` (the noisier timesteps), ``γ/(SNR_t + 1)`` below."""
    if not gamma > 0:
        raise ValueError(f"min-SNR gamma must be > 0, got {gamma}")
    a = _per_sample(alphas_cumprod, t, t.float()).flatten().double()
    snr1 = 1.0 / (1.0 - a).clamp_min(1e-12)  # SNR + 1 = 1/(1-ᾱ)
    return (snr1.clamp(max=gamma) / snr1).float()


def v_prediction_loss(
    v_pred: Tensor,
    x0: Tensor,
    noise: Tensor,
    t: Tensor,
    alphas_cumprod: Tensor,
    min_snr_gamma: float | None = None,
) -> tuple[Tensor, Tensor]:
    """CogVideoX diffusion loss and the clean estimate: ``(loss, x0_hat)``.

    ``loss = mean_b [ w_t · mean((x̂₀ − x₀)²) ]`` with ``w_t = 1/(1−ᾱ_t)``, computed in float32 (or
    float64 if the inputs are) for stability under bf16 training. ``x0_hat`` keeps the graph to
    ``v_pred`` so decoded frames can feed the tracking and contact losses. ``x0`` and ``noise`` are
    treated as constants (they come from the frozen VAE and the sampler). ``min_snr_gamma`` scales each
    sample's term by ``min_snr_weights`` (None: CogVideoX's plain objective).
    """
    _check_same("v_pred", v_pred, x0)
    _check_same("noise", noise, x0)
    a = _per_sample(alphas_cumprod, t, x0)
    one_minus = 1 - a.flatten()
    if bool((one_minus <= 0).any()):
        bad = t[(one_minus <= 0).cpu()].tolist()
        raise ValueError(
            f"1 - alphas_cumprod[t] is 0 at timesteps {bad}: the weight 1/(1-ᾱ_t) is infinite; "
            "sample t from timesteps with noise (ᾱ_t < 1)"
        )
    x0c, noise_c = x0.detach(), noise.detach()
    x_t = add_noise(x0c, noise_c, t, alphas_cumprod)
    x0_hat = x0_from_v(x_t, v_pred, t, alphas_cumprod)
    compute = torch.float64 if x0_hat.dtype == torch.float64 else torch.float32
    err = (x0_hat.to(compute) - x0c.to(compute)).pow(2).reshape(x0.shape[0], -1).mean(dim=1)
    per_sample = err / one_minus.to(compute)
    if min_snr_gamma is not None:
        per_sample = per_sample * min_snr_weights(t, alphas_cumprod, min_snr_gamma).to(per_sample)
    return per_sample.mean(), x0_hat
