"""One rank of the ZeRO memory benchmark: train an MLP through the ``Trainer``, report this rank's memory.

Launched by ``benchmarks/train.py`` as ``python -m torch.distributed.run --nproc_per_node N
benchmarks/_rank_memory.py --out DIR --zero-stage S ...``. Each rank writes ``DIR/rank<r>.json`` with
its peak resident set size (``ru_maxrss``), the RSS peak reached before the model was built (imports
and the process group), its RSS after the last step (``rss_after_mb``: what training keeps resident,
without the start-up transients the peak also counts), and the bytes of optimizer state it holds.
ZeRO stage 0 is DeepSpeed's plain data parallelism (every rank keeps all optimizer state and all
gradients, gradients are all-reduced), the DDP equivalent; ZeRO-2 keeps 1/N of the optimizer state
and gradients per rank; ZeRO-3 also 1/N of the parameters (gathered layer by layer for the forward and
backward), built partitioned from the start (``deepspeed.zero.Init``).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import deepspeed  # imported before the baseline RSS is taken
import psutil
import torch
from torch import Tensor, nn

from components.training.engine import (
    EngineConfig,
    Trainer,
    build_ds_config,
    ensure_distributed,
    seed_everything,
)


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, MiB (Linux reports ``ru_maxrss`` in KiB)."""
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 1024 if sys.platform != "darwin" else kib / 2**20


def make_mlp(width: int, depth: int, seed: int = 0) -> nn.Sequential:
    """``depth`` square ``width``-wide linear layers with GELU between them (≈ depth·width² parameters)."""
    if width < 1 or depth < 1:
        raise ValueError(f"width and depth must be >= 1, got width={width}, depth={depth}")
    seed_everything(seed)
    layers: list[nn.Module] = []
    for i in range(depth):
        layers.append(nn.Linear(width, width))
        if i < depth - 1:
            layers.append(nn.GELU())
    return nn.Sequential(*layers)


def base_optimizer(optimizer: object) -> torch.optim.Optimizer:
    """The ``torch.optim.Optimizer`` that holds the state, under DeepSpeed's wrappers (``.optimizer``)."""
    inner = optimizer
    for _ in range(8):
        if isinstance(inner, torch.optim.Optimizer):
            return inner
        inner = getattr(inner, "optimizer", None)
        if inner is None:
            break
    raise TypeError(
        f"no torch.optim.Optimizer found inside {type(optimizer).__name__} (followed .optimizer); "
        "pass the engine's optimizer or a torch optimizer"
    )


def optimizer_state_bytes(optimizer: object) -> int:
    """Bytes of every tensor in the optimizer's per-parameter state (Adam: exp_avg, exp_avg_sq, step)."""
    total = 0
    for state in base_optimizer(optimizer).state.values():
        for value in state.values():
            if isinstance(value, Tensor):
                total += value.numel() * value.element_size()
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, required=True, help="directory for rank<r>.json")
    ap.add_argument("--zero-stage", type=int, choices=(0, 1, 2, 3), required=True)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--width", type=int, default=2048)
    ap.add_argument("--depth", type=int, default=6)
    ap.add_argument("--micro-batch", type=int, default=8)
    args = ap.parse_args()

    rank, world = ensure_distributed()
    baseline = peak_rss_mb()
    cfg = EngineConfig(
        zero_stage=args.zero_stage,
        lr=1e-4,
        total_steps=args.steps,
        micro_batch=args.micro_batch,
        grad_clip=1.0,
        precision="fp32",
    )
    # ZeRO-3 builds the model partitioned (deepspeed.zero.Init): no rank ever holds all of it, as a
    # real ZeRO-3 run of a model too big for one device must
    with deepspeed.zero.Init(config_dict_or_path=build_ds_config(cfg), enabled=args.zero_stage == 3):
        model = make_mlp(args.width, args.depth)
    params = sum(int(getattr(p, "ds_numel", p.numel())) for p in model.parameters())

    def loss_fn(engine: nn.Module, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, dict[str, float]]:
        x, y = batch
        return nn.functional.mse_loss(engine(x), y), {}

    def batches(i: int) -> tuple[Tensor, Tensor]:
        g = torch.Generator().manual_seed(i * world + rank)
        return (
            torch.randn(args.micro_batch, args.width, generator=g),
            torch.randn(args.micro_batch, args.width, generator=g),
        )

    trainer = Trainer(model, cfg, loss_fn)
    t0 = time.perf_counter()
    result = trainer.fit(batches, progress=False)
    seconds = time.perf_counter() - t0
    report = {
        "rank": rank,
        "world_size": world,
        "zero_stage": args.zero_stage,
        "parameters": params,
        "steps": result.steps,
        "final_loss": result.final_loss,
        "seconds": seconds,
        "peak_rss_mb": peak_rss_mb(),
        "rss_after_mb": psutil.Process().memory_info().rss / 2**20,
        "baseline_rss_mb": baseline,
        "optimizer_state_bytes": optimizer_state_bytes(trainer.engine.optimizer),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = args.out / f".rank{rank}.json.tmp"
    tmp.write_text(json.dumps(report, indent=2))
    tmp.replace(args.out / f"rank{rank}.json")


if __name__ == "__main__":
    main()
