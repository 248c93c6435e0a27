"""`make run`'s wrapper: one real Prefect server for the whole command, stopped afterwards."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "infra" / "services" / "with_prefect.py"


def wrapped(tmp_path: Path, code: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--", sys.executable, "-c", code],
        cwd=tmp_path,
        env={**base, "PREFECT_HOME": str(tmp_path / "prefect"), **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def listening(url: str) -> bool:
    host, port = url.split("//")[1].split("/")[0].split(":")
    with socket.socket() as s:
        return s.connect_ex((host, int(port))) == 0


def test_the_command_reaches_a_healthy_server_that_is_stopped_afterwards(tmp_path: Path) -> None:
    probe = (
        "import os, urllib.request; url = os.environ['PREFECT_API_URL']; "
        "print('api', url, urllib.request.urlopen(url + '/health').status)"
    )
    out = wrapped(tmp_path, probe)
    assert out.returncode == 0, out.stderr
    line = next(x for x in out.stdout.splitlines() if x.startswith("api "))
    _, url, status = line.split()
    assert url.startswith("http://127.0.0.1:") and url.endswith("/api") and status == "200"
    assert not listening(url)  # stopped with the command
    assert (tmp_path / ".services" / "run-prefect.log").exists()


def test_the_exit_code_is_the_commands(tmp_path: Path) -> None:
    assert wrapped(tmp_path, "import sys; sys.exit(3)").returncode == 3


def test_a_configured_server_is_used_as_is(tmp_path: Path) -> None:
    out = wrapped(
        tmp_path, "import os; print(os.environ['PREFECT_API_URL'])", PREFECT_API_URL="http://x:1/api"
    )
    assert out.returncode == 0 and out.stdout.strip() == "http://x:1/api"
    assert not (tmp_path / ".services").exists()  # nothing was started
