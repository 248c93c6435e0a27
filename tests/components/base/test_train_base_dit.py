"""Base DiT training: validation loss falls, the VAE stays frozen, CFG dropout and timesteps per objective."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from components.backbone.config import TinyConfig
from components.backbone.spec import get_spec
from components.base.token_encoder import TokenTextEncoder
from components.base.train_base_dit import (
    DiTBatches,
    captions,
    diffusion_loss,
    encode_caption_variants,
    encode_latents,
    sample_timesteps,
    train_base_dit,
    validation_loss,
)
from components.training.config import TrainPhaseParams
from tests.components.base.test_train_vae import moving_shapes

torch.set_num_threads(1)
SMALL = TinyConfig(sample_frames=9, sample_height=32, sample_width=48)
CAPTIONS = ["a red disc rolls", "two discs pass", "a ball bounces left", "circles drift apart"]


@pytest.fixture(scope="module")
def text() -> TokenTextEncoder:
    return TokenTextEncoder(max_tokens=8)


@pytest.fixture(scope="module")
def clips():
    return [moving_shapes(i, caption=c) for i, c in enumerate(CAPTIONS)]


@pytest.mark.parametrize("backbone", ["cogvideox", "wan"])
def test_training_lowers_the_validation_loss_and_leaves_the_vae(backbone, text, clips) -> None:
    spec = get_spec(backbone)
    models = spec.build_tiny(SMALL)
    vae_before = {k: v.clone() for k, v in models.vae.state_dict().items()}
    latents = encode_latents(spec, models.vae, clips)
    assert latents.shape == (4, 3, 4, 4, 6)
    emb = text.encode(captions(clips))
    before = validation_loss(spec, models, latents, emb)
    phase = TrainPhaseParams(steps=40, batch_size=2, lr=1e-3, warmup_steps=4)
    transformer, history = train_base_dit(clips, spec, models, text, phase, progress=False)
    models.transformer = transformer
    after = validation_loss(spec, models, latents, emb)

    assert after < 0.75 * before
    assert len(history) == 40 and all("cond_dropped" in h for h in history)
    assert 0 < np.mean([h["cond_dropped"] for h in history]) < 0.3
    assert not any(p.requires_grad for p in models.vae.parameters())
    assert all(torch.equal(v, models.vae.state_dict()[k]) for k, v in vae_before.items())
    assert not any(p.requires_grad for p in transformer.parameters())


def test_batches_drop_captions_for_cfg_and_are_a_function_of_the_step(text) -> None:
    spec = get_spec("cogvideox")
    sched = spec.build_tiny(SMALL).scheduler
    latents = torch.randn(4, 3, 4, 4, 6)
    emb = text.encode(CAPTIONS)
    empty = text.encode([""])[0]
    batches = DiTBatches(spec, sched, latents, emb, empty, batch_size=2, cond_dropout=0.1, seed=3)
    dropped = 0
    for step in range(300):
        b = batches(step)
        for row, was_dropped, x in zip(b["text_emb"], b["dropped"], b["latents"], strict=True):
            i = next(j for j in range(4) if torch.equal(x, latents[j]))
            assert torch.equal(row, empty if was_dropped else emb[i])
            dropped += int(was_dropped)
    assert 0.06 < dropped / 600 < 0.14
    a, b = batches(17), batches(17)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(batches(18)["noise"], a["noise"])
    assert not DiTBatches(spec, sched, latents, emb, empty, 2, cond_dropout=0.0)(0)["dropped"].any()
    with pytest.raises(ValueError, match="cond_dropout"):
        DiTBatches(spec, sched, latents, emb, empty, 2, cond_dropout=1.5)


def test_batches_take_caption_variants_at_the_set_rate(text) -> None:
    spec = get_spec("cogvideox")
    sched = spec.build_tiny(SMALL).scheduler
    samples = [
        moving_shapes(0, caption="a red disc rolls across a grey floor"),
        moving_shapes(1, caption="two discs pass"),
    ]
    samples[0].motion_prompt = "a person rolls"
    emb, counts = encode_caption_variants(text, samples)
    assert counts == [5, 1] and emb.shape == (2, 5, 8, emb.shape[-1])
    torch.testing.assert_close(emb[0, 2], text.encode(["a man rolls"])[0])
    torch.testing.assert_close(emb[1, 3], emb[1, 0])  # spare slots repeat the caption
    latents = torch.randn(2, 3, 4, 4, 6)
    empty = text.encode([""])[0]
    seen = {0: set(), 1: set()}
    short = total = 0
    batches = DiTBatches(spec, sched, latents, emb, empty, 2, 0.0, 3, counts=counts, short_caption_prob=0.5)
    for step in range(200):
        b = batches(step)
        for row, x in zip(b["text_emb"], b["latents"], strict=True):
            i = 0 if torch.equal(x, latents[0]) else 1
            k = next(k for k in range(5) if torch.equal(row, emb[i, k]))
            seen[i].add(k)
            if i == 0:
                total += 1
                short += k > 0
    assert seen == {0: {0, 1, 2, 3, 4}, 1: {0}}  # the one-caption clip always trains under its caption
    assert 0.4 < short / total < 0.6
    assert torch.equal(batches(11)["text_emb"], batches(11)["text_emb"])
    with pytest.raises(ValueError, match="counts"):
        DiTBatches(spec, sched, latents, emb, empty, 2, counts=[6, 1])
    with pytest.raises(ValueError, match="short_caption_prob"):
        DiTBatches(spec, sched, latents, emb, empty, 2, counts=counts, short_caption_prob=2.0)


def test_timesteps_follow_each_objective() -> None:
    rng = np.random.default_rng(0)
    cog, wan = get_spec("cogvideox"), get_spec("wan")
    t = sample_timesteps(cog, cog.build_tiny(SMALL).scheduler, 4000, rng)
    assert t.dtype == torch.int64 and int(t.min()) >= 0 and int(t.max()) <= 999
    assert abs(float(t.float().mean()) - 499.5) < 20
    sched = wan.build_tiny(SMALL).scheduler
    s = sample_timesteps(wan, sched, 4000, rng) / 1000
    assert s.dtype == torch.float32 and float(s.min()) >= 0 and float(s.max()) < 1
    # σ = 3u/(1+2u) with u uniform: median at u=1/2 is 0.75, the sampler's shifted grid
    assert abs(float(s.median()) - 0.75) < 0.02


def test_losses_vanish_for_the_true_velocity() -> None:
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(2, 3, 4, 4, 6, generator=g), torch.randn(2, 3, 4, 4, 6, generator=g)
    for name, t in (("cogvideox", torch.tensor([10, 900])), ("wan", torch.tensor([100.0, 800.0]))):
        spec = get_spec(name)
        sched = spec.build_tiny(SMALL).scheduler
        v = spec.velocity_target(sched, x0, noise, t)
        assert float(diffusion_loss(spec, sched, v, x0, noise, t)) < 1e-10
        assert float(diffusion_loss(spec, sched, v + 0.1, x0, noise, t)) == pytest.approx(0.01, rel=1e-4)


def test_min_snr_weighting_down_weights_low_noise_and_only_for_v_prediction(text, clips) -> None:
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(2, 3, 4, 4, 6, generator=g), torch.randn(2, 3, 4, 4, 6, generator=g)
    spec = get_spec("cogvideox")
    sched = spec.build_tiny(SMALL).scheduler
    t = torch.tensor([10, 900])  # SNR + 1 at t = 10 is far above 5, at t = 900 below it
    v = spec.velocity_target(sched, x0, noise, t) + 0.1
    plain = float(diffusion_loss(spec, sched, v, x0, noise, t))
    weighted = float(diffusion_loss(spec, sched, v, x0, noise, t, min_snr_gamma=5.0))
    snr1 = 1.0 / (1.0 - float(sched.alphas_cumprod[10]))
    assert weighted == pytest.approx(0.01 * (5.0 / snr1 + 1.0) / 2, rel=1e-4)
    assert weighted < plain
    wan = get_spec("wan")
    with pytest.raises(ValueError, match="dit_min_snr_gamma to null"):
        diffusion_loss(wan, wan.build_tiny(SMALL).scheduler, v, x0, noise, t.float(), min_snr_gamma=5.0)
    with pytest.raises(ValueError, match="flow matching"):
        train_base_dit(
            clips, wan, wan.build_tiny(SMALL), text, TrainPhaseParams(steps=1, batch_size=1, lr=1e-3),
            min_snr_gamma=5.0, progress=False,
        )  # fmt: skip
