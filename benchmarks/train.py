"""Training cost at one tiny config: base-DiT vs MoSA step time, ZeRO-2 vs data-parallel memory, FLOP use.

Three measurements, taken in one run so that their ratios compare like with like on a noisy machine:

1. **Step time.** One training update of the tiny text-to-video base DiT (all its parameters train,
   the backbone's own diffusion objective) and MoSA's updates (frozen base; structure blocks + HADC
   train) at ``train_dit``'s defaults: the auxiliary terms (tracking through the soft tracker on the
   VAE-decoded x̂₀, contact through the CPU profile's depth network) on every ``aux_every``-th step, on
   ``aux_samples`` sample(s), diffusion and HADC mask on every step. Both go through the real
   ``Trainer`` (DeepSpeed ZeRO-2, one process, fp32); a step's time is the gap between two
   consecutive ``log_fn`` calls, medians are taken after a few warm-up updates. ``mosa_over_base`` is
   a MoSA step *with* the auxiliary terms over a base step; ``mosa_over_base_amortized`` is the mean
   of ``aux_every`` consecutive MoSA steps (one with the terms, ``aux_every − 1`` without, from the
   two medians) over a base step. The clips are synthetic humans rendered from DeepMimic mocap with
   exact masks, keypoint tracks and cameras; the captions go through the packaged MiniLM token
   encoder. The defaults mirror ``params.yaml`` (``TrainBenchConfig.from_params`` reads them through
   the config loader; a test fails when the two drift).
2. **Memory per rank.** ``_rank_memory.py`` trains an MLP with AdamW under ``torchrun`` on 2 CPU
   ranks (gloo), with ZeRO-2, with ZeRO-3 and with ZeRO stage 0, which is DeepSpeed's plain data
   parallelism (the DDP equivalent: full optimizer state and gradients on every rank, gradients
   all-reduced), in bf16 mixed precision by default (DeepSpeed's CPU accelerator runs it; fp32
   master weights and Adam moments). Each rank reports its peak RSS, the bytes of optimizer state it
   holds and its model states (every weight, gradient, master-weight and optimizer-state storage,
   taken at the optimizer step); the maximum over ranks is kept. The default MLP has ~201 M
   parameters (12 layers of 4096×4096), a size at which the model states (20 bytes per parameter
   at bf16 stage 0) dominate the process; at 25 M the interpreter, torch and DeepSpeed's buffers did
   (ZeRO-2 measured 1.05× stage 0's peak RSS there). The measured model states are checked against
   the planner's count for the same parameters, precision, stage and ranks
   (``components.training.plan.model_state_bytes``). Every run uses the same optimizer settings:
   DeepSpeed's in-place C++ AdamW (``optimizer: cpu_adam``; torch's AdamW allocates temporaries of
   the partition's size at each step), parameter groups of at most 20 M elements (ZeRO-1/2 casts one
   group's gradient partition to fp32 at a time), 1e7-element ZeRO buckets, and glibc's
   ``MALLOC_MMAP_THRESHOLD_`` at 1 MiB so that freed buffers go back to the OS and the RSS counts live
   memory. With torch AdamW, two groups and the default allocator, ZeRO-2 measured 0.756x stage 0.
3. **FLOP use.** The fp32 matmul peak of this machine (best of a few ``n×n @ n×n`` products at the
   step benchmark's thread count) and the FLOPs of one forward+backward of each step counted by
   ``torch.utils.flop_counter.FlopCounterMode`` (matmuls, convolutions and attention only; the
   optimizer's elementwise work is not counted; grouped-convolution gradients counted per group, see
   ``conv_backward_flops``), divided by the measured step time.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch import Tensor, nn

if TYPE_CHECKING:
    from components.backbone.config import TinyConfig
    from components.data.clipset import ClipSample

ROOT = Path(__file__).resolve().parent.parent
RANK_SCRIPT = Path(__file__).with_name("_rank_memory.py")
DDP_NOTE = "ddp = DeepSpeed ZeRO stage 0, plain data parallelism (DDP-equivalent)"
_LAUNCH_ENV = (
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "GROUP_RANK",
    "ROLE_RANK",
    "MASTER_ADDR",
    "MASTER_PORT",
    "MOSA_SELF_WORLD",
)
_MOTIONS = ("walk", "run", "jump", "kick")

Figures = dict[str, float | int | str]


class TrainBenchConfig(BaseModel):
    """The one tiny config of the benchmark.

    Defaults: the CPU profile as ``params.yaml`` sets it — the tiny base (``pretrain_base.tiny``), its
    text tokens and depth network, the clip size (``ingest.clip``), ``train_dit``'s batch, MoSA N,
    tracks and auxiliary-term schedule (``aux_every``, ``aux_samples``); ``from_params`` reads the same
    fields from a params file. ``threads`` defaults to 1: on tensors this small intra-op threading gains
    little, and on a shared machine one descheduled OpenMP worker stalls every op (MoSA step 0.26 s at
    1 thread vs 9.9 s at 2 threads with other jobs on a 2-core box); the matmul peak is taken at the
    same count, so the utilisation compares like with like.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    frames: int = Field(17, ge=1, description="clip frames, 8N+1 (CogVideoX); ingest.clip.frames")
    height: int = Field(96, ge=16, description="multiple of VAE factor × patch; ingest.clip.height")
    width: int = Field(144, ge=16)
    clips: int = Field(4, ge=1, description="rendered synthetic clips the batches cycle through")
    batch: int = Field(4, ge=1, description="samples per training step (train_dit.batch_size)")
    layers: int = Field(4, ge=1)
    heads: int = Field(4, ge=1)
    head_dim: int = Field(32, ge=2)
    latent_channels: int = Field(8, ge=1)
    patch_size: int = Field(4, ge=1)
    vae_block_channels: tuple[int, ...] = (8, 16, 16)
    vae_norm: Literal["published", "pixel"] = "pixel"
    depth_net: dict[str, Any] = Field(
        default_factory=dict, validate_default=True, description="DepthNetConfig fields"
    )
    structure_blocks: int = Field(2, ge=1, description="MoSA N (structure blocks = HADC modules)")
    track_points: int = Field(48, ge=1)
    aux_every: int = Field(9, ge=1, description="tracking/contact terms on every k-th step (train_dit)")
    aux_samples: int | None = Field(1, ge=1, description="samples decoded per aux step (train_dit)")
    contact_frames: int | None = Field(4, ge=1, description="frames scored by the contact term (train_dit)")
    text_tokens: int = Field(32, ge=1)
    warmup_steps: int = Field(2, ge=0, description="updates left out of the medians")
    steps: int = Field(12, ge=1, description="timed updates (MoSA: aux and non-aux steps among them)")
    threads: int | None = Field(1, ge=1, description="torch threads for steps and matmul; None: current")
    mem_ranks: int = Field(2, ge=2)
    mem_width: int = Field(4096, ge=1, description="MLP width of the memory run")
    mem_depth: int = Field(12, ge=1, description="MLP layers of the memory run (≈ depth·width² parameters)")
    mem_steps: int = Field(3, ge=1)
    mem_micro_batch: int = Field(8, ge=1)
    mem_precision: Literal["fp32", "bf16"] = Field(
        "bf16",
        description="precision of the memory runs; bf16 (DeepSpeed's mixed precision: bf16 weights "
        "and gradients, fp32 master weights and Adam moments) runs on the CPU accelerator",
    )
    mem_optimizer: Literal["adamw", "cpu_adam"] = Field(
        "cpu_adam", description="EngineConfig.optimizer of the memory runs (cpu_adam: in place)"
    )
    mem_group_elements: int = Field(
        20_000_000, ge=0, description="EngineConfig.group_elements (bounds ZeRO's fp32 gradient copy)"
    )
    mem_bucket_elements: int | None = Field(10_000_000, ge=1, description="EngineConfig.bucket_elements")
    mem_mmap_threshold: int | None = Field(
        1 << 20,
        ge=0,
        description="glibc MALLOC_MMAP_THRESHOLD_ (bytes) of the memory runs: larger blocks are mmapped and "
        "go back to the OS when freed, so RSS counts live memory rather than what malloc keeps; null: unset",
    )
    mem_timeout_s: float = Field(600.0, gt=0, description="per torchrun launch")
    matmul_size: int = Field(2048, ge=1)
    matmul_repeats: int = Field(5, ge=1)

    @field_validator("depth_net")
    @classmethod
    def _depth_net(cls, value: dict[str, Any]) -> dict[str, Any]:
        from components.base.config import DepthNetConfig

        return DepthNetConfig(**value).model_dump(mode="json")

    @classmethod
    def from_params(cls, path: Path | str = ROOT / "params.yaml", **overrides: Any) -> TrainBenchConfig:
        """The benchmark at the settings of a params file (through ``components.config``)."""
        from components.config.loader import load_section

        base = load_section("pretrain_base", path)
        train = load_section("train_dit", path)
        clip = load_section("ingest", path).clip
        tiny = base.tiny
        fields: dict[str, Any] = {
            "frames": clip.frames,
            "height": clip.height,
            "width": clip.width,
            "batch": train.batch_size,
            "layers": tiny.layers,
            "heads": tiny.heads,
            "head_dim": tiny.head_dim,
            "latent_channels": tiny.latent_channels,
            "patch_size": tiny.patch_size,
            "vae_block_channels": tiny.vae_block_channels,
            "vae_norm": tiny.vae_norm,
            "depth_net": base.depth_net.model_dump(mode="json"),
            "structure_blocks": train.mosa.num_structure_blocks,
            "track_points": train.track_points,
            "aux_every": train.aux_every,
            "aux_samples": train.aux_samples,
            "contact_frames": train.contact_frames,
            "text_tokens": base.text_encoder.max_tokens,
        }
        return cls(**{**fields, **overrides})

    def describe(self) -> str:
        """The step benchmark's config as one short line."""
        vae = "-".join(map(str, self.vae_block_channels))
        return (
            f"cogvideox tiny L{self.layers} {self.heads}x{self.head_dim} C{self.latent_channels} "
            f"p{self.patch_size} vae{vae} {self.vae_norm}; "
            f"clip {self.frames}x{self.height}x{self.width}; batch {self.batch}; "
            f"MoSA N={self.structure_blocks}, {self.track_points} tracks, depth net, "
            f"aux every {self.aux_every} step(s) on {self.aux_samples or 'all'} sample(s), contact on "
            f"{self.contact_frames or 'all'} frame(s); "
            f"ZeRO-2 fp32 1 process; medians of {self.steps} after {self.warmup_steps} warm-up; "
            f"{self.threads or torch.get_num_threads()} thread(s)"
        )

    def describe_memory(self) -> str:
        """The memory benchmark's config as one short line."""
        return (
            f"MLP {self.mem_depth}x{self.mem_width} {self.mem_optimizer} {self.mem_precision}, "
            f"{self.mem_ranks} ranks gloo, {self.mem_steps} steps, micro-batch {self.mem_micro_batch}, "
            f"groups <= {self.mem_group_elements or 'all'} elements, "
            f"buckets {self.mem_bucket_elements or 'default'}, MALLOC_MMAP_THRESHOLD_ "
            f"{'unset' if self.mem_mmap_threshold is None else self.mem_mmap_threshold}"
        )


