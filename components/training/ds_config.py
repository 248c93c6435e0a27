"""The DeepSpeed config of an ``EngineConfig``: ZeRO settings per stage (verified on the CPU accelerator),
the precision the hardware allows, and the templates in ``infra/deepspeed/`` filled from the params
(``auto`` fields get the engine's values; a template that contradicts them is refused)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from components.training.config import EngineConfig

_BUCKET = 50_000_000  # elements; DeepSpeed's 5e8 default is sized for large GPUs
_BUCKET_KEYS = ("reduce_bucket_size", "allgather_bucket_size", "stage3_prefetch_bucket_size")


ZERO_SETTINGS: dict[int, dict[str, Any]] = {
    0: {},
    1: {},
    2: {
        "overlap_comm": True,
        "contiguous_gradients": True,
        "reduce_scatter": True,
        "allgather_partitions": True,
        "reduce_bucket_size": _BUCKET,
        "allgather_bucket_size": _BUCKET,
    },
    3: {
        "overlap_comm": True,
        "contiguous_gradients": True,
        "reduce_bucket_size": _BUCKET,
        "stage3_prefetch_bucket_size": _BUCKET,
        "stage3_param_persistence_threshold": 100_000,
        "stage3_max_live_parameters": 1_000_000_000,
        "stage3_max_reuse_distance": 1_000_000_000,
        "stage3_gather_16bit_weights_on_model_save": False,
    },
}


def _on_cpu_accelerator() -> bool:
    from deepspeed.accelerator import get_accelerator

    return get_accelerator().device_name() == "cpu"


def resolve_precision(precision: str) -> Literal["fp32", "bf16"]:
    """``auto`` means fp32 on the CPU accelerator and bf16 on a GPU that supports it."""
    if precision in ("fp32", "bf16"):
        return precision  # type: ignore[return-value]
    if precision != "auto":
        raise ValueError(f"precision must be auto, fp32 or bf16, got {precision!r}")
    from deepspeed.accelerator import get_accelerator

    acc = get_accelerator()
    return "bf16" if acc.device_name() != "cpu" and acc.is_bf16_supported() else "fp32"


def build_ds_config(cfg: EngineConfig) -> dict[str, Any]:
    """The DeepSpeed config dict for ``cfg`` (the same settings as ``infra/deepspeed/*.json``)."""
    zero: dict[str, Any] = {"stage": cfg.zero_stage, **ZERO_SETTINGS[cfg.zero_stage]}
    if cfg.bucket_elements is not None:
        for key in _BUCKET_KEYS:
            if key in zero:
                zero[key] = cfg.bucket_elements
    if cfg.offload:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
        if cfg.zero_stage == 3:
            zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    return {
        "train_micro_batch_size_per_gpu": cfg.micro_batch,
        "gradient_accumulation_steps": cfg.grad_accum,
        "gradient_clipping": cfg.grad_clip if cfg.grad_clip is not None else 0.0,
        "bf16": {"enabled": resolve_precision(cfg.precision) == "bf16"},
        "zero_optimization": zero,
        "zero_force_ds_cpu_optimizer": not _on_cpu_accelerator(),
        "wall_clock_breakdown": False,
    }


def load_ds_template(path: Path | str, cfg: EngineConfig) -> dict[str, Any]:
    """Read a DeepSpeed JSON template and fill its ``"auto"`` values from ``cfg``.

    Values the EngineConfig owns (batch sizes, clipping, precision, ZeRO stage, offload) must be
    ``"auto"`` or agree with ``cfg``; everything else (bucket sizes, overlap, ...) comes from the
    template. ``optimizer``/``scheduler`` blocks are refused: the Trainer builds both.
    """
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(raw, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(raw).__name__}")
    for key in ("optimizer", "scheduler"):
        if key in raw:
            raise ValueError(
                f"{path}: remove the '{key}' block; the Trainer builds AdamW and the warmup-cosine "
                "schedule from EngineConfig (lr, betas, eps, weight_decay, warmup_steps, ...)"
            )
    if raw.get("train_batch_size") == "auto":
        del raw["train_batch_size"]  # DeepSpeed derives it from micro batch x accumulation x ranks
    expected = build_ds_config(cfg)
    owned = {
        "train_micro_batch_size_per_gpu",
        "gradient_accumulation_steps",
        "gradient_clipping",
        "bf16.enabled",
        "zero_optimization.stage",
        "zero_force_ds_cpu_optimizer",
    }
    filled = _fill_auto(raw, expected, owned, path, prefix="")
    zero = filled.get("zero_optimization", {})
    offloaded = str(zero.get("offload_optimizer", {}).get("device", "none")).lower() not in ("none", "")
    if offloaded != cfg.offload:
        raise ValueError(
            f"{path}: zero_optimization.offload_optimizer is {'on' if offloaded else 'off'} but "
            f"EngineConfig.offload is {cfg.offload}; use the matching template (*_offload.json or not)"
        )
    return filled


def _fill_auto(raw: Any, expected: Any, owned: set[str], path: Path, prefix: str) -> Any:
    if not isinstance(raw, dict):
        return raw
    out = {}
    for key, value in raw.items():
        dotted = f"{prefix}{key}"
        want = expected.get(key) if isinstance(expected, dict) else None
        if value == "auto":
            if want is None and dotted not in owned:
                raise ValueError(f"{path}: '{dotted}' is 'auto' but EngineConfig has no value for it; set it")
            out[key] = want
        elif isinstance(value, dict):
            out[key] = _fill_auto(value, want if isinstance(want, dict) else {}, owned, path, dotted + ".")
        else:
            if dotted in owned and value != want:
                raise ValueError(
                    f"{path}: '{dotted}' is {value!r} but EngineConfig gives {want!r}; "
                    'set it to "auto" or change the engine config'
                )
            out[key] = value
    return out
