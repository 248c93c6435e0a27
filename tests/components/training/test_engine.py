"""Trainer on real DeepSpeed (CPU accelerator, gloo, one process): learning, schedule, accumulation,
frozen parts, configs and templates."""

from __future__ import annotations

import itertools
import math
import os
import subprocess
import sys

import pytest
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from components.training.config import EngineConfig
from components.training.distributed import seed_everything
from components.training.ds_config import build_ds_config, load_ds_template
from components.training.engine import Trainer
from components.training.schedule import lr_factor
from tests.components.training.test_ds_config import TEMPLATE_CASES, TEMPLATES

torch.set_num_threads(1)


def _data(n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    x = torch.randn(n, 3, generator=g)
    y = x @ torch.tensor([[1.5], [-2.0], [0.5]]) + 0.3 * torch.tanh(x[:, :1] * 2)
    return x, y


def _mlp(seed: int = 0) -> nn.Module:
    seed_everything(seed)
    return nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 1))


def _mse(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
    x, y = batch
    pred = model(x)
    return torch.nn.functional.mse_loss(pred, y), {"mae": float((pred.detach() - y).abs().mean())}


def _cfg(**kw) -> EngineConfig:
    base = dict(lr=3e-2, total_steps=40, warmup_steps=2, min_lr_ratio=0.1, micro_batch=16, grad_clip=None)
    return EngineConfig(**{**base, **kw})


def _slices(x: torch.Tensor, y: torch.Tensor, size: int):
    def batches(i: int):
        s = (i * size) % len(x)
        return x[s : s + size], y[s : s + size]

    return batches


def _params(trainer: Trainer) -> dict[str, torch.Tensor]:
    return trainer.full_state_dict()


def test_lr_factor_known_values():
    w, t, floor = 4, 14, 0.1
    assert lr_factor(0, w, t, floor) == pytest.approx(0.25)  # first update already moves
    assert lr_factor(2, w, t, floor) == pytest.approx(0.75)
    assert lr_factor(3, w, t, floor) == pytest.approx(1.0)
    assert lr_factor(4, w, t, floor) == pytest.approx(1.0)  # cosine starts at the top
    assert lr_factor(9, w, t, floor) == pytest.approx(floor + (1 - floor) * 0.5)  # half way down
    assert lr_factor(14, w, t, floor) == pytest.approx(floor)
    assert lr_factor(1000, w, t, floor) == pytest.approx(floor)
    decay = [lr_factor(s, w, t, floor) for s in range(w, t + 1)]
    assert all(a >= b for a, b in itertools.pairwise(decay))
    assert lr_factor(0, 0, 10, 0.0) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="step"):
        lr_factor(-1, w, t, floor)


def test_regression_learns_and_lr_follows_schedule():
    x, y = _data()
    cfg = _cfg(warmup_steps=5)
    logged: list[tuple[int, dict[str, float]]] = []
    trainer = Trainer(_mlp(), cfg, _mse, log_fn=lambda s, r: logged.append((s, r)))
    result = trainer.fit(_slices(x, y, 16), progress=False)

    losses = [r["loss"] for r in result.losses]
    assert result.steps == cfg.total_steps == len(losses)
    assert (result.zero_stage, result.world_size, result.resumed_from) == (2, 1, None)
    first, last = sum(losses[:4]) / 4, sum(losses[-4:]) / 4
    assert last < 0.1 * first, (first, last)
    for i, record in enumerate(result.losses):
        assert record["lr"] == pytest.approx(cfg.lr * lr_factor(i, 5, cfg.total_steps, 0.1))
        assert record["step"] == i + 1 and record["mae"] > 0 and record["grad_norm"] > 0
    assert [s for s, _ in logged] == list(range(1, cfg.total_steps + 1))
    assert logged[-1][1]["loss"] == losses[-1]


