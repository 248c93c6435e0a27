"""The ingest stage's domain logic: candidate videos → probed, clipped, scored, written clips.

Three steps, each usable on its own (the Prefect flow wraps them as tasks):
``plan`` (discover + hash + find duplicates), ``process`` (one video → manifest rows and clip
files) and ``summarise`` (manifest → metrics, quarantine list). Nothing here raises on bad
input: every problem becomes a row with ``status=quarantined`` and a specific reason.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from components.data import clipping, quality, synthetic_source
from components.data.clip_writer import finish_clip, split_for_group
from components.data.config import IngestParams
from components.data.source_item import SourceItem
from components.data.sources import discover
from components.io.hashing import file_sha256
from components.io.manifest import STATUS_FILTERED, STATUS_KEPT, STATUS_QUARANTINED
from components.io.video import VideoError, probe, read_frames

MANIFEST_FILE = "manifest.parquet"


@dataclass(frozen=True)
class PlannedItem:
    """A discovered item with its file hash (``None`` when unreadable) and position."""

    item: SourceItem
    position: int
    source_hash: str | None


def _slug(text: str, n: int = 40) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()[-n:] or "video"


def plan(params: IngestParams) -> list[PlannedItem]:
    """Discover all sources, hash each file, and mark repeats of earlier content as duplicates."""
    planned: list[PlannedItem] = []
    first_seen: dict[str, str] = {}
    for pos, item in enumerate(discover(params.sources)):
        digest = None
        if item.problem is None and item.synthetic is not None:
            digest = hashlib.sha256(json.dumps(item.synthetic, sort_keys=True).encode()).hexdigest()
        elif item.problem is None and item.path is not None:
            if not item.path.is_file():
                item = replace(item, problem=("missing_file", f"{item.path} does not exist"))
            else:
                digest = file_sha256(item.path)
                if digest in first_seen:
                    item = replace(
                        item,
                        problem=(
                            "duplicate_content",
                            f"same bytes as {first_seen[digest]} (sha256 {digest[:12]})",
                        ),
                    )
                else:
                    first_seen[digest] = item.label
        planned.append(PlannedItem(item, pos, digest))
    return planned


def _quarantine_row(p: PlannedItem, reason: str, detail: str, **extra) -> dict:
    it = p.item
    return {
        "clip_id": f"q{p.position:04d}-{_slug(it.label)}",
        "source": it.label,
        "source_kind": it.kind,
        "source_path": str(it.path) if it.path else None,
        "source_hash": p.source_hash,
        "caption": it.caption,
        "caption_source": it.caption_source,
        "status": STATUS_QUARANTINED,
        "reason": f"{reason}: {detail}",
        **extra,
    }


def process(p: PlannedItem, params: IngestParams, out_dir: Path) -> list[dict]:
    """Clip one video into ``out_dir/clips``; return its manifest rows (one per clip, or one
    quarantine row). A clip that fails to decode is quarantined alone; its siblings are kept."""
    it = p.item
    if it.problem is not None:
        return [_quarantine_row(p, *it.problem)]
    if it.synthetic is not None:
        try:
            return synthetic_source.make_clip(p, params, out_dir)
        except synthetic_source.SyntheticError as exc:
            return [_quarantine_row(p, "synthetic_render_failed", str(exc))]
    lim, cp = params.limits, params.clip
    try:
        info = probe(it.path, fault_tol=lim.fault_tol)
    except VideoError as exc:
        return [_quarantine_row(p, exc.reason, exc.detail)]
    if min(info.height, info.width) < lim.min_side:
        return [_quarantine_row(p, "resolution_too_small", f"{info.width}x{info.height} < {lim.min_side} px")]
    if max(info.height, info.width) > lim.max_side:
        return [_quarantine_row(p, "resolution_too_large", f"{info.width}x{info.height} > {lim.max_side} px")]
    spans = clipping.clip_spans(info, cp, it.start_sec, it.end_sec)
    if not spans:
        need = cp.frames / cp.fps
        have = (it.end_sec or info.seconds) - (it.start_sec or 0.0)
        return [_quarantine_row(p, "too_short", f"{have:.2f} s available, one clip needs {need:.2f} s")]

    dec_h, dec_w = clipping.decode_size(info.height, info.width, cp)
    fit = clipping.fit_mode(info.height, info.width, cp)
    to_clip = ",".join(f"{v:.6g}" for v in clipping.source_to_clip(info.height, info.width, cp))
    split = split_for_group(it.group or p.source_hash or it.label, params)
    base = f"{_slug(it.label)}-{(p.source_hash or '')[:8]}"
    rows = []
    for span in spans:
        clip_id = f"{base}-{span.index:03d}"
        common = {
            "clip_id": clip_id,
            "source": it.label,
            "source_kind": it.kind,
            "source_path": str(it.path),
            "source_hash": p.source_hash,
            "start_frame": span.start_frame,
            "end_frame": span.end_frame,
            "source_frames": ",".join(map(str, span.indices)),
            "source_to_clip": to_clip,
            "start_sec": span.start_sec,
            "end_sec": span.end_sec,
            "caption": it.caption,
            "caption_source": it.caption_source,
            "split": split,
        }
        try:
            frames = read_frames(
                it.path, list(span.indices), width=dec_w, height=dec_h, fault_tol=lim.fault_tol
            )
        except VideoError as exc:
            rows.append({**common, "status": STATUS_QUARANTINED, "reason": f"{exc.reason}: {exc.detail}"})
            continue
        fitted = clipping.fit_frames(frames, cp)
        # Score what the source shows: padding bars would read as under-exposed, static pixels.
        scores = quality.score_clip(fitted if fit == "crop" else frames)
        rows.append(finish_clip(common, fitted, scores, params, out_dir))
    return rows


def quarantine_records(manifest: pd.DataFrame) -> list[dict]:
    """The quarantine list: one JSON-able record per quarantined row, reason code split out."""
    q = manifest[manifest["status"] == STATUS_QUARANTINED]
    return [
        {
            "clip_id": r.clip_id,
            "source": r.source,
            "source_path": None if pd.isna(r.source_path) else r.source_path,
            "reason": str(r.reason).split(":", 1)[0],
            "detail": str(r.reason).split(":", 1)[1].strip() if ":" in str(r.reason) else "",
        }
        for r in q.itertuples()
    ]


def summarise(manifest: pd.DataFrame, params: IngestParams, seconds: float) -> dict:
    """metrics/ingest.json: counts of sources, videos, clips by status and reasons."""
    status = manifest["status"]
    clips = manifest[status != STATUS_QUARANTINED].shape[0] + int(
        ((status == STATUS_QUARANTINED) & manifest["start_frame"].notna()).sum()
    )
    reason_code = manifest["reason"].fillna("").str.split(":").str[0]
    filtered_reasons: Counter = Counter()
    for r in manifest.loc[status == STATUS_FILTERED, "reason"]:
        for part in str(r).split("; "):
            filtered_reasons[part.split(":", 1)[0]] += 1
    kept = manifest[status == STATUS_KEPT]
    return {
        "sources": len(params.sources),
        "videos_seen": int(manifest["source"].nunique()),
        "clips_total": int(clips),
        "clips_kept": int((status == STATUS_KEPT).sum()),
        "clips_filtered": int((status == STATUS_FILTERED).sum()),
        "quarantined": int((status == STATUS_QUARANTINED).sum()),
        "quarantine_reasons": dict(Counter(reason_code[status == STATUS_QUARANTINED])),
        "filter_reasons": dict(filtered_reasons),
        "clips_kept_by_kind": {str(k): int(v) for k, v in kept.groupby("source_kind").size().items()},
        "videos_seen_by_kind": {
            str(k): int(v) for k, v in manifest.groupby("source_kind")["source"].nunique().items()
        },
        "kept_train": int((kept["split"] == "train").sum()),
        "kept_val": int((kept["split"] == "val").sum()),
        "kept_seconds": float((kept["frames"] / kept["fps"]).sum()) if len(kept) else 0.0,
        "seconds": round(seconds, 3),
    }
