"""Learning-rate schedule: linear warmup, then cosine decay to a floor.

The schedule is a pure function of the optimizer step, so a resumed run recomputes it from the
configuration instead of trusting values pickled into a checkpoint.
"""

from __future__ import annotations

import functools
import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def lr_factor(step: int, warmup_steps: int, total_steps: int, min_lr_ratio: float) -> float:
    """Multiplier of the base learning rate for the update with 0-based index ``step``.

    Warmup: update ``s < warmup_steps`` uses ``(s + 1) / warmup_steps`` (the first update is not
    wasted at lr 0; update ``warmup_steps - 1`` reaches the full rate). Then cosine decay over
    ``total_steps - warmup_steps`` updates from 1 to ``min_lr_ratio``, reached at ``step ==
    total_steps`` and held after it.
    """
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    decay_steps = total_steps - warmup_steps
    progress = 1.0 if decay_steps <= 0 else min(1.0, (step - warmup_steps) / decay_steps)
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_cosine(optimizer: Optimizer, warmup_steps: int, total_steps: int, min_lr_ratio: float) -> LambdaLR:
    """A ``LambdaLR`` following :func:`lr_factor`; DeepSpeed steps it once per optimizer update.

    A ``functools.partial`` is used on purpose: ``LambdaLR.state_dict`` stores only the (empty)
    ``__dict__`` of callable objects, so resuming never replaces the configured schedule.
    """
    fn = functools.partial(
        lr_factor, warmup_steps=warmup_steps, total_steps=total_steps, min_lr_ratio=min_lr_ratio
    )
    return LambdaLR(optimizer, lr_lambda=fn)
