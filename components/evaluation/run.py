"""One evaluation run: generate a clip per prompt with the pipeline, describe each as a ``VideoSample``
(conditioning skeleton keypoints, point maps from the depth network), compute the metrics by name.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from components.annotation.storage import ClipAnnotation
from components.base.depth import default_intrinsics, unproject
from components.data.clipset import clip_table, load_sample, select_skeletons
from components.evaluation.metric_registry import (
    MODEL_UNAVAILABLE,
    MetricContext,
    MetricResult,
    VideoSample,
    available_metrics,
    compute_metrics,
)
from components.motion.camera import build_cameras
from components.motion.config import parse_camera
from components.motion.render import project_motion_to_openpose, skeleton_video

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

    d = pipe.defaults
    cams = build_cameras(
        parse_camera(camera), joints.shape[1], d.height, d.width, root=joints[:, :, 0].reshape(-1, 3)
    )
    kp, conf, _ = project_motion_to_openpose(joints[0], cams)
    return np.asarray(kp, np.float32), np.asarray(conf, np.float32)


def generate_all(
    pipe, prompts: list[str], seed: int, steps: int, guidance: float, camera: str = "track",
    use_structure: bool = True, progress: bool = True, desc: str = "evaluate: generate",
) -> list[Generated]:  # fmt: skip
    """One clip per prompt (prompt ``i`` with seed ``seed + i``), with its conditioning skeleton."""
    from tqdm import tqdm

    out = []
    for i, prompt in enumerate(tqdm(prompts, desc=desc, unit="clip", disable=not progress)):
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


# ------------------------------------------------ person metrics over seeds, from held-out skeletons

# The metrics measured on every seed of ``evaluate.seeds`` (the others use the first seed only).
SEEDED_METRICS: tuple[str, ...] = ("person_detect_rate", "skeleton_alignment_pck")


@dataclass
class HeldOutClip:
    """A held-out real clip brought to the pipeline's clip geometry: its caption (the prompt), the real
    frames, the skeleton video the model is conditioned on and the keypoints [T,18,2] / confidence
    [T,18] that PCK measures against (``source``): the exact projection of the 3D truth for rendered
    clips ("truth3d"), else annotate's detected 2D keypoints that drew the skeleton ("pose2d"; on
    those the reference row scores 1.0 by construction)."""

    clip_id: str
    prompt: str
    video: np.ndarray
    skeleton: np.ndarray
    keypoints: np.ndarray
    confidence: np.ndarray
    source: str
    redrawn: bool = False


def _fit(video: np.ndarray, frames: int, height: int, width: int) -> np.ndarray:
    """First ``frames`` frames, resized to height × width (area interpolation) when the size differs."""
    import cv2

    v = video[:frames]
    if v.shape[1:3] == (height, width):
        return np.ascontiguousarray(v)
    return np.stack([cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA) for f in v])


def _scale_points(kp: np.ndarray, sy: float, sx: float) -> np.ndarray:
    """Pixel-centre coordinates scaled by (sx, sy): (x + 0.5)·s − 0.5."""
    return ((kp + 0.5) * np.array([sx, sy], np.float32) - 0.5).astype(np.float32)


def held_out_clips(
    ingest: Path, annotate: Path, limit: int, structure: str, frames: int, height: int, width: int
) -> tuple[list[HeldOutClip], list[dict[str, str]]]:
    """Up to ``limit`` held-out (split != "train") clips the annotate stage kept, in clip-id order, with
    the skeletons the model was trained on (``structure`` "3d": drawn from the synthetic clips' 3D truth,
    else annotate's skeleton videos), and the clips set aside ({clip_id, reason}).

    A clip longer than the pipeline's clip is cut to its first ``frames`` frames; one of another size is
    resized (real frames) and its skeleton redrawn from the scaled keypoints with the project's drawing
    (``components.motion.render.skeleton_video``); a shorter clip is set aside.
    Raises ``ClipSetError`` when the ingest or annotate outputs are missing.
    """

    table = clip_table(ingest, annotate, annotated_only=True).sort_values("clip_id")
    rows = [r for r in table.to_dict("records") if str(r.get("split") or "train") != "train"]
    kept: list[HeldOutClip] = []
    aside: list[dict[str, str]] = []
    for row in rows:
        if len(kept) >= limit:
            break
        sample = load_sample(row, ingest, annotate)
        extra_kp = extra_conf = None
        if structure == "3d":
            picked, out = select_skeletons([sample], "joints3d")
            if out:
                aside.extend(out)
                continue
            sample = picked[0]
            kp, conf, source = sample.truth_keypoints, sample.truth_visible.astype(np.float32), "joints3d"
        else:
            ann = ClipAnnotation.load(Path(annotate) / row["annotation_path"])
            kp, conf, source = ann.keypoints, ann.confidence, "pose2d"
            extra_kp, extra_conf = ann.extra_keypoints, ann.extra_confidence
        T, H, W = sample.video.shape[:3]
        short = T < frames  # noqa: SIM300
        if short or sample.skeleton is None:
            why = f"{T} frames, the pipeline generates {frames}" if short else "no skeleton video"
            aside.append({"clip_id": sample.clip_id, "reason": why})
            continue
        kp, conf = np.asarray(kp[:frames], np.float32), np.asarray(conf[:frames], np.float32)
        redrawn = (height, width) != (H, W)
        if redrawn:
            sy, sx = height / H, width / W
            kp = _scale_points(kp, sy, sx)
            people_kp, people_conf = kp[:, None], conf[:, None]
            if extra_kp is not None and len(extra_kp):
                scaled = _scale_points(np.asarray(extra_kp[:, :frames], np.float32), sy, sx)
                people_kp = np.concatenate([np.moveaxis(scaled, 0, 1), people_kp], axis=1)
                people_conf = np.concatenate([np.moveaxis(extra_conf[:, :frames], 0, 1), people_conf], 1)
            skeleton = skeleton_video(people_kp, people_conf, height, width)
        else:
            skeleton = np.ascontiguousarray(sample.skeleton[:frames])
        if source == "pose2d" and sample.truth_keypoints is not None:
            # a rendered clip: measure against its exact 3D-truth projection, not against the detections
            # that drew the skeleton (the real clip would then score 1.0 by construction)
            kp = np.asarray(sample.truth_keypoints[:frames], np.float32)
            conf = np.asarray(sample.truth_visible[:frames], np.float32)
            kp = _scale_points(kp, height / H, width / W) if redrawn else kp
            source = "truth3d"
        kept.append(
            HeldOutClip(
                clip_id=sample.clip_id, prompt=sample.caption or "a person moves",
                video=_fit(sample.video, frames, height, width), skeleton=skeleton, keypoints=kp,
                confidence=conf, source=source, redrawn=redrawn,
            )
        )  # fmt: skip
    return kept, aside


def generate_from_skeletons(
    pipe, clips: list[HeldOutClip], seed: int, steps: int, guidance: float, use_structure: bool = True,
    progress: bool = True,
) -> list[np.ndarray]:  # fmt: skip
    """One clip per held-out skeleton (its caption as prompt, seed ``seed + i``) → frames [T,H,W,3]."""
    from tqdm import tqdm

    desc = f"evaluate: from skeleton ({'mosa' if use_structure else 'base'}, seed {seed})"
    return [
        pipe(
            c.prompt,
            seed=seed + i,
            steps=steps,
            guidance=guidance,
            skeleton=c.skeleton,
            use_structure=use_structure,
            progress=False,
        ).frames
        for i, c in enumerate(tqdm(clips, desc=desc, unit="clip", disable=not progress))
    ]


def measure_person(
    names: list[str], samples: list[VideoSample], optional: Collection[str] = ()
) -> tuple[dict[str, MetricResult], list[Any]]:
    """The ``names`` (of ``SEEDED_METRICS``) on ``samples``, and the detected poses (``PoseResult`` per
    sample, or None when the estimator is unavailable) for the report's overlays: one MediaPipe pass
    serves both."""

    ctx = MetricContext()
    try:
        poses: list[Any] = [ctx.detected_pose(s) for s in samples]
    except MODEL_UNAVAILABLE:
        poses = [None] * len(samples)  # the metrics report the reason themselves
    return compute_metrics(names, samples, ctx, optional=optional), poses


def over_seeds(name: str, per_seed: dict[int, MetricResult]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(flat metrics, detail) of one metric measured once per seed: the value is the mean over the seeds
    that gave one, ``<name>_sd`` their sample standard deviation (null below two values),
    ``<name>_frames`` the frames measured over all seeds; null with ``<name>_reason`` when no seed gave
    a value."""
    values = {s: r.value for s, r in per_seed.items() if r.value is not None}
    flat: dict[str, Any] = {name: float(np.mean(list(values.values()))) if values else None}
    if not values:
        first = next(iter(per_seed.values()), None)
        flat[f"{name}_reason"] = first.reason if first is not None else "no seeds given"
    if len(values) >= 2:
        flat[f"{name}_sd"] = float(np.std(list(values.values()), ddof=1))
    else:
        flat[f"{name}_sd"] = None
        flat[f"{name}_sd_reason"] = f"spread over seeds needs two seeds with a value, got {len(values)}"
    frames = [r.frames for r in per_seed.values() if r.frames is not None]
    if frames:
        flat[f"{name}_frames"] = int(sum(frames))
    detail = {
        "value": flat[name], "sd": flat[f"{name}_sd"], "seeds": list(per_seed),
        "per_seed": {str(s): r.as_dict() for s, r in per_seed.items()},
    }  # fmt: skip
    return flat, detail


@dataclass
class PersonRun:
    """What :func:`person_evaluation` measured: flat ``metrics``, per-seed ``details``, the first seed's
    clips for the report (``prompt_clips`` / ``skeleton_clips`` dicts with videos and detected poses)
    and the ``timing`` of the generations added to the first seed's prompt set."""

    metrics: dict[str, Any]
    details: dict[str, Any]
    prompt_clips: list[dict[str, Any]]
    skeleton_clips: list[dict[str, Any]]
    timing: dict[str, float]


def _samples(
    frames: list[np.ndarray], kps: list, confs: list, fps: float, ids: list[str]
) -> list[VideoSample]:
    return [
        VideoSample(frames=f, fps=fps, skeleton_keypoints=k, skeleton_confidence=c, sample_id=i)
        for f, k, c, i in zip(frames, kps, confs, ids, strict=True)
    ]


def person_evaluation(
    pipe, prompts: list[str], first: list[Generated], clips: list[HeldOutClip], seeds: list[int],
    steps: int, guidance: float, camera: str, names: list[str], fps: float,
    clips_reason: str | None = None, optional: Collection[str] = (), progress: bool = True,
) -> PersonRun:  # fmt: skip
    """The ``names`` (of ``SEEDED_METRICS``) over ``seeds`` on four clip sets — the prompt set
    generated end to end (suffix ""), the same with the base alone (``_base``), generated from the
    held-out ``clips``' skeletons with their captions (``_from_skeleton``, ``_from_skeleton_base``) —
    and once on the real clips (``_reference``). Under seed ``s``, prompt ``i`` of ``n`` is generated
    with seed ``s·n + i`` (distinct over seeds and clips), MoSA and base alike; ``first`` is the MoSA
    prompt set of ``seeds[0]`` already generated. ``clips_reason`` says why ``clips`` is empty."""
    import time

    per_seed: dict[str, dict[int, MetricResult]] = {}
    report_prompts: list[dict[str, Any]] = []
    report_skeletons: list[dict[str, Any]] = []
    added, seconds = 0, 0.0
    for k, seed in enumerate(seeds):
        t0 = time.perf_counter()
        start = seed * len(prompts)
        if k == 0:
            mosa = first
        else:
            mosa = generate_all(pipe, prompts, start, steps, guidance, camera, progress=progress,
                                desc=f"evaluate: generate (seed {seed})")  # fmt: skip
        base = generate_all(pipe, prompts, start, steps, guidance, camera, use_structure=False,
                            progress=progress, desc=f"evaluate: base alone (seed {seed})")  # fmt: skip
        from_skel = {
            use: generate_from_skeletons(pipe, clips, seed * len(clips), steps, guidance, use, progress)
            for use in (True, False)
        }
        added += len(base) + 2 * len(clips) + (len(mosa) if k else 0)
        seconds += time.perf_counter() - t0
        sets = {
            "": _samples([g.frames for g in mosa], [g.keypoints for g in mosa], [g.confidence for g in mosa],
                         fps, [str(g.seed) for g in mosa]),
            "_base": _samples([g.frames for g in base], [g.keypoints for g in base],
                              [g.confidence for g in base], fps, [str(g.seed) for g in base]),
        }  # fmt: skip
        if clips:
            kps, confs, ids = (
                [c.keypoints for c in clips],
                [c.confidence for c in clips],
                [c.clip_id for c in clips],
            )
            sets["_from_skeleton"] = _samples(from_skel[True], kps, confs, fps, ids)
            sets["_from_skeleton_base"] = _samples(from_skel[False], kps, confs, fps, ids)
            if k == 0:
                sets["_reference"] = _samples([c.video for c in clips], kps, confs, fps, ids)
        poses: dict[str, list[Any]] = {}
        for suffix, samples in sets.items():
            results, poses[suffix] = measure_person(names, samples, optional)
            for name, r in results.items():
                per_seed.setdefault(f"{name}{suffix}", {})[seed] = r
        if not clips:
            why = clips_reason or "no held-out skeleton clip"
            for suffix in ("_from_skeleton", "_from_skeleton_base"):
                for name in names:
                    per_seed.setdefault(f"{name}{suffix}", {})[seed] = MetricResult.unavailable(
                        name, why, True
                    )
        if k == 0:
            report_prompts = [
                {"prompt": g.prompt, "motion_prompt": g.motion_prompt, "frames": g.frames,
                 "skeleton": g.skeleton, "pose": p, "base": b.frames, "base_pose": bp}
                for g, p, b, bp in zip(mosa, poses[""], base, poses["_base"], strict=True)
            ]  # fmt: skip
            report_skeletons = [
                {"prompt": c.prompt, "clip_id": c.clip_id, "skeleton": c.skeleton, "real": c.video,
                 "frames": f, "pose": p, "base": b, "base_pose": bp}
                for c, f, p, b, bp in zip(
                    clips, from_skel[True], poses.get("_from_skeleton", []), from_skel[False],
                    poses.get("_from_skeleton_base", []), strict=True,
                )
            ] if clips else []  # fmt: skip
    metrics: dict[str, Any] = {}
    details: dict[str, Any] = {}
    for key, results in per_seed.items():
        if key.endswith("_reference"):  # real clips: measured once, no seed involved
            r = results[seeds[0]]
            metrics[key] = r.value
            if r.value is None:
                metrics[f"{key}_reason"] = r.reason
            if r.frames is not None:
                metrics[f"{key}_frames"] = r.frames
            details[key] = r.as_dict()
            continue
        flat, detail = over_seeds(key, results)
        metrics.update(flat)
        details[key] = detail
    if not clips:
        why = clips_reason or "no held-out skeleton clip"
        for name in names:
            metrics[f"{name}_reference"] = None
            metrics[f"{name}_reference_reason"] = why
    timing = {
        "added_clips": added,
        "added_seconds": round(seconds, 2),
        "seconds_per_added_clip": round(seconds / added, 3) if added else None,
    }
    return PersonRun(metrics, details, report_prompts, report_skeletons, timing)
