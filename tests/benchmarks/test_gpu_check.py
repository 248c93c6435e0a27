"""`make gpu-check` (benchmarks/gpu_check.py): FLOP accounting under checkpointing, the frame fallback
schedule, the command line, and one `--tiny` CPU run with an injected out-of-memory error that must fall
back to fewer frames and report every figure from the real training step."""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from benchmarks import gpu_check as gc

ROOT = Path(__file__).resolve().parents[2]
TERMS = ("diff", "mask", "track", "contact")


class _Net(nn.Module):
    """A linear layer, then a checkpointed linear-GELU-linear block."""

    def __init__(self, checkpointed: bool) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.first = nn.Linear(32, 32)
        self.block = nn.Sequential(nn.Linear(32, 32), nn.GELU(), nn.Linear(32, 32))
        self.checkpointed = checkpointed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.first(x)
        return checkpoint(self.block, x, use_reentrant=False) if self.checkpointed else self.block(x)


def _count(checkpointed: bool) -> dict[str, int]:
    net, x = _Net(checkpointed), torch.randn(4, 32)
    flops = gc.StepFlops()
    flops.begin()
    loss = net(x).sum()
    flops.forward_done()
    loss.backward()
    flops.end()
    flops.end()  # a second end (the error path calls it again) changes nothing
    return flops.figures()


def test_model_flops_leave_checkpoint_recomputation_out() -> None:
    plain, ckpt = _count(False), _count(True)
    assert plain["recompute"] == 0 and plain["model"] == plain["hardware"] > 0
    # the recomputation is real work the hardware does (the first linear of the block, re-run) ...
    assert ckpt["recompute"] == 2 * 4 * 32 * 32
    assert ckpt["hardware"] == plain["hardware"] + ckpt["recompute"]
    # ... and the model FLOPs are exactly those of the same step without checkpointing
    assert ckpt["model"] == plain["model"]
    assert ckpt["forward"] == plain["forward"]


def test_fused_cpu_attention_is_counted() -> None:
    q = torch.randn(1, 2, 16, 8, requires_grad=True)
    flops = gc.StepFlops()
    flops.begin()
    loss = nn.functional.scaled_dot_product_attention(q, q, q).sum()
    flops.forward_done()
    loss.backward()
    flops.end()
    f = flops.figures()
    assert f["forward"] == 2 * (2 * 2 * 16 * 8 * 16)  # q·kᵀ and scores·v, per head
    assert f["backward"] > f["forward"]


def test_fallback_frames_shrink_to_one_frame_group() -> None:
    assert gc.fallback_frames(49, 8) == [49, 33, 17, 9]
    assert gc.fallback_frames(81, 4) == [81, 53, 33, 21, 13, 9, 5]
    assert gc.fallback_frames(9, 8) == [9]
    with pytest.raises(ValueError, match="frames must be 8N"):
        gc.fallback_frames(48, 8)


