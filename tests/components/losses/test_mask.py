"""Mask loss: known MSE values, per-sample weights, gradients and shape errors."""

from __future__ import annotations

import pytest
import torch

from components.losses.mask import mask_loss


def test_known_mse_and_zero_at_target():
    target = torch.zeros(2, 3, 4, 2, 2)
    pred = torch.zeros_like(target)
    pred[0] = 1.0  # sample 0: every element off by 1 → mse 1; sample 1 exact → 0
    assert mask_loss(pred, target).item() == pytest.approx(0.5)
    assert mask_loss(target.clone(), target).item() == 0.0
    pred2 = torch.full_like(target, 3.0)
    assert mask_loss(pred2, target).item() == pytest.approx(9.0)


def test_per_sample_weight_is_a_weighted_mean():
    target = torch.zeros(3, 5)
    pred = torch.stack([torch.full((5,), 1.0), torch.full((5,), 2.0), torch.full((5,), 3.0)])
    # mse per sample 1, 4, 9; weights 1, 0, 3 → (1 + 27) / 4 = 7
    assert mask_loss(pred, target, torch.tensor([1.0, 0.0, 3.0])).item() == pytest.approx(7.0)
    zero = mask_loss(pred.requires_grad_(), target, torch.zeros(3))
    assert zero.item() == 0.0
    zero.backward()
    assert torch.equal(pred.grad, torch.zeros_like(pred))


def test_gradient_reaches_prediction_only():
    pred = torch.tensor([[0.5, -0.5]], requires_grad=True)
    target = torch.tensor([[0.0, 0.0]], requires_grad=True)
    mask_loss(pred, target).backward()
    torch.testing.assert_close(pred.grad, torch.tensor([[0.5, -0.5]]))  # 2·diff / 2 elements
    assert target.grad is None


def test_errors_name_the_bad_input():
    with pytest.raises(ValueError, match=r"mask_pred_latent \(2, 4\) and mask_latent \(2, 5\)"):
        mask_loss(torch.zeros(2, 4), torch.zeros(2, 5))
    with pytest.raises(ValueError, match=r"weight must be \[B\] = \[2\]"):
        mask_loss(torch.zeros(2, 4), torch.zeros(2, 4), torch.ones(3))
    with pytest.raises(ValueError, match=">= 0"):
        mask_loss(torch.zeros(2, 4), torch.zeros(2, 4), torch.tensor([1.0, -1.0]))