def test_grad_accumulation_equals_concatenated_batch():
    """accum=2 x micro 8 must give the update of accum=1 x micro 16 over the same 16 samples; plain
    micro 8 without accumulation (half the data per update) must not."""
    x, y = _data()
    steps = 4
    accum = Trainer(_mlp(), _cfg(total_steps=steps, micro_batch=8, grad_accum=2), _mse)
    big = Trainer(_mlp(), _cfg(total_steps=steps, micro_batch=16), _mse)
    small = Trainer(_mlp(), _cfg(total_steps=steps, micro_batch=8), _mse)
    r_accum = accum.fit(_slices(x, y, 8), progress=False)
    r_big = big.fit(_slices(x, y, 16), progress=False)
    small.fit(_slices(x, y, 8), progress=False)

    pa, pb, ps = _params(accum), _params(big), _params(small)
    for name in pb:
        torch.testing.assert_close(pa[name], pb[name], rtol=1e-5, atol=1e-6)
    assert max((ps[n] - pb[n]).abs().max().item() for n in pb) > 1e-3
    for ra, rb in zip(r_accum.losses, r_big.losses, strict=True):
        assert ra["loss"] == pytest.approx(rb["loss"], rel=1e-5)  # mean of micro losses = big-batch loss
        assert ra["lr"] == rb["lr"]


def test_frozen_parameters_stay_put_and_skip_the_optimizer():
    x, y = _data()
    model = _mlp()
    model[0].requires_grad_(False)
    frozen_before = {n: p.detach().clone() for n, p in model[0].named_parameters()}
    trained_before = model[2].weight.detach().clone()
    trainer = Trainer(model, _cfg(total_steps=6, weight_decay=0.5), _mse)
    trainer.fit(_slices(x, y, 16), progress=False)

    for name, p in trainer.engine.module[0].named_parameters():
        assert torch.equal(p.detach(), frozen_before[name]), name
    assert not torch.equal(trainer.engine.module[2].weight.detach(), trained_before)
    in_optimizer = {id(p) for group in trainer.engine.optimizer.bit16_groups for p in group}
    assert in_optimizer == {id(p) for p in trainer.engine.module.parameters() if p.requires_grad}


def test_zero3_refuses_frozen_parameters_inside_the_module():
    model = _mlp()
    model[0].weight.requires_grad_(False)
    with pytest.raises(ValueError, match=r"0\.weight.*closure"):
        Trainer(model, _cfg(zero_stage=3), _mse)


def test_zero3_with_frozen_model_in_the_loss_closure():
    """The documented pattern: frozen encoder outside the engine, trainable head inside (ZeRO-3)."""
    x, y = _data()
    seed_everything(1)
    encoder = nn.Sequential(nn.Linear(3, 8), nn.Tanh()).requires_grad_(False)
    enc_before = {n: p.clone() for n, p in encoder.state_dict().items()}
    head = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1))

    def loss_fn(engine: nn.Module, batch):
        xb, yb = batch
        with torch.no_grad():
            feats = encoder(xb)
        return torch.nn.functional.mse_loss(engine(feats), yb), {}

    trainer = Trainer(head, _cfg(zero_stage=3, total_steps=30), loss_fn)
    result = trainer.fit(_slices(x, y, 16), progress=False)
    losses = [r["loss"] for r in result.losses]
    assert sum(losses[-3:]) < 0.5 * sum(losses[:3])
    assert all(torch.equal(encoder.state_dict()[n], t) for n, t in enc_before.items())
    assert set(trainer.full_state_dict()) == {"0.weight", "0.bias", "2.weight", "2.bias"}


