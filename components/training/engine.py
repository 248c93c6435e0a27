"""One DeepSpeed ZeRO training loop for every stage that trains (``pretrain_motion``, ``train_dit``).

What it does and why:

- **Process group.** Under ``torchrun``/``deepspeed`` the launcher's environment is used. Launched
  as a plain ``python`` process (no ``RANK``/``WORLD_SIZE``), a 1-process group is set up on
  127.0.0.1 and a free port, so the same code path (and the same ZeRO partitioning code) runs on a
  laptop. DeepSpeed picks its CPU accelerator with the ``gloo`` backend when there is no GPU.
- **Optimizer.** AdamW as DeepSpeed's client optimizer, built by ``optimizer.py`` (torch's or
  DeepSpeed's in-place C++ one; bounded parameter groups).
- **Frozen parts.** Only ``requires_grad`` parameters reach the optimizer. Frozen models used
  around the trainable one (text encoder, VAE, tracker) should live *outside* the engine: keep
  them in the loss function's closure; ``loss_fn(engine, batch)`` receives the DeepSpeed engine
  (call it like the model) and the batch. With ZeRO-3 every parameter inside the engine module is
  partitioned across ranks, so a module that still holds frozen parameters is refused there.
- **Schedule.** Linear warmup then cosine decay to ``min_lr_ratio`` (``schedule.py``), stepped by
  DeepSpeed once per optimizer update; gradient accumulation and clipping are DeepSpeed's own
  (``gradient_accumulation_steps``, ``gradient_clipping``).
- **Exact resume.** ``batches(global_micro_step)`` decides the data, checkpoints carry the
  optimizer, scheduler, step and every rank's RNG states (``checkpoint.py``), so a run killed at
  any point and restarted ends with the same weights as an uninterrupted run.

ZeRO settings verified on the CPU accelerator (DeepSpeed 0.19.8, torch 2.13, gloo), single process
and ``torchrun --nproc_per_node 2``: stage 2 and stage 3 with ``overlap_comm`` and
``contiguous_gradients`` on, with and without ``offload_optimizer``/``offload_param`` to ``cpu``
(``pin_memory`` is accepted); fp32 and bf16. The templates in ``infra/deepspeed/`` hold them.
"""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from tqdm import tqdm

from components.io.atomic import atomic_path
from components.training import checkpoint as ckpt
from components.training.config import EngineConfig
from components.training.distributed import ensure_distributed, seed_everything
from components.training.ds_config import (
    build_ds_config,
    resolve_precision,
)
from components.training.optimizer import build_optimizer
from components.training.schedule import warmup_cosine

log = logging.getLogger(__name__)

LossFn = Callable[[nn.Module, Any], tuple[Tensor, Mapping[str, float]]]
LogFn = Callable[[int, dict[str, float]], None]

_RESERVED_METRICS = ("step", "loss", "lr", "grad_norm")
# Settings that may change between a checkpoint and its resume without changing the result.
_RESUME_FREE = frozenset({"checkpoint_every", "keep_checkpoints", "gradient_checkpointing"})


# ---------------------------------------------------------------- DeepSpeed config


# ---------------------------------------------------------------- process group and seeds


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Hide DeepSpeed's INFO chatter and torch's per-step deprecation notices; keep errors."""
    ds_logger = logging.getLogger("DeepSpeed")
    level = ds_logger.level
    ds_logger.setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r".*reduce_scatter_tensor.* is deprecated", category=FutureWarning
        )
        warnings.filterwarnings(
            "ignore", message=r".*all_gather_into_tensor.* is deprecated", category=FutureWarning
        )
        try:
            yield
        finally:
            ds_logger.setLevel(level)


def _to_device(obj: Any, device: torch.device) -> Any:
    if isinstance(obj, Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, Mapping):
        return type(obj)({k: _to_device(v, device) for k, v in obj.items()})
    if isinstance(obj, tuple | list):
        return type(obj)(_to_device(v, device) for v in obj)
    return obj


def _checked(config: dict[str, Any], cfg: EngineConfig) -> dict[str, Any]:
    """A caller's DeepSpeed config must agree with the EngineConfig on what the loop relies on."""
    pairs = {
        "zero_optimization.stage": (config.get("zero_optimization", {}).get("stage", 0), cfg.zero_stage),
        "train_micro_batch_size_per_gpu": (config.get("train_micro_batch_size_per_gpu"), cfg.micro_batch),
        "gradient_accumulation_steps": (config.get("gradient_accumulation_steps", 1), cfg.grad_accum),
        "bf16.enabled": (
            bool(config.get("bf16", {}).get("enabled", False)),
            resolve_precision(cfg.precision) == "bf16",
        ),
    }
    bad = [
        f"{k} is {got!r} but EngineConfig gives {want!r}" for k, (got, want) in pairs.items() if got != want
    ]
    if bad:
        raise ValueError(
            f"ds_config disagrees with the engine config: {'; '.join(bad)}; build it with load_ds_template"
        )
    return config