def _sig(x: float, digits: int = 4) -> float:
    """``x`` rounded to ``digits`` significant figures (keeps ratios of rounded figures meaningful)."""
    return float(f"{x:.{digits}g}")


# ---------------------------------------------------------------- machine peak


def matmul_peak_gflops(n: int = 2048, repeats: int = 5) -> float:
    """Best fp32 GFLOP/s of an ``n×n @ n×n`` product (``2n³`` FLOPs) over ``repeats`` timed runs."""
    if n < 1 or repeats < 1:
        raise ValueError(f"n and repeats must be >= 1, got n={n}, repeats={repeats}")
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g)
    out = torch.empty(n, n)
    torch.mm(a, b, out=out)  # warm-up: thread pool, allocator
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b, out=out)
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n**3 / best / 1e9


def conv_backward_flops(
    grad_out_shape: list[int],
    x_shape: list[int],
    w_shape: list[int],
    _bias: Any,
    _stride: Any,
    _padding: Any,
    _dilation: Any,
    transposed: bool,
    _output_padding: Any,
    _groups: int,
    output_mask: list[bool],
    out_shape: Any = None,
    **_: Any,
) -> int:
    """FLOPs of ``aten.convolution_backward``: each requested gradient (input, weight) costs as many
    multiply-adds as the forward convolution.

    torch's own formula counts the weight gradient as one dense convolution over all channels and so
    ignores ``groups``: a grouped convolution (the soft tracker's per-point correlation) is overcounted
    by its group count. The forward count ``2·batch·∏spatial·∏weight`` is exact for grouped weights.
    """
    spatial = (x_shape if transposed else grad_out_shape)[2:]
    forward = 2 * x_shape[0] * math.prod(spatial) * math.prod(w_shape)
    return forward * (int(bool(output_mask[0])) + int(bool(output_mask[1])))


