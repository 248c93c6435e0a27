"""The optimizer a Trainer hands to DeepSpeed, and its parameter groups.

Always AdamW as a client optimizer: ``torch.optim.AdamW``, except with ``optimizer: cpu_adam`` or
``offload`` on a GPU, where DeepSpeed's ``DeepSpeedCPUAdam`` (C++, built at install) updates in place,
without torch's per-step temporaries of the parameters' size. DeepSpeed's ``FusedAdam`` needs CUDA
and is not used. On the CPU accelerator ``offload`` alone keeps ``torch.optim.AdamW``
(``zero_force_ds_cpu_optimizer: false``): offloading from CPU to CPU changes nothing numerically.
Weight decay applies to matrices only (``ndim >= 2``), not to biases and norm scales;
``group_elements`` cuts the groups smaller, which bounds ZeRO-1/2's per-group fp32 gradient copy.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from components.training.config import EngineConfig
from components.training.ds_config import _on_cpu_accelerator


def param_groups(model: nn.Module, weight_decay: float, group_elements: int = 0) -> list[dict[str, Any]]:
    """The optimizer's parameter groups: matrices decay, biases and norm scales do not; with
    ``group_elements > 0`` each of the two is cut, in parameter order, into groups of at most that many
    elements (a tensor larger than that gets a group of its own). ZeRO-1/2 casts one group's gradient
    partition to fp32 at a time at the optimizer step, so smaller groups bound that transient."""
    out: list[dict[str, Any]] = []
    for wd, keep in ((weight_decay, lambda p: p.ndim >= 2), (0.0, lambda p: p.ndim < 2)):
        params = [p for p in model.parameters() if p.requires_grad and keep(p)]
        if not params:
            continue
        if group_elements <= 0:
            out.append({"params": params, "weight_decay": wd})
            continue
        chunk: list[nn.Parameter] = []
        size = 0
        for p in params:
            if chunk and size + p.numel() > group_elements:
                out.append({"params": chunk, "weight_decay": wd})
                chunk, size = [], 0
            chunk.append(p)
            size += p.numel()
        out.append({"params": chunk, "weight_decay": wd})
    return out


def build_optimizer(model: nn.Module, cfg: EngineConfig) -> torch.optim.Optimizer:
    """AdamW over ``param_groups``, handed to DeepSpeed as its client optimizer (see the module doc)."""
    groups = param_groups(model, cfg.weight_decay, cfg.group_elements)
    kwargs = {"lr": cfg.lr, "betas": cfg.betas, "eps": cfg.eps, "weight_decay": cfg.weight_decay}
    if cfg.optimizer == "cpu_adam" or (cfg.offload and not _on_cpu_accelerator()):
        from deepspeed.ops.adam import DeepSpeedCPUAdam  # lazy: C++ op, loaded only when chosen

        return DeepSpeedCPUAdam(groups, adamw_mode=True, **kwargs)
    return torch.optim.AdamW(groups, **kwargs)
