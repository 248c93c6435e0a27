"""``fd_effnet_frames``: Fréchet distance between EfficientNet-Lite0 features of generated frames and of
reference clip frames (lower is better).

A frame-level stand-in for FVD that runs offline: it sees appearance and per-frame realism but not
motion, so it is reported under its own name, never as FVD. Per clip, up to ``max_frames`` frames
(option, default 16) are taken at evenly spaced indices; each frame is resized to 224×224 (aspect not
kept) and embedded (pooled 1280-d); all frames of a set are pooled into one Gaussian. The reference set
is ``ctx.reference``.
"""

from __future__ import annotations

import numpy as np

from components.evaluation.frechet import frechet_distance_features
from components.evaluation.registry import (
    MetricContext,
    MetricResult,
    VideoSample,
    evenly_spaced_indices,
    register,
)

NAME = "fd_effnet_frames"
DEFAULT_MAX_FRAMES = 16


def set_features(samples: list[VideoSample], ctx: MetricContext, max_frames: int) -> np.ndarray:
    """EfficientNet-Lite0 features [N,1280] of the sampled frames of every clip."""
    extractor = ctx.feature_extractor("efficientnet-lite0")
    feats = [extractor(s.frames[evenly_spaced_indices(s.num_frames, max_frames)]) for s in samples]
    return np.concatenate(feats)


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
