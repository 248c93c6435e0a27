"""Config leaf of the motion room: params.yaml ``pretrain_motion`` and the sizes of the VQ-VAE, the
text-to-motion generator and the evaluator (saved beside their weights). Pydantic only."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from components.params import StrictModel
from components.training.config import TrainPhaseParams

FEATURE_DIM = 263


class VQVAEConfig(BaseModel):
    """Architecture and loss weights. Defaults are tiny (CPU); T2M-GPT used width=code_dim=512,
    codebook_size=512, depth=3, beta=0.02, ema_decay=0.99, velocity_weight=0.5."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    feature_dim: int = Field(default=FEATURE_DIM, ge=1)
    width: int = Field(default=64, ge=1, description="channels of the conv stacks")
    depth: int = Field(default=2, ge=0, description="residual blocks per level")
    dilation_growth: int = Field(default=3, ge=1)
    down_t: int = Field(default=2, ge=0, description="temporal downsampling by 2**down_t")
    codebook_size: int = Field(default=128, ge=2)
    code_dim: int = Field(default=64, ge=1)
    beta: float = Field(default=0.02, ge=0, description="commitment loss weight")
    ema_decay: float = Field(default=0.99, gt=0, lt=1)
    velocity_weight: float = Field(default=0.5, ge=0)
    dead_code_threshold: int = Field(
        default=100, ge=0, description="training steps a code may go unused before reset; 0 = never reset"
    )
    laplace_eps: float = Field(default=1e-5, gt=0)
    l2_codes: bool = Field(
        default=False,
        description="unit-normalise encoder outputs and codes (Yu et al. 2021): bounds their scale, "
        "which otherwise drifts and makes the commitment loss explode on small data",
    )

    @property
    def frames_per_token(self) -> int:
        return 2**self.down_t


class GeneratorConfig(BaseModel):
    """Transformer size and conditioning. Defaults are tiny (CPU); T2M-GPT used dim=1024, layers=9,
    heads=16, max_tokens=50 (200 frames at 4 frames/token) with a CLIP text embedding."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    codebook_size: int = Field(default=128, ge=2, description="must equal the VQ-VAE's codebook_size")
    max_tokens: int = Field(default=50, ge=1, description="longest motion in tokens (END excluded)")
    dim: int = Field(default=128, ge=1)
    layers: int = Field(default=4, ge=1)
    heads: int = Field(default=4, ge=1)
    ff_mult: int = Field(default=4, ge=1)
    text_dim: int = Field(default=384, ge=1, description="size of the text encoder's vectors")
    dropout: float = Field(default=0.1, ge=0, lt=1)
    cond_drop_prob: float = Field(
        default=0.1, ge=0, le=1, description="share of samples trained unconditioned"
    )

    @model_validator(mode="after")
    def _heads_divide_dim(self) -> GeneratorConfig:
        if self.dim % self.heads:
            raise ValueError(
                f"generator.dim ({self.dim}) must be divisible by generator.heads ({self.heads})"
            )
        return self

    @property
    def end_id(self) -> int:
        return self.codebook_size

    @property
    def pad_id(self) -> int:
        return self.codebook_size + 1


class EvaluatorConfig(BaseModel):
    """Architecture and loss of the evaluator (saved next to its weights)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    feature_dim: int = Field(FEATURE_DIM, ge=1)
    text_dim: int = Field(384, ge=1, description="size of the caller's sentence embeddings")
    hidden_dim: int = Field(256, ge=1)
    embed_dim: int = Field(512, ge=1)
    conv_layers: int = Field(2, ge=0)
    kernel_size: int = Field(3, ge=1)
    gru_layers: int = Field(1, ge=1)
    text_layers: int = Field(2, ge=1, description="hidden layers of the text MLP")
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    temperature: float = Field(0.1, gt=0.0)
    hard_negative_beta: float = Field(0.0, ge=0.0)
    false_negative_threshold: float | None = Field(0.9, gt=-1.0, le=1.0)


class TextEncoderParams(StrictModel):
    """Sentence encoder of prompts: the packaged all-MiniLM-L6-v2 (384-d) or a T5 from a local folder."""

    name: Literal["minilm", "t5"] = "minilm"
    path: Path | None = None

    @model_validator(mode="after")
    def _t5_needs_path(self) -> TextEncoderParams:
        if self.name == "t5" and self.path is None:
            raise ValueError("text_encoder.name 't5' needs text_encoder.path (a local T5 folder)")
        return self


