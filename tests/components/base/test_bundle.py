"""Base bundle: save/load round trip for both backbones, atomic replacement, errors naming the stage."""

from __future__ import annotations

import json
import os

import pytest
import torch

from components.backbone.config import TinyConfig
from components.backbone.spec import get_spec
from components.base.bundle import BaseBundle, bundle_config, load_pretrained_base, make_config
from components.base.config import DepthNetConfig
from components.base.depth import DepthNet
from components.base.token_encoder import TokenTextEncoder

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def text() -> TokenTextEncoder:
    return TokenTextEncoder(max_tokens=8)


def tiny_bundle(backbone: str, text: TokenTextEncoder, depth: bool = True, **tiny_kw) -> BaseBundle:
    """An untrained tiny base of 9 frames × 32×48 at 16 fps."""
    spec = get_spec(backbone)
    tiny = TinyConfig(sample_frames=9, sample_height=32, sample_width=48, **tiny_kw)
    models = spec.build_tiny(tiny)
    net = DepthNet(DepthNetConfig(base_channels=8, levels=2)) if depth else None
    return BaseBundle(spec, models, text, net, make_config(spec, tiny, text, 9, 32, 48, 16))


def _same_state(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _public(config) -> dict:
    return {k: v for k, v in config.items() if not k.startswith("_")}


@pytest.mark.parametrize("backbone", ["cogvideox", "wan"])
def test_round_trip_restores_every_module(backbone: str, text: TokenTextEncoder, tmp_path) -> None:
    bundle = tiny_bundle(backbone, text)
    with torch.no_grad():  # non-default weights and latent normalisation must survive
        for p in bundle.models.transformer.parameters():
            p.add_(0.01 * torch.randn_like(p))
    if backbone == "wan":
        bundle.models.vae.register_to_config(
            latents_mean=[0.1, 0.2, 0.3, 0.4], latents_std=[1.5, 2.0, 2.5, 3.0]
        )
    else:
        bundle.models.vae.register_to_config(scaling_factor=0.37)
    out = bundle.save_pretrained(tmp_path / "base")
    assert sorted(os.listdir(out)) == ["config.json", "depth", "scheduler", "transformer", "vae"]
    assert (out / "transformer" / "diffusion_pytorch_model.safetensors").is_file()

    loaded = BaseBundle.from_pretrained(out, text=text)
    assert loaded.spec.name == backbone
    assert _same_state(loaded.models.transformer, bundle.models.transformer)
    assert _same_state(loaded.models.vae, bundle.models.vae)
    assert _same_state(loaded.depth, bundle.depth)
    assert _public(loaded.models.scheduler.config) == _public(bundle.models.scheduler.config)
    assert type(loaded.models.scheduler) is type(bundle.models.scheduler)
    for key in ("scaling_factor", "latents_mean", "latents_std"):
        assert loaded.models.vae.config.get(key) == bundle.models.vae.config.get(key)
    assert not any(p.requires_grad for p in loaded.models.transformer.parameters())
    assert (loaded.frames, loaded.height, loaded.width, loaded.fps) == (9, 32, 48, 16.0)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["format"] == "mosa-base" and cfg["version"] == 2 and cfg["backbone"] == backbone
    assert cfg["text_encoder"] == {"name": "minilm", "path": None, "max_tokens": 8}
    assert TinyConfig(**cfg["tiny"]).sample_width == 48

    x = torch.randn(1, 3, 4, 4, 6)
    emb = text.encode(["a man waves"])
    t = torch.tensor([500])
    with torch.no_grad():
        a = bundle.spec.predict(bundle.models.transformer.eval(), x, t, emb)["v_pred"]
        b = loaded.spec.predict(loaded.models.transformer, x, t, emb)["v_pred"]
    torch.testing.assert_close(a, b)


def test_load_without_depth_and_with_its_own_text_encoder(text: TokenTextEncoder, tmp_path) -> None:
    tiny_bundle("cogvideox", text, depth=False).save_pretrained(tmp_path / "base")
    loaded = BaseBundle.from_pretrained(tmp_path / "base")
    assert loaded.depth is None
    assert loaded.text.name == "minilm" and loaded.text.max_tokens == 8
    torch.testing.assert_close(loaded.text.encode(["a jump"]), text.encode(["a jump"]))


def test_save_replaces_a_folder_whole_and_a_failed_save_leaves_it(text: TokenTextEncoder, tmp_path) -> None:
    target = tmp_path / "base"
    tiny_bundle("cogvideox", text).save_pretrained(target)
    (target / "stale.txt").write_text("from an older run")
    tiny_bundle("cogvideox", text, depth=False).save_pretrained(target)
    assert not (target / "stale.txt").exists() and not (target / "depth").exists()
    before = (target / "config.json").read_text()

    bad = tiny_bundle("cogvideox", text, text_dim=16)  # transformer takes 16-d text, encoder gives 384-d
    with pytest.raises(ValueError, match="384-d token states but the transformer takes 16-d"):
        bad.save_pretrained(target)
    assert (target / "config.json").read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["base"]  # no temp folder left behind


def test_sincos_cogvideox_needs_max_tokens_equal_to_its_text_length(text: TokenTextEncoder, tmp_path) -> None:
    bundle = tiny_bundle("cogvideox", text, rotary=False, max_text_seq_length=16)
    with pytest.raises(ValueError, match="max_text_seq_length=16"):
        bundle.save_pretrained(tmp_path / "base")
    tiny_bundle("cogvideox", text, rotary=False, max_text_seq_length=8).save_pretrained(tmp_path / "base")
    assert (
        BaseBundle.from_pretrained(tmp_path / "base", text=text).models.transformer.config.max_text_seq_length
        == 8
    )


def test_missing_or_foreign_folders_name_the_stage_to_run(text: TokenTextEncoder, tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="dvc repro pretrain_base"):
        BaseBundle.from_pretrained(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"config\.json.*dvc repro pretrain_base"):
        BaseBundle.from_pretrained(tmp_path / "empty")

    root = tiny_bundle("cogvideox", text).save_pretrained(tmp_path / "base")
    (root / "vae" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"vae/diffusion_pytorch_model\.safetensors.*pretrain_base"):
        BaseBundle.from_pretrained(root, text=text)

    cfg = json.loads((root / "config.json").read_text())
    (root / "config.json").write_text(json.dumps({**cfg, "version": 99}))
    with pytest.raises(ValueError, match="version 99"):
        bundle_config(root)
    (root / "config.json").write_text(json.dumps({k: v for k, v in cfg.items() if k != "fps"}))
    with pytest.raises(ValueError, match="missing keys"):
        bundle_config(root)


def test_given_text_encoder_must_be_the_bundles(text: TokenTextEncoder, tmp_path) -> None:
    root = tiny_bundle("cogvideox", text).save_pretrained(tmp_path / "base")
    other = TokenTextEncoder(max_tokens=5)
    with pytest.raises(ValueError, match="max_tokens=5"):
        BaseBundle.from_pretrained(root, text=other)


def test_pretrained_base_needs_a_local_diffusers_folder(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match=r"CogVideoX weights not found.*missing: folder"):
        load_pretrained_base("cogvideox", tmp_path / "CogVideoX-5b")
    with pytest.raises(KeyError, match="unknown DiT backbone"):
        load_pretrained_base("sora", tmp_path)


def test_a_version_1_folder_still_loads(text: TokenTextEncoder, tmp_path) -> None:
    """Bundles written before the one save/load convention (base.json, a bare depth config) load as they
    did: a registered pipeline from then is still served."""
    root = tiny_bundle("cogvideox", text).save_pretrained(tmp_path / "base")
    cfg = json.loads((root / "config.json").read_text())
    (root / "config.json").unlink()
    (root / "base.json").write_text(json.dumps({**cfg, "version": 1}, indent=2, sort_keys=True) + "\n")
    depth_cfg = json.loads((root / "depth" / "config.json").read_text())
    (root / "depth" / "config.json").write_text(json.dumps(depth_cfg["config"], indent=2) + "\n")
    loaded = BaseBundle.from_pretrained(root, text=text)
    assert loaded.config["backbone"] == "cogvideox" and "format" not in loaded.config
    assert loaded.depth is not None and loaded.depth.cfg.model_dump(mode="json") == depth_cfg["config"]
