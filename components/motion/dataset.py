"""Text–motion training data for the structure transformer: fixed-size windows with captions.

Two folder layouts hold the same thing (HumanML3D 263-d features + texts):

* a motions folder written by ``components.data.synthetic_source.write_motion_set``:
  ``index.jsonl`` (id, group, captions, motion_prompt, ...), ``<id>.npy`` [T-1, 263], ``stats.npz``
  (the folder itself or its ``motions/`` sub-folder may be given);
* a HumanML3D folder: ``new_joint_vecs/<id>.npy``, ``texts/<id>.txt`` (``caption#tokens#start#end``
  lines; a non-zero span becomes its own motion, as in HumanML3D) and ``stats.npz`` or
  ``Mean.npy``/``Std.npy``. ``M<id>`` (HumanML3D's mirror copies) shares the group of ``<id>``.

Mirrored and augmented variants are expected to be in the folder already; the only on-line
augmentation is the random crop. A window holds ``window`` rows; a shorter motion keeps its full
length rounded down to a multiple of ``frames_per_token`` and is zero-padded (zero = the mean
after normalisation), with its true length in ``lengths``. ``ends`` says whether the window
reaches the end of its motion (the generator then learns to emit END there).

Batches are a pure function of (seed, step): the engine can ask for the batch of any global
step, in any order, on any rank, and gets the same answer.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from components.motion.config import FEATURE_DIM
from components.motion.humanml3d import FeatureStats
from components.motion.humanml3d_folder import LoadProblem, _read_texts
from components.motion.motion import HUMANML3D_FPS

log = logging.getLogger(__name__)

TextSource = Literal["all", "captions", "prompt"]


@dataclass(frozen=True)
class MotionRecord:
    """One trainable motion: rows ``[start, end)`` of a features file, its group and its texts."""

    id: str
    group: str
    path: Path
    start: int
    end: int
    texts: tuple[str, ...]
    meaning: str | None = None  # motions with equal meanings are described by the same texts

    @property
    def num_frames(self) -> int:
        return self.end - self.start


def _texts(captions: Iterable[str], prompt: str | None, source: TextSource) -> tuple[str, ...]:
    caps = [c.strip() for c in captions if isinstance(c, str) and c.strip()]
    prm = [prompt.strip()] if isinstance(prompt, str) and prompt.strip() else []
    chosen = {"all": caps + prm, "captions": caps or prm, "prompt": prm or caps}[source]
    return tuple(dict.fromkeys(chosen))


def _rows(path: Path) -> int:
    """Row count of a [N, 263] .npy without reading its data; ValueError if the shape is wrong."""
    arr = np.load(path, mmap_mode="r", allow_pickle=False)
    if arr.ndim != 2 or arr.shape[1] != FEATURE_DIM:
        raise ValueError(f"features must be [N, {FEATURE_DIM}], got {arr.shape}")
    return int(arr.shape[0])


def _meaning(row: dict[str, Any]) -> str | None:
    """What a motion's texts say, as a key: its action plus its speed/turn variant (``None`` without an
    action label). A clip and its mirror, or two clips of one action, share it unless a variant differs."""
    if not row.get("action"):
        return None
    variant = row.get("variant") or {}
    speed, turn = float(variant.get("speed", 1.0)), float(variant.get("turn_deg_per_s", 0.0))
    return f"{row['action']}|speed={speed:g}|turn={turn:g}"


def _motions_folder(root: Path, source: TextSource, problems: list[LoadProblem]) -> list[MotionRecord]:
    records = []
    lines = (root / "index.jsonl").read_text(encoding="utf-8").splitlines()
    for ln, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{root / 'index.jsonl'}:{ln}"
        try:
            row = json.loads(line)
            mid = str(row["id"])
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            problems.append(LoadProblem(where, f"bad index line ({type(exc).__name__}: {exc})"))
            continue
        path = root / f"{mid}.npy"
        try:
            n = _rows(path)
        except (OSError, ValueError) as exc:
            problems.append(LoadProblem(str(path), f"unreadable features: {exc}"))
            continue
        texts = _texts(row.get("captions") or [], row.get("motion_prompt"), source)
        records.append(MotionRecord(mid, str(row.get("group") or mid), path, 0, n, texts, _meaning(row)))
    return records


def _humanml3d_group(mid: str) -> str:
    return mid[1:] if mid.startswith("M") and len(mid) > 1 else mid


def _humanml3d_folder(root: Path, source: TextSource, problems: list[LoadProblem]) -> list[MotionRecord]:
    records = []
    for path in sorted((root / "new_joint_vecs").glob("*.npy")):
        mid = path.stem
        try:
            n = _rows(path)
        except (OSError, ValueError) as exc:
            problems.append(LoadProblem(str(path), f"unreadable features: {exc}"))
            continue
        txt = root / "texts" / f"{mid}.txt"
        spans = _read_texts(txt, problems) if txt.is_file() else {}
        group = _humanml3d_group(mid)
        for (start_s, end_s), caps in sorted(spans.items()):
            texts = _texts(caps, None, source)
            if (start_s, end_s) == (0.0, 0.0):
                records.append(MotionRecord(mid, group, path, 0, n, texts))
                continue
            a, b = int(start_s * HUMANML3D_FPS), min(int(end_s * HUMANML3D_FPS), n)
            if not 0 <= a < b:
                problems.append(LoadProblem(str(txt), f"span {start_s}-{end_s}s outside the {n} frames"))
                continue
            records.append(MotionRecord(f"{mid}#{a}-{b}", group, path, a, b, texts))
        if not spans:
            problems.append(LoadProblem(str(path), f"no captions ({txt} missing or empty)"))
    return records


def _load_stats(root: Path, layout: str) -> FeatureStats:
    if (root / "stats.npz").is_file():
        return FeatureStats.load(root / "stats.npz")
    if layout == "humanml3d" and (root / "Mean.npy").is_file() and (root / "Std.npy").is_file():
        return FeatureStats(mean=np.load(root / "Mean.npy"), std=np.load(root / "Std.npy"))
    wanted = "stats.npz (or Mean.npy + Std.npy)" if layout == "humanml3d" else "stats.npz"
    raise FileNotFoundError(
        f"{root}: no normalisation statistics ({wanted}); write them with "
        "components.motion.humanml3d.compute_stats(features).save(path), or pass stats= explicitly"
    )


def resolve_motion_root(root: str | Path) -> tuple[Path, str]:
    """The folder holding the data and its layout ("motions" | "humanml3d")."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"motion data folder {root} does not exist")
    for cand in (root, root / "motions"):
        if (cand / "index.jsonl").is_file():
            return cand, "motions"
    if (root / "new_joint_vecs").is_dir():
        return root, "humanml3d"
    raise FileNotFoundError(
        f"{root} holds no motions: expected index.jsonl + <id>.npy (write_motion_set) or a "
        "HumanML3D folder with new_joint_vecs/ and texts/"
    )


