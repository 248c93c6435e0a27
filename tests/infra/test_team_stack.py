"""The team stack of `make services-team` (infra/services/team.py), for real, on free loopback ports with
its own state folder (so it never meets a stack a person runs): Postgres answers on both databases
with the generated password, the S3 server lists its buckets to boto3, MLflow keeps runs in Postgres
and artifacts in S3, Prefect (on Postgres) has the work pools, an online worker and every deployment of
infra/prefect/prefect.yaml, the worker runs `promote/promote`, the DVC remote `team` is written to
.dvc/config.local only; a second start changes nothing, a taken port is named with the variable to
change, and stop leaves no process behind."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers.team_run import LAUNCH_ENV, free_ports, have_postgres

REPO = Path(__file__).resolve().parents[2]
TEAM = REPO / "infra" / "services" / "team.py"
PORT_VARS = {
    "postgres": "MOSA_TEAM_PG_PORT",
    "s3": "MOSA_TEAM_S3_PORT",
    "mlflow": "MOSA_TEAM_MLFLOW_PORT",
    "prefect": "MOSA_TEAM_PREFECT_PORT",
}
PG_BINS = sorted(Path("/usr/lib/postgresql").glob("*/bin/psql"))


pytestmark = pytest.mark.skipif(
    not have_postgres(), reason="PostgreSQL server not installed: bash infra/services/install_postgres.sh"
)


def _env(state: Path, ports: dict[str, int], dvc_repo: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PREFECT_", "MLFLOW_", "MOSA_", "AWS_")) and k not in LAUNCH_ENV
    }
    env.update({PORT_VARS[name]: str(port) for name, port in ports.items()})
    env.update(
        MOSA_TEAM_DIR=str(state),
        MOSA_TEAM_DVC_REPO=str(dvc_repo),
        MOSA_TEAM_MLFLOW_WORKERS="1",
        PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED="false",  # the nightly cron never creates a run here
        PREFECT_UI_ENABLED="false",
        PREFECT_WORKER_QUERY_SECONDS="2",
        MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING="false",
    )
    return env


def _team(command: str, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(TEAM), command], env=env, capture_output=True, text=True, timeout=timeout
    )


def _pgrep(pattern: str) -> list[str]:
    out = subprocess.run(["pgrep", "-af", "--", pattern], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if str(os.getpid()) != line.split()[0]]


def _marked(state: Path) -> list[int]:
    needle = f"MOSA_TEAM_STACK={state}\0".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if needle in (entry / "environ").read_bytes() + b"\0":
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


def _running(pid: int) -> bool:
    """``pid`` is a live process: a zombie (exited, waiting for whoever adopted it to reap it) is not."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _leftovers(stack: dict) -> list[str]:
    """Processes of this stack still alive: by command line (pgrep -f), recorded pid or marker."""
    found = _pgrep(str(stack["state"]))
    found += _pgrep(f"--port {stack['ports']['mlflow']}") + _pgrep(f"--port {stack['ports']['prefect']}")
    found += _pgrep(f"127.0.0.1:{stack['ports']['s3']}")
    found += [f"{pid} (recorded)" for pid in stack["pids"].values() if _running(pid)]
    found += [f"{pid} (marker)" for pid in _marked(stack["state"])]
    return found


def _pids(state: Path) -> dict[str, int]:
    return {p.stem: json.loads(p.read_text())["pid"] for p in sorted((state / "run").glob("*.json"))}


def _team_env(state: Path) -> dict[str, str]:
    values = {}
    for line in (state / "team.env").read_text().splitlines():
        if m := re.match(r"export (\w+)=(.*)$", line):
            values[m.group(1)] = m.group(2).strip("'")
    return values


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """`team.py start` on four free ports in a temporary state folder; `team.py stop` afterwards."""
    base = tmp_path_factory.mktemp("team")
    # pytest's temporary folders are private to root; the postgres user must reach the state folder
    state = Path(tempfile.mkdtemp(prefix="mosa-team-"))
    state.chmod(0o711)
    dvc_repo = base / "checkout"
    dvc_repo.mkdir()
    dvc = str(Path(sys.executable).with_name("dvc"))
    subprocess.run([dvc, "init", "--no-scm", "-q"], cwd=dvc_repo, check=True, capture_output=True)
    ports = dict(zip(PORT_VARS, free_ports(4), strict=True))
    env = _env(state, ports, dvc_repo)
    t0 = time.monotonic()
    started = _team("start", env)
    took = time.monotonic() - t0
    info = {"state": state, "ports": ports, "env": env, "dvc_repo": dvc_repo, "start": started, "took": took}
    info["pids"] = _pids(state) if (state / "run").is_dir() else {}
    try:
        assert started.returncode == 0, started.stdout[-4000:] + started.stderr[-4000:]
        info["client"] = _team_env(state)
        yield info
    finally:
        _team("stop", env, timeout=180)
        shutil.rmtree(state, ignore_errors=True)