def count_train_flops(
    model: nn.Module, loss_fn: Callable[[nn.Module, Any], tuple[Tensor, Any]], batch: Any
) -> int:
    """FLOPs of one forward + backward of ``loss_fn(model, batch)`` (``FlopCounterMode`` with a
    group-aware convolution backward, see ``conv_backward_flops``); clears the gradients."""
    from torch.utils.flop_counter import FlopCounterMode

    model.zero_grad(set_to_none=True)
    counter = FlopCounterMode(
        display=False, custom_mapping={torch.ops.aten.convolution_backward: conv_backward_flops}
    )
    with counter:
        loss, _ = loss_fn(model, batch)
        loss.backward()
    model.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[int]:
    """Run the block with ``n`` torch intra-op threads (None: leave the count alone); restores it."""
    before = torch.get_num_threads()
    if n is not None:
        if n < 1:
            raise ValueError(f"threads must be >= 1 or None, got {n}")
        torch.set_num_threads(n)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


# ---------------------------------------------------------------- step time


def timed_updates(
    model: nn.Module,
    loss_fn: Callable[[nn.Module, Any], tuple[Tensor, Mapping[str, float]]],
    batches: Callable[[int], Any],
    batch: int,
    warmup: int,
    steps: int,
    zero_stage: int = 2,
) -> list[float]:
    """Seconds of each of ``steps`` optimizer updates through the ``Trainer``, after ``warmup`` updates."""
    from components.training.config import EngineConfig
    from components.training.engine import Trainer

    cfg = EngineConfig(
        zero_stage=zero_stage,
        lr=1e-4,
        total_steps=warmup + steps,
        micro_batch=batch,
        grad_clip=1.0,
        precision="fp32",
    )
    stamps: list[float] = []
    trainer = Trainer(model, cfg, loss_fn, log_fn=lambda step, record: stamps.append(time.perf_counter()))
    start = time.perf_counter()
    trainer.fit(batches, progress=False)
    gaps = np.diff([start, *stamps])
    if len(gaps) != warmup + steps:
        raise RuntimeError(f"expected {warmup + steps} timed updates, got {len(gaps)}")
    return [float(s) for s in gaps[warmup:]]


