"""The ``synthetic`` ingest source: mocap motions rendered as human videos with exact labels.

``discover`` turns the params into one render recipe per clip (motion, camera, seed), and
``make_clip`` renders a recipe at the ingest clip size and fps, captions it, scores it with the
same quality filter as real clips, and writes the clip with its ground truth beside it:

    clips/<clip_id>.mp4      H.264, the same format as every other clip
    clips/<clip_id>.gt.npz   components.synthetic.render.GroundTruth (format in that module)

Recipes are grouped by source motion, so one mocap clip's renders never straddle train and val.
"""

from __future__ import annotations

import colorsys
import dataclasses
import functools
import math
from typing import TYPE_CHECKING

import numpy as np

from components.data import quality
from components.data.clip_writer import CLIPS_DIR, finish_clip, split_for_group
from components.data.config import IngestParams, SyntheticSource
from components.data.source_item import SourceItem
from components.io.atomic import write_text_atomic
from components.motion import augment as aug
from components.motion.augment import mirror
from components.motion.captions import captions, motion_prompt
from components.motion.config import parse_camera
from components.motion.deepmimic import list_deepmimic_clips, load_deepmimic, loop_repeats
from components.motion.humanml3d import compute_stats, joints_to_features
from components.motion.humanml3d_folder import load_humanml3d
from components.motion.motion import Motion
from components.synthetic.body import random_style
from components.synthetic.render import render_clip
from components.synthetic.scene import random_scene

if TYPE_CHECKING:
    from components.synthetic.body import BodyStyle
    from components.synthetic.scene import SceneSpec


class SyntheticError(RuntimeError):
    """A recipe that cannot be rendered (unknown motion, empty HumanML3D folder, ...)."""


def _motion_names(src: SyntheticSource) -> list[str]:
    if src.humanml3d is not None:
        root = src.humanml3d / "new_joint_vecs"
        if not root.is_dir():
            raise FileNotFoundError(f"synthetic.humanml3d: {root} does not exist (expected HumanML3D layout)")
        return [f"humanml3d:{p.stem}" for p in sorted(root.glob("*.npy"))]

    known = list_deepmimic_clips()
    names = list(src.motions) or sorted(known)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"synthetic.motions: unknown DeepMimic clip(s) {unknown}; known: {sorted(known)}")
    return names


def discover(src: SyntheticSource) -> list[SourceItem]:
    """One recipe per clip: motions in turn (every action covered), a camera drawn per clip."""
    names = _motion_names(src)
    if src.clips and not names:
        raise ValueError("synthetic source has no motions to render")
    items = []
    for i in range(src.clips):
        rng = np.random.default_rng([src.seed, i])
        motion = names[i % len(names)]
        camera = src.cameras[int(rng.integers(len(src.cameras)))]
        recipe = {
            "index": i,
            "seed": int(src.seed),
            "motion": motion,
            "camera": camera,
            "augment": src.augment,
            "humanml3d": str(src.humanml3d) if src.humanml3d else None,
            "loop_seconds": float(src.loop_seconds),
        }
        # only when pooled, so clips of a source without pools keep their recipes (and ids)
        if src.people is not None:
            recipe["person"] = i % src.people
        if src.scenes is not None:
            recipe["scene"] = i % src.scenes
        items.append(
            SourceItem(
                label=f"synthetic:{i:04d}-{motion}",
                path=None,
                caption_source="synthetic",
                group=f"motion:{motion}",
                synthetic=recipe,
            )
        )
    return items


@functools.lru_cache(maxsize=64)
def _load_motion(name: str, humanml3d: str | None, loop_seconds: float = 0.0) -> Motion:
    if name.startswith("humanml3d:"):
        motions, _problems = load_humanml3d(humanml3d)
        wanted = name.removeprefix("humanml3d:")
        for m in motions:
            if m.name == wanted:
                return m
        raise SyntheticError(f"HumanML3D motion {wanted} could not be loaded from {humanml3d}")

    return load_deepmimic(name, repeats=loop_repeats(name, loop_seconds))


