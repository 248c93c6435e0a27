"""Video probing, decoding (decord) and H.264 writing (ffmpeg from imageio-ffmpeg).

Readers are created where they are used (never shared across processes), with decord's
``fault_tol`` set so a few corrupt frames do not abort a decode. Failures raise
:class:`VideoError` carrying a short machine-readable ``reason`` for quarantine entries.
A probe also refuses a file cut short (``truncated_or_corrupt``, naming the declared and the
decoded frame counts): decord alone opens many such files and indexes only what is left.
"""

from __future__ import annotations

import contextlib
import math
import re
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from components.io.atomic import atomic_path
from components.io.container import Declared, declared

# Container signatures (offset, bytes). Enough to tell "some video container" from "not a video".
_SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (4, b"ftyp", "mp4/mov"),
    (4, b"moov", "mov"),
    (4, b"mdat", "mov"),
    (4, b"wide", "mov"),
    (4, b"free", "mov"),
    (0, b"\x1a\x45\xdf\xa3", "matroska/webm"),
    (0, b"RIFF", "avi"),
    (0, b"FLV", "flv"),
    (0, b"\x00\x00\x01\xba", "mpeg-ps"),
    (0, b"OggS", "ogg"),
)


class VideoError(RuntimeError):
    """A video that cannot be used; ``reason`` is a stable code, ``detail`` says why."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class VideoInfo:
    """What a probe learns about a decodable video."""

    fps: float
    frames: int
    height: int
    width: int

    @property
    def seconds(self) -> float:
        return self.frames / self.fps


def sniff_container(path: Path) -> str | None:
    """Name of the container family from the file's first bytes, or None if it is not a video."""
    with open(path, "rb") as f:
        head = f.read(189)
    # MPEG-TS: a 0x47 sync byte every 188 bytes (a lone leading "G" is just text).
    if len(head) == 189 and head[0] == 0x47 and head[188] == 0x47:
        return "mpeg-ts"
    for offset, magic, name in _SIGNATURES:
        if head[offset : offset + len(magic)] == magic:
            return name
    return None


def ffmpeg_diagnose(path: Path) -> tuple[str, str]:
    """Ask ffmpeg why a file does not decode; returns (reason, ffmpeg's relevant line)."""
    import imageio_ffmpeg

    proc = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-v", "error", "-i", str(path), "-f", "null", "-"],
        capture_output=True,
        text=True,
        errors="replace",
        timeout=120,
    )
    err = proc.stderr.strip()
    low = err.lower()
    line = err.splitlines()[0] if err else f"ffmpeg exit code {proc.returncode}"
    if "moov atom not found" in low or "invalid data found" in low or "truncat" in low:
        return "truncated_or_corrupt", line
    if ("decoder" in low and ("not found" in low or "unknown" in low)) or "unsupported codec" in low:
        return "unsupported_codec", line
    if "does not contain any stream" in low or "matches no streams" in low:
        return "no_video_stream", line
    probe = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)],
        capture_output=True,
        text=True,
        errors="replace",
        timeout=60,
    ).stderr
    if "Video:" not in probe:
        return "no_video_stream", line
    if "Video: none" in probe or "unknown" in probe.split("Video:", 1)[1].split("\n", 1)[0].lower():
        return "unsupported_codec", probe.split("Video:", 1)[1].split("\n", 1)[0].strip()
    return "decode_error", line


# decord 0.6.0 with num_threads=0 (auto) fails on VP9 streams such as the sports2d demo
# ("Thread worker: Error sending packet"); an explicit small thread count decodes them.
DECODE_THREADS = 2


def _open_reader(
    path: Path, width: int = -1, height: int = -1, fault_tol: float = -1, num_threads: int = DECODE_THREADS
):
    import decord

    try:
        return decord.VideoReader(
            str(path),
            ctx=decord.cpu(0),
            width=width,
            height=height,
            num_threads=num_threads,
            fault_tol=fault_tol,
        )
    except (RuntimeError, AssertionError, decord.DECORDError) as exc:
        reason, detail = ffmpeg_diagnose(path)
        raise VideoError(reason, f"decord could not open the file ({exc}); ffmpeg: {detail}") from exc


