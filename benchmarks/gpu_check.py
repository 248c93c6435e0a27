"""`make gpu-check`: the GPU profiles' real architectures trained for a few steps on one GPU, measured.

What it does, per profile (``infra/profiles/cogvideox-5b.yaml`` and ``wan2.1-1.3b.yaml`` by default):

1. **Models.** The published transformer architecture (``spec.published_config``, random init — no
   weights can be downloaded) in bf16, the published VAE architecture (diffusers' defaults are the
   released CogVideoX / Wan 2.1 VAEs, random init; bf16 for CogVideoX and float32 for Wan, as
   ``spec.load_pretrained`` loads them) and the depth network ``train_dit`` uses for the contact loss
   (``DepthNet``, random init, its zero-initialised output layer redrawn so depth is not constant).
   The MoSA modules of the profile (``num_structure_blocks`` structure blocks + HADC) are built around
   the frozen base by ``MoSATransformer``. Every transformer parameter is bf16: ``from_pretrained``
   keeps diffusers' ``_keep_in_fp32_modules`` (Wan's norms, ``scale_shift_table``) in float32, and
   ``make_terms_fn`` casts the inputs to the dtype of the base's *first* parameter, which for Wan is
   then float32 against a bf16 patch embedding (a dtype error); ``--keep-fp32-modules`` reproduces it.
   CoTracker3 and VGGT are not built (``train_dit`` defaults to the soft tracker and ``DepthNet``).
2. **Training.** The project's own objective (``components.dit.train.make_loss_fn``: diffusion, HADC
   mask, tracking through the tracker ``train_dit`` uses — the soft tracker unless ``--tracker-path``
   names a CoTracker3 TorchScript file — on the VAE-decoded x̂₀, contact through the depth network)
   with every term on every step, through the project's ``Trainer`` (DeepSpeed ZeRO-2, bf16, one
   rank), for ``--steps`` optimizer updates (default 3) on one synthetic clip at the profile's size
   (random latents; a moving elliptical "person" gives the mask, point tracks and a static camera).
   Gradient checkpointing: the base transformer's blocks (the diffusers flag ``predict`` honours) and
   the CogVideoX VAE decoder's blocks; the Wan VAE does not support it, and the structure blocks and
   HADC modules run un-checkpointed (``predict`` calls them outside ``torch.utils.checkpoint``).
3. **Out of memory.** An attempt that runs out of memory is dropped (engine, MoSA modules, graph) and
   retried with fewer frames (about ⅔ of the latent frames each time, down to one frame group); the
   message says so. No new attempt starts once the time budget is spent.
4. **Figures.** Peak allocated CUDA memory over the training steps against the memory planner's
   prediction for the same setting (``components.dit.memory_plan.plan_memory``, 1 GPU, ZeRO-2,
   checkpointing on, at the frame count that ran) as ``measured / planned``; step time (median of the
   updates after the first); model FLOP/s over the GPU's bf16 matmul peak measured in the same run
   (best of timed ``n×n @ n×n`` ``torch.matmul`` products, ``2n³`` FLOPs each) = MFU.

FLOPs are counted, not estimated: the first update runs under ``torch.utils.flop_counter.FlopCounterMode``
(matmuls, convolutions — grouped ones counted per group, see ``benchmarks.train.conv_backward_flops``
— and attention; elementwise work and the optimizer are not counted). Forward passes that run during
the backward pass are checkpoint recomputation: their FLOPs are measured separately, and the *model*
FLOPs (MFU) leave them out while the *hardware* FLOPs (HFU) keep them. That first update also pays
for warm-up (kernel selection, allocator growth), so it is not timed.

``--tiny`` runs the same code on the CPU with tiny models (``TinyConfig``-size transformer and VAE,
a 17×32×48 clip): peak memory there is the process's resident set (sampled), and the
measured/planned ratio is null (the planner predicts GPU-allocated bytes, RSS also holds the
interpreter and the libraries). ``--fake-oom-above N`` (or ``MOSA_GPU_CHECK_FAKE_OOM_ABOVE=N``) raises
a fake out-of-memory error in every attempt with more than ``N`` frames, to test the fallback. Real
runs write ``metrics/gpu_check.json``; tiny runs write only where ``--out`` says.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import platform
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = Path("metrics/gpu_check.json")
DEFAULT_PROFILES = ("infra/profiles/cogvideox-5b.yaml", "infra/profiles/wan2.1-1.3b.yaml")
GIB = 1024**3
PREFIX = "[gpu-check]"
TERMS = ("diff", "mask", "track", "contact")  # Eq. 9's terms, as components.losses.total names them
# VAE dtype of each backbone as ``spec.load_pretrained`` loads it (Wan keeps its VAE in float32).
VAE_DTYPE = {"cogvideox": torch.bfloat16, "wan": torch.float32}
FLOPS_METHOD = (
    "torch.utils.flop_counter.FlopCounterMode over the first update (forward + backward): matmuls, "
    "convolutions (grouped convolution gradients counted per group) and attention (torch's formulas; "
    "the fused CPU attention kernel added with the same formulas); elementwise ops "
    "and the optimizer are not counted. model FLOPs = forward + backward - recomputation (forward "
    "passes run during the backward pass by gradient checkpointing); hardware FLOPs include it."
)
PEAK_METHOD = (
    "best of {repeats} timed runs of {inner} bf16 torch.matmul products {n}x{n} @ {n}x{n} (2n^3 FLOPs each)"
)
PLANNER_LEAVES_OUT = (
    "the planner counts model states, frozen bf16 weights (transformer + VAE) and the transformer's "
    "activations as if every layer (structure blocks included) were checkpointed; it does not count "
    "the VAE decode, depth network and tracker of the tracking/contact losses, the un-checkpointed "
    "structure blocks and HADC modules, nor allocator and DeepSpeed buffers"
)


class TinySizes(BaseModel):
    """Sizes of ``--tiny`` (CPU): a ``TinyConfig``-size base and a small clip."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    frames: int = Field(17, ge=1, description="8N+1, so both backbones take it")
    height: int = Field(32, ge=16)
    width: int = Field(48, ge=16)
    layers: int = Field(3, ge=1)
    heads: int = Field(2, ge=1)
    head_dim: int = Field(16, ge=2)
    text_dim: int = Field(32, ge=1)
    text_tokens: int = Field(8, ge=1)
    latent_channels: int = Field(4, ge=1)
    vae_block_channels: tuple[int, int, int, int] = (8, 8, 16, 16)
    structure_blocks: int = Field(2, ge=1)


