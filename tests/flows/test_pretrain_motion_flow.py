"""The pretrain_motion stage end to end on the real mocap motion set with tiny sizes: model, metrics
and curves are written, a rerun resumes from its final checkpoint, and `mosa motion` uses the model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from components.data.config import SyntheticSource
from components.data.synthetic_source import write_motion_set

REPO = Path(__file__).resolve().parents[2]
REQUIRED = (
    "fid", "r_precision_top1", "r_precision_top3", "mm_dist", "diversity", "recon_mpjpe_mm",
    "foot_skate_ratio", "gt_fid", "gt_r_precision_top3", "gt_diversity", "multimodality",
    "zero_stage", "world_size", "resumed_from", "gt_other_clips_fid",
)  # fmt: skip


def _env(work: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_"))}
    env.update(
        PYTHONPATH=str(REPO),
        PREFECT_HOME=str(work / ".prefect"),
        MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING="false",
    )
    return env


def _run(work: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=work, env=_env(work), capture_output=True, text=True, timeout=900
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    work = tmp_path_factory.mktemp("pretrain_motion")
    write_motion_set([SyntheticSource(clips=1)], work / "data")
    (work / "params.yaml").write_text(
        textwrap.dedent(
            """
            pretrain_motion:
              input: data/motions
              window: 16
              variants: {enabled: false}
              vqvae: {codebook_size: 32, width: 32, code_dim: 32, depth: 1}
              generator: {codebook_size: 32, dim: 32, layers: 1, heads: 2}
              evaluator: {hidden_dim: 32, embed_dim: 16}
              train_vqvae: {steps: 12, batch_size: 8, warmup_steps: 2, checkpoint_every: 5}
              train_generator: {steps: 12, batch_size: 8, warmup_steps: 2, checkpoint_every: 5}
              evaluation: {window: 8, stride: 4, replications: 2, mm_prompts: 2, mm_samples: 2,
                           evaluator_steps: 10}
            """
        )
    )
    first = _run(work, "-m", "flows.pretrain_motion")
    metrics = (
        json.loads((work / "metrics" / "pretrain_motion.json").read_text()) if first.returncode == 0 else {}
    )
    return work, first, metrics


def test_stage_trains_evaluates_and_saves(trained):
    work, proc, metrics = trained
    assert proc.returncode == 0, proc.stderr[-3000:]
    for key in REQUIRED:
        assert key in metrics, key
    assert metrics["zero_stage"] == 2 and metrics["world_size"] == 1 and metrics["resumed_from"] is None
    assert metrics["test_motions"] > 0 and metrics["eval_samples"] >= 32
    assert 0 <= metrics["r_precision_top3"] <= 1 and metrics["fid"] >= 0
    assert metrics["gt_other_clips_fid"] > 0 and metrics["other_clips_windows"] > 0
    model = work / "models" / "motion"
    for f in ("config.json", "vqvae.safetensors", "generator.safetensors", "stats.npz"):
        assert (model / f).is_file(), f
    assert (model / "evaluator" / "evaluator.safetensors").is_file()
    # three seeded evaluators (the default): all saved, metrics are their mean with a spread
    assert metrics["evaluators"] == 3
    for k in (1, 2):
        assert (model / f"evaluator_{k}" / "evaluator.safetensors").is_file()
    assert metrics["r_precision_top3_evaluator_sd"] >= 0 and metrics["recon_fid"] >= 0
    curve = (work / "plots" / "pretrain_motion" / "vqvae_loss.csv").read_text().splitlines()
    assert curve[0].startswith("step,") and len(curve) == 13
    assert (work / "reports" / "pretrain_motion" / "prompts_grid.png").stat().st_size > 1000
    assert "our evaluator on our data" in (work / "reports" / "pretrain_motion" / "summary.md").read_text()


def test_rerun_resumes_from_the_final_checkpoint(trained):
    work, first, before = trained
    assert first.returncode == 0, first.stderr[-3000:]
    again = _run(work, "-m", "flows.pretrain_motion")
    assert again.returncode == 0, again.stderr[-3000:]
    metrics = json.loads((work / "metrics" / "pretrain_motion.json").read_text())
    assert metrics["resumed_from"] == 12
    # the loss history comes back from the checkpoint: final losses and curves as in the first run
    for key in ("vqvae_final_loss", "generator_final_loss"):
        assert metrics[key] is not None and metrics[key] == before[key], key
    # a resumed run measures what the first run measured (same evaluators, same generations)
    for key in ("r_precision_top3", "gt_r_precision_top3", "fid", "recon_fid", "diversity"):
        assert metrics[key] == pytest.approx(before[key], rel=1e-4), key
    curve = (work / "plots" / "pretrain_motion" / "generator_loss.csv").read_text().splitlines()
    assert len(curve) == 13
    ckpts = [p for p in (work / "checkpoints" / "pretrain_motion").iterdir() if p.is_dir()]
    assert len(ckpts) == 1  # one fingerprint folder: this run's


def test_mosa_motion_cli_writes_joints_and_video_reproducibly(trained):
    work, first, _ = trained
    assert first.returncode == 0
    outs = []
    for name in ("a.mp4", "b.mp4"):
        proc = _run(
            work, "-m", "flows.cli", "motion", "a person does a cartwheel", "--frames", "24",
            "--camera", "orbit", "--seed", "3", "--out", name, "--height", "64", "--width", "96",
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-2000:]
        outs.append(np.load(work / name.replace(".mp4", ".npy")))
        assert (work / name).stat().st_size > 0
    assert outs[0].shape == (24, 22, 3) and np.isfinite(outs[0]).all()
    np.testing.assert_array_equal(outs[0], outs[1])


def test_mosa_motion_cli_sampling_options_reach_the_sampler(trained):
    """--top-k 1 is greedy: different seeds give one motion; --fill is validated by name."""
    work, first, _ = trained
    assert first.returncode == 0
    outs = []
    for seed in ("1", "2"):
        name = f"greedy{seed}.mp4"
        proc = _run(
            work, "-m", "flows.cli", "motion", "a person runs", "--frames", "16", "--seed", seed,
            "--top-k", "1", "--fill", "continue", "--out", name, "--height", "64", "--width", "96",
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-2000:]
        outs.append(np.load(work / name.replace(".mp4", ".npy")))
    np.testing.assert_array_equal(outs[0], outs[1])
    bad = _run(work, "-m", "flows.cli", "motion", "a person runs", "--fill", "loop")
    assert bad.returncode != 0 and "invalid choice: 'loop'" in bad.stderr
