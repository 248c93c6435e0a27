"""Training benchmark: FLOP counting, optimizer-state and model-state accounting on known answers, a
tiny bf16 memory run against the planner's model-state count, then one run of every measurement at the
smallest settings (consistent ratios, ZeRO-2 halves the optimizer state)."""

from __future__ import annotations

import json

import psutil
import pytest
import torch
import yaml
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from benchmarks import train as tb
from benchmarks._rank_memory import (
    ModelStateProbe,
    base_optimizer,
    live_tensor_bytes,
    make_mlp,
    optimizer_state_bytes,
)
from components.config.loader import load_section
from components.training.plan import model_state_bytes

SMALL = tb.TrainBenchConfig(
    frames=9,
    height=16,
    width=32,
    clips=2,
    batch=2,
    layers=2,
    heads=2,
    head_dim=16,
    latent_channels=4,
    track_points=8,
    aux_every=2,
    text_tokens=8,
    warmup_steps=1,
    steps=4,
    threads=1,
    mem_width=512,
    mem_depth=2,
    mem_steps=2,
    mem_micro_batch=4,
    matmul_size=256,
    matmul_repeats=2,
)


def _torch_count(fn) -> int:
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops()


def test_conv_backward_flops_count_grouped_convolutions_once() -> None:
    x = torch.randn(2, 12, 9, 9, requires_grad=True)
    w = torch.randn(12, 3, 3, 3, requires_grad=True)
    wt = torch.randn(12, 5, 3, 3, requires_grad=True)
    mapping = {torch.ops.aten.convolution_backward: tb.conv_backward_flops}

    def ours(fn) -> int:
        counter = FlopCounterMode(display=False, custom_mapping=mapping)
        with counter:
            fn()
        return counter.get_total_flops()

    def grouped() -> None:
        nn.functional.conv2d(x, w, groups=4, stride=2).sum().backward()

    def group_by_group() -> None:
        for g in range(4):
            nn.functional.conv2d(x[:, 3 * g : 3 * g + 3], w[3 * g : 3 * g + 3], stride=2).sum().backward()

    # a grouped convolution costs what its groups cost one by one (torch's formula counts 4x the weight grad)
    assert ours(grouped) == _torch_count(group_by_group)
    assert _torch_count(grouped) > ours(grouped)
    # dense and transposed convolutions: the same count as torch's own formula
    for fn in (
        lambda: nn.functional.conv2d(x, w[:, :1].expand(12, 12, 3, 3).contiguous()).sum().backward(),
        lambda: nn.functional.conv_transpose2d(x, wt, stride=2).sum().backward(),
    ):
        assert ours(fn) == _torch_count(fn) > 0


def test_count_train_flops_of_a_linear_layer() -> None:
    model = nn.Linear(8, 4)
    x = torch.randn(3, 8)
    product = 2 * 3 * 8 * 4  # one 3×8 @ 8×4 product, 2 FLOPs per multiply-add
    # forward x·Wᵀ and grad_W; no grad_x for an input that does not require it
    assert tb.count_train_flops(model, lambda m, batch: (m(batch).sum(), {}), x) == 2 * product
    assert all(p.grad is None for p in model.parameters())
    # with grad_x too: three products
    x.requires_grad_(True)
    assert tb.count_train_flops(model, lambda m, batch: (m(batch).sum(), {}), x) == 3 * product


def test_optimizer_state_bytes_of_adamw() -> None:
    model = nn.Linear(10, 10)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    assert optimizer_state_bytes(opt) == 0
    model(torch.randn(2, 10)).sum().backward()
    opt.step()
    # exp_avg + exp_avg_sq in fp32 per element, plus one fp32 step counter per parameter tensor
    assert optimizer_state_bytes(opt) == 2 * 4 * 110 + 4 * 2

    class Wrapper:  # DeepSpeed's ZeRO optimizers keep the torch optimizer in .optimizer
        optimizer = opt

    assert base_optimizer(Wrapper()) is opt
    with pytest.raises(TypeError, match=r"no torch\.optim\.Optimizer found inside str"):
        optimizer_state_bytes("adam")
    with pytest.raises(ValueError, match="width and depth must be >= 1"):
        make_mlp(0, 2)


