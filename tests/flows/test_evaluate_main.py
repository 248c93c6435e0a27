"""``python -m flows.evaluate`` end to end on a tiny pipeline: a metric that raises and is not in
``evaluate.optional_metrics`` fails the stage (exit 1, the metric and its error on stderr); listed there
it is recorded as null with the error as its reason; the noise floor of ``fd_effnet_frames`` is written
beside it. The failing metric is real: ``fvd_i3d`` given a loadable TorchScript "I3D" that returns one
number per clip instead of a feature vector (a misconfigured model, not a missing one).

The same successful run measures the person metrics over two seeds on the prompt set, on clips generated
from held-out annotated skeletons, with the base alone and on the real clips, and writes them (mean,
spread, per-seed detail) with the report's detected-keypoint overlays."""

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
    from tests.helpers.tiny_pipeline import build_tiny_pipeline

    work = tmp_path_factory.mktemp("evaluate")
    torch.set_num_threads(1)
    build_tiny_pipeline(work / "dit", seed=0)
    torch.jit.script(OneNumberPerClip()).save(str(work / "bad_i3d.pt"))
    params = validate_section(
        "ingest",
        {
            # 2 s of walking/running: from the default 2.6 m the runner leaves the 64x96 frame, and the
            # reference clips must show a whole person
            "sources": [
                {
                    "kind": "synthetic",
                    "clips": 4,
                    "motions": ["walk", "run"],
                    "cameras": ["fixed:distance=3.5"],
                }
            ],
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
    _annotate(work / "ingest", work / "annotate")
    return work


def tiny_annotated_clips(root: Path, frames: int, height: int, width: int, fps: float) -> None:
    """Four synthetic walk/run clips from the default camera, ingested into ``root/ingest`` and
    annotated into ``root/annotate`` (what train_dit reads), at the given clip size."""
    params = validate_section(
        "ingest",
        {
            "sources": [{"kind": "synthetic", "clips": 4, "motions": ["walk", "run"], "cameras": ["fixed"]}],
            "clip": {
                "frames": frames, "stride": frames, "fps": fps, "height": height, "width": width,
                "max_clips_per_video": 1,
            },
        },
    )  # fmt: skip
    rows = [r for p in ing.plan(params) for r in ing.process(p, params, root / "ingest")]
    write_manifest(to_manifest(rows), root / "ingest" / "manifest.parquet")
    _annotate(root / "ingest", root / "annotate")


def _annotate(ingest_dir: Path, annotate_dir: Path) -> None:
    """The annotate stage's outputs (annotations, skeleton videos, table) for every ingest clip."""
    import pandas as pd

    from components.annotation import annotate as an
    from components.annotation.config import AnnotateParams

    ap = AnnotateParams(input=ingest_dir, output=annotate_dir)
    ann = an.build_annotators(ap)
    manifest = pd.read_parquet(ingest_dir / "manifest.parquet")
    out = [an.annotate_clip(r, ap, ingest_dir, annotate_dir, ann) for r in manifest.to_dict("records")]
    assert sum(r["status"] == "kept" for r in out) >= 2, [r.get("reason") for r in out]
    pd.DataFrame(out).to_parquet(annotate_dir / "annotations.parquet")


PERSON = ["person_detect_rate", "skeleton_alignment_pck"]
SETS = ["", "_base", "_from_skeleton", "_from_skeleton_base"]
METRICS = ["fd_effnet_frames", "fd_effnet_frames_reference", "fvd_i3d", "pose_confidence", *PERSON]


def _params(work: Path, optional: list[str]) -> str:
    return textwrap.dedent(
        f"""
        evaluate:
          pipeline: {work / "dit"}
          ingest: {work / "ingest"}
          annotate: {work / "annotate"}
          limit: 2
          steps: 1
          seeds: [0, 1]
          skeleton_clips: 2
          metrics: {json.dumps(METRICS)}
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
    _check_person_metrics(work, metrics)


def _check_person_metrics(work: Path, metrics: dict) -> None:
    """Every person metric of every clip set: a value in [0, 1] over 2 seeds × 2 clips × 9 frames, its
    spread, its per-seed values in metrics_detail.json; the real clips once; the report's overlays."""
    detail = json.loads((work / "rep" / "metrics_detail.json").read_text())
    for name in PERSON:
        for suffix in SETS:
            key = f"{name}{suffix}"
            assert metrics[key] is not None and 0.0 <= metrics[key] <= 1.0, (
                key,
                metrics.get(f"{key}_reason"),
            )
            assert metrics[f"{key}_sd"] is not None and metrics[f"{key}_sd"] >= 0.0
            per_seed = detail[key]["per_seed"]
            assert sorted(per_seed) == ["0", "1"] and detail[key]["seeds"] == [0, 1]
            values = [per_seed[s]["value"] for s in ("0", "1")]
            assert metrics[key] == pytest.approx(sum(values) / 2)
        # the reference row: the real clips, measured once (no seed, no spread)
        assert metrics[f"{name}_reference"] is not None and f"{name}_reference_sd" not in metrics
    for suffix in SETS:  # every frame of every clip is judged for a person
        assert metrics[f"person_detect_rate{suffix}_frames"] == 2 * 2 * 9
    assert metrics["person_detect_rate_reference_frames"] == 2 * 9
    # real renders of a person show one more often than random-weight generations do
    assert metrics["person_detect_rate_reference"] > metrics["person_detect_rate_from_skeleton"]
    assert metrics["seeds"] == 2 and metrics["added_generations"] == 2 + 2 * (2 + 2 * 2)
    assert metrics["added_generation_seconds"] > 0 and detail["timing"]["added_clips"] == 14
    page = (work / "rep" / "index.html").read_text()
    assert "From held-out skeletons" in page and "person_detect_rate_from_skeleton_base" in page
    gifs = {p.name for p in (work / "rep" / "clips").glob("*.gif")}
    assert {"000_detected.gif", "000_base_alone.gif", "skel000_real.gif", "skel001_detected.gif"} <= gifs


def test_held_out_clips_fit_the_pipeline_or_are_set_aside(work):
    from components.evaluation.run import held_out_clips

    clips, aside = held_out_clips(work / "ingest", work / "annotate", 2, "2d", 9, 32, 48)
    assert len(clips) == 2 and not aside
    assert {c.source for c in clips} == {"truth3d"}  # rendered clips: PCK against the exact projection
    for c in clips:
        assert c.skeleton.shape == c.video.shape == (9, 32, 48, 3) and c.redrawn
        assert c.source == ("truth3d" if c.clip_id.startswith("synthetic") else "pose2d")
        ok = c.confidence >= 0.3
        assert ok.any() and (c.keypoints[ok] >= -0.5).all()
        assert (c.keypoints[ok][:, 0] <= 47.5).all() and (c.keypoints[ok][:, 1] <= 31.5).all()
        assert c.skeleton.any() and c.prompt
    none, aside = held_out_clips(work / "ingest", work / "annotate", 2, "2d", 100, 32, 48)
    assert none == [] and aside and all("17 frames, the pipeline generates 100" in a["reason"] for a in aside)


def test_optional_metrics_param_is_a_list_of_names():
    assert validate_section("evaluate", {}).optional_metrics == []
    assert validate_section("evaluate", {"optional_metrics": ["clipsim"]}).optional_metrics == ["clipsim"]
    with pytest.raises(ConfigError, match="optional_metrics"):
        validate_section("evaluate", {"optional_metrics": "clipsim"})


def test_seeds_and_skeleton_clips_params():
    default = validate_section("evaluate", {})
    assert (
        default.seeds == [0, 1, 2]
        and default.skeleton_clips == 8
        and str(default.annotate) == "data/annotate"
    )
    assert validate_section("evaluate", {"seeds": [3], "skeleton_clips": 0}).seeds == [3]
    for bad in ({"seeds": []}, {"seeds": [1, 1]}, {"skeleton_clips": -1}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            validate_section("evaluate", bad)