class GpuCheckConfig(BaseModel):
    """What one ``gpu_check`` run does (the command line fills it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tiny: bool = False
    profiles: tuple[str, ...] = DEFAULT_PROFILES
    steps: int = Field(3, ge=2, description="optimizer updates; the first is counted, the others timed")
    lr: float = Field(1e-5, gt=0)
    track_points: int = Field(64, ge=1, description="person tracks through the tracker (DiTTrainConfig's)")
    tracker_path: Path | None = Field(None, description="CoTracker3 TorchScript file; None: soft tracker")
    vae_checkpointing: bool = Field(True, description="gradient checkpointing in the VAE decoder")
    keep_fp32_modules: bool = Field(
        False, description="keep diffusers' _keep_in_fp32_modules in float32 (the from_pretrained layout)"
    )
    time_budget_s: float = Field(390.0, gt=0, description="no attempt starts after this many seconds")
    matmul_size: int = Field(8192, ge=1)
    matmul_inner: int = Field(10, ge=1, description="products per timed run")
    matmul_repeats: int = Field(5, ge=1)
    threads: int | None = Field(None, ge=1, description="torch threads; None: leave as is")
    fake_oom_above: int | None = Field(None, ge=1, description="fake OOM in attempts with more frames")
    seed: int = Field(0, ge=0)
    tiny_sizes: TinySizes = Field(default_factory=TinySizes)


def _sig(x: float | None, digits: int = 4) -> float | None:
    """``x`` to ``digits`` significant figures (None and non-finite values stay as they are)."""
    if x is None or not math.isfinite(x):
        return x
    return float(f"{x:.{digits}g}")


def say(message: str) -> None:
    """Print one progress line (flushed: the run is watched live)."""
    print(f"{PREFIX} {message}", flush=True)


# ---------------------------------------------------------------- device, peak, memory


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak_flops(device: torch.device, n: int, inner: int, repeats: int) -> float:
    """Best bf16 FLOP/s of ``inner`` back-to-back ``n×n @ n×n`` ``torch.matmul`` products (of ``repeats``)."""
    g = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16, generator=g)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16, generator=g)
    out = torch.empty(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):  # warm-up: kernel selection, thread pools
        torch.matmul(a, b, out=out)
    sync(device)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            torch.matmul(a, b, out=out)
        sync(device)
        best = min(best, time.perf_counter() - t0)
    del a, b, out
    return 2.0 * n**3 * inner / best


def rss_bytes() -> int:
    """This process's resident set size now."""
    import psutil

    return int(psutil.Process().memory_info().rss)


@dataclass
class MemoryProbe:
    """Memory at named points of the counted update: CUDA allocated bytes, or RSS on the CPU.

    ``peak_rss`` is the largest RSS seen at any probe point or update end (the CPU's sampled peak).
    """

    device: torch.device
    points: dict[str, int] = field(default_factory=dict)
    peak_rss: int = 0
    active: bool = False

    def now(self) -> int:
        rss = rss_bytes()
        self.peak_rss = max(self.peak_rss, rss)
        if self.device.type == "cuda":
            return int(torch.cuda.memory_allocated(self.device))
        return rss

    def mark(self, name: str) -> None:
        value = self.now()
        if self.active:
            self.points[name] = value
            if self.device.type == "cuda":
                self.points[f"{name}_peak"] = int(torch.cuda.max_memory_allocated(self.device))


def is_oom(exc: BaseException) -> bool:
    """Whether ``exc`` is an out-of-memory error (torch's own, or a RuntimeError saying so)."""
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def free_memory(device: torch.device) -> None:
    """Collect garbage and hand cached CUDA blocks back (between attempts and models)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def fallback_frames(frames: int, multiple: int) -> list[int]:
    """``frames`` then smaller valid counts (``multiple·k + 1``, ``k`` shrinking to about ⅔ each time)."""
    if frames < 1 or (frames - 1) % multiple:
        raise ValueError(f"frames must be {multiple}N+1, got {frames}")
    out, k = [frames], (frames - 1) // multiple
    while k > 1:
        k = max(1, k * 2 // 3)
        out.append(multiple * k + 1)
    return out


# ---------------------------------------------------------------- FLOP counting


def _cpu_attention_flops(q: Any, k: Any, v: Any, *_: Any, out_shape: Any = None, **__: Any) -> int:
    """Torch's fused CPU attention kernel, counted as torch counts the GPU kernels."""
    from torch.utils.flop_counter import sdpa_flop_count

    return sdpa_flop_count(q, k, v)


