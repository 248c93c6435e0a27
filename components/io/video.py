"""Video probing, decoding (decord) and H.264 writing (ffmpeg from imageio-ffmpeg).

Readers are created where they are used (never shared across processes), with decord's
``fault_tol`` set so a few corrupt frames do not abort a decode. Failures raise
:class:`VideoError` carrying a short machine-readable ``reason`` for quarantine entries.
"""

from __future__ import annotations

import contextlib
import math
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from components.io.atomic import atomic_path

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
    vr = _open_reader(path, fault_tol=fault_tol)
    fps = float(vr.get_avg_fps())
    n = len(vr)
    h, w = vr[0].shape[:2] if n > 0 else (0, 0)
    del vr
    if not math.isfinite(fps) or fps <= 0:
        raise VideoError("decode_error", f"{path} reports an invalid frame rate {fps}")
    return VideoInfo(fps=fps, frames=n, height=int(h), width=int(w))


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
