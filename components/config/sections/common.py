"""Shared pieces of the params sections: the strict base model, one training phase, model sub-configs.

One module per stage, so that a stage's DVC deps change only with its own section."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TrainPhaseParams(_Strict):
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


class TokenEncoderParams(_Strict):
    """Token-level text encoder of the video model (CogVideoX conditions on T5 token states)."""

    name: Literal["minilm", "t5"] = "minilm"
    path: Path | None = None
    max_tokens: int = Field(default=32, ge=1)
