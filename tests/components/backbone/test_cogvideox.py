"""CogVideoX adapter: the block-by-block forward equals diffusers' forward; VAE, objective, loading."""

from __future__ import annotations

import pytest
import torch

from components.backbone.cogvideox import SCHEDULER_5B, crop_region, rotary_embedding
from components.backbone.config import TinyConfig
from components.backbone.spec import BlockContext, ControlHooks, get_spec

torch.set_num_threads(1)
SPEC = get_spec("cogvideox")
SMALL = TinyConfig(sample_height=32, sample_width=48)


def _inputs(seed: int = 0, text_len: int = 7) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 5, 4, 2, 3, generator=g).repeat_interleave(2, 3).repeat_interleave(2, 4)
    x = x + 0.1 * torch.randn(x.shape, generator=g)
    return x, torch.randn(2, text_len, 384, generator=g), torch.tensor([17, 940])


class _Recorder(ControlHooks):
    def __init__(self, add: float = 0.0) -> None:
        self.calls: list[tuple[int, tuple[int, ...], tuple[int, ...], tuple[int, int, int]]] = []
        self.add = add

    def after_block(self, index: int, hidden, encoder_hidden, ctx: BlockContext):
        self.calls.append((index, tuple(hidden.shape), tuple(encoder_hidden.shape), ctx.grid))
        return hidden + self.add


@pytest.mark.parametrize("rotary", [True, False])
def test_predict_equals_model_forward(rotary: bool) -> None:
    cfg = TinyConfig(sample_height=32, sample_width=48, rotary=rotary, max_text_seq_length=7)
    tr = SPEC.build_tiny(cfg).transformer.eval()
    x, text, t = _inputs()
    with torch.no_grad():
        ours = SPEC.predict(tr, x, t, text)["v_pred"]
        theirs = tr(x, text, t, image_rotary_emb=rotary_embedding(tr, 5, 4, 6)).sample
    assert ours.shape == x.shape
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
    assert (rotary_embedding(tr, 5, 4, 6) is None) == (not rotary)


def test_hook_is_called_after_every_block_and_can_change_the_output() -> None:
    tr = SPEC.build_tiny(SMALL).transformer.eval()
    x, text, t = _inputs()
    hook = _Recorder()
    with torch.no_grad():
        plain = SPEC.predict(tr, x, t, text)["v_pred"]
        same = SPEC.predict(tr, x, t, text, control=hook)["v_pred"]
        changed = SPEC.predict(tr, x, t, text, control=_Recorder(add=0.5))["v_pred"]
    assert torch.equal(plain, same)
    assert [c[0] for c in hook.calls] == [0, 1]
    assert hook.calls[0][1:] == ((2, 5 * 2 * 3, 32), (2, 7, 32), (5, 2, 3))
    assert not torch.allclose(plain, changed)


def test_gradient_checkpointing_gives_the_same_output_and_gradients() -> None:
    tr = SPEC.build_tiny(SMALL).transformer.eval()
    x, text, t = _inputs()
    x1, x2 = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    a = SPEC.predict(tr, x1, t, text)["v_pred"]
    a.square().mean().backward()
    tr.enable_gradient_checkpointing()
    b = SPEC.predict(tr, x2, t, text)["v_pred"]
    b.square().mean().backward()
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(x1.grad, x2.grad)


def test_crop_region_matches_the_diffusers_pipeline() -> None:
    from diffusers.pipelines.cogvideo.pipeline_cogvideox import get_resize_crop_region_for_grid

    for grid in [(30, 45), (6, 9), (8, 8), (20, 10), (3, 7)]:
        expected = get_resize_crop_region_for_grid(grid, 45, 30)
        assert crop_region(grid, (30, 45)) == tuple(tuple(v) for v in expected)


def test_predict_rejects_bad_inputs() -> None:
    tr = SPEC.build_tiny(SMALL).transformer
    x, text, t = _inputs()
    with pytest.raises(ValueError, match="C=4"):
        SPEC.predict(tr, x[:, :, :3], t, text)
    with pytest.raises(ValueError, match="text_emb must be"):
        SPEC.predict(tr, x, t, text[..., :100])
    with pytest.raises(ValueError, match="divisible by the patch"):
        SPEC.predict(tr, x[..., :3, :], t, text)
    with pytest.raises(TypeError, match="CogVideoXTransformer3DModel"):
        SPEC.predict(torch.nn.Linear(2, 2), x, t, text)