def test_model_states_count_every_storage_once_at_the_step() -> None:
    model = nn.Linear(16, 8)
    psi = 16 * 8 + 8
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    probe = ModelStateProbe(model, opt)
    model(torch.randn(4, 16)).sum().backward()
    opt.step()
    assert probe.max_bytes == 8 * psi  # first step: weights + gradients; Adam's moments come lazily
    model(torch.randn(4, 16)).sum().backward()
    opt.step()
    # weights + gradients + two moments in fp32, one fp32 step counter per parameter tensor
    assert probe.max_bytes == 16 * psi + 2 * 4
    probe.remove()

    # parameters that are views of one flat buffer (as DeepSpeed's flat groups) count it once; tensors
    # a wrapper holds in lists count too
    flat = torch.zeros(20)
    views = nn.Module()
    views.a = nn.Parameter(flat[:10].view(2, 5))
    views.b = nn.Parameter(flat[10:])
    sgd = torch.optim.SGD(views.parameters(), lr=0.1)

    class Wrapper:
        def __init__(self) -> None:
            self.optimizer = sgd
            self.buckets = [torch.zeros(5, dtype=torch.bfloat16), flat[:3]]

    assert live_tensor_bytes(views, sgd) == 20 * 4
    assert live_tensor_bytes(views, Wrapper()) == 20 * 4 + 5 * 2
    assert make_mlp(8, 2, dtype=torch.bfloat16)[0].weight.dtype == torch.bfloat16


def test_bf16_model_states_match_the_planner_and_zero2_holds_about_half(tmp_path) -> None:
    assert SMALL.mem_precision == "bf16"
    measured = {}
    for stage in (2, 0):
        reports = tb.rank_memory(stage, SMALL, tmp_path / f"stage{stage}")
        assert [r["precision"] for r in reports] == ["bf16", "bf16"]
        measured[stage] = max(r["model_state_bytes"] for r in reports)
        planned = model_state_bytes(reports[0]["parameters"], "bf16", stage, SMALL.mem_ranks)
        assert measured[stage] == pytest.approx(planned, rel=0.15), stage
    # 2 ranks: ZeRO-2 holds 2Ψ + 18Ψ/2 = 11Ψ, stage 0 20Ψ
    assert measured[2] < 0.6 * measured[0]


def test_torch_threads_restores_the_count_and_matmul_peak_is_positive() -> None:
    before = torch.get_num_threads()
    with tb.torch_threads(1) as n:
        assert n == torch.get_num_threads() == 1
        assert tb.matmul_peak_gflops(128, 2) > 0
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="n and repeats must be >= 1"):
        tb.matmul_peak_gflops(0)


def test_a_launch_that_overruns_is_killed_with_a_clear_error(tmp_path) -> None:
    cfg = SMALL.model_copy(update={"mem_timeout_s": 0.5})
    with pytest.raises(
        TimeoutError, match=r"ZeRO stage 2 memory run did not finish within 0 s.*raise mem_timeout_s"
    ):
        tb.rank_memory(2, cfg, tmp_path)
    assert not psutil.Process().children(recursive=True)


@pytest.fixture(scope="module")
def figures() -> dict:
    return tb.run(SMALL)


def test_step_figures_are_positive_and_consistent(figures) -> None:
    f = figures
    rel = 2e-3  # every figure is rounded to 4 significant digits
    for key in (
        "base_step_s",
        "mosa_step_s",
        "matmul_peak_gflops",
        "base_gflop_per_step",
        "mosa_gflop_per_step",
    ):
        assert f[key] > 0, key
    assert f["mosa_over_base"] == pytest.approx(f["mosa_step_s"] / f["base_step_s"], rel=rel)
    # amortised: one step with the auxiliary terms and aux_every - 1 without, over a base step
    assert f["aux_every"] == SMALL.aux_every == 2
    amortized = (f["mosa_step_s"] + f["mosa_noaux_step_s"]) / 2
    assert f["mosa_amortized_step_s"] == pytest.approx(amortized, rel=rel)
    assert f["mosa_over_base_amortized"] == pytest.approx(amortized / f["base_step_s"], rel=rel)
    assert f["mosa_noaux_over_base"] == pytest.approx(f["mosa_noaux_step_s"] / f["base_step_s"], rel=rel)
    # the steps between the auxiliary ones skip the decode, the tracker and the depth network
    assert f["mosa_noaux_gflop_per_step"] < 0.8 * f["mosa_gflop_per_step"]
    assert f["base_samples_per_s"] == pytest.approx(SMALL.batch / f["base_step_s"], rel=rel)
    assert f["mosa_samples_per_s"] == pytest.approx(SMALL.batch / f["mosa_step_s"], rel=rel)
    assert f["mosa_step_gflops"] == pytest.approx(f["mosa_gflop_per_step"] / f["mosa_step_s"], rel=rel)
    assert f["mosa_utilisation"] == pytest.approx(f["mosa_step_gflops"] / f["matmul_peak_gflops"], rel=rel)
    assert 0 < f["mosa_utilisation"] <= 1.5 and 0 < f["base_utilisation"] <= 1.5
    # the decode, depth network and soft tracker make a MoSA step costlier than a base step
    assert f["mosa_gflop_per_step"] > f["base_gflop_per_step"]
    assert f["torch_threads"] == 1 and "clip 9x16x32" in f["config"] and "aux every 2" in f["config"]
    assert f["mosa_trainable_params"] > 0 and f["base_trainable_params"] > 0


