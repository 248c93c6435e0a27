"""``dynamic_degree``: VBench's dynamic degree — the share of clips judged dynamic (higher means more
motion; ``higher_is_better`` is True as in VBench, though a static prompt should score low).

VBench's rule: sample frames at about 8 fps (every ``max(1, round(fps / 8))``-th frame), take the mean
of the top 5% optical-flow magnitudes of each consecutive pair, and call the clip dynamic when at least
``round(4 · n / 16)`` pairs (n = sampled frames) exceed ``6 · min(H, W) / 256`` pixels. The flow is
OpenCV's DIS instead of VBench's RAFT (``components.data.quality.dynamic_degree_dis``). Per-video values
are 1 (dynamic) or 0; clips with fewer than 3 sampled frames are not measured.
"""

from __future__ import annotations

import numpy as np

from components.data.quality import dynamic_degree_dis
from components.evaluation.metric_registry import MetricContext, MetricResult, VideoSample, register

NAME = "dynamic_degree"
VBENCH_SAMPLE_FPS = 8.0


def vbench_frame_step(fps: float) -> int:
    """VBench's frame step for ~8 fps sampling: max(1, round(fps / 8))."""
    return max(1, round(fps / VBENCH_SAMPLE_FPS))


def is_dynamic(frames: np.ndarray, fps: float) -> bool | None:
    """VBench's verdict on one clip (None when fewer than 3 frames remain after sampling)."""
    sampled = frames[:: vbench_frame_step(fps)]
    if len(sampled) < 3:
        return None
    return bool(dynamic_degree_dis(sampled)[1])


@register(NAME, higher_is_better=True)
def compute(samples: list[VideoSample], ctx: MetricContext) -> MetricResult:
    """Share of clips judged dynamic by VBench's rule (DIS flow)."""
    verdicts = [is_dynamic(s.frames, s.fps) for s in samples]
    values = [None if v is None else float(v) for v in verdicts]
    return MetricResult.from_per_video(
        NAME, values, True, flow="DIS (OpenCV)", sample_fps=VBENCH_SAMPLE_FPS, rule="vbench"
    )
