"""One MoSA training run plus its skeleton-following check: what ``train_dit`` and each ablation do.

``train_and_follow(params, ckpt_dir, log_fn)`` loads the frozen base, the annotated clips and the
motion model named in ``params`` (a ``TrainDiTParams``), trains the MoSA modules with
``components.dit.train.train_mosa`` and then, on held-out clips, generates with the same prompt, seed
and skeleton once with the structure branch and once with the base alone, scoring both with
``components.dit.follow``. The stage flows only choose params, paths and what to write.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from components.backbone.spec import enable_gradient_checkpointing
from components.base.bundle import BaseBundle, load_pretrained_base
from components.data.clipset import load_clipset, select_skeletons
from components.dit.config import TrainDiTParams
from components.dit.data import build_examples, check_sample
from components.dit.follow import compare_following, score_following
from components.dit.pipeline import MoSAPipeline, PipelineDefaults
from components.dit.train import DiTTrainConfig, train_mosa
from components.motion.structure import StructureModel
from components.training.config import EngineConfig

LOSS_KEYS = ("diff", "mask", "track", "contact")


def load_frozen_base(params: TrainDiTParams) -> Any:
    """The frozen base: ``pretrain_base``'s bundle (``params.base``, the CPU profile) or, when
    ``params.base_path`` is set (the GPU profiles), the published base in that local diffusers folder,
    with the T5 of ``text_encoder.path``, at the profile's clip size (``frames``/``height``/``width``)."""
    import torch

    if params.base_path is None:
        return BaseBundle.from_pretrained(params.base)
    te = params.text_encoder
    if te.name != "t5":
        raise ValueError(
            f"train_dit.base_path ({params.base_path}) loads a published base, which conditions on T5 "
            f"token states, but train_dit.text_encoder.name is {te.name!r}: set it to t5 and "
            "text_encoder.path to the T5 encoder folder (see infra/profiles/*.yaml)"
        )
    return load_pretrained_base(
        params.backbone, params.base_path, text_path=te.path,
        max_tokens=te.max_tokens if "max_tokens" in te.model_fields_set else None,
        dtype=getattr(torch, params.base_dtype), frames=params.frames, height=params.height,
        width=params.width,
    )  # fmt: skip


def geometry_reason(sample: Any, bundle: Any) -> str | None:
    """Why a clip cannot train around ``bundle`` (its size is not the base's clip size), or None."""
    want = (bundle.frames, bundle.height, bundle.width)
    got = tuple(int(v) for v in sample.video.shape[:3])
    if got == want:
        return None
    return (
        f"clip is {got[0]}x{got[1]}x{got[2]} (frames x height x width) but the base generates "
        f"{want[0]}x{want[1]}x{want[2]}; ingest at that size (ingest.clip.frames/height/width)"
    )


@dataclass
class FollowRun:
    """A trained pipeline, its training history and the following check's videos and scores."""

    pipe: Any
    model: Any
    result: Any
    history: list[dict[str, float]]
    train_clips: int
    quarantine: list[dict[str, str]]
    follow: dict[str, float]
    generated: dict[str, list[np.ndarray]] = field(default_factory=dict)
    references: list[np.ndarray] = field(default_factory=list)
    skeletons: list[np.ndarray] = field(default_factory=list)
    prompts: list[str] = field(default_factory=list)

    def tail_mean(self, key: str, n: int = 20) -> float | None:
        """Mean of the last ``n`` logged values of ``key`` (``None`` if never logged)."""
        values = [row[key] for row in self.history if key in row][-n:]
        return round(sum(values) / len(values), 6) if values else None

    def grid(self) -> np.ndarray:
        """Rows skeleton | base alone | MoSA | ground truth per held-out clip, every 4th frame."""
        rows = []
        for i, skel in enumerate(self.skeletons):
            cols = [skel, self.generated["base"][i], self.generated["mosa"][i], self.references[i]]
            rows.append(np.concatenate([np.concatenate(list(c[::4]), axis=1) for c in cols], axis=0))
        return np.concatenate(rows, axis=0)