def test_start_reports_every_service(stack):
    out = stack["start"].stdout
    for line in (
        "postgres: started",
        "s3: started",
        "mlflow: started",
        "prefect: started",
        "worker: started",
    ):
        assert line in out, out
    assert "prefect: deployed" in out and "dvc: remote 'team'" in out
    assert set(stack["pids"]) == {"s3", "mlflow", "prefect", "worker"}
    print(f"team stack start: {stack['took']:.1f}s")


def test_env_file_is_private_and_complete(stack):
    path = stack["state"] / "team.env"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    env, ports = stack["client"], stack["ports"]
    assert len(env["AWS_ACCESS_KEY_ID"]) == 20 and len(env["AWS_SECRET_ACCESS_KEY"]) == 40
    assert env["AWS_DEFAULT_REGION"] == "us-east-1"
    assert env["MLFLOW_S3_ENDPOINT_URL"] == f"http://127.0.0.1:{ports['s3']}"
    assert env["MLFLOW_TRACKING_URI"] == f"http://127.0.0.1:{ports['mlflow']}"
    assert env["PREFECT_API_URL"] == f"http://127.0.0.1:{ports['prefect']}/api"
    assert env["MOSA_TEAM_MLFLOW_DB_URL"].endswith(f"@127.0.0.1:{ports['postgres']}/mlflow")
    assert env["MOSA_TEAM_PREFECT_DB_URL"].startswith("postgresql+asyncpg://mosa:")


@pytest.mark.parametrize("database", ["mlflow", "prefect"])
def test_postgres_answers_with_the_password_on_loopback(stack, database):
    psql = str(PG_BINS[-1])
    cmd = [psql, "-X", "-tA", "-h", "127.0.0.1", "-p", str(stack["ports"]["postgres"]), "-U", "mosa"]
    env = {**os.environ, "PGPASSWORD": stack["client"]["MOSA_TEAM_PG_PASSWORD"], "PGCONNECT_TIMEOUT": "5"}
    ok = subprocess.run([*cmd, "-d", database, "-c", "SELECT 1"], env=env, capture_output=True, text=True)
    assert (ok.returncode, ok.stdout.strip()) == (0, "1"), ok.stderr
    bad = subprocess.run(
        [*cmd, "-d", database, "-c", "SELECT 1"], env={**env, "PGPASSWORD": "wrong"}, capture_output=True
    )
    assert bad.returncode != 0  # password auth, not trust


