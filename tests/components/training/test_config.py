"""EngineConfig: bad values fail by name; ``for_phase`` maps one params.yaml phase onto the engine."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from components.training.config import EngineConfig, TrainPhaseParams


def test_engine_config_rejects_bad_values_by_name():
    with pytest.raises(ValidationError, match="learning_rate"):
        EngineConfig(lr=1e-3, total_steps=10, micro_batch=2, learning_rate=1e-3)
    with pytest.raises(ValidationError, match=r"warmup_steps \(20\) must not exceed total_steps \(10\)"):
        EngineConfig(lr=1e-3, total_steps=10, micro_batch=2, warmup_steps=20)
    with pytest.raises(ValidationError, match="offload needs zero_stage"):
        EngineConfig(lr=1e-3, total_steps=10, micro_batch=2, zero_stage=0, offload=True)
    with pytest.raises(ValidationError, match="zero_stage"):
        EngineConfig(lr=1e-3, total_steps=10, micro_batch=2, zero_stage=4)
    with pytest.raises(ValidationError, match="betas"):
        EngineConfig(lr=1e-3, total_steps=10, micro_batch=2, betas=(0.9, 1.0))


def test_for_phase_maps_a_phase_and_clamps_warmup_to_its_steps():
    phase = TrainPhaseParams(steps=30, batch_size=6, grad_accum=2, lr=2e-3, warmup_steps=50, zero_stage=3)
    cfg = EngineConfig.for_phase(phase, seed=7, precision="fp32")
    assert (cfg.total_steps, cfg.warmup_steps, cfg.micro_batch, cfg.grad_accum) == (30, 30, 6, 2)
    assert (cfg.lr, cfg.zero_stage, cfg.seed, cfg.precision) == (2e-3, 3, 7, "fp32")
    assert cfg.min_lr_ratio == phase.min_lr_ratio and cfg.grad_clip == phase.grad_clip
    assert EngineConfig.for_phase(TrainPhaseParams(steps=100, warmup_steps=10), seed=0).warmup_steps == 10
    with pytest.raises(ValidationError, match="offload needs zero_stage"):
        EngineConfig.for_phase(TrainPhaseParams(zero_stage=0), seed=0, offload=True)
