"""BVH files as SMPL-22 ``Motion``s: any channel order (Euler angles are intrinsic, in channel order),
resampled with slerp before FK, joints mapped to SMPL-22 by name (see ``DEFAULT_BVH_NAMES``)."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from components.motion.mocap import (
    _fill_smpl,
    _lerp,
    _sample_times,
    _slerp,
)
from components.motion.motion import HUMANML3D_FPS, Motion
from components.motion.skeleton import SMPL22_NAMES

log = logging.getLogger(__name__)


# --- BVH ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BvhJoint:
    """One BVH joint (end sites are joints with ``end=True`` and no channels)."""

    name: str
    parent: int
    offset: np.ndarray
    channels: tuple[str, ...]
    end: bool = False


@dataclass(frozen=True)
class BvhData:
    """A parsed BVH: joints in file order (parents first), frame time and values [F, channels]."""

    joints: tuple[BvhJoint, ...]
    frame_time: float
    values: np.ndarray

    @property
    def names(self) -> list[str]:
        return [j.name for j in self.joints]


_CHANNELS = {f"{a}{k}" for a in "xyz" for k in ("position", "rotation")}


class _Tokens:
    def __init__(self, path: Path, lines: list[str]):
        self.path = path
        self.toks: list[tuple[str, int]] = []
        for ln, line in enumerate(lines, start=1):
            for t in line.replace("{", " { ").replace("}", " } ").split():
                self.toks.append((t, ln))
        self.i = 0

    def error(self, msg: str, line: int | None = None) -> ValueError:
        if line is None:
            line = self.toks[min(self.i, len(self.toks) - 1)][1] if self.toks else 1
        return ValueError(f"{self.path}: line {line}: {msg}")

    def next(self, what: str) -> tuple[str, int]:
        if self.i >= len(self.toks):
            last = self.toks[-1][1] if self.toks else 1
            raise ValueError(f"{self.path}: line {last}: unexpected end of file, expected {what}")
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def expect(self, word: str) -> int:
        tok, ln = self.next(repr(word))
        if tok.upper() != word.upper():
            raise self.error(f"expected {word!r}, got {tok!r}", ln)
        return ln

    def rest_of_line(self, line: int) -> str:
        parts = []
        while self.i < len(self.toks) and self.toks[self.i][1] == line and self.toks[self.i][0] not in "{}":
            parts.append(self.toks[self.i][0])
            self.i += 1
        return " ".join(parts)

    def number(self, what: str) -> float:
        tok, ln = self.next(what)
        try:
            return float(tok)
        except ValueError:
            raise self.error(f"expected a number for {what}, got {tok!r}", ln) from None


def _parse_joint(tk: _Tokens, joints: list[BvhJoint], parent: int, line: int) -> None:
    name = tk.rest_of_line(line)
    if not name:
        raise tk.error("joint without a name", line)
    tk.expect("{")
    offset: np.ndarray | None = None
    channels: tuple[str, ...] = ()
    index = len(joints)
    joints.append(BvhJoint(name, parent, np.zeros(3), ()))
    while True:
        tok, ln = tk.next(f"'}}' closing joint {name!r}")
        key = tok.upper()
        if key == "OFFSET":
            offset = np.array([tk.number(f"OFFSET of {name!r}") for _ in range(3)])
        elif key == "CHANNELS":
            n_tok, n_ln = tk.next("channel count")
            if not n_tok.isdigit():
                raise tk.error(f"expected a channel count, got {n_tok!r}", n_ln)
            names = [tk.next("channel name") for _ in range(int(n_tok))]
            for c, c_ln in names:
                if c.lower() not in _CHANNELS:
                    raise tk.error(f"unknown channel {c!r} of joint {name!r}", c_ln)
            channels = tuple(c.lower() for c, _ in names)
            if len(set(channels)) != len(channels):
                raise tk.error(f"repeated channel in joint {name!r}", ln)
        elif key == "JOINT":
            _parse_joint(tk, joints, index, ln)
        elif key == "END":
            tk.expect("Site")
            tk.expect("{")
            tk.expect("OFFSET")
            end_off = np.array([tk.number(f"End Site OFFSET of {name!r}") for _ in range(3)])
            tk.expect("}")
            joints.append(BvhJoint(f"{name}_end", index, end_off, (), end=True))
        elif key == "}":
            break
        else:
            raise tk.error(f"unexpected {tok!r} in joint {name!r}", ln)
    if offset is None:
        raise tk.error(f"joint {name!r} has no OFFSET", line)
    joints[index] = BvhJoint(name, parent, offset, channels)


def parse_bvh(path: str | Path) -> BvhData:
    """Parse a BVH file; malformed input raises ValueError naming the line."""
    path = Path(path)
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError as exc:
        raise ValueError(f"{path}: cannot read ({exc})") from exc
    motion_line = next((i for i, s in enumerate(lines) if s.strip().upper() == "MOTION"), None)
    if motion_line is None:
        raise ValueError(f"{path}: line {len(lines)}: no MOTION section")
    tk = _Tokens(path, lines[:motion_line])
    tk.expect("HIERARCHY")
    root_line = tk.expect("ROOT")
    joints: list[BvhJoint] = []
    _parse_joint(tk, joints, -1, root_line)
    if tk.i < len(tk.toks):
        tok, ln = tk.toks[tk.i]
        raise tk.error(f"unexpected {tok!r} after the root joint (only one ROOT is supported)", ln)

    n_chan = sum(len(j.channels) for j in joints)
    body = [(i + 1, s) for i, s in enumerate(lines) if i > motion_line and s.strip()]
    header: dict[str, float] = {}
    header_line: dict[str, int] = {}
    for key in ("frames", "frame time"):
        if not body:
            raise ValueError(f"{path}: line {len(lines)}: missing '{key.title()}:'")
        ln, s = body.pop(0)
        header_line[key] = ln
        m = re.fullmatch(rf"\s*{key}\s*:\s*(\S+)\s*", s, re.I)
        if not m:
            raise ValueError(f"{path}: line {ln}: expected '{key.title()}: <number>', got {s.strip()!r}")
        try:
            header[key] = float(m.group(1))
        except ValueError:
            raise ValueError(f"{path}: line {ln}: bad number {m.group(1)!r}") from None
    n_frames, frame_time = header["frames"], header["frame time"]
    if n_frames != int(n_frames) or n_frames < 1:
        raise ValueError(
            f"{path}: line {header_line['frames']}: Frames must be a positive integer, got {n_frames}"
        )
    if not frame_time > 0:
        raise ValueError(
            f"{path}: line {header_line['frame time']}: Frame Time must be positive, got {frame_time}"
        )
    if len(body) != int(n_frames):
        raise ValueError(
            f"{path}: line {header_line['frames']}: Frames says {int(n_frames)} "
            f"but {len(body)} frame lines follow"
        )
    values = np.empty((len(body), n_chan))
    for k, (ln, s) in enumerate(body):
        parts = s.split()
        if len(parts) != n_chan:
            raise ValueError(f"{path}: line {ln}: expected {n_chan} channel values, got {len(parts)}")
        try:
            values[k] = [float(v) for v in parts]
        except ValueError:
            raise ValueError(f"{path}: line {ln}: non-numeric channel value") from None
    if not np.isfinite(values).all():
        bad = int(np.argmax(~np.isfinite(values).all(axis=1)))
        raise ValueError(f"{path}: line {body[bad][0]}: non-finite channel value")
    return BvhData(joints=tuple(joints), frame_time=frame_time, values=values)


def _bvh_local(data: BvhData) -> tuple[np.ndarray, list[Rotation]]:
    """Per-joint local translations [F,J,3] and rotations (one Rotation of length F per joint)."""
    n = len(data.values)
    trans = np.repeat(np.stack([j.offset for j in data.joints])[None], n, axis=0)
    rots: list[Rotation] = []
    col = 0
    for ji, j in enumerate(data.joints):
        order, angles = "", []
        for c in j.channels:
            axis = "xyz".index(c[0])
            if c.endswith("position"):
                trans[:, ji, axis] = data.values[:, col]  # position channels replace the OFFSET
            else:
                order += c[0].upper()  # uppercase = intrinsic, in channel order
                angles.append(data.values[:, col])
            col += 1
        if order:
            rots.append(Rotation.from_euler(order, np.stack(angles, axis=1), degrees=True))
        else:
            rots.append(Rotation.identity(n))
    return trans, rots


def _bvh_fk(parents: list[int], trans: np.ndarray, rots: list[Rotation]) -> np.ndarray:
    pos = np.zeros_like(trans)
    world: list[Rotation] = []
    for ji, p in enumerate(parents):
        if p < 0:
            pos[:, ji] = trans[:, ji]
            world.append(rots[ji])
        else:
            pos[:, ji] = pos[:, p] + world[p].apply(trans[:, ji])
            world.append(world[p] * rots[ji])
    return pos


def bvh_forward_kinematics(data: BvhData) -> np.ndarray:
    """World positions [F, J, 3] of every joint (incl. end sites) in file units, at file frames."""
    trans, rots = _bvh_local(data)
    return _bvh_fk([j.parent for j in data.joints], trans, rots)


def _norm_name(name: str) -> str:
    name = name.rsplit(":", 1)[-1].lower()
    name = name.removeprefix("mixamorig")
    return re.sub(r"[^a-z0-9]", "", name)


def _lr(names: Iterable[str]) -> dict[str, tuple[str, ...]]:
    out = {}
    for smpl, cands in names:
        out[f"left_{smpl}"] = tuple(c.replace("@", "left") for c in cands) + tuple(
            c.replace("@", "l") for c in cands
        )
        out[f"right_{smpl}"] = tuple(c.replace("@", "right") for c in cands) + tuple(
            c.replace("@", "r") for c in cands
        )
    return out


# SMPL joint → candidate BVH joint names (normalised: lower case, no separators, no "mixamorig:"),
# first match wins. "LeftShoulder" is the collar when a "LeftArm"-style joint exists, else the
# shoulder (Mixamo/CMU vs. other naming).
DEFAULT_BVH_NAMES: dict[str, tuple[str, ...]] = {
    "pelvis": ("hips", "hip", "pelvis", "root"),
    "spine1": ("spine", "lowerback", "abdomen", "spine0"),
    "spine2": ("spine1", "chest", "torso"),
    "spine3": ("spine2", "upperchest", "chest2", "spine3"),
    "neck": ("neck", "neck1", "lowerneck"),
    "head": ("head",),
    **_lr(
        [
            ("hip", ("@upleg", "@hip", "@thigh", "@upperleg")),
            ("knee", ("@leg", "@knee", "@shin", "@lowerleg")),
            ("ankle", ("@foot", "@ankle")),
            ("foot", ("@toebase", "@toe", "@toes")),
            ("collar", ("@collar", "@clavicle")),
            ("shoulder", ("@arm", "@uparm", "@upperarm")),
            ("elbow", ("@forearm", "@elbow", "@lowerarm")),
            ("wrist", ("@hand", "@wrist")),
        ]
    ),
}


def _map_bvh_joints(data: BvhData, joint_map: dict[str, str] | None, what: str) -> dict[str, int]:
    """SMPL name → BVH joint index, from ``joint_map`` (BVH name → SMPL name) then the defaults."""
    index = {j.name: i for i, j in enumerate(data.joints)}
    norm: dict[str, int] = {}
    for i, j in enumerate(data.joints):
        norm.setdefault(_norm_name(j.name), i)
    out: dict[str, int] = {}
    for bvh_name, smpl in (joint_map or {}).items():
        if smpl not in SMPL22_NAMES:
            raise ValueError(f"joint_map: {smpl!r} is not an SMPL-22 joint name ({SMPL22_NAMES})")
        if bvh_name not in index:
            raise ValueError(f"joint_map: {what} has no joint {bvh_name!r}; joints: {data.names}")
        out[smpl] = index[bvh_name]
    used = set(out.values())
    for smpl, cands in DEFAULT_BVH_NAMES.items():
        if smpl in out:
            continue
        for c in cands:
            if c in norm and norm[c] not in used and not data.joints[norm[c]].end:
                out[smpl] = norm[c]
                used.add(norm[c])
                break
    for side, s in (("left", "l"), ("right", "r")):
        for cand in (f"{side}shoulder", f"{s}shoulder"):
            i = norm.get(cand)
            if i is None or i in used:
                continue
            slot = f"{side}_collar" if f"{side}_shoulder" in out else f"{side}_shoulder"
            if slot not in out:
                out[slot] = i
                used.add(i)
    # toes: the ankle's only child (a toe joint with another name, or the ankle's End Site)
    for side in ("left", "right"):
        ankle = out.get(f"{side}_ankle")
        if f"{side}_foot" not in out and ankle is not None:
            kids = [i for i, j in enumerate(data.joints) if j.parent == ankle]
            if len(kids) == 1:
                out[f"{side}_foot"] = kids[0]
    return out


def _guess_scale(data: BvhData) -> float:
    """Metres per file unit from the rest-pose size: > 1000 → mm, > 10 → cm, else metres."""
    parents = [j.parent for j in data.joints]
    offsets = np.stack([j.offset for j in data.joints])[None]
    rest = _bvh_fk(parents, offsets, [Rotation.identity(1) for _ in parents])[0]
    size = float(np.ptp(rest, axis=0).max())
    if size > 1000:
        return 0.001
    if size > 10:
        return 0.01
    return 1.0


def load_bvh(
    path: str | Path,
    joint_map: dict[str, str] | None = None,
    scale: float | None = None,
    fps: float = HUMANML3D_FPS,
    action: str = "",
) -> Motion:
    """Load a BVH file as SMPL-22 joints at ``fps``.

    ``joint_map`` maps BVH joint names to SMPL-22 names and takes precedence over the default
    name matching (``DEFAULT_BVH_NAMES``). ``scale`` is metres per file unit (None: guessed, see
    ``_guess_scale``). Axes are kept as in the file (BVH is Y up; no re-orientation or floor
    shift). Rotations are slerped and positions lerped to ``fps`` before FK. SMPL joints with
    no counterpart are filled as documented in ``_fill_smpl`` (listed in ``meta["filled_joints"]``).
    """
    path = Path(path)
    data = parse_bvh(path)
    mapping = _map_bvh_joints(data, joint_map, str(path))
    if scale is None:
        scale = _guess_scale(data)
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale}")
    trans, rots = _bvh_local(data)
    n = len(data.values)
    times = np.arange(n) * data.frame_time
    new_t = _sample_times(times[-1], fps)
    trans = _lerp(times, trans, new_t) if n > 1 else np.repeat(trans[:1], len(new_t), axis=0)
    rots = [_slerp(times, r, new_t) for r in rots]
    pos = _bvh_fk([j.parent for j in data.joints], trans, rots) * scale
    joints, filled = _fill_smpl({smpl: pos[:, i] for smpl, i in mapping.items()}, str(path))
    return Motion(
        joints=joints,
        fps=float(fps),
        name=path.stem,
        action=action,
        source=f"bvh:{path.name}",
        meta={
            "scale": scale,
            "source_fps": 1.0 / data.frame_time,
            "source_frames": n,
            "joint_map": {smpl: data.joints[i].name for smpl, i in mapping.items()},
            "filled_joints": filled,
        },
    )
