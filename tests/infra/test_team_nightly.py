"""The team stack running the pipeline for real (issue 19): a tiny-size copy of the repository, the
stack of infra/services/team.py on free loopback ports, and the ``pipeline/nightly`` deployment
triggered through the Prefect REST API and executed by the stack's worker (the session fixture
``team_nightly``, tests/helpers/team_run.py, shared with tests/browser/test_ui.py). Then: every
dvc.yaml stage ran as its own ``dvc repro`` task, the MLflow runs and the registered version are rows
in Postgres, the model's files are objects in the S3 bucket, ``dvc push -r team`` + ``dvc pull`` into
a fresh clone restores the data byte for byte, and two pipelines (or two ``dvc repro``) at once leave
dvc.lock intact: the second one is refused with a message naming the lock, or waits."""

from __future__ import annotations

import datetime as dt
import filecmp
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.helpers.team_run import BIN, FINAL, MODEL, client_env, have_postgres, print_times, sh, worker_log

pytestmark = [
    pytest.mark.skipif(
        not have_postgres(), reason="PostgreSQL server not installed: bash infra/services/install_postgres.sh"
    ),
    pytest.mark.timeout(3600),
]
DVC = str(BIN / "dvc")
PIPELINE_LOCK = ".dvc/tmp/mosa-pipeline.lock"


def _stages(info: dict) -> list[str]:
    """Every stage of the copy's dvc.yaml, ``foreach`` stages expanded (``ablate@track_static``)."""
    out = sh([DVC, "stage", "list", "--name-only"], info["repo"], client_env(info)).stdout
    return [line.strip() for line in out.splitlines() if line.strip()]


def _dvc_yaml_stages(info: dict) -> list[str]:
    """The stage names of dvc.yaml, as the pipeline flow walks them (one task each; a ``foreach``
    stage is one task reproducing all its variants)."""
    return list(yaml.safe_load((info["repo"] / "dvc.yaml").read_text())["stages"])


def _mlflow_stage_tag(stage: str) -> str:
    """The ``stage`` tag of a dvc stage's MLflow run (flows/ablate.py names its run ablate-<variant>)."""
    name, _, variant = stage.partition("@")
    return f"{name}-{variant.replace('_', '-')}" if variant else name


def _pg(info: dict, sql: str, args: tuple = ()) -> list[tuple]:
    import psycopg2

    conn = psycopg2.connect(
        host="127.0.0.1",
        port=info["ports"]["postgres"],
        user="mosa",
        password=info["client"]["MOSA_TEAM_PG_PASSWORD"],
        dbname="mlflow",
        connect_timeout=10,
    )
    try:
        with conn.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchall()
    finally:
        conn.close()


