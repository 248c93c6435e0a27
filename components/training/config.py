"""Config leaf of the training room: one training phase as params.yaml states it (``TrainPhaseParams``)
and the engine settings built from it (``EngineConfig.for_phase``). Pydantic only: validating params
imports neither torch nor DeepSpeed."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from components.params import StrictModel


class TrainPhaseParams(StrictModel):
    """One training phase through the DeepSpeed engine (components.training)."""

    steps: int = Field(default=1000, ge=1)
    batch_size: int = Field(default=32, ge=1, description="per rank, per micro-step")
    grad_accum: int = Field(default=1, ge=1)
    lr: float = Field(default=3e-4, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    warmup_steps: int = Field(default=50, ge=0)
    min_lr_ratio: float = Field(default=0.1, ge=0, le=1)
    grad_clip: float | None = Field(default=1.0, gt=0)
    zero_stage: Literal[0, 1, 2, 3] = 2
    checkpoint_every: int = Field(default=0, ge=0, description="optimizer steps; 0 = only at the end")


class EngineConfig(BaseModel):
    """Training-engine settings shared by every training stage (one params.yaml sub-section)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    zero_stage: Literal[0, 1, 2, 3] = 2
    offload: bool = Field(False, description="ZeRO-Offload: optimizer (and with stage 3 parameters) on CPU")
    lr: float = Field(gt=0)
    weight_decay: float = Field(0.0, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(1e-8, gt=0)
    warmup_steps: int = Field(0, ge=0)
    total_steps: int = Field(gt=0, description="length of the LR schedule in optimizer updates")
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="cosine floor as a share of lr")
    grad_accum: int = Field(1, ge=1)
    micro_batch: int = Field(ge=1, description="samples per rank per micro-step (the batch callable's)")
    grad_clip: float | None = Field(1.0, gt=0, description="max global grad norm; null = no clipping")
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    checkpoint_every: int = Field(0, ge=0, description="optimizer updates between checkpoints; 0 = end only")
    keep_checkpoints: int = Field(2, ge=1)
    seed: int = Field(0, ge=0)
    gradient_checkpointing: bool = False
    optimizer: Literal["adamw", "cpu_adam"] = Field(
        "adamw",
        description="adamw: torch.optim.AdamW; cpu_adam: DeepSpeed's C++ AdamW (DeepSpeedCPUAdam, built at "
        "install), which updates in place without torch's per-step temporaries (CPU memory, speed)",
    )
    group_elements: int = Field(
        0,
        ge=0,
        description="0: two parameter groups (decay / no decay); n: split them into groups of at most n "
        "elements (a larger tensor gets its own group), which bounds ZeRO-1/2's per-group fp32 gradient "
        "copy at the optimizer step",
    )
    bucket_elements: int | None = Field(
        None, ge=1, description="ZeRO reduce/allgather/prefetch bucket size in elements; null: 5e7"
    )

    @classmethod
    def for_phase(cls, phase: TrainPhaseParams, seed: int, **overrides: object) -> EngineConfig:
        """The engine settings of one params.yaml training phase: the LR schedule spans ``phase.steps``
        (warmup clamped to it), ``phase.batch_size`` is the per-rank micro-batch; ``overrides`` set
        fields params.yaml does not carry (precision, gradient_checkpointing, keep_checkpoints, ...)."""
        fields = dict(
            zero_stage=phase.zero_stage,
            lr=phase.lr,
            weight_decay=phase.weight_decay,
            warmup_steps=min(phase.warmup_steps, phase.steps),
            total_steps=phase.steps,
            min_lr_ratio=phase.min_lr_ratio,
            grad_accum=phase.grad_accum,
            micro_batch=phase.batch_size,
            grad_clip=phase.grad_clip,
            checkpoint_every=phase.checkpoint_every,
            seed=seed,
        )
        fields.update(overrides)
        return cls(**fields)

    @model_validator(mode="after")
    def _consistent(self) -> EngineConfig:
        if self.warmup_steps > self.total_steps:
            raise ValueError(
                f"warmup_steps ({self.warmup_steps}) must not exceed total_steps ({self.total_steps})"
            )
        if not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"betas must lie in [0, 1), got {self.betas}")
        if self.offload and self.zero_stage == 0:
            raise ValueError("offload needs zero_stage 1, 2 or 3 (ZeRO-Offload); set offload: false")
        return self
