"""`dvc repro` on a copy of the repository with the default params made small (fewer synthetic clips,
a few training steps): every stage runs in order, the second repro has nothing to do.
`make run` runs the same stages at full default size."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _sh(cmd: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc


SMALL = {
    # a few training steps per phase: the stages' mechanics, not their quality
    "pretrain_motion": {
        "train_vqvae": {"steps": 20, "warmup_steps": 2, "checkpoint_every": 10},
        "train_generator": {"steps": 20, "warmup_steps": 2, "checkpoint_every": 10},
        "evaluation": {"replications": 2, "mm_prompts": 2, "mm_samples": 2, "evaluator_steps": 20},
    },
    "pretrain_base": {
        "vae": {"steps": 6, "batch_size": 2, "warmup_steps": 1, "checkpoint_every": 3},
        "dit": {"steps": 6, "batch_size": 2, "warmup_steps": 1, "checkpoint_every": 3},
        "depth": {"steps": 6, "batch_size": 2, "warmup_steps": 1, "checkpoint_every": 3},
        "samples": {"steps": 2},
    },
    "train_dit": {
        "steps": 4,
        "batch_size": 2,
        "warmup_steps": 1,
        "checkpoint_every": 2,
        "aux_every": 2,
        "follow": {"clips": 2, "steps": 2},
    },
    "evaluate": {"limit": 2, "steps": 2, "reference_clips": 2},
}


def _merge(dst: dict, patch: dict) -> None:
    for k, v in patch.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _merge(dst[k], v)
        else:
            dst[k] = v


def _shrink_params(path: Path) -> None:
    import yaml

    params = yaml.safe_load(path.read_text())
    _merge(params, SMALL)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.fixture(scope="module")
def repo_copy(tmp_path_factory) -> tuple[Path, dict]:
    dst = tmp_path_factory.mktemp("repo") / "mosa"
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for rel in filter(None, (f.decode() for f in files)):
        src = REPO / rel
        if src.is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)
    _shrink_params(dst / "params.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_"))}
    env.update(
        PATH=f"{BIN}:{env['PATH']}",
        PREFECT_HOME=str(dst / ".prefect"),
        MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING="false",
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@t",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@t",
    )
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "copy"]):
        _sh(cmd, dst, env)
    return dst, env


@pytest.mark.timeout(4000)
@pytest.mark.slow  # every stage end to end (~15 min on 2 cores): `make test-all`
def test_repro_runs_ingest_on_demo_videos_then_is_up_to_date(repo_copy):
    repo, env = repo_copy
    _sh([str(BIN / "dvc"), "repro"], repo, env)
    metrics = json.loads((repo / "metrics" / "ingest.json").read_text())
    assert metrics["clips_kept"] >= 1
    assert metrics["videos_seen"] >= 1
    import pandas as pd

    manifest = pd.read_parquet(repo / "data" / "ingest" / "manifest.parquet")
    kept = manifest[manifest.status == "kept"]
    assert len(kept) == metrics["clips_kept"]
    # both sources of the default: real demo videos and rendered synthetic humans, counted apart
    assert metrics["clips_kept_by_kind"]["demo"] >= 1 and metrics["clips_kept_by_kind"]["synthetic"] >= 1
    assert set(kept.source_kind) == {"demo", "synthetic"}
    assert "sports2d" in " ".join(kept.source)
    synthetic = kept[kept.source_kind == "synthetic"]
    assert synthetic.ground_truth_path.notna().all()
    assert all((repo / "data" / "ingest" / p).is_file() for p in synthetic.ground_truth_path)
    assert metrics["motions"] == 40  # 20 DeepMimic clips and their mirror images
    assert (repo / "data" / "ingest" / "motions" / "stats.npz").is_file()

    annotate = json.loads((repo / "metrics" / "annotate.json").read_text())
    assert annotate["clips_in"] == metrics["clips_kept"]  # annotate ran on every kept ingest clip
    assert annotate["clips_annotated"] >= 1 and annotate["pose_pck_synthetic"] is not None

    motion = json.loads((repo / "metrics" / "pretrain_motion.json").read_text())
    assert motion["zero_stage"] == 2 and motion["eval_samples"] >= 32
    assert (repo / "models" / "motion" / "generator.safetensors").is_file()

    base = json.loads((repo / "metrics" / "pretrain_base.json").read_text())
    assert base["clips_train"] >= 1 and (repo / "models" / "base" / "base.json").is_file()
    dit = json.loads((repo / "metrics" / "train_dit.json").read_text())
    for key in ("steps", "loss_diffusion", "loss_mask", "loss_track", "loss_contact", "samples_per_sec",
                "zero_stage", "world_size", "resumed_from"):  # fmt: skip
        assert key in dit, key
    assert dit["steps"] == 4 and dit["zero_stage"] == 2
    assert (repo / "models" / "dit" / "pipeline.json").is_file()
    ev = json.loads((repo / "metrics" / "evaluate.json").read_text())
    assert ev["prompts"] == 2 and ev["fvd_i3d"] is None and ev["fd_effnet_frames"] is not None
    assert (repo / "reports" / "eval" / "index.html").is_file()
    reg = json.loads((repo / "metrics" / "register.json").read_text())
    assert reg["model_version"] == 1 and reg["promoted"] is True and reg["alias"] == "champion"
    assert "fd_effnet_frames" in (repo / "reports" / "register" / "decision.md").read_text()

    second = _sh([str(BIN / "dvc"), "repro"], repo, env)
    assert "Data and pipelines are up to date" in second.stdout
    status = _sh([str(BIN / "dvc"), "status"], repo, env)
    assert "up to date" in status.stdout


def test_param_change_reruns_only_then(repo_copy):
    repo, env = repo_copy
    params = (repo / "params.yaml").read_text()
    (repo / "params.yaml").write_text(params.replace("max_clips_per_video: 8", "max_clips_per_video: 1"))
    status = _sh([str(BIN / "dvc"), "status"], repo, env)
    assert "ingest" in status.stdout and "params.yaml" in status.stdout
    # only the stage whose params changed (a full repro is the slow test above)
    _sh([str(BIN / "dvc"), "repro", "--single-item", "ingest"], repo, env)
    metrics = json.loads((repo / "metrics" / "ingest.json").read_text())
    assert metrics["clips_kept"] + metrics["clips_filtered"] <= metrics["videos_seen"]
    assert metrics["clips_kept"] <= metrics["videos_seen"]  # one clip per video at most now
    status = _sh([str(BIN / "dvc"), "status", "ingest"], repo, env)
    assert "ingest:" not in status.stdout, status.stdout
