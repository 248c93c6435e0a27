"""The compose file of the shared servers: `docker compose config` when Docker Compose is present,
else the same structure checked on the parsed YAML. Nothing is pulled or started."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

COMPOSE_DIR = Path(__file__).resolve().parents[2] / "infra" / "compose"
COMPOSE = COMPOSE_DIR / "docker-compose.yaml"
ENV_EXAMPLE = COMPOSE_DIR / ".env.example"
SERVERS = {"postgres", "minio", "mlflow", "prefect"}
ONE_SHOT = {"minio-init", "postgres-init"}
# ${VAR}, ${VAR:-default}, ${VAR:?message}; $$ escapes a dollar for the container's shell
VAR = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?[-?][^}]*)?\}")
SECRET_KEY = re.compile(r"PASSWORD|SECRET|ACCESS_KEY", re.IGNORECASE)


def _compose_available() -> bool:
    if shutil.which("docker") is None:
        return False
    proc = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, timeout=30)
    return proc.returncode == 0


@pytest.fixture(scope="module")
def spec() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _env_example() -> dict[str, str]:
    lines = [
        line for line in ENV_EXAMPLE.read_text().splitlines() if "=" in line and not line.startswith("#")
    ]
    return {k.strip(): v.strip() for k, v in (line.split("=", 1) for line in lines)}


def _words(value) -> str:
    return " ".join(value) if isinstance(value, list) else str(value)


@pytest.mark.skipif(not _compose_available(), reason="docker compose is not available")
def test_docker_compose_config_accepts_the_file():
    base = ["docker", "compose", "-f", str(COMPOSE), "--env-file", str(ENV_EXAMPLE)]
    proc = subprocess.run([*base, "config", "--quiet"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    services = subprocess.run([*base, "config", "--services"], capture_output=True, text=True, timeout=60)
    assert set(services.stdout.split()) == SERVERS | ONE_SHOT


def test_services_healthchecks_and_volumes(spec):
    services = spec["services"]
    assert set(services) == SERVERS | ONE_SHOT
    for name in SERVERS:
        check = services[name]["healthcheck"]
        assert check["test"][0] in ("CMD", "CMD-SHELL") and len(check["test"]) > 1, name
        assert check["retries"] >= 1 and check["interval"], name
    for name in ONE_SHOT:
        assert services[name]["restart"] == "no" and "healthcheck" not in services[name]
    assert services["minio-init"]["image"].startswith("minio/mc:")
    declared = set(spec["volumes"])
    mounted = {v.split(":")[0] for s in services.values() for v in s.get("volumes", [])}
    assert declared == {"postgres-data", "minio-data"} and mounted == declared  # named, no host paths


def test_start_order_is_by_health_and_completion(spec):
    def conditions(name: str) -> dict[str, str]:
        return {dep: c["condition"] for dep, c in spec["services"][name]["depends_on"].items()}

    assert conditions("postgres-init") == {"postgres": "service_healthy"}
    assert conditions("minio-init") == {"minio": "service_healthy"}
    assert conditions("mlflow") == {
        "postgres": "service_healthy",
        "minio-init": "service_completed_successfully",
    }
    assert conditions("prefect") == {
        "postgres": "service_healthy",
        "postgres-init": "service_completed_successfully",
    }


def test_mlflow_uses_postgres_and_minio_artifacts(spec):
    mlflow = spec["services"]["mlflow"]
    cmd = mlflow["command"]
    assert cmd[:2] == ["mlflow", "server"]
    backend = next(c for c in cmd if c.startswith("--backend-store-uri="))
    assert backend.startswith(
        "--backend-store-uri=postgresql+psycopg2://${POSTGRES_USER}:${POSTGRES_PASSWORD}@postgres:5432/"
    )
    assert "--artifacts-destination=s3://mosa-mlflow/artifacts" in cmd and "--serve-artifacts" in cmd
    assert mlflow["environment"]["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    init = _words(spec["services"]["minio-init"]["command"])
    assert "mc mb --ignore-existing mosa/mosa-mlflow mosa/mosa-dvc" in init


def test_prefect_uses_its_own_postgres_database(spec):
    url = spec["services"]["prefect"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"]
    assert (
        url
        == "postgresql+asyncpg://${POSTGRES_USER}:${POSTGRES_PASSWORD}@postgres:5432/${PREFECT_DB:-prefect}"
    )
    init = spec["services"]["postgres-init"]
    assert init["environment"]["PREFECT_DB"] == "${PREFECT_DB:-prefect}"
    assert r"CREATE DATABASE \"$$PREFECT_DB\"" in _words(init["command"])
    assert spec["services"]["prefect"]["command"][:3] == ["prefect", "server", "start"]


def test_no_secret_is_written_in_the_compose_file(spec):
    for name, service in spec["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if SECRET_KEY.search(key):
                assert VAR.fullmatch(str(value)), (
                    f"{name}.{key} must come from the environment, not {value!r}"
                )
    text = COMPOSE.read_text()
    for key, value in _env_example().items():
        if SECRET_KEY.search(key):
            assert value not in text, f"the placeholder of {key} is written in the compose file"
            assert "change-me" in value, f"{key} in .env.example must be a placeholder"
    for url in re.findall(r"postgresql(?:\+\w+)?://[^\s\"']+", text):
        assert "://${POSTGRES_USER}:${POSTGRES_PASSWORD}@" in url, url


def test_every_variable_is_documented_in_env_example():
    text = COMPOSE.read_text()
    used = set(VAR.findall(text))
    example = _env_example()
    assert used - set(example) == set(), "variables used by the compose file but missing in .env.example"
    assert set(example) - used == set(), ".env.example documents variables the compose file never reads"
    required = set(re.findall(r"\$\{([A-Z_]+):\?", text))
    assert required == {"POSTGRES_USER", "POSTGRES_PASSWORD", "MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"}
    assert len(example["MINIO_ROOT_PASSWORD"]) >= 8  # MinIO refuses shorter root passwords


def test_ports_bind_to_loopback_by_default(spec):
    for name in ("mlflow", "prefect", "minio"):
        for port in spec["services"][name]["ports"]:
            assert port.startswith("${BIND_ADDRESS:-127.0.0.1}:"), (
                f"{name} publishes {port} on every interface"
            )
    assert "ports" not in spec["services"]["postgres"]


def test_shell_commands_parse(spec):
    """The one-shot jobs and shell healthchecks are valid sh once compose turns $$ into $."""
    scripts = [_words(spec["services"][name]["command"]) for name in ONE_SHOT]
    scripts += [
        s["healthcheck"]["test"][1]
        for s in spec["services"].values()
        if s.get("healthcheck", {}).get("test", [""])[0] == "CMD-SHELL"
    ]
    assert len(scripts) == 3
    for script in scripts:
        proc = subprocess.run(["sh", "-n", "-c", script.replace("$$", "$")], capture_output=True, text=True)
        assert proc.returncode == 0, f"{script}: {proc.stderr}"