class MotionDataset:
    """Windows of normalised features with captions, drawn deterministically per global step."""

    def __init__(
        self,
        root: str | Path,
        window: int,
        ids: Sequence[str] | None = None,
        stats: FeatureStats | None = None,
        frames_per_token: int = 4,
        text_source: TextSource = "all",
        validate: bool = True,
    ):
        if frames_per_token < 1:
            raise ValueError(f"frames_per_token must be >= 1, got {frames_per_token}")
        if window < 1 or window % frames_per_token:
            raise ValueError(
                f"window={window} must be a positive multiple of frames_per_token={frames_per_token}"
            )
        if text_source not in ("all", "captions", "prompt"):
            raise ValueError(f"text_source must be 'all', 'captions' or 'prompt', got {text_source!r}")
        self.root, self.layout = resolve_motion_root(root)
        self.window, self.frames_per_token = window, frames_per_token
        self.stats = stats if stats is not None else _load_stats(self.root, self.layout)
        self.problems: list[LoadProblem] = []
        loader = _motions_folder if self.layout == "motions" else _humanml3d_folder
        records = loader(self.root, text_source, self.problems)
        seen: set[str] = set()
        usable = []
        for r in records:
            if r.id in seen:
                self.problems.append(LoadProblem(r.id, "duplicate id; only the first is used"))
            elif self._usable(r, validate):
                usable.append(r)
                seen.add(r.id)
        records = usable
        if ids is not None:
            known = {r.id for r in records}
            unknown = sorted(set(ids) - known)
            if unknown:
                raise KeyError(f"ids not among the usable motions of {self.root}: {unknown[:10]}")
            wanted = set(ids)
            records = [r for r in records if r.id in wanted]
        if not records:
            detail = "; ".join(f"{p.item}: {p.reason}" for p in self.problems[:5])
            raise ValueError(f"{self.root}: no usable motions" + (f" ({detail})" if detail else ""))
        self.records = records
        self._by_id = {r.id: r for r in records}
        for p in self.problems:
            log.warning("motion dataset %s: %s", p.item, p.reason)

    def _usable(self, rec: MotionRecord, validate: bool) -> bool:
        reason = None
        if rec.num_frames < self.frames_per_token:
            reason = f"{rec.num_frames} frame(s), fewer than one token ({self.frames_per_token})"
        elif not rec.texts:
            reason = "no caption or motion prompt"
        elif validate and not np.isfinite(self._rows(rec, 0, rec.num_frames)).all():
            reason = "features contain NaN or inf"
        if reason:
            self.problems.append(LoadProblem(rec.id, reason))
        return reason is None

    # --- access ---------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.records)

    @property
    def ids(self) -> list[str]:
        return [r.id for r in self.records]

    def record(self, mid: str) -> MotionRecord:
        """The record of motion ``mid``."""
        if mid not in self._by_id:
            raise KeyError(f"motion {mid!r} is not in this dataset ({len(self.records)} motions)")
        return self._by_id[mid]

    @property
    def index(self) -> list[dict[str, str]]:
        """(id, group) of every usable motion, the input of ``split_by_group``."""
        return [{"id": r.id, "group": r.group} for r in self.records]

    def subset(self, ids: Sequence[str]) -> MotionDataset:
        """A dataset over ``ids`` only (same folder, window and statistics)."""
        unknown = sorted(set(ids) - set(self._by_id))
        if unknown:
            raise KeyError(f"ids not in this dataset: {unknown[:10]}")
        wanted = set(ids)
        out = copy.copy(self)
        out.records = [r for r in self.records if r.id in wanted]
        out._by_id = {r.id: r for r in out.records}
        if not out.records:
            raise ValueError("subset() needs at least one id")
        return out

    def with_window(self, window: int) -> MotionDataset:
        """The same motions drawn as ``window``-frame training windows (a multiple of frames_per_token)."""
        if window < 1 or window % self.frames_per_token:
            raise ValueError(
                f"window={window} must be a positive multiple of frames_per_token={self.frames_per_token}"
            )
        out = copy.copy(self)
        out.window = int(window)
        return out

    def _rows(self, rec: MotionRecord, start: int, length: int) -> np.ndarray:
        arr = np.load(rec.path, mmap_mode="r", allow_pickle=False)
        return np.asarray(arr[rec.start + start : rec.start + start + length], dtype=np.float64)

    def _window(self, rec: MotionRecord, start: int, length: int, window: int) -> np.ndarray:
        rows = self._rows(rec, start, length)
        if not np.isfinite(rows).all():
            raise ValueError(f"{rec.path}: features of {rec.id} contain NaN or inf")
        out = np.zeros((window, FEATURE_DIM), dtype=np.float32)
        out[:length] = self.stats.normalize(rows)
        return out

    def _fit(self, n: int, window: int) -> int:
        """Rows a window takes from an n-row motion: the window, or n rounded down to whole tokens."""
        return window if n >= window else n - n % self.frames_per_token

    # --- training batches -------------------------------------------------------------------------
    def batch(
        self, step: int, batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1
    ) -> dict[str, Any]:
        """The batch of global step ``step`` for ``rank`` — a pure function of its arguments.

        Sample ``i = (step·world_size + rank)·batch_size + j`` is motion ``perm_e[i mod N]`` of the
        epoch-``e = i // N`` permutation (every motion once per epoch), cropped at a start and
        captioned with a text drawn from a generator seeded by ``(seed, i)``.
        Returns features [B, window, 263] float32 (normalised, zero-padded), lengths [B] (rows),
        ends [B] bool, texts, ids and meanings (lists; a meaning is ``None`` without action labels).
        """
        if step < 0 or batch_size < 1 or not 0 <= rank < world_size:
            raise ValueError(
                "need step >= 0, batch_size >= 1, 0 <= rank < world_size; "
                f"got {step}, {batch_size}, {rank}, {world_size}"
            )
        n, w = len(self.records), self.window
        perms: dict[int, np.ndarray] = {}
        feats, lengths, ends, texts, ids = [], [], [], [], []
        for j in range(batch_size):
            i = (step * world_size + rank) * batch_size + j
            epoch = i // n
            if epoch not in perms:
                perms[epoch] = np.random.default_rng([seed, 0, epoch]).permutation(n)
            rec = self.records[perms[epoch][i % n]]
            rng = np.random.default_rng([seed, 1, i])
            length = self._fit(rec.num_frames, w)
            start = int(rng.integers(0, rec.num_frames - length + 1))
            feats.append(self._window(rec, start, length, w))
            lengths.append(length)
            ends.append(start + length > rec.num_frames - self.frames_per_token)
            texts.append(rec.texts[int(rng.integers(len(rec.texts)))])
            ids.append(rec.id)
        return {
            "features": torch.from_numpy(np.stack(feats)),
            "lengths": torch.tensor(lengths, dtype=torch.long),
            "ends": torch.tensor(ends, dtype=torch.bool),
            "texts": texts,
            "ids": ids,
            "meanings": [self._by_id[i].meaning for i in ids],
        }

    # --- evaluation -------------------------------------------------------------------------------
    def held_out_windows(
        self, ids: Sequence[str], window: int | None = None, stride: int | None = None
    ) -> dict[str, Any]:
        """Fixed evaluation windows: starts 0, stride, 2·stride, ... of every motion in ``ids``.

        A motion shorter than ``window`` gives one window (its length rounded down to whole
        tokens, zero-padded). The k-th window of a motion takes its k-th text (cycling), so
        several windows per motion also spread over its captions. Use a window/stride small
        enough to yield the number of samples a metric needs (R-precision uses batches of 32).
        """
        window = self.window if window is None else int(window)
        stride = window if stride is None else int(stride)
        if window < 1 or window % self.frames_per_token:
            raise ValueError(
                f"window={window} must be a positive multiple of frames_per_token={self.frames_per_token}"
            )
        if stride < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        unknown = [i for i in ids if i not in self._by_id]
        if unknown:
            raise KeyError(f"held-out ids not in the dataset: {unknown[:10]}")
        feats, lengths, ends, texts, out_ids, starts = [], [], [], [], [], []
        for mid in ids:
            rec = self._by_id[mid]
            length = self._fit(rec.num_frames, window)
            for k, start in enumerate(range(0, rec.num_frames - length + 1, stride)):
                feats.append(self._window(rec, start, length, window))
                lengths.append(length)
                ends.append(start + length > rec.num_frames - self.frames_per_token)
                texts.append(rec.texts[k % len(rec.texts)])
                out_ids.append(mid)
                starts.append(start)
        if not feats:
            raise ValueError("held_out_windows got no ids")
        return {
            "features": torch.from_numpy(np.stack(feats)),
            "lengths": torch.tensor(lengths, dtype=torch.long),
            "ends": torch.tensor(ends, dtype=torch.bool),
            "texts": texts,
            "ids": out_ids,
            "starts": starts,
        }


