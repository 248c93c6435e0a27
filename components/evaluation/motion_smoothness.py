"""``motion_smoothness``: VBench-style motion smoothness (higher is better, in [0, 1]).

VBench drops the odd frames, re-creates each from its two even neighbours with a frame interpolator
and scores the fidelity 1 − mean |interpolated − actual| / 255. Here the interpolator is the DIS-flow
halfway warp of ``components.data.quality.motion_smoothness_flowinterp`` (the same score the ingest
filter uses) instead of VBench's learned AMT model, so values are comparable between our runs, not with
published VBench numbers. Clips need ≥ 3 frames.
"""

from __future__ import annotations

from components.data.quality import motion_smoothness_flowinterp
from components.evaluation.metric_registry import MetricContext, MetricResult, VideoSample, register

NAME = "motion_smoothness"


@register(NAME, higher_is_better=True)
def compute(samples: list[VideoSample], ctx: MetricContext) -> MetricResult:
    """Flow-interpolation fidelity of the odd frames per clip, averaged over clips."""
    values = [motion_smoothness_flowinterp(s.frames) if s.num_frames >= 3 else None for s in samples]
    return MetricResult.from_per_video(
        NAME, values, True, interpolator="DIS optical flow halfway warp (components.data.quality)"
    )
