"""Memory plan of a GPU profile, without weights: build the backbone and the MoSA modules on the meta
device, count parameters, and estimate per-GPU memory for ZeRO-1/2/3 and activations.

Model states of the *trainable* MoSA modules come from DeepSpeed's own estimators
(``estimate_zero2_model_states_mem_needs`` / ``estimate_zero3_model_states_mem_needs``, no offload;
ZeRO-2's equals ``model_state_bytes(Ψ, "bf16", 2, N)`` = 2Ψ + 18Ψ/N, what DeepSpeed was measured
to hold); ZeRO-1 is not covered by an estimator and uses the ZeRO paper's mixed-precision Adam
count 4Ψ + 12Ψ/N bytes (``model_state_bytes(Ψ, "bf16", 1, N, accounting="zero_paper")``). The
frozen base transformer and VAE are not partitioned (bf16 replicas on every GPU); the text encoder
is not resident: text embeddings are cached.

Activations follow Korthikanti et al. (2022) for a transformer layer in 16-bit with a fused
(flash) attention kernel, so without the ``5·a·s/h`` attention-score term: ``34·s·b·h`` bytes per
layer; with activation checkpointing a layer keeps only its input (``2·s·b·h``) and one layer is
recomputed at a time. Gradients must flow through every base block after the first HADC injection,
so all layers count. These are estimates to plan with, not measurements.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from components.backbone.spec import get_spec
from components.dit.config import MoSAConfig
from components.dit.mosa import MoSATransformer, count_parameters
from components.training.plan import GIB, model_state_bytes


class ProfileModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    backbone: str = "cogvideox"
    variant: str = "5b"
    path: str | None = None
    num_structure_blocks: int = Field(6, ge=1)
    text_tokens: int = Field(226, ge=1, description="text sequence length (CogVideoX: 226 T5 tokens)")
    vae_params: float = Field(2.16e8, ge=0, description="frozen VAE parameter count")


class ProfileTrain(BaseModel):
    model_config = ConfigDict(extra="forbid")

    gpus: int = Field(4, ge=1)
    gpu_memory_gib: float = Field(80.0, gt=0)
    micro_batch: int = Field(1, ge=1)
    grad_accum: int = Field(4, ge=1)
    frames: int = 49
    height: int = 480
    width: int = 720
    zero_stage: int = Field(2, ge=0, le=3)
    precision: str = "bf16"
    gradient_checkpointing: bool = True


class Profile(BaseModel):
    """A GPU profile file (infra/profiles/*.yaml): the model, the training setting, and the
    params.yaml overrides that switch the pipeline to it."""

    model_config = ConfigDict(extra="forbid")

    profile: str
    description: str = ""
    model: ProfileModel = ProfileModel()
    train: ProfileTrain = ProfileTrain()
    overrides: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _run_matches_plan(self) -> Profile:
        """The overrides that set up the run must say what the memory plan assumes."""
        t = self.train
        for key, planned in (
            ("train_dit.gradient_checkpointing", t.gradient_checkpointing),
            ("train_dit.frames", t.frames),
            ("train_dit.height", t.height),
            ("train_dit.width", t.width),
        ):
            if key in self.overrides and self.overrides[key] != planned:
                raise ValueError(
                    f"profile {self.profile}: overrides set {key}: {self.overrides[key]!r} but the memory "
                    f"plan (train:) assumes {planned!r}; make them agree"
                )
        return self


def load_profile(path: str | Path) -> Profile:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"profile {path} not found; profiles live in infra/profiles/")
    return Profile.model_validate(yaml.safe_load(path.read_text()) or {})


@dataclass
class MemoryPlan:
    profile: str
    gpus: int
    trainable: int
    frozen: int
    largest_layer: int
    tokens: int
    hidden: int
    layers: int
    rows: list[dict[str, Any]] = field(default_factory=list)
    activations_gib: dict[str, float] = field(default_factory=dict)
    frozen_gib: float = 0.0
    gpu_memory_gib: float = 80.0
    chosen_zero: int = 2
    checkpointing: bool = True

    def total_gib(self, zero: int, checkpointing: bool) -> float:
        row = next(r for r in self.rows if r["zero"] == zero)
        act = self.activations_gib["checkpointed" if checkpointing else "full"]
        return row["model_states_gib"] + self.frozen_gib + act

    @property
    def fits(self) -> bool:
        return self.total_gib(self.chosen_zero, self.checkpointing) <= self.gpu_memory_gib


def build_meta_model(model: ProfileModel):
    """The base transformer and the MoSA modules on the meta device (no memory, no weights)."""
    import torch

    spec = get_spec(model.backbone)
    with torch.device("meta"):
        base = spec.build_transformer(spec.published_config(model.variant))
        mosa = MoSATransformer(
            base, MoSAConfig(backbone=model.backbone, num_structure_blocks=model.num_structure_blocks)
        )
    return spec, base, mosa, count_parameters(mosa)


def plan_memory(profile: Profile, gpus: int | None = None, zero: int | None = None) -> MemoryPlan:
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs
    from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

    m, t = profile.model, profile.train
    n = gpus or t.gpus
    spec, base, _mosa, counts = build_meta_model(m)
    blocks = spec.blocks(base)
    largest = max(sum(p.numel() for p in b.parameters()) for b in blocks)
    hidden = spec.hidden_size(base)
    pt, ph, pw = spec.patch_size(base)
    lf = (t.frames - 1) // 4 + 1
    tokens = (lf // max(pt, 1)) * (t.height // 8 // ph) * (t.width // 8 // pw) + m.text_tokens
    layers = len(blocks) + m.num_structure_blocks
    P = counts["trainable"]
    rows = []
    z1 = model_state_bytes(P, "bf16", 1, n, accounting="zero_paper")  # 4Ψ + 12Ψ/N
    rows.append({"zero": 1, "model_states_gib": z1 / GIB, "source": "ZeRO paper 4Ψ+12Ψ/N"})
    _, z2 = estimate_zero2_model_states_mem_needs(P, num_gpus_per_node=n, cpu_offload=False)
    rows.append({"zero": 2, "model_states_gib": z2 / GIB, "source": "deepspeed estimate_zero2"})
    _, z3, _ = estimate_zero3_model_states_mem_needs(
        P, largest, num_gpus_per_node=n, cpu_offload=False, cpu_offload_params=False
    )
    rows.append({"zero": 3, "model_states_gib": z3 / GIB, "source": "deepspeed estimate_zero3"})
    per_layer_full = 34 * tokens * t.micro_batch * hidden
    per_layer_input = 2 * tokens * t.micro_batch * hidden
    activations = {
        "full": layers * per_layer_full / GIB,
        "checkpointed": (layers * per_layer_input + per_layer_full) / GIB,
    }
    frozen_gib = (2 * counts["frozen"] + 2 * m.vae_params) / GIB
    return MemoryPlan(
        profile=profile.profile,
        gpus=n,
        trainable=P,
        frozen=counts["frozen"],
        largest_layer=largest,
        tokens=tokens,
        hidden=hidden,
        layers=layers,
        rows=rows,
        activations_gib=activations,
        frozen_gib=frozen_gib,
        gpu_memory_gib=t.gpu_memory_gib,
        chosen_zero=zero if zero is not None else t.zero_stage,
        checkpointing=t.gradient_checkpointing,
    )


def format_plan(plan: MemoryPlan, profile: Profile) -> str:
    t = profile.train
    lines = [
        f"profile {plan.profile}: {profile.model.backbone}-{profile.model.variant}, "
        f"{t.frames}x{t.height}x{t.width}, micro-batch {t.micro_batch} x accum {t.grad_accum} "
        f"x {plan.gpus} GPUs = batch {t.micro_batch * t.grad_accum * plan.gpus}",
        f"parameters: trainable (MoSA modules) {plan.trainable / 1e9:.3f} B, "
        f"frozen base {plan.frozen / 1e9:.3f} B",
        f"sequence: {plan.tokens} tokens x hidden {plan.hidden}, {plan.layers} layers with activations",
        "",
        f"{'ZeRO':>4} | {'model states':>12} | {'frozen bf16':>11} | {'act. full':>9} | {'act. ckpt':>9} | "
        f"{'total (ckpt)':>12} | source",
    ]
    for r in plan.rows:
        total = plan.total_gib(r["zero"], True)
        lines.append(
            f"{r['zero']:>4} | {r['model_states_gib']:>9.1f} GiB | {plan.frozen_gib:>7.1f} GiB | "
            f"{plan.activations_gib['full']:>5.0f} GiB | {plan.activations_gib['checkpointed']:>5.1f} GiB | "
            f"{total:>8.1f} GiB | {r['source']}"
        )
    chosen = plan.total_gib(plan.chosen_zero, plan.checkpointing)
    verdict = "fits" if plan.fits else "does NOT fit"
    lines += [
        "",
        f"chosen: ZeRO-{plan.chosen_zero}, checkpointing {'on' if plan.checkpointing else 'off'}: "
        f"{chosen:.1f} GiB per GPU -> {verdict} in {plan.gpu_memory_gib:g} GiB",
    ]
    if not plan.checkpointing or plan.total_gib(plan.chosen_zero, False) > plan.gpu_memory_gib:
        lines.append(
            f"without checkpointing: {plan.total_gib(plan.chosen_zero, False):.0f} GiB per GPU "
            "(activations dominate; keep gradient_checkpointing on)"
        )
    return "\n".join(lines)