@pytest.mark.parametrize("zero", ["zero2", "zero3"])
def test_zero2_and_zero3_hold_half_the_optimizer_state_per_rank(figures, zero) -> None:
    f = figures
    params = f["memory_model_params"]
    assert params == 2 * (512 * 512 + 512)
    # stage 0 (plain data parallel): every rank holds Adam's two fp32 moments of every parameter
    assert f["ddp_optimizer_state_mb"] == pytest.approx(2 * 4 * params / 2**20, rel=1e-3)
    assert f[f"{zero}_optimizer_state_mb"] < 0.75 * f["ddp_optimizer_state_mb"]
    assert f[f"{zero}_optimizer_state_mb"] > 0.4 * f["ddp_optimizer_state_mb"]
    assert f[f"{zero}_over_ddp_optimizer_state"] == pytest.approx(
        f[f"{zero}_optimizer_state_mb"] / f["ddp_optimizer_state_mb"], rel=2e-3
    )
    for key in (
        f"{zero}_peak_rss_mb",
        "ddp_peak_rss_mb",
        f"{zero}_rss_above_start_mb",
        "ddp_rss_above_start_mb",
    ):
        assert f[key] > 0, key
    assert f[f"{zero}_over_ddp_rss"] == pytest.approx(
        f[f"{zero}_peak_rss_mb"] / f["ddp_peak_rss_mb"], rel=2e-3
    )
    # what training keeps resident after the steps, without the start-up transients of the peak
    assert 0 < f[f"{zero}_rss_after_mb"] <= f[f"{zero}_peak_rss_mb"] * 1.01
    assert f[f"{zero}_over_ddp_rss_after"] == pytest.approx(
        f[f"{zero}_rss_after_mb"] / f["ddp_rss_after_mb"], rel=2e-3
    )
    assert "stage 0" in f["memory_ddp_is"] and "DDP" in f["memory_ddp_is"]
    # model states: ratios of the reported figures, the planner within 15% of the measurement
    assert f[f"{zero}_over_ddp_model_state"] == pytest.approx(
        f[f"{zero}_model_state_mb"] / f["ddp_model_state_mb"], rel=2e-3
    )
    assert f[f"{zero}_model_state_mb"] < 0.75 * f["ddp_model_state_mb"]
    for name in (zero, "ddp"):
        assert f[f"{name}_planner_over_measured_model_state"] == pytest.approx(1.0, abs=0.15)
        assert f[f"{name}_planner_over_measured_model_state"] == pytest.approx(
            f[f"{name}_planner_model_state_mb"] / f[f"{name}_model_state_mb"], rel=2e-3
        )
    assert "cpu_adam bf16" in f["memory_config"] and "MALLOC_MMAP_THRESHOLD_ 1048576" in f["memory_config"]


def test_bad_clip_size_names_the_rule() -> None:
    with pytest.raises(ValueError, match=r"frames must be 8N\+1"):
        tb.step_benchmark(SMALL.model_copy(update={"frames": 10}))
    with pytest.raises(ValueError, match=r"height must be a positive multiple of 16 \(VAE ×4, patch ×4\)"):
        tb.step_benchmark(SMALL.model_copy(update={"height": 24}))
    with pytest.raises(ValueError, match=r"steps \(1\) must be >= aux_every \(2\)"):
        tb.step_benchmark(SMALL.model_copy(update={"steps": 1}))


