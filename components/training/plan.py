"""Bytes of model states one rank holds when parameters train with Adam under ZeRO (the ZeRO paper's
count and what DeepSpeed 0.19.8 was measured to hold). The memory plan of a GPU profile, which builds
the MoSA model on the meta device and uses these counts, is ``components.dit.memory_plan``."""

from __future__ import annotations

from typing import Literal

GIB = 1024**3

Precision = Literal["fp32", "bf16"]


def model_state_bytes(
    params: int,
    precision: Precision,
    zero_stage: int,
    ranks: int,
    accounting: Literal["deepspeed", "zero_paper"] = "deepspeed",
) -> float:
    """Bytes of model states (weights, gradients, master weights, Adam moments) one rank holds when
    ``params`` parameters train with Adam under ZeRO ``zero_stage`` on ``ranks`` data-parallel ranks.

    ``zero_paper`` is the ZeRO paper's count (Rajbhandari et al., 2020): fp32 holds 4Ψ weights + 4Ψ
    gradients + 8Ψ Adam moments; bf16 mixed precision 2Ψ weights + 2Ψ gradients + 12Ψ optimizer
    state (4Ψ fp32 master weights + 8Ψ moments). Stage 1 divides the optimizer state by N, stage 2
    the gradients too, stage 3 the weights too.

    ``deepspeed`` (default) adds what DeepSpeed 0.19.8's optimizer wrappers hold besides that,
    measured per rank at the optimizer step (``benchmarks/_rank_memory.py``, 2 CPU ranks; stages 0, 2
    and 3 in fp32 and bf16 match to 0.01Ψ): a wrapper (any ZeRO stage, or bf16 at stage 0) steps
    Adam on an fp32 master copy with its own fp32 gradient, 4Ψ + 4Ψ partitioned like the optimizer
    state; the fp32 gradient is a cast of the reduced gradient partition made for the step. Under fp32 the
    ZeRO wrappers keep that master copy too although the weights are already fp32; plain fp32 stage
    0 steps the weights themselves (no wrapper). So bf16 ZeRO-2 holds 2Ψ + 18Ψ/N (DeepSpeed's own
    ``estimate_zero2_model_states_mem_needs``), fp32 ZeRO-2 4Ψ + 20Ψ/N, bf16 stage 0 20Ψ. DeepSpeed's
    gradient buckets are not in it: they are released before the step (reduce_bucket_size elements
    while backward runs). Stage 1 counts whole gradients, as the paper does: they stay whole between
    accumulation boundaries; on a boundary DeepSpeed reduces them in buckets as stage 2 does, so
    with ``grad_accum`` 1 stage 1 measures what stage 2 does (the count is an upper bound there).
    """
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be fp32 or bf16, got {precision!r}")
    if zero_stage not in (0, 1, 2, 3):
        raise ValueError(f"zero_stage must be 0, 1, 2 or 3, got {zero_stage}")
    if ranks < 1 or params < 0:
        raise ValueError(f"ranks must be >= 1 and params >= 0, got ranks={ranks}, params={params}")
    if accounting not in ("deepspeed", "zero_paper"):
        raise ValueError(f"accounting must be deepspeed or zero_paper, got {accounting!r}")
    weight = 2 if precision == "bf16" else 4
    optimizer = 8 + (4 if precision == "bf16" else 0)  # Adam moments (+ fp32 master weights)
    if accounting == "deepspeed" and (zero_stage > 0 or precision == "bf16"):
        optimizer = 8 + 4 + 4  # moments + fp32 master weights + their fp32 gradient
    n = float(ranks)
    weights = weight * params / (n if zero_stage >= 3 else 1)
    grads = weight * params / (n if zero_stage >= 2 else 1)
    return weights + grads + optimizer * params / (n if zero_stage >= 1 else 1)