class _Blocks(nn.Module):
    """Two residual blocks; after ``gradient_checkpointing_enable`` backward recomputes them."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(3, 16)
        self.blocks = nn.ModuleList(nn.Sequential(nn.Linear(16, 16), nn.Tanh()) for _ in range(2))
        self.out = nn.Linear(16, 1)
        self.checkpointing = False
        self.block_calls = 0

    def gradient_checkpointing_enable(self) -> None:
        self.checkpointing = True

    def _block(self, i: int, h: torch.Tensor) -> torch.Tensor:
        self.block_calls += 1
        return h + self.blocks[i](h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)
        for i in range(len(self.blocks)):
            h = (
                checkpoint(self._block, i, h, use_reentrant=False)
                if self.checkpointing
                else self._block(i, h)
            )
        return self.out(h)


def test_gradient_checkpointing_is_enabled_and_changes_no_numbers():
    x, y = _data()
    runs = {}
    for flag in (False, True):
        seed_everything(0)
        model = _Blocks()
        trainer = Trainer(model, _cfg(total_steps=3, gradient_checkpointing=flag), _mse)
        trainer.fit(_slices(x, y, 16), progress=False)
        runs[flag] = (model.checkpointing, model.block_calls, _params(trainer))
    assert runs[True][0] and not runs[False][0]
    assert runs[True][1] == 2 * runs[False][1] > 0  # every block recomputed once in backward
    for name, value in runs[False][2].items():
        torch.testing.assert_close(runs[True][2][name], value, rtol=0, atol=1e-7)

    with pytest.raises(ValueError, match="gradient_checkpointing_enable"):
        Trainer(_mlp(), _cfg(gradient_checkpointing=True), _mse)


def test_non_finite_loss_and_bad_arguments_fail_clearly():
    x, y = _data()

    def exploding(model, batch):
        loss, _ = _mse(model, batch)
        return loss * float("nan"), {}

    trainer = Trainer(_mlp(), _cfg(total_steps=3), exploding)
    with pytest.raises(FloatingPointError, match="update 1"):
        trainer.fit(_slices(x, y, 16), progress=False)

    trainer = Trainer(_mlp(), _cfg(total_steps=3), _mse)
    with pytest.raises(ValueError, match="total_steps"):
        trainer.fit(_slices(x, y, 16), steps=4, progress=False)

    def reserved(model, batch):
        loss, _ = _mse(model, batch)
        return loss, {"lr": 1.0}

    with pytest.raises(ValueError, match="'lr' is reserved"):
        Trainer(_mlp(), _cfg(total_steps=3), reserved).fit(_slices(x, y, 16), progress=False)

    with pytest.raises(ValueError, match="no parameter with requires_grad"):
        Trainer(_mlp().requires_grad_(False), _cfg(), _mse)


def test_every_template_trains_to_the_same_weights():
    """Each template drives a real engine (ZeRO-2/3, offload on or off) to the same result."""
    x, y = _data()
    results = {}
    for name, stage, offload in TEMPLATE_CASES:
        cfg = _cfg(total_steps=6, zero_stage=stage, offload=offload)
        trainer = Trainer(_mlp(), cfg, _mse, ds_config=load_ds_template(TEMPLATES / name, cfg))
        result = trainer.fit(_slices(x, y, 16), progress=False)
        assert result.steps == 6 and math.isfinite(result.final_loss)
        assert result.metrics()["zero_stage"] == stage
        results[name] = trainer.full_state_dict()
    reference = results["zero2.json"]
    for name, state in results.items():
        for key in reference:
            torch.testing.assert_close(state[key], reference[key], rtol=1e-5, atol=1e-6, msg=f"{name}: {key}")


def test_ds_config_disagreeing_with_the_engine_config_is_refused():
    with pytest.raises(ValueError, match=r"zero_optimization\.stage is 3 but EngineConfig gives 2"):
        Trainer(_mlp(), _cfg(zero_stage=2), _mse, ds_config=build_ds_config(_cfg(zero_stage=3)))


def test_bf16_trains_and_exports_the_fp32_master_weights():
    x, y = _data()

    def loss_fn(engine, batch):
        xb, yb = batch
        return torch.nn.functional.mse_loss(engine(xb.to(torch.bfloat16)).float(), yb), {}

    trainer = Trainer(_mlp(), _cfg(total_steps=20, precision="bf16"), loss_fn)
    assert trainer.dtype == torch.bfloat16
    result = trainer.fit(_slices(x, y, 16), progress=False)
    losses = [r["loss"] for r in result.losses]
    assert sum(losses[-3:]) < 0.5 * sum(losses[:3])
    master = trainer.full_state_dict()
    module = dict(trainer.engine.module.named_parameters())
    assert all(module[n].dtype == torch.bfloat16 and master[n].dtype == torch.float32 for n in master)
    assert all(
        torch.equal(master[n].bfloat16(), module[n].detach()) for n in master
    )  # module = rounded master
    assert any(
        not torch.equal(master[n], module[n].detach().float()) for n in master
    )  # master keeps more bits


def test_child_process_does_not_join_the_parents_one_rank_world():
    """A child that inherits this process's self-made world variables makes its own world (joining
    the parent's would fail on its store port)."""
    trainer = Trainer(_mlp(), _cfg(total_steps=2), _mse)
    assert (trainer.rank, trainer.world_size, trainer.is_rank0) == (0, 1, True)
    assert os.environ["MOSA_SELF_WORLD"] == f"{os.getpid()}:{os.environ['MASTER_PORT']}"
    code = (
        "import os; from components.training.engine import ensure_distributed; "
        "print(ensure_distributed(), os.environ['MASTER_PORT'])"
    )
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert child.returncode == 0, child.stderr[-3000:]
    world, port = child.stdout.strip().splitlines()[-1].rsplit(" ", 1)
    assert world == "(0, 1)" and port != os.environ["MASTER_PORT"]


