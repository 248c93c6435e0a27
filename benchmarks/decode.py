"""Decode throughput on the sports2d demo video at the ingest decode size: decord vs OpenCV.

Both decoders produce the same thing: every frame, RGB, at the size ingest decodes to before its
centre crop (decord resizes inside the decoder; OpenCV decodes full size, then cv2.resize).
"""

from __future__ import annotations

import statistics
import time

import cv2
import numpy as np

from components.data import clipping, demo
from components.data.config import ClipParams
from components.io.video import probe, read_frames


def _decord(path, n, h, w) -> int:
    return read_frames(path, list(range(n)), width=w, height=h).shape[0]


def _opencv(path, n, h, w) -> int:
    cap = cv2.VideoCapture(str(path))
    count = 0
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            small = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)
            np.ascontiguousarray(small[:, :, ::-1])
            count += 1
    finally:
        cap.release()
    return count


def run(repeats: int = 3, clip: ClipParams | None = None) -> dict:
    """frames/s of each decoder (median of ``repeats``) and their ratio."""
    clip = clip or ClipParams()
    path = demo.locate("sports2d/demo")
    info = probe(path)
    h, w = clipping.decode_size(info.height, info.width, clip)
    out: dict = {
        "video": "sports2d/demo",
        "source": f"{info.width}x{info.height}@{info.fps:g}",
        "decode_size": f"{w}x{h}",
        "frames": info.frames,
    }
    for name, fn in (("decord", _decord), ("opencv", _opencv)):
        rates = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            n = fn(path, info.frames, h, w)
            rates.append(n / (time.perf_counter() - t0))
            if n != info.frames:
                raise RuntimeError(f"{name} decoded {n} of {info.frames} frames")
        out[f"{name}_fps"] = round(statistics.median(rates), 1)
    out["decord_over_opencv"] = round(out["decord_fps"] / out["opencv_fps"], 3)
    return out