def _prepare_motion(motion: Motion, seconds: float, rng: np.random.Generator, augment: bool) -> Motion:
    """Augment (label-preserving) and cut a window of ``seconds``; hold the last pose if too short."""

    need = math.ceil(seconds * motion.fps) + 1
    if augment:
        motion = aug.random_augment(motion, rng)
    if motion.num_frames > need:
        start = int(rng.integers(0, motion.num_frames - need + 1))
        motion = aug.crop(motion, start, need)
    elif motion.num_frames < need:
        joints = np.asarray(motion.joints)
        pad = np.repeat(joints[-1:], need - len(joints), axis=0)
        motion = dataclasses.replace(
            motion, joints=np.concatenate([joints, pad]), meta={**motion.meta, "held_last_frames": len(pad)}
        )
    return motion


# --- words for what the renderer drew --------------------------------------------------------------
_HUES = (
    (15, "red"), (40, "orange"), (65, "yellow"), (160, "green"), (195, "teal"), (255, "blue"),
    (290, "purple"), (335, "pink"), (360, "red"),
)  # fmt: skip


def colour_name(rgb: tuple[int, int, int]) -> str:
    """A plain English name for an sRGB colour (for captions)."""
    h, s, v = colorsys.rgb_to_hsv(*(c / 255 for c in rgb))
    if v < 0.22:
        return "black"
    if s < 0.15:
        return "white" if v > 0.85 else "grey" if v > 0.45 else "dark grey"
    if 0.02 < h < 0.14 and v < 0.65:  # dark orange reads as brown
        return "brown"
    deg = h * 360
    name = next(n for limit, n in _HUES if deg <= limit)
    return ("dark " + name) if v < 0.45 else name


def describe_style(style) -> str:
    """'a person in a blue long-sleeved shirt and grey shorts' from a BodyStyle."""
    sleeve = "long-sleeved " if style.sleeves == "long" else "short-sleeved "
    legs = "shorts" if style.legwear == "shorts" else "trousers"
    hair = " with long hair" if style.hair_style == "long" else ""
    return (
        f"a person{hair} in a {colour_name(style.shirt)} {sleeve}shirt and "
        f"{colour_name(style.trousers)} {legs}"
    )


def describe_scene(scene) -> str:
    """Where it happens: floor and nearby objects, from a SceneSpec."""
    floor = {"checker": "a checkered floor", "tiles": "a tiled floor", "noise": "a textured ground"}[
        scene.floor
    ]
    kinds = sorted({b.kind for b in scene.boxes})
    near = (
        f" near a {kinds[0]}" if len(kinds) == 1 else f" near a {kinds[0]} and a {kinds[1]}" if kinds else ""
    )
    return f"on {floor}{near}"


def pooled_style(seed: int, k: int) -> BodyStyle:
    """Person ``k`` of the source's pool (``people``): a random body style fixed by ``(seed, k)``."""

    return random_style(np.random.default_rng([seed, 0x9E0, k]))


def pooled_look(seed: int, k: int) -> SceneSpec:
    """Scene look ``k`` of the source's pool (``scenes``): sky, backdrop, floor and light fixed by
    ``(seed, k)``; it carries no boxes (each clip places its own around its motion)."""

    return random_scene(np.random.default_rng([seed, 0x5CE, k]), np.zeros((1, 2)), max_boxes=0)


