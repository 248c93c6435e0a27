"""params.yaml ``evaluate``: generation of the prompt set and its metrics.

One module per stage, so that a stage's DVC deps change only with its own section."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from components.config.sections.common import _Strict


class EvaluateParams(_Strict):
    """params.yaml ``evaluate`` section: generate clips for the repo's prompt set and measure them."""

    pipeline: Path = Path("models/dit")
    ingest: Path = Path("data/ingest")
    annotate: Path = Field(
        default=Path("data/annotate"), description="annotate outputs: the held-out clips' skeleton videos"
    )
    prompts: Path | None = Field(
        default=None, description="prompt file; default components/evaluation/prompts.txt"
    )
    limit: int | None = Field(default=None, ge=1, description="first N prompts (CPU default: a subset)")
    seeds: list[int] = Field(
        default=[0, 1, 2],
        min_length=1,
        description="person metrics (person_detect_rate*, skeleton_alignment_pck*) are the mean over these "
        "seeds (spread in <metric>_sd); the other metrics use the first seed. Under seed s, clip i of a set "
        "of n is generated with seed s*n + i",
    )
    skeleton_clips: int = Field(
        default=8,
        ge=0,
        description="held-out annotated clips whose skeletons are generated from (*_from_skeleton, "
        "*_reference); 0 skips them",
    )
    steps: int = Field(default=20, ge=1)
    guidance: float = Field(default=5.0, ge=0)
    camera: str = "fixed"
    reference_clips: int = Field(default=8, ge=1, description="held-out real clips for fd_effnet_frames")
    metrics: list[str] | None = Field(
        default=None, description="metric names; null: every registered metric (components.evaluation)"
    )
    optional_metrics: list[str] = Field(
        default=[],
        description="metrics whose error is recorded as null with the error as reason; any other "
        "metric that raises fails the stage",
    )
    i3d_path: Path | None = None
    clip_path: Path | None = None
    dino_path: Path | None = None
    motion_metrics: Path = Path("metrics/pretrain_motion.json")
    reports: Path = Path("reports/eval")
    ablations: Path = Field(
        default=Path("reports/ablate"), description="ablate@<variant> outputs tabulated in ablations.md"
    )

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, v: list[int]) -> list[int]:
        if len(set(v)) != len(v):
            raise ValueError(f"seeds must be distinct, got {v}")
        return v