def _key(item: Any, name: str) -> str:
    value = item[name] if isinstance(item, Mapping) else getattr(item, name)
    return str(value)


def split_by_group(index: Iterable[Any], test_fraction: float, seed: int = 0) -> tuple[list[str], list[str]]:
    """(train_ids, test_ids) with whole groups on one side (a motion and its mirror share a group).

    ``index`` items are mappings or objects with ``id`` and ``group``. ``round(test_fraction·G)``
    of the G groups (at least 1 and at most G − 1 when test_fraction > 0) go to test, ranked by a
    hash of (seed, group): stable when other groups are added, different for another seed.
    """
    if not 0 <= test_fraction < 1:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    items = [(_key(x, "id"), _key(x, "group")) for x in index]
    groups = sorted({g for _, g in items})
    if test_fraction == 0:
        return [i for i, _ in items], []
    if len(groups) < 2:
        raise ValueError(
            f"cannot split {len(groups)} group(s) into train and test; add motions or set test_fraction=0"
        )
    n_test = min(max(1, math.floor(test_fraction * len(groups) + 0.5)), len(groups) - 1)
    ranked = sorted(groups, key=lambda g: hashlib.sha256(f"{seed}\x00{g}".encode()).hexdigest())
    test_groups = set(ranked[:n_test])
    train = [i for i, g in items if g not in test_groups]
    test = [i for i, g in items if g in test_groups]
    return train, test
