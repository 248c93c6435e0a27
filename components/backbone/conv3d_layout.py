"""``Conv3dLayout``: batch-1 CPU ``conv3d`` calls on PyTorch's fast (oneDNN) kernel, exactly.

ATen sends a float32 CPU ``conv3d`` to oneDNN only when the batch is larger than one or when
``N·C·D₁·D₂`` (the first two spatial sizes) exceeds 20480; otherwise it takes its slow vol2col kernel,
5–12× slower per call, forward and backward. The video VAEs run on one clip at a time with time as the
first spatial axis and a few frames per chunk, so every encode and decode of one clip hit the slow
kernel. A convolution is the same sum in any order of its axes, so reordering the spatial axes
(largest first) of the input, the weight and the per-axis stride/padding/dilation, and the output
back, is an exact rewrite (results differ by float rounding only). Used by the backbone adapters'
``vae_encode``/``vae_decode`` through ``vae_conv_layout``; GPU calls, batches and other dtypes pass
through unchanged. If a later PyTorch changes its rule, the results stay the same and only the speed-up
goes. Not under gradient checkpointing with gradients on: the blocks' recomputation in the backward runs
outside the mode, and ``torch.utils.checkpoint`` refuses tensors saved with another layout.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

_SLOW_CONV3D_MAX = 20480  # ATen's ConvParams::use_mkldnn: below this N·C·D₁·D₂, batch-1 conv3d is slow


class Conv3dLayout(TorchFunctionMode):
    """Inside the block, a CPU float32 ``conv3d`` on a single sample runs with its spatial axes
    reordered (largest first), so that PyTorch picks its oneDNN kernel (see the module docstring)."""

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func is F.conv3d or func is torch.conv3d:
            named = dict(kwargs)
            head = (named.pop("input"),) if "input" in named else ()
            out = _conv3d_reordered(*head, *args, **named)
            if out is not None:
                return out
        return func(*args, **kwargs)


def _per_axis(value: Any, order: list[int]) -> Any:
    """A conv3d stride/padding/dilation argument reordered like the spatial axes (strings unchanged)."""
    if isinstance(value, str):
        return value
    vals = [value] * 3 if isinstance(value, int) else list(value)
    if len(vals) == 1:
        return vals[0]
    return tuple(vals[i] for i in order)


def _conv3d_reordered(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
) -> Tensor | None:
    """``conv3d`` with the spatial axes reordered largest first (see ``Conv3dLayout``), or None when
    the call is not a batch-1 CPU float32 one that ATen would send to its slow kernel."""
    if x.device.type != "cpu" or x.dtype != torch.float32 or x.ndim != 5 or x.shape[0] != 1 or groups != 1:
        return None
    n, c, *sizes = x.shape
    order = sorted(range(3), key=lambda i: -sizes[i])
    if order == [0, 1, 2] or n * c * sizes[0] * sizes[1] > _SLOW_CONV3D_MAX:
        return None
    if n * c * sizes[order[0]] * sizes[order[1]] <= _SLOW_CONV3D_MAX:
        return None  # reordering would not change the kernel ATen picks
    perm = [0, 1, *(2 + i for i in order)]
    out = F.conv3d(
        x.permute(perm),
        weight.permute(perm),
        bias,
        _per_axis(stride, order),
        _per_axis(padding, order),
        _per_axis(dilation, order),
        groups,
    )
    # contiguous like the plain call: a checkpointed block recomputes it outside the mode, same metadata
    return out.permute([perm.index(i) for i in range(5)]).contiguous()


def vae_conv_layout(vae: nn.Module) -> contextlib.AbstractContextManager:
    """``Conv3dLayout()`` for a call through ``vae``, or a no-op context when gradients flow through a VAE
    that checkpoints its blocks (their recomputation would run outside the mode; see the module)."""
    if torch.is_grad_enabled() and any(getattr(m, "gradient_checkpointing", False) for m in vae.modules()):
        return contextlib.nullcontext()
    return Conv3dLayout()