def test_out_of_memory_errors_are_recognised() -> None:
    assert gc.is_oom(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert gc.is_oom(RuntimeError("CUDA error: out of memory"))
    assert not gc.is_oom(RuntimeError("Input type (float) and bias type (c10::BFloat16) should be the same"))
    assert not gc.is_oom(ValueError("out of memory"))


def test_command_line_writes_metrics_only_for_real_runs() -> None:
    cfg, out = gc.parse_args([])
    assert not cfg.tiny and out == ROOT / "metrics" / "gpu_check.json" and cfg.steps == 3
    assert cfg.profiles == gc.DEFAULT_PROFILES
    cfg, out = gc.parse_args(["--tiny"])
    assert cfg.tiny and out is None and cfg.threads == 1
    cfg, out = gc.parse_args(["--tiny", "--out", "x.json", "--fake-oom-above", "9"])
    assert out == Path("x.json") and cfg.fake_oom_above == 9


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without CUDA")
def test_a_full_run_without_cuda_says_what_to_do() -> None:
    with pytest.raises(SystemExit, match=r"no CUDA device.*--tiny"):
        gc.run(gc.GpuCheckConfig())


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> tuple[dict, str]:
    """One `--tiny` run in its own process, with a fake OOM above 9 frames (both models start at 17)."""
    out = tmp_path_factory.mktemp("gpu-check") / "report.json"
    metrics = ROOT / gc.DEFAULT_OUT
    before = metrics.stat().st_mtime_ns if metrics.exists() else None
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu_check", "--tiny", "--out", str(out), "--fake-oom-above", "9"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    after = metrics.stat().st_mtime_ns if metrics.exists() else None
    assert after == before, "a tiny run must not touch metrics/gpu_check.json"
    return json.loads(out.read_text()), proc.stdout


def test_tiny_run_falls_back_to_fewer_frames_and_says_so(tiny_run) -> None:
    report, stdout = tiny_run
    assert report["mode"] == "tiny" and report["device"] == "cpu"
    assert set(report["models"]) == {"cogvideox-5b", "wan2.1-1.3b"}
    for name, m in report["models"].items():
        assert m["status"] == "ok", (name, m["reason"])
        assert m["frames_requested"] == 17 and m["frames"] == 9
        assert [f["frames"] for f in m["fallbacks"]] == [17]
        assert "fake out of memory" in m["fallbacks"][0]["error"]
        assert "figures are for 9 frames" in m["reason"]
        assert f"{name}: out of memory at 17 frames" in stdout
        assert f"{name}: out of memory at 17 frames (OutOfMemoryError" in stdout
        assert "retrying with 9 frames" in stdout


def test_tiny_run_losses_are_the_four_terms_of_the_training_step(tiny_run) -> None:
    report, _ = tiny_run
    for name, m in report["models"].items():
        assert m["steps"] == 3 and [r["step"] for r in m["losses"]] == [1, 2, 3], name
        for r in m["losses"]:
            assert all(math.isfinite(r[k]) for k in (*TERMS, "total", "loss"))
            # Eq. 9 with the paper's weights (LossWeights defaults), as components.losses.total combines it
            expected = r["diff"] + 0.001 * r["mask"] + 0.01 * r["track"] + 10.0 * r["contact"]
            assert r["total"] == pytest.approx(expected, rel=1e-4)
            assert r["loss"] == pytest.approx(r["total"], rel=1e-4)
            assert r["diff"] > 0 and r["mask"] > 0 and r["track"] > 0 and r["contact"] >= 0
            assert r["grad_norm"] > 0
        # the depth network's output varies, so the scene has a hull and the contact term is live
        assert any(r["contact"] > 0 for r in m["losses"]), name
        assert all(r["contact_degenerate"] == 0 for r in m["losses"])


def test_tiny_run_reports_memory_against_the_planner(tiny_run) -> None:
    report, _ = tiny_run
    for name, m in report["models"].items():
        mem = m["memory"]
        plan = mem["planner"]
        assert mem["planned_gib"] > 0 and plan["predicted_gib"] == mem["planned_gib"], name
        assert plan["setting"].startswith("9x32x48, 1 GPU, ZeRO-2")
        # the planner planned the model that trained
        assert plan["trainable"] == m["parameters"]["trainable"] > 0
        assert plan["frozen"] == m["parameters"]["frozen_transformer"] > 0
        # CPU: no CUDA allocation figures; RSS instead, the ratio null with a reason
        assert mem["measured_peak_allocated_gib"] is None and mem["measured_over_planned"] is None
        assert "CUDA" in mem["reason"] and mem["peak_rss_gib_sampled"] > 0.05
        assert set(mem["first_update_points_gib"]) == {
            "after_dit_forward",
            "after_loss_forward",
            "after_first_update",
        }


def test_tiny_run_reports_step_time_and_mfu_from_counted_flops(tiny_run) -> None:
    report, _ = tiny_run
    peak = report["matmul_peak_tflops"]
    assert peak > 0 and "torch.matmul" in report["matmul_peak_is"]
    assert "FlopCounterMode" in report["flops_method"]
    cog = report["models"]["cogvideox-5b"]
    assert cog["gradient_checkpointing"]["vae_decoder"] is True
    assert cog["flops_per_step"]["recompute"] > 0  # the checkpointed VAE decoder re-runs its blocks
    for name, m in report["models"].items():
        f = m["flops_per_step"]
        assert f["hardware"] == f["forward"] + f["backward"] == f["model"] + f["recompute"], name
        assert f["forward"] > 0 and f["backward"] > 0
        assert len(m["step_times_s"]) == 3 and all(s > 0 for s in m["step_times_s"])
        assert m["step_time_s"] == pytest.approx(statistics.median(m["step_times_s"][1:]), rel=2e-3)
        model_tflops = f["model"] / m["step_time_s"] / 1e12
        assert m["model_tflops_per_s"] == pytest.approx(model_tflops, rel=2e-3)
        assert m["mfu"] == pytest.approx(model_tflops / peak, rel=5e-3)
        assert 0 < m["mfu"] <= m["hfu"]
        assert m["latent_shape"][0] == 3  # 9 frames -> 3 latent frames
        f_lat, _, h, w = m["latent_shape"]
        assert m["video_tokens"] == f_lat * (h // 2) * (w // 2) and m["text_tokens"] == 8
