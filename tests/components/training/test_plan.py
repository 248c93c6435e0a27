"""The memory planner builds the published backbones on the meta device and plans per-GPU memory; its
model-state accounting gives the ZeRO paper's and DeepSpeed's bytes for known stages and precisions."""

from __future__ import annotations

from pathlib import Path

import pytest

from components.training.plan import GIB, format_plan, load_profile, model_state_bytes, plan_memory

PROFILES = Path(__file__).resolve().parents[3] / "infra" / "profiles"


def test_cogvideox_5b_plan_counts_and_orders() -> None:
    profile = load_profile(PROFILES / "cogvideox-5b.yaml")
    plan = plan_memory(profile)
    assert 5.0e9 < plan.frozen < 6.0e9  # CogVideoX-5B transformer
    per_block = plan.largest_layer
    n = profile.model.num_structure_blocks
    assert n * per_block < plan.trainable < n * per_block * 1.6  # block copies + HADC modules
    states = {r["zero"]: r["model_states_gib"] for r in plan.rows}
    assert states[3] < states[2] <= states[1]  # more partitioning, less per GPU
    # ZeRO-1: the paper's 4Ψ + 12Ψ/N as before; ZeRO-2: DeepSpeed's estimator, the measured 2Ψ + 18Ψ/N
    P, N = plan.trainable, plan.gpus
    assert states[1] * GIB == pytest.approx(4 * P + 12 * P / N, rel=1e-12)
    assert states[2] * GIB == pytest.approx(model_state_bytes(P, "bf16", 2, N), abs=1)
    assert plan.activations_gib["checkpointed"] < plan.activations_gib["full"] / 5
    # latent 13x60x90, patch 2x2 -> 17550 video tokens + 226 text tokens
    assert plan.tokens == 13 * 30 * 45 + 226
    text = format_plan(plan, profile)
    assert "fits in 80 GiB" in text and "ZeRO-2" in text


def test_more_gpus_lower_zero3_states_and_fewer_gpus_can_fail() -> None:
    profile = load_profile(PROFILES / "cogvideox-5b.yaml")
    few, many = plan_memory(profile, gpus=1, zero=3), plan_memory(profile, gpus=8, zero=3)
    z3 = lambda p: next(r for r in p.rows if r["zero"] == 3)["model_states_gib"]  # noqa: E731
    assert z3(many) < z3(few)
    no_ckpt = profile.model_copy(
        update={"train": profile.train.model_copy(update={"gradient_checkpointing": False, "micro_batch": 4})}
    )
    assert not plan_memory(no_ckpt).fits


def test_missing_profile_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="infra/profiles"):
        load_profile(tmp_path / "nope.yaml")


@pytest.mark.parametrize("name", sorted(p.name for p in PROFILES.glob("*.yaml")))
def test_profile_overrides_are_valid_params_and_match_the_plan(name: str) -> None:
    from components.config import validate_section

    profile = load_profile(PROFILES / name)
    sections: dict[str, dict] = {}
    for key, value in profile.overrides.items():
        section, *path = key.split(".")
        node = sections.setdefault(section, {})
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    for section, values in sections.items():
        validate_section(section, values)  # raises naming the bad key
    run = validate_section("train_dit", sections["train_dit"])
    assert run.gradient_checkpointing == profile.train.gradient_checkpointing
    assert (run.frames, run.height, run.width) == (
        profile.train.frames,
        profile.train.height,
        profile.train.width,
    )
    assert run.base_path is not None and run.text_encoder.name == "t5"


def test_profile_whose_run_disagrees_with_its_plan_is_refused(tmp_path) -> None:
    text = (PROFILES / "cogvideox-5b.yaml").read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        text.replace("train_dit.gradient_checkpointing: true", "train_dit.gradient_checkpointing: false")
    )
    with pytest.raises(ValueError, match=r"train_dit\.gradient_checkpointing"):
        load_profile(bad)


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