def test_s3_lists_buckets_and_keeps_objects(stack):
    import boto3

    env = stack["client"]
    s3 = boto3.client(
        "s3",
        endpoint_url=env["MLFLOW_S3_ENDPOINT_URL"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_DEFAULT_REGION"],
    )
    assert sorted(b["Name"] for b in s3.list_buckets()["Buckets"]) == ["mosa-dvc", "mosa-mlflow"]
    s3.put_object(Bucket="mosa-dvc", Key="probe/hello.txt", Body=b"hello")
    assert s3.get_object(Bucket="mosa-dvc", Key="probe/hello.txt")["Body"].read() == b"hello"
    assert (stack["state"] / "s3" / "mosa-dvc" / "probe" / "hello.txt").read_bytes() == b"hello"
    anonymous = httpx.get(f"{env['MLFLOW_S3_ENDPOINT_URL']}/mosa-dvc/probe/hello.txt")
    assert anonymous.status_code >= 400  # the key pair is required


def test_mlflow_keeps_runs_in_postgres_and_artifacts_in_s3(stack):
    from mlflow import MlflowClient

    env = stack["client"]
    assert httpx.get(f"{env['MLFLOW_TRACKING_URI']}/health").status_code == 200
    client = MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
    exp = client.create_experiment("team-stack-check")
    run = client.create_run(exp)
    client.log_metric(run.info.run_id, "loss", 0.5)
    client.log_text(run.info.run_id, "artifact through the server", "notes/check.txt")
    assert client.get_run(run.info.run_id).data.metrics == {"loss": 0.5}
    stored = list((stack["state"] / "s3" / "mosa-mlflow" / "artifacts").rglob("check.txt"))
    assert [p.read_text() for p in stored] == ["artifact through the server"]
    psql = str(PG_BINS[-1])
    rows = subprocess.run(
        [psql, "-X", "-tA", "-h", "127.0.0.1", "-p", str(stack["ports"]["postgres"]), "-U", "mosa",
         "-d", "mlflow", "-c", "SELECT name FROM experiments WHERE name = 'team-stack-check'"],
        env={**os.environ, "PGPASSWORD": env["MOSA_TEAM_PG_PASSWORD"]}, capture_output=True, text=True,
    )  # fmt: skip
    assert rows.stdout.split() == ["team-stack-check"], rows.stderr


def test_prefect_has_pools_an_online_worker_and_every_deployment(stack):
    import yaml

    api = stack["client"]["PREFECT_API_URL"]
    with httpx.Client(base_url=api, timeout=30) as client:
        assert client.get("/health").status_code == 200
        for pool in ("mosa-process", "mosa-gpu"):
            assert client.get(f"/work_pools/{pool}").json()["type"] == "process"
        workers = client.post("/work_pools/mosa-process/workers/filter", json={"offset": 0, "limit": 10})
        assert [(w["name"], w["status"]) for w in workers.json()] == [("mosa-team-worker", "ONLINE")]
        flows = {f["id"]: f["name"] for f in client.post("/flows/filter", json={}).json()}
        deps = client.post("/deployments/filter", json={}).json()
        runs = client.post("/flow_runs/filter", json={}).json()
    names = {f"{flows[d['flow_id']]}/{d['name']}" for d in deps}
    declared = yaml.safe_load((REPO / "infra" / "prefect" / "prefect.yaml").read_text())["deployments"]
    assert len(names) == len(declared)
    assert {"pipeline/nightly", "promote/promote", "rollback/rollback", "train_dit/train_dit-gpu"} <= names
    nightly = next(d for d in deps if d["name"] == "nightly")
    assert [s["schedule"]["cron"] for s in nightly["schedules"]] == ["0 2 * * *"]
    assert nightly["pull_steps"] == [
        {"prefect.deployments.steps.set_working_directory": {"directory": str(REPO)}}
    ]
    assert runs == []  # scheduler off in this test: nothing scheduled, nothing run


def test_the_worker_runs_the_promote_deployment(stack, tmp_path):
    """`promote/promote` through the worker against the team MLflow: the champion moves and the record
    lands in the promotion log named by the params file (kept out of the checkout)."""
    from mlflow import MlflowClient

    env = stack["client"]
    client = MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"], registry_uri=env["MLFLOW_TRACKING_URI"])
    client.create_registered_model("team-check")
    client.create_model_version("team-check", "s3://mosa-mlflow/none", tags={"metric.score": "0.5"})
    log = tmp_path / "promotions.jsonl"
    params = tmp_path / "params.yaml"
    params.write_text(
        textwrap.dedent(
            f"""
            register:
              model_name: team-check
              promotions: {log}
              gate:
                rules: [{{metric: score, direction: higher, margin: 0.0}}]
            """
        )
    )
    with httpx.Client(base_url=env["PREFECT_API_URL"], timeout=30) as api:
        dep = api.get("/deployments/name/promote/promote").json()
        run = api.post(
            f"/deployments/{dep['id']}/create_flow_run",
            json={"parameters": {"version": 1, "params_path": str(params)}},
        )
        assert run.status_code == 201, run.text
        deadline = time.monotonic() + 180
        while (state := api.get(f"/flow_runs/{run.json()['id']}").json()["state_type"]) not in (
            "COMPLETED", "FAILED", "CRASHED", "CANCELLED",
        ):  # fmt: skip
            assert time.monotonic() < deadline, f"flow run still {state}"
            time.sleep(1)
    worker_log = (stack["state"] / "logs" / "worker.log").read_text()[-4000:]
    assert state == "COMPLETED", worker_log
    assert client.get_model_version_by_alias("team-check", "champion").version == "1"
    (record,) = [json.loads(line) for line in log.read_text().splitlines()]
    assert (record["version"], record["decision"], record["champion_after"]) == ("1", "manual", "1")


def test_dvc_remote_team_is_written_to_config_local_only(stack):
    dvc_dir = stack["dvc_repo"] / ".dvc"
    local = (dvc_dir / "config.local").read_text()
    env = stack["client"]
    assert "url = s3://mosa-dvc" in local
    assert f"endpointurl = {env['MLFLOW_S3_ENDPOINT_URL']}" in local
    assert f"access_key_id = {env['AWS_ACCESS_KEY_ID']}" in local
    assert f"secret_access_key = {env['AWS_SECRET_ACCESS_KEY']}" in local
    assert "team" not in (dvc_dir / "config").read_text()


def test_status_lists_the_running_services(stack):
    proc = _team("status", stack["env"], timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in ("postgres", "s3", "mlflow", "prefect", "worker"):
        assert re.search(rf"^\s+{name}\s+running\s+pid \d+", proc.stdout, re.M), proc.stdout
    assert "promote/promote" in proc.stdout


def test_a_second_start_changes_nothing(stack):
    env_file = stack["state"] / "team.env"
    before = (
        env_file.stat().st_mtime_ns,
        env_file.read_text(),
        (stack["dvc_repo"] / ".dvc/config.local").read_text(),
    )
    proc = _team("start", stack["env"], timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "team stack already running: nothing changed" in proc.stdout
    assert "started" not in proc.stdout
    assert _pids(stack["state"]) == stack["pids"]
    after = (
        env_file.stat().st_mtime_ns,
        env_file.read_text(),
        (stack["dvc_repo"] / ".dvc/config.local").read_text(),
    )
    assert after == before


@pytest.mark.parametrize("service", list(PORT_VARS))
def test_a_taken_port_is_named_with_the_variable_to_change(service, tmp_path):
    """Another program on one of the ports: start refuses before starting anything, naming the port and
    the variable."""
    ports = dict(zip(PORT_VARS, free_ports(4), strict=True))
    with socket.socket() as other:
        other.bind(("127.0.0.1", ports[service]))
        other.listen()
        proc = _team("start", _env(tmp_path / "state", ports, tmp_path), timeout=60)
    assert proc.returncode == 1
    assert f"port {ports[service]} on 127.0.0.1 ({service}) is already in use" in proc.stderr
    assert f"{PORT_VARS[service]}=" in proc.stderr
    assert not (tmp_path / "state" / "run").exists() and not (tmp_path / "state" / "postgres").exists()
    assert _marked(tmp_path / "state") == []


def test_stop_leaves_no_process(stack):
    assert _leftovers(stack)  # sanity: the patterns see the running stack
    proc = _team("stop", stack["env"], timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in ("worker", "prefect", "mlflow", "s3", "postgres"):
        assert f"{name}: stopped" in proc.stdout, proc.stdout
    assert _leftovers(stack) == []
    for port in stack["ports"].values():  # nothing listens any more (closed connections may linger
        with socket.socket() as s:  # in TIME_WAIT: SO_REUSEADDR, as servers bind)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
    again = _team("stop", stack["env"], timeout=60)
    assert "nothing was running" in again.stdout


def test_services_and_flow_runs_never_inherit_a_launcher_world(monkeypatch):
    """A shell (or test process) that is itself a 1-rank world must not hand RANK/MASTER_PORT… to the
    worker: its flow runs' stages would join that process's store (EADDRINUSE) — the failure of a
    fresh-clone make test, where in-process training tests ran before the team nightly."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("team_services", TEAM)
    team = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, team)  # its dataclasses look their module up
    spec.loader.exec_module(team)
    world = {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
             "MASTER_PORT": "48899", "MOSA_SELF_WORLD": "1:48899"}  # fmt: skip
    for key, value in world.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("MOSA_KEEP_ME", "yes")
    cfg = team.Config.from_env()
    env = team.base_env(cfg)
    assert not set(world) & set(env), sorted(set(world) & set(env))
    assert env["MOSA_KEEP_ME"] == "yes" and env[team.MARKER] == str(cfg.state)
