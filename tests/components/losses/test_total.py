"""Eq. 9 combination: paper weights, switches, logs and gradients."""

from __future__ import annotations

import pydantic
import pytest
import torch

from components.losses.config import LossWeights
from components.losses.total import combine


def test_paper_weights_and_weighted_sum():
    w = LossWeights()
    assert (w.mask, w.track, w.contact, w.track_mode, w.contact_enabled) == (
        0.001,
        0.01,
        10.0,
        "temporal",
        True,
    )
    terms = {
        k: torch.tensor(v) for k, v in {"diff": 2.0, "mask": 100.0, "track": 10.0, "contact": 0.5}.items()
    }
    total, logs = combine(terms, w)
    assert total.item() == pytest.approx(2.0 + 0.1 + 0.1 + 5.0)
    assert logs["mask"] == pytest.approx(100.0) and logs["mask_weighted"] == pytest.approx(0.1)
    assert logs["contact_weighted"] == pytest.approx(5.0) and logs["total"] == pytest.approx(7.2)
    assert all(isinstance(v, float) for v in logs.values())


def test_missing_and_disabled_terms_contribute_nothing():
    diff = torch.tensor(1.0, requires_grad=True)
    track = torch.tensor(3.0, requires_grad=True)
    contact = torch.tensor(4.0, requires_grad=True)
    total, logs = combine(
        {"diff": diff, "track": track, "contact": contact},
        LossWeights(track_mode="off", contact_enabled=False),
    )
    assert total.item() == 1.0 and "mask" not in logs
    assert logs["track"] == 3.0 and logs["track_weighted"] == 0.0 and logs["contact_weighted"] == 0.0
    total.backward()
    assert diff.grad.item() == 1.0 and track.grad is None and contact.grad is None
    # static tracking keeps its weight
    total2, _ = combine(
        {"diff": torch.tensor(1.0), "track": torch.tensor(3.0)}, LossWeights(track_mode="static")
    )
    assert total2.item() == pytest.approx(1.03)


def test_gradients_are_scaled_by_the_weights():
    x = torch.tensor(2.0, requires_grad=True)
    total, _ = combine({"diff": x**2, "mask": x**2, "contact": x}, LossWeights(mask=0.5, contact=3.0))
    total.backward()
    assert x.grad.item() == pytest.approx(2 * 2.0 + 0.5 * 2 * 2.0 + 3.0)


def test_only_disabled_terms_gives_zero():
    total, logs = combine({"contact": torch.tensor(5.0)}, LossWeights(contact_enabled=False))
    assert total.item() == 0.0 and logs["total"] == 0.0 and logs["contact"] == 5.0


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"unknown loss terms \['tracking'\]"):
        combine({"diff": torch.tensor(1.0), "tracking": torch.tensor(1.0)})
    with pytest.raises(ValueError, match="no loss terms"):
        combine({})
    with pytest.raises(ValueError, match="'mask' must be a scalar"):
        combine({"diff": torch.tensor(1.0), "mask": torch.ones(3)})
    with pytest.raises(pydantic.ValidationError, match="track_mode"):
        LossWeights(track_mode="linear")
    with pytest.raises(pydantic.ValidationError, match="contact"):
        LossWeights(contact=-1.0)
    with pytest.raises(pydantic.ValidationError, match="lambda_mask"):
        LossWeights(lambda_mask=1.0)
