"""Text-distinguishable variants of a motion set: each motion played slower / faster and bent to
turn left / right, with captions that say so.

Why: the embedded motion set has about twenty source clips, so a held-out split holds a handful of
motions and a batch of 32 evaluation pairs repeats each text several times; retrieval metrics then
cannot separate a good model from a bad one (even the ground truth scores near 0.3 top-3). Variants
whose words differ ("..., in slow motion", "..., turning to the left") give many distinct text–motion
pairs per source clip. Every variant keeps its source's ``group``, so a source clip and all its
variants stay on one side of the train/test split.

The variants are derived in joint space (features → joints → ``change_speed`` / ``curve_path`` →
features), so every written feature row is a consistent HumanML3D feature of a real joint sequence.
A motion whose captions already mention left or right (a turn, a cartwheel to one side) gets no turn
variants: adding "turning right" to "turns left" would make a caption contradict itself.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from components.io.atomic import atomic_dir, write_text_atomic
from components.motion.augment import _LR, change_speed, curve_path
from components.motion.humanml3d import compute_stats, features_to_joints, joints_to_features
from components.motion.motion import HUMANML3D_FPS, Motion

_CLOCK = re.compile(r"clockwise", re.I)


def _mentions_side(texts: Sequence[str]) -> bool:
    return any(_LR.search(t) or _CLOCK.search(t) for t in texts)


def _phrase(caption: str, *parts: str) -> str:
    caption = caption.rstrip().rstrip(".")
    return ", ".join([caption, *[p for p in parts if p]])


def variant_plan(
    texts: Sequence[str], speeds: dict[str, float], turns: dict[str, float]
) -> list[tuple[str, float, float, tuple[str, ...]]]:
    """(suffix, speed factor, turn deg/s, extra phrases) of every variant of a motion, the original
    (suffix "", factor 1, no turn) first. Names in ``speeds``/``turns`` are the phrases themselves."""
    plan = [("", 1.0, 0.0, ())]
    turn_items = [] if _mentions_side(texts) else list(turns.items())
    for s_words, factor in [("", 1.0), *speeds.items()]:
        for t_words, rate in [("", 0.0), *turn_items]:
            if not s_words and not t_words:
                continue
            tag = "~".join(x.replace(" ", "-") for x in (t_words, s_words) if x)
            plan.append((tag, float(factor), float(rate), tuple(x for x in (t_words, s_words) if x)))
    return plan


def expand_motion_set(
    src: str | Path, dst: str | Path, speeds: dict[str, float], turns: dict[str, float]
) -> dict[str, Any]:
    """Write ``dst`` (index.jsonl, <id>.npy, stats.npz): every motion of ``src`` and its variants.

    ``src`` is a motions folder (``index.jsonl`` + ``<id>.npy``, as the ingest stage writes it).
    ``speeds`` maps a phrase to a playback factor (e.g. ``{"in slow motion": 0.6}``), ``turns`` a
    phrase to a turn rate in degrees per second (positive = left). Statistics are recomputed on the
    expanded set. Returns counts. The folder is replaced atomically.
    """
    src, dst = Path(src), Path(dst)
    index = src / "index.jsonl"
    if not index.is_file():
        raise FileNotFoundError(
            f"{src}: variants need a motions folder with index.jsonl (the ingest stage's layout); "
            "for a HumanML3D folder set pretrain_motion.variants.enabled: false"
        )
    for name, factor in speeds.items():
        if not factor > 0 or factor == 1:
            raise ValueError(f"variants.speeds[{name!r}] = {factor}: a factor must be positive and not 1")
    rows = [json.loads(x) for x in index.read_text(encoding="utf-8").splitlines() if x.strip()]
    lines, feats = [], []
    with atomic_dir(dst) as tmp:
        for row in rows:
            feat = np.load(src / f"{row['id']}.npy", allow_pickle=False).astype(np.float64)
            fps = float(row.get("fps") or HUMANML3D_FPS)
            base = Motion(np.asarray(features_to_joints(feat)), fps=fps, name=str(row["id"]))
            texts = [*(row.get("captions") or []), row.get("motion_prompt") or ""]
            for tag, factor, rate, words in variant_plan([t for t in texts if t], speeds, turns):
                if not tag:
                    out, f = dict(row), feat
                else:
                    m = base if factor == 1 else change_speed(base, factor)
                    m = m if rate == 0 else curve_path(m, rate)
                    if m.num_frames < 2:
                        continue
                    f = joints_to_features(np.asarray(m.joints))
                    out = dict(row)
                    prompt = row.get("motion_prompt")
                    out.update(
                        id=f"{row['id']}~{tag}",
                        frames=int(m.num_frames),
                        captions=[_phrase(c, *words) for c in row.get("captions") or []],
                        motion_prompt=_phrase(prompt, *words) if prompt else None,
                        variant={"speed": factor, "turn_deg_per_s": rate},
                    )
                    out["group"] = row.get("group") or row["id"]
                np.save(tmp / f"{out['id']}.npy", f.astype(np.float32))
                feats.append(f)
                lines.append(out)
        compute_stats(feats).save(tmp / "stats.npz")
        write_text_atomic(tmp / "index.jsonl", "".join(json.dumps(x, sort_keys=True) + "\n" for x in lines))
    return {"source_motions": len(rows), "motions": len(lines)}
