"""A tiny training run through ``components.training.Trainer``, launched by the multi-rank tests.

Run with ``python -m torch.distributed.run --nproc_per_node N _train_script.py --out DIR ...`` (or
plain ``python`` for one rank). Each rank writes ``DIR/rank<r>.json`` (losses, resume step, hashes
of its weights); rank 0 exports ``DIR/weights.safetensors``. Random draws (dropout, target noise,
numpy, python) all feed the loss, so an exact resume needs every RNG state restored.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from components.training.config import EngineConfig
from components.training.distributed import seed_everything
from components.training.engine import Trainer

N_SAMPLES = 256


def make_model(seed: int) -> nn.Module:
    seed_everything(seed)
    return nn.Sequential(
        nn.Linear(4, 32), nn.Tanh(), nn.Dropout(0.1), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 1)
    )


def dataset() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1234)
    x = torch.randn(N_SAMPLES, 4, generator=g)
    y = torch.sin(x[:, :1]) + 0.5 * x[:, 1:2] * x[:, 2:3] - 0.3 * x[:, 3:4]
    return x, y


def loss_fn(
    model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]
) -> tuple[torch.Tensor, dict[str, float]]:
    x, y = batch
    noisy = y + 0.01 * torch.randn_like(y) + 1e-3 * float(np.random.randn()) + 1e-3 * random.random()
    pred = model(x)
    loss = torch.nn.functional.mse_loss(pred, noisy)
    return loss, {"mse_clean": float(torch.nn.functional.mse_loss(pred.detach(), y))}


def sha256_of(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        h.update(name.encode())
        h.update(tensors[name].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--ckpt-dir", type=Path, default=None)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--zero-stage", type=int, default=2)
    ap.add_argument("--grad-accum", type=int, default=1)
    ap.add_argument("--micro-batch", type=int, default=16)
    ap.add_argument("--checkpoint-every", type=int, default=0)
    ap.add_argument(
        "--step-sleep", type=float, default=0.0, help="seconds slept per micro-batch (gives a kill time)"
    )
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    cfg = EngineConfig(
        zero_stage=args.zero_stage,
        lr=2e-2,
        warmup_steps=2,
        total_steps=args.steps,
        min_lr_ratio=0.1,
        micro_batch=args.micro_batch,
        grad_accum=args.grad_accum,
        grad_clip=10.0,
        checkpoint_every=args.checkpoint_every,
        keep_checkpoints=2,
        seed=args.seed,
    )
    trainer = Trainer(make_model(args.seed), cfg, loss_fn, ckpt_dir=args.ckpt_dir)
    x, y = dataset()
    mb, rank, world = args.micro_batch, trainer.rank, trainer.world_size

    def batches(i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if args.step_sleep:
            time.sleep(args.step_sleep)
        start = ((i * world + rank) * mb) % N_SAMPLES
        idx = torch.arange(start, start + mb) % N_SAMPLES
        return x[idx], y[idx]

    result = trainer.fit(batches, progress=False)
    local = None
    if cfg.zero_stage < 3:  # the module holds a full replica on every rank
        local = sha256_of(dict(trainer.engine.module.named_parameters()))
    full = trainer.full_state_dict()
    args.out.mkdir(parents=True, exist_ok=True)
    trainer.export_weights(args.out / "weights.safetensors")
    report = {
        "rank": rank,
        "world_size": result.world_size,
        "zero_stage": result.zero_stage,
        "steps": result.steps,
        "resumed_from": result.resumed_from,
        "losses": [r["loss"] for r in result.losses],
        "local_sha256": local,
        "full_sha256": sha256_of(full),
    }
    (args.out / f"rank{rank}.json").write_text(json.dumps(report, indent=2))
    # leave the world explicitly: a gloo group torn down at interpreter exit can abort a rank
    # ("terminate called without an active exception", seen once in a clean-clone run)
    if torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
