"""Wan adapter: the block-by-block forward equals diffusers' forward; VAE, flow matching, loading."""

from __future__ import annotations

import pytest
import torch

from components.backbone.config import TinyConfig
from components.backbone.spec import BlockContext, ControlHooks, get_spec

torch.set_num_threads(1)
SPEC = get_spec("wan")
SMALL = TinyConfig(sample_height=32, sample_width=48)


def _inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(2, 5, 4, 4, 6, generator=g),
        torch.randn(2, 9, 384, generator=g),
        torch.tensor([12.5, 870.0]),
    )


class _Shift(ControlHooks):
    def __init__(self, add: float) -> None:
        self.add = add
        self.seen: list[tuple[int, tuple[int, int, int]]] = []

    def after_block(self, index: int, hidden, encoder_hidden, ctx: BlockContext):
        self.seen.append((index, ctx.grid))
        return hidden + self.add


def test_predict_equals_model_forward() -> None:
    tr = SPEC.build_tiny(SMALL).transformer.eval()
    x, text, t = _inputs()
    with torch.no_grad():
        ours = SPEC.predict(tr, x, t, text)["v_pred"]
        theirs = tr(x.permute(0, 2, 1, 3, 4), t, text).sample.permute(0, 2, 1, 3, 4)
    assert ours.shape == x.shape
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_hook_sees_every_block_and_changes_the_output() -> None:
    tr = SPEC.build_tiny(SMALL).transformer.eval()
    x, text, t = _inputs()
    zero, shift = _Shift(0.0), _Shift(0.3)
    with torch.no_grad():
        plain = SPEC.predict(tr, x, t, text)["v_pred"]
        assert torch.equal(SPEC.predict(tr, x, t, text, control=zero)["v_pred"], plain)
        assert not torch.allclose(SPEC.predict(tr, x, t, text, control=shift)["v_pred"], plain)
    assert zero.seen == [(0, (5, 2, 3)), (1, (5, 2, 3))]


def test_text_tokens_are_not_updated_by_blocks() -> None:
    tr = SPEC.build_tiny(SMALL).transformer.eval()
    x, text, t = _inputs()
    seen = []

    class Keep(ControlHooks):
        def after_block(self, index, hidden, encoder_hidden, ctx):
            seen.append(torch.equal(encoder_hidden, ctx.encoder_hidden))
            return hidden

    with torch.no_grad():
        SPEC.predict(tr, x, t, text, control=Keep())
    assert seen == [True, True]


def test_predict_rejects_bad_inputs() -> None:
    tr = SPEC.build_tiny(SMALL).transformer
    x, text, t = _inputs()
    with pytest.raises(ValueError, match="text_emb must be"):
        SPEC.predict(tr, x, t, text[:1])
    with pytest.raises(ValueError, match="timesteps must be"):
        SPEC.predict(tr, x, torch.tensor([1.0, 2.0, 3.0]), text)
    with pytest.raises(TypeError, match="WanTransformer3DModel"):
        SPEC.predict(get_spec("cogvideox").build_tiny(SMALL).transformer, x, t, text)


def test_vae_round_trip_shapes_and_normalisation() -> None:
    vae = SPEC.build_tiny(SMALL).vae.eval()
    video = torch.rand(1, 3, 17, 32, 48) * 2 - 1
    with torch.no_grad():
        z = SPEC.vae_encode(vae, video)
        assert z.shape == (1, 5, 4, 4, 6)
        out = SPEC.vae_decode(vae, z)
        assert out.shape == video.shape
        mean, std = [0.5, -1.0, 2.0, 0.0], [2.0, 1.0, 0.5, 4.0]
        vae.register_to_config(latents_mean=mean, latents_std=std)
        m = torch.tensor(mean).view(1, 1, 4, 1, 1)
        s = torch.tensor(std).view(1, 1, 4, 1, 1)
        torch.testing.assert_close(SPEC.vae_encode(vae, video), (z - m) / s)
        torch.testing.assert_close(SPEC.vae_decode(vae, (z - m) / s), out, atol=1e-5, rtol=1e-5)


def test_flow_matching_noise_and_target() -> None:
    scheduler = SPEC.build_tiny(SMALL).scheduler
    g = torch.Generator().manual_seed(2)
    x0, noise = torch.randn(3, 5, 4, 4, 6, generator=g), torch.randn(3, 5, 4, 4, 6, generator=g)
    t = torch.tensor([0.0, 250.0, 1000.0])
    xt = SPEC.add_noise(scheduler, x0, noise, t)
    v = SPEC.velocity_target(scheduler, x0, noise, t)
    torch.testing.assert_close(xt[0], x0[0])
    torch.testing.assert_close(xt[2], noise[2])
    torch.testing.assert_close(xt[1], 0.75 * x0[1] + 0.25 * noise[1])
    torch.testing.assert_close(v, noise - x0)
    # one Euler step along the true velocity from sigma to 0 recovers x0
    sigma = (t / 1000).view(-1, 1, 1, 1, 1)
    torch.testing.assert_close(xt - sigma * v, x0, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match=r"\[0, 1000\]"):
        SPEC.add_noise(scheduler, x0, noise, torch.tensor([0.0, 10.0, 1500.0]))


def _save_tiny(tmp_path):
    models = SPEC.build_tiny(SMALL)
    models.transformer.save_pretrained(tmp_path / "transformer")
    models.vae.save_pretrained(tmp_path / "vae")
    models.scheduler.save_pretrained(tmp_path / "scheduler")
    return models


def test_load_pretrained_without_accelerate_says_what_to_install(tmp_path, monkeypatch) -> None:
    import components.backbone.wan as wan

    _save_tiny(tmp_path)
    monkeypatch.setattr(wan, "is_accelerate_available", lambda: False)
    with pytest.raises(ImportError, match="pip install accelerate"):
        SPEC.load_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"Wan2\.1"):
        SPEC.load_pretrained(tmp_path / "missing")


def test_load_pretrained_reads_a_local_diffusers_folder(tmp_path) -> None:
    pytest.importorskip("accelerate", reason="diffusers loads Wan (fp32-kept modules) only with accelerate")
    models = _save_tiny(tmp_path)
    loaded = SPEC.load_pretrained(tmp_path, dtype=torch.float32)
    x, text, t = _inputs()
    with torch.no_grad():
        torch.testing.assert_close(
            SPEC.predict(loaded.transformer.eval(), x, t, text)["v_pred"],
            SPEC.predict(models.transformer.eval(), x, t, text)["v_pred"],
        )
    assert type(loaded.scheduler).__name__ == "FlowMatchEulerDiscreteScheduler"
    assert loaded.scheduler.config.shift == models.scheduler.config.shift
    assert next(loaded.vae.parameters()).dtype == torch.float32


def test_published_configs_build_on_meta() -> None:
    with torch.device("meta"):
        tr = SPEC.build_transformer(SPEC.published_config("1.3b"))
    n = sum(p.numel() for p in tr.parameters())
    assert 1.2e9 < n < 1.6e9
    assert SPEC.patch_size(tr) == (1, 2, 2) and SPEC.hidden_size(tr) == 1536
