"""Config leaf of the data room: params.yaml ``ingest`` (sources, clipping, quality filters, limits).
Pydantic only."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from components.motion.config import parse_camera
from components.params import StrictModel


class DemoSource(StrictModel):
    """Real demo videos shipped inside installed packages (see components.data.demo)."""

    kind: Literal["demo"] = "demo"
    videos: list[str] = Field(min_length=1, description="names from components.data.demo.DEMO_VIDEOS")


class FolderSource(StrictModel):
    """A folder of videos; ``<stem>.txt`` beside a video is its caption."""

    kind: Literal["folder"] = "folder"
    path: Path
    recursive: bool = True
    extensions: list[str] = Field(default_factory=lambda: [".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v"])


class ManifestSource(StrictModel):
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
    "dolly:distance=3.2,end_distance=2.2",
    "pan:azimuth=20,sweep=30",
]


class SyntheticSource(StrictModel):
    """Mocap-driven synthetic human videos with exact labels (components.synthetic).

    Each clip picks a motion (DeepMimic clips from pybullet_data, or HumanML3D when a path is
    given), a label-preserving augmentation, a camera from ``cameras`` and a random body style and
    scene (or one of a pool of ``people`` styles and ``scenes`` looks: a narrower appearance domain a
    tiny base can learn from few clips); all choices follow from ``seed`` and the clip index.
    """

    kind: Literal["synthetic"] = "synthetic"
    clips: int = Field(default=24, ge=0, description="how many synthetic clips to render")
    seed: int = 0
    motions: list[str] = Field(default=[], description="DeepMimic clip names; empty: all of them")
    humanml3d: Path | None = Field(default=None, description="a HumanML3D folder to draw motions from")
    cameras: list[str] = Field(default=DEFAULT_SYNTHETIC_CAMERAS, min_length=1)
    augment: bool = True
    people: int | None = Field(
        default=None,
        ge=1,
        description="draw each clip's person (clothes, skin, hair, build) from a seeded pool of this many "
        "(clip i wears person i mod people); null: a new random person per clip",
    )
    scenes: int | None = Field(
        default=None,
        ge=1,
        description="draw each clip's scene look (sky, backdrop, floor, light) from a seeded pool of this "
        "many (clip i: look i mod scenes; boxes are still placed around each clip's motion); null: a new "
        "look per clip",
    )
    loop_seconds: float = Field(
        default=3.0,
        ge=0,
        description="looping clips of ongoing activities (walk, run, crawl, dance, turns) are tiled to at "
        "least this long, in the rendered clips and the text–motion set; 0 plays every clip once",
    )

    @field_validator("cameras")
    @classmethod
    def _cameras_parse(cls, v: list[str]) -> list[str]:

        for spec in v:
            parse_camera(spec)  # raises ValueError naming the bad spec
        return v


Source = Annotated[DemoSource | FolderSource | ManifestSource | SyntheticSource, Field(discriminator="kind")]


class ClipParams(StrictModel):
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


class QualityParams(StrictModel):
    """Thresholds of the clip quality filter (VBench-style dimensions, our substitutes)."""

    min_dynamic_degree: float = Field(
        default=0.0, ge=0, le=1, description="share of pairs over flow threshold"
    )
    require_dynamic: bool = Field(default=False, description="drop clips that fail VBench's dynamic rule")
    min_motion_smoothness: float = Field(default=0.85, ge=0, le=1)
    min_sharpness: float = Field(default=5.0, ge=0, description="variance of the Laplacian, gray levels^2")
    max_exposure_clipped: float = Field(default=0.6, ge=0, le=1)


class InputLimits(StrictModel):
    """Inputs outside these limits are quarantined rather than clipped."""

    min_side: int = Field(default=64, ge=2, description="smallest accepted source width/height in pixels")
    max_side: int = Field(default=8192, ge=2)
    fault_tol: float = Field(default=0.1, description="decord fault tolerance (share of corrupt frames)")
    require_caption: bool = False


class IngestParams(StrictModel):
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


# A new source kind adds a model here and a discoverer in components.data.sources.DISCOVERERS.
