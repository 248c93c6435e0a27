"""``contact_violation``: share of frames in which a human point lies inside the scene's convex hull
(lower is better), from per-pixel point maps.

Per clip: the pixels of the person mask (``sample.person_mask``, else a detected mask — never the
skeleton box, whose background pixels would count as "human") are the human points, all other finite
points of all frames build the scene hull, and a frame violates contact when any human point has signed
distance < −τ (``components.losses.contact.contact_violation_rate``; options ``tau`` default 0,
``per_object`` default False, ``max_scene_points`` default 20000). The clip value is that share of
frames; the metric is the mean over clips. Point maps come from a depth/point network
(``sample.point_maps``); clips without them, or whose scene spans no 3D hull, are not measured.

The paper's contact-violation rate is judged by a vision-language model (Qwen3-VL); this one is
geometric, so ``details["method"]`` says so and the two are not comparable. A single hull of a whole
scene also encloses free space (a floor plus a box enclose the air above the floor between them): on a
rendered walk (``components.synthetic``, exact point maps from the rendered depth, one box on the floor)
every frame counts as violating, with one hull or per-object hulls alike (the floor and the box touch,
so they form one cluster). Treat the rate as an upper bound until the scene is split into objects.

Only frames in which a person is found are measured (``frames`` counts them): a frame without a person
cannot violate contact, and a clip with no person in any frame has no value — never a perfect 0.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from components.evaluation.metric_registry import (
    MODEL_UNAVAILABLE,
    MetricContext,
    MetricResult,
    VideoSample,
    register,
)
from components.losses.contact import contact_violation_frames

NAME = "contact_violation"


@register(NAME, higher_is_better=False)
def compute(samples: list[VideoSample], ctx: MetricContext) -> MetricResult:
    """Share of frames with a human point inside the scene hull per clip, averaged over clips."""
    tau = float(ctx.option(NAME, "tau", 0.0))
    per_object = bool(ctx.option(NAME, "per_object", False))
    max_scene = int(ctx.option(NAME, "max_scene_points", 20000))
    details = {"method": "convex hull of point-map scene points", "tau": tau, "per_object": per_object}
    if not any(s.point_maps is not None for s in samples):
        return MetricResult.unavailable(
            NAME, "no point maps given (VideoSample.point_maps from a depth/point network)", False, **details
        )
    values: list[float | None] = []
    sources = []
    measured = total = 0
    for s in samples:
        if s.point_maps is None:
            values.append(None)
            sources.append("")
            continue
        if s.person_mask is not None:
            mask, src = s.person_mask, "given mask"
        else:
            try:
                mask, src = ctx.detected_masks(s), f"detected mask ({ctx.mask_estimator})"
            except MODEL_UNAVAILABLE as exc:
                return MetricResult.unavailable(NAME, str(exc), False, **details)
        points = torch.from_numpy(np.ascontiguousarray(s.point_maps, dtype=np.float32))[None]
        rate, n = contact_violation_frames(
            points, torch.from_numpy(mask)[None], tau=tau, max_scene_points=max_scene, per_object=per_object
        )
        values.append(None if math.isnan(rate) else rate)
        sources.append(src)
        measured, total = measured + n, total + s.num_frames
    why = f"no person found in any of the {total} frames with point maps (nothing to measure)"
    return MetricResult.from_per_video(
        NAME, values, False, frames=measured, reason_if_none=why if measured == 0 else None,
        region=sources, **details,
    )  # fmt: skip
