"""Tests for components.io.video: probing, decoding, bad-input reasons and atomic H.264 writing."""

from __future__ import annotations

import gc
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from components.io.video import (
    VideoError,
    VideoInfo,
    probe,
    read_frames,
    sniff_container,
    write_h264,
)
from tests.conftest import audio_only, moving_frames, truncate, unknown_codec, write_video


def _reason(path: Path) -> str:
    with pytest.raises(VideoError) as exc:
        probe(path)
    assert exc.value.reason in str(exc.value)
    assert exc.value.detail
    return exc.value.reason


def _listing(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


class _FailingFrames(np.ndarray):
    """A valid uint8 [T,H,W,3] array whose iteration raises after ``fail_at`` frames (a source
    that breaks mid-encode)."""

    fail_at = 3

    def __iter__(self):
        for i in range(self.shape[0]):
            if i == self.fail_at:
                raise RuntimeError("frame source broke")
            yield np.asarray(self)[i]


# --- probe --------------------------------------------------------------------------------------


def test_probe_good_video(make_video) -> None:
    info = probe(make_video("good.mp4", seconds=2.0, fps=24, size=(96, 128)))
    assert info == VideoInfo(fps=24.0, frames=48, height=96, width=128)
    assert info.seconds == pytest.approx(2.0)


def test_probe_other_rate_and_size(make_video) -> None:
    info = probe(make_video("tall.mp4", seconds=1.0, fps=30, size=(160, 90)))
    assert (info.fps, info.frames, info.height, info.width) == (30.0, 30, 160, 90)


def test_video_info_seconds() -> None:
    assert VideoInfo(fps=16.0, frames=40, height=2, width=2).seconds == 2.5


# --- bad inputs get their reason codes ----------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    assert _reason(tmp_path / "nope.mp4") == "missing_file"


def test_directory_is_missing_file(tmp_path: Path) -> None:
    (tmp_path / "dir.mp4").mkdir()
    assert _reason(tmp_path / "dir.mp4") == "missing_file"


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "empty.mp4").write_bytes(b"")
    assert _reason(tmp_path / "empty.mp4") == "empty_file"


def test_text_named_mp4_is_not_a_video(tmp_path: Path) -> None:
    path = tmp_path / "notes.mp4"
    path.write_text("this is a text file, not a video\n", encoding="utf-8")
    assert _reason(path) == "not_a_video"


def test_truncated_file(make_video, tmp_path: Path) -> None:
    good = make_video("good.mp4")
    assert _reason(truncate(good, tmp_path / "cut.mp4", keep=0.5)) == "truncated_or_corrupt"


def test_unsupported_codec(make_video, tmp_path: Path) -> None:
    good = make_video("good.mp4")
    assert _reason(unknown_codec(good, tmp_path / "zzz9.mp4")) == "unsupported_codec"


def test_audio_only_has_no_video_stream(tmp_path: Path) -> None:
    assert _reason(audio_only(tmp_path / "sine.mp4")) == "no_video_stream"


def test_read_frames_of_bad_file_raises_video_error(make_video, tmp_path: Path) -> None:
    bad = truncate(make_video("good.mp4"), tmp_path / "cut.mp4", keep=0.3)
    with pytest.raises(VideoError) as exc:
        read_frames(bad, [0, 1])
    assert exc.value.reason == "truncated_or_corrupt"


def test_video_error_carries_reason_and_detail() -> None:
    err = VideoError("empty_file", "x has zero bytes")
    assert (err.reason, err.detail) == ("empty_file", "x has zero bytes")
    assert str(err) == "empty_file: x has zero bytes"


# --- sniff_container ----------------------------------------------------------------------------


def test_sniff_container(make_video, tmp_path: Path) -> None:
    assert sniff_container(make_video("good.mp4")) == "mp4/mov"
    text = tmp_path / "a.mp4"
    text.write_text("hello, world\n", encoding="utf-8")
    assert sniff_container(text) is None
    tiny = tmp_path / "tiny.bin"
    tiny.write_bytes(b"\x00\x01")
    assert sniff_container(tiny) is None


