"""A video cut short is refused by probe as ``truncated_or_corrupt``, naming the declared and the
decoded frame counts; intact real demo videos (VP9 and H.264, mp4 and WebM) still pass."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from components.data.demo import DEMO_VIDEOS, locate
from components.io.container import Declared, declared
from components.io.video import (
    VideoError,
    _open_reader,
    count_decoded_frames,
    frame_tolerance,
    probe,
    verify_complete,
)
from tests.components.data.demo_cuts import CUTS, SEGMENTS, cut, segment

COUNTS = re.compile(r"declared (\d+|frames unknown)[^,]*, decoded (\d+)")
BYTES = re.compile(r"file has (\d+) bytes, its container declares at least (\d+) \(cut short\)")


@pytest.fixture(scope="session")
def segments(tmp_path_factory) -> Path:
    return tmp_path_factory.getbasetemp() / "demo-segments"


def _truncation(path: Path) -> tuple[int | None, int, str]:
    """(declared frames or None, decoded frames, detail) of the error probe raises for ``path``."""
    with pytest.raises(VideoError) as exc:
        probe(path)
    assert exc.value.reason == "truncated_or_corrupt", str(exc.value)
    m = COUNTS.search(exc.value.detail)
    assert m, exc.value.detail
    declared_frames = None if m.group(1) == "frames unknown" else int(m.group(1))
    return declared_frames, int(m.group(2)), exc.value.detail


# --- intact files: no false positives -----------------------------------------------------------


@pytest.mark.parametrize("name", sorted(DEMO_VIDEOS))
def test_every_packaged_demo_video_passes_and_declares_what_decodes(name: str) -> None:
    path = locate(name)
    info = probe(path)
    decl = declared(path)
    assert decl.bytes == path.stat().st_size
    assert decl.frames == info.frames  # all demos are mp4: an exact sample count
    decoded, error = count_decoded_frames(path, ignore_editlist=True)
    assert (decoded, error) == (info.frames, "")


@pytest.mark.parametrize("name", [*SEGMENTS, "h264-avi", "h264-flv", "vp9-editlist"])
def test_intact_segment_passes(name: str, segments: Path) -> None:
    path = segment(name, segments)
    info = probe(path)
    decl = declared(path)
    assert decl.bytes == (None if name == "h264-flv" else path.stat().st_size)
    assert decl.frames_at(info.fps) in (info.frames, None)
    assert count_decoded_frames(path, ignore_editlist=decl.container == "mp4/mov")[0] == info.frames


def test_webm_declares_a_duration_not_a_count(segments: Path) -> None:
    decl = declared(segment("vp9-webm", segments))
    assert (decl.container, decl.frames, decl.seconds) == ("matroska/webm", None, pytest.approx(2.0))
    assert decl.frames_at(30.0) == 60


def test_edit_list_hides_samples_that_still_count_as_declared(segments: Path) -> None:
    # a stream copy from 1.1 s keeps the packets back to the previous keyframe and presents 60 of
    # them: decord indexes all 93 samples, the container declares 93, and the count agrees
    path = segment("vp9-editlist", segments)
    assert declared(path).frames == 93
    assert probe(path).frames == 93
    assert count_decoded_frames(path)[0] == 60  # what a player shows
    assert count_decoded_frames(path, ignore_editlist=True)[0] == 93


# --- the tolerance for container rounding -------------------------------------------------------


def test_frame_tolerance_is_two_frames_or_one_percent() -> None:
    assert [frame_tolerance(n) for n in (1, 60, 200, 230, 1000, 10_000)] == [2, 2, 2, 3, 10, 100]


@pytest.mark.parametrize(("extra", "refused"), [(1, False), (2, False), (3, True), (30, True)])
def test_declared_count_within_tolerance_passes(segments: Path, extra: int, refused: bool) -> None:
    """An intact file whose container claimed ``extra`` more frames than decode (as Matroska's
    duration x fps can by a frame) passes within the tolerance and is refused beyond it."""
    path = segment("h264-moov-first", segments)
    vr = _open_reader(path)
    n, fps = len(vr), vr.get_avg_fps()
    claim = Declared("mp4/mov", path.stat().st_size, n + extra, None)
    if not refused:
        verify_complete(path, vr, claim, fps)
        return
    with pytest.raises(VideoError) as exc:
        verify_complete(path, vr, claim, fps)
    assert exc.value.reason == "truncated_or_corrupt"
    assert exc.value.detail.startswith(f"declared {n + extra} frames, decoded {n}")


# --- files cut short ----------------------------------------------------------------------------


@pytest.mark.parametrize("where", list(CUTS))
@pytest.mark.parametrize("name", SEGMENTS)
def test_cut_demo_is_truncated_or_corrupt_with_both_counts(
    name: str, where: str, segments: Path, tmp_path: Path
) -> None:
    src = segment(name, segments)
    full = probe(src).frames
    bad = cut(src, CUTS[where], tmp_path, where)
    declared_frames, decoded, detail = _truncation(bad)
    if name == "h264-moov-last":
        # the frame index (moov) sits in the lost tail: nothing opens, nothing is declared
        assert declared_frames is None and decoded == 0
        assert "moov atom not found" in detail
    else:
        assert declared_frames == full
        assert decoded < full
        assert decoded == count_decoded_frames(bad, ignore_editlist=src.suffix == ".mp4")[0]
    have, claimed = map(int, BYTES.search(detail).groups())
    assert have == bad.stat().st_size
    assert claimed > have
    if name != "h264-moov-last":
        assert claimed == src.stat().st_size  # the index at the front states the whole size
    assert " @ 0x" not in detail  # no memory addresses: the reason is the same on every run


def test_cut_that_decord_still_opens_names_the_counts(segments: Path, tmp_path: Path) -> None:
    # sports2d's VP9 packets cut at 90 %: decord opens it and indexes the 46 frames left, which
    # used to pass as a good 46-frame video
    bad = cut(segment("vp9-mp4", segments), 0.9, tmp_path, "90")
    vr = _open_reader(bad)
    assert len(vr) < 60
    del vr
    declared_frames, decoded, detail = _truncation(bad)
    assert (declared_frames, decoded) == (60, 45)
    assert detail.startswith("declared 60 frames, decoded 45; file has ")


def test_cut_whose_first_frame_fails_is_quarantined_not_raised(segments: Path, tmp_path: Path) -> None:
    # at 30 % decord opens the VP9 mp4 but frame 0 does not decode: probe used to raise decord's
    # own error (a crash for the caller) instead of a VideoError
    bad = cut(segment("vp9-mp4", segments), 0.3, tmp_path, "30")
    declared_frames, decoded, _ = _truncation(bad)
    assert (declared_frames, decoded) == (60, 0)


def test_live_written_matroska_cut_short_is_caught_by_its_cluster_sizes(
    segments: Path, tmp_path: Path
) -> None:
    """Matroska written to a pipe has no Segment size; each Cluster still states its own."""
    import subprocess

    import imageio_ffmpeg

    live = tmp_path / "live.mkv"
    src = segment("vp9-webm", segments)
    with open(live, "wb") as fh:
        subprocess.run(
            [
                imageio_ffmpeg.get_ffmpeg_exe(),
                "-v",
                "error",
                "-i",
                str(src),
                "-c",
                "copy",
                "-f",
                "matroska",
                "-",
            ],
            stdout=fh,
            check=True,
        )
    assert probe(live).frames == 60
    declared_frames, decoded, _ = _truncation(cut(live, 0.9, tmp_path, "90"))
    assert declared_frames == 60 and decoded < 60


@pytest.mark.parametrize("name", ["h264-moov-first", "vp9-webm"])
def test_zero_padding_after_the_container_is_not_a_cut(name: str, segments: Path, tmp_path: Path) -> None:
    src = segment(name, segments)
    padded = tmp_path / f"padded{src.suffix}"
    padded.write_bytes(src.read_bytes() + bytes(5))
    assert declared(padded).bytes == src.stat().st_size
    assert probe(padded).frames == probe(src).frames


def test_file_ending_inside_a_box_header_is_cut_short(segments: Path, tmp_path: Path) -> None:
    # an mp4 whose last box (the moov, for a moov-last file) lost all but 5 bytes of its header
    src = segment("h264-moov-last", segments)
    data = src.read_bytes()
    moov_at = data.rindex(b"moov") - 4
    bad = tmp_path / "cut-in-header.mp4"
    bad.write_bytes(data[: moov_at + 5])
    assert declared(bad).bytes == moov_at + 8
    declared_frames, decoded, detail = _truncation(bad)
    assert (declared_frames, decoded) == (None, 0) and "moov atom not found" in detail


@pytest.mark.parametrize("where", ["60%", "90%"])
@pytest.mark.parametrize("name", ["h264-avi", "h264-flv"])
def test_cut_avi_and_flv_are_truncated_or_corrupt(
    name: str, where: str, segments: Path, tmp_path: Path
) -> None:
    """AVI is caught by its RIFF size; FLV states no size, and is caught by its last indexed frame
    failing to decode (decord indexes the partial packet at the cut)."""
    src = segment(name, segments)
    full = probe(src).frames
    declared_frames, decoded, detail = _truncation(cut(src, CUTS[where], tmp_path, where))
    assert declared_frames is None and 0 < decoded < full
    kind = "avi" if name == "h264-avi" else "flv"
    assert f"declared frames unknown ({kind} states no frame count)" in detail
    if name == "h264-avi":
        assert "cut short" in detail
    else:
        assert re.search(rf"frame {decoded} of {decoded + 1} indexed does not decode: \S", detail), detail
        assert not re.search(r"\[\d\d:\d\d:\d\d\]", detail)  # no decord timestamps
