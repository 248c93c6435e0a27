"""Typed models of params.yaml sections. Unknown keys and wrong types fail validation."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DemoSource(_Strict):
    """Real demo videos shipped inside installed packages (see components.data.demo)."""

    kind: Literal["demo"] = "demo"
    videos: list[str] = Field(min_length=1, description="names from components.data.demo.DEMO_VIDEOS")


class FolderSource(_Strict):
    """A folder of videos; ``<stem>.txt`` beside a video is its caption."""

    kind: Literal["folder"] = "folder"
    path: Path
    recursive: bool = True
    extensions: list[str] = [".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v"]


class ManifestSource(_Strict):
    """A CSV or JSONL file with columns path, optional caption, optional start/end (seconds).

    Relative paths resolve against the manifest's folder and must stay inside it.
    """

    kind: Literal["manifest"] = "manifest"
    path: Path


DEFAULT_SYNTHETIC_CAMERAS = [
    "fixed",
    "fixed:azimuth=45,elevation=15",
    "fixed:azimuth=-90,elevation=5",
    "fixed:azimuth=150,elevation=10",
    "orbit:azimuth=-30,sweep=60",
    "dolly:distance=5.5,end_distance=3.5",
    "pan:azimuth=20,sweep=30",
]


class SyntheticSource(_Strict):
    """Mocap-driven synthetic human videos with exact labels (components.synthetic).

    Each clip picks a motion (DeepMimic clips from pybullet_data, or HumanML3D when a path is
    given), a label-preserving augmentation, a camera from ``cameras`` and a random body style and
    scene; all choices follow from ``seed`` and the clip index.
    """

    kind: Literal["synthetic"] = "synthetic"
    clips: int = Field(default=24, ge=0, description="how many synthetic clips to render")
    seed: int = 0
    motions: list[str] = Field(default=[], description="DeepMimic clip names; empty: all of them")
    humanml3d: Path | None = Field(default=None, description="a HumanML3D folder to draw motions from")
    cameras: list[str] = Field(default=DEFAULT_SYNTHETIC_CAMERAS, min_length=1)
    augment: bool = True

    @field_validator("cameras")
    @classmethod
    def _cameras_parse(cls, v: list[str]) -> list[str]:
        from components.motion.camera import parse_camera

        for spec in v:
            parse_camera(spec)  # raises ValueError naming the bad spec
        return v


# A new source kind adds a model here and a discoverer in components.data.sources.DISCOVERERS.
Source = Annotated[DemoSource | FolderSource | ManifestSource | SyntheticSource, Field(discriminator="kind")]


class ClipParams(_Strict):
    """How source videos become fixed-length training clips."""

    frames: int = Field(default=17, ge=9, description="frames per clip; must be 8N+1 (VAE temporal stride 4)")
    stride: int = Field(default=17, ge=1, description="target frames between clip starts")
    max_clips_per_video: int = Field(default=8, ge=1)
    fps: float = Field(default=16.0, gt=0, le=120)
    height: int = Field(default=96, ge=32, le=4096)
    width: int = Field(default=144, ge=32, le=4096)
    fit: Literal["crop", "pad", "auto"] = Field(
        default="auto", description="crop to fill, pad to fit, or auto: crop unless orientations differ"
    )
    crf: int = Field(default=18, ge=0, le=51, description="x264 constant rate factor of written clips")

    @field_validator("frames")
    @classmethod
    def _eight_n_plus_one(cls, v: int) -> int:
        if (v - 1) % 8:
            raise ValueError(f"frames must be 8N+1 (9, 17, 25, 33, 41, 49, ...), got {v}")
        return v

    @field_validator("height", "width")
    @classmethod
    def _even(cls, v: int) -> int:
        if v % 2:
            raise ValueError(f"must be even for H.264 yuv420p, got {v}")
        return v


class QualityParams(_Strict):
    """Thresholds of the clip quality filter (VBench-style dimensions, our substitutes)."""

    min_dynamic_degree: float = Field(
        default=0.0, ge=0, le=1, description="share of pairs over flow threshold"
    )
    require_dynamic: bool = Field(default=False, description="drop clips that fail VBench's dynamic rule")
    min_motion_smoothness: float = Field(default=0.85, ge=0, le=1)
    min_sharpness: float = Field(default=5.0, ge=0, description="variance of the Laplacian, gray levels^2")
    max_exposure_clipped: float = Field(default=0.6, ge=0, le=1)


class InputLimits(_Strict):
    """Inputs outside these limits are quarantined rather than clipped."""

    min_side: int = Field(default=64, ge=2, description="smallest accepted source width/height in pixels")
    max_side: int = Field(default=8192, ge=2)
    fault_tol: float = Field(default=0.1, description="decord fault tolerance (share of corrupt frames)")
    require_caption: bool = False


class IngestParams(_Strict):
    """params.yaml ``ingest`` section."""

    sources: list[Source] = Field(min_length=1)
    output: Path = Path("data/ingest")
    reports: Path = Path("reports/ingest")
    clip: ClipParams = ClipParams()
    quality: QualityParams = QualityParams()
    limits: InputLimits = InputLimits()
    val_fraction: float = Field(default=0.2, ge=0, lt=1)
    seed: int = 0

    @model_validator(mode="after")
    def _limits_consistent(self) -> IngestParams:
        if self.limits.min_side > self.limits.max_side:
            raise ValueError("limits.min_side must not exceed limits.max_side")
        return self


class AnnotatorParams(_Strict):
    """One annotator: a real offline default, or the paper's model from a local path."""

    name: str
    model_path: Path | None = None