def make_clip(planned, params: IngestParams, out_dir) -> list[dict]:
    """Render one recipe and return its manifest row (kept clips get the mp4 and the .gt.npz)."""

    it, recipe, cp = planned.item, planned.item.synthetic, params.clip
    rng = np.random.default_rng([recipe["seed"], recipe["index"], 1])
    try:
        motion = _load_motion(recipe["motion"], recipe["humanml3d"], recipe.get("loop_seconds", 0.0))
    except (FileNotFoundError, ValueError, KeyError) as exc:
        raise SyntheticError(f"motion {recipe['motion']}: {exc}") from exc
    motion = _prepare_motion(motion, cp.frames / cp.fps, rng, recipe["augment"])
    render_seed = int(rng.integers(2**31))
    frames, gt = render_clip(
        motion,
        parse_camera(recipe["camera"]),
        cp.height,
        cp.width,
        cp.fps,
        style=pooled_style(recipe["seed"], recipe["person"]) if "person" in recipe else None,
        look=pooled_look(recipe["seed"], recipe["scene"]) if "scene" in recipe else None,
        seed=render_seed,
        num_frames=cp.frames,
    )
    caps = captions(
        motion, seed=render_seed, n=3, appearance=describe_style(gt.style), scene=describe_scene(gt.scene)
    )
    prompt = motion_prompt(motion, seed=render_seed)
    gt.captions, gt.motion_prompt = tuple(caps), prompt
    clip_id = f"synthetic-{recipe['index']:04d}-{planned.source_hash[:8]}"
    common = {
        "clip_id": clip_id,
        "source": it.label,
        "source_kind": it.kind,
        "source_hash": planned.source_hash,
        "start_frame": 0,
        "end_frame": motion.num_frames,
        "start_sec": 0.0,
        "end_sec": cp.frames / cp.fps,
        "caption": caps[0],
        "caption_source": "synthetic",
        "motion_prompt": prompt,
        "split": _split_for(it, planned, params),
    }
    row = finish_clip(common, frames, quality.score_clip(frames), params, out_dir)
    if row["status"] == "kept":
        rel = f"{CLIPS_DIR}/{clip_id}.gt.npz"
        gt.save(out_dir / rel)
        row["ground_truth_path"] = rel
    return [row]


def _split_for(item: SourceItem, planned, params: IngestParams) -> str:
    return split_for_group(item.group or planned.source_hash, params)


MOTIONS_DIR = "motions"


def write_motion_set(sources: list[SyntheticSource], out_dir, seed: int = 0) -> dict:
    """The text–motion set behind the synthetic clips, in the HumanML3D representation.

    For every source motion and its mirror image: ``motions/<name>.npy`` (features [T-1,263]) and
    one line in ``motions/index.jsonl`` (name, action, frames, fps, source, captions, motion prompt,
    ``loop_repeats``: cycles of a looping clip tiled to the source's ``loop_seconds``);
    ``motions/stats.npz`` holds the normalisation statistics computed on exactly these features.
    The motion transformer trains on this folder (or on a HumanML3D folder, which has the same form).
    """
    import json

    root = out_dir / MOTIONS_DIR
    root.mkdir(parents=True, exist_ok=True)
    lines, feats = [], []
    names = sorted(
        {
            (n, str(s.humanml3d) if s.humanml3d else None, float(s.loop_seconds))
            for s in sources
            for n in _motion_names(s)
        }
    )
    for name, h3d, loop_seconds in names:
        base = _load_motion(name, h3d, loop_seconds)
        for motion, suffix in ((base, ""), (mirror(base), "~mirror")):
            key = (name + suffix).replace("/", "__").replace(":", "_")
            f = joints_to_features(np.asarray(motion.joints)).astype(np.float32)
            np.save(root / f"{key}.npy", f)
            feats.append(f)
            lines.append(
                {
                    "id": key,
                    "action": motion.action,
                    "frames": int(motion.num_frames),
                    "fps": float(motion.fps),
                    "source": motion.source,
                    "group": name,  # a motion and its mirror share a split
                    "loop_repeats": int(motion.meta.get("repeats", 1)),
                    "captions": list(motion.captions) or captions(motion, seed=seed, n=3),
                    "motion_prompt": motion_prompt(motion, seed=seed),
                }
            )
    stats = compute_stats(feats)
    stats.save(root / "stats.npz")
    write_text_atomic(root / "index.jsonl", "".join(json.dumps(x, sort_keys=True) + "\n" for x in lines))
    return {"motions": len(lines), "motion_frames": int(sum(x["frames"] for x in lines))}
