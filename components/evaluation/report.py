"""The evaluation report: ``index.html`` with the metric table and animated GIF thumbnails (files beside
it, so the folder is self-contained): per prompt, skeleton | generated | detected (the keypoints the pose
estimator found on the generated frames, drawn in OpenPose colours by
``components.annotation.overlay.overlay_frames``) | base alone and its detection; per held-out skeleton
clip, skeleton | real | generated | detected | base alone and its detection. Without a detection the
conditioning skeleton is drawn over the generated frames instead (``overlay``)."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np

from components.annotation.overlay import overlay_frames
from components.io.atomic import atomic_path, write_text_atomic


def overlay(frames: np.ndarray, skeleton: np.ndarray, alpha: float = 0.6) -> np.ndarray:
    """Skeleton drawn over the generated frames (where the skeleton video is not black)."""
    drawn = skeleton.max(axis=-1, keepdims=True) > 0
    mixed = (1 - alpha) * frames.astype(np.float32) + alpha * skeleton.astype(np.float32)
    return np.where(drawn, mixed, frames).astype(np.uint8)


def detected_overlay(frames: np.ndarray, pose: Any) -> np.ndarray:
    """The detected keypoints (a ``PoseResult``) drawn over the frames at 2× with the project's OpenPose
    drawing; frames where nobody was found stay plain."""

    return overlay_frames(frames, pose.keypoints, pose.confidence, upscale=2)


def _figures(out_dir: Path, stem: str, videos: list[tuple[str, np.ndarray | None, int]], fps: float) -> str:
    """Write one GIF per (kind, video, scale) (None videos skipped) → the HTML figures."""
    figs = []
    for kind, video, scale in videos:
        if video is None:
            continue
        name = f"clips/{stem}_{kind.replace(' ', '_')}.gif"
        write_gif(out_dir / name, video, fps, scale=scale)
        figs.append(f'<figure><img src="{name}" alt="{name}"><figcaption>{kind}</figcaption></figure>')
    return "".join(figs)


def _views(c: dict[str, Any], with_real: bool) -> list[tuple[str, np.ndarray | None, int]]:
    """(kind, video, gif scale) of one clip card: the detected overlays are already at 2×."""
    pose, base_pose = c.get("pose"), c.get("base_pose")
    views: list[tuple[str, np.ndarray | None, int]] = [("skeleton", c["skeleton"], 2)]
    if with_real:
        views.append(("real", c.get("real"), 2))
    views.append(("generated", c["frames"], 2))
    if pose is not None:
        views.append(("detected", detected_overlay(c["frames"], pose), 1))
    elif not with_real:
        views.append(("overlay", overlay(c["frames"], c["skeleton"]), 2))
    if c.get("base") is not None:
        views.append(("base alone", c["base"], 2))
        if base_pose is not None:
            views.append(("base detected", detected_overlay(c["base"], base_pose), 1))
    return views


def write_gif(path: Path, frames: np.ndarray, fps: float, scale: int = 2) -> Path:
    import imageio.v2 as imageio

    big = np.repeat(np.repeat(frames, scale, axis=1), scale, axis=2)
    with atomic_path(path) as tmp:
        imageio.mimsave(tmp, list(big), format="GIF", duration=1.0 / fps, loop=0)
    return path


def _fmt(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v))


def write_report(
    out_dir: Path,
    metrics: dict[str, Any],
    descriptions: dict[str, str],
    clips: list[dict[str, Any]],
    fps: float,
    title: str = "MoSA evaluation",
    skeleton_clips: list[dict[str, Any]] | None = None,
) -> Path:
    """``clips``: dicts with prompt, motion_prompt, frames, skeleton (uint8 videos) and optionally pose
    (the detected ``PoseResult``), base (base-alone frames) and base_pose. ``skeleton_clips``: the
    held-out clips generated from, dicts with prompt, clip_id, skeleton, real, frames and optionally
    pose, base, base_pose."""
    out_dir = Path(out_dir)
    (out_dir / "clips").mkdir(parents=True, exist_ok=True)
    rows = "".join(
        f"<tr><td><code>{html.escape(k)}</code></td><td>{_fmt(v)}</td>"
        f"<td>{html.escape(descriptions.get(k, ''))}</td></tr>"
        for k, v in metrics.items()
        if not isinstance(v, dict | list)
    )
    cards = []
    for i, c in enumerate(clips):
        imgs = _figures(out_dir, f"{i:03d}", _views(c, with_real=False), fps)
        cards.append(
            f"<section><h3>{html.escape(c['prompt'])}</h3><p>motion prompt: <em>"
            f"{html.escape(c.get('motion_prompt') or '')}</em></p><div class=row>{imgs}</div></section>"
        )
    skel_cards = []
    for i, c in enumerate(skeleton_clips or []):
        imgs = _figures(out_dir, f"skel{i:03d}", _views(c, with_real=True), fps)
        skel_cards.append(
            f"<section><h3>{html.escape(c['prompt'])}</h3><p>held-out clip <code>"
            f"{html.escape(str(c.get('clip_id', '')))}</code></p><div class=row>{imgs}</div></section>"
        )
    skel_html = (
        "<h2>From held-out skeletons (skeleton | real | generated | detected | base alone)</h2>"
        + "".join(skel_cards)
        if skel_cards
        else ""
    )
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1300px}} table{{border-collapse:collapse}}
td{{border:1px solid #ccc;padding:4px 8px}} .row{{display:flex;gap:8px;flex-wrap:wrap}} figure{{margin:0}}
img{{image-rendering:pixelated}}</style></head><body>
<h1>{html.escape(title)}</h1>
<h2>Metrics</h2><table><tr><th>metric</th><th>value</th><th>what it computes</th></tr>{rows}</table>
<h2>Clips (skeleton | generated | detected keypoints | base alone)</h2>{"".join(cards)}
{skel_html}
</body></html>
"""
    write_text_atomic(out_dir / "index.html", page)
    return out_dir / "index.html"
