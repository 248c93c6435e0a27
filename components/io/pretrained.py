"""One save/load convention for every model-like artifact: a folder holding ``config.json`` — the
artifact's ``format`` name and ``version`` beside its own fields — and its weights as safetensors,
written atomically (a reader sees the old folder or the complete new one).

Classes follow it with ``save_pretrained(folder)`` / ``from_pretrained(folder, ...)`` (the diffusers
naming). This module holds the parts they share: the format check, with errors that name the folder
and the writer, and the upgrade of a previous version's config (older folders keep loading: a model
registered in MLflow before a format change is still served).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONFIG_FILE = "config.json"


class FormatError(ValueError):
    """A folder that is not the artifact asked for, or a version this code cannot read."""


@dataclass(frozen=True)
class ArtifactFormat:
    """The name and version of one artifact kind, the method that writes it (named in errors), and how
    to read older versions: ``legacy[v]`` turns a version-``v`` config into the current layout;
    ``legacy_file`` is where a version before this convention kept its config (``None``: also
    ``config.json``); ``unversioned`` upgrades a ``config.json`` without a ``format`` key (configs that
    were a bare model config)."""

    name: str
    version: int
    writer: str
    legacy: Mapping[int, Callable[[dict[str, Any]], dict[str, Any]]] = field(default_factory=dict)
    legacy_file: str | None = None
    unversioned: Callable[[dict[str, Any]], dict[str, Any]] | None = None

    def header(self) -> dict[str, Any]:
        return {"format": self.name, "version": self.version}


def write_config(folder: Path, fmt: ArtifactFormat, body: Mapping[str, Any]) -> Path:
    """``folder/config.json``: the format header and ``body`` (sorted keys, indented, newline-ended).
    Write it inside the folder ``atomic_dir`` is building."""
    overlap = set(body) & {"format", "version"}
    if overlap:
        raise ValueError(f"{fmt.name}: config fields {sorted(overlap)} clash with the format header")
    path = Path(folder) / CONFIG_FILE
    path.write_text(json.dumps({**fmt.header(), **body}, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def read_config(folder: Path | str, fmt: ArtifactFormat, hint: str = "") -> dict[str, Any]:
    """The config of a folder written by ``fmt.writer``, in the current layout (older versions upgraded),
    without the format header. Raises ``FileNotFoundError`` (no folder / no config) or ``FormatError``
    (another artifact, or a newer or unknown version) naming the folder; ``hint`` says how to make one."""
    root = Path(folder)
    tail = f"; {hint}" if hint else ""
    if not root.is_dir():
        raise FileNotFoundError(f"{fmt.name} folder {root} does not exist{tail}")
    path = root / CONFIG_FILE
    if not path.is_file() and fmt.legacy_file and (root / fmt.legacy_file).is_file():
        path = root / fmt.legacy_file
    if not path.is_file():
        raise FileNotFoundError(
            f"{root / CONFIG_FILE} is missing: {root} is not written by {fmt.writer}{tail}"
        )
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise FormatError(f"{path}: not valid JSON ({exc}){tail}") from None
    if not isinstance(config, dict):
        raise FormatError(f"{path}: expected a JSON object{tail}")
    if "format" not in config and fmt.unversioned is not None:
        return fmt.unversioned(config)
    name, version = config.pop("format", None), config.pop("version", None)
    if name != fmt.name:
        raise FormatError(f"{path}: format {name!r} is not {fmt.name!r} (written by {fmt.writer}){tail}")
    if version == fmt.version:
        return config
    if version in fmt.legacy:
        return fmt.legacy[version](config)
    readable = sorted([fmt.version, *fmt.legacy])
    raise FormatError(
        f"{path}: {fmt.name} version {version!r} is not readable here (versions {readable}){tail}"
    )