def _s3(info: dict):
    import boto3

    env = info["client"]
    return boto3.client(
        "s3",
        endpoint_url=env["MLFLOW_S3_ENDPOINT_URL"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_DEFAULT_REGION"],
    )


def _keys(s3, bucket: str, prefix: str = "") -> list[str]:
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [obj["Key"] for obj in page.get("Contents", [])]
    return keys


def _dvc_clean(repo: Path, env: dict) -> str:
    out = sh([DVC, "status"], repo, env).stdout
    assert "Data and pipelines are up to date" in out, out
    return out


def test_nightly_ran_every_stage_through_dvc_repro(team_nightly):
    info = team_nightly
    print_times(info)
    run, stages, expanded = info["flow_run"], _dvc_yaml_stages(info), _stages(info)
    assert len(stages) >= 8 and "register" in stages and any("@" in s for s in expanded)
    with httpx.Client(base_url=info["client"]["PREFECT_API_URL"], timeout=30) as api:
        flow = api.get(f"/flows/{run['flow_id']}").json()
        tasks = api.post(
            "/task_runs/filter",
            json={"flow_runs": {"id": {"any_": [run["id"]]}}, "offset": 0, "limit": 200},
        ).json()
        logs = {
            t["name"]: [
                log["message"]
                for log in api.post(
                    "/logs/filter",
                    json={"logs": {"task_run_id": {"any_": [t["id"]]}}, "sort": "TIMESTAMP_ASC", "offset": 0,
                          "limit": 200},
                ).json()
            ]
            for t in tasks
        }  # fmt: skip
        artifacts = api.post(
            "/artifacts/filter",
            json={"artifacts": {"flow_run_id": {"any_": [run["id"]]}}, "offset": 0, "limit": 10},
        ).json()
    assert (flow["name"], run["deployment_id"], run["state_type"]) == (
        "pipeline",
        info["deployment"]["id"],
        "COMPLETED",
    )
    assert sorted(t["name"] for t in tasks) == sorted(f"repro-{s}" for s in stages)
    assert {t["state_type"] for t in tasks} == {"COMPLETED"}
    for stage in stages:  # each task reproduced its stage alone through `dvc repro`: DVC ran it
        lines = logs[f"repro-{stage}"]
        assert any(line.endswith(f"dvc repro --single-item {stage}") for line in lines), lines[:3]
        for name in (s for s in expanded if s.partition("@")[0] == stage):
            assert any(f"Running stage '{name}'" in line for line in lines), (name, lines[:10])
    (table,) = [a["data"] for a in artifacts if a["key"] == "pipeline-summary"]
    for stage in stages:
        assert f"| {stage} | ran |" in table, table
    lock = yaml.safe_load((info["repo"] / "dvc.lock").read_text())
    assert sorted(lock["stages"]) == sorted(expanded)
    _dvc_clean(info["repo"], client_env(info))


def test_mlflow_runs_and_the_registered_version_are_in_postgres(team_nightly):
    info = team_nightly
    rows = _pg(
        info,
        "SELECT t.value, r.status, e.name FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid "
        "JOIN experiments e ON e.experiment_id = r.experiment_id "
        "WHERE t.key = 'stage' AND r.lifecycle_stage = 'active'",
    )
    by_stage = {stage: (status, exp) for stage, status, exp in rows}
    for stage in _stages(info):
        assert by_stage.get(_mlflow_stage_tag(stage)) == ("FINISHED", "mosa"), (stage, rows)
    versions = _pg(
        info, "SELECT version, status, run_id FROM model_versions WHERE name = %s ORDER BY version", (MODEL,)
    )
    assert [(v, s) for v, s, _ in versions] == [(1, "READY")], versions
    tags = dict(
        _pg(info, "SELECT key, value FROM model_version_tags WHERE name = %s AND version = 1", (MODEL,))
    )
    assert tags["lineage.git_commit"].removesuffix("-dirty") == info["head"]
    assert re.fullmatch(r"[0-9a-f]{32}", tags["lineage.dvc_lock_md5"])
    lock = yaml.safe_load((info["repo"] / "dvc.lock").read_text())["stages"]
    for stage in ("train_dit", "evaluate"):  # the hashes of the outputs the model came from
        outs = {o["path"]: o["md5"] for o in lock[stage]["outs"]}
        assert json.loads(tags[f"lineage.dvc.{stage}.outs"]) == outs
    aliases = _pg(info, "SELECT alias, version FROM registered_model_aliases WHERE name = %s", (MODEL,))
    assert ("candidate", 1) in aliases


def test_model_artifacts_are_objects_in_the_s3_bucket(team_nightly):
    info = team_nightly
    ((location, source),) = _pg(
        info, "SELECT storage_location, source FROM model_versions WHERE name = %s AND version = 1", (MODEL,)
    )
    # the server proxies artifacts (mlflow-artifacts:/...) to its destination s3://mosa-mlflow/artifacts
    assert location.startswith("mlflow-artifacts:/") and source.startswith("models:/"), (location, source)
    prefix = "artifacts/" + location.removeprefix("mlflow-artifacts:/").strip("/") + "/"
    keys = _keys(_s3(info), "mosa-mlflow", prefix)
    names = {k.rsplit("/", 1)[-1] for k in keys}
    assert "MLmodel" in names, keys
    assert any(n.endswith((".safetensors", ".pt", ".bin")) for n in names), keys
    on_disk = info["state"] / "s3" / "mosa-mlflow" / prefix
    assert sorted(str(p.relative_to(on_disk)) for p in on_disk.rglob("*") if p.is_file()) == sorted(
        k.removeprefix(prefix) for k in keys
    )


def _cached_outs(repo: Path) -> list[str]:
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    return sorted(
        {
            out["path"]
            for entry in lock["stages"].values()
            for out in entry.get("outs", [])
            if (repo / out["path"]).exists()
        }
    )


def _same_file(a: Path, b: Path) -> bool:
    return b.is_file() and filecmp.cmp(a, b, shallow=False)


def _differing(a: Path, b: Path) -> list[str]:
    """Files under ``a`` whose bytes differ in ``b`` (or are missing there)."""
    if a.is_file():
        return [] if _same_file(a, b) else [str(a)]
    return [str(p) for p in a.rglob("*") if p.is_file() and not _same_file(p, b / p.relative_to(a))]


def test_dvc_push_then_pull_into_a_fresh_clone_restores_the_data(team_nightly, tmp_path):
    info = team_nightly
    env, repo = client_env(info), info["repo"]
    # what a team member commits after a run: dvc.lock, the small uncached outputs, .gitignore entries
    sh(["git", "add", "-A"], repo, env)
    sh(["git", "commit", "-qm", "nightly: dvc.lock"], repo, env)
    pushed = sh([DVC, "push", "-r", "team"], repo, env, timeout=900)
    assert "pushed" in pushed.stdout, pushed.stdout
    assert _keys(_s3(info), "mosa-dvc", "files/md5/"), "nothing in s3://mosa-dvc/files/md5/"

    clone = tmp_path / "clone"
    sh(["git", "clone", "-q", str(repo), str(clone)], tmp_path, env)
    outs = _cached_outs(repo)
    assert outs and not any((clone / out).exists() for out in outs if out.startswith(("data/", "models/")))
    c = info["client"]
    for args in (  # the remote as team.py writes it: config.local only
        ["remote", "add", "--local", "--force", "team", "s3://mosa-dvc"],
        ["remote", "modify", "--local", "team", "endpointurl", c["MLFLOW_S3_ENDPOINT_URL"]],
        ["remote", "modify", "--local", "team", "region", c["AWS_DEFAULT_REGION"]],
        ["remote", "modify", "--local", "team", "access_key_id", c["AWS_ACCESS_KEY_ID"]],
        ["remote", "modify", "--local", "team", "secret_access_key", c["AWS_SECRET_ACCESS_KEY"]],
    ):
        sh([DVC, *args], clone, env)
    clean = {k: v for k, v in env.items() if not k.startswith("AWS_")}  # the keys come from config.local
    sh([DVC, "pull", "-r", "team"], clone, clean, timeout=900)
    _dvc_clean(clone, clean)
    differ = [d for out in outs for d in _differing(repo / out, clone / out)]
    assert differ == [], differ[:20]


def _pipeline_cli(info: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "flows.pipeline", "--retries", "0"],
        cwd=info["repo"],
        env={**client_env(info), "PYTHONPATH": str(info["repo"])},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_two_pipelines_or_two_dvc_repro_at_once_leave_dvc_lock_intact(team_nightly):
    info = team_nightly
    env, repo = client_env(info), info["repo"]
    lock_before = (repo / "dvc.lock").read_bytes()
    holder = repo / PIPELINE_LOCK

    t0 = time.monotonic()
    first = _pipeline_cli(info)
    while not (holder.is_file() and holder.read_text().startswith("pid")):
        assert first.poll() is None, first.communicate()
        assert time.monotonic() - t0 < 300, "the first pipeline never took its lock"
        time.sleep(0.05)
    second = _pipeline_cli(info)
    results = [(*p.communicate(timeout=1200), p.returncode) for p in (first, second)]
    took = time.monotonic() - t0
    codes = sorted(code for _, _, code in results)
    assert codes == [0, 1], results
    (refused,) = [err for _, err, code in results if code == 1]
    assert f"another pipeline run holds {PIPELINE_LOCK}" in refused, refused
    assert "only one `dvc repro` may run at a time" in refused

    # two plain `dvc repro` started together: DVC's own repository lock; the loser waits or says so
    both = [
        subprocess.Popen([DVC, "repro"], cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True)
        for _ in range(2)
    ]  # fmt: skip
    outs = [(p.communicate(timeout=900)[0], p.returncode) for p in both]
    for out, code in outs:
        assert (code == 0 and "Data and pipelines are up to date" in out) or (
            code != 0 and "Unable to acquire lock" in out
        ), out[-2000:]
    assert any(code == 0 for _, code in outs), outs
    print(f"two pipelines at once: {took:.0f}s; two dvc repro: exit codes {[c for _, c in outs]}")

    text = (repo / "dvc.lock").read_text()
    assert sorted(yaml.safe_load(text)["stages"]) == sorted(_stages(info))
    assert text.encode() == lock_before  # nothing changed, nothing half-written
    assert holder.read_text() == ""  # released
    _dvc_clean(repo, env)


def test_two_nightly_runs_at_once_never_overlap(team_nightly):
    """Two ``pipeline/nightly`` flow runs created together (two triggers, or a trigger during the cron
    run): the deployment's concurrency limit holds the second until the first is done, or the flow's
    own lock refuses it with a message naming the lock; either way dvc.lock is untouched."""
    info = team_nightly
    repo, lock_before = info["repo"], (info["repo"] / "dvc.lock").read_bytes()
    dep = info["deployment"]
    t0 = time.monotonic()
    seen: dict[str, set[str]] = {}
    with httpx.Client(base_url=info["client"]["PREFECT_API_URL"], timeout=30) as api:
        ids = []
        for _ in range(2):
            made = api.post(f"/deployments/{dep['id']}/create_flow_run", json={"parameters": {"retries": 0}})
            assert made.status_code == 201, made.text
            ids.append(made.json()["id"])
        runs: dict[str, dict] = {}
        while True:
            runs = {i: api.get(f"/flow_runs/{i}").json() for i in ids}
            for i, run in runs.items():
                seen.setdefault(i, set()).add(run["state_name"])
            if all(r["state_type"] in FINAL for r in runs.values()):
                break
            assert time.monotonic() - t0 < 900, f"still running: {runs}\n{worker_log(info['state'])}"
            time.sleep(0.5)
    took = time.monotonic() - t0
    states = sorted(r["state_type"] for r in runs.values())
    print(f"two nightly runs at once: {took:.0f}s, states seen: {seen}")
    if states == ["COMPLETED", "COMPLETED"]:  # one after the other
        first, second = sorted(runs.values(), key=lambda r: r["start_time"])
        end, start = (dt.datetime.fromisoformat(t) for t in (first["end_time"], second["start_time"]))
        assert end <= start, (first, second)  # the second started only after the first ended
    else:
        assert states == ["COMPLETED", "FAILED"], runs
        (failed,) = [r for r in runs.values() if r["state_type"] == "FAILED"]
        assert PIPELINE_LOCK in failed["state"]["message"], failed["state"]
    assert (repo / "dvc.lock").read_bytes() == lock_before
    _dvc_clean(repo, client_env(info))