class TrackParams(_Strict):
    name: Literal["lk", "cotracker3"] = "lk"
    model_path: Path | None = None
    person_stride: int = Field(default=4, ge=1, description="grid step (px) of query points on the person")
    background_stride: int = Field(default=12, ge=1, description="grid step (px) of background query points")
    fb_threshold: float = Field(
        default=1.0, gt=0, description="forward-backward error (px) that drops a track"
    )


class CaptionParams(_Strict):
    captioner: Literal["sidecar", "vlm"] = "sidecar"
    vlm_path: Path | None = None
    prompt_extractor: Literal["rules", "llm"] = "rules"
    llm_path: Path | None = None


class FilterParams(_Strict):
    """Appendix C filters on the detected keypoints."""

    min_motion: float = Field(
        default=0.02, ge=0, description="mean keypoint displacement / body size per frame"
    )
    min_lower_body: float = Field(
        default=0.5, ge=0, le=1, description="share of frames with the legs visible"
    )
    confidence_threshold: float = Field(default=0.3, ge=0, le=1)


class PeopleParams(_Strict):
    """Pose of real clips at the source's full resolution, several people followed, the most active
    one the clip's subject (components.annotation.people). Synthetic clips keep the clip-level pass."""

    enabled: bool = True
    tile: int = Field(default=640, ge=64, description="seeding tile side (source px)")
    reseed_every: int = Field(default=6, ge=1, description="frames between seeding passes")
    max_people: int = Field(default=4, ge=1)
    max_side: int = Field(default=2000, ge=64, description="source frames larger than this are downscaled")


class AnnotateParams(_Strict):
    """params.yaml ``annotate`` section."""

    input: Path = Path("data/ingest")
    output: Path = Path("data/annotate")
    reports: Path = Path("reports/annotate")
    pose: AnnotatorParams = AnnotatorParams(name="mediapipe")
    people: PeopleParams = PeopleParams()
    mask: AnnotatorParams = AnnotatorParams(name="mediapipe")
    tracks: TrackParams = TrackParams()
    captions: CaptionParams = CaptionParams()
    filters: FilterParams = FilterParams()
    min_visible_tracks: int = Field(
        default=8, ge=1, description="GX: visible tracks at the query frame per clip"
    )
    skeleton_videos: bool = True


class TextEncoderParams(_Strict):
    """Sentence encoder of prompts: the packaged all-MiniLM-L6-v2 (384-d) or a T5 from a local folder."""

    name: Literal["minilm", "t5"] = "minilm"
    path: Path | None = None

    @model_validator(mode="after")
    def _t5_needs_path(self) -> TextEncoderParams:
        if self.name == "t5" and self.path is None:
            raise ValueError("text_encoder.name 't5' needs text_encoder.path (a local T5 folder)")
        return self


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


class TokenEncoderParams(_Strict):
    """Token-level text encoder of the video model (CogVideoX conditions on T5 token states)."""

    name: Literal["minilm", "t5"] = "minilm"
    path: Path | None = None
    max_tokens: int = Field(default=32, ge=1)


class SampleParams(_Strict):
    prompts: list[str] = Field(
        default_factory=lambda: ["a person walks forward", "a person jumps", "a person dances"]
    )
    steps: int = Field(default=25, ge=1)
    guidance: float = Field(default=5.0, ge=0)
    seed: int = 0


def _dit_config(kind: str, value: dict) -> dict:
    if kind == "tiny":
        from components.dit.spec import TinyConfig as cls
    elif kind == "depth_net":
        from components.base.depth import DepthNetConfig as cls
    elif kind == "mosa":
        from components.dit.mosa import MoSAConfig as cls
    else:
        from components.losses.total import LossWeights as cls
    return cls(**value).model_dump(mode="json")


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
    dit: TrainPhaseParams = TrainPhaseParams(steps=600, batch_size=8, lr=5e-4)
    cond_dropout: float = Field(default=0.1, ge=0, le=1)
    depth: TrainPhaseParams = TrainPhaseParams(steps=300, batch_size=8, lr=1e-3)
    depth_net: dict = Field(default_factory=dict, validate_default=True, description="DepthNetConfig")
    samples: SampleParams = SampleParams()

    @field_validator("tiny", "depth_net")
    @classmethod
    def _configs(cls, value: dict, info) -> dict:
        return _dit_config(info.field_name, value)


