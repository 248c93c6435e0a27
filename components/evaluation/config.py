"""Config leaf of the evaluation room: params.yaml ``evaluate`` and ``ablate``. Pydantic only."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from components.dit.config import FollowParams, MoSAConfig
from components.losses.config import LossWeights
from components.params import StrictModel


class EvaluateParams(StrictModel):
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
    camera: str = "track"
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


VARIANT_KEYS = frozenset({"mosa", "losses"})


class AblateParams(StrictModel):
    """Each variant trains the MoSA modules with ``train_dit``'s params, its ``mosa``/``losses``
    switches applied on top and ``steps`` steps, then runs the following check and the video metrics
    on what it generated. ``reports/eval/ablations.md`` (the evaluate stage) tabulates them."""

    steps: int = Field(default=100, ge=1, description="training steps per variant (train_dit: the full run)")
    follow: FollowParams = FollowParams(clips=2, steps=10)
    checkpoints: Path = Path("checkpoints/ablate")
    reports: Path = Path("reports/ablate")
    variants: dict[str, dict] = Field(default_factory=lambda: {"mosa_full": {}})

    @field_validator("variants")
    @classmethod
    def _variants(cls, value: dict[str, dict]) -> dict[str, dict]:

        if not value:
            raise ValueError("ablate.variants is empty: name at least one variant (e.g. mosa_full: {})")
        for name, patch in value.items():
            if not name.replace("_", "").isalnum():
                raise ValueError(f"ablate.variants.{name}: use letters, digits and underscores only")
            patch = patch or {}
            unknown = set(patch) - VARIANT_KEYS
            if unknown:
                raise ValueError(
                    f"ablate.variants.{name}: unknown keys {sorted(unknown)}; set mosa and/or losses"
                )
            MoSAConfig(**patch.get("mosa", {}))
            LossWeights(**patch.get("losses", {}))
        return {k: dict(v or {}) for k, v in value.items()}