def _cpu_attention_backward_flops(
    grad: Any, q: Any, k: Any, v: Any, *_: Any, out_shape: Any = None, **__: Any
) -> int:
    """Backward of torch's fused CPU attention kernel, as torch counts the GPU kernels' backward."""
    from torch.utils.flop_counter import sdpa_backward_flop_count

    return sdpa_backward_flop_count(grad, q, k, v)


def flop_mapping() -> dict[Any, Callable[..., int]]:
    """Additions to ``FlopCounterMode``'s table: group-aware convolution backward, and the fused CPU
    attention kernels it does not list (so tiny CPU runs count attention like GPU runs)."""
    from benchmarks.train import conv_backward_flops

    aten = torch.ops.aten
    mapping: dict[Any, Callable[..., int]] = {aten.convolution_backward: conv_backward_flops}
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu"):
        mapping[aten._scaled_dot_product_flash_attention_for_cpu] = _cpu_attention_flops
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu_backward"):
        mapping[aten._scaled_dot_product_flash_attention_for_cpu_backward] = _cpu_attention_backward_flops
    return mapping


class StepFlops:
    """FLOPs of one training update, split into forward, backward and checkpoint recomputation.

    ``begin()`` before the forward, ``forward_done()`` when the loss is computed, ``end()`` after the
    optimizer step. Between ``forward_done`` and ``end`` every outermost module forward is
    recomputation (gradient checkpointing re-runs forwards inside the backward pass); its FLOPs are
    taken from the counter's running total around those calls.
    """

    def __init__(self) -> None:
        from torch.utils.flop_counter import FlopCounterMode

        self.counter = FlopCounterMode(display=False, custom_mapping=flop_mapping())
        self.forward: int | None = None
        self.total: int | None = None
        self.recompute = 0
        self._depth = 0
        self._start = 0
        self._entered = False
        self._handles: list[Any] = []

    def _running(self) -> int:
        return int(self.counter.get_total_flops())

    def _pre(self, module: nn.Module, args: Any) -> None:
        if self._depth == 0:
            self._start = self._running()
        self._depth += 1

    def _post(self, module: nn.Module, args: Any, output: Any) -> None:
        self._depth = max(0, self._depth - 1)
        if self._depth == 0:
            self.recompute += self._running() - self._start

    def begin(self) -> None:
        self.counter.__enter__()
        self._entered = True

    def forward_done(self) -> None:
        from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook

        self.forward = self._running()
        self._handles = [
            register_module_forward_pre_hook(self._pre),
            # always_call: checkpointing stops a recomputation early by raising through the module
            register_module_forward_hook(self._post, always_call=True),
        ]

    def end(self) -> None:
        """Stop counting (safe to call twice, and after an error mid-update)."""
        for h in self._handles:
            h.remove()
        self._handles = []
        if self._entered:
            self.total = self._running()
            self._entered = False
            self.counter.__exit__(None, None, None)

    @property
    def complete(self) -> bool:
        return self.forward is not None and self.total is not None

    def figures(self) -> dict[str, int]:
        """``forward``, ``backward`` (recomputation included), ``recompute``, ``hardware``, ``model``."""
        if not self.complete:
            raise RuntimeError("the counted update did not finish")
        assert self.forward is not None and self.total is not None
        return {
            "forward": self.forward,
            "backward": self.total - self.forward,
            "recompute": self.recompute,
            "hardware": self.total,
            "model": self.total - self.recompute,
        }


# ---------------------------------------------------------------- models and data


def cast_transformer(module: nn.Module, dtype: torch.dtype, keep_fp32_modules: bool = False) -> nn.Module:
    """Cast floating parameters and buffers to ``dtype``; with ``keep_fp32_modules`` leave those that
    diffusers keeps in float32 on a ``from_pretrained(torch_dtype=...)`` load (``_keep_in_fp32_modules``,
    e.g. Wan's norms and ``scale_shift_table``) as they are, the layout ``spec.load_pretrained`` gives."""
    keep = list(getattr(module, "_keep_in_fp32_modules", None) or []) if keep_fp32_modules else []
    with torch.no_grad():
        for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
            if not tensor.is_floating_point() or any(k in name.split(".") for k in keep):
                continue
            tensor.data = tensor.data.to(dtype)
    return module


@dataclass
class Built:
    """One profile's frozen parts on the device, and the facts about them the report needs."""

    spec: Any
    models: Any  # BaseModels
    depth: nn.Module
    text_tokens: int
    text_dim: int
    num_structure_blocks: int
    vae_params: int
    checkpointing: dict[str, Any]