def render_clips(cfg: TrainBenchConfig) -> list[ClipSample]:
    """``cfg.clips`` synthetic humans (DeepMimic mocap, fixed camera) as ``ClipSample``s with exact labels.

    Tracks are the 18 projected OpenPose keypoints with the renderer's visibility (exact point tracks
    on the person); the skeleton video is drawn from the same keypoints.
    """
    from components.data.clipset import ClipSample
    from components.motion.config import CameraSpec
    from components.motion.deepmimic import load_deepmimic
    from components.motion.render import skeleton_video
    from components.synthetic.render import render_clip

    out = []
    for i in range(cfg.clips):
        name = _MOTIONS[i % len(_MOTIONS)]
        frames, gt = render_clip(
            load_deepmimic(name), CameraSpec(kind="fixed"), cfg.height, cfg.width, 16.0, seed=i,
            num_frames=cfg.frames,
        )  # fmt: skip
        if len(frames) != cfg.frames:
            raise ValueError(
                f"mocap clip {name!r} gave {len(frames)} frames at 16 fps, not {cfg.frames}; lower frames"
            )
        keypoints, visible = gt.keypoints2d, gt.visible
        out.append(
            ClipSample(
                clip_id=f"bench-{i}-{name}",
                split="train",
                caption=f"a person {name}s on a textured floor",
                motion_prompt=f"a person {name}s",
                video=frames,
                skeleton=skeleton_video(keypoints, visible.astype(np.float32), cfg.height, cfg.width),
                mask=gt.mask,
                tracks=keypoints.astype(np.float32),
                track_visible=visible,
                depth=gt.depth,
                K=gt.K,
                R=gt.R,
                t=gt.t,
            )
        )
    return out


