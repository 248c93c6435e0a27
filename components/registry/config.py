"""Config leaf of the registry room: the promotion gate (``GateRule``, ``GateConfig``) and params.yaml
``register``. Pydantic only: validating params does not import MLflow."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from components.params import StrictModel


class GateRule(BaseModel):
    """One metric comparison. The candidate passes when its improvement over the champion is
    strictly greater than ``margin`` (absolute, or a share of ``|champion|`` when relative): with
    margin 0 a tie fails; a negative margin tolerates a regression smaller than ``|margin|``. A
    ``required`` rule blocks promotion when it fails or either side lacks the metric; other rules
    are reported only."""

    model_config = ConfigDict(extra="forbid")

    metric: str = Field(min_length=1)
    direction: Literal["higher", "lower"]
    margin: float = 0.0
    margin_type: Literal["absolute", "relative"] = "absolute"
    required: bool = True

    @field_validator("margin")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError("margin must be a finite number")
        return v

    def required_improvement(self, champion: float) -> float:
        """The improvement the candidate must exceed: ``margin``, or ``margin × |champion|``."""
        return self.margin * abs(champion) if self.margin_type == "relative" else self.margin

    def improvement(self, candidate: float, champion: float) -> float:
        """How much better the candidate is: ``candidate - champion`` (higher) or the reverse (lower)."""
        return candidate - champion if self.direction == "higher" else champion - candidate

    def threshold(self, champion: float) -> float:
        """The value the candidate must exceed (higher) or stay strictly under (lower)."""
        delta = self.required_improvement(champion)
        return champion + delta if self.direction == "higher" else champion - delta

    def passes(self, candidate: float, champion: float) -> bool:
        """``improvement > required_improvement``, strictly: a tie fails unless the margin is negative."""
        return self.improvement(candidate, champion) > self.required_improvement(champion)

    def margin_text(self) -> str:
        if self.margin_type == "relative":
            return f"{self.margin:+.4g} × |champion|"
        return f"{self.margin:+.4g}"


class GateConfig(BaseModel):
    """The promotion gate: rules over evaluation metrics; ``promote_first`` decides a model
    registered when there is no champion yet."""

    model_config = ConfigDict(extra="forbid")

    rules: list[GateRule] = Field(min_length=1)
    promote_first: bool = True

    @field_validator("rules")
    @classmethod
    def _unique(cls, rules: list[GateRule]) -> list[GateRule]:
        names = [r.metric for r in rules]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"metric(s) {dupes} appear in more than one rule: keep one rule per metric")
        return rules


class RegisterParams(StrictModel):
    """params.yaml ``register`` section: log + register the pipeline in MLflow, gate the promotion."""

    pipeline: Path = Path("models/dit")
    evaluation: Path = Path("metrics/evaluate.json")
    model_name: str = "mosa-dit"
    prod_name: str = "mosa-dit-prod"
    copy_to_prod: bool = False
    profile: str = "default"
    reports: Path = Path("reports/register")
    promotions: Path = Field(
        Path("reports/register/promotions.jsonl"),
        description="append-only promotion log (one JSON line per gate decision, promote, rollback)",
    )
    gate: GateConfig = Field(description="the promotion gate: rules over evaluation metrics")
