"""MoSA transformer: starts as the base (hadc on/no_w), trains only its own modules, ablations
(hadc off: direct ``z + s``; structure off: the base), persistence, sizes."""

from __future__ import annotations

import json

import pytest
import torch
from pydantic import ValidationError

from components.backbone.config import TinyConfig
from components.backbone.spec import BlockContext, ControlHooks, get_spec
from components.dit.config import MoSAConfig
from components.dit.mosa import MoSATransformer, count_parameters
from components.dit.skeleton_encoder import vae_encode_skeleton

torch.set_num_threads(1)
SMALL = TinyConfig(sample_height=32, sample_width=48)
BACKBONES = ["cogvideox", "wan"]


def _base(backbone: str, cfg: TinyConfig = SMALL):
    return get_spec(backbone).build_tiny(cfg)


def _batch(backbone: str, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 5, 4, 4, 6, generator=g)
    skeleton = torch.randn(2, 5, 4, 4, 6, generator=g)
    text = torch.randn(2, 6, 384, generator=g)
    t = torch.tensor([30, 800]) if backbone == "cogvideox" else torch.tensor([30.0, 800.0])
    return x, t, text, skeleton


def _train_step(model: MoSATransformer, x, t, text, skeleton, lr: float = 1e-2) -> None:
    opt = torch.optim.AdamW(model.trainable_parameters(), lr=lr)
    out = model(None, x, t, text, skeleton)
    loss = out["v_pred"].square().mean() + sum(m.square().mean() for m in out["mask_latents"])
    opt.zero_grad()
    loss.backward()
    opt.step()


@pytest.mark.parametrize("backbone", BACKBONES)
def test_at_init_mosa_equals_the_base_exactly(backbone: str) -> None:
    models = _base(backbone)
    spec = get_spec(backbone)
    mosa = MoSATransformer(models.transformer, MoSAConfig(backbone=backbone, num_structure_blocks=2))
    x, t, text, skeleton = _batch(backbone)
    with torch.no_grad():
        out = mosa(None, x, t, text, skeleton)
        base = spec.predict(models.transformer, x, t, text)["v_pred"]
    assert torch.equal(out["v_pred"], base)
    assert len(out["mask_latents"]) == len(out["weights"]) == 2
    assert all(m.shape == x.shape for m in out["mask_latents"])
    assert all(w.shape == (2, 5 * 2 * 3, 32) and not w.any() for w in out["weights"])


@pytest.mark.parametrize("backbone", BACKBONES)
def test_one_step_changes_the_output_and_leaves_the_base_alone(backbone: str) -> None:
    models = _base(backbone)
    base = models.transformer
    before = {k: v.clone() for k, v in base.state_dict().items()}
    mosa = MoSATransformer(base, MoSAConfig(backbone=backbone, num_structure_blocks=2))
    assert not any(p.requires_grad for p in base.parameters())
    assert {id(p) for p in mosa.parameters()}.isdisjoint(id(p) for p in base.parameters())
    assert not any(k.startswith("_base") for k in mosa.state_dict())
    x, t, text, skeleton = _batch(backbone)
    with torch.no_grad():
        reference = get_spec(backbone).predict(base, x, t, text)["v_pred"]
    _train_step(mosa, x, t, text, skeleton)
    with torch.no_grad():
        after = mosa(None, x, t, text, skeleton)
    assert not torch.allclose(after["v_pred"], reference)
    assert any(w.abs().sum() > 0 for w in after["weights"])
    for k, v in base.state_dict().items():
        assert torch.equal(v, before[k]), k
    # a second step: now that W != 0, the structure blocks and embedder get gradients
    out = mosa(None, x, t, text, skeleton)
    out["v_pred"].square().mean().backward()
    for name, p in mosa.structure.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert all(p.grad is None for p in base.parameters())


def test_at_init_only_the_predictor_output_layer_and_mask_heads_get_gradients() -> None:
    models = _base("cogvideox")
    mosa = MoSATransformer(models.transformer, MoSAConfig(num_structure_blocks=2))
    x, t, text, skeleton = _batch("cogvideox")
    out = mosa(None, x, t, text, skeleton)
    out["v_pred"].square().mean().backward()
    assert mosa.hadc[0].predictor.mlp[-1].weight.grad.abs().sum() > 0
    assert all(p.grad is None or not p.grad.any() for p in mosa.structure.parameters())