def build_frozen(cfg: GpuCheckConfig, profile: Any, device: torch.device) -> Built:
    """Base transformer (bf16), VAE, scheduler and depth network of ``profile`` on ``device``."""
    from components.backbone.config import TinyConfig
    from components.backbone.spec import BaseModels, enable_gradient_checkpointing, get_spec
    from components.base.bundle import text_dim
    from components.base.depth import DepthNet

    m = profile.model
    spec = get_spec(m.backbone)
    with torch.device(device):
        if cfg.tiny:
            t = cfg.tiny_sizes
            tiny = TinyConfig(
                layers=t.layers, heads=t.heads, head_dim=t.head_dim, text_dim=t.text_dim,
                latent_channels=t.latent_channels, vae_block_channels=t.vae_block_channels,
                sample_frames=t.frames, sample_height=t.height, sample_width=t.width, seed=cfg.seed,
            )  # fmt: skip
            models = spec.build_tiny(tiny)
            text_tokens, blocks = t.text_tokens, t.structure_blocks
        else:
            torch.manual_seed(cfg.seed)
            transformer = spec.build_transformer(spec.published_config(m.variant))
            vae, scheduler = published_vae_and_scheduler(m.backbone)
            models = BaseModels(transformer=transformer, vae=vae, scheduler=scheduler)
            text_tokens, blocks = m.text_tokens, m.num_structure_blocks
        depth = DepthNet()
    randomise_depth_head(depth, cfg.seed)
    cast_transformer(models.transformer, torch.bfloat16, cfg.keep_fp32_modules)
    models.vae.to(VAE_DTYPE[m.backbone])
    models.transformer.requires_grad_(False).eval()
    models.vae.requires_grad_(False).eval()
    depth.requires_grad_(False).eval()
    switched = enable_gradient_checkpointing(models, vae=cfg.vae_checkpointing)
    checkpointing = {
        "base_blocks": switched["base_blocks"],
        "structure_blocks_and_hadc": "no: predict() runs them outside torch.utils.checkpoint",
        "vae_decoder": switched["vae_decoder"],
        "depth_net": False,
    }
    return Built(
        spec=spec,
        models=models,
        depth=depth,
        text_tokens=text_tokens,
        text_dim=text_dim(models.transformer),
        num_structure_blocks=blocks,
        vae_params=sum(p.numel() for p in models.vae.parameters()),
        checkpointing=checkpointing,
    )


def randomise_depth_head(depth: nn.Module, seed: int, std: float = 0.01) -> None:
    """Redraw ``DepthNet``'s zero-initialised output layer (small normal weights).

    At initialisation the net predicts one constant depth: every decoded pixel lifts onto one plane,
    the scene has no 3-D hull and the contact term is 0 with no gradient, so its backward pass (depth
    net, VAE decode) would not run. A trained net's output layer is not zero; this makes depth vary
    per pixel so the contact term costs what it costs in training.
    """
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        head = depth.head.weight
        head.copy_(torch.randn(head.shape, generator=g) * std)


def published_vae_and_scheduler(backbone: str) -> tuple[nn.Module, Any]:
    """The released VAE architecture (diffusers' defaults, random init) and the training scheduler."""
    if backbone == "cogvideox":
        from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler

        from components.backbone.cogvideox import SCHEDULER_5B

        return AutoencoderKLCogVideoX(), CogVideoXDDIMScheduler(**SCHEDULER_5B)
    if backbone == "wan":
        from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler

        from components.backbone.wan import FLOW_SHIFT_480P

        return AutoencoderKLWan(), FlowMatchEulerDiscreteScheduler(
            num_train_timesteps=1000, shift=FLOW_SHIFT_480P
        )
    raise KeyError(f"no published VAE known for backbone {backbone!r}")


