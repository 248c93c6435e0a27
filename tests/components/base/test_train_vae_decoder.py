"""Decoder fine-tune on noisy latents: only the decoder moves, and it decodes noisy latents better."""

from __future__ import annotations

import copy

import pytest
import torch

from components.backbone.spec import get_spec
from components.base.phase import unit_video
from components.base.train_vae import train_vae
from components.base.train_vae_decoder import decoder_parameters, train_vae_decoder
from components.training.config import TrainPhaseParams
from tests.components.base.test_train_vae import SMALL, moving_shapes

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def trained() -> tuple:
    spec = get_spec("cogvideox")
    clips = [moving_shapes(i) for i in range(4)]
    phase = TrainPhaseParams(steps=40, batch_size=2, lr=4e-3, warmup_steps=4)
    vae, _ = train_vae(clips, spec, spec.build_tiny(SMALL).vae, phase, progress=False)
    return spec, clips, vae


def noisy_decode_error(spec, vae, clips, sigma: float) -> float:
    """Mean absolute error of decoding each clip's latent plus N(0, σ²) noise (fixed draws)."""
    g = torch.Generator().manual_seed(123)
    errs = []
    with torch.no_grad():
        for c in clips:
            video = unit_video(c.video).unsqueeze(0)
            z = spec.vae_encode(vae, video)
            out = spec.vae_decode(vae, z + sigma * torch.randn(z.shape, generator=g))
            errs.append(float((out - video).abs().mean()))
    return sum(errs) / len(errs)


PHASE = TrainPhaseParams(steps=30, batch_size=2, lr=2e-3, warmup_steps=2)


def test_only_the_decoder_changes_and_the_latent_space_stays(trained) -> None:
    spec, clips, vae = trained
    vae = copy.deepcopy(vae)
    before = {n: p.detach().clone() for n, p in vae.named_parameters()}
    scale = vae.config.scaling_factor
    latents = spec.vae_encode(vae, unit_video(clips[0].video).unsqueeze(0))
    out, history = train_vae_decoder(clips, spec, vae, PHASE, noise=0.5, crop=(16, 24), progress=False)

    assert len(history) == 30
    trained_names = set(decoder_parameters(out))
    moved = {n for n, p in out.named_parameters() if not torch.equal(p, before[n])}
    assert moved and moved <= trained_names
    assert any(n.startswith("decoder.") for n in moved)
    assert out.config.scaling_factor == scale
    assert torch.equal(spec.vae_encode(out, unit_video(clips[0].video).unsqueeze(0)), latents)
    assert not any(p.requires_grad for p in out.parameters())


def test_noise_makes_the_decoder_robust_to_latent_noise(trained) -> None:
    spec, clips, vae = trained
    phase = TrainPhaseParams(steps=60, batch_size=2, lr=2e-3, warmup_steps=2)
    clean, _ = train_vae_decoder(clips, spec, copy.deepcopy(vae), phase, noise=0.0, crop=None, progress=False)
    noisy, _ = train_vae_decoder(clips, spec, copy.deepcopy(vae), phase, noise=1.0, crop=None, progress=False)
    # same steps and data, only the latent noise differs: decoding noisy latents is better with it
    # (measured 0.28 against 0.36 mean absolute error at σ = 1)
    assert noisy_decode_error(spec, noisy, clips, 1.0) < 0.85 * noisy_decode_error(spec, clean, clips, 1.0)


def test_bad_settings_name_the_fix(trained) -> None:
    spec, clips, vae = trained
    with pytest.raises(ValueError, match="vae_decoder_noise must be >= 0"):
        train_vae_decoder(clips, spec, copy.deepcopy(vae), PHASE, noise=-0.1, progress=False)
    with pytest.raises(ValueError, match="multiple of the VAE's spatial factor"):
        train_vae_decoder(clips, spec, copy.deepcopy(vae), PHASE, crop=(18, 24), progress=False)