def test_sniff_container_matroska(tmp_path: Path) -> None:
    path = tmp_path / "x.mkv"
    path.write_bytes(b"\x1a\x45\xdf\xa3" + b"\x00" * 28)
    assert sniff_container(path) == "matroska/webm"


# --- read_frames --------------------------------------------------------------------------------


def test_read_frames_values_and_order(tmp_path: Path) -> None:
    frames = moving_frames(12, 96, 128, seed=1)
    path = write_video(tmp_path / "v.mp4", frames, fps=24)
    got = read_frames(path, [0, 5, 11])
    assert got.dtype == np.uint8 and got.shape == (3, 96, 128, 3)
    err = np.abs(got.astype(np.int16) - frames[[0, 5, 11]].astype(np.int16)).mean(axis=(1, 2, 3))
    assert (err < 8).all(), err
    # the frames are distinguishable: frame 5 is closer to source frame 5 than to frame 0
    far = np.abs(got[1].astype(np.int16) - frames[0].astype(np.int16)).mean()
    assert far > 2 * err[1]


def test_read_frames_repeated_indices(make_video) -> None:
    got = read_frames(make_video("v.mp4"), [3, 3, 4])
    assert got.shape[0] == 3
    assert np.array_equal(got[0], got[1])
    assert not np.array_equal(got[1], got[2])


def test_read_frames_resizes(make_video) -> None:
    got = read_frames(make_video("v.mp4", size=(96, 128)), [0, 1], width=64, height=48)
    assert got.shape == (2, 48, 64, 3)


@pytest.mark.parametrize("width", [72, 48])
def test_read_frames_resizes_to_widths_decord_mishandles(tmp_path: Path, width: int) -> None:
    # decord 0.6.0 fails to resize to these widths; read_frames falls back to an OpenCV resize
    frames = moving_frames(6, 96, 128, seed=4)
    path = write_video(tmp_path / "v.mp4", frames, fps=24)
    got = read_frames(path, [0, 2, 5], width=width, height=96)
    assert got.shape == (3, 96, width, 3) and got.dtype == np.uint8
    ref = np.stack([cv2.resize(f, (width, 96), interpolation=cv2.INTER_AREA) for f in frames[[0, 2, 5]]])
    assert np.abs(got.astype(np.int16) - ref.astype(np.int16)).mean() < 10


def test_read_frames_out_of_range_index_is_decode_error(make_video) -> None:
    path = make_video("v.mp4", seconds=1.0, fps=24)
    for size in ({}, {"width": 64, "height": 48}):
        with pytest.raises(VideoError) as exc:
            read_frames(path, [0, 500], **size)
        assert exc.value.reason == "decode_error"


# --- write_h264 ---------------------------------------------------------------------------------


def test_write_h264_round_trip(tmp_path: Path) -> None:
    frames = moving_frames(17, 96, 144, seed=2)
    path = tmp_path / "out" / "clip.mp4"
    write_h264(path, frames, fps=16.0)
    assert path.is_file()
    assert sniff_container(path) == "mp4/mov"
    info = probe(path)
    assert (info.fps, info.frames, info.height, info.width) == (16.0, 17, 96, 144)
    got = read_frames(path, list(range(17)))
    assert got.shape == frames.shape
    diff = np.abs(got.astype(np.int16) - frames.astype(np.int16))
    assert diff.mean() < 8
    assert np.median(diff) <= 4
    assert _listing(path.parent) == ["clip.mp4"]


def test_write_h264_crf_changes_size(tmp_path: Path) -> None:
    frames = moving_frames(9, 96, 128, seed=3)
    write_h264(tmp_path / "hi.mp4", frames, fps=16.0, crf=10)
    write_h264(tmp_path / "lo.mp4", frames, fps=16.0, crf=45)
    assert (tmp_path / "hi.mp4").stat().st_size > (tmp_path / "lo.mp4").stat().st_size


