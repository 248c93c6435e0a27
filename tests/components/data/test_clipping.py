"""Tests for components.data.clipping: clip spans (resampling) and fitting frames to the target size."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from components.data.clipping import ClipSpan, clip_spans, decode_size, fit_frames, fit_mode
from components.data.config import ClipParams
from components.io.video import VideoInfo, probe, read_frames
from tests.conftest import moving_frames


def _clip(**kw) -> ClipParams:
    return ClipParams.model_validate(kw)


def _info(seconds: float, fps: float, h: int = 96, w: int = 128) -> VideoInfo:
    return VideoInfo(fps=fps, frames=round(seconds * fps), height=h, width=w)


def _check_span(span: ClipSpan, info: VideoInfo, clip: ClipParams) -> None:
    idx = span.indices
    assert len(idx) == clip.frames
    assert all(0 <= i < info.frames for i in idx)
    assert all(b >= a for a, b in itertools.pairwise(idx))
    assert span.start_frame == idx[0]
    assert span.end_frame == idx[-1] + 1
    assert span.end_sec - span.start_sec == pytest.approx(clip.frames / clip.fps)
    # each target frame j shows the source frame nearest to time start_sec + j / fps
    for j, i in enumerate(idx):
        t = span.start_sec + j / clip.fps
        assert abs(i - t * info.fps) <= 0.5 + 1e-9 or i == info.frames - 1


# --- clip_spans: counts -------------------------------------------------------------------------


def test_two_seconds_gives_one_clip_at_stride_17() -> None:
    info, clip = _info(2.0, 24.0), _clip(fps=16, frames=17, stride=17)
    spans = clip_spans(info, clip)
    assert len(spans) == 1  # 32 target frames: starts 0 (17 <= 32) only
    _check_span(spans[0], info, clip)
    assert spans[0].index == 0
    assert spans[0].start_sec == 0.0
    assert spans[0].end_sec == pytest.approx(17 / 16)


def test_smaller_stride_gives_overlapping_clips() -> None:
    info, clip = _info(2.0, 24.0), _clip(fps=16, frames=17, stride=8)
    spans = clip_spans(info, clip)
    assert len(spans) == 2  # starts 0 and 8; 16 + 17 > 32
    assert [s.index for s in spans] == [0, 1]
    assert spans[1].start_sec == pytest.approx(8 / 16)
    assert spans[1].start_frame < spans[0].end_frame  # they overlap
    for s in spans:
        _check_span(s, info, clip)


def test_stride_one_counts_every_start() -> None:
    info, clip = _info(2.0, 24.0), _clip(fps=16, frames=17, stride=1, max_clips_per_video=100)
    assert len(clip_spans(info, clip)) == 32 - 17 + 1


def test_max_clips_per_video_caps() -> None:
    info = _info(10.0, 24.0)
    assert len(clip_spans(info, _clip(stride=17, max_clips_per_video=100))) == 9  # 160 target frames
    spans = clip_spans(info, _clip(stride=17, max_clips_per_video=3))
    assert len(spans) == 3
    assert [s.start_sec for s in spans] == pytest.approx([0.0, 17 / 16, 34 / 16])  # the first ones


def test_exact_fit_gives_one_clip() -> None:
    info = _info(17 / 16, 16.0)  # exactly 17 frames at the target rate
    spans = clip_spans(info, _clip(fps=16, frames=17))
    assert len(spans) == 1
    assert spans[0].indices == tuple(range(17))
    assert (spans[0].start_frame, spans[0].end_frame) == (0, 17)


def test_too_short_video_gives_no_clips() -> None:
    assert clip_spans(_info(1.0, 24.0), _clip(fps=16, frames=17)) == []
    assert clip_spans(_info(16 / 16, 16.0), _clip(fps=16, frames=17)) == []  # one frame short


@pytest.mark.parametrize("src_fps", [8.0, 12.5, 23.976, 24.0, 25.0, 29.97, 30.0, 50.0, 60.0, 120.0])
@pytest.mark.parametrize("seconds", [1.7, 3.0, 7.3])
def test_span_invariants_for_many_rates(src_fps: float, seconds: float) -> None:
    info, clip = _info(seconds, src_fps), _clip(fps=16, frames=17, stride=5, max_clips_per_video=50)
    spans = clip_spans(info, clip)
    expected = max(0, (math.floor(seconds * 16 + 1e-6) - 17) // 5 + 1)
    assert abs(len(spans) - expected) <= 1  # frame count is rounded, so the duration may differ a hair
    for k, s in enumerate(spans):
        assert s.index == k
        assert s.start_sec == pytest.approx(k * 5 / 16)
        assert s.end_sec <= info.seconds + 1e-9
        _check_span(s, info, clip)


# --- clip_spans: resampling ---------------------------------------------------------------------


def test_downsampling_60_to_16_picks_nearest_frames() -> None:
    info = _info(3.0, 60.0)
    (span,) = clip_spans(info, _clip(fps=16, frames=17, max_clips_per_video=1))
    expected_exact = {0: 0, 1: 4, 3: 11, 4: 15, 5: 19, 8: 30, 16: 60}  # round(j * 3.75), no ties
    for j, i in expected_exact.items():
        assert span.indices[j] == i
    steps = np.diff(span.indices)
    assert set(steps.tolist()) <= {3, 4}  # 3.75 source frames per target frame
    assert (span.start_frame, span.end_frame) == (0, 61)


def test_24_to_16_steps_alternate_evenly() -> None:
    (span,) = clip_spans(_info(2.0, 24.0), _clip(fps=16, frames=17))
    steps = np.diff(span.indices).tolist()
    assert sorted(set(steps)) == [1, 2]
    assert all(a != b for a, b in itertools.pairwise(steps)), steps  # 2,1,2,1: no jitter
    assert span.indices[-1] == 24


def test_upsampling_repeats_frames_evenly() -> None:
    info = _info(3.0, 8.0)  # 24 source frames, 48 target frames
    (span,) = clip_spans(info, _clip(fps=16, frames=17, max_clips_per_video=1))
    idx = np.array(span.indices)
    assert set(np.diff(idx).tolist()) <= {0, 1}  # consecutive source frames, some repeated
    counts = np.bincount(idx)
    assert (counts[1:-1] == 2).all(), span.indices  # every inner frame shown exactly twice
    assert len(set(span.indices)) == 9
    assert (span.start_frame, span.end_frame) == (0, 9)


def test_same_rate_is_identity() -> None:
    spans = clip_spans(_info(4.0, 16.0), _clip(fps=16, frames=17, stride=17))
    assert [s.indices for s in spans] == [tuple(range(k, k + 17)) for k in (0, 17, 34)]


def test_indices_never_pass_the_last_frame() -> None:
    # fps metadata says 30 but the stream has fewer frames than 30 * seconds suggests
    info = VideoInfo(fps=30.0, frames=34, height=96, width=128)
    (span,) = clip_spans(info, _clip(fps=16, frames=17))
    assert max(span.indices) <= 33


# --- clip_spans: start/end restrict the spans ---------------------------------------------------


def test_start_and_end_restrict_spans() -> None:
    info = _info(10.0, 24.0)
    clip = _clip(fps=16, frames=17, stride=17, max_clips_per_video=100)
    spans = clip_spans(info, clip, start_sec=2.0, end_sec=5.0)
    assert len(spans) == 2  # 3 s = 48 target frames: starts 0 and 17
    assert spans[0].start_sec == pytest.approx(2.0)
    assert spans[0].start_frame == 48
    for s in spans:
        assert s.start_sec >= 2.0 and s.end_sec <= 5.0 + 1e-9
        assert s.start_frame >= 48 and s.end_frame <= 120
        _check_span(s, info, clip)


def test_start_only_and_end_only() -> None:
    info, clip = _info(4.0, 24.0), _clip(fps=16, frames=17, stride=17)
    assert len(clip_spans(info, clip)) == 3
    late = clip_spans(info, clip, start_sec=2.5)
    assert len(late) == 1 and late[0].start_sec == pytest.approx(2.5)
    early = clip_spans(info, clip, end_sec=1.5)
    assert len(early) == 1 and early[0].end_sec <= 1.5


def test_end_past_the_video_is_clamped() -> None:
    info, clip = _info(2.0, 24.0), _clip(fps=16, frames=17, stride=8)
    assert clip_spans(info, clip, end_sec=100.0) == clip_spans(info, clip)


def test_span_too_short_or_past_the_end_gives_nothing() -> None:
    info, clip = _info(10.0, 24.0), _clip(fps=16, frames=17)
    assert clip_spans(info, clip, start_sec=3.0, end_sec=4.0) == []  # 16 target frames
    assert clip_spans(info, clip, start_sec=12.0) == []


# --- fit_mode / decode_size / fit_frames --------------------------------------------------------


@pytest.mark.parametrize(
    ("src", "target", "mode"),
    [
        ((1080, 1920), (96, 144), "crop"),  # landscape -> landscape
        ((1920, 1080), (96, 144), "pad"),  # portrait -> landscape
        ((1920, 1080), (144, 96), "crop"),  # portrait -> portrait
        ((1080, 1920), (144, 96), "pad"),  # landscape -> portrait
        ((100, 100), (96, 144), "crop"),  # square counts as landscape
        ((100, 100), (144, 96), "pad"),
        ((100, 100), (96, 96), "crop"),
    ],
)
def test_fit_mode_auto(src, target, mode) -> None:
    assert fit_mode(*src, _clip(height=target[0], width=target[1])) == mode


@pytest.mark.parametrize("fit", ["crop", "pad"])
def test_fit_mode_explicit(fit: str) -> None:
    for src in [(1080, 1920), (1920, 1080)]:
        assert fit_mode(*src, _clip(fit=fit)) == fit


SOURCE_SIZES = [(1080, 1920), (1920, 1080), (480, 640), (500, 500), (97, 131), (20, 12), (96, 144)]


@pytest.mark.parametrize("fit", ["crop", "pad", "auto"])
@pytest.mark.parametrize("target", [(96, 144), (144, 96), (64, 64)])
@pytest.mark.parametrize("src", SOURCE_SIZES)
def test_decode_then_fit_gives_target_size(src, target, fit) -> None:
    clip = _clip(height=target[0], width=target[1], fit=fit)
    dh, dw = decode_size(*src, clip)
    assert dh >= 2 and dw >= 2
    mode = fit_mode(*src, clip)
    if mode == "crop":
        assert dh >= clip.height and dw >= clip.width
        assert dh == clip.height or dw == clip.width or (dh - clip.height <= 1 and dw - clip.width <= 1)
    else:
        assert dh <= clip.height and dw <= clip.width
        assert dh == clip.height or dw == clip.width
    # aspect ratio is kept (to rounding)
    assert dw / dh == pytest.approx(src[1] / src[0], rel=0.1, abs=2 / min(dh, dw))
    frames = np.random.default_rng(0).integers(1, 256, (2, dh, dw, 3), dtype=np.uint8)
    out = fit_frames(frames, clip)
    assert out.shape == (2, clip.height, clip.width, 3)
    assert out.dtype == np.uint8 and out.flags.c_contiguous


def test_crop_takes_the_centre() -> None:
    clip = _clip(height=96, width=144, fit="crop")
    frames = moving_frames(2, 100, 200)
    out = fit_frames(frames, clip)
    assert np.array_equal(out, frames[:, 2:98, 28:172])


def test_pad_leaves_black_borders_and_centre_content() -> None:
    clip = _clip(height=96, width=144)  # landscape target
    src_h, src_w = 128, 96  # portrait source -> auto pads
    assert fit_mode(src_h, src_w, clip) == "pad"
    dh, dw = decode_size(src_h, src_w, clip)
    assert (dh, dw) == (96, 72)
    frames = moving_frames(3, dh, dw)
    assert frames.min() > 0
    out = fit_frames(frames, clip)
    assert out.shape == (3, 96, 144, 3)
    assert not out[:, :, :36].any() and not out[:, :, 108:].any()  # black bars left and right
    assert np.array_equal(out[:, :, 36:108], frames)  # content untouched in the middle


def test_pad_tiny_frames_centres_them() -> None:
    clip = _clip(height=96, width=144, fit="pad")
    frames = np.full((1, 10, 20, 3), 200, np.uint8)
    out = fit_frames(frames, clip)
    assert np.array_equal(out[0, 43:53, 62:82], frames[0])
    assert out.sum() == frames.sum()


def test_pad_and_crop_mixed_dimensions() -> None:
    # taller than the target but narrower: crop rows, pad columns
    clip = _clip(height=96, width=144, fit="pad")
    frames = moving_frames(1, 120, 100)
    out = fit_frames(frames, clip)
    assert out.shape == (1, 96, 144, 3)
    assert np.array_equal(out[0, :, 22:122], frames[0, 12:108])
    assert not out[0, :, :22].any() and not out[0, :, 122:].any()


@pytest.mark.parametrize(("size", "fit"), [((120, 160), "crop"), ((160, 120), "pad")])
def test_decode_and_fit_real_video(make_video, size, fit) -> None:
    clip = _clip(height=96, width=144, fit="auto")
    path = make_video(f"v_{fit}.mp4", seconds=1.5, fps=24, size=size)
    info = probe(path)
    assert fit_mode(info.height, info.width, clip) == fit
    dh, dw = decode_size(info.height, info.width, clip)
    (span,) = clip_spans(info, clip)
    frames = read_frames(path, list(span.indices), width=dw, height=dh)
    assert frames.shape == (17, dh, dw, 3)
    out = fit_frames(frames, clip)
    assert out.shape == (17, 96, 144, 3)
    if fit == "pad":
        pad = (144 - dw) // 2
        assert out[:, :, :pad].max() == 0 and out[:, :, pad : pad + dw].mean() > 40


@pytest.mark.parametrize(("src", "fit"), [((400, 800), "crop"), ((600, 300), "pad"), ((150, 500), "crop")])
def test_source_to_clip_maps_a_source_blob_onto_the_fitted_clip(src, fit) -> None:
    import cv2

    from components.data.clipping import source_to_clip

    clip = _clip(height=96, width=144, fit=fit)
    h, w = src
    frame = np.zeros((h, w, 3), np.uint8)
    xs, ys = round(w * 0.6), round(h * 0.4)
    cv2.circle(frame, (xs, ys), max(6, h // 20), (255, 255, 255), -1)
    dh, dw = decode_size(h, w, clip)
    small = cv2.resize(frame, (dw, dh), interpolation=cv2.INTER_AREA)
    out = fit_frames(small[None], clip)[0, ..., 0].astype(float)
    yy, xx = np.mgrid[: out.shape[0], : out.shape[1]]
    centroid = np.array([(out * xx).sum(), (out * yy).sum()]) / out.sum()
    sx, sy, ox, oy = source_to_clip(h, w, clip)
    assert np.allclose([xs * sx + ox, ys * sy + oy], centroid, atol=0.6)
