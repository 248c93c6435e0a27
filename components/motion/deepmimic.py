"""DeepMimic clips shipped in ``pybullet_data`` (``data/motions/humanoid3d_*.txt`` and
``data/motions/walker/*.txt``) as SMPL-22 ``Motion``s. The skeleton (joint offsets, revolute axes, foot
box, head sphere) is read from ``humanoid/humanoid.urdf`` and scaled by 0.25 (DeepMimic's
``globalScaling``). Frame rotations are resampled to ``fps`` *before* forward kinematics (root
position: linear; spherical joints: slerp; knees/elbows: linear in angle), so every retargeted bone
keeps a constant length. DeepMimic axes (+X forward, +Y up, +Z right) are rotated to SMPL axes (+Z
forward, +Y up, +X left). The mocap root heights are world metres of a simulation whose ground is
y=0; the feet land on y≈0 without any shift (checked on the walk clips), so none is applied."""

from __future__ import annotations

import functools
import json
import logging
import math
import re
from dataclasses import dataclass, field
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

log = logging.getLogger(__name__)


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