def _tiny(cfg: TrainBenchConfig) -> TinyConfig:
    from components.backbone.config import TinyConfig

    return TinyConfig(
        layers=cfg.layers,
        heads=cfg.heads,
        head_dim=cfg.head_dim,
        latent_channels=cfg.latent_channels,
        patch_size=cfg.patch_size,
        vae_block_channels=cfg.vae_block_channels,
        vae_norm=cfg.vae_norm,
        sample_frames=cfg.frames,
        sample_height=cfg.height,
        sample_width=cfg.width,
    )


def base_loss_fn(
    spec: Any, scheduler: Any
) -> Callable[[nn.Module, Mapping[str, Tensor]], tuple[Tensor, dict]]:
    """The base DiT's training objective on a ``DiTBatches`` batch (as ``pretrain_base`` trains it)."""
    from components.base.train_base_dit import diffusion_loss

    def loss_fn(engine: nn.Module, batch: Mapping[str, Tensor]) -> tuple[Tensor, dict]:
        dtype = next(getattr(engine, "module", engine).parameters()).dtype
        x0, noise, t = batch["latents"].to(dtype), batch["noise"].to(dtype), batch["timesteps"]
        v_pred = engine(spec.add_noise(scheduler, x0, noise, t), t, batch["text_emb"].to(dtype))
        return diffusion_loss(spec, scheduler, v_pred, x0, noise, t), {}

    return loss_fn


def step_benchmark(cfg: TrainBenchConfig | None = None) -> Figures:
    """Base-DiT vs MoSA seconds per step (with and without the auxiliary terms, and amortised over
    ``aux_every`` steps), samples/s, FLOPs per step and achieved GFLOP/s (see module)."""
    cfg = cfg or TrainBenchConfig.from_params()
    with torch_threads(cfg.threads):
        return _step_benchmark(cfg)


def split_aux_times(times: list[float], first_step: int, aux_every: int) -> tuple[list[float], list[float]]:
    """Step times of updates ``first_step, first_step + 1, ...`` split into (aux steps, other steps):
    update ``i`` computes the auxiliary terms when ``i % aux_every == 0`` (``make_terms_fn``)."""
    aux = [s for i, s in enumerate(times, start=first_step) if i % aux_every == 0]
    rest = [s for i, s in enumerate(times, start=first_step) if i % aux_every != 0]
    return aux, rest


def amortized_step(aux_s: float, other_s: float, aux_every: int) -> float:
    """Mean seconds of ``aux_every`` consecutive steps: one with the auxiliary terms, the rest without."""
    return (aux_s + (aux_every - 1) * other_s) / aux_every