def test_structure_off_gives_the_plain_base() -> None:
    models = _base("cogvideox")
    x, t, text, _ = _batch("cogvideox")
    with torch.no_grad():
        reference = get_spec("cogvideox").predict(models.transformer, x, t, text)["v_pred"]
    for hadc in ("on", "no_w", "off"):
        cfg = MoSAConfig(structure="off", hadc=hadc)
        mosa = MoSATransformer(models.transformer, cfg)
        assert not cfg.branch_active and mosa.structure is None and mosa.hadc is None
        assert mosa.trainable_parameters() == [] and count_parameters(mosa)["trainable"] == 0
        with torch.no_grad():
            out = mosa(None, x, t, text)  # no skeleton needed
        assert torch.equal(out["v_pred"], reference)
        assert out["mask_latents"] == [] and out["weights"] == []


class _ManualDirectInjection(ControlHooks):
    """``z_i + s_i`` after base block ``i < N``, with all ``s_i`` from ``StructureBranch.forward``."""

    def __init__(self, mosa: MoSATransformer, latents: torch.Tensor) -> None:
        self.mosa, self.latents, self.features = mosa, latents, None

    def after_block(self, index, hidden, encoder_hidden, ctx: BlockContext) -> torch.Tensor:
        if index == 0:
            self.features = self.mosa.structure(self.latents, ctx)
        return hidden + self.features[index] if index < len(self.features) else hidden


@pytest.mark.parametrize("backbone", BACKBONES)
def test_hadc_off_adds_the_structure_features_directly(backbone: str) -> None:
    models = _base(backbone)
    spec = get_spec(backbone)
    cfg = MoSAConfig(backbone=backbone, hadc="off", num_structure_blocks=1)
    mosa = MoSATransformer(models.transformer, cfg)
    assert cfg.branch_active and mosa.hadc is None
    names = [n for n, _ in mosa.named_parameters()]
    assert names and all(n.startswith("structure.") for n in names)
    x, t, text, skeleton = _batch(backbone)
    with torch.no_grad():
        out = mosa(None, x, t, text, skeleton)
        manual = spec.predict(models.transformer, x, t, text, control=_ManualDirectInjection(mosa, skeleton))
        base = spec.predict(models.transformer, x, t, text)["v_pred"]
    assert torch.equal(out["v_pred"], manual["v_pred"])
    assert not torch.allclose(out["v_pred"], base)  # unlike "on"/"no_w", not the base at step 0
    assert out["mask_latents"] == [] and out["weights"] == []


def test_hadc_off_trains_the_structure_blocks_from_step_zero() -> None:
    models = _base("cogvideox")
    mosa = MoSATransformer(models.transformer, MoSAConfig(hadc="off", num_structure_blocks=2))
    x, t, text, skeleton = _batch("cogvideox")
    out = mosa(None, x, t, text, skeleton, compute_masks=True)
    assert out["mask_latents"] == [] and out["weights"] == []
    out["v_pred"].square().mean().backward()
    for name, p in mosa.structure.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert all(p.grad is None for p in models.transformer.parameters())


def test_no_w_trains_a_static_per_channel_weight_and_the_structure_blocks_without_mask_heads() -> None:
    models = _base("cogvideox")
    mosa = MoSATransformer(models.transformer, MoSAConfig(hadc="no_w", num_structure_blocks=2))
    params = dict(mosa.named_parameters())
    assert params["hadc.0.alpha"].shape == params["hadc.1.alpha"].shape == (32,)
    assert not params["hadc.0.alpha"].any() and not params["hadc.1.alpha"].any()
    assert not any("predictor" in n or "mask_head" in n for n in params)
    assert any(n.startswith("structure.blocks.1.") for n in params)
    x, t, text, skeleton = _batch("cogvideox")
    with torch.no_grad():
        reference = get_spec("cogvideox").predict(models.transformer, x, t, text)["v_pred"]
        assert torch.equal(mosa(None, x, t, text, skeleton)["v_pred"], reference)
    _train_step(mosa, x, t, text, skeleton)
    assert mosa.hadc[0].alpha.abs().sum() > 0
    with torch.no_grad():
        out = mosa(None, x, t, text, skeleton)
    assert not torch.allclose(out["v_pred"], reference)
    assert out["mask_latents"] == [] and out["weights"] == []


def test_2d_and_3d_build_the_same_model() -> None:
    models = _base("wan")
    a = MoSATransformer(models.transformer, MoSAConfig(backbone="wan", structure="2d"))
    b = MoSATransformer(models.transformer, MoSAConfig(backbone="wan", structure="3d"))
    assert [(n, p.shape) for n, p in a.named_parameters()] == [(n, p.shape) for n, p in b.named_parameters()]