def synthetic_example(
    built: Built, frames: int, height: int, width: int, track_points: int, seed: int = 0
) -> Any:
    """One ``DiTExample`` at the given size: random latents (video, skeleton, mask) and text states, and
    a person (an ellipse crossing the frame) giving the pixel mask and ``track_points`` point tracks;
    a static pinhole camera (the ``build_examples`` default for clips without cameras)."""
    from components.dit.data import DEFAULT_FOV, DiTExample
    from components.motion.camera import intrinsics

    spec, tr = built.spec, built.models.transformer
    shape = spec.latent_shape(
        frames, height, width, spec.latent_channels(tr), spec.patch_size(tr)[1],
        spec.vae_spatial_compression(built.models.vae),
    )  # fmt: skip
    g = torch.Generator().manual_seed(seed)
    ts = torch.arange(frames, dtype=torch.float32)
    cx = width * (0.3 + 0.4 * ts / max(frames - 1, 1))  # [T]
    cy, rx, ry = 0.55 * height, 0.08 * width, 0.3 * height
    yy, xx = torch.meshgrid(
        torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32), indexing="ij"
    )
    person = ((xx - cx[:, None, None]) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1.0  # [T,H,W]
    angle = torch.arange(track_points, dtype=torch.float32) * 2.399963  # golden-angle spiral
    radius = 0.8 * torch.sqrt((torch.arange(track_points, dtype=torch.float32) + 0.5) / track_points)
    x = cx[:, None] + rx * radius * torch.cos(angle)  # [T,N]
    y = cy + ry * radius * torch.sin(angle)[None].expand(frames, -1)
    tracks = torch.stack([x / max(width - 1, 1), y / max(height - 1, 1)], dim=-1)
    k = torch.from_numpy(intrinsics(DEFAULT_FOV, height, width).astype("float32"))
    return DiTExample(
        clip_id=f"gpu-check-{frames}x{height}x{width}",
        latents=torch.randn(shape, generator=g),
        structure=[torch.randn(shape, generator=g)],
        mask_latents=torch.randn(shape, generator=g),
        text_emb=torch.randn(1, built.text_tokens, built.text_dim, generator=g),  # one caption variant
        tracks=tracks.float(),
        track_visible=torch.ones(frames, track_points, dtype=torch.bool),
        query_t=0,
        person_mask=person,
        K=k.expand(frames, 3, 3).clone(),
        R=torch.eye(3).expand(frames, 3, 3).clone(),
        t=torch.zeros(frames, 3),
        has_mask=True,
        has_points=True,
        structure_kind="vae",
    )


# ---------------------------------------------------------------- one attempt


@dataclass
class Attempt:
    """What one successful training attempt measured."""

    records: list[dict[str, float]]
    step_times: list[float]
    flops: dict[str, int]
    peak_allocated: int | None
    peak_reserved: int | None
    peak_rss: int
    phases: dict[str, int]
    trainable: int
    frozen: int
    video_tokens: int
    latent_shape: tuple[int, ...]


def run_attempt(
    cfg: GpuCheckConfig, built: Built, frames: int, height: int, width: int, device: torch.device
) -> Attempt:
    """Train the MoSA modules for ``cfg.steps`` updates at ``frames×height×width`` (see the module doc)."""
    from components.dit.config import MoSAConfig
    from components.dit.data import ExampleSet
    from components.dit.mosa import MoSATransformer, count_parameters
    from components.dit.train import DiTTrainConfig, make_loss_fn
    from components.training.config import EngineConfig
    from components.training.engine import Trainer

    spec, models = built.spec, built.models
    example = synthetic_example(built, frames, height, width, cfg.track_points, cfg.seed)
    data = ExampleSet([example])
    mosa = MoSATransformer(
        models.transformer,
        MoSAConfig(backbone=spec.name, num_structure_blocks=built.num_structure_blocks),
        spec.vae_spatial_compression(models.vae),
    )
    counts = count_parameters(mosa)
    tracker = {"tracker": "cotracker3", "tracker_path": cfg.tracker_path} if cfg.tracker_path else {}
    train_cfg = DiTTrainConfig(aux_every=1, track_points=cfg.track_points, seed=cfg.seed, **tracker)
    inner = make_loss_fn(spec, models, train_cfg, built.depth)
    flops, probe = StepFlops(), MemoryProbe(device)
    calls = {"n": 0}

    def loss_fn(engine: nn.Module, batch: Mapping[str, Any]) -> tuple[Tensor, dict[str, float]]:
        calls["n"] += 1
        if cfg.fake_oom_above is not None and frames > cfg.fake_oom_above:
            raise torch.OutOfMemoryError(
                f"fake out of memory (--fake-oom-above {cfg.fake_oom_above}, {frames} frames)"
            )
        first = calls["n"] == 1
        probe.active = first
        if first:
            flops.begin()
        loss, logs = inner(engine, batch)
        probe.mark("after_loss_forward")
        if first:
            flops.forward_done()
        return loss, logs

    stamps: list[float] = []

    def log_fn(step: int, record: dict[str, float]) -> None:
        sync(device)
        stamps.append(time.perf_counter())
        if step == 1:
            flops.end()
            probe.mark("after_first_update")
            probe.active = False
        probe.now()

    hook = mosa.register_forward_hook(lambda *_: probe.mark("after_dit_forward"))
    engine_cfg = EngineConfig(
        zero_stage=2, lr=cfg.lr, total_steps=cfg.steps, micro_batch=1, grad_accum=1, grad_clip=1.0,
        precision="bf16", seed=cfg.seed,
    )  # fmt: skip
    trainer = None
    try:
        trainer = Trainer(mosa, engine_cfg, loss_fn, log_fn=log_fn)
        free_memory(device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        sync(device)
        start = time.perf_counter()
        result = trainer.fit(lambda i: data.batch(i, 1, cfg.seed), progress=False)
        peak_alloc = int(torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else None
        peak_res = int(torch.cuda.max_memory_reserved(device)) if device.type == "cuda" else None
    finally:
        flops.end()
        hook.remove()
        if trainer is not None:
            trainer.engine.destroy()
    gaps = [b - a for a, b in zip([start, *stamps[:-1]], stamps, strict=True)]
    f, c, h, w = example.latents.shape
    _, ph, pw = spec.patch_size(models.transformer)
    return Attempt(
        records=[dict(r) for r in result.losses],
        step_times=gaps,
        flops=flops.figures(),
        peak_allocated=peak_alloc,
        peak_reserved=peak_res,
        peak_rss=probe.peak_rss,
        phases=dict(probe.points),
        trainable=counts["trainable"],
        frozen=counts["frozen"],
        video_tokens=f * (h // ph) * (w // pw),
        latent_shape=(f, c, h, w),
    )


# ---------------------------------------------------------------- the planner


@contextlib.contextmanager
def planning_built_models(built: Built) -> Iterator[None]:
    """Make ``plan_memory`` plan the models built here instead of a published config (tiny runs):
    its ``build_meta_model`` is swapped for one returning them (the planner only reads shapes)."""
    from components.dit import memory_plan as plan
    from components.dit.config import MoSAConfig
    from components.dit.mosa import MoSATransformer, count_parameters

    def build(model: Any) -> tuple[Any, nn.Module, nn.Module, dict[str, int]]:
        base = built.models.transformer
        with torch.device("meta"):
            meta_base = built.spec.build_transformer(dict(base.config))
            mosa = MoSATransformer(
                meta_base,
                MoSAConfig(backbone=model.backbone, num_structure_blocks=model.num_structure_blocks),
            )
        return built.spec, meta_base, mosa, count_parameters(mosa)

    original = plan.build_meta_model
    plan.build_meta_model = build
    try:
        yield
    finally:
        plan.build_meta_model = original


def planner_prediction(cfg: GpuCheckConfig, profile: Any, built: Built, frames: int) -> dict[str, Any]:
    """The planner's per-GPU memory for this setting: 1 GPU, ZeRO-2, checkpointing on, ``frames``."""
    from components.dit.memory_plan import plan_memory
    from components.training.plan import GIB as PLAN_GIB

    train = profile.train.model_copy(
        update={
            "frames": frames,
            "gpus": 1,
            "zero_stage": 2,
            "gradient_checkpointing": True,
            "micro_batch": 1,
        }
    )
    model = profile.model
    if cfg.tiny:
        t = cfg.tiny_sizes
        train = train.model_copy(update={"height": t.height, "width": t.width})
        model = model.model_copy(
            update={
                "num_structure_blocks": built.num_structure_blocks,
                "text_tokens": built.text_tokens,
                "vae_params": float(built.vae_params),
            }
        )
    setting = profile.model_copy(update={"train": train, "model": model})
    with planning_built_models(built) if cfg.tiny else contextlib.nullcontext():
        plan = plan_memory(setting, gpus=1, zero=2)
    row = next(r for r in plan.rows if r["zero"] == 2)
    return {
        "predicted_gib": plan.total_gib(2, True),
        "model_states_gib": row["model_states_gib"],
        "model_states_source": row["source"],
        "frozen_gib": plan.frozen_gib,
        "activations_checkpointed_gib": plan.activations_gib["checkpointed"],
        "trainable": plan.trainable,
        "frozen": plan.frozen,
        "tokens": plan.tokens,
        "setting": f"{frames}x{train.height}x{train.width}, 1 GPU, ZeRO-2, micro-batch 1, checkpointing on",
        "bytes_per_gib": PLAN_GIB,
    }


# ---------------------------------------------------------------- one profile


def check_profile(
    cfg: GpuCheckConfig, path: str, device: torch.device, peak: float, deadline: float
) -> tuple[str, dict[str, Any]]:
    """Build, train with the OOM fallback, compare with the planner → ``(profile name, figures)``."""
    from components.dit.memory_plan import load_profile

    profile = load_profile(ROOT / path if not Path(path).is_absolute() else path)
    name = profile.profile
    m, t = profile.model, profile.train
    height, width = (cfg.tiny_sizes.height, cfg.tiny_sizes.width) if cfg.tiny else (t.height, t.width)
    requested = cfg.tiny_sizes.frames if cfg.tiny else t.frames
    out: dict[str, Any] = {
        "status": "failed",
        "reason": None,
        "profile": path,
        "backbone": m.backbone,
        "variant": "tiny" if cfg.tiny else m.variant,
        "frames_requested": requested,
        "frames": None,
        "height": height,
        "width": width,
        "fallbacks": [],
    }
    out.update(
        {
            "dtypes": {
                "transformer": "bfloat16; diffusers' _keep_in_fp32_modules kept float32"
                if cfg.keep_fp32_modules
                else "bfloat16, every parameter (see keep_fp32_modules)",
                "vae": str(VAE_DTYPE[m.backbone]).removeprefix("torch."),
                "depth_net": "float32",
                "trained_modules": "bfloat16 with float32 master weights (DeepSpeed bf16)",
            },
            "tracker": "cotracker3" if cfg.tracker_path else "soft (train_dit's default; no weights)",
            "depth_net": (
                "DepthNet (train_dit's contact-loss depth network), DepthNetConfig(), random init with the "
                "zero-initialised output layer redrawn (a constant depth makes the contact term 0, "
                "gradient-free)"
            ),
            "not_built": (
                "CoTracker3 (train_dit's optional tracker; needs a local TorchScript file, --tracker-path) "
                "and VGGT (not used by train_dit) are not built"
            ),
            "losses_per_step": "diff + mask + track + contact on every step (aux_every 1)",
            "engine": "components.training.engine.Trainer: DeepSpeed ZeRO-2, bf16, 1 rank, AdamW",
        }
    )
    built: Built | None = None
    attempt: Attempt | None = None
    try:
        t0 = time.perf_counter()
        say(f"{name}: building {m.backbone}-{out['variant']} (random init) on {device.type}")
        built = build_frozen(cfg, profile, device)
        out["build_s"] = _sig(time.perf_counter() - t0)
        out["gradient_checkpointing"] = built.checkpointing
        candidates = fallback_frames(requested, built.spec.frame_multiple)
        for i, frames in enumerate(candidates):
            if time.perf_counter() > deadline:
                out["status"] = "skipped"
                out["reason"] = f"time budget ({cfg.time_budget_s:.0f} s) spent before trying {frames} frames"
                say(f"{name}: {out['reason']}")
                break
            say(f"{name}: training {cfg.steps} steps at {frames}x{height}x{width}")
            error: str | None = None
            try:
                attempt = run_attempt(cfg, built, frames, height, width, device)
            except Exception as exc:
                if not is_oom(exc):
                    raise
                error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300]}"
            if attempt is not None:
                out["frames"] = frames
                break
            free_memory(device)
            out["fallbacks"].append({"frames": frames, "error": error})
            nxt = candidates[i + 1] if i + 1 < len(candidates) else None
            if nxt is None:
                out["reason"] = f"out of memory at every frame count tried ({candidates})"
                say(f"{name}: out of memory at {frames} frames ({error}); no smaller frame count left")
            else:
                say(f"{name}: out of memory at {frames} frames ({error}); retrying with {nxt} frames")
        if attempt is not None and built is not None:
            out.update(figures(cfg, profile, built, attempt, out["frames"], device, peak))
            out["status"] = "ok"
            if out["frames"] != requested:
                out["reason"] = (
                    f"{requested} frames ran out of memory; figures are for {out['frames']} frames"
                )
    except Exception as exc:
        out["status"] = "failed"
        out["reason"] = f"{type(exc).__name__}: {str(exc).strip()[:1000]}"
        say(f"{name}: FAILED: {out['reason']}")
        traceback.print_exc()
    del built, attempt
    free_memory(device)
    return name, out


def figures(
    cfg: GpuCheckConfig,
    profile: Any,
    built: Built,
    a: Attempt,
    frames: int,
    device: torch.device,
    peak: float,
) -> dict[str, Any]:
    """The reported figures of a successful attempt (see the module docstring)."""
    plan = planner_prediction(cfg, profile, built, frames)
    timed = a.step_times[1:]
    step_s = statistics.median(timed)
    model_flops, hw_flops = a.flops["model"], a.flops["hardware"]
    cuda = device.type == "cuda"
    measured = a.peak_allocated / GIB if a.peak_allocated is not None else None
    memory: dict[str, Any] = {
        "measured_peak_allocated_gib": _sig(measured),
        "measured_peak_reserved_gib": _sig(a.peak_reserved / GIB) if a.peak_reserved is not None else None,
        "peak_rss_gib_sampled": _sig(a.peak_rss / GIB),
        "planned_gib": _sig(plan["predicted_gib"]),
        "measured_over_planned": _sig(measured / plan["predicted_gib"]) if measured is not None else None,
        "reason": None
        if cuda
        else (
            "CPU run: peak allocated memory is a CUDA figure; the process RSS also holds the interpreter, "
            "torch and DeepSpeed, so it is not compared with the planner"
        ),
        "planner": {k: _sig(v) if isinstance(v, float) else v for k, v in plan.items()},
        "planner_leaves_out": PLANNER_LEAVES_OUT,
        "first_update_points_gib": {k: _sig(v / GIB) for k, v in a.phases.items()},
        "first_update_points_are": "CUDA allocated bytes (…_peak: peak so far)" if cuda else "process RSS",
    }
    records = []
    for r in a.records:
        keep = (
            "step", "loss", "total", *TERMS, "grad_norm", "t_mean", "contact_degenerate", "track_points",
        )  # fmt: skip
        records.append({k: _sig(float(r[k]), 6) for k in keep if k in r})
    return {
        "latent_shape": list(a.latent_shape),
        "video_tokens": a.video_tokens,
        "text_tokens": built.text_tokens,
        "parameters": {
            "trainable": a.trainable,
            "frozen_transformer": a.frozen,
            "vae": built.vae_params,
            "depth_net": sum(p.numel() for p in built.depth.parameters()),
            "planner_trainable": plan["trainable"],
        },
        "steps": len(a.records),
        "losses": records,
        "step_times_s": [_sig(s) for s in a.step_times],
        "step_time_s": _sig(step_s),
        "step_time_is": f"median of updates 2..{len(a.step_times)} (update 1 is warm-up and FLOP-counted)",
        "memory": memory,
        "flops_per_step": {k: int(v) for k, v in a.flops.items()},
        "model_tflops_per_s": _sig(model_flops / step_s / 1e12),
        "hardware_tflops_per_s": _sig(hw_flops / step_s / 1e12),
        "mfu": _sig(model_flops / step_s / peak),
        "hfu": _sig(hw_flops / step_s / peak),
    }


# ---------------------------------------------------------------- the whole run


def run(cfg: GpuCheckConfig) -> dict[str, Any]:
    """Every profile of ``cfg`` (see the module docstring) → the report."""
    import deepspeed
    import diffusers

    t_start = time.perf_counter()
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    if cfg.tiny:
        device = torch.device("cpu")
    elif torch.cuda.is_available():
        device = torch.device("cuda", torch.cuda.current_device())
        torch.cuda.set_device(device)
    else:
        raise SystemExit(
            f"{PREFIX} no CUDA device: run this on a GPU node (with a CUDA build of torch), "
            "or `python -m benchmarks.gpu_check --tiny` to run the same code on the CPU"
        )
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    size = cfg.matmul_size
    say(f"device {device} ({name}); measuring the bf16 matmul peak ({size}x{size})")
    peak = matmul_peak_flops(device, size, cfg.matmul_inner, cfg.matmul_repeats)
    say(f"bf16 matmul peak {peak / 1e12:.4g} TFLOP/s")
    report: dict[str, Any] = {
        "tool": "benchmarks/gpu_check.py",
        "mode": "tiny" if cfg.tiny else "full",
        "device": device.type,
        "device_name": name,
        "gpu_memory_gib": _sig(torch.cuda.get_device_properties(device).total_memory / GIB)
        if device.type == "cuda"
        else None,
        "versions": {
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "deepspeed": deepspeed.__version__,
            "diffusers": diffusers.__version__,
            "python": platform.python_version(),
        },
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "torch_threads": torch.get_num_threads(),
        "matmul_peak_tflops": _sig(peak / 1e12),
        "matmul_peak_is": PEAK_METHOD.format(repeats=cfg.matmul_repeats, inner=cfg.matmul_inner, n=size),
        "flops_method": FLOPS_METHOD,
        "mfu_is": "model FLOPs per step / step time / bf16 matmul peak (hfu: hardware FLOPs instead)",
        "config": json.loads(cfg.model_dump_json()),
        "models": {},
    }
    n = len(cfg.profiles)
    for i, path in enumerate(cfg.profiles):
        deadline = t_start + cfg.time_budget_s * (i + 1) / n
        key, figs = check_profile(cfg, path, device, peak, deadline)
        report["models"][key] = figs
    report["seconds_total"] = _sig(time.perf_counter() - t_start)
    return report


def summary(report: Mapping[str, Any]) -> str:
    """A few lines per model for the terminal."""
    lines = [f"bf16 matmul peak: {report['matmul_peak_tflops']} TFLOP/s on {report['device_name']}"]
    for name, m in report["models"].items():
        if m["status"] != "ok":
            lines.append(f"{name}: {m['status'].upper()} — {m['reason']}")
            continue
        mem = m["memory"]
        shown = (
            f"peak allocated {mem['measured_peak_allocated_gib']} GiB vs planned {mem['planned_gib']} GiB "
            f"(x{mem['measured_over_planned']})"
            if mem["measured_over_planned"] is not None
            else f"peak RSS {mem['peak_rss_gib_sampled']} GiB (sampled); planned {mem['planned_gib']} GiB"
        )
        last = m["losses"][-1]
        terms = ", ".join(f"{k} {last[k]:.4g}" for k in TERMS if k in last)
        lines.append(
            f"{name}: {m['frames']}x{m['height']}x{m['width']} ({m['video_tokens']} video tokens): {shown}; "
            f"step {m['step_time_s']} s; {m['model_tflops_per_s']} model TFLOP/s, MFU {m['mfu']} "
            f"(HFU {m['hfu']}); last losses: {terms}"
        )
        if m["reason"]:
            lines.append(f"  note: {m['reason']}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> tuple[GpuCheckConfig, Path | None]:
    """Command line → ``(config, output path or None)``."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__.splitlines()[0])
    p.add_argument("--tiny", action="store_true", help="tiny models on the CPU (the test of this script)")
    p.add_argument("--out", type=Path, default=None, help=f"report path (full runs: {DEFAULT_OUT})")
    p.add_argument("--profile", action="append", dest="profiles", help="profile yaml (repeatable)")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--time-budget", type=float, default=None, help="seconds after which no attempt starts")
    p.add_argument("--fake-oom-above", type=int, default=None, help="fake OOM above this many frames")
    p.add_argument("--tracker-path", type=Path, default=None, help="CoTracker3 TorchScript file")
    p.add_argument("--no-vae-checkpointing", action="store_true", help="VAE decoder without checkpointing")
    p.add_argument(
        "--keep-fp32-modules",
        action="store_true",
        help="keep diffusers' _keep_in_fp32_modules in float32, as from_pretrained loads them",
    )
    p.add_argument("--matmul-size", type=int, default=None)
    a = p.parse_args(argv)
    fake = a.fake_oom_above
    if fake is None and os.environ.get("MOSA_GPU_CHECK_FAKE_OOM_ABOVE"):
        fake = int(os.environ["MOSA_GPU_CHECK_FAKE_OOM_ABOVE"])
    values: dict[str, Any] = {
        "tiny": a.tiny,
        "steps": a.steps,
        "fake_oom_above": fake,
        "tracker_path": a.tracker_path,
        "vae_checkpointing": not a.no_vae_checkpointing,
        "keep_fp32_modules": a.keep_fp32_modules,
    }
    if a.profiles:
        values["profiles"] = tuple(a.profiles)
    if a.tiny:
        values.update(matmul_size=256, matmul_inner=4, matmul_repeats=3, threads=1, time_budget_s=300.0)
    if a.time_budget is not None:
        values["time_budget_s"] = a.time_budget
    if a.matmul_size is not None:
        values["matmul_size"] = a.matmul_size
    out = a.out if a.out is not None else (None if a.tiny else ROOT / DEFAULT_OUT)
    return GpuCheckConfig(**values), out


def main(argv: list[str] | None = None) -> int:
    """Run, print the summary and the JSON, write it; exit 1 unless every model ran."""
    from components.io.atomic import write_json_atomic

    cfg, out = parse_args(argv)
    report = run(cfg)
    print(json.dumps(report, indent=2), flush=True)
    print(summary(report), flush=True)
    if out is not None:
        write_json_atomic(out, report)
        say(f"written {out}")
    elif cfg.tiny:
        say("tiny run: nothing written (give --out PATH to keep the report)")
    return 0 if all(m["status"] == "ok" for m in report["models"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
