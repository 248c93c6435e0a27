"""Backbone registry, tiny config validation and the shared shape/range checks."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from components.backbone.config import TinyConfig
from components.backbone.spec import SPECS, BackboneSpec, check_model_folder, get_spec


def test_registry_lists_both_backbones_with_their_objectives() -> None:
    assert sorted(SPECS) == ["cogvideox", "wan"]
    assert len(SPECS) == 2
    assert get_spec("cogvideox").objective == "v_prediction"
    assert get_spec("wan").objective == "flow_matching"
    assert get_spec("wan") is SPECS["wan"]
    for name in SPECS:
        assert isinstance(get_spec(name), BackboneSpec)
        assert get_spec(name).name == name


def test_unknown_backbone_error_lists_known_names() -> None:
    with pytest.raises(KeyError, match="cogvideox, wan"):
        get_spec("hunyuan")


def test_tiny_config_rejects_unknown_keys_and_odd_head_dim() -> None:
    with pytest.raises(ValidationError, match="n_layers"):
        TinyConfig(n_layers=3)
    with pytest.raises(ValidationError, match="head_dim must be even"):
        TinyConfig(head_dim=15)
    assert TinyConfig().text_dim == 384


@pytest.mark.parametrize("name", ["cogvideox", "wan"])
def test_latent_shape_of_default_clip(name: str) -> None:
    assert get_spec(name).latent_shape(17, 96, 144) == (5, 16, 12, 18)
    assert get_spec(name).latent_shape(49, 480, 720, latent_channels=16) == (13, 16, 60, 90)


def test_frame_rules_differ_per_backbone() -> None:
    assert get_spec("wan").latent_shape(13, 96, 144, latent_channels=4) == (4, 4, 12, 18)
    with pytest.raises(ValueError, match="8N\\+1"):
        get_spec("cogvideox").latent_shape(13, 96, 144)
    with pytest.raises(ValueError, match="4N\\+1"):
        get_spec("wan").latent_shape(16, 96, 144)


def test_latent_shape_names_bad_size() -> None:
    with pytest.raises(ValueError, match="height must be a positive multiple of 16"):
        get_spec("cogvideox").latent_shape(17, 100, 144)
    with pytest.raises(ValueError, match="width"):
        get_spec("wan").latent_shape(17, 96, 150)


def test_check_video_shape_and_range() -> None:
    BackboneSpec.check_video(torch.zeros(1, 3, 5, 8, 8), "t")
    with pytest.raises(ValueError, match=r"\[B,3,F,H,W\]"):
        BackboneSpec.check_video(torch.zeros(1, 4, 5, 8, 8), "t")
    with pytest.raises(ValueError, match=r"127\.5"):
        BackboneSpec.check_video(torch.full((1, 3, 5, 8, 8), 255.0), "t")


def test_batch_timesteps_broadcasts_scalars_and_checks_batch() -> None:
    t = BackboneSpec.batch_timesteps(torch.tensor(7), 3, torch.device("cpu"))
    assert t.tolist() == [7, 7, 7]
    with pytest.raises(ValueError, match=r"\[B\] = \[3\]"):
        BackboneSpec.batch_timesteps(torch.tensor([1, 2]), 3, torch.device("cpu"))


def test_model_folder_check_names_missing_parts(tmp_path) -> None:
    (tmp_path / "transformer").mkdir()
    with pytest.raises(FileNotFoundError, match="missing: vae, scheduler"):
        check_model_folder(tmp_path, "CogVideoX", "x")
    with pytest.raises(FileNotFoundError, match="missing: folder"):
        check_model_folder(tmp_path / "nope", "CogVideoX", "x")


def test_tiny_vae_stages_set_the_spatial_factor() -> None:
    assert TinyConfig(vae_block_channels=(8, 8, 16, 16)).spatial_compression == 8
    assert TinyConfig(vae_block_channels=(8, 16, 16)).spatial_compression == 4
    for bad in ((8, 16), (8, 8, 8, 8, 8)):
        with pytest.raises(ValidationError, match=r"3 .* or 4 .* stage widths"):
            TinyConfig(vae_block_channels=bad)
    # a x4 VAE accepts sizes a x8 one refuses, and the check names the factor in use
    spec = get_spec("cogvideox")
    assert spec.latent_shape(17, 40, 56, latent_channels=4, patch_size=2, spatial=4) == (5, 4, 10, 14)
    with pytest.raises(ValueError, match=r"VAE ×8"):
        spec.latent_shape(17, 40, 56, latent_channels=4, patch_size=2)


@pytest.mark.parametrize("name", ["cogvideox", "wan"])
@pytest.mark.parametrize("channels", [(4, 4, 8), (4, 4, 8, 8)])
def test_tiny_vae_encodes_at_its_own_spatial_factor(name: str, channels: tuple[int, ...]) -> None:
    """Three VAE stages compress x4 in space, four x8; time x4 either way, and decode restores the size."""
    cfg = TinyConfig(
        vae_block_channels=channels, vae_norm_groups=2, latent_channels=4,
        sample_frames=9, sample_height=32, sample_width=48,
    )  # fmt: skip
    spec = get_spec(name)
    vae = spec.build_tiny(cfg).vae
    s = spec.vae_spatial_compression(vae)
    assert s == cfg.spatial_compression == 2 ** (len(channels) - 1)
    video = torch.rand(1, 3, 9, 32, 48) * 2 - 1
    with torch.no_grad():
        z = spec.vae_encode(vae, video)
        assert tuple(z.shape) == (1, 3, 4, 32 // s, 48 // s)
        assert tuple(spec.vae_decode(vae, z).shape) == (1, 3, 9, 32, 48)


def test_flow_shift_reads_either_config_key() -> None:
    from diffusers import CogVideoXDDIMScheduler, FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler

    from components.backbone.spec import flow_shift

    assert flow_shift(FlowMatchEulerDiscreteScheduler(shift=5.0)) == 5.0
    # the published Wan 2.1 scheduler: UniPC with flow sigmas, its shift under ``flow_shift``
    unipc = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0)
    assert flow_shift(unipc) == 3.0
    assert flow_shift(CogVideoXDDIMScheduler()) == 1.0
