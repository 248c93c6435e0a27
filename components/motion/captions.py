"""Captions and motion-only prompts for mocap clips, from the action label and measured motion.

The caption says what the body does (action), how (manner: measured root speed) and where to
(direction of travel relative to the body's initial facing, and any turn), optionally with
appearance and scene words for synthetic renders. The motion-only prompt keeps just the subject
and the motion — what MoSA's structure transformer is conditioned on. Deterministic given a seed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from components.motion.motion import Motion
from components.motion.skeleton import FACE_JOINTS

# action key -> verb phrases (third person singular)
ACTION_PHRASES: dict[str, tuple[str, ...]] = {
    "walk": ("walks", "is walking", "strolls"),
    "run": ("runs", "jogs", "is running"),
    "jump": ("jumps", "leaps into the air", "does a jump"),
    "backflip": ("does a backflip", "performs a back flip", "flips backwards"),
    "cartwheel": ("does a cartwheel", "performs a cartwheel", "cartwheels"),
    "crawl": ("crawls on hands and knees", "crawls", "is crawling on the floor"),
    "dance": ("dances", "performs a dance", "is dancing"),
    "getup": ("gets up from the ground", "stands up from lying down", "rises from the floor"),
    "kick": ("kicks", "throws a kick", "kicks forward"),
    "punch": ("punches", "throws a punch", "punches forward"),
    "roll": ("rolls on the ground", "does a forward roll", "rolls over"),
    "spin": ("spins around", "turns around in place", "spins"),
    "spinkick": ("does a spinning kick", "spins and kicks", "performs a spin kick"),
    "turn_left": ("walks and turns left", "turns to the left while walking", "walks, turning left"),
    "turn_right": ("walks and turns right", "turns to the right while walking", "walks, turning right"),
}
SUBJECTS = ("a person", "someone", "a human", "a figure")
LOCOMOTION = {"walk", "run", "crawl", "turn_left", "turn_right"}


@dataclass(frozen=True)
class MotionFacts:
    """What the joints say about a clip: horizontal root speed, travel direction and turn."""

    speed: float  # metres per second of the root in the ground plane
    direction: str  # forward | backward | to the left | to the right | in place
    turn_degrees: float  # signed yaw change of the facing over the clip (positive = to the left)


def _facing(joints: np.ndarray) -> np.ndarray:
    """Unit facing directions [T,2] in the ground plane (x, z) from hips and shoulders."""
    r_hip, l_hip, r_sh, l_sh = FACE_JOINTS
    across = (joints[:, r_hip] - joints[:, l_hip]) + (joints[:, r_sh] - joints[:, l_sh])
    # forward = up × across with up = +Y, i.e. (x, z) = (across_z, -across_x)
    fwd = np.stack([across[:, 2], -across[:, 0]], axis=-1)
    return fwd / np.maximum(np.linalg.norm(fwd, axis=-1, keepdims=True), 1e-9)


def motion_facts(motion: Motion) -> MotionFacts:
    """Measure speed, travel direction (relative to the first frame's facing) and total turn."""
    j = np.asarray(motion.joints, dtype=np.float64)
    root = j[:, 0, [0, 2]]
    disp = root[-1] - root[0]
    dist = float(np.linalg.norm(disp))
    speed = dist / max(motion.seconds, 1e-9)
    fwd = _facing(j)
    f0 = fwd[0]
    left0 = np.array([f0[1], -f0[0]])  # facing +Z (0,1) -> left is +X (1,0)
    if dist < 0.25 * max(motion.seconds, 1.0):
        direction = "in place"
    else:
        along, side = float(disp @ f0), float(disp @ left0)
        if abs(along) >= abs(side):
            direction = "forward" if along > 0 else "backward"
        else:
            direction = "to the left" if side > 0 else "to the right"
    angles = np.unwrap(np.arctan2(fwd[:, 0], fwd[:, 1]))
    # arctan2(x, z) grows when turning from +Z toward +X, i.e. toward the body's left
    turn = float(np.degrees(angles[-1] - angles[0]))
    return MotionFacts(speed=speed, direction=direction, turn_degrees=turn)


def _manner(action: str, speed: float, rng: random.Random) -> str:
    if action not in LOCOMOTION:
        return ""
    if speed < 0.4:
        return rng.choice(("slowly", "carefully"))
    if speed > 2.2:
        return rng.choice(("quickly", "fast"))
    return rng.choice(("", "steadily", "at a steady pace"))


def _direction_words(action: str, facts: MotionFacts) -> str:
    words = []
    if action in LOCOMOTION and facts.direction != "in place":
        words.append(facts.direction)
    if action not in ("turn_left", "turn_right", "spin", "spinkick") and abs(facts.turn_degrees) > 60:
        words.append("turning left" if facts.turn_degrees > 0 else "turning right")
    return ", ".join(words)


def _sentence(subject: str, verb: str, manner: str, direction: str, extra: str = "") -> str:
    parts = [subject, verb]
    if direction:
        parts.append(("," if direction.startswith("turning") else "") + direction)
    if manner:
        parts.append(manner)
    text = " ".join(p for p in parts if p).replace(" ,", ", ")
    if extra:
        text += f" {extra}"
    return text.strip()


def motion_prompt(motion: Motion, seed: int = 0) -> str:
    """Motion-only prompt: subject + what the body does, no appearance or scene words."""
    rng = random.Random(f"{seed}:{motion.name}:prompt")
    action = motion.action if motion.action in ACTION_PHRASES else "walk"
    facts = motion_facts(motion)
    verb = ACTION_PHRASES[action][0]
    return _sentence("a person", verb, _manner(action, facts.speed, rng), _direction_words(action, facts))


def captions(
    motion: Motion, seed: int = 0, n: int = 3, appearance: str | None = None, scene: str | None = None
) -> list[str]:
    """``n`` distinct natural captions (action + manner + direction [+ appearance, scene])."""
    rng = random.Random(f"{seed}:{motion.name}:captions")
    action = motion.action if motion.action in ACTION_PHRASES else "walk"
    facts = motion_facts(motion)
    out: list[str] = []
    for attempt in range(8 * n):
        subject = appearance if appearance and attempt % 2 == 0 else rng.choice(SUBJECTS)
        verb = rng.choice(ACTION_PHRASES[action])
        extra = scene if scene and rng.random() < 0.7 else ""
        text = _sentence(
            subject, verb, _manner(action, facts.speed, rng), _direction_words(action, facts), extra
        )
        text = text[0].upper() + text[1:]
        if text not in out:
            out.append(text)
        if len(out) == n:
            break
    return out
