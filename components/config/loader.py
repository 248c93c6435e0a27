"""One loader for params.yaml: read a section, validate it, and name the bad key on failure."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)

DEFAULT_PARAMS = Path("params.yaml")


class ConfigError(ValueError):
    """params.yaml is missing, malformed, or a section fails validation."""


def _format(errors: list[dict[str, Any]], section: str, origin: str) -> str:
    lines = [f"{origin}: invalid section '{section}':"]
    for err in errors:
        key = ".".join([section, *(str(p) for p in err["loc"])])
        got = "" if err["type"] == "missing" else f" (got {err.get('input')!r})"
        if err["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key; check the spelling or remove it")
        else:
            lines.append(f"  {key}: {err['msg']}{got}")
    return "\n".join(lines)


# params section -> (room whose ``config.py`` leaf holds its model, model class). Only the section asked
# for is imported: a stage's code (and so its DVC deps) holds its own room's config leaf and no other.
SECTION_MODELS: dict[str, tuple[str, str]] = {
    "ingest": ("data", "IngestParams"),
    "annotate": ("annotation", "AnnotateParams"),
    "pretrain_motion": ("motion", "PretrainMotionParams"),
    "pretrain_base": ("base", "PretrainBaseParams"),
    "train_dit": ("dit", "TrainDiTParams"),
    "ablate": ("evaluation", "AblateParams"),
    "evaluate": ("evaluation", "EvaluateParams"),
    "register": ("registry", "RegisterParams"),
}


def section_model(section: str) -> type[BaseModel]:
    """The pydantic model of params section ``section`` (imports that section's module only)."""
    import importlib

    try:
        room, cls = SECTION_MODELS[section]
    except KeyError:
        raise ConfigError(f"unknown params section '{section}'; known: {sorted(SECTION_MODELS)}") from None
    return getattr(importlib.import_module(f"components.{room}.config"), cls)


def validate_section(section: str, data: Any, origin: str = "params") -> BaseModel:
    """Validate ``data`` as params section ``section``; ConfigError names every bad key."""
    model = section_model(section)
    try:
        return model.model_validate(data if data is not None else {})
    except ValidationError as exc:
        raise ConfigError(_format(exc.errors(), section, origin)) from None


def load_params(path: Path | str = DEFAULT_PARAMS) -> dict[str, Any]:
    """Read params.yaml as a plain dict."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found (run from the repository root or pass --params)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of stage sections")
    return data


def load_section(section: str, path: Path | str = DEFAULT_PARAMS, overrides: dict[str, Any] | None = None):
    """Load and validate one section of params.yaml, with optional top-level key overrides."""
    data = load_params(path)
    if section not in data:
        raise ConfigError(f"{path}: section '{section}' is missing")
    raw = dict(data[section] or {})
    raw.update(overrides or {})
    return validate_section(section, raw, origin=str(path))
