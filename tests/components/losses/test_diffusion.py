"""v-prediction loss: known answers, the x̂₀/velocity identity, and the real CogVideoX schedule."""

from __future__ import annotations

import math

import pytest
import torch

from components.losses.diffusion import (
    add_noise,
    min_snr_weights,
    v_prediction_loss,
    v_target,
    x0_from_v,
)


def _cogvideox_alphas() -> torch.Tensor:
    from diffusers import CogVideoXDDIMScheduler

    return CogVideoXDDIMScheduler().alphas_cumprod


def test_zero_loss_and_exact_x0_when_v_pred_is_true_velocity():
    g = torch.Generator().manual_seed(0)
    alphas = torch.linspace(0.99, 0.01, 50)
    x0, noise = torch.randn(3, 2, 4, 5, 5, generator=g), torch.randn(3, 2, 4, 5, 5, generator=g)
    t = torch.tensor([0, 17, 49])
    loss, x0_hat = v_prediction_loss(v_target(x0, noise, t, alphas), x0, noise, t, alphas)
    assert loss.item() == pytest.approx(0.0, abs=1e-10)
    torch.testing.assert_close(x0_hat, x0, atol=1e-5, rtol=0)


def test_hand_computed_value():
    # ᾱ = 0.64 → √ᾱ = 0.8, √(1−ᾱ) = 0.6, w = 1/0.36. x0 = 1, ε = 0 → x_t = 0.8.
    # v̂ = 0.5 → x̂0 = 0.8·0.8 − 0.6·0.5 = 0.34; error² = 0.66² = 0.4356; loss = 0.4356 / 0.36 = 1.21.
    alphas = torch.tensor([0.9, 0.64])
    x0, noise = torch.ones(1, 4), torch.zeros(1, 4)
    loss, x0_hat = v_prediction_loss(torch.full((1, 4), 0.5), x0, noise, torch.tensor([1]), alphas)
    assert loss.item() == pytest.approx(1.21, rel=1e-6)
    torch.testing.assert_close(x0_hat, torch.full((1, 4), 0.34))
    # batch mean over samples with their own weights: second sample at ᾱ = 0.9, v̂ = v → contributes 0
    x0b, nb = torch.ones(2, 4), torch.zeros(2, 4)
    v_ok = v_target(x0b[1:], nb[1:], torch.tensor([0]), alphas)
    v_pred = torch.cat([torch.full((1, 4), 0.5), v_ok])
    loss2, _ = v_prediction_loss(v_pred, x0b, nb, torch.tensor([1, 0]), alphas)
    assert loss2.item() == pytest.approx(1.21 / 2, rel=1e-6)


