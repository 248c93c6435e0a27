"""Shared fixtures: small real videos (H.264 via ffmpeg) and bad files of every kind."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def moving_frames(n: int, height: int, width: int, seed: int = 0, speed: float = 4.0) -> np.ndarray:
    """A smooth textured pattern panning right with a bright moving square: real motion, sharp edges."""
    rng = np.random.default_rng(seed)
    big_w = width + int(speed * n) + 8
    tex = rng.integers(40, 215, size=(height // 8 + 1, big_w // 8 + 1, 3), dtype=np.uint8)
    tex = np.kron(tex, np.ones((8, 8, 1), dtype=np.uint8))[:height, :big_w]
    out = np.empty((n, height, width, 3), dtype=np.uint8)
    for t in range(n):
        x0 = round(speed * t)
        out[t] = tex[:, x0 : x0 + width]
        sq = max(4, height // 6)
        y, x = height // 3, (width // 4 + int(2 * speed * t)) % (width - sq)
        out[t, y : y + sq, x : x + sq] = 250
    return out


def write_video(path: Path, frames: np.ndarray, fps: float, codec: str = "libx264") -> Path:
    """Encode frames with the ffmpeg that imageio-ffmpeg ships (yuv420p)."""
    import imageio_ffmpeg

    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = frames.shape[1:3]
    w_ = imageio_ffmpeg.write_frames(
        str(path),
        (w, h),
        fps=fps,
        codec=codec,
        pix_fmt_out="yuv420p",
        macro_block_size=2,
        ffmpeg_log_level="error",
    )
    w_.send(None)
    for f in frames:
        w_.send(np.ascontiguousarray(f))
    w_.close()
    return path


@pytest.fixture
def make_video(tmp_path):
    """Factory: make_video(name, seconds=2.0, fps=24, size=(96, 128), seed=0) -> Path (H.264 mp4)."""

    def _make(
        name: str, seconds: float = 2.0, fps: float = 24.0, size: tuple[int, int] = (96, 128), seed: int = 0
    ) -> Path:
        n = max(1, round(seconds * fps))
        return write_video(tmp_path / name, moving_frames(n, size[0], size[1], seed=seed), fps)

    return _make


def truncate(src: Path, dst: Path, keep: float = 0.5) -> Path:
    """Copy the first ``keep`` share of a file's bytes (a download cut short)."""
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * keep)])
    return dst


def unknown_codec(src: Path, dst: Path) -> Path:
    """An mp4 whose sample entry names a codec no decoder knows (fourcc avc1 -> zzz9)."""
    data = src.read_bytes()
    assert b"avc1" in data
    dst.write_bytes(data.replace(b"avc1", b"zzz9"))
    return dst


def audio_only(dst: Path) -> Path:
    """An mp4 with an AAC audio stream and no video stream."""
    import imageio_ffmpeg

    subprocess.run(
        [
            imageio_ffmpeg.get_ffmpeg_exe(),
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:duration=1",
            "-c:a",
            "aac",
            "-y",
            str(dst),
        ],
        check=True,
    )
    return dst


GOOD = ("good1.mp4", "sub/good2.mp4")
# bad file (relative to the mixed folder) -> the quarantine reason it must get
BAD_REASONS = {
    "empty.mp4": "empty_file",
    "notes.mp4": "not_a_video",
    "trunc.mp4": "truncated_or_corrupt",
    "codec.mp4": "unsupported_codec",
    "audio.mp4": "no_video_stream",
    "short.mp4": "too_short",
    "tiny.mp4": "resolution_too_small",
    "sub/dup.mp4": "duplicate_content",
    "badcap.mp4": "caption_not_utf8",
    "link_out.mp4": "outside_input_root",
    "outdir": "outside_input_root",
}


def build_mixed_folder(base: Path) -> Path:
    """``base/mixed``: 2 good videos and one bad input of every kind named in BAD_REASONS."""
    root = base / "mixed"
    outside = base / "outside"
    outside.mkdir()
    good1 = write_video(root / "good1.mp4", moving_frames(60, 96, 128, seed=1), 24)
    (root / "good1.txt").write_text("a person walks to the left", encoding="utf-8")
    good2 = write_video(root / "sub" / "good2.mp4", moving_frames(90, 120, 160, seed=2), 30)
    (root / "empty.mp4").write_bytes(b"")
    (root / "notes.mp4").write_text("this is a text file, not a video\n")
    truncate(good2, root / "trunc.mp4", 0.5)
    unknown_codec(good1, root / "codec.mp4")
    audio_only(root / "audio.mp4")
    write_video(root / "short.mp4", moving_frames(10, 96, 128, seed=3), 24)
    write_video(root / "tiny.mp4", moving_frames(48, 32, 32, seed=4), 24)
    (root / "sub" / "dup.mp4").write_bytes(good1.read_bytes())
    write_video(root / "badcap.mp4", moving_frames(60, 96, 128, seed=5), 24)
    (root / "badcap.txt").write_bytes(b"a man \xff\xfe jumps")
    write_video(outside / "secret.mp4", moving_frames(48, 96, 128, seed=6), 24)
    (root / "link_out.mp4").symlink_to(outside / "secret.mp4")
    (root / "outdir").symlink_to(outside, target_is_directory=True)
    (root / "readme.md").write_text("not a video extension: ignored\n")
    return root


@pytest.fixture
def mixed_folder(tmp_path) -> Path:
    """A folder of 2 good videos and one bad input of every kind named in BAD_REASONS."""
    return build_mixed_folder(tmp_path)


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory) -> Path:
    """An initialised empty sqlite MLflow store (creating the schema takes seconds; copying it does not)."""
    from components.registry.promote import client_for

    db = tmp_path_factory.mktemp("template") / "mlflow.db"
    client_for(f"sqlite:///{db}")[0].search_experiments()
    return db


@pytest.fixture
def store(tmp_path, monkeypatch, empty_store) -> str:
    """A fresh sqlite tracking/registry store in the test's folder (the working directory); its URI."""
    import shutil

    monkeypatch.chdir(tmp_path)
    shutil.copy(empty_store, tmp_path / "mlflow.db")
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


@pytest.fixture(scope="session")
def team_nightly(tmp_path_factory):
    """The team stack with one real tiny nightly run done (tests/helpers/team_run.py): started once
    per session for tests/infra/test_team_nightly.py and tests/browser/test_ui.py, stopped after."""
    from tests.helpers.team_run import nightly_run

    with nightly_run(tmp_path_factory.mktemp("team-nightly")) as info:
        yield info