def test_vae_round_trip_shapes_and_scaling() -> None:
    vae = SPEC.build_tiny(TinyConfig()).vae.eval()
    video = torch.rand(1, 3, 17, 96, 144, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        z = SPEC.vae_encode(vae, video)
        assert z.shape == (1, 5, 4, 12, 18)
        out = SPEC.vae_decode(vae, z)
        assert out.shape == video.shape
        vae.register_to_config(scaling_factor=2.5)
        torch.testing.assert_close(SPEC.vae_encode(vae, video), 2.5 * z)
        # (2.5 z) / 2.5 is z only up to rounding, which the decoder amplifies a little
        torch.testing.assert_close(SPEC.vae_decode(vae, 2.5 * z), out, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="8N\\+1"):
        SPEC.vae_encode(vae, video[:, :, :13])


def test_objective_is_v_prediction_consistent_with_the_scheduler() -> None:
    scheduler = SPEC.build_tiny(SMALL).scheduler
    assert scheduler.config.prediction_type == "v_prediction" == SCHEDULER_5B["prediction_type"]
    g = torch.Generator().manual_seed(1)
    x0, noise = torch.randn(3, 5, 4, 4, 6, generator=g), torch.randn(3, 5, 4, 4, 6, generator=g)
    t = torch.tensor([0, 500, 998])
    xt = SPEC.add_noise(scheduler, x0, noise, t)
    v = SPEC.velocity_target(scheduler, x0, noise, t)
    a = scheduler.alphas_cumprod[t].float().view(-1, 1, 1, 1, 1)
    torch.testing.assert_close(xt, a.sqrt() * x0 + (1 - a).sqrt() * noise)
    # x0 = sqrt(a) x_t - sqrt(1-a) v and eps = sqrt(1-a) x_t + sqrt(a) v for the v-parametrisation
    torch.testing.assert_close(a.sqrt() * xt - (1 - a).sqrt() * v, x0, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close((1 - a).sqrt() * xt + a.sqrt() * v, noise, atol=1e-5, rtol=1e-5)


def test_load_pretrained_reads_a_local_diffusers_folder(tmp_path) -> None:
    models = SPEC.build_tiny(SMALL)
    models.transformer.save_pretrained(tmp_path / "transformer")
    models.vae.save_pretrained(tmp_path / "vae")
    models.scheduler.save_pretrained(tmp_path / "scheduler")
    loaded = SPEC.load_pretrained(tmp_path, dtype=torch.float32)
    x, text, t = _inputs()
    with torch.no_grad():
        torch.testing.assert_close(
            SPEC.predict(loaded.transformer.eval(), x, t, text)["v_pred"],
            SPEC.predict(models.transformer.eval(), x, t, text)["v_pred"],
        )
    assert loaded.scheduler.config.prediction_type == "v_prediction"
    assert type(loaded.vae).__name__ == "AutoencoderKLCogVideoX"
    with pytest.raises(FileNotFoundError, match="CogVideoX-5b"):
        SPEC.load_pretrained(tmp_path / "missing")


def test_load_pretrained_refuses_pickled_weights(tmp_path) -> None:
    """A folder whose weights are torch pickles (``diffusion_pytorch_model.bin``) is not loaded: loading
    a pickle runs its writer's code, and the published CogVideoX folders ship safetensors."""
    models = SPEC.build_tiny(SMALL)
    models.transformer.save_pretrained(tmp_path / "transformer", safe_serialization=False)
    models.vae.save_pretrained(tmp_path / "vae")
    models.scheduler.save_pretrained(tmp_path / "scheduler")
    assert (tmp_path / "transformer" / "diffusion_pytorch_model.bin").is_file()
    with pytest.raises(OSError, match="safetensors"):
        SPEC.load_pretrained(tmp_path, dtype=torch.float32)


def test_published_5b_config_builds_on_meta_with_5_6e9_parameters() -> None:
    with torch.device("meta"):
        tr = SPEC.build_transformer(SPEC.published_config("5b"))
    assert all(p.is_meta for p in tr.parameters())
    n = sum(p.numel() for p in tr.parameters())
    assert 5.0e9 < n < 6.0e9
    assert SPEC.hidden_size(tr) == 48 * 64 and len(SPEC.blocks(tr)) == 42
    with pytest.raises(KeyError, match="known: 2b, 5b"):
        SPEC.published_config("7b")