def probe(path: Path, fault_tol: float = 0.1) -> VideoInfo:
    """Open ``path`` with decord and return fps, frame count and size.

    A file holding less than its container declares is refused, see :func:`verify_complete`.
    Raises VideoError with reason ``missing_file``, ``empty_file``, ``not_a_video``,
    ``truncated_or_corrupt``, ``unsupported_codec``, ``no_video_stream`` or ``decode_error``.
    """
    path = Path(path)
    if not path.is_file():
        raise VideoError("missing_file", f"{path} does not exist or is not a regular file")
    if path.stat().st_size == 0:
        raise VideoError("empty_file", f"{path} has zero bytes")
    if sniff_container(path) is None:
        raise VideoError("not_a_video", f"{path} does not start with any known video container signature")
    decl = _declared(path)
    short = decl.bytes is not None and decl.bytes > path.stat().st_size
    try:
        vr = _open_reader(path, fault_tol=fault_tol)
    except VideoError:
        if short and (err := _truncated(path, decl, fps=0.0)) is not None:
            raise err from None  # unreadable and short of its declared bytes: say how short
        raise
    try:
        fps = float(vr.get_avg_fps())
        n = len(vr)
        try:
            h, w = vr[0].shape[:2] if n > 0 else (0, 0)
        except Exception as exc:  # decord raises DECORDError/RuntimeError on a broken first frame
            if short and (err := _truncated(path, decl, fps=0.0)) is not None:
                raise err from None
            raise VideoError(
                "decode_error", f"frame 0 of {path} does not decode: {_clean(str(exc))}"
            ) from exc
        if not math.isfinite(fps) or fps <= 0:
            raise VideoError("decode_error", f"{path} reports an invalid frame rate {fps}")
        verify_complete(path, vr, decl, fps)
    finally:
        with contextlib.suppress(Exception):
            vr.seek(0)
        del vr
    return VideoInfo(fps=fps, frames=n, height=int(h), width=int(w))


# A frame count is "short" only beyond this slack: max(2 frames, 1 % of the declared count).
# Matroska/WebM declares a duration (rounded to its 1 ms timestamp scale), not a count, so its
# count is duration x fps and can be off by one frame (more with variable frame rates, whose
# average fps is an estimate); mp4 counts are exact sample counts (edit lists are ignored on both
# sides of the comparison). Every intact demo video measured 0 frames off (see the tests).
FRAME_TOLERANCE = 2
FRAME_TOLERANCE_SHARE = 0.01


def frame_tolerance(declared_frames: int) -> int:
    """How many frames fewer than declared still count as complete (container rounding)."""
    return max(FRAME_TOLERANCE, math.ceil(FRAME_TOLERANCE_SHARE * declared_frames))


def _declared(path: Path) -> Declared:
    try:
        return declared(path)
    except (OSError, ValueError, struct.error):  # a header too broken to read declares nothing
        return Declared(None, None, None, None)


def verify_complete(path: Path, vr: Any, decl: Declared, fps: float) -> None:
    """Raise VideoError ``truncated_or_corrupt`` if ``path`` holds less than its container declares.

    Cheap evidence first, no decode when all of it agrees: the bytes the container declares vs
    the file's size, and the frames it declares vs decord's index ``len(vr)``. When the container
    declares no size (FLV, MPEG-TS, Matroska with unknown-size clusters) the last indexed frame is
    decoded as well.
    Only when something disagrees are the frames counted by a full decode (ffmpeg), so an intact
    file costs no extra decode; the reason then names the declared and the decoded counts.
    """
    size = path.stat().st_size
    n = len(vr)
    declared_frames = decl.frames_at(fps)
    suspicious = decl.bytes is not None and decl.bytes > size
    if declared_frames is not None and abs(declared_frames - n) > frame_tolerance(declared_frames):
        suspicious = True
    tail_error = None
    if decl.bytes is None and n > 1:
        try:
            vr[n - 1]
        except Exception as exc:  # decord raises DECORDError/RuntimeError past a cut
            tail_error = _clean(str(exc).strip().splitlines()[-1] if str(exc).strip() else repr(exc))
            suspicious = True
    if not suspicious:
        return
    err = _truncated(path, decl, fps, indexed=n, tail_error=tail_error)
    if err is not None:
        raise err


