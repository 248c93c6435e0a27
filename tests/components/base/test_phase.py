"""fit_phase hands back a module with no DeepSpeed gradient hooks left, so it can be trained again."""

from __future__ import annotations

import torch
from torch import nn

from components.base.phase import fit_phase
from components.training.config import TrainPhaseParams

torch.set_num_threads(1)


def hooks(module: nn.Module) -> int:
    return sum(len(getattr(p, "_post_accumulate_grad_hooks", None) or {}) for p in module.parameters())


def test_a_trained_module_carries_no_engine_hooks_and_trains_again() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    x, y = torch.randn(16, 4), torch.randn(16, 1)

    def loss_fn(engine, batch):
        loss = (engine(batch["x"]) - batch["y"]).pow(2).mean()
        return loss, {}

    phase = TrainPhaseParams(steps=3, batch_size=16, lr=1e-2, warmup_steps=0)
    trained, _ = fit_phase(model, phase, 0, loss_fn, lambda i: {"x": x, "y": y}, progress=False)
    assert hooks(trained) == 0
    # a plain backward afterwards leaves the gradient where autograd put it (no stale hook takes it)
    trained.requires_grad_(True)
    trained(x).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in trained.parameters())
    trained.zero_grad(set_to_none=True)
    # and a second phase on the same parameters trains and cleans up as well
    again, history = fit_phase(trained, phase, 0, loss_fn, lambda i: {"x": x, "y": y}, progress=False)
    assert len(history) == 3 and hooks(again) == 0