def test_weighted_x0_error_equals_velocity_error_on_cogvideox_schedule():
    alphas = _cogvideox_alphas()
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(4, 3, 2, 6, 6, generator=g, dtype=torch.float64)
    noise = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    v_pred = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    t = torch.tensor([0, 250, 600, 999])
    loss, x0_hat = v_prediction_loss(v_pred, x0, noise, t, alphas)
    w = 1.0 / (1.0 - alphas[t]).reshape(-1, 1, 1, 1, 1)
    v = v_target(x0, noise, t, alphas)
    torch.testing.assert_close(w * (x0_hat - x0) ** 2, (v_pred - v) ** 2, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(loss, ((v_pred - v) ** 2).mean(), rtol=1e-9, atol=0)


def test_matches_diffusers_scheduler_formulas():
    from diffusers import CogVideoXDDIMScheduler

    sched = CogVideoXDDIMScheduler()
    g = torch.Generator().manual_seed(2)
    x0, noise = torch.randn(2, 3, 4, 4, generator=g), torch.randn(2, 3, 4, 4, generator=g)
    t = torch.tensor([10, 900])
    torch.testing.assert_close(add_noise(x0, noise, t, sched.alphas_cumprod), sched.add_noise(x0, noise, t))
    torch.testing.assert_close(v_target(x0, noise, t, sched.alphas_cumprod), sched.get_velocity(x0, noise, t))
    # diffusers' get_velocity(sample=v̂, noise=x_t) is how CogVideoX training recovers x̂0
    x_t, v_pred = add_noise(x0, noise, t, sched.alphas_cumprod), torch.randn(2, 3, 4, 4, generator=g)
    torch.testing.assert_close(
        x0_from_v(x_t, v_pred, t, sched.alphas_cumprod), sched.get_velocity(v_pred, x_t, t)
    )


def test_gradient_flows_to_v_pred_through_loss_and_x0_hat():
    alphas = _cogvideox_alphas()
    x0, noise = torch.randn(2, 8), torch.randn(2, 8)
    v_pred = torch.zeros(2, 8, requires_grad=True)
    t = torch.tensor([100, 700])
    loss, x0_hat = v_prediction_loss(v_pred, x0, noise, t, alphas)
    (loss + x0_hat.sum()).backward()
    assert v_pred.grad is not None and torch.isfinite(v_pred.grad).all() and v_pred.grad.abs().sum() > 0
    # d loss / d v̂ = 2 (v̂ − v) / (B·D) for the velocity MSE
    v = v_target(x0, noise, t, alphas)
    x_grad = -(1 - alphas[t].float()).sqrt().reshape(2, 1).expand(2, 8)
    torch.testing.assert_close(v_pred.grad, 2 * (0 - v) / 16 + x_grad, rtol=1e-4, atol=1e-6)


def test_bad_inputs_name_the_problem():
    alphas = torch.linspace(0.9, 0.1, 10)
    x0 = torch.zeros(2, 3)
    with pytest.raises(ValueError, match=r"timesteps t must be \[B\]"):
        v_prediction_loss(x0, x0, x0, torch.tensor([1]), alphas)
    with pytest.raises(ValueError, match=r"0\.\.9"):
        v_prediction_loss(x0, x0, x0, torch.tensor([1, 10]), alphas)
    with pytest.raises(ValueError, match="integer indices"):
        v_prediction_loss(x0, x0, x0, torch.tensor([1.0, 2.0]), alphas)
    with pytest.raises(ValueError, match="v_pred must have the shape"):
        v_prediction_loss(torch.zeros(2, 4), x0, x0, torch.tensor([1, 2]), alphas)
    with pytest.raises(ValueError, match="1-D"):
        v_prediction_loss(x0, x0, x0, torch.tensor([1, 2]), alphas[None])
    with pytest.raises(ValueError, match="infinite"):
        v_prediction_loss(x0, x0, x0, torch.tensor([0, 1]), torch.tensor([1.0, 0.5]))
    assert math.isfinite(v_prediction_loss(x0, x0, x0, torch.tensor([1, 1]), alphas)[0].item())


def test_min_snr_weights_hand_values_and_zero_snr_keeps_weight_one():
    # ᾱ = 0.9 → SNR + 1 = 10 → γ = 5 gives 0.5; ᾱ = 0.5 → SNR + 1 = 2 ≤ 5 → 1; ᾱ = 0 (zero SNR) → 1
    alphas = torch.tensor([0.9, 0.5, 0.0])
    w = min_snr_weights(torch.tensor([0, 1, 2]), alphas, 5.0)
    torch.testing.assert_close(w, torch.tensor([0.5, 1.0, 1.0]))
    with pytest.raises(ValueError, match="gamma must be > 0"):
        min_snr_weights(torch.tensor([0]), alphas, 0.0)


def test_min_snr_loss_scales_low_noise_terms_and_is_plain_for_large_gamma():
    alphas = _cogvideox_alphas()
    g = torch.Generator().manual_seed(2)
    x0 = torch.randn(3, 2, 4, 4, generator=g, dtype=torch.float64)
    noise = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    v_pred = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    t = torch.tensor([5, 500, 999])
    per = ((v_pred - v_target(x0, noise, t, alphas)) ** 2).flatten(1).mean(1)
    snr1 = 1.0 / (1.0 - alphas[t].double())
    assert snr1[0] > 5 > snr1[1]  # the low-noise sample is down-weighted, the others are not
    loss, _ = v_prediction_loss(v_pred, x0, noise, t, alphas, min_snr_gamma=5.0)
    expected = (per * torch.clamp(snr1, max=5.0) / snr1).mean()
    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=0)
    assert loss < per.mean()
    plain, _ = v_prediction_loss(v_pred, x0, noise, t, alphas)
    huge, _ = v_prediction_loss(v_pred, x0, noise, t, alphas, min_snr_gamma=float(snr1.max()) + 1)
    torch.testing.assert_close(huge, plain, rtol=1e-6, atol=0)
