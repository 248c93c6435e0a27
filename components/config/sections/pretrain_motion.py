"""params.yaml ``pretrain_motion``: the text → 3D motion transformer and its evaluation.

One module per stage, so that a stage's DVC deps change only with its own section."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from components.config.sections.common import TrainPhaseParams, _Strict


class TextEncoderParams(_Strict):
    """Sentence encoder of prompts: the packaged all-MiniLM-L6-v2 (384-d) or a T5 from a local folder."""

    name: Literal["minilm", "t5"] = "minilm"
    path: Path | None = None

    @model_validator(mode="after")
    def _t5_needs_path(self) -> TextEncoderParams:
        if self.name == "t5" and self.path is None:
            raise ValueError("text_encoder.name 't5' needs text_encoder.path (a local T5 folder)")
        return self


def _model_config(kind: str, value: dict) -> dict:
    """Validate a model sub-config against its model's pydantic class (imported lazily: torch)."""
    if kind == "vqvae":
        from components.motion.vqvae import VQVAEConfig as cls
    elif kind == "generator":
        from components.motion.generator import GeneratorConfig as cls
    else:
        from components.motion.evaluator import EvaluatorConfig as cls
    return cls(**value).model_dump()


class MotionEvalParams(_Strict):
    """Text-to-motion evaluation on the held-out split (our evaluator on our data)."""

    window: int = Field(default=16, ge=4, description="frames per evaluation window (multiple of 4)")
    stride: int = Field(default=2, ge=1)
    replications: int = Field(default=20, ge=2)
    mm_prompts: int = Field(default=8, ge=1, description="prompts for MultiModality")
    mm_samples: int = Field(default=10, ge=2, description="generations per MultiModality prompt")
    guidance: float = Field(default=2.5, ge=0)
    top_k: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=1.0, gt=0)
    evaluator_steps: int = Field(default=800, ge=1)
    evaluator_lr: float = Field(default=1e-3, gt=0)
    evaluator_batch: int = Field(default=32, ge=2)
    evaluators: int = Field(
        default=3,
        ge=1,
        description="independently seeded evaluators; metrics are their mean (one evaluator's seed alone "
        "moved held-out R-precision by ~0.1), with the spread as *_evaluator_sd",
    )


class VariantParams(_Strict):
    """Text-distinguishable variants of every motion (``components.motion.variants``): playback speeds
    and path turns, each named by the phrase appended to its captions. Variants share their source's
    split group. Only for an index.jsonl motion set (not a HumanML3D folder)."""

    enabled: bool = True
    speeds: dict[str, float] = Field(
        default_factory=lambda: {"in slow motion": 0.6, "sped up": 1.6},
        description="phrase -> playback factor (<1 slower)",
    )
    turns: dict[str, float] = Field(
        default_factory=lambda: {"turning to the left": 60.0, "turning to the right": -60.0},
        description="phrase -> turn rate in degrees per second (positive = left)",
    )

    @field_validator("speeds")
    @classmethod
    def _factors(cls, value: dict[str, float]) -> dict[str, float]:
        for name, f in value.items():
            if not f > 0 or f == 1:
                raise ValueError(f"speeds[{name!r}] = {f}: a playback factor must be positive and not 1")
        return value


class PretrainMotionParams(_Strict):
    """params.yaml ``pretrain_motion`` section: the structure transformer (VQ-VAE + text-conditioned
    autoregressive generator) trained on the ingest stage's motion set or a HumanML3D folder."""

    input: Path = Path("data/ingest/motions")
    output: Path = Path("models/motion")
    reports: Path = Path("reports/pretrain_motion")
    plots: Path = Path("plots/pretrain_motion")
    checkpoints: Path = Path("checkpoints/pretrain_motion")
    seed: int = 0
    window: int = Field(default=24, ge=4, description="training window, frames at 20 fps (multiple of 4)")
    test_fraction: float = Field(default=0.2, ge=0, lt=1)
    text_source: Literal["all", "captions", "prompt"] = "all"
    text_encoder: TextEncoderParams = TextEncoderParams()
    variants: VariantParams = VariantParams()
    vqvae: dict = Field(default_factory=dict, validate_default=True, description="VQVAEConfig fields")
    generator: dict = Field(default_factory=dict, validate_default=True, description="GeneratorConfig fields")
    evaluator: dict = Field(default_factory=dict, validate_default=True, description="EvaluatorConfig fields")
    train_vqvae: TrainPhaseParams = TrainPhaseParams()
    train_generator: TrainPhaseParams = TrainPhaseParams()
    evaluation: MotionEvalParams = MotionEvalParams()

    @field_validator("vqvae", "generator", "evaluator")
    @classmethod
    def _models(cls, value: dict, info) -> dict:
        return _model_config(info.field_name, value)

    @model_validator(mode="after")
    def _windows(self) -> PretrainMotionParams:
        for name, w in (("window", self.window), ("evaluation.window", self.evaluation.window)):
            if w % 4:
                raise ValueError(f"{name} ({w}) must be a multiple of 4 (the tokenizer's downsampling)")
        if self.generator["codebook_size"] != self.vqvae["codebook_size"]:
            raise ValueError(
                f"generator.codebook_size ({self.generator['codebook_size']}) must equal "
                f"vqvae.codebook_size ({self.vqvae['codebook_size']})"
            )
        return self