class FollowParams(_Strict):
    """Does the trained model follow its skeletons? Held-out annotated clips, MoSA vs the base alone."""

    clips: int = Field(default=4, ge=1)
    steps: int = Field(default=20, ge=1)
    guidance: float = Field(default=5.0, ge=0)
    seed: int = 0


class TrainDiTParams(_Strict):
    """params.yaml ``train_dit`` section: the MoSA modules (structure blocks + HADC) trained around the
    frozen base with the diffusion, mask, tracking and contact losses (Eq. 9)."""

    ingest: Path = Path("data/ingest")
    annotate: Path = Path("data/annotate")
    base: Path = Path("models/base")
    base_path: Path | None = Field(default=None, description="GPU profiles: a local pretrained base")
    backbone: Literal["cogvideox", "wan"] = "cogvideox"
    text_encoder: TokenEncoderParams = TokenEncoderParams()
    motion: Path = Path("models/motion")
    output: Path = Path("models/dit")
    reports: Path = Path("reports/train_dit")
    plots: Path = Path("plots/train_dit")
    checkpoints: Path = Path("checkpoints/train_dit")
    cache: Path = Path("cache/train_dit")
    seed: int = 0
    mosa: dict = Field(default_factory=dict, validate_default=True, description="MoSAConfig fields")
    losses: dict = Field(default_factory=dict, validate_default=True, description="LossWeights fields")
    steps: int = Field(default=300, ge=1)
    batch_size: int = Field(default=4, ge=1)
    grad_accum: int = Field(default=1, ge=1)
    lr: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    warmup_steps: int = Field(default=20, ge=0)
    min_lr_ratio: float = Field(default=0.1, ge=0, le=1)
    grad_clip: float | None = Field(default=1.0, gt=0)
    zero_stage: Literal[0, 1, 2, 3] = 2
    checkpoint_every: int = Field(default=100, ge=0)
    aux_every: int = Field(default=2, ge=1, description="tracking/contact losses on every k-th step")
    aux_samples: int | None = Field(default=None, ge=1, description="samples decoded per aux step")
    track_points: int = Field(default=48, ge=1)
    frames: int | None = Field(default=None, description="GPU profiles: clip frames (CPU: the base's)")
    height: int | None = None
    width: int | None = None
    follow: FollowParams = FollowParams()

    @field_validator("mosa", "losses")
    @classmethod
    def _configs(cls, value: dict, info) -> dict:
        return _dit_config(info.field_name, value)


class EvaluateParams(_Strict):
    """params.yaml ``evaluate`` section: generate clips for the repo's prompt set and measure them."""

    pipeline: Path = Path("models/dit")
    ingest: Path = Path("data/ingest")
    prompts: Path | None = Field(
        default=None, description="prompt file; default components/evaluation/prompts.txt"
    )
    limit: int | None = Field(default=None, ge=1, description="first N prompts (CPU default: a subset)")
    seed: int = 0
    steps: int = Field(default=20, ge=1)
    guidance: float = Field(default=5.0, ge=0)
    camera: str = "fixed"
    reference_clips: int = Field(default=8, ge=1, description="held-out real clips for fd_effnet_frames")
    metrics: list[str] = Field(
        default_factory=lambda: [
            "fvd_i3d",
            "fd_effnet_frames",
            "clipsim",
            "subject_consistency",
            "background_consistency",
            "motion_smoothness",
            "dynamic_degree",
            "imaging_quality_proxy",
            "pose_confidence",
            "temporal_jerk",
            "contact_violation",
            "skeleton_alignment_pck",
            "mask_skeleton_iou",
        ]
    )
    i3d_path: Path | None = None
    clip_path: Path | None = None
    dino_path: Path | None = None
    motion_metrics: Path = Path("metrics/pretrain_motion.json")
    reports: Path = Path("reports/eval")


class RegisterParams(_Strict):
    """params.yaml ``register`` section: log + register the pipeline in MLflow, gate the promotion."""

    pipeline: Path = Path("models/dit")
    evaluation: Path = Path("metrics/evaluate.json")
    model_name: str = "mosa-dit"
    prod_name: str = "mosa-dit-prod"
    copy_to_prod: bool = False
    profile: str = "default"
    reports: Path = Path("reports/register")
    gate: dict = Field(default_factory=dict, validate_default=True, description="GateConfig fields")

    @field_validator("gate")
    @classmethod
    def _gate(cls, value: dict) -> dict:
        from components.registry.promote import GateConfig

        if not value:
            value = {"rules": [{"metric": "fd_effnet_frames", "direction": "lower"}]}
        return GateConfig(**value).model_dump(mode="json")


SECTIONS: dict[str, type[BaseModel]] = {
    "ingest": IngestParams,
    "annotate": AnnotateParams,
    "pretrain_motion": PretrainMotionParams,
    "pretrain_base": PretrainBaseParams,
    "train_dit": TrainDiTParams,
    "evaluate": EvaluateParams,
    "register": RegisterParams,
}
