"""Config leaf of the annotation room: params.yaml ``annotate``. Pydantic only."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from components.params import StrictModel


class AnnotatorParams(StrictModel):
    """One annotator: a real offline default, or the paper's model from a local path."""

    name: str
    model_path: Path | None = None


class TrackParams(StrictModel):
    name: Literal["lk", "cotracker3"] = "lk"
    model_path: Path | None = None
    person_stride: int = Field(default=4, ge=1, description="grid step (px) of query points on the person")
    background_stride: int = Field(default=12, ge=1, description="grid step (px) of background query points")
    fb_threshold: float = Field(
        default=1.0, gt=0, description="forward-backward error (px) that drops a track"
    )


class CaptionParams(StrictModel):
    captioner: Literal["sidecar", "vlm"] = "sidecar"
    vlm_path: Path | None = None
    prompt_extractor: Literal["rules", "llm"] = "rules"
    llm_path: Path | None = None


class FilterParams(StrictModel):
    """Appendix C filters on the detected keypoints."""

    min_motion: float = Field(
        default=0.02, ge=0, description="mean keypoint displacement / body size per frame"
    )
    min_lower_body: float = Field(
        default=0.5, ge=0, le=1, description="share of frames with the legs visible"
    )
    confidence_threshold: float = Field(default=0.3, ge=0, le=1)


class PeopleParams(StrictModel):
    """Pose of real clips at the source's full resolution, several people followed, the most active
    one the clip's subject (components.annotation.people). Synthetic clips keep the clip-level pass."""

    enabled: bool = True
    tile: int = Field(default=640, ge=64, description="seeding tile side (source px)")
    reseed_every: int = Field(default=6, ge=1, description="frames between seeding passes")
    max_people: int = Field(default=4, ge=1)
    max_side: int = Field(default=2000, ge=64, description="source frames larger than this are downscaled")


class AnnotateParams(StrictModel):
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