@pytest.mark.parametrize("shape", [(3, 95, 128, 3), (3, 96, 127, 3)])
def test_write_h264_rejects_odd_size(tmp_path: Path, shape) -> None:
    with pytest.raises(ValueError, match="even height and width"):
        write_h264(tmp_path / "x.mp4", np.zeros(shape, np.uint8), fps=16.0)
    assert _listing(tmp_path) == []


@pytest.mark.parametrize(
    "frames",
    [
        np.zeros((3, 96, 128, 3), np.float32),
        np.zeros((3, 96, 128, 3), np.uint16),
        np.zeros((96, 128, 3), np.uint8),
        np.zeros((3, 96, 128, 4), np.uint8),
        np.zeros((3, 96, 128), np.uint8),
    ],
    ids=["float32", "uint16", "3d", "rgba", "gray"],
)
def test_write_h264_rejects_bad_arrays(tmp_path: Path, frames: np.ndarray) -> None:
    with pytest.raises(ValueError, match="expected uint8 frames"):
        write_h264(tmp_path / "x.mp4", frames, fps=16.0)
    assert _listing(tmp_path) == []


def test_write_h264_overwrites_existing(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    write_h264(path, moving_frames(9, 96, 128, seed=0), fps=16.0)
    write_h264(path, moving_frames(17, 64, 96, seed=1), fps=8.0)
    assert probe(path) == VideoInfo(fps=8.0, frames=17, height=64, width=96)
    assert _listing(tmp_path) == ["clip.mp4"]


def test_write_h264_bad_dtype_keeps_old_file(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    write_h264(path, moving_frames(9, 96, 128), fps=16.0)
    before = path.read_bytes()
    with pytest.raises(ValueError):
        write_h264(path, moving_frames(9, 96, 128).astype(np.float64), fps=16.0)
    assert path.read_bytes() == before
    assert _listing(tmp_path) == ["clip.mp4"]


@pytest.mark.parametrize("fail_at", [0, 3])
def test_write_h264_failure_mid_encode_keeps_old_file(tmp_path: Path, fail_at: int) -> None:
    path = tmp_path / "clip.mp4"
    write_h264(path, moving_frames(9, 96, 128), fps=16.0)
    before = path.read_bytes()
    frames = moving_frames(9, 96, 128, seed=5).view(_FailingFrames)
    frames.fail_at = fail_at
    with pytest.raises(RuntimeError, match="frame source broke"):
        write_h264(path, frames, fps=16.0)
    gc.collect()  # an unclosed ffmpeg writer would finish (and write its temp file) only now
    assert path.read_bytes() == before
    assert _listing(tmp_path) == ["clip.mp4"]
    assert probe(path).frames == 9


def test_write_h264_failure_without_old_file_leaves_nothing(tmp_path: Path) -> None:
    frames = moving_frames(9, 96, 128).view(_FailingFrames)
    with pytest.raises(RuntimeError):
        write_h264(tmp_path / "clip.mp4", frames, fps=16.0)
    gc.collect()
    assert _listing(tmp_path) == []


def test_text_starting_with_g_is_not_a_video(tmp_path):
    from components.io.video import sniff_container

    p = tmp_path / "g.mp4"
    p.write_text("Good morning, this is a caption file saved with the wrong name.\n" * 5)
    assert sniff_container(p) is None
    ts = tmp_path / "x.ts"
    ts.write_bytes((b"\x47" + bytes(187)) * 3)
    assert sniff_container(ts) == "mpeg-ts"


def test_read_frames_decodes_sizes_decord_rejects(make_video) -> None:
    # decord 0.6.0 fails its size check on 72x48 H.264; the ffmpeg fallback decodes the same frames
    path = make_video("small.mp4", seconds=0.6, fps=16, size=(48, 72))
    frames = read_frames(path, [0, 3, 8, 3])
    assert frames.shape == (4, 48, 72, 3)
    np.testing.assert_array_equal(frames[1], frames[3])
    assert frames[0].mean() > 10 and not np.array_equal(frames[0], frames[2])
