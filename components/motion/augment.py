"""Label-preserving augmentations of SMPL-22 motions.

Every function returns a new ``Motion`` (the input is never modified), appends its name to
``meta["augment"]`` and keeps the captions and ``action`` true to the new motion: only ``mirror``
changes words (left ↔ right, clockwise ↔ counterclockwise); the others leave them unchanged because
a rigid move of the whole motion, or a moderate speed change, does not change what is described.
"""

from __future__ import annotations

import dataclasses
import math
import re

import numpy as np
from scipy.spatial.transform import Rotation

from components.motion.motion import Motion
from components.motion.skeleton import smpl22_mirror_permutation

# "left"/"right" as a word or as the start of leftward(s)/leftmost; underscores count as separators
# so that action keys such as "turn_left" are swapped too.
_LR = re.compile(r"(?<![A-Za-z])(left|right)(?=wards?(?![A-Za-z])|most(?![A-Za-z])|(?![A-Za-z]))", re.I)
_CLOCK = re.compile(r"(?<![A-Za-z])(counter-?|anti-?)?(clockwise)(?![A-Za-z])", re.I)
_SWAP = {"left": "right", "right": "left"}


def _match_case(src: str, word: str) -> str:
    if len(src) > 1 and src.isupper():
        return word.upper()
    if src[:1].isupper():
        return word[:1].upper() + word[1:]
    return word


def swap_left_right(text: str) -> str:
    """Swap left/right (case-preserving) and clockwise/counterclockwise in ``text``.

    "counter-clockwise"/"anticlockwise" become "clockwise", which becomes "counterclockwise", so
    swapping twice is the identity for plain left/right/clockwise/counterclockwise words. (Past
    tense "left" of *leave* is swapped too; motion captions rarely use it.)
    """
    text = _LR.sub(lambda m: _match_case(m.group(1), _SWAP[m.group(1).lower()]), text)

    def clock(m: re.Match) -> str:
        if m.group(1):
            return _match_case(m.group(0), "clockwise")
        return _match_case(m.group(2), "counterclockwise")

    return _CLOCK.sub(clock, text)


def _derive(motion: Motion, joints: np.ndarray, op: str, **changes) -> Motion:
    meta = dict(motion.meta)
    meta["augment"] = [*motion.meta.get("augment", []), op]
    return dataclasses.replace(motion, joints=joints, meta=meta, **changes)


def mirror(motion: Motion) -> Motion:
    """Reflect x → −x, swap left/right joints and the words left/right in captions and action.

    Applying it twice gives back the same joints, captions and action exactly.
    """
    j = np.asarray(motion.joints)
    out = j[:, smpl22_mirror_permutation()].copy()
    out[..., 0] = -out[..., 0]
    return _derive(
        motion,
        out,
        "mirror",
        captions=tuple(swap_left_right(c) for c in motion.captions),
        action=swap_left_right(motion.action),
    )


def change_speed(motion: Motion, factor: float) -> Motion:
    """Play ``factor`` times as fast (2 → half the frames), fps unchanged; linear resampling.

    The new motion has ``round(T / factor)`` frames (at least 1), sampling source frame
    ``i * factor`` (the last source frame is held if ``i * factor`` passes it).
    """
    if not (math.isfinite(factor) and factor > 0):
        raise ValueError(f"speed factor must be a positive finite number, got {factor}")
    j = np.asarray(motion.joints)
    t = j.shape[0]
    n = max(1, round(t / factor))
    pos = np.minimum(np.arange(n) * factor, t - 1)
    i0 = np.floor(pos).astype(int)
    i1 = np.minimum(i0 + 1, t - 1)
    w = (pos - i0)[:, None, None]
    out = (1 - w) * j[i0] + w * j[i1]
    return _derive(motion, out.astype(j.dtype, copy=False), f"speed:{factor:g}")


def rotate_yaw(motion: Motion, degrees: float) -> Motion:
    """Rotate about the vertical axis through the first frame's root (positive: +Z turns to +X)."""
    j = np.asarray(motion.joints)
    rot = Rotation.from_euler("y", degrees, degrees=True).as_matrix()
    pivot = np.array([j[0, 0, 0], 0.0, j[0, 0, 2]])
    out = (j - pivot) @ rot.T + pivot
    out[..., 1] = j[..., 1]  # heights untouched (exactly)
    return _derive(motion, out.astype(j.dtype, copy=False), f"yaw:{degrees:g}")