def _step_benchmark(cfg: TrainBenchConfig) -> Figures:
    from components.backbone.spec import get_spec
    from components.base.config import DepthNetConfig
    from components.base.depth import DepthNet
    from components.base.token_encoder import build_token_encoder
    from components.base.train_base_dit import Denoiser, DiTBatches
    from components.dit.config import MoSAConfig
    from components.dit.data import ExampleSet, build_examples
    from components.dit.mosa import MoSATransformer
    from components.dit.train import DiTTrainConfig, make_loss_fn

    spec = get_spec("cogvideox")
    tiny = _tiny(cfg)
    spatial = 2 ** (len(cfg.vae_block_channels) - 1)  # the tiny VAE: ×2 per stage but the last
    # a clear error on a bad clip size, before anything is built
    spec.latent_shape(cfg.frames, cfg.height, cfg.width, cfg.latent_channels, cfg.patch_size, spatial)
    if cfg.aux_every > 1 and cfg.steps < cfg.aux_every:
        raise ValueError(
            f"steps ({cfg.steps}) must be >= aux_every ({cfg.aux_every}) to time steps with and without "
            "the auxiliary terms"
        )
    samples = render_clips(cfg)
    text = build_token_encoder("minilm", max_tokens=cfg.text_tokens)
    mosa_base = spec.build_tiny(tiny)
    examples = build_examples(samples, spec, mosa_base.vae, text.encode, track_points=cfg.track_points)

    # base DiT: a second, identical tiny base whose transformer trains in full
    base = spec.build_tiny(tiny)
    base.transformer.train().requires_grad_(True)
    latents = torch.stack([e.latents for e in examples])
    text_emb = torch.stack([e.text_emb[0] for e in examples])  # each clip's caption (variant 0)
    base_batches = DiTBatches(spec, base.scheduler, latents, text_emb, text.encode([""])[0], cfg.batch)
    base_model = Denoiser(spec, base.transformer)
    base_loss = base_loss_fn(spec, base.scheduler)
    base_flops = count_train_flops(base_model, base_loss, base_batches(0))
    base_params = sum(p.numel() for p in base_model.parameters() if p.requires_grad)
    base_times = timed_updates(base_model, base_loss, base_batches, cfg.batch, cfg.warmup_steps, cfg.steps)

    # MoSA: frozen base; the auxiliary terms on every aux_every-th step, as train_dit runs them
    depth = DepthNet(DepthNetConfig(**cfg.depth_net)).requires_grad_(False).eval()
    data = ExampleSet(examples)
    train_cfg = DiTTrainConfig(
        aux_every=cfg.aux_every,
        aux_samples=cfg.aux_samples,
        track_points=cfg.track_points,
        contact_frames=cfg.contact_frames,
    )
    mosa_loss = make_loss_fn(spec, mosa_base, train_cfg, depth)
    mosa = MoSATransformer(
        mosa_base.transformer, MoSAConfig(num_structure_blocks=cfg.structure_blocks), spatial
    )
    mosa_flops = count_train_flops(mosa, mosa_loss, data.batch(0, cfg.batch))  # step 0: with the terms
    other_flops = (
        count_train_flops(mosa, mosa_loss, data.batch(1, cfg.batch)) if cfg.aux_every > 1 else mosa_flops
    )
    mosa_params = sum(p.numel() for p in mosa.parameters() if p.requires_grad)
    mosa_times = timed_updates(
        mosa, mosa_loss, lambda i: data.batch(i, cfg.batch), cfg.batch, cfg.warmup_steps, cfg.steps
    )
    aux_times, other_times = split_aux_times(mosa_times, cfg.warmup_steps, cfg.aux_every)

    base_s, mosa_s = statistics.median(base_times), statistics.median(aux_times)
    other_s = statistics.median(other_times) if other_times else mosa_s
    amortized_s = amortized_step(mosa_s, other_s, cfg.aux_every)
    return {
        "base_step_s": _sig(base_s),
        "mosa_step_s": _sig(mosa_s),
        "mosa_noaux_step_s": _sig(other_s),
        "mosa_amortized_step_s": _sig(amortized_s),
        "mosa_over_base": _sig(mosa_s / base_s),
        "mosa_noaux_over_base": _sig(other_s / base_s),
        "mosa_over_base_amortized": _sig(amortized_s / base_s),
        "aux_every": cfg.aux_every,
        "base_samples_per_s": _sig(cfg.batch / base_s),
        "mosa_samples_per_s": _sig(cfg.batch / mosa_s),
        "mosa_amortized_samples_per_s": _sig(cfg.batch / amortized_s),
        "base_step_spread_s": _sig(max(base_times) - min(base_times)),
        "mosa_step_spread_s": _sig(max(aux_times) - min(aux_times)),
        "base_trainable_params": base_params,
        "mosa_trainable_params": mosa_params,
        "base_gflop_per_step": _sig(base_flops / 1e9),
        "mosa_gflop_per_step": _sig(mosa_flops / 1e9),
        "mosa_noaux_gflop_per_step": _sig(other_flops / 1e9),
        "base_step_gflops": _sig(base_flops / 1e9 / base_s),
        "mosa_step_gflops": _sig(mosa_flops / 1e9 / mosa_s),
    }


