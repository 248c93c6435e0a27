"""`mosa motion-preview`: a DeepMimic clip or a .npy of joints → skeleton video beside a 3D view."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from components.io.video import probe, read_frames
from components.motion.deepmimic import load_deepmimic

MOSA = str(Path(sys.executable).with_name("mosa"))


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([MOSA, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_preview_of_deepmimic_clip(tmp_path):
    proc = _run("motion-preview", "jump", "--camera", "orbit:sweep=120", "--out", "p.mp4",
                "--height", "128", "--width", "192", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    info = probe(tmp_path / "p.mp4")
    assert (info.height, info.width) == (128, 384)
    assert info.frames == load_deepmimic("jump").num_frames
    frames = read_frames(tmp_path / "p.mp4", [0, info.frames // 2])
    left, right = frames[:, :, :192], frames[:, :, 192:]
    assert (left.max(axis=-1) > 100).mean() > 0.002  # coloured skeleton pixels
    assert (right.max(axis=-1) > 100).mean() > 0.002  # stick view
    assert np.abs(left[0].astype(int) - left[1].astype(int)).sum() > 0  # it moves


def test_preview_of_npy_and_errors(tmp_path):
    joints = load_deepmimic("walk").joints[:10]
    np.save(tmp_path / "j.npy", joints)
    ok = _run("motion-preview", str(tmp_path / "j.npy"), "--out", "w.mp4", "--height", "64", "--width", "96",
              cwd=tmp_path)  # fmt: skip
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert probe(tmp_path / "w.mp4").frames == 10
    np.save(tmp_path / "bad.npy", np.zeros((5, 17, 3)))
    bad = _run("motion-preview", str(tmp_path / "bad.npy"), cwd=tmp_path)
    assert bad.returncode == 2 and "[T,22,3]" in bad.stderr
    unknown = _run("motion-preview", "moonwalk", cwd=tmp_path)
    assert unknown.returncode == 2 and "backflip" in unknown.stderr  # lists the valid clip names
    cam = _run("motion-preview", "walk", "--camera", "orbit:speed=3", cwd=tmp_path)
    assert cam.returncode == 2 and "sweep" in cam.stderr