def _enable_gradient_checkpointing(model: nn.Module) -> None:
    for name in ("gradient_checkpointing_enable", "enable_gradient_checkpointing"):
        fn = getattr(model, name, None)
        if callable(fn):
            fn()
            return
    raise ValueError(
        f"gradient_checkpointing is true but {type(model).__name__} has neither "
        "gradient_checkpointing_enable() (transformers) nor enable_gradient_checkpointing() (diffusers); "
        "add one that wraps its blocks with torch.utils.checkpoint, or set gradient_checkpointing: false"
    )


# ---------------------------------------------------------------- the trainer


@dataclass
class TrainResult:
    """What a ``fit`` did. ``losses`` holds one record per optimizer update since step 0 (those before a
    resume come from the checkpoint); ``checkpoints`` names the ones this call wrote."""

    steps: int
    losses: list[dict[str, float]]
    resumed_from: int | None
    seconds: float
    zero_stage: int
    world_size: int
    checkpoints: list[str] = field(default_factory=list)

    @property
    def final_loss(self) -> float | None:
        return self.losses[-1]["loss"] if self.losses else None

    def metrics(self) -> dict[str, float | int | None]:
        """Flat numbers for a stage's metrics file."""
        return {
            "steps": self.steps,
            "final_loss": self.final_loss,
            "resumed_from": self.resumed_from,
            "train_seconds": round(self.seconds, 3),
            "zero_stage": self.zero_stage,
            "world_size": self.world_size,
        }


