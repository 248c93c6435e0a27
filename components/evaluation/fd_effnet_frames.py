"""``fd_effnet_frames``: Fréchet distance between EfficientNet-Lite0 features of generated frames and of
reference clip frames (lower is better).

A frame-level stand-in for FVD that runs offline: it sees appearance and per-frame realism but not
motion, so it is reported under its own name, never as FVD. Per clip, up to ``max_frames`` frames
(option, default 16) are taken at evenly spaced indices; each frame is resized to 224×224 (aspect not
kept) and embedded (pooled 1280-d); all frames of a set are pooled into one Gaussian. The reference set
is ``ctx.reference``.

``fd_effnet_frames_reference`` is its noise floor: the same distance between two disjoint halves of the
reference clips (split by clip, ``splits`` random splits, option, default 10; the mean, with the spread
in ``details``). A generated set cannot be told from real clips by this distance when its
``fd_effnet_frames`` is near the floor. Each half has half the clips, so the floor is somewhat higher
than two full-size real sets would give (a Fréchet distance's bias grows as sets shrink): it is the
floor for sets of that size, not a target of zero.
"""

from __future__ import annotations

import numpy as np

from components.evaluation.frechet import frechet_distance_features
from components.evaluation.metric_registry import (
    MetricContext,
    MetricResult,
    VideoSample,
    evenly_spaced_indices,
    register,
)

NAME = "fd_effnet_frames"
DEFAULT_MAX_FRAMES = 16


REFERENCE_NAME = "fd_effnet_frames_reference"
DEFAULT_SPLITS = 10


def clip_features(samples: list[VideoSample], ctx: MetricContext, max_frames: int) -> list[np.ndarray]:
    """Per clip, EfficientNet-Lite0 features [n,1280] of its sampled frames (cached per clip in ``ctx``)."""
    extractor = ctx.feature_extractor("efficientnet-lite0")
    return [
        ctx.cached(
            ("effnet-frames", id(s), max_frames),
            lambda s=s: (s, extractor(s.frames[evenly_spaced_indices(s.num_frames, max_frames)])),
        )[1]
        for s in samples
    ]


def set_features(samples: list[VideoSample], ctx: MetricContext, max_frames: int) -> np.ndarray:
    """EfficientNet-Lite0 features [N,1280] of the sampled frames of every clip."""
    return np.concatenate(clip_features(samples, ctx, max_frames))


@register(NAME, higher_is_better=False)
def compute(samples: list[VideoSample], ctx: MetricContext) -> MetricResult:
    """FD between EfficientNet-Lite0 frame features of ``samples`` and of ``ctx.reference``."""
    max_frames = int(ctx.option(NAME, "max_frames", DEFAULT_MAX_FRAMES))
    details = {"features": "efficientnet-lite0", "level": "set", "max_frames_per_clip": max_frames}
    if not ctx.reference:
        return MetricResult.unavailable(
            NAME, "no reference clips: set MetricContext.reference to real clips", False, **details
        )
    if not samples:
        return MetricResult.unavailable(NAME, "no generated clips given", False, **details)
    gen = set_features(samples, ctx, max_frames)
    ref = set_features(ctx.reference, ctx, max_frames)
    details |= {"generated_frames": len(gen), "reference_frames": len(ref)}
    if len(gen) < 2 or len(ref) < 2:
        why = f"need >= 2 frames per set, got {len(gen)} generated and {len(ref)} reference"
        return MetricResult.unavailable(NAME, why, False, **details)
    return MetricResult(NAME, frechet_distance_features(gen, ref), [], False, details)


@register(REFERENCE_NAME, higher_is_better=False)
def compute_reference(samples: list[VideoSample], ctx: MetricContext) -> MetricResult:
    """Mean FD between two disjoint random halves of ``ctx.reference`` (by clip) over several splits."""
    max_frames = int(ctx.option(NAME, "max_frames", DEFAULT_MAX_FRAMES))
    splits = int(ctx.option(REFERENCE_NAME, "splits", DEFAULT_SPLITS))
    details = {"features": "efficientnet-lite0", "level": "set", "max_frames_per_clip": max_frames}
    n = len(ctx.reference)
    if n < 2:
        why = f"need >= 2 reference clips to split into two halves, got {n}"
        return MetricResult.unavailable(REFERENCE_NAME, why, False, **details)
    feats = clip_features(ctx.reference, ctx, max_frames)
    rng = np.random.default_rng(ctx.seed)
    half = n // 2
    values = []
    for _ in range(splits):
        order = rng.permutation(n)
        a = np.concatenate([feats[i] for i in order[:half]])
        b = np.concatenate([feats[i] for i in order[half : 2 * half]])
        if len(a) < 2 or len(b) < 2:
            why = f"need >= 2 frames per half, got {len(a)} and {len(b)}"
            return MetricResult.unavailable(REFERENCE_NAME, why, False, **details)
        values.append(frechet_distance_features(a, b))
    details |= {"splits": splits, "clips_per_half": half, "sd": float(np.std(values))}
    return MetricResult(REFERENCE_NAME, float(np.mean(values)), [], False, details)