# ---------------------------------------------------------------- memory per rank


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _kill_tree(proc: subprocess.Popen) -> None:
    """Kill the launcher and every worker it started (workers may sit in their own sessions)."""
    import psutil

    try:
        family = [*psutil.Process(proc.pid).children(recursive=True), psutil.Process(proc.pid)]
    except psutil.NoSuchProcess:
        family = []
    for p in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    proc.communicate()
    psutil.wait_procs(family, timeout=30)


def _rank_memory_run(stage: int, cfg: TrainBenchConfig, out_dir: Path) -> tuple[bool, str]:
    """One torchrun of ``_rank_memory.py``: (exited 0, its exit code, command and output)."""
    out_dir = Path(out_dir)
    cmd = [
        sys.executable, "-m", "torch.distributed.run",
        "--nproc_per_node", str(cfg.mem_ranks),
        "--master_addr", "127.0.0.1",
        "--master_port", str(_free_port()),
        str(RANK_SCRIPT),
        "--out", str(out_dir),
        "--zero-stage", str(stage),
        "--steps", str(cfg.mem_steps),
        "--width", str(cfg.mem_width),
        "--depth", str(cfg.mem_depth),
        "--micro-batch", str(cfg.mem_micro_batch),
        "--precision", cfg.mem_precision,
        "--optimizer", cfg.mem_optimizer,
        "--group-elements", str(cfg.mem_group_elements),
    ]  # fmt: skip
    if cfg.mem_bucket_elements is not None:
        cmd += ["--bucket-elements", str(cfg.mem_bucket_elements)]
    # a clean launcher environment: this process may itself be a 1-rank world (the step benchmark)
    env = {k: v for k, v in os.environ.items() if k not in _LAUNCH_ENV}
    env["OMP_NUM_THREADS"] = "1"
    if cfg.mem_mmap_threshold is not None:
        env["MALLOC_MMAP_THRESHOLD_"] = str(cfg.mem_mmap_threshold)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        output, _ = proc.communicate(timeout=cfg.mem_timeout_s)
    except subprocess.TimeoutExpired:
        _kill_tree(proc)
        raise TimeoutError(
            f"ZeRO stage {stage} memory run did not finish within {cfg.mem_timeout_s:.0f} s "
            f"({' '.join(cmd)}); raise mem_timeout_s or shrink mem_width/mem_depth"
        ) from None
    return proc.returncode == 0, f"exit code {proc.returncode} ({' '.join(cmd)})\n{output}"


# a rank that dies from a native signal before writing its report (an intermittent SIGABRT at start-up,
# "terminate called without an active exception", seen once in ~15 runs of the suite on a fresh clone
# and never alone) gets one more attempt; any other failure, or a second crash, raises
RANK_CRASH = re.compile(r"Signal \d+ \((SIGABRT|SIGSEGV|SIGBUS)\) received")
MEM_ATTEMPTS = 2


def rank_memory(stage: int, cfg: TrainBenchConfig, out_dir: Path) -> list[dict[str, Any]]:
    """Run ``_rank_memory.py`` under torchrun with ZeRO ``stage``; one report per rank (rank order).
    A run whose rank crashed on a native signal is run once more (``RANK_CRASH``), with a warning."""
    for attempt in range(1, MEM_ATTEMPTS + 1):
        ok, output = _rank_memory_run(stage, cfg, Path(out_dir))
        if ok:
            break
        crash = RANK_CRASH.search(output)
        if crash is None or attempt == MEM_ATTEMPTS:
            raise RuntimeError(f"ZeRO stage {stage} memory run failed; last output:\n{output[-8000:]}")
        warnings.warn(
            f"ZeRO stage {stage} memory run: a rank died on {crash.group(1)}; running it once more. "
            f"Last output:\n{output[-2000:]}",
            stacklevel=2,
        )
    out_dir = Path(out_dir)
    reports = []
    for r in range(cfg.mem_ranks):
        path = out_dir / f"rank{r}.json"
        if not path.is_file():
            raise RuntimeError(
                f"ZeRO stage {stage} memory run exited 0 but wrote no {path}:\n{output[-3000:]}"
            )
        reports.append(json.loads(path.read_text()))
    return reports


