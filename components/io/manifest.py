"""The clip manifest: one row per clip (kept or filtered) or per quarantined input.

The manifest is the contract between stages. Its columns and dtypes are fixed here so
every writer and reader (and the Great Expectations suite) agrees on them.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from components.io.atomic import atomic_path

STATUS_KEPT = "kept"
STATUS_FILTERED = "filtered"
STATUS_QUARANTINED = "quarantined"
STATUSES = (STATUS_KEPT, STATUS_FILTERED, STATUS_QUARANTINED)

# column -> pandas dtype. Nullable dtypes: a quarantined input has no fps/frames/size.
MANIFEST_COLUMNS: dict[str, str] = {
    "clip_id": "string",  # unique per row
    "source": "string",  # source label, e.g. "demo:sports2d/demo.mp4" or a path relative to the input root
    "source_kind": "string",  # demo | folder | manifest | synthetic
    "source_path": "string",  # resolved path of the source file
    "source_hash": "string",  # sha256 hex of the source file bytes (null if unreadable)
    "start_frame": "Int64",  # span in source frames, [start, end)
    "end_frame": "Int64",
    "source_frames": "string",  # comma-separated source frame index of every clip frame
    "source_to_clip": "string",  # "sx,sy,ox,oy": x_clip = x_src*sx + ox (see clipping.source_to_clip)
    "start_sec": "Float64",
    "end_sec": "Float64",
    "caption": "string",
    "caption_source": "string",  # sidecar | manifest | demo | synthetic | none
    "motion_prompt": "string",  # motion-only prompt (synthetic clips; later: annotate)
    "fps": "Float64",  # clip fps after resampling
    "frames": "Int64",  # clip frame count (8N+1)
    "height": "Int64",
    "width": "Int64",
    "clip_path": "string",  # relative to the ingest output dir; set only for kept clips
    "content_hash": "string",  # sha256 hex of the written clip file; kept clips only
    "ground_truth_path": "string",  # synthetic clips: relative path of the .gt.npz labels
    "split": "string",  # train | val (by source, never split across)
    "status": "string",  # kept | filtered | quarantined
    "reason": "string",  # why filtered/quarantined; null when kept
    "dynamic_degree_dis": "Float64",  # share of frame pairs over VBench's flow threshold (DIS flow)
    "is_dynamic_dis": "boolean",
    "motion_smoothness_flowinterp": "Float64",
    "sharpness_laplacian": "Float64",
    "exposure_clipped_fraction": "Float64",
}


def empty_manifest() -> pd.DataFrame:
    """An empty frame with the manifest's columns and dtypes."""
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in MANIFEST_COLUMNS.items()})


def to_manifest(rows: list[dict]) -> pd.DataFrame:
    """Build a typed manifest from row dicts; missing columns become null, unknown keys fail."""
    for row in rows:
        unknown = set(row) - set(MANIFEST_COLUMNS)
        if unknown:
            raise KeyError(f"unknown manifest column(s) {sorted(unknown)}; known: {list(MANIFEST_COLUMNS)}")
    df = pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS))
    return df.astype(MANIFEST_COLUMNS)


def write_manifest(df: pd.DataFrame, path: Path) -> None:
    """Write the manifest as parquet, atomically."""
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


def read_manifest(path: Path) -> pd.DataFrame:
    """Read a manifest written by :func:`write_manifest`, with the declared dtypes."""
    df = pd.read_parquet(path)
    missing = set(MANIFEST_COLUMNS) - set(df.columns)
    if missing:
        raise ValueError(f"{path}: manifest lacks column(s) {sorted(missing)}")
    return df.astype(MANIFEST_COLUMNS)
