"""The whole DAG through real ``dvc repro`` on a copy of the repository with the default params made
tiny (4 synthetic clips + one demo video, a few training steps, one ablation variant): every stage runs
in order and its outputs hold values; the registered champion loads in a fresh process and generates;
a second repro has nothing to do; training stages resume only their own checkpoints and start over
after a code change they import. `make run` runs the same stages at full default size."""

from __future__ import annotations

import csv
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers.tiny_repo import copy_repo, shrink_params

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TRAINING = ("pretrain_motion", "pretrain_base", "train_dit", "ablate@track_static")


def _sh(cmd: list[str], cwd: Path, env: dict, timeout: float = 3600) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-4000:]}"
    return proc


@pytest.fixture(scope="module")
def prefect_api(tmp_path_factory):
    """One real ``prefect server`` on loopback for every stage of the module (as the parent pipeline
    flow or a team setup gives them): each stage then skips starting an ephemeral server of its own."""
    import socket
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    home = tmp_path_factory.mktemp("prefect-server")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_UI_ENABLED="false")
    log = (home / "server.log").open("w")
    proc = subprocess.Popen(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 180
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=5):
                break
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, (home / "server.log").read_text()[
                -2000:
            ]
            time.sleep(0.5)
    yield url
    os.killpg(proc.pid, 15)
    proc.wait(timeout=60)
    log.close()


@pytest.fixture(scope="module")
def repo_copy(tmp_path_factory, prefect_api) -> tuple[Path, dict]:
    dst = tmp_path_factory.mktemp("repo") / "mosa"
    copy_repo(dst)
    shrink_params(dst / "params.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_", "DVC_"))}
    env.update(
        PATH=f"{BIN}:{env['PATH']}",
        PREFECT_HOME=str(dst / ".prefect"),
        PREFECT_API_URL=prefect_api,
        MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING="false",
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@t",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@t",
    )
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "copy"]):
        _sh(cmd, dst, env)
    return dst, env


@pytest.fixture(scope="module")
def reproduced(repo_copy) -> tuple[Path, dict, float]:
    repo, env = repo_copy
    t0 = time.perf_counter()
    _sh([str(BIN / "dvc"), "repro"], repo, env)
    return repo, env, time.perf_counter() - t0


def _metrics(repo: Path, name: str) -> dict:
    rel = f"reports/ablate/{name.split('@')[1]}/metrics.json" if "@" in name else f"metrics/{name}.json"
    return json.loads((repo / rel).read_text())


def _finite(value) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


@pytest.mark.timeout(3000)
def test_every_stage_runs_and_writes_values(reproduced):
    repo, _, seconds = reproduced
    print(f"tiny dvc repro of the whole DAG: {seconds:.0f} s")
    ingest = _metrics(repo, "ingest")
    assert ingest["clips_kept_by_kind"]["demo"] >= 1 and ingest["clips_kept_by_kind"]["synthetic"] >= 1
    annotate = _metrics(repo, "annotate")
    assert annotate["clips_in"] == ingest["clips_kept"] and annotate["clips_annotated"] >= 1

    motion = _metrics(repo, "pretrain_motion")
    assert motion["resumed_from"] is None and 0 <= motion["r_precision_top3"] <= 1
    assert (repo / "models" / "motion" / "generator.safetensors").is_file()
    base = _metrics(repo, "pretrain_base")
    assert base["resumed_from"] is None and base["clips_train"] >= 1
    assert _finite(base["vae_psnr_val"]) and _finite(base["dit_val_loss"])
    assert _finite(base["vae_psnr_person_val"])  # the rendered bodies of the held-out synthetic clips
    for key in ("vae_recon_person_detect_rate_val", "vae_recon_person_detect_rate_val_reference"):
        assert 0.0 <= base[key] <= 1.0, (key, base[key])

    dit = _metrics(repo, "train_dit")
    assert dit["steps"] == 24 and dit["resumed_from"] is None and dit["zero_stage"] == 2
    for key in ("loss_diffusion", "loss_mask", "loss_track", "loss_contact", "loss_total"):
        assert _finite(dit[key]), (key, dit[key])
    rows = list(csv.DictReader((repo / "plots" / "train_dit" / "loss.csv").open()))
    assert [int(r["step"]) for r in rows] == list(range(1, 25))
    assert all(math.isfinite(float(r["loss"])) for r in rows)
    diff = [float(r["diff"]) for r in rows]
    first, last = sum(diff[:8]) / 8, sum(diff[-8:]) / 8
    assert last < first, f"diffusion loss did not fall: first 8 steps {first:.4f}, last 8 {last:.4f}"

    ablate = _metrics(repo, "ablate@track_static")
    assert ablate["steps"] == 3 and ablate["resumed_from"] is None and _finite(ablate["loss_diff"])

    ev = _metrics(repo, "evaluate")
    assert ev["prompts"] == 2
    for key, value in ev.items():  # every metric has a value or says why it has none
        if value is None and not key.endswith("_reason"):
            assert ev.get(f"{key}_reason"), f"evaluate: {key} is null without {key}_reason"
    assert ev["fvd_i3d"] is None and ev["fvd_i3d_reason"]  # no I3D weights offline
    assert _finite(ev["fd_effnet_frames"]), ev.get("fd_effnet_frames_reason")
    assert (repo / "reports" / "eval" / "index.html").is_file()

    reg = _metrics(repo, "register")
    assert reg["model_version"] == 1 and reg["promoted"] is True and reg["alias"] == "champion"


