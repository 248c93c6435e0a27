"""Mocap loaders returning SMPL-22 ``Motion``s (metres, Y up, faces +Z, 20 fps by default).

Three sources:

* **DeepMimic** clips shipped in ``pybullet_data`` (``data/motions/humanoid3d_*.txt`` and
  ``data/motions/walker/*.txt``). The skeleton (joint offsets, revolute axes, foot box, head
  sphere) is read from ``humanoid/humanoid.urdf`` and scaled by 0.25 (DeepMimic's
  ``globalScaling``). Frame rotations are resampled to ``fps`` *before* forward kinematics (root
  position: linear; spherical joints: slerp; knees/elbows: linear in angle), so every retargeted
  bone keeps a constant length. DeepMimic axes (+X forward, +Y up, +Z right) are rotated to SMPL
  axes (+Z forward, +Y up, +X left). The mocap root heights are world metres of a simulation whose
  ground is y=0; the feet land on y≈0 without any shift (checked on the walk clips), so none is
  applied.
* **BVH** files: any channel order (Euler angles are intrinsic, in channel order), resampled with
  slerp before FK, joints mapped to SMPL-22 by name (see ``DEFAULT_BVH_NAMES``).
* **HumanML3D** folders (``new_joint_vecs/*.npy`` + ``texts/*.txt``), recovered with
  ``humanml3d.features_to_joints``.

SMPL joints with no source counterpart are filled by ``_fill_smpl`` (documented there).
"""

from __future__ import annotations

import functools
import json
import logging
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

from components.motion.humanml3d import features_to_joints
from components.motion.motion import HUMANML3D_FPS, Motion
from components.motion.skeleton import SMPL22_NAMES

log = logging.getLogger(__name__)

# --- shared: time resampling and filling SMPL-22 joints ---------------------------------------


def _sample_times(duration: float, fps: float) -> np.ndarray:
    """Times 0, 1/fps, ... up to ``duration`` (inclusive, with a small tolerance)."""
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    n = math.floor(max(duration, 0.0) * fps + 1e-6) + 1
    return np.arange(n, dtype=np.float64) / fps


def _slerp(times: np.ndarray, rots: Rotation, new_times: np.ndarray) -> Rotation:
    """Slerp a rotation track sampled at strictly increasing ``times``."""
    if len(times) == 1:
        return Rotation.from_quat(np.repeat(rots.as_quat()[:1], len(new_times), axis=0))
    return Slerp(times, rots)(np.clip(new_times, times[0], times[-1]))


def _lerp(times: np.ndarray, values: np.ndarray, new_times: np.ndarray) -> np.ndarray:
    """Linear interpolation of ``values`` [N, ...] along axis 0."""
    flat = values.reshape(len(times), -1)
    out = np.stack([np.interp(new_times, times, flat[:, k]) for k in range(flat.shape[1])], axis=1)
    return out.reshape(len(new_times), *values.shape[1:])


# Where the spine joints sit on the pelvis → neck path (fraction of the way), used to interpolate
# missing ones. For DeepMimic, spine2 is the chest joint (≈ half way), so spine1 = lerp(pelvis,
# chest, 0.45) and spine3 = lerp(chest, neck, 0.25) — close to SMPL's proportions.
_SPINE_CHAIN = ("pelvis", "spine1", "spine2", "spine3", "neck")
_SPINE_FRACTION = (0.0, 0.225, 0.5, 0.625, 1.0)
_REQUIRED = (
    "pelvis", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
)  # fmt: skip
FOOT_FORWARD = 0.13  # m, ankle → toe along the facing, when a source has no toe
FOOT_DOWN = 0.05  # m, toe below the ankle, same case
HEAD_ABOVE_NECK = 0.15  # m, along spine3 → neck, when a source has no head


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-9)


