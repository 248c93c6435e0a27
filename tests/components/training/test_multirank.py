"""Two ranks under ``torchrun`` on gloo: ZeRO-2 and ZeRO-3 agree across ranks, and a run killed with
SIGKILL resumes to exactly the weights of an uninterrupted one."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch
from safetensors.torch import load_file

SCRIPT = Path(__file__).with_name("_train_script.py")
STEPS = 12
LAUNCH_ENV = (
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "MASTER_ADDR",
    "MASTER_PORT",
    "MOSA_SELF_WORLD",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _command(out: Path, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(_free_port()),
        str(SCRIPT),
        "--out",
        str(out),
        "--steps",
        str(STEPS),
        *args,
    ]


def _start(cmd: list[str]) -> subprocess.Popen:
    # a clean launcher environment: this pytest process may itself be a 1-rank world
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH_ENV}
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )


def _kill(proc: subprocess.Popen) -> None:
    """SIGKILL torchrun and its workers: each worker runs in its own session (torch elastic starts
    them with ``start_new_session``), so killing the launcher's group alone would orphan them."""
    try:
        workers = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        workers = []
    for pid in [proc.pid, *(w.pid for w in workers)]:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
    proc.communicate()
    psutil.wait_procs(workers, timeout=30)


def _run(cmd: list[str], timeout: float = 240) -> None:
    proc = _start(cmd)
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill(proc)
        pytest.fail(f"torchrun timed out after {timeout}s")
    assert proc.returncode == 0, output[-4000:]


def _reports(out: Path) -> list[dict]:
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]


def _learned(losses: list[float]) -> bool:
    return sum(losses[-3:]) < 0.7 * sum(losses[:3])


@pytest.fixture(scope="module")
def zero2_run(tmp_path_factory) -> Path:
    """The uninterrupted 2-rank ZeRO-2 reference (same arguments as the SIGKILL test)."""
    base = tmp_path_factory.mktemp("zero2")
    _run(
        _command(base / "out", "--zero-stage", "2", "--checkpoint-every", "2", "--ckpt-dir", str(base / "ck"))
    )
    return base / "out"


def test_zero2_two_ranks_agree_and_learn(zero2_run):
    r0, r1 = _reports(zero2_run)
    assert (r0["world_size"], r0["zero_stage"], r0["steps"], r0["resumed_from"]) == (2, 2, STEPS, None)
    # each rank's replica equals the other's and the gathered fp32 master weights
    assert r0["local_sha256"] == r1["local_sha256"] == r0["full_sha256"] == r1["full_sha256"]
    assert r0["losses"] == r1["losses"]  # losses are averaged over ranks
    assert _learned(r0["losses"]), r0["losses"]


def test_sigkill_then_rerun_resumes_exactly(zero2_run, tmp_path):
    cmd = _command(
        tmp_path / "out",
        "--zero-stage",
        "2",
        "--checkpoint-every",
        "2",
        "--ckpt-dir",
        str(tmp_path / "ck"),
        "--step-sleep",
        "0.15",
    )
    marker = tmp_path / "ck" / "step-00000004" / "COMPLETE.json"
    proc = _start(cmd)
    deadline = time.monotonic() + 180
    while not marker.exists():
        if proc.poll() is not None:
            pytest.fail(f"run ended before checkpoint 4 appeared:\n{proc.communicate()[0][-4000:]}")
        if time.monotonic() > deadline:
            _kill(proc)
            pytest.fail("checkpoint 4 did not appear within 180 s")
        time.sleep(0.05)
    _kill(proc)
    assert proc.returncode == -signal.SIGKILL
    assert not (tmp_path / "out" / "rank0.json").exists()  # it really died mid-run

    _run(cmd)
    resumed, reference = _reports(tmp_path / "out"), _reports(zero2_run)
    for got, want in zip(resumed, reference, strict=True):
        assert got["resumed_from"] is not None and 4 <= got["resumed_from"] < STEPS
        assert got["steps"] == STEPS
        assert got["local_sha256"] == want["local_sha256"]
        assert got["full_sha256"] == want["full_sha256"]
        assert got["losses"] == want["losses"]


def test_zero3_two_ranks_agree_learn_and_match_zero2(zero2_run, tmp_path):
    _run(_command(tmp_path / "out", "--zero-stage", "3"))
    r0, r1 = _reports(tmp_path / "out")
    assert (r0["world_size"], r0["zero_stage"], r0["steps"]) == (2, 3, STEPS)
    assert r0["full_sha256"] == r1["full_sha256"] and r0["losses"] == r1["losses"]
    assert _learned(r0["losses"]), r0["losses"]
    # same data, seed and schedule as the ZeRO-2 run: only the partitioning differs
    z3, z2 = (
        load_file(str(tmp_path / "out" / "weights.safetensors")),
        load_file(str(zero2_run / "weights.safetensors")),
    )
    assert z3.keys() == z2.keys()
    for name in z2:
        torch.testing.assert_close(z3[name], z2[name], rtol=1e-5, atol=1e-6)
