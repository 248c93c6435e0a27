"""Dataset statistics like the paper's Tab. 8: clips, resolutions, action types, action complexity.

* Action types: unique lemmatised verb / verb-object phrases over all captions
  (:func:`components.annotation.captioning.action_phrases`).
* Action complexity: mean optical-flow magnitude inside the person masks. The paper uses SEA-RAFT;
  we use OpenCV's DIS flow (CPU, no weights), so absolute values are not comparable with the paper's.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import cv2
import numpy as np
import pandas as pd

from components.annotation.clause_parser import action_phrases
from components.io.manifest import STATUS_KEPT, STATUS_QUARANTINED


def action_complexity(
    frames: np.ndarray,
    masks: np.ndarray,
    *,
    per_short_side: bool = False,
    preset: int = cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
) -> float:
    """Mean DIS optical-flow magnitude (px per frame) over the pixels inside the person mask, pooled
    over consecutive frame pairs; each pair uses the union of its two frames' masks. With
    ``per_short_side`` the value is divided by min(H, W) (a resolution-free fraction of the short side
    per frame). NaN when there are fewer than two frames or every pair's mask is empty."""
    frames = np.asarray(frames)
    masks = np.asarray(masks, dtype=bool)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected uint8 RGB frames [T,H,W,3], got {frames.dtype} {frames.shape}")
    if masks.shape != frames.shape[:3]:
        raise ValueError(f"expected masks [T,H,W] = {frames.shape[:3]}, got {masks.shape}")
    T, H, W = masks.shape
    dis = cv2.DISOpticalFlow_create(preset)
    total, count = 0.0, 0
    previous: np.ndarray | None = None
    for t in range(T - 1):
        region = masks[t] | masks[t + 1]
        if not region.any():
            previous = None
            continue
        g0 = previous if previous is not None else cv2.cvtColor(frames[t], cv2.COLOR_RGB2GRAY)
        g1 = cv2.cvtColor(frames[t + 1], cv2.COLOR_RGB2GRAY)
        flow = dis.calc(g0, g1, None)
        magnitude = np.hypot(flow[..., 0], flow[..., 1])
        total += float(magnitude[region].sum())
        count += int(region.sum())
        previous = g1
    if count == 0:
        return math.nan
    value = total / count
    return value / min(H, W) if per_short_side else value


def _finite(value: Any) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _size(value: Any) -> int | None:
    f = _finite(value)
    return int(f) if f is not None and f > 0 else None


def dataset_statistics(rows: list[dict[str, Any]], top_k: int = 20) -> dict[str, Any]:
    """Statistics over per-clip records with keys ``caption``, ``height``, ``width``, ``complexity``.

    Returns ``clips``; ``resolutions`` ("WxH" → clips, most common first); ``action_types`` (unique
    action phrases); ``top_actions`` (the ``top_k`` most common phrases as [phrase, clips], a clip
    counting each phrase once; ties alphabetical); ``action_complexity`` (mean over clips with a
    finite value, None if there are none). Missing values are skipped."""
    resolutions: Counter[str] = Counter()
    actions: Counter[str] = Counter()
    complexities: list[float] = []
    for row in rows:
        h, w = _size(row.get("height")), _size(row.get("width"))
        if h is not None and w is not None:
            resolutions[f"{w}x{h}"] += 1
        caption = row.get("caption")
        if isinstance(caption, str) and caption.strip():
            actions.update(set(action_phrases(caption)))
        c = _finite(row.get("complexity"))
        if c is not None:
            complexities.append(c)
    ranked = sorted(actions.items(), key=lambda kv: (-kv[1], kv[0]))
    return {
        "clips": len(rows),
        "resolutions": dict(sorted(resolutions.items(), key=lambda kv: (-kv[1], kv[0]))),
        "action_types": len(actions),
        "top_actions": [[phrase, n] for phrase, n in ranked[:top_k]],
        "action_complexity": float(np.mean(complexities)) if complexities else None,
    }


def _mean(series: pd.Series) -> float | None:
    values = pd.to_numeric(series, errors="coerce").dropna()
    return round(float(values.mean()), 4) if len(values) else None


def summarise(table: pd.DataFrame, seconds: float) -> dict[str, Any]:
    """The annotate stage's metrics (``metrics/annotate.json``); accuracy figures are over synthetic clips,
    where the truth is known."""
    reason = table["reason"].fillna("")
    kept = table[table.status == STATUS_KEPT]
    synthetic = table[table.source_kind == "synthetic"]
    ds = dataset_statistics(
        [
            {
                "caption": r.caption or "",
                "height": r.height,
                "width": r.width,
                "complexity": r.action_complexity,
            }
            for r in kept.itertuples()
        ]
    )
    return {
        "clips_in": len(table),
        "clips_annotated": len(kept),
        "clips_dropped_motion": int(reason.str.startswith("low_motion").sum()),
        "clips_dropped_upper_body": int(reason.str.startswith("upper_body_only").sum()),
        "quarantined": int((table.status == STATUS_QUARANTINED).sum()),
        "clips_pose_at_source": int((table.get("pose_resolution") == "source").sum()),
        "pose_pck_synthetic": _mean(synthetic["pose_pck"]),
        "mask_iou_synthetic": _mean(synthetic["mask_iou"]),
        "track_epe_synthetic": _mean(synthetic["track_epe_px"]),
        "action_types": ds["action_types"],
        "action_complexity": ds["action_complexity"],
        "resolutions": ds["resolutions"],
        "seconds": round(seconds, 3),
    }