def _fill_smpl(pos: dict[str, np.ndarray], what: str) -> tuple[np.ndarray, list[str]]:
    """Assemble [T,22,3] from named joint tracks, filling missing SMPL joints from neighbours.

    Fill rules (returned as the list of filled joint names):

    * pelvis, hips, knees, ankles, shoulders, elbows, wrists are required (ValueError otherwise);
    * neck: midpoint of the shoulders;
    * spine1/2/3: linear interpolation between the nearest present joints of the chain
      pelvis → spine1 → spine2 → spine3 → neck, at fractions 0, .225, .5, .625, 1;
    * head: neck + 0.15 m along spine3 → neck;
    * collars: ½·midpoint(spine3, neck) + ½·shoulder;
    * feet (toes): ankle + 0.13 m along the horizontal facing (from the hips) − 0.05 m in y.
    """
    missing = [n for n in _REQUIRED if n not in pos]
    if missing:
        raise ValueError(f"{what}: cannot map required SMPL joints {missing}; pass joint_map")
    pos = dict(pos)
    filled: list[str] = []
    if "neck" not in pos:
        pos["neck"] = 0.5 * (pos["left_shoulder"] + pos["right_shoulder"])
        filled.append("neck")
    present = [i for i, n in enumerate(_SPINE_CHAIN) if n in pos]
    for i, name in enumerate(_SPINE_CHAIN):
        if name in pos:
            continue
        lo = max(k for k in present if k < i)
        hi = min(k for k in present if k > i)
        w = (_SPINE_FRACTION[i] - _SPINE_FRACTION[lo]) / (_SPINE_FRACTION[hi] - _SPINE_FRACTION[lo])
        pos[name] = (1 - w) * pos[_SPINE_CHAIN[lo]] + w * pos[_SPINE_CHAIN[hi]]
        filled.append(name)
    if "head" not in pos:
        pos["head"] = pos["neck"] + HEAD_ABOVE_NECK * _unit(pos["neck"] - pos["spine3"])
        filled.append("head")
    upper_mid = 0.5 * (pos["spine3"] + pos["neck"])
    for side in ("left", "right"):
        if f"{side}_collar" not in pos:
            pos[f"{side}_collar"] = 0.5 * upper_mid + 0.5 * pos[f"{side}_shoulder"]
            filled.append(f"{side}_collar")
    if "left_foot" not in pos or "right_foot" not in pos:
        across = pos["right_hip"] - pos["left_hip"]
        fwd = np.stack([across[:, 2], np.zeros(len(across)), -across[:, 0]], axis=-1)  # up × across
        fwd = _unit(fwd)
        for side in ("left", "right"):
            if f"{side}_foot" not in pos:
                toe = pos[f"{side}_ankle"] + FOOT_FORWARD * fwd
                toe[:, 1] -= FOOT_DOWN
                pos[f"{side}_foot"] = toe
                filled.append(f"{side}_foot")
    return np.stack([pos[n] for n in SMPL22_NAMES], axis=1), filled


