"""params.yaml ``ablate``: the paper's ablation rows, each a short MoSA training run on the default data.

One module per stage, so that a stage's DVC deps change only with its own section."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from components.config.sections.common import _Strict
from components.config.sections.train_dit import FollowParams

VARIANT_KEYS = frozenset({"mosa", "losses"})


class AblateParams(_Strict):
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
        from components.dit.mosa import MoSAConfig
        from components.losses.total import LossWeights

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
