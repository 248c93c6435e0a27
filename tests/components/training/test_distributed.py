"""The 1-process world of a plain ``python`` run survives a port taken between probe and bind."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]

PROBE = """
import os, socket
import components.training.distributed as d
for k in d._LAUNCH_ENV:
    os.environ.pop(k, None)
taken = socket.socket(); taken.bind(("127.0.0.1", 0)); taken.listen()  # what an outgoing connection took
busy = taken.getsockname()[1]
real = d._free_port
ports = iter([busy])
d._free_port = lambda: next(ports, None) or real()
rank, world = d.ensure_distributed()
print("RESULT", rank, world, busy, os.environ["MASTER_PORT"])
"""


def test_a_port_taken_before_the_store_binds_it_is_retried_with_another() -> None:
    cmd = [sys.executable, "-c", PROBE]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT")), None)
    assert line is not None, proc.stderr[-3000:]
    _, rank, world, busy, port = line.split()
    assert (rank, world) == ("0", "1")
    assert port != busy  # the second attempt, on another port
