"""DVC remote round trip on a throwaway repository: push to a folder remote, lose the cache and the
workspace copy, pull, and get the same bytes back (what `dvc push`/`dvc pull` promise a team)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

DVC = str(Path(sys.executable).with_name("dvc"))


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DVC_", "GIT_"))}
    env.update(
        HOME=str(home),  # no user-level git/dvc config leaks in
        DVC_NO_ANALYTICS="1",
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@t",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@t",
    )
    return env


def _run(cmd: list[str], cwd: Path, env: dict, ok: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    if ok:
        assert proc.returncode == 0, f"{cmd}:\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture
def pushed(tmp_path):
    """A git+DVC repository tracking a file and a folder, pushed to a folder remote."""
    repo, remote, env = tmp_path / "repo", tmp_path / "remote", _env(tmp_path)
    repo.mkdir()
    rng = np.random.default_rng(0)
    files = {
        "data/clip.bin": rng.integers(0, 256, 200_000, dtype=np.uint8).tobytes(),
        "data/frames/0.bin": rng.integers(0, 256, 3_000, dtype=np.uint8).tobytes(),
        "data/frames/1.bin": b"",
        "data/frames/sub/2.txt": "une légende\n".encode(),
    }
    for rel, data in files.items():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_bytes(data)
    _run(["git", "init", "-q"], repo, env)
    _run([DVC, "init", "-q"], repo, env)
    _run([DVC, "add", "-q", "data/clip.bin", "data/frames"], repo, env)
    _run([DVC, "remote", "add", "-d", "storage", str(remote)], repo, env)
    _run(["git", "add", "-A"], repo, env)
    _run(["git", "commit", "-qm", "track data"], repo, env)
    push = _run([DVC, "push"], repo, env)
    return repo, remote, env, files, push


def test_push_then_pull_restores_identical_bytes(pushed):
    repo, remote, env, files, push = pushed
    assert "5 files pushed" in push.stdout  # 4 files + the folder's manifest
    stored = [p for p in remote.rglob("*") if p.is_file()]
    assert len(stored) == 5 and all("files/md5" in p.as_posix() for p in stored)

    shutil.rmtree(repo / ".dvc" / "cache")
    shutil.rmtree(repo / "data" / "frames")
    (repo / "data" / "clip.bin").unlink()
    missing = _run([DVC, "status"], repo, env).stdout
    assert re.search(r"not in cache:\s+data/clip\.bin", missing) and re.search(
        r"not in cache:\s+data/frames", missing
    )

    pull = _run([DVC, "pull"], repo, env)
    assert "5 files fetched" in pull.stdout, pull.stdout
    for rel, data in files.items():
        assert (repo / rel).read_bytes() == data, rel
    assert "Cache and remote 'storage' are in sync." in _run([DVC, "status", "--cloud"], repo, env).stdout
    assert _run(["git", "status", "--porcelain"], repo, env).stdout == ""  # nothing to commit after a pull


def test_pull_from_an_emptied_remote_fails_and_names_the_missing_data(pushed):
    repo, remote, env, _files, _push = pushed
    shutil.rmtree(remote)
    remote.mkdir()
    shutil.rmtree(repo / ".dvc" / "cache")
    shutil.rmtree(repo / "data" / "frames")
    (repo / "data" / "clip.bin").unlink()
    pull = _run([DVC, "pull"], repo, env, ok=False)
    assert pull.returncode != 0
    assert "Missing cache files" in pull.stderr and "Checkout failed" in pull.stderr, pull.stderr
    assert "data/clip.bin" in pull.stderr and "data/frames" in pull.stderr
    assert not (repo / "data" / "clip.bin").exists() and not (repo / "data" / "frames").exists()
