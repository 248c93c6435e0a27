"""Structure generation blocks (copies of the base) and the skeleton encoders (conv and VAE routes)."""

from __future__ import annotations

import pytest
import torch

from components.backbone.config import TinyConfig
from components.backbone.spec import BlockContext, ControlHooks, get_spec
from components.dit.skeleton_encoder import SkeletonConvEncoder, vae_encode_skeleton
from components.dit.structure import StructureBranch, copy_block

torch.set_num_threads(1)
SMALL = TinyConfig(sample_height=32, sample_width=48)


class _Capture(ControlHooks):
    """Keeps the base's hidden states after each block and the block context."""

    def __init__(self) -> None:
        self.hidden: list[torch.Tensor] = []
        self.ctx: BlockContext | None = None

    def after_block(self, index, hidden, encoder_hidden, ctx):
        self.hidden.append(hidden.clone())
        self.ctx = ctx
        return hidden


def _latents(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(2, 5, 4, 4, 6, generator=g),
        torch.randn(2, 6, 384, generator=g),
        torch.tensor([3, 700]),
    )


def test_copy_block_is_an_independent_trainable_copy() -> None:
    base = get_spec("cogvideox").build_tiny(SMALL).transformer.requires_grad_(False).eval()
    block = base.transformer_blocks[0]
    clone = copy_block(block)
    for (name, a), (_, b) in zip(block.state_dict().items(), clone.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
        assert a.data_ptr() != b.data_ptr(), name
    assert all(p.requires_grad for p in clone.parameters())
    assert not any(p.requires_grad for p in block.parameters())
    with torch.no_grad():
        next(clone.parameters()).add_(1.0)
    assert not torch.equal(next(clone.parameters()), next(block.parameters()))


@pytest.mark.parametrize("backbone", ["cogvideox", "wan"])
def test_first_feature_equals_the_base_after_block_one_on_the_same_input(backbone: str) -> None:
    """With copied weights, feeding the noisy latents as 'skeleton' reproduces the base's first block."""
    spec = get_spec(backbone)
    base = spec.build_tiny(SMALL).transformer.eval()
    x, text, t = _latents()
    capture = _Capture()
    branch = StructureBranch(spec, base, num_blocks=2).eval()
    with torch.no_grad():
        spec.predict(base, x, t, text, control=capture)
        features = branch(x, capture.ctx)
    assert len(features) == 2
    assert all(f.shape == (2, 5 * 2 * 3, 32) for f in features)
    torch.testing.assert_close(features[0], capture.hidden[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(features[1], capture.hidden[1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("backbone", ["cogvideox", "wan"])
def test_features_follow_the_skeleton_and_gradients_reach_every_copy(backbone: str) -> None:
    spec = get_spec(backbone)
    base = spec.build_tiny(SMALL).transformer.eval()
    x, text, t = _latents()
    capture = _Capture()
    with torch.no_grad():
        spec.predict(base, x, t, text, control=capture)
    branch = StructureBranch(spec, base, num_blocks=2)
    skeleton = torch.randn_like(x)
    features = branch(skeleton, capture.ctx)
    assert not torch.allclose(features[0], capture.hidden[0])
    features[-1].square().mean().backward()
    for name, p in branch.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert all(p.grad is None for p in base.parameters())


def test_block_count_is_checked() -> None:
    spec = get_spec("wan")
    base = spec.build_tiny(SMALL).transformer
    with pytest.raises(ValueError, match="between 1 and the base's 2 blocks"):
        StructureBranch(spec, base, num_blocks=3)
    with pytest.raises(ValueError, match="got 0"):
        StructureBranch(spec, base, num_blocks=0)


def test_conv_encoder_maps_the_default_clip_to_the_latent_grid() -> None:
    enc = SkeletonConvEncoder(latent_channels=4, width=8)
    video = torch.rand(2, 3, 17, 96, 144) * 2 - 1
    out = enc(video)
    assert out.shape == (2, 5, 4, 12, 18)
    assert enc.output_shape(49, 480, 720) == (13, 60, 90)


def test_conv_encoder_rejects_clips_that_do_not_fit() -> None:
    enc = SkeletonConvEncoder(latent_channels=4, width=8)
    with pytest.raises(ValueError, match="4N\\+1"):
        enc(torch.zeros(1, 3, 16, 32, 48))
    with pytest.raises(ValueError, match="multiples of 8"):
        enc(torch.zeros(1, 3, 17, 36, 48))
    with pytest.raises(ValueError, match="\\[-1, 1\\]"):
        enc(torch.full((1, 3, 17, 32, 48), 3.0))
    with pytest.raises(ValueError, match="power of two"):
        SkeletonConvEncoder(latent_channels=4, spatial_factor=6)


def test_conv_encoder_output_is_temporally_aligned() -> None:
    """Causal like the VAEs: a change in frames 15-16 moves only latent frame 4 (frames 13-16)."""
    enc = SkeletonConvEncoder(latent_channels=4, width=8).eval()
    video = torch.zeros(1, 3, 17, 32, 48)
    changed = video.clone()
    changed[:, :, 15:] = 0.8
    with torch.no_grad():
        diff = (enc(changed) - enc(video)).abs().amax(dim=(0, 2, 3, 4))
    assert diff[:4].max() == 0
    assert diff[-1] > 0
    first = video.clone()
    first[:, :, 0] = 0.8
    with torch.no_grad():
        assert (enc(first) - enc(video))[:, 0].abs().max() > 0


def test_conv_encoder_overfits_a_fixed_target() -> None:
    torch.manual_seed(0)
    enc = SkeletonConvEncoder(latent_channels=4, width=8)
    video = torch.rand(1, 3, 9, 16, 16) * 2 - 1
    target = torch.randn(1, 3, 4, 2, 2)
    opt = torch.optim.Adam(enc.parameters(), lr=1e-2)
    first = None
    for _ in range(150):
        loss = (enc(video) - target).square().mean()
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05 * first


def test_vae_route_uses_the_frozen_vae_without_gradients() -> None:
    spec = get_spec("cogvideox")
    vae = spec.build_tiny(SMALL).vae.eval()
    video = (torch.rand(1, 3, 17, 32, 48) * 2 - 1).requires_grad_(True)
    latents = vae_encode_skeleton(spec, vae, video)
    assert latents.shape == (1, 5, 4, 4, 6)
    assert not latents.requires_grad
    with torch.no_grad():
        torch.testing.assert_close(latents, spec.vae_encode(vae, video))