class Trainer:
    """DeepSpeed engine + loop + checkpoints for one model.

    ``loss_fn(engine, batch) -> (loss, metrics)`` computes a scalar loss for one micro-batch
    (already moved to the engine's device; dtype casts are the loss function's business, see
    ``dtype``). Call the engine like the model: under ZeRO-3 only its forward gathers the
    partitioned parameters. ``metrics`` values are averaged over the micro-steps of an update;
    ``loss`` is also averaged over ranks. ``log_fn(step, record)`` runs on rank 0 after each update.
    """

    def __init__(
        self,
        model: nn.Module,
        cfg: EngineConfig,
        loss_fn: LossFn,
        ckpt_dir: Path | str | None = None,
        log_fn: LogFn | None = None,
        ds_config: Mapping[str, Any] | None = None,
    ) -> None:
        import deepspeed

        if not isinstance(cfg, EngineConfig):
            raise TypeError(f"cfg must be an EngineConfig, got {type(cfg).__name__}")
        self.cfg = cfg
        self.loss_fn = loss_fn
        self.log_fn = log_fn
        self.ckpt_dir = Path(ckpt_dir) if ckpt_dir is not None else None
        self._rank, self._world_size = ensure_distributed()
        self.precision = resolve_precision(cfg.precision)
        if not any(p.requires_grad for p in model.parameters()):
            raise ValueError(
                f"{type(model).__name__} has no parameter with requires_grad=True: nothing to train"
            )
        frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
        if cfg.zero_stage == 3 and frozen:
            shown = ", ".join(frozen[:5]) + (f" (+{len(frozen) - 5} more)" if len(frozen) > 5 else "")
            raise ValueError(
                f"zero_stage 3 would partition the frozen parameters {shown} across ranks; keep frozen "
                "models outside the trained module (hold them in the loss function's closure), "
                "or use zero_stage 2"
            )
        if cfg.gradient_checkpointing:
            _enable_gradient_checkpointing(model)
        config = build_ds_config(cfg) if ds_config is None else _checked(dict(ds_config), cfg)
        optimizer = build_optimizer(model, cfg)
        scheduler = warmup_cosine(optimizer, cfg.warmup_steps, cfg.total_steps, cfg.min_lr_ratio)
        with _quiet():
            self.engine, _, _, _ = deepspeed.initialize(
                model=model, optimizer=optimizer, lr_scheduler=scheduler, config=config
            )
        seed_everything(cfg.seed + self._rank)
        self._step = 0
        self._history: list[dict[str, float]] = []
        self._saved: list[str] = []
        self._last_saved: int | None = None

    # -- identity

    @property
    def rank(self) -> int:
        return self._rank

    @property
    def world_size(self) -> int:
        return self._world_size

    @property
    def is_rank0(self) -> bool:
        return self._rank == 0

    @property
    def step(self) -> int:
        """Optimizer updates done so far (restored by ``resume``)."""
        return self._step

    @property
    def device(self) -> torch.device:
        return torch.device(self.engine.device)

    @property
    def dtype(self) -> torch.dtype:
        """Dtype of the module's parameters (bfloat16 when precision resolves to bf16)."""
        return torch.bfloat16 if self.precision == "bf16" else torch.float32

    # -- training

    def fit(
        self,
        batches: Callable[[int], Any],
        steps: int | None = None,
        progress: bool = True,
        resume: bool = True,
    ) -> TrainResult:
        """Train until ``steps`` optimizer updates (default ``cfg.total_steps``) are done.

        ``batches(i)`` returns this rank's micro-batch for global micro-step ``i`` (update ``s``
        uses ``i = s * grad_accum + k``), so a resumed run sees exactly the data it would have seen.
        With ``resume`` and a ``ckpt_dir`` the newest complete checkpoint is loaded first.
        """
        steps = self.cfg.total_steps if steps is None else steps
        if not 0 < steps <= self.cfg.total_steps:
            raise ValueError(
                f"steps must be in 1..total_steps ({self.cfg.total_steps}), got {steps}; "
                "raise total_steps to train longer (it sets the LR schedule)"
            )
        t0 = time.perf_counter()
        if not resume and self._step == 0 and self.ckpt_dir is not None:
            earlier = ckpt.complete_checkpoints(self.ckpt_dir)
            if earlier:
                raise ValueError(
                    f"{self.ckpt_dir} holds checkpoints of an earlier run (up to {earlier[-1].path.name}); "
                    "resume from them, or give this run an empty ckpt_dir"
                )
        resumed_from = self.resume() if resume and self.ckpt_dir is not None else None
        n_saved = len(self._saved)
        if self._step > steps:
            log.warning("checkpoint is at step %d, beyond the %d requested: nothing to do", self._step, steps)
        start = self._step
        every = self.cfg.checkpoint_every
        show = progress and self.is_rank0
        bar = tqdm(total=steps, initial=min(start, steps), desc="train", unit="step", disable=not show)
        with _quiet(), bar:
            while self._step < steps:
                record = self._update(batches)
                self._history.append(record)
                if self.is_rank0 and self.log_fn is not None:
                    self.log_fn(self._step, dict(record))
                bar.update(1)
                bar.set_postfix(loss=f"{record['loss']:.4g}", lr=f"{record['lr']:.3g}")
                if self.ckpt_dir is not None and every and self._step % every == 0:
                    self.save_checkpoint()
            if self.ckpt_dir is not None and self._step > start and self._last_saved != self._step:
                self.save_checkpoint()
        return TrainResult(
            steps=self._step,
            losses=list(self._history),
            resumed_from=resumed_from,
            seconds=time.perf_counter() - t0,
            zero_stage=self.cfg.zero_stage,
            world_size=self._world_size,
            checkpoints=self._saved[n_saved:],
        )

    def _update(self, batches: Callable[[int], Any]) -> dict[str, float]:
        """One optimizer update: ``grad_accum`` forward/backward micro-steps, then DeepSpeed's step."""
        engine = self.engine
        ga = self.cfg.grad_accum
        lr = float(engine.get_lr()[0])
        loss_sum = 0.0
        sums: dict[str, float] = {}
        for k in range(ga):
            micro = self._step * ga + k
            batch = _to_device(batches(micro), self.device)
            loss, metrics = self.loss_fn(engine, batch)
            if not isinstance(loss, Tensor) or loss.numel() != 1:
                raise TypeError(f"loss_fn must return a scalar tensor first, got {type(loss).__name__}")
            value = float(loss.detach().float())
            if not np.isfinite(value):
                raise FloatingPointError(
                    f"loss is {value} at update {self._step + 1} (micro-step {micro}); "
                    "lower lr or check the data"
                )
            engine.backward(loss)
            engine.step()
            loss_sum += value
            for name, v in metrics.items():
                if name in _RESERVED_METRICS:
                    raise ValueError(f"loss_fn metric name {name!r} is reserved; rename it")
                sums[name] = sums.get(name, 0.0) + float(v)
        self._step += 1
        if engine.global_steps != self._step:
            raise RuntimeError(
                f"DeepSpeed made {engine.global_steps} optimizer steps where {self._step} were expected "
                "(a skipped update or an accumulation boundary out of step)"
            )
        loss_mean = loss_sum / ga
        if self._world_size > 1:
            t = torch.tensor([loss_mean], dtype=torch.float64, device=self.device)
            dist.all_reduce(t)
            loss_mean = float(t.item()) / self._world_size
        record: dict[str, float] = {"step": self._step, "loss": loss_mean, "lr": lr}
        grad_norm = engine.get_global_grad_norm()
        if grad_norm is not None:
            record["grad_norm"] = float(grad_norm)
        record.update({name: v / ga for name, v in sums.items()})
        return record

    # -- checkpoints

    def _meta(self) -> dict[str, Any]:
        return {
            "world_size": self._world_size,
            "zero_stage": self.cfg.zero_stage,
            "precision": self.precision,
            "engine_config": self.cfg.model_dump(mode="json"),
        }

    def save_checkpoint(self) -> Path:
        """Collective: write a complete checkpoint of the current step into ``ckpt_dir``."""
        if self.ckpt_dir is None:
            raise ValueError("this Trainer has no ckpt_dir; pass one to save checkpoints")
        client = {"mosa_step": self._step, "mosa_history": self._history}
        with _quiet():
            path = ckpt.save(
                self.engine, self.ckpt_dir, self._step, client, self._meta(), self.cfg.keep_checkpoints
            )
        self._saved.append(path.name)
        self._last_saved = self._step
        return path

    def _check_resumable(self, info: ckpt.CheckpointInfo) -> None:
        meta, now = info.meta, self._meta()
        problems = [
            f"{key}: checkpoint {meta.get(key)!r}, now {now[key]!r}"
            for key in ("world_size", "zero_stage", "precision")
            if meta.get(key) != now[key]
        ]
        old_cfg = meta.get("engine_config", {})
        problems += [
            f"{key}: checkpoint {old_cfg.get(key)!r}, now {value!r}"
            for key, value in now["engine_config"].items()
            if key not in _RESUME_FREE and old_cfg.get(key) != value
        ]
        if problems:
            raise ValueError(
                f"cannot resume from {info.path}: it was written with other settings "
                f"({'; '.join(problems)}). "
                f"Restore those settings, or start fresh with another ckpt_dir (or delete {info.path.parent})"
            )

    def resume(self) -> int | None:
        """Collective: load the newest complete checkpoint; returns its step, or None if none."""
        if self.ckpt_dir is None:
            return None
        with _quiet():
            loaded = ckpt.load(self.engine, self.ckpt_dir, validate=self._check_resumable)
        if loaded is None:
            return None
        info, client = loaded
        self._step = int(client.get("mosa_step", info.step))
        self._history = list(client.get("mosa_history", []))
        self._last_saved = self._step
        if self.is_rank0:
            log.info("resumed from %s (step %d)", info.path, self._step)
        return self._step

    # -- weights

    def full_state_dict(self) -> dict[str, Tensor]:
        """Collective: the module's complete fp32 state dict on every rank (CPU tensors).

        Trainable parameters come from the optimizer's fp32 master copies (so bf16 training exports
        fp32), gathered across ranks under ZeRO; other parameters and buffers from the module.
        """
        from deepspeed.runtime.zero import GatheredParameters
        from deepspeed.utils import safe_get_full_fp32_param

        module = self.engine.module
        keys = set(module.state_dict(keep_vars=True).keys())
        out: dict[str, Tensor] = {}
        upcast = []
        with _quiet():
            for name, p in module.named_parameters(remove_duplicate=False):
                full = safe_get_full_fp32_param(p) if p.requires_grad else None
                if full is None:
                    with GatheredParameters([p], enabled=hasattr(p, "ds_id")):
                        full = p.detach().clone()
                    if p.requires_grad and p.dtype != torch.float32:
                        upcast.append(name)
                if name in keys:
                    out[name] = full.detach().to("cpu", torch.float32).contiguous().clone()
            for name, b in module.named_buffers(remove_duplicate=False):
                if name in keys:
                    b = b.detach().to("cpu")
                    out[name] = (b.float() if b.is_floating_point() else b).contiguous().clone()
        if upcast and self.is_rank0:
            log.warning(
                "no fp32 master copy for %d trained parameters (e.g. %s; zero_stage 0 with bf16): "
                "exporting their %s values upcast",
                len(upcast),
                upcast[0],
                self.precision,
            )
        return out

    def export_weights(self, path: Path | str) -> None:
        """Collective: write the fp32 state dict as safetensors (rank 0 writes, atomically)."""
        from safetensors.torch import save_file

        state = self.full_state_dict()
        if self.is_rank0:
            meta = {
                "step": str(self._step),
                "zero_stage": str(self.cfg.zero_stage),
                "precision": self.precision,
            }
            with atomic_path(path) as tmp:
                save_file(state, str(tmp), metadata=meta)
        if dist.is_initialized():
            dist.barrier()