def train_and_follow(
    params: TrainDiTParams,
    ckpt_dir: Path,
    log_fn: Callable[[int, dict[str, float]], None] | None = None,
    progress: bool = True,
) -> FollowRun:
    """Train the MoSA modules described by ``params`` and measure how they follow held-out skeletons."""

    history: list[dict[str, float]] = []

    def record(step: int, logs: dict[str, float]) -> None:
        history.append({"step": step, **logs})
        if log_fn is not None:
            log_fn(step, logs)

    bundle = load_frozen_base(params)
    if params.gradient_checkpointing:
        enable_gradient_checkpointing(bundle.models)
    spec = bundle.spec
    samples = load_clipset(params.ingest, params.annotate, annotated_only=True, progress=progress)
    mosa_cfg = params.mosa
    samples, aside = select_skeletons(samples, "joints3d" if mosa_cfg.structure == "3d" else "pose2d")
    quarantine = aside + [
        {"clip_id": s.clip_id, "reason": r}
        for s in samples
        if (r := check_sample(s) or geometry_reason(s, bundle))
    ]
    bad = {q["clip_id"] for q in quarantine}
    usable = [s for s in samples if s.clip_id not in bad]
    if not usable:
        reasons = sorted({q["reason"] for q in quarantine})[:3]
        raise ValueError(
            f"train_dit: none of the {len(samples)} annotated clips can train the MoSA modules; "
            f"reasons: {'; '.join(reasons) or 'no annotated clip'}"
        )
    train = [s for s in usable if s.split == "train"] or usable
    held = [s for s in usable if s.split != "train" and s.has_depth] or train[: params.follow.clips]
    train_cfg = DiTTrainConfig(
        weights=params.losses, aux_every=params.aux_every,
        aux_samples=params.aux_samples, track_points=params.track_points, tracker=params.tracker,
        contact_frames=params.contact_frames, short_caption_prob=params.short_caption_prob,
        tracker_path=params.tracker_path, seed=params.seed,
    )  # fmt: skip
    examples = build_examples(
        train, spec, bundle.models.vae, bundle.text.encode, structure=mosa_cfg.skeleton_encoder,
        track_points=params.track_points, cache_dir=params.cache, progress=progress,
    )  # fmt: skip
    engine_cfg = EngineConfig.for_phase(params, params.seed)
    depth_fn = bundle.depth.eval().requires_grad_(False) if bundle.depth is not None else None
    model, result = train_mosa(
        examples, bundle.models, spec, mosa_cfg, train_cfg, engine_cfg, ckpt_dir=ckpt_dir,
        depth_fn=depth_fn, log_fn=record, progress=progress,
    )  # fmt: skip
    model.eval()
    # the whole curve: a run resumed from a checkpoint gets the earlier steps from the checkpoint
    history = [dict(r) for r in result.losses] or history
    # the saved pipeline samples with the guidance the follow check uses (``mosa generate``'s default)
    b = bundle
    defaults = PipelineDefaults(
        guidance=params.follow.guidance, frames=b.frames, height=b.height, width=b.width, fps=b.fps
    )
    pipe = MoSAPipeline(bundle, model, StructureModel.from_pretrained(params.motion), defaults)

    fp = params.follow
    picked = held[: fp.clips]
    gens: dict[str, list[np.ndarray]] = {"mosa": [], "base": []}
    prompts = [s.caption or "a person moves" for s in picked]
    for i, s in enumerate(picked):
        for name, use in (("mosa", True), ("base", False)):
            out = pipe(
                prompts[i], seed=fp.seed + i, steps=fp.steps, guidance=fp.guidance,
                skeleton=s.skeleton, use_structure=use, progress=False,
            )  # fmt: skip
            gens[name].append(out.frames)
    refs, masks, skels = [s.video for s in picked], [s.mask for s in picked], [s.skeleton for s in picked]
    follow = compare_following(
        score_following(gens["mosa"], refs, masks, skels),
        score_following(gens["base"], refs, masks, skels),
    )
    return FollowRun(
        pipe=pipe, model=model, result=result, history=history, train_clips=len(train),
        quarantine=quarantine, follow={k: float(v) for k, v in follow.items()}, generated=gens,
        references=refs, skeletons=skels, prompts=prompts,
    )  # fmt: skip