def test_default_config_is_params_yaml_cpu_profile() -> None:
    """The class defaults mirror params.yaml: this fails when either drifts from the other."""
    params = tb.ROOT / "params.yaml"
    assert tb.TrainBenchConfig() == tb.TrainBenchConfig.from_params(params)
    tiny = load_section("pretrain_base", params).tiny.model_dump(mode="json")
    raw_tiny = yaml.safe_load(params.read_text())["pretrain_base"]["tiny"]
    mirrored = {
        "layers",
        "heads",
        "head_dim",
        "latent_channels",
        "patch_size",
        "vae_block_channels",
        "vae_norm",
    }
    assert set(raw_tiny) <= mirrored, (
        f"params.yaml tiny sets {set(raw_tiny) - mirrored}: mirror it in the bench"
    )
    cfg = tb.TrainBenchConfig()
    sample = {"sample_frames", "sample_height", "sample_width"}  # the bench's clip size
    built = tb._tiny(cfg).model_dump(mode="json", exclude=sample)
    assert built == {k: v for k, v in tiny.items() if k not in sample}
    train = load_section("train_dit", params)
    assert (cfg.aux_every, cfg.aux_samples, cfg.track_points, cfg.batch) == (
        train.aux_every,
        train.aux_samples,
        train.track_points,
        train.batch_size,
    )


def test_from_params_follows_the_params_file(tmp_path) -> None:
    data = yaml.safe_load((tb.ROOT / "params.yaml").read_text())
    data["train_dit"].update(aux_every=3, aux_samples=None, track_points=20, batch_size=2)
    data["pretrain_base"]["tiny"].update(layers=2, vae_block_channels=[8, 8, 16, 16])
    data["ingest"]["clip"].update(frames=9, height=64)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    cfg = tb.TrainBenchConfig.from_params(path, steps=3)
    assert (cfg.aux_every, cfg.aux_samples, cfg.track_points, cfg.batch, cfg.steps) == (3, None, 20, 2, 3)
    assert (cfg.layers, cfg.vae_block_channels, cfg.frames, cfg.height) == (2, (8, 8, 16, 16), 9, 64)
    assert "aux every 3 step(s) on all sample(s)" in cfg.describe()


def test_aux_and_other_steps_are_told_apart_by_their_index() -> None:
    times = [10.0, 1.0, 1.2, 1.1, 11.0, 0.9]  # updates 4..9 with aux_every 4: 4 and 8 compute the terms
    assert tb.split_aux_times(times, 4, 4) == ([10.0, 11.0], [1.0, 1.2, 1.1, 0.9])
    assert tb.split_aux_times(times, 0, 1) == (times, [])
    assert tb.amortized_step(10.0, 1.0, 4) == pytest.approx(13.0 / 4)
    assert tb.amortized_step(10.0, 1.0, 1) == 10.0


def test_a_rank_crash_on_a_signal_is_run_once_more_other_failures_raise(tmp_path, monkeypatch) -> None:
    """An intermittent native crash of a rank (torchrun reports ``Signal 6 (SIGABRT) received``) gets
    one more run, with a warning; a second crash, or any other failure, raises with the output."""
    crash = "exit code 1 (torchrun …)\nterminate called\n  traceback : Signal 6 (SIGABRT) received by PID 7"
    plain = "exit code 1 (torchrun …)\nValueError: bad width"

    def fake(outcomes):
        calls = []

        def run(stage, cfg, out_dir):
            calls.append(stage)
            ok, text = outcomes[len(calls) - 1]
            if ok:
                out_dir.mkdir(parents=True, exist_ok=True)
                for r in range(cfg.mem_ranks):
                    (out_dir / f"rank{r}.json").write_text(json.dumps({"rank": r}))
            return ok, text

        monkeypatch.setattr(tb, "_rank_memory_run", run)
        return calls

    calls = fake([(False, crash), (True, "exit code 0")])
    with pytest.warns(UserWarning, match="a rank died on SIGABRT; running it once more"):
        reports = tb.rank_memory(2, SMALL, tmp_path / "a")
    assert calls == [2, 2] and [r["rank"] for r in reports] == [0, 1]

    calls = fake([(False, crash), (False, crash)])
    with pytest.warns(UserWarning), pytest.raises(RuntimeError, match="Signal 6 \\(SIGABRT\\)"):
        tb.rank_memory(2, SMALL, tmp_path / "b")
    assert calls == [2, 2]

    calls = fake([(False, plain)])
    with pytest.raises(RuntimeError, match="ValueError: bad width"):
        tb.rank_memory(0, SMALL, tmp_path / "c")
    assert calls == [0]