@pytest.mark.timeout(900)
def test_champion_loads_in_a_fresh_process_and_generates(reproduced, tmp_path):
    repo, env, _ = reproduced
    out = tmp_path / "champion.mp4"
    fresh = {**env, "MLFLOW_TRACKING_URI": f"sqlite:///{repo / 'mlflow.db'}"}
    proc = _sh(
        [str(BIN / "mosa"), "generate", "a person walks forward", "--model", "models:/mosa-dit@champion",
         "--steps", "2", "--out", str(out)],
        tmp_path, fresh, timeout=900,
    )  # fmt: skip
    assert "frames ->" in proc.stdout
    import imageio.v3 as iio

    frames = iio.imread(out)
    assert frames.ndim == 4 and frames.shape[0] >= 9 and frames.std() > 0


@pytest.mark.timeout(600)
def test_second_repro_is_a_no_op(reproduced):
    repo, env, _ = reproduced
    second = _sh([str(BIN / "dvc"), "repro"], repo, env)
    assert "Data and pipelines are up to date" in second.stdout, second.stdout[-2000:]
    assert "Running stage" not in second.stdout


@pytest.mark.timeout(1800)
def test_forced_rerun_resumes_every_training_stage_at_its_last_step(reproduced):
    """Unchanged inputs: the run resumes its own final checkpoint (pretrain_motion's resume is checked
    by tests/flows/test_pretrain_motion_flow.py)."""
    repo, env, _ = reproduced
    _sh([str(BIN / "dvc"), "repro", "--force", "--single-item", *TRAINING[1:]], repo, env)
    for stage in TRAINING[1:]:
        metrics = _metrics(repo, stage)
        assert metrics["resumed_from"] is not None, stage
        assert metrics["resumed_from"] == {"pretrain_motion": 12, "pretrain_base": 4, "train_dit": 24,
                                           "ablate@track_static": 3}[stage], stage  # fmt: skip


# a dep of each training stage outside the files it hashed before (its old hand-picked list)
EDITS = {
    "pretrain_motion": "components/motion/t2m_metrics.py",
    "pretrain_base": "components/training/engine.py",
    "train_dit": "components/losses/tracking.py",
    "ablate@track_static": "components/losses/tracking.py",
}


@pytest.mark.timeout(2400)
def test_a_comment_in_an_imported_file_makes_the_stage_start_over(reproduced):
    repo, env, _ = reproduced
    for rel in sorted(set(EDITS.values())):
        path = repo / rel
        path.write_text(path.read_text() + "\n# edited: the stages importing this retrain\n")
    for stage, rel in EDITS.items():
        status = _sh([str(BIN / "dvc"), "status", stage], repo, env).stdout
        declared = [rel, *(str(p) for p in Path(rel).parents)]
        assert any(re.search(rf"modified:\s+{re.escape(d)}\n", status) for d in declared), (
            status
        )  # DVC sees it ...
    _sh([str(BIN / "dvc"), "repro", "--single-item", *EDITS], repo, env)
    for stage in EDITS:
        metrics = _metrics(repo, stage)
        assert metrics["resumed_from"] is None, (stage, metrics["resumed_from"])  # ... and trains anew
    dit = _metrics(repo, "train_dit")
    rows = list(csv.DictReader((repo / "plots" / "train_dit" / "loss.csv").open()))
    assert dit["steps"] == 24 and len(rows) == 24


def test_param_change_reruns_only_then(repo_copy, reproduced):
    repo, env = repo_copy
    params = (repo / "params.yaml").read_text()
    (repo / "params.yaml").write_text(params.replace("max_clips_per_video: 2", "max_clips_per_video: 1"))
    status = _sh([str(BIN / "dvc"), "status"], repo, env)
    assert "ingest" in status.stdout and "params.yaml" in status.stdout
    _sh([str(BIN / "dvc"), "repro", "--single-item", "ingest"], repo, env)
    metrics = json.loads((repo / "metrics" / "ingest.json").read_text())
    assert metrics["clips_kept_by_kind"]["demo"] <= 1  # one clip per video at most now
    status = _sh([str(BIN / "dvc"), "status", "ingest"], repo, env)
    assert "ingest:" not in status.stdout, status.stdout