# --- DeepMimic ----------------------------------------------------------------------------------
DEEPMIMIC_SCALE = 0.25
# Frame layout after (duration, root xyz, root quat wxyz): joint name and its number of values.
DEEPMIMIC_CHANNELS: tuple[tuple[str, int], ...] = (
    ("chest", 4), ("neck", 4), ("right_hip", 4), ("right_knee", 1), ("right_ankle", 4),
    ("right_shoulder", 4), ("right_elbow", 1), ("left_hip", 4), ("left_knee", 1), ("left_ankle", 4),
    ("left_shoulder", 4), ("left_elbow", 1),
)  # fmt: skip
DEEPMIMIC_FRAME_WIDTH = 8 + sum(n for _, n in DEEPMIMIC_CHANNELS)  # 44
# DeepMimic (x fwd, y up, z right) -> SMPL (x left, y up, z fwd): new = M @ old.
DEEPMIMIC_TO_SMPL = np.array([[0.0, 0.0, -1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
# Fraction of the foot box's half length in front of its centre where the toe (ball) joint sits.
_TOE_ALONG_BOX = 0.8

_DEEPMIMIC_ACTIONS = {
    "walk": "walk", "run": "run", "jump": "jump", "backflip": "backflip", "cartwheel": "cartwheel",
    "crawl": "crawl", "dance_a": "dance", "dance_b": "dance", "getup_facedown": "getup",
    "getup_faceup": "getup", "kick": "kick", "punch": "punch", "roll": "roll", "spin": "spin",
    "spinkick": "spinkick", "0walk_forward": "walk", "walk_forward": "walk",
}  # fmt: skip


def _pybullet_data() -> Path:
    import pybullet_data

    return Path(pybullet_data.getDataPath())


@dataclass(frozen=True)
class DeepMimicSkeleton:
    """DeepMimic humanoid in metres and DeepMimic axes (from the URDF, scaled by 0.25).

    ``offsets[j]`` is joint ``j``'s position in its parent joint's frame; ``parents[j]`` the parent
    joint ("root" = pelvis); ``axes`` the rotation axis of revolute joints; ``toe`` a point in the
    ankle frame (ball of the foot on the sole, from the ankle collision box); ``head`` a point in
    the neck frame (centre of the neck link's collision sphere, i.e. the skull).
    """

    offsets: dict[str, np.ndarray]
    parents: dict[str, str]
    axes: dict[str, np.ndarray]
    toe: np.ndarray
    head: np.ndarray
    order: tuple[str, ...] = field(default=())


def _floats(text: str, what: str) -> np.ndarray:
    try:
        return np.array([float(v) for v in text.split()], dtype=np.float64)
    except ValueError as exc:
        raise ValueError(f"humanoid.urdf: bad numbers in {what}: {text!r}") from exc


def parse_deepmimic_urdf(path: str | Path | None = None, scale: float = DEEPMIMIC_SCALE) -> DeepMimicSkeleton:
    """Read joint origins/axes and link collision shapes of the DeepMimic humanoid URDF."""
    path = Path(path) if path is not None else _pybullet_data() / "humanoid" / "humanoid.urdf"
    text = path.read_bytes().decode("utf-8", errors="ignore")
    joints: dict[str, dict] = {}
    for m in re.finditer(
        r'<joint\s+name\s*=\s*"([^"]+)"\s+type\s*=\s*"([^"]+)"\s*>(.*?)</joint>', text, re.S
    ):
        name, jtype, body = m.groups()
        parent = re.search(r'<parent\s+link\s*=\s*"([^"]+)"', body)
        child = re.search(r'<child\s+link\s*=\s*"([^"]+)"', body)
        origin = re.search(r'<origin[^>]*xyz\s*=\s*"([^"]+)"', body)
        axis = re.search(r'<axis\s+xyz\s*=\s*"([^"]+)"', body)
        if not (parent and child and origin):
            raise ValueError(f"{path}: joint {name!r} lacks parent, child or origin")
        joints[name] = {
            "type": jtype,
            "parent_link": parent.group(1),
            "child_link": child.group(1),
            "origin": _floats(origin.group(1), f"joint {name} origin") * scale,
            "axis": _floats(axis.group(1), f"joint {name} axis") if axis else None,
        }
    links: dict[str, str] = {
        m.group(1): m.group(2)
        for m in re.finditer(r'<link\s+name\s*=\s*"([^"]+)"\s*>(.*?)</link>', text, re.S)
    }
    by_child = {j["child_link"]: name for name, j in joints.items()}
    needed = [n for n, _ in DEEPMIMIC_CHANNELS] + ["right_wrist", "left_wrist"]
    missing = [n for n in needed if n not in joints]
    if missing:
        raise ValueError(f"{path}: joints {missing} not found")
    offsets, parents, axes = {}, {}, {}
    for name in needed:
        j = joints[name]
        parent = by_child.get(j["parent_link"])
        if parent is None:
            raise ValueError(f"{path}: no joint has child link {j['parent_link']!r} (parent of {name})")
        parents[name] = parent
        offsets[name] = j["origin"]
        if j["type"] == "revolute":
            if j["axis"] is None:
                raise ValueError(f"{path}: revolute joint {name!r} has no <axis>")
            axes[name] = j["axis"] / np.linalg.norm(j["axis"])

    def collision(link: str, shape: str) -> tuple[np.ndarray, np.ndarray]:
        body = links.get(link, "")
        col = re.search(r"<collision>(.*?)</collision>", body, re.S)
        if not col:
            raise ValueError(f"{path}: link {link!r} has no <collision>")
        origin = re.search(r'<origin[^>]*xyz\s*=\s*"([^"]+)"', col.group(1))
        geom = re.search(rf'<{shape}\s+(?:size|radius)\s*=\s*"([^"]+)"', col.group(1))
        if not (origin and geom):
            raise ValueError(f"{path}: link {link!r} lacks a {shape} collision origin/size")
        return _floats(origin.group(1), f"{link} origin") * scale, _floats(
            geom.group(1), f"{link} {shape}"
        ) * scale

    box_c, box_size = collision("right_ankle", "box")
    toe = np.array([box_c[0] + _TOE_ALONG_BOX * 0.5 * box_size[0], box_c[1] - 0.5 * box_size[1], box_c[2]])
    head_c, _ = collision("neck", "sphere")
    order = ("root", *needed)
    return DeepMimicSkeleton(offsets=offsets, parents=parents, axes=axes, toe=toe, head=head_c, order=order)


@functools.lru_cache(maxsize=1)
def deepmimic_skeleton() -> DeepMimicSkeleton:
    """The (cached) DeepMimic humanoid skeleton from ``pybullet_data``."""
    return parse_deepmimic_urdf()


def list_deepmimic_clips() -> dict[str, Path]:
    """Clip name → file: "walk", "backflip", ... (humanoid3d_*) and "walker/turn_left0", ..."""
    motions = _pybullet_data() / "data" / "motions"
    clips = {p.stem.removeprefix("humanoid3d_"): p for p in sorted(motions.glob("humanoid3d_*.txt"))}
    clips.update({f"walker/{p.stem}": p for p in sorted((motions / "walker").glob("*.txt"))})
    return clips


def deepmimic_action(name: str) -> str:
    """Action key of a DeepMimic clip name ("dance_b" → "dance", "walker/turn_left1" → "turn_left")."""
    stem = name.rsplit("/", 1)[-1].removeprefix("humanoid3d_")
    if stem in _DEEPMIMIC_ACTIONS:
        return _DEEPMIMIC_ACTIONS[stem]
    m = re.fullmatch(r"(turn_(?:left|right))\d*", stem)
    if m:
        return m.group(1)
    return re.sub(r"[\d_]+$", "", stem) or stem


def _read_deepmimic(path: Path) -> tuple[np.ndarray, str]:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a readable DeepMimic JSON file ({exc})") from exc
    frames = data.get("Frames") if isinstance(data, dict) else None
    if not frames:
        raise ValueError(f"{path}: no 'Frames'")
    for i, f in enumerate(frames):
        if not isinstance(f, list) or len(f) != DEEPMIMIC_FRAME_WIDTH:
            n = len(f) if isinstance(f, list) else type(f).__name__
            raise ValueError(f"{path}: frame {i} has {n} values, expected {DEEPMIMIC_FRAME_WIDTH}")
    arr = np.asarray(frames, dtype=np.float64)
    if not np.isfinite(arr).all():
        raise ValueError(f"{path}: non-finite values in 'Frames'")
    if (arr[:-1, 0] <= 0).any():
        raise ValueError(f"{path}: frame {int(np.argmax(arr[:-1, 0] <= 0))} has a non-positive duration")
    return arr, str(data.get("Loop", "none"))


def _quat_wxyz(q: np.ndarray) -> Rotation:
    return Rotation.from_quat(q[..., [1, 2, 3, 0]])


def _heading(rot: Rotation) -> np.ndarray:
    """Yaw about +Y of the rotated DeepMimic lateral axis (+Z, the body's right): it stays horizontal
    in flips and crawls, where the forward axis can point up or down. right = (sin h, ·, cos h)."""
    right = rot.apply(np.array([0.0, 0.0, 1.0]))
    return np.arctan2(right[..., 0], right[..., 2])


def _deepmimic_tracks(
    arr: np.ndarray, repeats: int
) -> tuple[np.ndarray, np.ndarray, Rotation, dict[str, Rotation | np.ndarray]]:
    """(times, root_pos, root_rot, joint tracks) of a clip, tiled ``repeats`` times.

    Each extra cycle starts where the previous one ended: its root trajectory is translated in xz
    (DeepMimic's rule for wrapped clips) and also rotated by the cycle's heading change (last vs.
    first frame), so turning clips keep turning and seams stay smooth. Clips whose loop does not
    close exactly then curve slightly (walk: ~7° per cycle). The repeated first frame of each
    extra cycle is dropped.
    """
    times = np.concatenate([[0.0], np.cumsum(arr[:-1, 0])])
    root_pos = arr[:, 1:4]
    root_rot = _quat_wxyz(arr[:, 4:8])
    cols: dict[str, np.ndarray] = {}
    k = 8
    for name, n in DEEPMIMIC_CHANNELS:
        cols[name] = arr[:, k : k + n]
        k += n
    if repeats > 1:
        period = times[-1]
        dh = float(_heading(root_rot[-1]) - _heading(root_rot[0]))
        dh = (dh + math.pi) % (2 * math.pi) - math.pi
        base_pos, base_quat = root_pos.copy(), root_rot.as_quat()
        all_t, all_pos, all_quat = [times], [root_pos], [base_quat]
        start = root_pos[-1]
        for c in range(1, repeats):
            yaw = Rotation.from_rotvec([0.0, c * dh, 0.0])
            rel = base_pos[1:] - base_pos[0] * np.array([1.0, 0.0, 1.0])
            pos = yaw.apply(rel) + start * np.array([1.0, 0.0, 1.0])
            all_t.append(times[1:] + c * period)
            all_pos.append(pos)
            all_quat.append((yaw * Rotation.from_quat(base_quat[1:])).as_quat())
            start = pos[-1]
        times = np.concatenate(all_t)
        root_pos = np.concatenate(all_pos)
        root_rot = Rotation.from_quat(np.concatenate(all_quat))
        cols = {n: np.concatenate([v] + [v[1:]] * (repeats - 1)) for n, v in cols.items()}
    tracks: dict[str, Rotation | np.ndarray] = {
        n: (_quat_wxyz(v) if v.shape[1] == 4 else v[:, 0]) for n, v in cols.items()
    }
    return times, root_pos, root_rot, tracks


def deepmimic_fk(
    skel: DeepMimicSkeleton,
    root_pos: np.ndarray,
    root_rot: Rotation,
    tracks: dict[str, Rotation | np.ndarray],
) -> dict[str, np.ndarray]:
    """World positions [T,3] (DeepMimic axes) of every joint, plus "right_toe"/"left_toe"/"head"."""
    pos: dict[str, np.ndarray] = {"root": root_pos}
    rot: dict[str, Rotation] = {"root": root_rot}
    for name in skel.order[1:]:
        parent = skel.parents[name]
        pos[name] = pos[parent] + rot[parent].apply(skel.offsets[name])
        local = tracks.get(name)
        if local is None:  # fixed joint (wrists)
            rot[name] = rot[parent]
        elif isinstance(local, Rotation):
            rot[name] = rot[parent] * local
        else:  # revolute: angle about the joint axis
            rot[name] = rot[parent] * Rotation.from_rotvec(np.asarray(local)[:, None] * skel.axes[name])
    for side in ("right", "left"):
        pos[f"{side}_toe"] = pos[f"{side}_ankle"] + rot[f"{side}_ankle"].apply(skel.toe)
    pos["head"] = pos["neck"] + rot["neck"].apply(skel.head)
    return pos


_DM_TO_SMPL_NAMES = {
    "root": "pelvis", "chest": "spine2", "neck": "neck", "head": "head",
    **{
        f"{s}_{j}": f"{s}_{j}"
        for s in ("left", "right")
        for j in ("hip", "knee", "ankle", "shoulder", "elbow", "wrist")
    },
    **{f"{s}_toe": f"{s}_foot" for s in ("left", "right")},
}  # fmt: skip


def load_deepmimic(name_or_path: str | Path, fps: float = HUMANML3D_FPS, repeats: int = 1) -> Motion:
    """Load a DeepMimic clip (name from ``list_deepmimic_clips`` or a file path) as SMPL-22.

    ``repeats`` > 1 tiles a looping ("wrap") clip, accumulating root displacement and heading.
    """
    clips = list_deepmimic_clips()
    key = str(name_or_path)
    if key in clips:
        path, name = clips[key], key
    elif Path(key).is_file():
        path = Path(key)
        name = next((n for n, p in clips.items() if p.resolve() == path.resolve()), path.stem)
        name = name.removeprefix("humanoid3d_")
    else:
        raise ValueError(f"unknown DeepMimic clip {key!r}; known: {sorted(clips)}")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    arr, loop = _read_deepmimic(path)
    if repeats > 1 and loop != "wrap":
        raise ValueError(f"{path}: Loop is {loop!r}, only 'wrap' clips can be repeated")
    times, root_pos, root_rot, tracks = _deepmimic_tracks(arr, repeats)
    new_t = _sample_times(times[-1], fps)
    r_pos = _lerp(times, root_pos, new_t)
    r_rot = _slerp(times, root_rot, new_t)
    r_tracks = {
        n: _slerp(times, v, new_t) if isinstance(v, Rotation) else np.interp(new_t, times, v)
        for n, v in tracks.items()
    }
    world = deepmimic_fk(deepmimic_skeleton(), r_pos, r_rot, r_tracks)
    smpl = {dst: world[src] @ DEEPMIMIC_TO_SMPL.T for src, dst in _DM_TO_SMPL_NAMES.items()}
    joints, filled = _fill_smpl(smpl, str(path))
    rel = path.relative_to(path.parents[1]) if path.parent.name == "walker" else Path(path.name)
    return Motion(
        joints=joints,
        fps=float(fps),
        name=name,
        action=deepmimic_action(name),
        source=f"deepmimic:{rel.as_posix()}",
        meta={
            "source_frames": len(arr),
            "source_seconds": float(np.sum(arr[:-1, 0])),
            "loop": loop,
            "repeats": repeats,
            "filled_joints": filled,
        },
    )


# Actions whose DeepMimic clip is one cycle of an ongoing activity: tiled ("looped") into longer
# motions, so a text-to-motion model learns that a run goes on rather than stopping after one stride.
# Single actions (jump, backflip, kick, ...) are not tiled even when their file is marked "wrap".
CONTINUOUS_ACTIONS = frozenset({"walk", "run", "crawl", "dance", "turn_left", "turn_right"})


def loop_repeats(name: str, min_seconds: float) -> int:
    """Cycles of DeepMimic clip ``name`` needed to last at least ``min_seconds`` (1 = play once).

    Only looping ("wrap") clips of ``CONTINUOUS_ACTIONS`` are tiled; ``min_seconds`` <= 0 disables."""
    if min_seconds < 0:
        raise ValueError(f"min_seconds must be >= 0, got {min_seconds}")
    clips = list_deepmimic_clips()
    if min_seconds == 0 or name not in clips or deepmimic_action(name) not in CONTINUOUS_ACTIONS:
        return 1
    arr, loop = _read_deepmimic(clips[name])
    if loop != "wrap":
        return 1
    return max(1, math.ceil(min_seconds / float(np.sum(arr[:-1, 0])) - 1e-9))


def load_all_deepmimic(fps: float = HUMANML3D_FPS, repeats: int = 1) -> list[Motion]:
    """Every DeepMimic clip (``repeats`` applies to looping clips only)."""
    out = []
    for name, path in list_deepmimic_clips().items():
        r = repeats if repeats > 1 and _read_deepmimic(path)[1] == "wrap" else 1
        out.append(load_deepmimic(name, fps=fps, repeats=r))
    return out


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
