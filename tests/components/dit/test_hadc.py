"""HADC: zero-initialised weight predictor (Eq. 4-5), mask head layout (Eq. 6), ablation modes
(``no_w``: static per-channel weight; ``off``: direct injection ``z + s``)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from components.dit.hadc import HADC, MaskHead, WeightPredictor, direct_injection

torch.set_num_threads(1)
D, GRID, PATCH = 8, (3, 2, 4), (1, 2, 2)
T = GRID[0] * GRID[1] * GRID[2]


def _tokens(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(2, T, D, generator=g),
        torch.randn(2, T, D, generator=g),
        torch.randn(2, 5, D, generator=g),
    )


def test_predictor_starts_at_zero_and_module_starts_as_identity() -> None:
    z, s, c = _tokens()
    hadc = HADC("on", D, latent_channels=4, patch=PATCH)
    out = hadc(z, s, c, GRID)
    assert torch.equal(out.weights, torch.zeros_like(z))
    assert torch.equal(out.hidden, z)
    assert out.mask_latent.shape == (2, 3, 4, 4, 8)


def test_update_is_z_plus_w_times_s() -> None:
    z, s, c = _tokens()
    hadc = HADC("on", D, latent_channels=4, patch=PATCH)
    bias = torch.linspace(-1, 1, D)
    with torch.no_grad():
        hadc.predictor.mlp[-1].bias.copy_(bias)
    out = hadc(z, s, c, GRID, compute_mask=False)
    torch.testing.assert_close(out.weights, bias.expand(2, T, D))
    torch.testing.assert_close(out.hidden, z + bias * s)
    assert out.mask_latent is None


def test_weights_are_per_token_and_depend_on_structure_video_and_text() -> None:
    torch.manual_seed(0)
    z, s, c = _tokens()
    p = WeightPredictor(D, hidden=16)
    nn.init.normal_(p.mlp[-1].weight)
    w = p(s, z, c)
    assert w.shape == (2, T, D)
    assert not torch.allclose(w[:, 0], w[:, 1])
    assert not torch.allclose(p(s, z, c + 1.0), w)
    assert not torch.allclose(p(s + 1.0, z, c), w)
    assert not torch.allclose(p(s, z + 1.0, c), w)
    # text enters pooled: permuting the text tokens changes nothing
    torch.testing.assert_close(p(s, z, c.flip(1)), w)


def test_predictor_checks_shapes() -> None:
    z, s, c = _tokens()
    p = WeightPredictor(D, hidden=16)
    with pytest.raises(ValueError, match="must match the video tokens"):
        p(s[:, :-1], z, c)
    with pytest.raises(ValueError, match="text tokens must be"):
        p(s, z, c[..., :3])


@pytest.mark.parametrize("upsample", ["nearest", "transposed"])
def test_mask_head_output_has_the_latent_size(upsample: str) -> None:
    head = MaskHead(D, hidden=16, latent_channels=4, patch=PATCH, mid_channels=6, upsample=upsample)
    w = torch.randn(2, T, D)
    assert head(w, GRID).shape == (2, 3, 4, 2 * 2, 4 * 2)
    with pytest.raises(ValueError, match="do not fill the token grid"):
        head(w[:, :-1], GRID)


def test_mask_head_puts_each_token_on_its_own_patch() -> None:
    """Token (f, i, j) in frame-major, row, column order lands on latent pixels [f, ip:(i+1)p, jp:(j+1)p]."""
    head = MaskHead(D, hidden=16, latent_channels=D, patch=PATCH, mid_channels=D, upsample="nearest")
    head.mlp = nn.Identity()
    with torch.no_grad():
        head.conv.weight.zero_()
        head.conv.bias.zero_()
        for k in range(D):
            head.conv.weight[k, k, 1, 1, 1] = 1.0
    w = torch.zeros(1, T, D)
    f, i, j = 2, 1, 3
    token = (f * GRID[1] + i) * GRID[2] + j
    w[0, token, 5] = 1.0
    mask = head(w, GRID)  # [1, F, C, h, w]
    hot = mask[0, :, 5].nonzero().tolist()
    assert sorted(hot) == [[f, y, x] for y in (2, 3) for x in (6, 7)]


def test_mask_loss_trains_the_predictor_through_w() -> None:
    torch.manual_seed(0)
    z, s, c = _tokens()
    hadc = HADC("on", D, latent_channels=4, patch=PATCH, hidden=16)
    target = torch.randn(2, 3, 4, 4, 8)
    out = hadc(z, s, c, GRID)
    (out.mask_latent - target).square().mean().backward()
    assert hadc.predictor.mlp[-1].weight.grad.abs().sum() > 0
    opt = torch.optim.Adam(hadc.parameters(), lr=1e-2)
    first = None
    for _ in range(200):
        opt.zero_grad()
        loss = (hadc(z, s, c, GRID).mask_latent - target).square().mean()
        first = first if first is not None else loss.item()
        loss.backward()
        opt.step()
    assert loss.item() < 0.2 * first
    assert hadc(z, s, c, GRID).weights.abs().sum() > 0


def test_no_w_mode_is_a_zero_initialised_static_per_channel_weight() -> None:
    z, s, c = _tokens()
    hadc = HADC("no_w", D, latent_channels=4, patch=PATCH)
    assert [(n, p.shape) for n, p in hadc.named_parameters()] == [("alpha", (D,))]
    assert not hadc.alpha.any()
    out = hadc(z, s, c, GRID)
    assert torch.equal(out.hidden, z) and out.weights is None and out.mask_latent is None
    w = torch.linspace(-1, 1, D)
    with torch.no_grad():
        hadc.alpha.copy_(w)
    torch.testing.assert_close(hadc(z, s, c, GRID).hidden, z + w * s)
    # static: the same weight whatever the video and text tokens
    torch.testing.assert_close(hadc(z + 1.0, s, c - 1.0, GRID).hidden, z + 1.0 + w * s)
    with pytest.raises(ValueError, match="must match the video tokens"):
        hadc(z, s[:, :-1], c, GRID)


def test_no_w_weight_learns_from_a_loss() -> None:
    z, s, c = _tokens()
    hadc = HADC("no_w", D, latent_channels=4, patch=PATCH)
    before = hadc(z, s, c, GRID).hidden.detach()
    opt = torch.optim.SGD(hadc.parameters(), lr=0.1)
    (hadc(z, s, c, GRID).hidden - (z + s)).square().mean().backward()
    opt.step()
    assert hadc.alpha.abs().min() > 0
    assert not torch.allclose(hadc(z, s, c, GRID).hidden, before)


def test_off_mode_builds_no_module_and_adds_the_features_directly() -> None:
    z, s, _ = _tokens()
    with pytest.raises(ValueError, match="no module is built"):
        HADC("off", D, latent_channels=4, patch=PATCH)
    torch.testing.assert_close(direct_injection(z, s), z + s)
    assert direct_injection(z, s.double()).dtype == z.dtype
    with pytest.raises(ValueError, match="must match the video tokens"):
        direct_injection(z, s[:, :-1])
    with pytest.raises(ValueError, match="nearest"):
        MaskHead(D, 16, 4, PATCH, upsample="bilinear")
