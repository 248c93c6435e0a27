"""The parent ``pipeline`` flow with a fake ``dvc`` (logs its argv, fails or flakes on demand): real
Prefect (temporary server, isolated PREFECT_HOME), real subprocesses, real file lock."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flows import pipeline as pl

REPO = Path(__file__).resolve().parents[2]
STAGES = ("ingest", "annotate", "pretrain_motion", "pretrain_base", "train_dit")

FAKE_DVC = r"""#!/usr/bin/env bash
# Fake dvc: appends its argv to $FAKE_DVC_LOG; the stage is the last argument.
set -euo pipefail
stage="${!#}"
echo "$*" >> "$FAKE_DVC_LOG"
if [[ -n "${FAKE_DVC_BLOCK:-}" && "$stage" == "$FAKE_DVC_BLOCK" ]]; then
  touch "$FAKE_DVC_LOG.started"
  while [[ ! -e "$FAKE_DVC_LOG.release" ]]; do sleep 0.1; done
fi
if [[ "$stage" == "${FAKE_DVC_FAIL:-}" ]]; then echo "ERROR: failed to reproduce '$stage'" >&2; exit 3; fi
if [[ "$stage" == "${FAKE_DVC_FLAKY:-}" && ! -e "$FAKE_DVC_LOG.$stage" ]]; then
  touch "$FAKE_DVC_LOG.$stage"; echo "ERROR: transient failure" >&2; exit 4
fi
if [[ " ${FAKE_DVC_SKIP:-} " == *" $stage "* ]]; then
  echo "Stage '$stage' didn't change, skipping"; echo "Data and pipelines are up to date."; exit 0
