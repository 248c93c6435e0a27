"""Config leaf of the dit room: the MoSA modules' architecture and ablation switches (``MoSAConfig``) and
params.yaml ``train_dit`` (the MoSA modules, their losses and the following check). Pydantic only."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from components.base.config import TokenEncoderParams
from components.losses.config import LossWeights
from components.params import StrictModel
from components.training.config import TrainPhaseParams

StructureMode = Literal["off", "2d", "3d"]
HADCMode = Literal["on", "no_w", "off"]


class MoSAConfig(BaseModel):
    """Architecture and ablation switches of the appearance branch's trainable part."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backbone: Literal["cogvideox", "wan"] = "cogvideox"
    num_structure_blocks: int = Field(
        2, ge=1, description="N: structure blocks = HADC modules = first N base blocks"
    )
    structure: StructureMode = Field("2d", description="off | 2d | 3d (see components/dit/structure.py)")
    hadc: HADCMode = Field("on", description="on | no_w | off (see components/dit/hadc.py)")
    skeleton_encoder: Literal["vae", "conv"] = Field(
        "vae", description="vae: forward takes skeleton latents; conv: forward takes the skeleton video"
    )
    hadc_hidden_dim: int | None = Field(None, ge=1, description="P and M hidden width (None: the base width)")
    mask_channels: int = Field(16, ge=1, description="mask head channels before upsampling")
    mask_upsample: Literal["nearest", "transposed"] = "nearest"
    activation: Literal["gelu", "silu"] = "gelu"
    conv_encoder_width: int = Field(32, ge=1)

    @property
    def branch_active(self) -> bool:
        """Whether structure features are injected; only ``structure="off"`` leaves the plain base.

        ``hadc="off"`` still injects (``z + s``, no HADC module) and trains the structure blocks.
        """
        return self.structure != "off"


class FollowParams(StrictModel):
    """Does the trained model follow its skeletons? Held-out annotated clips, MoSA vs the base alone."""

    clips: int = Field(default=4, ge=1)
    steps: int = Field(default=20, ge=1)
    guidance: float = Field(default=5.0, ge=0)
    seed: int = 0


class TrainDiTParams(TrainPhaseParams):
    """params.yaml ``train_dit`` section: the MoSA modules (structure blocks + HADC) trained around the
    frozen base with the diffusion, mask, tracking and contact losses (Eq. 9). The engine fields
    (steps, batch_size, lr, ..., zero_stage) are ``TrainPhaseParams``'s, with this stage's defaults."""

    ingest: Path = Path("data/ingest")
    annotate: Path = Path("data/annotate")
    base: Path = Path("models/base")
    base_path: Path | None = Field(default=None, description="GPU profiles: a local pretrained base")
    base_dtype: Literal["bfloat16", "float32"] = Field(
        default="bfloat16", description="GPU profiles: the dtype the published base (base_path) loads in"
    )
    gradient_checkpointing: bool = Field(
        default=False,
        description="recompute the base's blocks (and the VAE decoder's) in the backward pass; the GPU "
        "profiles set it (their memory plan counts on it)",
    )
    backbone: Literal["cogvideox", "wan"] = "cogvideox"
    text_encoder: TokenEncoderParams = TokenEncoderParams()
    motion: Path = Path("models/motion")
    output: Path = Path("models/dit")
    reports: Path = Path("reports/train_dit")
    plots: Path = Path("plots/train_dit")
    checkpoints: Path = Path("checkpoints/train_dit")
    cache: Path = Path("cache/train_dit")
    seed: int = 0
    mosa: MoSAConfig = MoSAConfig()
    losses: LossWeights = LossWeights()
    steps: int = Field(default=300, ge=1)
    batch_size: int = Field(default=4, ge=1)
    lr: float = Field(default=1e-3, gt=0)
    warmup_steps: int = Field(default=20, ge=0)
    checkpoint_every: int = Field(default=100, ge=0)
    aux_every: int = Field(default=2, ge=1, description="tracking/contact losses on every k-th step")
    aux_samples: int | None = Field(default=None, ge=1, description="samples decoded per aux step")
    contact_frames: int | None = Field(
        default=None, ge=1, description="frames the contact term scores per aux step (rotating); null: all"
    )
    track_points: int = Field(default=48, ge=1)
    short_caption_prob: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="share of items trained under a short caption variant "
        "(its motion-only prompt with another subject; components/data/caption_variants.py)",
    )
    tracker: Literal["soft", "cotracker3"] = Field(
        default="soft", description="generated-video tracker of the tracking loss: soft (ours) | cotracker3"
    )
    tracker_path: Path | None = Field(
        default=None, description="CoTracker3 TorchScript file (tracker cotracker3)"
    )
    frames: int | None = Field(default=None, description="GPU profiles: clip frames (CPU: the base's)")
    height: int | None = None
    width: int | None = None
    follow: FollowParams = FollowParams()

    @model_validator(mode="after")
    def _tracker(self) -> TrainDiTParams:
        if self.tracker == "cotracker3" and self.tracker_path is None:
            raise ValueError("tracker 'cotracker3' needs tracker_path (a CoTracker3 TorchScript file)")
        return self
