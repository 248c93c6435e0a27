"""``python -m flows.evaluate`` end to end on a tiny pipeline: a metric that raises and is not in
``evaluate.optional_metrics`` fails the stage (exit 1, the metric and its error on stderr); listed there
it is recorded as null with the error as its reason; the noise floor of ``fd_effnet_frames`` is written
beside it. The failing metric is real: ``fvd_i3d`` given a loadable TorchScript "I3D" that returns one
number per clip instead of a feature vector (a misconfigured model, not a missing one)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from components.config import ConfigError, validate_section
from components.data import ingest as ing
from components.io.manifest import to_manifest, write_manifest

REPO = Path(__file__).resolve().parents[2]


class OneNumberPerClip(torch.nn.Module):
    """A loadable TorchScript model with the wrong output: [B] instead of I3D's [B,D] features."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(1, 2, 3, 4))


def _run(work: Path, params: str) -> subprocess.CompletedProcess:
    (work / "params.yaml").write_text(params)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_"))}
    env.update(
        PYTHONPATH=str(REPO),
        PREFECT_HOME=str(work / ".prefect"),
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="180",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING="false",
        HF_HUB_OFFLINE="1",
    )
    return subprocess.run(
        [sys.executable, "-m", "flows.evaluate"],
        cwd=work, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A tiny random-weight pipeline, 4 held-out synthetic clips and the wrong-output "I3D" file."""
    from components.dit.pipeline import build_tiny_pipeline

    work = tmp_path_factory.mktemp("evaluate")
    torch.set_num_threads(1)
    build_tiny_pipeline(work / "dit", seed=0)
    torch.jit.script(OneNumberPerClip()).save(str(work / "bad_i3d.pt"))
    params = validate_section(
        "ingest",
        {
            "sources": [{"kind": "synthetic", "clips": 4, "motions": ["walk", "run"], "cameras": ["fixed"]}],
            "clip": {
                "frames": 17,
                "stride": 17,
                "fps": 8,
                "height": 64,
                "width": 96,
                "max_clips_per_video": 1,
            },
            "val_fraction": 0.99,  # every clip held out: they are the reference clips
        },
    )
    rows = [r for p in ing.plan(params) for r in ing.process(p, params, work / "ingest")]
    write_manifest(to_manifest(rows), work / "ingest" / "manifest.parquet")
    return work


def _params(work: Path, optional: list[str]) -> str:
    return textwrap.dedent(
        f"""
        evaluate:
          pipeline: {work / "dit"}
          ingest: {work / "ingest"}
          limit: 2
          steps: 1
          metrics: [fd_effnet_frames, fd_effnet_frames_reference, fvd_i3d, pose_confidence]
          optional_metrics: {json.dumps(optional)}
          i3d_path: {work / "bad_i3d.pt"}
          motion_metrics: {work / "no_motion_metrics.json"}
          reports: rep
          ablations: {work / "no_ablations"}
        """
    )


def test_a_failing_metric_fails_the_stage_unless_it_is_optional(work):
    failed = _run(work, _params(work, []))
    assert failed.returncode == 1, failed.stderr[-3000:]
    assert "metric 'fvd_i3d' failed: ValueError: the I3D model must return [B,D]" in failed.stderr
    assert "evaluate.optional_metrics" in failed.stderr
    assert not (work / "metrics" / "evaluate.json").exists()  # no metrics from a failed stage

    ok = _run(work, _params(work, ["fvd_i3d"]))
    assert ok.returncode == 0, ok.stderr[-3000:]
    metrics = json.loads((work / "metrics" / "evaluate.json").read_text())
    assert metrics["fvd_i3d"] is None
    assert metrics["fvd_i3d_reason"].startswith("error: ValueError: the I3D model must return [B,D]")
    floor = metrics["fd_effnet_frames_reference"]
    assert floor is not None and 0 <= floor < metrics["fd_effnet_frames"]  # noise clips vs real renders
    assert metrics["pose_confidence_frames"] == 2 * 9  # 2 generated clips of 9 frames, every one scored
    assert "fd_effnet_frames_reference_reason" not in metrics and "fvd_i3d_frames" not in metrics


def test_optional_metrics_param_is_a_list_of_names():
    assert validate_section("evaluate", {}).optional_metrics == []
    assert validate_section("evaluate", {"optional_metrics": ["clipsim"]}).optional_metrics == ["clipsim"]
    with pytest.raises(ConfigError, match="optional_metrics"):
        validate_section("evaluate", {"optional_metrics": "clipsim"})