class MotionEvalParams(StrictModel):
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


class VariantParams(StrictModel):
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


class PretrainMotionParams(StrictModel):
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
    vqvae: VQVAEConfig = VQVAEConfig()
    generator: GeneratorConfig = GeneratorConfig()
    evaluator: EvaluatorConfig = EvaluatorConfig()
    train_vqvae: TrainPhaseParams = TrainPhaseParams()
    train_generator: TrainPhaseParams = TrainPhaseParams()
    evaluation: MotionEvalParams = MotionEvalParams()

    @model_validator(mode="after")
    def _windows(self) -> PretrainMotionParams:
        for name, w in (("window", self.window), ("evaluation.window", self.evaluation.window)):
            if w % 4:
                raise ValueError(f"{name} ({w}) must be a multiple of 4 (the tokenizer's downsampling)")
        if self.generator.codebook_size != self.vqvae.codebook_size:
            raise ValueError(
                f"generator.codebook_size ({self.generator['codebook_size']}) must equal "
                f"vqvae.codebook_size ({self.vqvae['codebook_size']})"
            )
        return self


CameraKind = Literal["fixed", "track", "orbit", "dolly", "pan"]
CAMERA_KINDS = ("fixed", "track", "orbit", "dolly", "pan")


@dataclass(frozen=True)
class CameraSpec:
    """Where the camera looks from, in spherical coordinates around a target, and how it moves.

    azimuth 0 puts the camera in front of a body facing +Z; positive azimuth moves it toward +X
    (the body's left). ``sweep`` is the azimuth change over the clip for ``orbit`` and the yaw of
    the view direction for ``pan``; ``end_distance`` is where a ``dolly`` ends. ``track`` is a tracking
    shot: the camera keeps its offset to the person's pelvis (x, z) frame by frame, so a person who
    runs toward the camera keeps their size instead of running through it.
    """

    kind: CameraKind = "fixed"
    elevation: float = 10.0  # degrees above the target
    azimuth: float = 0.0  # degrees
    # metres from the target: a 1.7 m person is ~79% of the frame height at fov 45 (3.5 m: ~58%): the
    # body gets ~1.8x the pixels, which the CPU default's tiny VAE and its 16 px DiT tokens need
    distance: float = 2.6
    fov: float = 45.0  # vertical field of view, degrees
    target_height: float = 0.9  # metres; the target is (root x, target_height, root z)
    follow: bool = True  # target follows the motion's mean root position (x, z) over the clip
    sweep: float = 90.0  # orbit: degrees of azimuth over the clip; pan: degrees of view yaw
    end_distance: float = 2.5  # dolly: distance at the last frame

    def __post_init__(self):
        if self.kind not in CAMERA_KINDS:
            raise ValueError(f"camera kind must be one of {', '.join(CAMERA_KINDS)}, got {self.kind!r}")
        if not 1.0 <= self.fov <= 170.0:
            raise ValueError(f"camera fov must be in [1, 170] degrees, got {self.fov}")
        if self.distance <= 0 or self.end_distance <= 0:
            raise ValueError("camera distance and end_distance must be positive")
        if not -89.0 <= self.elevation <= 89.0:
            raise ValueError(f"camera elevation must be in [-89, 89] degrees, got {self.elevation}")


def parse_camera(text: str) -> CameraSpec:
    """``kind[:key=value,...]`` → CameraSpec; errors name the bad part and list valid keys."""
    kind, _, rest = text.strip().partition(":")
    kind = kind.strip().lower()
    if kind not in CAMERA_KINDS:
        raise ValueError(f"bad camera spec {text!r}: kind must be one of {', '.join(CAMERA_KINDS)}")
    types = {f.name: f.type for f in fields(CameraSpec)}
    values: dict = {}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, raw = part.partition("=")
        key = key.strip()
        if not eq or key not in types or key == "kind":
            valid = ", ".join(k for k in types if k != "kind")
            raise ValueError(f"bad camera spec {text!r}: '{part}' is not key=value with a key in: {valid}")
        try:
            if key == "follow":
                if raw.strip().lower() not in ("true", "false", "1", "0"):
                    raise ValueError
                values[key] = raw.strip().lower() in ("true", "1")
            else:
                values[key] = float(raw)
        except ValueError:
            raise ValueError(f"bad camera spec {text!r}: value of '{key}' is not a number") from None
    return CameraSpec(kind=kind, **values)