def test_more_structure_blocks_than_the_base_has_is_an_error() -> None:
    models = _base("cogvideox")
    with pytest.raises(ValueError, match="between 1 and the base's 2 blocks"):
        MoSATransformer(models.transformer, MoSAConfig(num_structure_blocks=3))
    with pytest.raises(TypeError, match="WanTransformer3DModel"):
        MoSATransformer(models.transformer, MoSAConfig(backbone="wan"))
    with pytest.raises(ValidationError, match="hadc"):
        MoSAConfig(hadc="maybe")


def test_missing_or_mismatched_skeleton_input_is_explained() -> None:
    models = _base("cogvideox")
    mosa = MoSATransformer(models.transformer, MoSAConfig())
    x, t, text, skeleton = _batch("cogvideox")
    with pytest.raises(ValueError, match="structure_input is required"):
        mosa(None, x, t, text)
    with pytest.raises(ValueError, match="skeleton latents have shape"):
        mosa(None, x, t, text, skeleton[:, :4])


def test_default_clip_shapes_with_the_conv_skeleton_encoder() -> None:
    """17×96×144 clips: latents [B,5,C,12,18], 5·6·9 tokens; the conv encoder takes the skeleton video."""
    models = _base("cogvideox", TinyConfig())
    mosa = MoSATransformer(models.transformer, MoSAConfig(skeleton_encoder="conv", conv_encoder_width=8))
    x = torch.randn(1, 5, 4, 12, 18)
    skeleton_video = torch.rand(1, 3, 17, 96, 144) * 2 - 1
    out = mosa(None, x, torch.tensor([500]), torch.randn(1, 6, 384), skeleton_video)
    assert out["v_pred"].shape == x.shape
    assert [m.shape for m in out["mask_latents"]] == [x.shape, x.shape]
    assert [w.shape for w in out["weights"]] == [(1, 5 * 6 * 9, 32)] * 2
    out["v_pred"].sum().backward()
    assert mosa.hadc[0].predictor.mlp[-1].weight.grad is not None
    with pytest.raises(ValueError, match="encodes to"):
        mosa(None, x, torch.tensor([500]), torch.randn(1, 6, 384), skeleton_video[..., :64])


def test_conv_skeleton_encoder_follows_a_x4_base_vae_and_the_factor_is_saved(tmp_path) -> None:
    """With a x4 VAE the conv encoder must downsample x4; the factor travels with the saved model."""
    cfg = TinyConfig(sample_height=32, sample_width=48, vae_block_channels=(8, 16, 16))
    spec, models = get_spec("cogvideox"), _base("cogvideox", cfg)
    spatial = spec.vae_spatial_compression(models.vae)
    mosa_cfg = MoSAConfig(skeleton_encoder="conv", conv_encoder_width=8, num_structure_blocks=1)
    mosa = MoSATransformer(models.transformer, mosa_cfg, spatial)
    x = torch.randn(1, 5, 4, 8, 12)  # 17x32x48 clip at x4
    out = mosa(None, x, torch.tensor([500]), torch.randn(1, 6, 384), torch.rand(1, 3, 17, 32, 48) * 2 - 1)
    assert spatial == 4 and out["v_pred"].shape == x.shape
    mosa.save_pretrained(tmp_path / "m")
    assert MoSATransformer.from_pretrained(tmp_path / "m", models.transformer).spatial_compression == 4
    with pytest.raises(ValueError, match="spatial_compression: saved 4, base 8"):
        MoSATransformer.from_pretrained(tmp_path / "m", models.transformer, spatial_compression=8)


