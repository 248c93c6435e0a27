"""HumanML3D folders (``new_joint_vecs/*.npy`` + ``texts/*.txt``) as SMPL-22 ``Motion``s with their
captions, recovered with ``humanml3d.features_to_joints``; unreadable items are reported as
``LoadProblem``s, never dropped silently."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from components.motion.humanml3d import features_to_joints
from components.motion.motion import HUMANML3D_FPS, Motion

log = logging.getLogger(__name__)


# --- HumanML3D folders ----------------------------------------------------------------------------
@dataclass(frozen=True)
class LoadProblem:
    """An item that could not be (fully) loaded, and why."""

    item: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"item": self.item, "reason": self.reason}


def _read_texts(path: Path, problems: list[LoadProblem]) -> dict[tuple[float, float], list[str]]:
    """Captions grouped by (start, end) seconds; (0, 0) = whole clip. Bad lines → problems."""
    spans: dict[tuple[float, float], list[str]] = {}
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        problems.append(LoadProblem(str(path), f"unreadable text file: {exc}"))
        return spans
    for ln, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        parts = line.strip().split("#")
        if len(parts) < 4:
            spans.setdefault((0.0, 0.0), []).append(parts[0].strip())
            if len(parts) != 1:
                problems.append(
                    LoadProblem(f"{path}:{ln}", "expected caption#tokens#start#end; used as whole")
                )
            continue
        try:
            start, end = float(parts[2]), float(parts[3])
        except ValueError:
            problems.append(LoadProblem(f"{path}:{ln}", f"bad start/end {parts[2]!r}/{parts[3]!r}; skipped"))
            continue
        start = 0.0 if math.isnan(start) else start
        end = 0.0 if math.isnan(end) else end
        spans.setdefault((start, end), []).append(parts[0].strip())
    return spans


def load_humanml3d(
    root: str | Path, split_file: str | Path | None = None, limit: int | None = None
) -> tuple[list[Motion], list[LoadProblem]]:
    """Load a HumanML3D-layout folder: ``new_joint_vecs/<id>.npy`` + ``texts/<id>.txt``.

    Ids come from ``split_file`` (one per line; relative paths are tried under ``root``) or all
    ``.npy`` files, sorted; ``limit`` caps the number of ids. Captions with a non-zero
    ``start#end`` (seconds) become their own Motion cut to ``[start*20, end*20)`` (as HumanML3D
    does); whole-clip captions stay on the full motion. A missing text file gives a Motion
    without captions. Unreadable/invalid features or spans are skipped, logged and returned as
    problems.
    """

    root = Path(root)
    vec_dir, txt_dir = root / "new_joint_vecs", root / "texts"
    problems: list[LoadProblem] = []
    if split_file is not None:
        sf = Path(split_file)
        if not sf.is_absolute() and not sf.exists():
            sf = root / sf
        ids = [s.strip() for s in sf.read_text().splitlines() if s.strip()]
    else:
        if not vec_dir.is_dir():
            raise ValueError(f"{root}: no new_joint_vecs/ folder")
        ids = sorted(p.stem for p in vec_dir.glob("*.npy"))
    if limit is not None:
        ids = ids[: max(limit, 0)]
    motions: list[Motion] = []

    def problem(item: str, reason: str) -> None:
        log.warning("HumanML3D %s: %s", item, reason)
        problems.append(LoadProblem(item, reason))

    for mid in ids:
        npy = vec_dir / f"{mid}.npy"
        try:
            feats = np.load(npy, allow_pickle=False)
            joints = np.asarray(features_to_joints(feats))
            if joints.ndim != 3 or joints.shape[1:] != (22, 3):
                raise ValueError(f"features of shape {feats.shape} gave joints {joints.shape}")
        except Exception as exc:  # any bad file is reported, never fatal
            problem(str(npy), f"unreadable features: {type(exc).__name__}: {exc}")
            continue
        txt = txt_dir / f"{mid}.txt"
        n_before = len(problems)
        spans = _read_texts(txt, problems) if txt.is_file() else {}
        for p in problems[n_before:]:
            log.warning("HumanML3D %s: %s", p.item, p.reason)
        source = f"humanml3d:{mid}"
        whole = spans.pop((0.0, 0.0), [])
        if whole or not spans:
            motions.append(Motion(joints, fps=HUMANML3D_FPS, name=mid, source=source, captions=tuple(whole)))
        for (start, end), caps in spans.items():
            a, b = int(start * HUMANML3D_FPS), int(end * HUMANML3D_FPS)
            if not (0 <= a < b <= len(joints) and b - a >= 2):
                problem(f"{txt}", f"span {start}-{end}s ({a}:{b}) outside the {len(joints)} frames; skipped")
                continue
            motions.append(
                Motion(
                    joints[a:b].copy(),
                    fps=HUMANML3D_FPS,
                    name=f"{mid}@{start:g}-{end:g}",
                    source=source,
                    captions=tuple(caps),
                    meta={"start_s": start, "end_s": end},
                )
            )
    return motions, problems