def test_group_size_cpu_adam_and_buckets_train_to_the_same_weights():
    """Smaller parameter groups, DeepSpeed's C++ AdamW and other ZeRO buckets change memory, not the
    update: every variant ends where torch AdamW with two groups does (ZeRO-2, weight decay and
    clipping on, so the per-group step sees the global norm)."""
    x, y = _data()
    base = dict(total_steps=6, zero_stage=2, weight_decay=0.05, grad_clip=0.5)
    variants = {
        "adamw": {},
        "adamw, groups of 20": {"group_elements": 20},
        "cpu_adam": {"optimizer": "cpu_adam"},
        "cpu_adam, groups of 20, buckets of 64": {
            "optimizer": "cpu_adam",
            "group_elements": 20,
            "bucket_elements": 64,
        },
    }
    states = {}
    for name, kw in variants.items():
        trainer = Trainer(_mlp(), _cfg(**base, **kw), _mse)
        trainer.fit(_slices(x, y, 16), progress=False)
        states[name] = trainer.full_state_dict()
        inner = trainer.engine.optimizer.optimizer
        assert type(inner).__name__ == ("DeepSpeedCPUAdam" if "cpu_adam" in name else "AdamW"), name
    moved = max((states["adamw"][k] - _mlp().state_dict()[k]).abs().max().item() for k in states["adamw"])
    assert moved > 1e-2  # it trained
    for name, state in states.items():
        for key, ref in states["adamw"].items():
            torch.testing.assert_close(state[key], ref, rtol=1e-5, atol=1e-6, msg=f"{name}: {key}")


def test_bucket_elements_reach_the_zero_config():
    for stage, keys in (
        (2, ("reduce_bucket_size", "allgather_bucket_size")),
        (3, ("reduce_bucket_size", "stage3_prefetch_bucket_size")),
    ):
        zero = build_ds_config(_cfg(zero_stage=stage, bucket_elements=1234))["zero_optimization"]
        assert all(zero[k] == 1234 for k in keys)
        default = build_ds_config(_cfg(zero_stage=stage))["zero_optimization"]
        assert all(default[k] == 50_000_000 for k in keys)
