"""The evaluation report: ``index.html`` with the metric table and, per prompt, skeleton | generated |
overlay as animated GIF thumbnails (files beside it, so the folder is self-contained)."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np

from components.io.atomic import atomic_path, write_text_atomic


def overlay(frames: np.ndarray, skeleton: np.ndarray, alpha: float = 0.6) -> np.ndarray:
    """Skeleton drawn over the generated frames (where the skeleton video is not black)."""
    drawn = skeleton.max(axis=-1, keepdims=True) > 0
    mixed = (1 - alpha) * frames.astype(np.float32) + alpha * skeleton.astype(np.float32)
    return np.where(drawn, mixed, frames).astype(np.uint8)


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
) -> Path:
    """``clips``: dicts with prompt, motion_prompt, frames, skeleton (uint8 videos)."""
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
        names = []
        for kind, video in (
            ("skeleton", c["skeleton"]),
            ("generated", c["frames"]),
            ("overlay", overlay(c["frames"], c["skeleton"])),
        ):
            name = f"clips/{i:03d}_{kind}.gif"
            write_gif(out_dir / name, video, fps)
            names.append(name)
        imgs = "".join(
            f'<figure><img src="{n}" alt="{n}"><figcaption>{n.split("_")[-1][:-4]}</figcaption></figure>'
            for n in names
        )
        cards.append(
            f"<section><h3>{html.escape(c['prompt'])}</h3><p>motion prompt: <em>"
            f"{html.escape(c.get('motion_prompt') or '')}</em></p><div class=row>{imgs}</div></section>"
        )
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}} table{{border-collapse:collapse}}
td{{border:1px solid #ccc;padding:4px 8px}} .row{{display:flex;gap:8px}} figure{{margin:0}}
img{{image-rendering:pixelated}}</style></head><body>
<h1>{html.escape(title)}</h1>
<h2>Metrics</h2><table><tr><th>metric</th><th>value</th><th>what it computes</th></tr>{rows}</table>
<h2>Clips (skeleton | generated | overlay)</h2>{"".join(cards)}
</body></html>
"""
    write_text_atomic(out_dir / "index.html", page)
    return out_dir / "index.html"
