"""Sampler: determinism, shapes, guidance, and exact recovery of a known x0 with an oracle velocity."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from components.base.bundle import BaseBundle
from components.base.sample import sample_latents, sample_video
from components.base.token_encoder import TokenTextEncoder
from tests.components.base.test_bundle import tiny_bundle

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def text() -> TokenTextEncoder:
    return TokenTextEncoder(max_tokens=8)


@pytest.fixture(scope="module")
def cog(text: TokenTextEncoder) -> BaseBundle:
    return tiny_bundle("cogvideox", text, depth=False)


@pytest.fixture(scope="module")
def wan(text: TokenTextEncoder) -> BaseBundle:
    return tiny_bundle("wan", text, depth=False)


def test_video_shape_dtype_and_seed_determinism(cog: BaseBundle) -> None:
    prompts = ["a man runs", "a woman jumps"]
    a = sample_video(cog, prompts, steps=3, guidance=4.0, seed=1, progress=False)
    b = sample_video(cog, prompts, steps=3, guidance=4.0, seed=1, progress=False)
    c = sample_video(cog, prompts, steps=3, guidance=4.0, seed=2, progress=False)
    assert a.shape == (2, 9, 32, 48, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_guidance_one_makes_only_conditional_predictions(cog: BaseBundle) -> None:
    spec, tr = cog.spec, cog.models.transformer
    batches: list[int] = []

    def text_blind(latents, t, text_emb):
        batches.append(latents.shape[0])
        return spec.predict(tr, latents, t, torch.zeros_like(text_emb))["v_pred"]

    plain = sample_latents(cog, ["a dance"], steps=4, guidance=1.0, predict_fn=text_blind, progress=False)
    assert batches == [1] * 4
    batches.clear()
    # with a prediction that ignores the text, v(∅) = v(c) and any guidance gives the same path
    guided = sample_latents(cog, ["a dance"], steps=4, guidance=7.0, predict_fn=text_blind, progress=False)
    assert batches == [2] * 4
    torch.testing.assert_close(guided, plain, atol=1e-5, rtol=1e-5)


def test_guidance_combines_unconditional_and_conditional_predictions(wan: BaseBundle) -> None:
    empty = wan.text.encode([""])[0]

    def by_prompt(latents, t, text_emb):  # 1 for the empty prompt, 3 for a real one
        is_empty = torch.tensor([torch.equal(e, empty) for e in text_emb])
        return torch.where(is_empty, 1.0, 3.0).view(-1, 1, 1, 1, 1).expand_as(latents).clone()

    x_T = torch.randn(1, 3, 4, 4, 6, generator=torch.Generator().manual_seed(0))
    out = sample_latents(
        wan, ["a kick"], steps=5, guidance=2.5, predict_fn=by_prompt, latents=x_T, progress=False
    )
    # flow-matching Euler from σ=1 to σ=0 with a constant velocity v moves x by −v
    torch.testing.assert_close(out, x_T - (1.0 + 2.5 * (3.0 - 1.0)))


def test_oracle_velocity_recovers_x0_with_cogvideox_ddim(cog: BaseBundle) -> None:
    x0 = torch.randn(2, 3, 4, 4, 6, generator=torch.Generator().manual_seed(3))
    abar = cog.models.scheduler.alphas_cumprod

    def oracle(x_t, t, text_emb):  # v = √ᾱ ε − √(1−ᾱ) x0 with ε from x_t = √ᾱ x0 + √(1−ᾱ) ε
        a = abar[t.long()].view(-1, 1, 1, 1, 1).to(x_t.dtype)
        return (a.sqrt() * x_t - x0) / (1 - a).sqrt()

    for steps in (1, 10):
        out = sample_latents(cog, ["x", "y"], steps=steps, guidance=1.0, predict_fn=oracle, progress=False)
        torch.testing.assert_close(out, x0, atol=1e-4, rtol=1e-4)


def test_oracle_velocity_recovers_x0_with_wan_flow_matching(wan: BaseBundle) -> None:
    x0 = torch.randn(1, 3, 4, 4, 6, generator=torch.Generator().manual_seed(4))
    n = wan.models.scheduler.config.num_train_timesteps

    def oracle(x_t, t, text_emb):  # v = ε − x0 with x_t = (1−σ) x0 + σ ε, σ = t / N
        sigma = (t.float() / n).view(-1, 1, 1, 1, 1)
        return (x_t - x0) / sigma

    out = sample_latents(wan, ["x"], steps=8, guidance=1.0, predict_fn=oracle, progress=False)
    torch.testing.assert_close(out, x0, atol=1e-4, rtol=1e-4)


def test_the_bundles_scheduler_is_not_mutated(cog: BaseBundle) -> None:
    sched = cog.models.scheduler
    before = (sched.num_inference_steps, sched.timesteps.clone())
    sample_latents(cog, ["a roll"], steps=2, progress=False)
    assert sched.num_inference_steps == before[0] and torch.equal(sched.timesteps, before[1])


def test_bad_arguments_raise_clear_errors(cog: BaseBundle) -> None:
    with pytest.raises(TypeError, match="wrap it"):
        sample_latents(cog, "a man runs", progress=False)
    with pytest.raises(ValueError, match="steps"):
        sample_latents(cog, ["a"], steps=0, progress=False)
    with pytest.raises(ValueError, match=r"latents must have shape \(1, 3, 4, 4, 6\)"):
        sample_latents(cog, ["a"], latents=torch.zeros(1, 3, 4, 2, 6), progress=False)
    with pytest.raises(ValueError, match="predict_fn returned shape"):
        sample_latents(cog, ["a"], steps=1, guidance=1.0, predict_fn=lambda x, t, e: x[:, :1], progress=False)
