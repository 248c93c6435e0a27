"""Differentiable soft tracker: accuracy on an exactly shifted synthetic video, gradients, errors."""

from __future__ import annotations

import pytest
import torch

from components.losses.soft_tracker import soft_track

SHIFTS = torch.tensor([[0.0, 0.0], [0.5, 0.3], [1.2, -0.7], [2.0, 1.5], [2.7, 2.2], [3.4, 1.0]])
QUERIES = torch.tensor([[20.0, 20.0], [24.3, 27.1], [28.0, 18.0], [18.5, 30.0], [25.0, 24.0]])


def blob_video(shifts: torch.Tensor, size: int = 48, blobs: int = 40, seed: int = 0) -> torch.Tensor:
    """A texture of random Gaussian blobs translated by ``shifts`` [T,2] (x, y) → [1,T,3,H,W].

    The texture is evaluated analytically at every pixel, so sub-pixel shifts are exact.
    """
    g = torch.Generator().manual_seed(seed)
    centre = torch.rand(blobs, 2, generator=g, dtype=torch.float64) * 20 + 14
    amp = torch.rand(blobs, 3, generator=g, dtype=torch.float64) * 2 - 1
    r = torch.arange(size, dtype=torch.float64)
    ys, xs = torch.meshgrid(r, r, indexing="ij")
    frames = []
    for s in shifts.double():
        d2 = (xs - centre[:, 0, None, None] - s[0]) ** 2 + (ys - centre[:, 1, None, None] - s[1]) ** 2
        frames.append(torch.einsum("khw,kc->chw", torch.exp(-d2 / (2 * 1.8**2)), amp))
    return torch.stack(frames)[None].float()


@pytest.mark.parametrize("centring", ["chained", "offset_gt", "query_position"])
def test_recovers_known_subpixel_translation(centring):
    frames = blob_video(SHIFTS)
    q = QUERIES[None]
    truth = q[:, None] + SHIFTS[None, :, None]
    centres = {
        "chained": None,
        "offset_gt": truth + torch.tensor([1.0, -0.6]),  # centres off by > 1 px: the match corrects them
        "query_position": q[:, None].expand_as(truth),  # no motion prior; motion stays within radius
    }[centring]
    tracks = soft_track(frames, q, 0, centres)
    assert tracks.shape == (1, 6, 5, 2)
    assert (tracks - truth).norm(dim=-1).max().item() < 0.5


def test_chained_tracking_follows_motion_beyond_the_search_radius():
    steps = torch.arange(7, dtype=torch.float32)[:, None] * torch.tensor([1.6, 1.1])  # 9.6 px by the end
    frames = blob_video(steps, size=64)
    q = QUERIES[None, :3]
    truth = q[:, None] + steps[None, :, None]
    chained = soft_track(frames, q, 0, None, radius=2)
    assert (chained - truth).norm(dim=-1).max().item() < 0.5
    fixed = soft_track(frames, q, 0, q[:, None].expand_as(truth), radius=2)
    assert (fixed - truth).norm(dim=-1).max().item() > 2.0  # a fixed window cannot reach it


def test_query_frame_per_sample_and_brightness_invariance():
    frames = blob_video(SHIFTS)
    frames2 = frames.clone()
    frames2[0, 3] = frames2[0, 3] * 2.0 + 0.3  # contrast and brightness change in one frame
    both = torch.cat([frames, frames2])
    truth = QUERIES[None, None] + SHIFTS[None, :, None]
    q = torch.stack([truth[0, 2], truth[0, 4]])  # sample 0 queried at frame 2, sample 1 at frame 4
    both.requires_grad_()
    tracks = soft_track(both, q, torch.tensor([2, 4]))  # chained forward and backward per sample
    assert (tracks - truth).norm(dim=-1).max().item() < 0.5
    tracks.sum().backward()
    assert torch.isfinite(both.grad).all()
    assert all(both.grad[i, j].abs().sum() > 0 for i in range(2) for j in range(6))


def test_gradient_reaches_frames_and_is_finite():
    frames = blob_video(SHIFTS[:3]).requires_grad_()
    q = QUERIES[None]
    truth = q[:, None] + SHIFTS[None, :3, None]
    tracks = soft_track(frames, q, 0, truth)
    ((tracks - truth) ** 2).sum().add(tracks.sum()).backward()
    assert torch.isfinite(frames.grad).all()
    assert frames.grad[0, 1:].abs().sum() > 0  # target frames get gradient ...
    assert frames.grad[0, 0].abs().sum() > 0  # ... and so does the query frame (via its patches)


def test_gradcheck_tiny_double():
    g = torch.Generator().manual_seed(3)
    frames = torch.rand(1, 2, 1, 7, 8, generator=g, dtype=torch.float64, requires_grad=True)
    q = torch.tensor([[[3.3, 3.6]]], dtype=torch.float64)
    centres = torch.tensor([[[[3.3, 3.6]], [[3.7, 3.2]]]], dtype=torch.float64)

    def fn(x: torch.Tensor) -> torch.Tensor:
        return soft_track(x, q, 0, centres, radius=1, patch=1, temperature=0.2)

    assert torch.autograd.gradcheck(fn, (frames,), eps=1e-6, atol=1e-6, rtol=1e-4)


def test_flat_patch_stays_at_centre():
    frames = torch.full((1, 3, 1, 20, 20), 0.5)
    centres = torch.tensor([5.0, 7.5]).expand(1, 3, 1, 2)
    tracks = soft_track(frames, torch.tensor([[[5.0, 7.5]]]), 0, centres)
    torch.testing.assert_close(tracks, centres)


def test_bad_inputs_name_the_problem():
    frames = torch.zeros(1, 3, 1, 10, 10)
    q = torch.zeros(1, 2, 2)
    with pytest.raises(ValueError, match=r"frames must be a float tensor \[B,T,C,H,W\]"):
        soft_track(frames[0], q)
    with pytest.raises(ValueError, match=r"query_xy must be \[B,N,2\]"):
        soft_track(frames, q[..., :1])
    with pytest.raises(ValueError, match=r"centres must be \[B,T,N,2\]"):
        soft_track(frames, q, 0, torch.zeros(1, 2, 2, 2))
    with pytest.raises(ValueError, match=r"query_t must lie in 0\.\.2"):
        soft_track(frames, q, 3)
    with pytest.raises(ValueError, match="temperature"):
        soft_track(frames, q, temperature=0.0)
