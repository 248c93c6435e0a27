"""One rank of the ZeRO memory benchmark: train an MLP through the ``Trainer``, report this rank's memory.

Launched by ``benchmarks/train.py`` as ``python -m torch.distributed.run --nproc_per_node N
benchmarks/_rank_memory.py --out DIR --zero-stage S --precision P ...``. Each rank writes
``DIR/rank<r>.json`` with its peak resident set size (``ru_maxrss``), the RSS peak reached before the
model was built (imports and the process group), its RSS after the last step (``rss_after_mb``: what
training keeps resident, without the start-up transients the peak also counts), the bytes of
optimizer state it holds, and its measured model states (``model_state_bytes``, see
``live_tensor_bytes`` and ``ModelStateProbe``).

ZeRO stage 0 is DeepSpeed's plain data parallelism (every rank keeps all optimizer state and all
gradients, gradients are all-reduced), the DDP equivalent; ZeRO-2 keeps 1/N of the optimizer state
and gradients per rank; ZeRO-3 also 1/N of the parameters (gathered layer by layer for the forward and
backward), built partitioned from the start (``deepspeed.zero.Init``).

The MLP is built directly in the training dtype. Under bf16 DeepSpeed casts the module to bf16 and
makes its fp32 master weights by upcasting the bf16 values (ZeRO-1/2: the flat bf16 partition
``.float()``; stage 0: ``FP16_UnfusedOptimizer``'s per-parameter fp32 copies; ZeRO-3: the bf16
partition), so an fp32 build would add nothing the run uses, only a transient 4 bytes per parameter
to the peak. The peak RSS thus
counts: the start-up baseline (interpreter, torch, DeepSpeed, gloo; ~370 MB), the model states, the
activations of one micro-batch, and the largest transient: under ZeRO-1/2 at the optimizer step,
one parameter group's gradient partition and its fp32 cast (``--group-elements`` bounds it), plus,
with ``--optimizer adamw``, torch AdamW's per-tensor temporaries of the flat partition's size (the
single-tensor path runs on CPU; ``cpu_adam`` updates in place); at bf16 stage 0 while DeepSpeed
builds its fp32 master copies.
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
from torch.utils.hooks import RemovableHandle

from components.training.config import EngineConfig
from components.training.distributed import ensure_distributed, seed_everything
from components.training.ds_config import build_ds_config
from components.training.engine import Trainer


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, MiB (Linux reports ``ru_maxrss`` in KiB)."""
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 1024 if sys.platform != "darwin" else kib / 2**20


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def make_mlp(width: int, depth: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> nn.Sequential:
    """``depth`` square ``width``-wide linear layers with GELU between them (≈ depth·width² parameters),
    created in ``dtype`` (no fp32 copy of a bf16 model is ever allocated)."""
    if width < 1 or depth < 1:
        raise ValueError(f"width and depth must be >= 1, got width={width}, depth={depth}")
    seed_everything(seed)
    layers: list[nn.Module] = []
    for i in range(depth):
        layers.append(nn.Linear(width, width, dtype=dtype))
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


def live_tensor_bytes(module: nn.Module, optimizer: object) -> int:
    """Bytes of the distinct CPU tensor storages that make up a DeepSpeed engine's model states.

    Counted: the module's parameters, their ``.grad`` and (ZeRO-3) their partitions ``ds_tensor``
    with its ``.grad``; every tensor held in an attribute of the engine's optimizer (the DeepSpeed
    wrapper), directly or inside lists, tuples and dicts (flat bit16 groups, fp32 master partitions,
    gradient partitions and buckets), with its ``.grad``; and the same for the torch optimizer inside
    it: its parameters (the fp32 master copies under bf16 and ZeRO), their ``.grad`` and its state
    (Adam's moments and step counters). Each storage counts once at its full size (deduplicated by
    ``untyped_storage().data_ptr()``), so a parameter that is a view into a flat buffer counts the
    buffer once. Activations, the batch and temporaries of a step are not counted.
    """
    seen: dict[int, int] = {}

    def add(t: Tensor) -> None:
        if t.device.type != "cpu":
            return
        storage = t.untyped_storage()
        if storage.nbytes() and storage.data_ptr() not in seen:
            seen[storage.data_ptr()] = storage.nbytes()

    def visit(obj: object, depth: int = 0) -> None:
        if isinstance(obj, Tensor):
            add(obj)
            grad = obj.grad if obj.is_leaf else None
            if grad is not None:
                add(grad)
            part = getattr(obj, "ds_tensor", None)
            if part is not None:
                visit(part, depth)
        elif depth < 4 and isinstance(obj, list | tuple | set):
            for item in obj:
                visit(item, depth + 1)
        elif depth < 4 and isinstance(obj, dict):
            for key, value in obj.items():
                visit(key, depth + 1)
                visit(value, depth + 1)

    for p in module.parameters():
        visit(p)
    inner = base_optimizer(optimizer)
    for holder in {id(optimizer): optimizer, id(inner): inner}.values():
        for value in vars(holder).values():
            visit(value)
    return sum(seen.values())


class ModelStateProbe:
    """The most model-state bytes this rank held at once: ``live_tensor_bytes`` taken in a pre-hook of
    the torch optimizer's ``step`` (``register_step_pre_hook``), maximum over steps.

    At that moment every model state exists together: parameters, reduced gradients (and, under
    ZeRO/bf16, their fp32 copy for the master weights), master weights and, from the second step
    on, Adam's moments (allocated lazily by the first step). Run at least two steps.
    """

    def __init__(self, module: nn.Module, optimizer: object) -> None:
        self.module, self.optimizer = module, optimizer
        self.max_bytes = 0
        self._handle: RemovableHandle = base_optimizer(optimizer).register_step_pre_hook(self._take)

    def _take(self, *_: object) -> None:
        self.max_bytes = max(self.max_bytes, live_tensor_bytes(self.module, self.optimizer))

    def remove(self) -> None:
        """Detach the hook."""
        self._handle.remove()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, required=True, help="directory for rank<r>.json")
    ap.add_argument("--zero-stage", type=int, choices=(0, 1, 2, 3), required=True)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--width", type=int, default=2048)
    ap.add_argument("--depth", type=int, default=6)
    ap.add_argument("--micro-batch", type=int, default=8)
    ap.add_argument("--precision", choices=tuple(DTYPES), default="fp32")
    ap.add_argument("--optimizer", choices=("adamw", "cpu_adam"), default="adamw")
    ap.add_argument("--group-elements", type=int, default=0)
    ap.add_argument("--bucket-elements", type=int, default=None)
    args = ap.parse_args()
    dtype = DTYPES[args.precision]

    rank, world = ensure_distributed()
    baseline = peak_rss_mb()
    cfg = EngineConfig(
        zero_stage=args.zero_stage,
        lr=1e-4,
        total_steps=args.steps,
        micro_batch=args.micro_batch,
        grad_clip=1.0,
        precision=args.precision,
        optimizer=args.optimizer,
        group_elements=args.group_elements,
        bucket_elements=args.bucket_elements,
    )
    # ZeRO-3 builds the model partitioned (deepspeed.zero.Init): no rank ever holds all of it, as a
    # real ZeRO-3 run of a model too big for one device must
    with deepspeed.zero.Init(config_dict_or_path=build_ds_config(cfg), enabled=args.zero_stage == 3):
        model = make_mlp(args.width, args.depth, dtype=dtype)
    params = sum(int(getattr(p, "ds_numel", p.numel())) for p in model.parameters())

    def loss_fn(engine: nn.Module, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, dict[str, float]]:
        x, y = (t.to(dtype) for t in batch)
        return nn.functional.mse_loss(engine(x), y), {}

    def batches(i: int) -> tuple[Tensor, Tensor]:
        g = torch.Generator().manual_seed(i * world + rank)
        return (
            torch.randn(args.micro_batch, args.width, generator=g),
            torch.randn(args.micro_batch, args.width, generator=g),
        )

    trainer = Trainer(model, cfg, loss_fn)
    probe = ModelStateProbe(trainer.engine.module, trainer.engine.optimizer)
    t0 = time.perf_counter()
    result = trainer.fit(batches, progress=False)
    seconds = time.perf_counter() - t0
    probe.remove()
    report = {
        "rank": rank,
        "world_size": world,
        "zero_stage": args.zero_stage,
        "precision": args.precision,
        "parameters": params,
        "steps": result.steps,
        "final_loss": result.final_loss,
        "seconds": seconds,
        "peak_rss_mb": peak_rss_mb(),
        "rss_after_mb": psutil.Process().memory_info().rss / 2**20,
        "baseline_rss_mb": baseline,
        "optimizer_state_bytes": optimizer_state_bytes(trainer.engine.optimizer),
        "model_state_bytes": probe.max_bytes,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = args.out / f".rank{rank}.json.tmp"
    tmp.write_text(json.dumps(report, indent=2))
    tmp.replace(args.out / f"rank{rank}.json")


if __name__ == "__main__":
    main()
