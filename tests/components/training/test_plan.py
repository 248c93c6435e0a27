"""Model-state accounting: the ZeRO paper's and DeepSpeed's bytes for known stages and precisions."""

from __future__ import annotations

import pytest

from components.training.plan import model_state_bytes

PSI, RANKS = 1000, 4
# bytes per rank for Ψ = 1000 parameters on 4 ranks, stages 0..3
PAPER = {
    "fp32": [16_000, 4000 + 4000 + 8000 / 4, 4000 + 4000 / 4 + 8000 / 4, 16_000 / 4],
    "bf16": [16_000, 2000 + 2000 + 12_000 / 4, 2000 + 2000 / 4 + 12_000 / 4, 16_000 / 4],
}
# DeepSpeed also holds an fp32 master copy (fp32 ZeRO too) and its fp32 gradient: +8Ψ, partitioned
# like the optimizer state; plain fp32 stage 0 has no wrapper, so nothing extra
DEEPSPEED = {
    "fp32": [16_000, 4000 + 4000 + 16_000 / 4, 4000 + 4000 / 4 + 16_000 / 4, 24_000 / 4],
    "bf16": [20_000, 2000 + 2000 + 16_000 / 4, 2000 + 2000 / 4 + 16_000 / 4, 20_000 / 4],
}


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("stage", [0, 1, 2, 3])
def test_model_state_bytes_of_known_stages(precision: str, stage: int) -> None:
    paper = model_state_bytes(PSI, precision, stage, RANKS, accounting="zero_paper")
    assert paper == pytest.approx(PAPER[precision][stage], rel=1e-12)
    assert model_state_bytes(PSI, precision, stage, RANKS) == pytest.approx(
        DEEPSPEED[precision][stage], rel=1e-12
    )
    # one rank partitions nothing: every stage holds what stage 0 does
    assert model_state_bytes(PSI, precision, stage, 1, accounting="zero_paper") == PAPER[precision][0]


def test_bf16_zero2_count_is_deepspeeds_estimator_and_zero2_halves_at_two_ranks() -> None:
    from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

    for n in (1, 2, 3, 8):
        _, estimate = estimate_zero2_model_states_mem_needs(123_457, num_gpus_per_node=n, cpu_offload=False)
        assert model_state_bytes(123_457, "bf16", 2, n) == pytest.approx(estimate, abs=1)
    # the benchmark's setting: 2 ranks, bf16 -> ZeRO-2 holds 11Ψ against stage 0's 20Ψ
    assert model_state_bytes(10, "bf16", 2, 2) / model_state_bytes(10, "bf16", 0, 2) == pytest.approx(0.55)


def test_model_state_bytes_rejects_unknown_settings() -> None:
    with pytest.raises(ValueError, match="precision must be fp32 or bf16"):
        model_state_bytes(PSI, "fp16", 2, 2)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="zero_stage must be 0, 1, 2 or 3"):
        model_state_bytes(PSI, "bf16", 4, 2)
    with pytest.raises(ValueError, match="ranks must be >= 1"):
        model_state_bytes(PSI, "bf16", 2, 0)
    with pytest.raises(ValueError, match="accounting must be deepspeed or zero_paper"):
        model_state_bytes(PSI, "bf16", 2, 2, accounting="ds")  # type: ignore[arg-type]
