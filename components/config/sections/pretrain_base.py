"""params.yaml ``pretrain_base``: the tiny CPU-profile base (VAE, DiT, depth net).

One module per stage, so that a stage's DVC deps change only with its own section."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from components.config.sections.common import TokenEncoderParams, TrainPhaseParams, _Strict


class SampleParams(_Strict):
    prompts: list[str] = Field(
        default_factory=lambda: ["a person walks forward", "a person jumps", "a person dances"]
    )
    steps: int = Field(default=25, ge=1)
    guidance: float = Field(default=5.0, ge=0)
    seed: int = 0


class PretrainBaseParams(_Strict):
    """params.yaml ``pretrain_base`` section (CPU profile only): a tiny VAE, a tiny text-to-video
    base DiT and the depth network of the contact loss, trained on the ingested clips."""

    enabled: bool = Field(default=True, description="GPU profiles set false: their base is pretrained")
    input: Path = Path("data/ingest")
    output: Path = Path("models/base")
    reports: Path = Path("reports/pretrain_base")
    plots: Path = Path("plots/pretrain_base")
    checkpoints: Path = Path("checkpoints/pretrain_base")
    seed: int = 0
    backbone: Literal["cogvideox", "wan"] = "cogvideox"
    tiny: dict = Field(default_factory=dict, validate_default=True, description="TinyConfig fields")
    text_encoder: TokenEncoderParams = TokenEncoderParams()
    vae: TrainPhaseParams = TrainPhaseParams(steps=400, batch_size=4, lr=1e-3)
    vae_beta: float = Field(default=1e-4, ge=0)
    vae_crop: tuple[int, int, int] | None = Field(
        default=(9, 32, 48),
        description="VAE training windows (frames, height, width), a fresh random one per item and step; "
        "null: whole clips",
    )
    vae_person_weight: float = Field(
        default=1.0,
        ge=1.0,
        description="reconstruction weight inside the rendered body vs the rest (1: every pixel alike)",
    )
    vae_person_crops: float = Field(
        default=0.0, ge=0.0, le=1.0, description="share of VAE training windows centred on the body"
    )
    dit: TrainPhaseParams = TrainPhaseParams(steps=600, batch_size=8, lr=5e-4)
    cond_dropout: float = Field(default=0.1, ge=0, le=1)
    depth: TrainPhaseParams = TrainPhaseParams(steps=300, batch_size=8, lr=1e-3)
    depth_net: dict = Field(default_factory=dict, validate_default=True, description="DepthNetConfig")
    samples: SampleParams = SampleParams()

    @field_validator("tiny")
    @classmethod
    def _tiny(cls, value: dict) -> dict:
        from components.dit.spec import TinyConfig

        return TinyConfig(**value).model_dump(mode="json")

    @field_validator("depth_net")
    @classmethod
    def _depth_net(cls, value: dict) -> dict:
        from components.base.depth import DepthNetConfig

        return DepthNetConfig(**value).model_dump(mode="json")
