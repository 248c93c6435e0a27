"""Run a command with one Prefect API server for all of it (`make run`: ``with_prefect.py -- dvc repro``).

Every pipeline stage is a Prefect flow in its own process. Without ``PREFECT_API_URL`` each one starts
a temporary in-process server (measured here: 7.4 s per flow against 1.9 s with a running server, so
the 15 stages of ``make run`` spend ~80 s starting servers). This starts one ``prefect server`` on a
free 127.0.0.1 port, waits until its health endpoint answers, runs the command with
``PREFECT_API_URL`` pointing at it, and stops the server afterwards, whatever the command's outcome;
the exit code is the command's. The server keeps its state where a temporary one would
(``$PREFECT_HOME``), so ``make services`` later shows these flow runs.

When ``PREFECT_API_URL`` is already set (a team server, ``make services``), the command runs against
that server and nothing is started.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

HEALTH_TIMEOUT_S = 120


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(url: str, server: subprocess.Popen, timeout: float = HEALTH_TIMEOUT_S) -> None:
    """Block until ``url`` answers 200; raise if the server exits or the timeout passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"prefect server exited with code {server.returncode} before it was healthy")
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"prefect server did not answer {url} within {timeout:.0f} s")


def stop(server: subprocess.Popen) -> None:
    """Terminate the server's process group (uvicorn workers included); kill after 20 s."""
    if server.poll() is not None:
        return
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def run(command: list[str], log: Path) -> int:
    """Run ``command`` with a Prefect server of its own (or the one ``PREFECT_API_URL`` names)."""
    if not command:
        raise SystemExit("usage: with_prefect.py -- <command> [args...]")
    if os.environ.get("PREFECT_API_URL"):
        return subprocess.call(command)
    port = free_port()
    prefect = Path(sys.executable).with_name("prefect")
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        server = subprocess.Popen(
            [str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        wait_healthy(f"http://127.0.0.1:{port}/api/health", server)
        api = f"http://127.0.0.1:{port}/api"
        print(f"prefect server for this run: {api} (log: {log})", flush=True)
        return subprocess.call(command, env={**os.environ, "PREFECT_API_URL": api})
    except RuntimeError as exc:
        print(f"error: {exc}; see {log}", file=sys.stderr)
        return 1
    finally:
        stop(server)


def main(argv: list[str]) -> int:
    if argv[:1] == ["--"]:
        argv = argv[1:]
    return run(argv, Path(".services") / "run-prefect.log")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