def _truncated(
    path: Path, decl: Declared, fps: float, indexed: int | None = None, tail_error: str | None = None
) -> VideoError | None:
    """The ``truncated_or_corrupt`` error for ``path`` after counting its decodable frames, or None
    when the count shows nothing missing (only possible when its bytes are all there)."""
    size = path.stat().st_size
    decoded, ffmpeg_line = count_decoded_frames(path, ignore_editlist=decl.container == "mp4/mov")
    declared_frames = decl.frames_at(fps) if fps > 0 else decl.frames
    if declared_frames is None and decl.seconds is not None and decl.fps:
        declared_frames = round(decl.seconds * decl.fps)
    short_bytes = decl.bytes is not None and decl.bytes > size
    short_frames = (
        declared_frames is not None
        and decoded is not None
        and declared_frames - decoded > frame_tolerance(declared_frames)
    )
    if not (short_bytes or short_frames or (tail_error and indexed and (decoded or 0) < indexed)):
        return None
    if declared_frames is None and decl.container == "mp4/mov":
        parts = ["declared frames unknown (the moov box holding the mp4 frame index is missing)"]
    elif declared_frames is None:
        kind = decl.container or sniff_container(path) or "its container"
        parts = [f"declared frames unknown ({kind} states no frame count)"]
    elif decl.frames is None and decl.seconds is not None:
        parts = [f"declared {declared_frames} frames ({decl.seconds:.3f} s at {decl.fps or fps:.3g} fps)"]
    else:
        parts = [f"declared {declared_frames} frames"]
    parts[0] += f", decoded {'unknown' if decoded is None else decoded}"
    if short_bytes:
        parts.append(f"file has {size} bytes, its container declares at least {decl.bytes} (cut short)")
    if indexed is not None and tail_error:
        parts.append(f"frame {indexed - 1} of {indexed} indexed does not decode: {tail_error}")
    if ffmpeg_line:
        parts.append(f"ffmpeg: {ffmpeg_line}")
    return VideoError("truncated_or_corrupt", "; ".join(parts))


def _clean(line: str) -> str:
    """A decoder message without memory addresses or timestamps (stable manifest reasons)."""
    line = re.sub(r" @ 0x[0-9a-f]+", "", line)
    line = re.sub(r"\[\d\d:\d\d:\d\d\] ", "", line)
    return re.sub(r"/github/workspace/src/\S+: ", "", line).strip()


