"""Cut fixed-length clips: which source frames make each clip, and how frames fit the target size."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from components.data.config import ClipParams
from components.io.video import VideoInfo


@dataclass(frozen=True)
class ClipSpan:
    """Source frame indices of one clip (resampled to the target fps) and its span in the source."""

    index: int
    indices: tuple[int, ...]
    start_frame: int  # first source frame used
    end_frame: int  # one past the last source frame used
    start_sec: float
    end_sec: float


def clip_spans(
    info: VideoInfo, clip: ClipParams, start_sec: float | None = None, end_sec: float | None = None
) -> list[ClipSpan]:
    """Spans of up to ``clip.max_clips_per_video`` clips of ``clip.frames`` frames at ``clip.fps``.

    Target frame j of a clip starting at target frame s shows source time (s + j) / fps, i.e.
    source frame round(t * source_fps) (ties round up): frames are dropped when downsampling and
    repeated when upsampling. Clip starts step by ``clip.stride`` target frames inside [start_sec, end_sec).
    """
    t0 = max(0.0, start_sec or 0.0)
    t1 = info.seconds if end_sec is None else min(end_sec, info.seconds)
    available = math.floor((t1 - t0) * clip.fps + 1e-6)  # whole target frames inside the span
    spans: list[ClipSpan] = []
    start = 0
    while start + clip.frames <= available and len(spans) < clip.max_clips_per_video:
        times = [t0 + (start + j) / clip.fps for j in range(clip.frames)]
        # half-up rounding: Python's round() rounds ties to even, which makes 24->16 fps steps go
        # 2,1,1,2 (jitter) and 8->16 fps repeat alternate frames once and three times
        idx = tuple(min(info.frames - 1, math.floor(t * info.fps + 0.5)) for t in times)
        spans.append(
            ClipSpan(
                index=len(spans),
                indices=idx,
                start_frame=idx[0],
                end_frame=idx[-1] + 1,
                start_sec=times[0],
                end_sec=times[-1] + 1.0 / clip.fps,
            )
        )
        start += clip.stride
    return spans


def fit_mode(src_h: int, src_w: int, clip: ClipParams) -> str:
    """'crop' or 'pad'; 'auto' crops unless source and target orientations differ."""
    if clip.fit != "auto":
        return clip.fit
    return "crop" if (src_w >= src_h) == (clip.width >= clip.height) else "pad"


def decode_size(src_h: int, src_w: int, clip: ClipParams) -> tuple[int, int]:
    """(height, width) to decode at so that a centre crop or pad reaches the target size."""
    sh, sw = clip.height / src_h, clip.width / src_w
    if fit_mode(src_h, src_w, clip) == "crop":
        s = max(sh, sw)
        return max(clip.height, math.ceil(src_h * s)), max(clip.width, math.ceil(src_w * s))
    s = min(sh, sw)
    return min(clip.height, max(2, round(src_h * s))), min(clip.width, max(2, round(src_w * s)))


def fit_frames(frames: np.ndarray, clip: ClipParams) -> np.ndarray:
    """Centre-crop or centre-pad (black) decoded frames [T,h,w,3] to [T,clip.height,clip.width,3]."""
    t, h, w, c = frames.shape
    H, W = clip.height, clip.width
    if h >= H and w >= W:
        y, x = (h - H) // 2, (w - W) // 2
        return np.ascontiguousarray(frames[:, y : y + H, x : x + W])
    out = np.zeros((t, H, W, c), dtype=frames.dtype)
    ch, cw = min(h, H), min(w, W)
    sy, sx = (h - ch) // 2, (w - cw) // 2
    dy, dx = (H - ch) // 2, (W - cw) // 2
    out[:, dy : dy + ch, dx : dx + cw] = frames[:, sy : sy + ch, sx : sx + cw]
    return out


def source_to_clip(src_h: int, src_w: int, clip: ClipParams) -> tuple[float, float, float, float]:
    """(scale_x, scale_y, offset_x, offset_y) mapping source pixels to clip pixels.

    ``x_clip = x_src * scale_x + offset_x`` (pixel centres at integers), the composition of the
    resize to :func:`decode_size` and the centre crop/pad of :func:`fit_frames`. Annotators that
    work on the full-resolution source (small people) map their keypoints back with it.
    """
    h, w = decode_size(src_h, src_w, clip)
    out = []
    for dec, src, tgt in ((w, src_w, clip.width), (h, src_h, clip.height)):
        scale = dec / src
        kept = min(dec, tgt)
        shift = (tgt - kept) // 2 - (dec - kept) // 2
        out.append((scale, 0.5 * scale - 0.5 + shift))
    (sx, ox), (sy, oy) = out
    return sx, sy, ox, oy
