"""The memory planner builds the published backbones on the meta device and plans per-GPU memory."""

from __future__ import annotations

from pathlib import Path

import pytest

from components.dit.memory_plan import format_plan, load_profile, plan_memory
from components.training.plan import GIB, model_state_bytes

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
