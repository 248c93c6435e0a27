"""Tracking loss: translation invariance, hand-computed cases, visibility and the weighting modes."""

from __future__ import annotations

import math

import pytest
import torch

from components.losses.tracking import pair_weights, tracking_loss


def _tracks_x(values: list[float]) -> torch.Tensor:
    """One point moving along x with the given per-frame positions → [1,T,1,2]."""
    t = torch.zeros(1, len(values), 1, 2)
    t[0, :, 0, 0] = torch.tensor(values)
    return t


def test_zero_for_a_constant_offset_and_gradient_is_finite():
    g = torch.Generator().manual_seed(0)
    gt = torch.randn(2, 7, 30, 2, generator=g) * 20
    pred = (gt + torch.tensor([3.5, -2.0])).requires_grad_()
    vis = torch.ones(2, 7, 30, dtype=torch.bool)
    for mode in ("temporal", "static"):
        loss = tracking_loss(pred, gt, vis, mode=mode)
        assert loss.item() == pytest.approx(0.0, abs=1e-5)
        loss.backward()
        assert torch.isfinite(pred.grad).all()
        pred.grad = None
    assert tracking_loss(gt + 1.0, gt, vis).item() == pytest.approx(0.0, abs=1e-5)
    assert tracking_loss(gt * 1.1, gt, vis).item() > 0.1


def test_hand_computed_three_frames():
    # error e_t = pred − gt along x: 0, 1, 3 → pair errors (0,1)=1, (0,2)=3, (1,2)=2
    gt = _tracks_x([0.0, 5.0, 10.0])
    pred = _tracks_x([0.0, 6.0, 13.0])
    vis = torch.ones(1, 3, 1, dtype=torch.bool)
    assert tracking_loss(pred, gt, vis, mode="static").item() == pytest.approx(2.0)
    # temporal w(Δ) = Δ/2: weights 0.5, 1, 0.5 → (0.5·1 + 1·3 + 0.5·2) / 2 = 2.25
    assert tracking_loss(pred, gt, vis, mode="temporal").item() == pytest.approx(2.25)
    # 2-D error uses the Euclidean norm: a (3, 4) jump in the last frame only
    pred2 = gt.clone()
    pred2[0, 2, 0] += torch.tensor([3.0, 4.0])
    # pairs (0,2) and (1,2) have error 5, (0,1) has 0 → static 10/3, temporal (1·5 + 0.5·5) / 2
    assert tracking_loss(pred2, gt, vis, mode="static").item() == pytest.approx(10 / 3)
    assert tracking_loss(pred2, gt, vis, mode="temporal").item() == pytest.approx(3.75)


def test_invisible_points_and_frames_are_excluded():
    gt = torch.zeros(1, 3, 2, 2)
    pred = torch.zeros(1, 3, 2, 2)
    pred[0, :, 1, 0] = torch.tensor([0.0, 100.0, -50.0])  # point 1 is wildly wrong ...
    vis = torch.ones(1, 3, 2, dtype=torch.bool)
    vis[0, :, 1] = False  # ... but never visible
    pred[0, 1, 0, 0] = 1.0  # point 0 is wrong only in frame 1
    assert tracking_loss(pred, gt, vis, mode="static").item() == pytest.approx(2 / 3)
    vis[0, 1, 0] = False  # hide frame 1 of point 0: only pair (0,2) is left, and it agrees
    assert tracking_loss(pred, gt, vis, mode="static").item() == pytest.approx(0.0)
    vis[:] = False
    pred.requires_grad_()
    loss = tracking_loss(pred, gt, vis)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(pred.grad, torch.zeros_like(pred))


def test_temporal_weighting_ranks_long_drift_above_jitter_where_static_does_not():
    # drift: error grows by 0.25 px a frame; jitter: error alternates 0, 1. For T = 5
    # static: drift 2·0.25 = 0.5 < jitter 0.6; temporal: drift 2.5·0.25 = 0.625 > jitter 0.5
    gt = _tracks_x([0.0] * 5)
    drift = _tracks_x([0.0, 0.25, 0.5, 0.75, 1.0])
    jitter = _tracks_x([0.0, 1.0, 0.0, 1.0, 0.0])
    vis = torch.ones(1, 5, 1, dtype=torch.bool)
    s_drift, s_jit = (tracking_loss(p, gt, vis, mode="static").item() for p in (drift, jitter))
    t_drift, t_jit = (tracking_loss(p, gt, vis, mode="temporal").item() for p in (drift, jitter))
    assert s_drift == pytest.approx(0.5) and s_jit == pytest.approx(0.6)
    assert t_drift == pytest.approx(0.625) and t_jit == pytest.approx(0.5)
    assert s_drift < s_jit and t_drift > t_jit


def test_off_mode_is_a_constant_zero():
    pred = torch.randn(1, 4, 3, 2, requires_grad=True)
    loss = tracking_loss(pred, torch.zeros(1, 4, 3, 2), torch.ones(1, 4, 3, dtype=torch.bool), mode="off")
    assert loss.item() == 0.0 and not loss.requires_grad


def test_frame_size_normalisation_is_resolution_independent():
    vis = torch.ones(1, 3, 1, dtype=torch.bool)
    gt, pred = _tracks_x([0.0, 5.0, 10.0]), _tracks_x([0.0, 6.0, 13.0])
    small = tracking_loss(pred, gt, vis, frame_size=(48, 72))
    big = tracking_loss(pred * 10, gt * 10, vis, frame_size=(480, 720))
    assert small.item() == pytest.approx(big.item()) and small.item() == pytest.approx(2.25 / 72)


def test_pair_weights_and_scale_of_a_realistic_call():
    t1, t2, w = pair_weights(49, "temporal")
    assert len(t1) == 49 * 48 // 2 and bool((t2 > t1).all())
    assert w.max().item() == 1.0 and w.min().item() == pytest.approx(1 / 48)
    g = torch.Generator().manual_seed(1)
    gt = torch.randn(1, 49, 2000, 2, generator=g)
    pred = (gt + 0.1 * torch.randn(gt.shape, generator=g)).requires_grad_()
    loss = tracking_loss(pred, gt, torch.rand(1, 49, 2000, generator=g) > 0.2)
    loss.backward()
    assert math.isfinite(loss.item()) and pred.grad.abs().sum() > 0


def test_bad_inputs_name_the_problem():
    x = torch.zeros(1, 3, 2, 2)
    vis = torch.ones(1, 3, 2, dtype=torch.bool)
    with pytest.raises(ValueError, match="one of"):
        tracking_loss(x, x, vis, mode="linear")
    with pytest.raises(ValueError, match=r"\[B,T,N,2\]"):
        tracking_loss(x[..., :1], x[..., :1], vis)
    with pytest.raises(ValueError, match="gt tracks"):
        tracking_loss(x, x[:, :2], vis)
    with pytest.raises(ValueError, match=r"vis must be \[B,T,N\]"):
        tracking_loss(x, x, vis[:, :2])