def test_vae_skeleton_latents_route() -> None:
    models = _base("wan")
    spec = get_spec("wan")
    mosa = MoSATransformer(models.transformer, MoSAConfig(backbone="wan"))
    skeleton = vae_encode_skeleton(spec, models.vae.eval(), torch.rand(1, 3, 17, 32, 48) * 2 - 1)
    x = torch.randn_like(skeleton)
    out = mosa(models.transformer, x, torch.tensor([100.0]), torch.randn(1, 3, 384), skeleton)
    assert out["v_pred"].shape == x.shape == (1, 5, 4, 4, 6)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_save_and_load_round_trip(backbone: str, tmp_path) -> None:
    models = _base(backbone)
    cfg = MoSAConfig(backbone=backbone, num_structure_blocks=1, mask_upsample="transposed")
    mosa = MoSATransformer(models.transformer, cfg)
    x, t, text, skeleton = _batch(backbone)
    _train_step(mosa, x, t, text, skeleton)
    target = tmp_path / "mosa"
    mosa.save_pretrained(target)
    mosa.save_pretrained(target)  # replacing an existing folder works
    assert sorted(p.name for p in target.iterdir()) == ["config.json", "model.safetensors"]
    meta = json.loads((target / "config.json").read_text())
    assert meta["mosa"] == cfg.model_dump()
    assert meta["parameters"] == count_parameters(mosa)
    loaded = MoSATransformer.from_pretrained(target, models.transformer)
    assert loaded.config == cfg
    with torch.no_grad():
        a, b = mosa(None, x, t, text, skeleton), loaded(None, x, t, text, skeleton)
    assert torch.equal(a["v_pred"], b["v_pred"])
    assert all(torch.equal(m, n) for m, n in zip(a["mask_latents"], b["mask_latents"], strict=True))


def test_loading_checks_the_folder_and_the_base(tmp_path) -> None:
    models = _base("cogvideox")
    MoSATransformer(models.transformer, MoSAConfig(num_structure_blocks=1)).save_pretrained(tmp_path / "m")
    with pytest.raises(FileNotFoundError, match=r"mosa-dit folder .* does not exist"):
        MoSATransformer.from_pretrained(tmp_path / "nothing", models.transformer)
    wider = _base("cogvideox", TinyConfig(sample_height=32, sample_width=48, head_dim=24)).transformer
    with pytest.raises(ValueError, match="hidden_size: saved 32, base 48"):
        MoSATransformer.from_pretrained(tmp_path / "m", wider)


def test_count_parameters_splits_trainable_and_frozen() -> None:
    models = _base("cogvideox")
    mosa = MoSATransformer(models.transformer, MoSAConfig())
    counts = count_parameters(mosa)
    assert counts["frozen"] == sum(p.numel() for p in models.transformer.parameters())
    assert counts["trainable"] == sum(p.numel() for p in mosa.trainable_parameters()) > 0


def test_cogvideox_5b_on_the_meta_device_has_the_published_size() -> None:
    spec = get_spec("cogvideox")
    with torch.device("meta"):
        base = spec.build_transformer(spec.published_config("5b"))
    mosa = MoSATransformer(base, MoSAConfig(num_structure_blocks=4))
    assert all(p.is_meta for p in mosa.parameters())
    counts = count_parameters(mosa)
    assert 5.0e9 < counts["frozen"] < 6.0e9  # CogVideoX-5B: ~5.6e9
    per_block = sum(p.numel() for p in base.transformer_blocks[0].parameters())
    assert 4 * per_block < counts["trainable"] < 4 * per_block + 4 * 8e7
    with pytest.raises(ValueError, match="meta device"):
        mosa.save_pretrained("/nonexistent/never-written")


def test_copies_keep_the_base_module_dtypes_of_a_bf16_wan_load() -> None:
    """A bf16 ``from_pretrained`` keeps Wan's norms/modulation tables in float32; the copies must too."""
    base = _base("wan").transformer.to(torch.bfloat16)
    for name, module in base.named_modules():
        if any(part in name.split(".") for part in base._keep_in_fp32_modules):
            module.float()
    for block in base.blocks:
        block.scale_shift_table.data = block.scale_shift_table.data.float()
    mosa = MoSATransformer(base, MoSAConfig(backbone="wan"))
    for (name, p), (_, q) in zip(
        base.blocks[:2].named_parameters(), mosa.structure.blocks.named_parameters(), strict=True
    ):
        assert p.dtype == q.dtype, name
    assert mosa.structure.blocks[0].scale_shift_table.dtype == torch.float32
    assert {p.dtype for p in mosa.hadc.parameters()} == {torch.bfloat16}
    x = torch.randn(1, 5, 4, 4, 6, dtype=torch.bfloat16)
    t, text = torch.tensor([10.0]), torch.randn(1, 3, 384, dtype=torch.bfloat16)
    with torch.no_grad():
        out = mosa(None, x, t, text, torch.randn_like(x))
        reference = get_spec("wan").predict(base, x, t, text)["v_pred"]
    assert out["v_pred"].dtype == torch.bfloat16
    assert torch.equal(out["v_pred"], reference)
