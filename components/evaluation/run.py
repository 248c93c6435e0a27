"""One evaluation run: generate a clip per prompt with the pipeline, describe each as a ``VideoSample``
(conditioning skeleton keypoints, point maps from the depth network), compute the metrics by name.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from components.evaluation.registry import (
    MetricContext,
    MetricResult,
    VideoSample,
    available_metrics,
    compute_metrics,
)

PROMPTS_FILE = Path(__file__).with_name("prompts.txt")


def load_prompts(path: Path | None = None, limit: int | None = None) -> list[str]:
    """Non-empty, non-comment lines of the prompt file (the repo's set by default)."""
    path = Path(path) if path is not None else PROMPTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"prompt file {path} not found")
    prompts = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
    prompts = [p for p in prompts if p and not p.startswith("#")]
    if not prompts:
        raise ValueError(f"{path} holds no prompts")
    return prompts[:limit] if limit else prompts


@dataclass
class Generated:
    prompt: str
    seed: int
    frames: np.ndarray
    skeleton: np.ndarray
    keypoints: np.ndarray | None
    confidence: np.ndarray | None
    motion_prompt: str


def skeleton_keypoints(pipe, joints: np.ndarray, camera: str) -> tuple[np.ndarray, np.ndarray]:
    """OpenPose-18 keypoints [T,18,2] and confidence of the first person, exactly as the pipeline draws
    them (same camera construction as ``MoSAPipeline.render_skeleton``)."""
    from components.motion.camera import build_cameras, parse_camera
    from components.motion.render import project_motion_to_openpose

    d = pipe.defaults
    cams = build_cameras(
        parse_camera(camera), joints.shape[1], d.height, d.width, root=joints[:, :, 0].reshape(-1, 3)
    )
    kp, conf, _ = project_motion_to_openpose(joints[0], cams)
    return np.asarray(kp, np.float32), np.asarray(conf, np.float32)


def generate_all(
    pipe, prompts: list[str], seed: int, steps: int, guidance: float, camera: str = "fixed",
    use_structure: bool = True, progress: bool = True,
) -> list[Generated]:  # fmt: skip
    from tqdm import tqdm

    out = []
    for i, prompt in enumerate(tqdm(prompts, desc="evaluate: generate", unit="clip", disable=not progress)):
        g = pipe(prompt, camera=camera, seed=seed + i, steps=steps, guidance=guidance, progress=False,
                 use_structure=use_structure)  # fmt: skip
        kp = conf = None
        if g.all_joints is not None:
            kp, conf = skeleton_keypoints(pipe, g.all_joints, camera)
        out.append(Generated(prompt, seed + i, g.frames, g.skeleton, kp, conf, g.motion_prompt))
    return out


def point_maps(pipe, frames: np.ndarray) -> np.ndarray | None:
    """Camera-space point maps [T,H,W,3] of generated frames from the base's depth network."""
    import torch

    from components.base.depth import default_intrinsics, unproject

    depth_net = pipe.base.depth
    if depth_net is None:
        return None
    x = torch.from_numpy(frames).float().permute(0, 3, 1, 2) / 127.5 - 1.0
    with torch.no_grad():
        depth = depth_net.eval()(x)
        T, _, H, W = depth.shape
        K = default_intrinsics(H, W).to(depth).expand(T, 3, 3)
        pts = unproject(depth, K)
    return pts.numpy().astype(np.float32)


def to_samples(pipe, generated: list[Generated], fps: float, with_points: bool = True) -> list[VideoSample]:
    samples = []
    for g in generated:
        samples.append(
            VideoSample(
                frames=g.frames,
                fps=fps,
                prompt=g.prompt,
                skeleton_keypoints=g.keypoints,
                skeleton_confidence=g.confidence,
                point_maps=point_maps(pipe, g.frames) if with_points else None,
                sample_id=f"{g.seed}",
            )
        )
    return samples


def evaluate_samples(
    names: list[str] | None,
    samples: list[VideoSample],
    reference: list[VideoSample],
    optional: Collection[str] = (),
    **ctx: Any,
) -> dict[str, MetricResult]:
    """Every metric in ``names`` (``None``: every registered metric) on ``samples``. A metric that
    raises raises ``MetricError`` naming it, unless it is in ``optional`` (then null with the error as
    its reason); a metric with nothing to measure is null with its reason either way."""
    context = MetricContext(reference=reference, **ctx)
    return compute_metrics(names or available_metrics(), samples, context, optional=optional)
