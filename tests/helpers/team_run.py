"""One real tiny-size nightly run on the team stack, shared by the team tests (tests/infra/) and the
browser tests (tests/browser/) through the session fixture ``team_nightly`` (tests/conftest.py), so
the expensive part happens once per test session:

1. a copy of the repository with the ``TINY`` params (tests/helpers/tiny_repo.py), committed to a
   fresh git repository (the lineage tags name its commit);
2. ``infra/services/team.py start`` on free loopback ports with its own state folder, with
   ``MOSA_REPO`` (the checkout the deployments' flow runs start in: the pull step's
   ``set_working_directory``) and ``MOSA_TEAM_DVC_REPO`` (the remote ``team`` in config.local) both
   pointing at the copy, the Prefect UI on and the nightly cron off;
3. the ``pipeline/nightly`` deployment triggered through the Prefect REST API and executed by the
   stack's worker, waited for until it is final.

In the copy, ``register.gate.promote_first`` is false: the nightly run registers v1 as the
``candidate`` without a champion, so the promotion from the UI (tests/browser/test_ui.py) is the
move that makes it ``champion``.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.helpers.tiny_repo import copy_repo, shrink_params

REPO = Path(__file__).resolve().parents[2]
TEAM = REPO / "infra" / "services" / "team.py"
BIN = Path(sys.executable).parent
# this pytest process may be a 1-rank world already (tests that train in process set these): a stack
# started with them would hand them to its flow runs, whose stages would then try to join this
# process's store (EADDRINUSE) instead of making their own world
LAUNCH_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
PORT_VARS = {
    "postgres": "MOSA_TEAM_PG_PORT",
    "s3": "MOSA_TEAM_S3_PORT",
    "mlflow": "MOSA_TEAM_MLFLOW_PORT",
    "prefect": "MOSA_TEAM_PREFECT_PORT",
}
FINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")
NIGHTLY_TIMEOUT_S = 2400.0
MODEL = "mosa-dit"
# the copy's own params on top of TINY: no automatic first champion (the UI promotes it)
NIGHTLY_PARAMS = {"register": {"gate": {"promote_first": False}}}
GIT_ID = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@t",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@t",
}


def have_postgres() -> bool:
    return any(
        (p.parent / "initdb").is_file() and (p.parent / "pg_ctl").is_file()
        for p in Path("/usr/lib/postgresql").glob("*/bin/psql")
    )


def free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def sh(cmd: list[str], cwd: Path, env: dict, timeout: float = 900, check: bool = True):
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check:
        assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-4000:]}"
    return proc


def read_env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        if m := re.match(r"export (\w+)=(.*)$", line):
            values[m.group(1)] = m.group(2).strip("'")
    return values


def stack_env(state: Path, ports: dict[str, int], repo: Path) -> dict[str, str]:
    """The environment ``team.py`` runs with (its servers, worker and flow runs inherit it)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PREFECT_", "MLFLOW_", "MOSA_", "AWS_", "DVC_")) and k not in LAUNCH_ENV
    }
    env.update({PORT_VARS[name]: str(port) for name, port in ports.items()})
    env.update(
        GIT_ID,
        PATH=f"{BIN}:{env.get('PATH', '')}",
        MOSA_TEAM_DIR=str(state),
        MOSA_REPO=str(repo),
        MOSA_TEAM_DVC_REPO=str(repo),
        MOSA_TEAM_MLFLOW_WORKERS="1",
        PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED="false",  # the nightly cron never creates a run here
        PREFECT_UI_ENABLED="true",  # the browser tests open it
        PREFECT_UI_API_URL=f"http://127.0.0.1:{ports['prefect']}/api",
        PREFECT_WORKER_QUERY_SECONDS="2",
        MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING="false",
        DVC_NO_ANALYTICS="1",
    )
    extensions = BIN.parent / "torch_extensions"  # DeepSpeed's CPU op, built by `make install`
    if extensions.is_dir():
        env.setdefault("TORCH_EXTENSIONS_DIR", str(extensions))
    return env


def client_env(info: dict) -> dict[str, str]:
    """A shell of a team member: team.env sourced, the venv first on PATH (dvc, git, python)."""
    return {**info["env"], **info["client"]}


def worker_log(state: Path, chars: int = 6000) -> str:
    path = state / "logs" / "worker.log"
    return path.read_text(errors="replace")[-chars:] if path.is_file() else f"({path} missing)"


def wait_final(api: httpx.Client, run_id: str, timeout: float, state: Path) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        run = api.get(f"/flow_runs/{run_id}").json()
        if run["state_type"] in FINAL:
            return run
        if time.monotonic() > deadline:
            raise AssertionError(
                f"flow run {run_id} still {run['state_type']} after {timeout:.0f}s; worker log:\n"
                + worker_log(state)
            )
        time.sleep(2)


@contextlib.contextmanager
def nightly_run(base: Path) -> Iterator[dict]:
    """The stack up with the copy's nightly run final (asserted Completed); the stack stopped after."""
    repo = base / "mosa"
    repo.mkdir(parents=True)
    copy_repo(repo)
    shrink_params(repo / "params.yaml", NIGHTLY_PARAMS)
    # pytest's temporary folders are private to root; the postgres user must reach the state folder
    state = Path(tempfile.mkdtemp(prefix="mosa-team-"))
    state.chmod(0o711)
    ports = dict(zip(PORT_VARS, free_ports(4), strict=True))
    env = stack_env(state, ports, repo)
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "tiny copy"]):
        sh(cmd, repo, env)
    info: dict = {"repo": repo, "state": state, "ports": ports, "env": env, "times": {}}
    try:
        t0 = time.monotonic()
        started = subprocess.run(
            [sys.executable, str(TEAM), "start"], env=env, capture_output=True, text=True, timeout=900
        )
        info["times"]["stack start"] = time.monotonic() - t0
        assert started.returncode == 0, started.stdout[-4000:] + started.stderr[-4000:]
        info["client"] = read_env_file(state / "team.env")
        info["head"] = sh(["git", "rev-parse", "HEAD"], repo, env).stdout.strip()
        with httpx.Client(base_url=info["client"]["PREFECT_API_URL"], timeout=30) as api:
            dep = api.get("/deployments/name/pipeline/nightly")
            assert dep.status_code == 200, dep.text
            t0 = time.monotonic()
            made = api.post(
                f"/deployments/{dep.json()['id']}/create_flow_run",
                json={"parameters": {"retries": 0}},  # a failing stage fails the test at once
            )
            assert made.status_code == 201, made.text
            run = wait_final(api, made.json()["id"], NIGHTLY_TIMEOUT_S, state)
            info["times"]["nightly run"] = time.monotonic() - t0
        info["deployment"], info["flow_run"] = dep.json(), run
        assert run["state_type"] == "COMPLETED", (
            f"nightly flow run {run['id']} ended {run['state_type']}: {run['state']['message']}\n"
            f"worker log:\n{worker_log(state)}"
        )
        yield info
    finally:
        subprocess.run(
            [sys.executable, str(TEAM), "stop"], env=env, capture_output=True, text=True, timeout=300
        )
        shutil.rmtree(state, ignore_errors=True)


def print_times(info: dict) -> None:
    print(", ".join(f"{k}: {v:.0f}s" for k, v in info["times"].items()))