def curve_path(motion: Motion, deg_per_s: float) -> Motion:
    """Bend the motion's path: the body turns by ``deg_per_s`` about the vertical axis each second.

    Frame t's pose (relative to its root) and root step are rotated by ``deg_per_s · t / fps``, so
    a straight walk becomes an arc and an in-place action slowly turns on the spot; heights are
    untouched. Positive angles turn toward +X (the body's left when it faces +Z at frame 0).
    """
    if not math.isfinite(deg_per_s):
        raise ValueError(f"turn rate must be finite, got {deg_per_s}")
    j = np.asarray(motion.joints, dtype=np.float64)
    angles = np.deg2rad(deg_per_s) * np.arange(j.shape[0]) / motion.fps
    rots = Rotation.from_euler("y", angles[:, None]).as_matrix()  # [T,3,3]
    root = j[:, 0, :].copy()
    root[:, 1] = 0.0
    steps = np.diff(root, axis=0, prepend=root[:1])
    path = root[0] + np.cumsum(np.einsum("tij,tj->ti", rots, steps), axis=0)
    out = np.einsum("tij,tkj->tki", rots, j - root[:, None, :]) + path[:, None, :]
    out[..., 1] = j[..., 1]
    return _derive(motion, out.astype(np.asarray(motion.joints).dtype, copy=False), f"curve:{deg_per_s:g}")


def offset_root(motion: Motion, dx: float, dz: float) -> Motion:
    """Translate the whole motion by (dx, 0, dz) metres."""
    j = np.asarray(motion.joints)
    out = j + np.array([dx, 0.0, dz], dtype=j.dtype)
    return _derive(motion, out, f"offset:{dx:g},{dz:g}")


def crop(motion: Motion, start: int, length: int) -> Motion:
    """Frames ``[start, start + length)``; ValueError if the window is empty or out of range."""
    t = motion.num_frames
    if int(start) != start or int(length) != length:
        raise ValueError(f"crop start/length must be integers, got {start}, {length}")
    start, length = int(start), int(length)
    if start < 0 or length < 1 or start + length > t:
        raise ValueError(f"crop [{start}, {start + length}) is outside the {t} frames of {motion.name!r}")
    j = np.asarray(motion.joints)
    return _derive(motion, j[start : start + length].copy(), f"crop:{start}+{length}")


def random_augment(
    motion: Motion,
    rng: np.random.Generator | int | None = None,
    *,
    p_mirror: float = 0.5,
    p_speed: float = 0.5,
    speed_range: tuple[float, float] = (0.8, 1.25),
    p_yaw: float = 1.0,
    yaw_range: tuple[float, float] = (-180.0, 180.0),
    p_offset: float = 0.5,
    offset_range: float = 1.0,
    crop_length: int | None = None,
) -> Motion:
    """Compose augmentations in this order, each drawn independently:

    1. ``change_speed`` with probability ``p_speed``, factor log-uniform in ``speed_range``;
    2. ``crop`` to ``crop_length`` frames at a uniform start, if given and the motion is longer;
    3. ``mirror`` with probability ``p_mirror``;
    4. ``rotate_yaw`` with probability ``p_yaw``, angle uniform in ``yaw_range`` degrees;
    5. ``offset_root`` with probability ``p_offset``, dx and dz uniform in ±``offset_range`` m.
    """
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    lo, hi = speed_range
    if not 0 < lo <= hi:
        raise ValueError(f"speed_range must satisfy 0 < low <= high, got {speed_range}")
    out = motion
    if rng.random() < p_speed:
        out = change_speed(out, float(np.exp(rng.uniform(np.log(lo), np.log(hi)))))
    if crop_length is not None and out.num_frames > crop_length:
        out = crop(out, int(rng.integers(0, out.num_frames - crop_length + 1)), crop_length)
    if rng.random() < p_mirror:
        out = mirror(out)
    if rng.random() < p_yaw:
        out = rotate_yaw(out, float(rng.uniform(*yaw_range)))
    if rng.random() < p_offset:
        dx, dz = rng.uniform(-offset_range, offset_range, size=2)
        out = offset_root(out, float(dx), float(dz))
    return out
