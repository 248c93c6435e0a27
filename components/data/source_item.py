"""``SourceItem``: one candidate video a source found (or an input known to be bad), before it is clipped."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SourceItem:
    """One candidate video, or an input that is already known to be bad (``problem`` set)."""

    label: str  # what the user recognises: "demo:sports2d/demo", a path relative to the root, ...
    path: Path | None
    caption: str | None = None
    caption_source: str = "none"  # sidecar | manifest | demo | none
    start_sec: float | None = None
    end_sec: float | None = None
    group: str | None = None  # items of one group share a split (views of one recording)
    problem: tuple[str, str] | None = None  # (reason, detail) for quarantine
    kind: str = ""  # the source kind that produced it (set by ``discover``)
    synthetic: dict | None = None  # render recipe of a synthetic clip (components.data.synthetic_source)
