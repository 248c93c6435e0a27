"""Config leaf of the base room: params.yaml ``pretrain_base`` (the tiny CPU-profile base: VAE, DiT,
depth net), the depth net's sizes and the video model's token-level text encoder. Pydantic only."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from components.backbone.config import TinyConfig
from components.params import StrictModel
from components.training.config import TrainPhaseParams


class TokenEncoderParams(StrictModel):
    """Token-level text encoder of the video model (CogVideoX conditions on T5 token states)."""

    name: Literal["minilm", "t5"] = "minilm"
    path: Path | None = None
    max_tokens: int = Field(default=32, ge=1)


class DepthNetConfig(BaseModel):
    """Sizes and output range of ``DepthNet`` (stored as ``depth/config.json`` in a base bundle)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_channels: int = Field(16, ge=1, description="width of the first level; doubles per level")
    levels: int = Field(3, ge=1, le=6, description="downsamplings (×2 each)")
    max_channels: int = Field(128, ge=1)
    norm_groups: int = Field(4, ge=1, description="GroupNorm groups; must divide every level's width")
    coords: bool = Field(True, description="append normalised (x, y) pixel-coordinate input channels")
    min_depth: float = Field(0.05, gt=0, description="metres; the smallest depth the net can output")
    init_depth: float = Field(5.0, gt=0, description="metres; the depth everywhere at initialisation")
    seed: int = 0

    @model_validator(mode="after")
    def _consistent(self) -> DepthNetConfig:
        if self.init_depth <= self.min_depth:
            raise ValueError(f"init_depth ({self.init_depth}) must exceed min_depth ({self.min_depth})")
        bad = [c for c in self.widths() if c % self.norm_groups]
        if bad:
            raise ValueError(
                f"norm_groups={self.norm_groups} must divide every level width {self.widths()}; "
                "change base_channels, max_channels or norm_groups"
            )
        return self

    def widths(self) -> list[int]:
        """Channel width of each level, from full resolution down to the bottleneck."""
        return [min(self.base_channels * 2**i, self.max_channels) for i in range(self.levels + 1)]


class SampleParams(StrictModel):
    prompts: list[str] = Field(
        default_factory=lambda: ["a person walks forward", "a person jumps", "a person dances"]
    )
    steps: int = Field(default=25, ge=1)
    guidance: float = Field(default=5.0, ge=0)
    seed: int = 0


class PretrainBaseParams(StrictModel):
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
    tiny: TinyConfig = TinyConfig()
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
    vae_decoder: TrainPhaseParams | None = Field(
        default=None,
        description="decoder fine-tune on noisy latents after the VAE, encoder frozen "
        "(components/base/train_vae_decoder.py); null: skipped",
    )
    vae_decoder_noise: float = Field(
        default=0.3, ge=0, description="largest latent noise std of the decoder fine-tune (latents: unit std)"
    )
    dit: TrainPhaseParams = TrainPhaseParams(steps=600, batch_size=8, lr=5e-4)
    dit_min_snr_gamma: float | None = Field(
        default=None,
        gt=0,
        description="Min-SNR-γ timestep weighting of the base DiT's v-prediction loss (cogvideox; "
        "components/losses/diffusion.py); null: the plain objective",
    )
    cond_dropout: float = Field(default=0.1, ge=0, le=1)
    short_caption_prob: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="share of items the base DiT trains under a short caption "
        "variant (its motion-only prompt with another subject; components/data/caption_variants.py)",
    )
    depth: TrainPhaseParams = TrainPhaseParams(steps=300, batch_size=8, lr=1e-3)
    depth_net: DepthNetConfig = DepthNetConfig()
    samples: SampleParams = SampleParams()
