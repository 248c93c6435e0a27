"""DeepSpeed ZeRO training engine shared by the training stages: config, loop, checkpoints, schedule."""

from components.training.engine import (
    EngineConfig,
    Trainer,
    TrainResult,
    build_ds_config,
    ensure_distributed,
    load_ds_template,
    resolve_precision,
    seed_everything,
)
from components.training.schedule import lr_factor, warmup_cosine

__all__ = [
    "EngineConfig",
    "TrainResult",
    "Trainer",
    "build_ds_config",
    "ensure_distributed",
    "load_ds_template",
    "lr_factor",
    "resolve_precision",
    "seed_everything",
    "warmup_cosine",
]
