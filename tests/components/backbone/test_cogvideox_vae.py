"""The CogVideoX VAE with per-position RMS norms (components/backbone/cogvideox_vae.py)."""

from __future__ import annotations

import json

import pytest
import torch
from diffusers import AutoencoderKLCogVideoX
from torch import nn

from components.backbone.cogvideox_vae import (
    AutoencoderKLCogVideoXPixelNorm,
    PixelRMSNorm,
    replace_group_norms,
)
from components.backbone.config import TinyConfig
from components.backbone.spec import get_spec
from components.base.bundle import _load_diffusers_module

SPEC = get_spec("cogvideox")
SMALL = dict(sample_height=32, sample_width=48, vae_block_channels=(8, 16, 16), latent_channels=4)


def test_pixel_norm_keeps_a_uniform_colour_that_group_norm_erases() -> None:
    # a clip of one colour: every position holds the same channel vector
    colour = torch.tensor([0.9, -0.3, 0.2, 0.5])
    x = colour.view(1, 4, 1, 1, 1).expand(2, 4, 3, 5, 6).clone()
    pixel = PixelRMSNorm(4)(x)
    expected = colour / colour.square().mean().sqrt()
    assert torch.allclose(pixel[0, :, 1, 2, 3], expected, atol=1e-5)
    # GroupNorm subtracts the mean over the sample's space-time: the colour is gone
    group = nn.GroupNorm(4, 4)(x)
    assert group.abs().max() < 1e-3


def test_pixel_norm_unit_rms_per_position_and_learned_affine() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 8, 3, 4, 5) * 7 + 2
    norm = PixelRMSNorm(8)
    y = norm(x)
    assert torch.allclose(y.square().mean(dim=1), torch.ones(2, 3, 4, 5), atol=1e-4)
    with torch.no_grad():
        norm.weight.fill_(2.0)
        norm.bias.fill_(1.0)
    assert torch.allclose(norm(x), 2 * y + 1, atol=1e-5)


def test_replace_group_norms_counts_and_leaves_none() -> None:
    net = nn.Sequential(nn.GroupNorm(2, 4), nn.Sequential(nn.Conv2d(4, 4, 1), nn.GroupNorm(1, 4)))
    assert replace_group_norms(net) == 2
    assert not any(isinstance(m, nn.GroupNorm) for m in net.modules())
    assert sum(isinstance(m, PixelRMSNorm) for m in net.modules()) == 2


def test_tiny_config_picks_the_norm() -> None:
    published = SPEC.build_tiny(TinyConfig(**SMALL)).vae
    pixel = SPEC.build_tiny(TinyConfig(**SMALL, vae_norm="pixel")).vae
    assert type(published) is AutoencoderKLCogVideoX
    assert any(isinstance(m, nn.GroupNorm) for m in published.modules())
    assert isinstance(pixel, AutoencoderKLCogVideoXPixelNorm)
    assert not any(isinstance(m, nn.GroupNorm) for m in pixel.modules())
    # the decoder's spatial norms are replaced too (they hold the GroupNorm inside)
    assert sum(isinstance(m, PixelRMSNorm) for m in pixel.decoder.modules()) > 0


def test_pixel_norm_groups_need_not_divide_the_widths() -> None:
    with pytest.raises(ValueError, match="vae_norm_groups"):
        SPEC.build_tiny(TinyConfig(**{**SMALL, "vae_block_channels": (6, 10, 10)}, vae_norm_groups=4))
    SPEC.build_tiny(
        TinyConfig(**{**SMALL, "vae_block_channels": (6, 10, 10)}, vae_norm_groups=4, vae_norm="pixel")
    )


def test_save_and_reload_rebuilds_the_same_vae(tmp_path) -> None:
    vae = SPEC.build_tiny(TinyConfig(**SMALL, vae_norm="pixel")).vae.eval()
    with torch.no_grad():
        for p in vae.parameters():
            p.add_(0.01 * torch.randn_like(p))  # norm weights away from their init
    vae.save_pretrained(tmp_path / "vae", safe_serialization=True)
    assert json.loads((tmp_path / "vae" / "config.json").read_text())["_class_name"] == (
        "AutoencoderKLCogVideoXPixelNorm"
    )
    again = _load_diffusers_module(tmp_path / "vae")
    assert isinstance(again, AutoencoderKLCogVideoXPixelNorm)
    x = torch.rand(1, 3, 9, 32, 48) * 2 - 1
    with torch.no_grad():
        a = vae.decode(vae.encode(x).latent_dist.mode()).sample
        b = again.decode(again.encode(x).latent_dist.mode()).sample
    assert torch.equal(a, b)
    assert a.shape == x.shape