def count_decoded_frames(
    path: Path, ignore_editlist: bool = False, timeout: float = 600
) -> tuple[int | None, str]:
    """(frames of the first video stream that ffmpeg decodes, its first error line or "").

    Every packet is decoded and every frame counted (``-fps_mode passthrough``: no frame is
    duplicated or dropped to fit a rate); ``ignore_editlist`` counts all mp4 samples, as the
    container's sample count and decord's index do, not just those an edit list presents. A file
    ffmpeg cannot open decodes 0 frames; ``None`` means the decode did not finish in ``timeout`` s.
    """
    import imageio_ffmpeg

    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostats", "-v", "error", "-threads", "2"]
    if ignore_editlist:
        cmd += ["-ignore_editlist", "1"]
    cmd += ["-i", str(path), "-map", "0:v:0", "-fps_mode", "passthrough"]
    cmd += ["-f", "null", "-progress", "pipe:1", "-"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, f"decoding did not finish in {timeout:.0f} s"
    counts = re.findall(r"^frame=(\d+)", proc.stdout, re.MULTILINE)
    lines = [_clean(x) for x in proc.stderr.splitlines() if x.strip()]
    return (int(counts[-1]) if counts else 0), (lines[0] if lines else "")


def read_frames(
    path: Path, indices: list[int], width: int = -1, height: int = -1, fault_tol: float = 0.1
) -> np.ndarray:
    """Decode the frames at ``indices`` as uint8 RGB [T,H,W,3], resized by decord if width/height > 0.

    A failed batch is retried once single-threaded before it counts as a decode error.
    """
    last: Exception | None = None
    for threads in (DECODE_THREADS, 1):
        vr = _open_reader(Path(path), width=width, height=height, fault_tol=fault_tol, num_threads=threads)
        try:
            return vr.get_batch(list(indices)).asnumpy()
        except Exception as exc:  # decord raises DECORDError/RuntimeError on broken packets
            last = exc
        finally:
            with contextlib.suppress(Exception):
                vr.seek(0)
            del vr
    if width > 0 and height > 0:
        # decord 0.6.0 cannot resize to some widths (72, 48, 24, ...: "DECORDArrayCopyFromTo: The
        # size must exactly match"), e.g. a 3:4 portrait padded into 96x144; decode at the native
        # size and resize with OpenCV instead (raises decode_error itself if that fails too).
        import cv2

        full = read_frames(path, indices, fault_tol=fault_tol)
        return np.stack([cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA) for f in full])
    try:  # decord 0.6.0 also fails on some native sizes (72x48: the same size check); ffmpeg decodes them
        return _read_frames_ffmpeg(Path(path), indices)
    except Exception as exc:
        raise VideoError("decode_error", f"decoding frames of {path} failed: {last}; ffmpeg: {exc}") from last


def _read_frames_ffmpeg(path: Path, indices: list[int]) -> np.ndarray:
    """Frames at ``indices`` decoded sequentially by the ffmpeg that imageio-ffmpeg ships (RGB24)."""
    import imageio_ffmpeg

    wanted = set(indices)
    frames: dict[int, np.ndarray] = {}
    gen = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
    meta = next(gen)
    w, h = meta["size"]
    try:
        for i, buf in enumerate(gen):
            if i in wanted:
                frames[i] = np.frombuffer(buf, np.uint8).reshape(h, w, 3)
            if i >= max(indices):
                break
    finally:
        gen.close()
    missing = sorted(wanted - set(frames))
    if missing:
        raise ValueError(f"frames {missing[:5]} not in the stream")
    return np.stack([frames[i] for i in indices])


def write_h264(path: Path, frames: np.ndarray, fps: float, crf: int = 18) -> None:
    """Encode uint8 RGB frames [T,H,W,3] (even H and W) as H.264 mp4 (yuv420p), atomically."""
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected uint8 frames [T,H,W,3], got {frames.dtype} {frames.shape}")
    _t, h, w, _ = frames.shape
    if h % 2 or w % 2:
        raise ValueError(f"H.264 yuv420p needs even height and width, got {h}x{w}")
    import imageio_ffmpeg

    with atomic_path(path) as tmp:
        writer = imageio_ffmpeg.write_frames(
            str(tmp),
            (w, h),
            fps=fps,
            codec="libx264",
            pix_fmt_out="yuv420p",
            macro_block_size=2,
            output_params=["-crf", str(crf), "-preset", "medium", "-movflags", "+faststart", "-f", "mp4"],
            ffmpeg_log_level="error",
        )
        writer.send(None)
        try:
            for frame in frames:
                writer.send(np.ascontiguousarray(frame))
        finally:
            # close (wait for ffmpeg) before atomic_path removes the temp file; an unclosed writer
            # lets ffmpeg recreate the temp file later when the generator is garbage-collected
            writer.close()