ZERO_RUNS = {"zero2": 2, "zero3": 3, "ddp": 0}  # name -> DeepSpeed ZeRO stage of the memory runs


def memory_benchmark(cfg: TrainBenchConfig | None = None) -> Figures:
    """Per-rank peak RSS, optimizer state and model states of ZeRO-2 and ZeRO-3 vs stage 0 (max over
    ranks), their ratios to stage 0, and the planner's model-state count for each run against the
    measured one (``<name>_planner_over_measured_model_state``)."""
    from components.training.plan import model_state_bytes

    cfg = cfg or TrainBenchConfig.from_params()
    with tempfile.TemporaryDirectory(prefix="mosa-bench-zero-") as tmp:
        runs = {name: rank_memory(stage, cfg, Path(tmp) / name) for name, stage in ZERO_RUNS.items()}
    mb = 2**20
    peak = {k: max(r["peak_rss_mb"] for r in v) for k, v in runs.items()}
    grown = {k: max(r["peak_rss_mb"] - r["baseline_rss_mb"] for r in v) for k, v in runs.items()}
    state = {k: max(r["optimizer_state_bytes"] for r in v) / mb for k, v in runs.items()}
    after = {k: max(r["rss_after_mb"] for r in v) for k, v in runs.items()}
    states = {k: max(r["model_state_bytes"] for r in v) / mb for k, v in runs.items()}
    params = int(runs["ddp"][0]["parameters"])
    planned = {
        k: model_state_bytes(params, cfg.mem_precision, stage, cfg.mem_ranks) / mb
        for k, stage in ZERO_RUNS.items()
    }
    out: Figures = {
        "memory_config": cfg.describe_memory(),
        "memory_ddp_is": DDP_NOTE,
        "memory_model_params": params,
        "ddp_peak_rss_mb": _sig(peak["ddp"]),
        "ddp_rss_above_start_mb": _sig(grown["ddp"]),
        "ddp_optimizer_state_mb": _sig(state["ddp"]),
        "ddp_rss_after_mb": _sig(after["ddp"]),
    }
    for name in ZERO_RUNS:
        out[f"{name}_model_state_mb"] = _sig(states[name])
        out[f"{name}_planner_model_state_mb"] = _sig(planned[name])
        out[f"{name}_planner_over_measured_model_state"] = _sig(planned[name] / states[name])
        if name == "ddp":
            continue
        out[f"{name}_over_ddp_model_state"] = _sig(states[name] / states["ddp"])
        out[f"{name}_peak_rss_mb"] = _sig(peak[name])
        out[f"{name}_over_ddp_rss"] = _sig(peak[name] / peak["ddp"])
        out[f"{name}_rss_above_start_mb"] = _sig(grown[name])
        out[f"{name}_over_ddp_rss_above_start"] = _sig(grown[name] / grown["ddp"])
        out[f"{name}_optimizer_state_mb"] = _sig(state[name])
        out[f"{name}_over_ddp_optimizer_state"] = _sig(state[name] / state["ddp"])
        out[f"{name}_rss_after_mb"] = _sig(after[name])
        out[f"{name}_over_ddp_rss_after"] = _sig(after[name] / after["ddp"])
    return out


# ---------------------------------------------------------------- all of it


def run(cfg: TrainBenchConfig | None = None) -> Figures:
    """Every training figure in one run (flat, for ``metrics/bench.json``); ``cfg`` defaults to
    ``TrainBenchConfig.from_params()``."""
    cfg = cfg or TrainBenchConfig.from_params()
    with torch_threads(cfg.threads) as threads:
        peak = matmul_peak_gflops(cfg.matmul_size, cfg.matmul_repeats)
        steps = step_benchmark(cfg)
    out: Figures = {"config": cfg.describe(), "torch_threads": threads, **steps}
    out["matmul_peak_gflops"] = _sig(peak)
    out["base_utilisation"] = _sig(float(steps["base_step_gflops"]) / peak)
    out["mosa_utilisation"] = _sig(float(steps["mosa_step_gflops"]) / peak)
    out.update(memory_benchmark(cfg))
    return out
