"""What the base trainers share: clip → tensor conversion and one training phase through the engine."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from components.training.config import EngineConfig, TrainPhaseParams
from components.training.engine import Trainer

History = list[dict[str, float]]


class PhaseHistory(list):
    """One record per update (a ``History``) and the step the phase resumed from (None = from 0)."""

    def __init__(self, rows: list[dict[str, float]], resumed_from: int | None = None):
        super().__init__(rows)
        self.resumed_from = resumed_from


LogFn = Callable[[int, dict[str, float]], None]


def unit_video(frames: np.ndarray, who: str = "clip") -> Tensor:
    """uint8 frames ``[T,H,W,3]`` → float32 video ``[3,T,H,W]`` in [-1, 1] (the backbones' range)."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(
            f"{who}: video must be uint8 [T,H,W,3], got {frames.dtype} with shape {frames.shape}"
        )
    return torch.from_numpy(frames).permute(3, 0, 1, 2).float().div(127.5).sub(1.0)


def fit_phase(
    model: nn.Module,
    phase: TrainPhaseParams,
    seed: int,
    loss_fn: Callable[[nn.Module, Any], tuple[Tensor, dict[str, float]]],
    batches: Callable[[int], Any],
    ckpt_dir: Path | str | None = None,
    log_fn: LogFn | None = None,
    progress: bool = True,
) -> tuple[nn.Module, History]:
    """Train ``model`` for ``phase.steps`` updates through the DeepSpeed Trainer; resumes from ``ckpt_dir``.

    Returns the trained module (in eval mode, parameters frozen again) and one record per update
    (``step``, ``loss``, ``lr``, ``grad_norm`` and the loss function's metrics), earlier ones included
    when the run resumed from a checkpoint (``history.resumed_from`` says from which step).

    The engine is destroyed before returning: DeepSpeed's ZeRO optimizer leaves a gradient hook on every
    parameter it trained, and a later phase training the same parameters (the VAE decoder after the
    VAE) would feed the dead engine's never-flushed bucket on every backward until it overflowed
    (seen: a crash after 473 decoder steps).
    """

    trainer = Trainer(model, EngineConfig.for_phase(phase, seed), loss_fn, ckpt_dir, log_fn=log_fn)
    result = trainer.fit(batches, phase.steps, progress=progress)
    trained = trainer.engine.module
    trainer.engine.destroy()
    trained.eval().requires_grad_(False)
    return trained, PhaseHistory([dict(r) for r in result.losses], result.resumed_from)