fi
echo "Running stage '$stage':"
echo "> python -m flows.$stage"
echo "env: PREFECT_API_URL=${PREFECT_API_URL:-unset} PYTHONUNBUFFERED=${PYTHONUNBUFFERED:-unset}"
"""


def _workspace(path: Path) -> Path:
    """A folder with a dvc.yaml of the five stages (only their names matter) and the fake dvc."""
    stages = "\n".join(f"  {s}:\n    cmd: python -m flows.{s}" for s in STAGES)
    (path / "dvc.yaml").write_text(f"stages:\n{stages}\n")
    fake = path / "fakedvc"
    fake.write_text(FAKE_DVC)
    fake.chmod(0o755)
    return path


@pytest.fixture
def workspace(tmp_path) -> Path:
    return _workspace(tmp_path)


def _env(work: Path, home: str, log: Path, **fake: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_", "FAKE_DVC_"))}
    env.update(
        PYTHONPATH=str(REPO),
        PREFECT_HOME=str(work / home),
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="180",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        FAKE_DVC_LOG=str(log),
        **{f"FAKE_DVC_{k.upper()}": v for k, v in fake.items()},
    )
    return env


def _cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "flows.pipeline", "--dvc", "./fakedvc", "--retry-delay", "0", *args]


def _calls(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


@pytest.fixture(scope="module")
def blocked_then_failed(tmp_path_factory):
    """One pipeline run over a subset given out of order: ingest unchanged, annotate flaky,
    pretrain_motion failing. While it waits inside its first stage, the lock is probed from this
    process and a second pipeline is started."""
    work = _workspace(tmp_path_factory.mktemp("pipeline"))
    log = work / "dvc.log"
    env = _env(work, ".prefect", log, block="ingest", skip="ingest", flaky="annotate", fail="pretrain_motion")
    first = subprocess.Popen(
        _cmd("--stages", "train_dit,pretrain_motion,annotate,ingest"),
        cwd=work,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 180
        while not Path(f"{log}.started").exists():
            assert first.poll() is None, first.communicate()[0][-3000:]
            assert time.monotonic() < deadline, "the pipeline never reached its first stage"
            time.sleep(0.2)
        try:
            with pl.pipeline_lock(work / pl.LOCK_FILE):
                probe = "lock was free while the pipeline ran"
        except pl.PipelineLocked as exc:
            probe = str(exc)
        second_log = work / "second.log"
        second = subprocess.run(
            _cmd(),
            cwd=work,
            env=_env(work, ".prefect-2", second_log),
            capture_output=True,
            text=True,
            timeout=120,
        )
        Path(f"{log}.release").touch()
        output, _ = first.communicate(timeout=180)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    return {
        "first": first,
        "output": output,
        "log": log,
        "probe": probe,
        "second": second,
        "second_log": second_log,
    }


def test_runs_subset_in_dvc_order_retries_and_stops_at_the_failing_stage(blocked_then_failed):
    run = blocked_then_failed
    assert run["first"].returncode == 1, run["output"][-3000:]
    single = "repro --single-item"
    assert _calls(run["log"]) == [
        f"{single} ingest",
        f"{single} annotate",  # fails once ...
        f"{single} annotate",  # ... and succeeds on the retry
        f"{single} pretrain_motion",
        f"{single} pretrain_motion",  # retried once, fails again: the pipeline stops here
    ]  # pretrain_base was not selected; train_dit comes after the failure
    final = next(line for line in run["output"].splitlines() if line.startswith("pipeline: "))
    assert "stage 'pretrain_motion' failed: dvc repro exited 3 (attempt 2)" in final
    assert "later stages not run: train_dit" in final
    out = run["output"]
    assert "[annotate] Running stage 'annotate':" in out  # subprocess lines reach the Prefect log
    assert "[pretrain_motion] ERROR: failed to reproduce 'pretrain_motion'" in out
    assert "ingest: skipped" in out and "annotate: ran" in out and "(attempt 2)" in out
    assert "Flow run" in out and "Finished in state Failed" in out
    # stage flows report to the pipeline's own temporary server instead of starting another
    server = re.search(r"Starting temporary server on (http://\S+)", out).group(1)
    assert f"[annotate] env: PREFECT_API_URL={server.rstrip('/')}/api PYTHONUNBUFFERED=1" in out


def test_flow_holds_the_lock_and_a_second_run_is_refused(blocked_then_failed):
    run = blocked_then_failed
    assert "another pipeline run holds" in run["probe"]
    assert f"(pid {run['first'].pid} since " in run["probe"]
    second = run["second"]
    assert second.returncode == 1
    assert "another pipeline run holds .dvc/tmp/mosa-pipeline.lock (pid " in second.stderr
    assert "only one `dvc repro` may run at a time" in second.stderr
    assert _calls(run["second_log"]) == []  # refused before any dvc repro


def test_unknown_stage_rejected_before_anything_runs(workspace):
    log = workspace / "dvc.log"
    proc = subprocess.run(
        _cmd("--stages", "ingest,train_ditt"),
        cwd=workspace,
        env=_env(workspace, ".prefect", log),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "unknown stage(s): 'train_ditt'; dvc.yaml defines: " + ", ".join(STAGES) in proc.stderr
    assert _calls(log) == [] and "Beginning flow run" not in proc.stdout + proc.stderr


def test_select_stages_orders_by_dvc_yaml_and_names_unknown():
    known = list(STAGES)
    assert pl.select_stages(None, known) == known
    assert pl.select_stages(["train_dit", " annotate", "train_dit"], known) == ["annotate", "train_dit"]
    with pytest.raises(pl.PipelineError, match=r"unknown stage\(s\): 'x', 'y'; dvc.yaml defines: ingest"):
        pl.select_stages(["x", "ingest", "y"], known)
    with pytest.raises(pl.PipelineError, match="no stages given"):
        pl.select_stages([""], known)


def test_stage_list_is_read_from_dvc_yaml_in_file_order(tmp_path):
    path = tmp_path / "dvc.yaml"
    path.write_text("stages:\n  zeta: {cmd: a}\n  alpha: {cmd: b}\n  mid: {cmd: c}\n")
    assert pl.dvc_stages(path) == ["zeta", "alpha", "mid"]
    with pytest.raises(pl.PipelineError, match=r"not found.*repository root"):
        pl.dvc_stages(tmp_path / "missing.yaml")
    path.write_text("vars: []\n")
    with pytest.raises(pl.PipelineError, match="defines no stages"):
        pl.dvc_stages(path)


def test_lock_is_exclusive_names_holder_and_is_released(tmp_path):
    lock = tmp_path / "sub" / "pipeline.lock"
    held_by_me = rf"holds {re.escape(str(lock))} \(pid {os.getpid()} since "
    with pl.pipeline_lock(lock), pytest.raises(pl.PipelineLocked, match=held_by_me), pl.pipeline_lock(lock):
        pass
    with pl.pipeline_lock(lock):  # released on exit: a later run gets it
        pass


def test_lock_is_released_when_the_run_fails(tmp_path):
    lock = tmp_path / "pipeline.lock"
    with pytest.raises(RuntimeError, match="boom"), pl.pipeline_lock(lock):
        raise RuntimeError("boom")
    with pl.pipeline_lock(lock):
        pass


def test_skip_detection_on_dvc_messages():
    assert pl.was_skipped(["Stage 'ingest' didn't change, skipping", "Data and pipelines are up to date."])
    assert pl.was_skipped(["Stage 'ingest' is cached - skipping run, checking out outputs"])
    assert not pl.was_skipped(["Running stage 'ingest':", "> python -m flows.ingest", "Updating lock file"])
    assert not pl.was_skipped([])


def test_repro_command_and_missing_dvc(tmp_path):
    assert pl.repro_command("/bin/dvc", "annotate", False) == [
        "/bin/dvc",
        "repro",
        "--single-item",
        "annotate",
    ]
    assert pl.repro_command("dvc", "annotate", True)[2:] == ["--single-item", "--force", "annotate"]
    with pytest.raises(pl.PipelineError, match=r"dvc executable '.*nodvc' not found.*--dvc PATH"):
        pl.resolve_dvc(str(tmp_path / "nodvc"))


def test_stage_failed_survives_pickling():
    import pickle

    exc = pickle.loads(pickle.dumps(pl.StageFailed("train_dit", 3, 2, 1.5, "tail", ("register",))))
    assert (exc.stage, exc.exit_code, exc.attempts, exc.not_run) == ("train_dit", 3, 2, ("register",))
    assert "later stages not run: register" in str(exc)


def test_summary_links_mlflow_ui_only_over_http():
    records = [
        pl.StageRecord("ingest", "skipped", 0.5, 0, 1, "abcdef0123456789", "7"),
        pl.StageRecord("annotate", "failed", 2.0, 3, 2),
        pl.StageRecord("train_dit", "not run"),
    ]
    http = pl.summary_markdown(records, "http://mlflow:5000/", failed="annotate")
    link = "[abcdef01](http://mlflow:5000/#/experiments/7/runs/abcdef0123456789)"
    assert f"| ingest | skipped | 0.5 | 0 | 1 | {link} |" in http
    assert "| annotate | failed | 2.0 | 3 | 2 | - |" in http
    assert "| train_dit | not run | - | - | 0 | - |" in http
    assert "failed at stage `annotate`" in http
    local = pl.summary_markdown(records[:1], "sqlite:///mlflow.db")
    assert "| `abcdef0123456789` |" in local and "all selected stages succeeded" in local
