"""params.yaml ``register``: MLflow registration and the promotion gate.

One module per stage, so that a stage's DVC deps change only with its own section."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from components.config.sections.common import _Strict


class RegisterParams(_Strict):
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
    gate: dict = Field(default_factory=dict, validate_default=True, description="GateConfig fields")

    @field_validator("gate")
    @classmethod
    def _gate(cls, value: dict) -> dict:
        from components.registry.promote import GateConfig

        if not value:
            value = {"rules": [{"metric": "fd_effnet_frames", "direction": "lower"}]}
        return GateConfig(**value).model_dump(mode="json")
