"""Wan 2.1 adapter: diffusers ``WanTransformer3DModel`` + ``AutoencoderKLWan``, flow-matching objective.

``predict`` re-runs the transformer's submodules in the order of diffusers' ``forward`` (rotary
table, 3-D patch embedding, time/text condition embedder, ``blocks``, modulated ``norm_out``,
``proj_out``, unpatchify) with a hook after every block; with no hook it equals
``transformer(...).sample`` (tested). Wan's text tokens are embedded once and only cross-attended
(blocks do not update them). Latents are ``[B,F,C,h,w]`` here; Wan's own layout ``[B,C,F,h,w]`` is
used inside. Flow matching: ``x_t = (1−σ) x₀ + σ ε`` with ``σ = t / num_train_timesteps`` and the
model predicts the velocity ``ε − x₀``. Text-to-video only (no image embedder, no per-token
timesteps as in Wan 2.2 TI2V).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import diffusers
import torch
import torch.utils.checkpoint
from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanTransformer3DModel
from diffusers.utils import is_accelerate_available
from torch import Tensor, nn

from components.backbone.config import TinyConfig
from components.backbone.conv3d_layout import vae_conv_layout
from components.backbone.spec import (
    BackboneSpec,
    BaseModels,
    BlockContext,
    ControlHooks,
    check_model_folder,
    check_predict_inputs,
)

# Flow shift of Wan 2.1 at 480p (the published scheduler configs use 3.0 for 480p, 5.0 for 720p).
FLOW_SHIFT_480P = 3.0

_PUBLISHED: dict[str, dict[str, Any]] = {
    "1.3b": {
        "patch_size": (1, 2, 2),
        "num_attention_heads": 12,
        "attention_head_dim": 128,
        "in_channels": 16,
        "out_channels": 16,
        "text_dim": 4096,
        "freq_dim": 256,
        "ffn_dim": 8960,
        "num_layers": 30,
        "cross_attn_norm": True,
        "qk_norm": "rms_norm_across_heads",
        "eps": 1e-6,
    },
    "14b": {
        "patch_size": (1, 2, 2),
        "num_attention_heads": 40,
        "attention_head_dim": 128,
        "in_channels": 16,
        "out_channels": 16,
        "text_dim": 4096,
        "freq_dim": 256,
        "ffn_dim": 13824,
        "num_layers": 40,
        "cross_attn_norm": True,
        "qk_norm": "rms_norm_across_heads",
        "eps": 1e-6,
    },
}


class WanSpec(BackboneSpec):
    """Wan 2.1 text-to-video with its causal 3-D VAE (per-channel latent normalisation)."""

    name = "wan"
    objective = "flow_matching"
    frame_multiple = 4

    # ---- models -------------------------------------------------------------------------------
    def build_tiny(self, cfg: TinyConfig) -> BaseModels:
        """Tiny random transformer + VAE (×4 time; ×8 or ×4 space, see ``TinyConfig``) + a flow-matching
        Euler scheduler."""
        base = cfg.vae_block_channels[0]
        if any(c % base for c in cfg.vae_block_channels):
            raise ValueError(
                f"TinyConfig.vae_block_channels {cfg.vae_block_channels}: Wan's VAE widths are multiples of "
                f"the first ({base}); choose channels divisible by it"
            )
        s = cfg.spatial_compression
        self.latent_shape(
            cfg.sample_frames, cfg.sample_height, cfg.sample_width, patch_size=cfg.patch_size, spatial=s
        )
        # time is halved twice, in the last two downsampling stages (the published [False, True, True])
        stages = len(cfg.vae_block_channels)
        temporal = [False] * (stages - 3) + [True, True]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            transformer = self.build_transformer(
                {
                    "patch_size": (1, cfg.patch_size, cfg.patch_size),
                    "num_attention_heads": cfg.heads,
                    "attention_head_dim": cfg.head_dim,
                    "in_channels": cfg.latent_channels,
                    "out_channels": cfg.latent_channels,
                    "text_dim": cfg.text_dim,
                    "freq_dim": cfg.freq_dim,
                    "ffn_dim": cfg.ffn_dim,
                    "num_layers": cfg.layers,
                    "cross_attn_norm": True,
                    "qk_norm": "rms_norm_across_heads",
                }
            )
            vae = AutoencoderKLWan(
                base_dim=base,
                z_dim=cfg.latent_channels,
                dim_mult=[c // base for c in cfg.vae_block_channels],
                num_res_blocks=cfg.vae_layers_per_block,
                temperal_downsample=temporal,
                scale_factor_spatial=s,
                latents_mean=[0.0] * cfg.latent_channels,
                latents_std=[1.0] * cfg.latent_channels,
            )
        scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=FLOW_SHIFT_480P)
        return BaseModels(transformer=transformer, vae=vae, scheduler=scheduler)

    def published_config(self, variant: str) -> dict[str, Any]:
        """Constructor arguments of Wan 2.1 T2V-``variant`` (``"1.3b"`` or ``"14b"``)."""
        if variant not in _PUBLISHED:
            raise KeyError(f"unknown Wan variant {variant!r}; known: {', '.join(sorted(_PUBLISHED))}")
        return dict(_PUBLISHED[variant])

    def build_transformer(self, config: Mapping[str, Any]) -> WanTransformer3DModel:
        """A randomly initialised transformer (weights live wherever ``torch.device(...)`` says)."""
        return WanTransformer3DModel(**config)

    def load_pretrained(self, path: str | Path, dtype: torch.dtype = torch.bfloat16) -> BaseModels:
        """Load a local diffusers Wan 2.1 folder (``transformer/``, ``vae/``, ``scheduler/``).

        Used by the GPU profiles (e.g. a local copy of Wan2.1-T2V-1.3B-Diffusers); nothing is
        downloaded. Needs ``accelerate``: diffusers loads Wan's float32-kept modules only through it.
        The VAE stays in float32 as in Wan's reference examples; the scheduler class is the one named
        in ``scheduler/scheduler_config.json`` (UniPC with flow sigmas in the releases).
        """
        root = check_model_folder(path, "Wan", "a local copy of Wan-AI/Wan2.1-T2V-1.3B-Diffusers")
        if not is_accelerate_available():
            raise ImportError(
                "loading Wan weights needs the `accelerate` package: diffusers keeps Wan's norms and time "
                "embedder in float32, which it supports only with low_cpu_mem_usage (pip install accelerate)"
            )
        transformer = WanTransformer3DModel.from_pretrained(
            root, subfolder="transformer", torch_dtype=dtype, local_files_only=True, use_safetensors=True
        )
        vae = AutoencoderKLWan.from_pretrained(
            root, subfolder="vae", torch_dtype=torch.float32, local_files_only=True, use_safetensors=True
        )
        config_file = root / "scheduler" / "scheduler_config.json"
        class_name = json.loads(config_file.read_text())["_class_name"] if config_file.is_file() else None
        scheduler_cls = (
            getattr(diffusers, class_name, None) if class_name else FlowMatchEulerDiscreteScheduler
        )
        if scheduler_cls is None:
            raise ValueError(
                f"{config_file}: unknown scheduler class {class_name!r} in this diffusers version"
            )
        scheduler = scheduler_cls.from_pretrained(root, subfolder="scheduler", local_files_only=True)
        return BaseModels(transformer=transformer, vae=vae, scheduler=scheduler)

    def check_transformer(self, transformer: nn.Module) -> None:
        if not isinstance(transformer, WanTransformer3DModel):
            raise TypeError(
                f"the wan backbone needs a WanTransformer3DModel, got {type(transformer).__name__}"
            )

    # ---- VAE ----------------------------------------------------------------------------------
    def vae_encode(self, vae: nn.Module, video: Tensor, generator: torch.Generator | None = None) -> Tensor:
        self.check_video(video, "Wan vae_encode")
        spatial = self.vae_spatial_compression(vae)
        self.latent_shape(video.shape[2], video.shape[3], video.shape[4], patch_size=1, spatial=spatial)
        with vae_conv_layout(vae):
            dist = vae.encode(video.to(device=vae.device, dtype=vae.dtype)).latent_dist
        z = dist.mode() if generator is None else dist.sample(generator)
        mean, std = _latent_stats(vae, z)
        return ((z - mean) / std).permute(0, 2, 1, 3, 4).contiguous()

    def vae_spatial_compression(self, vae: nn.Module) -> int:
        """×2 per encoder stage but the last (``dim_mult``): 8 for the published VAE."""
        return 2 ** (len(vae.config.dim_mult) - 1)

    def vae_decode(self, vae: nn.Module, latents: Tensor) -> Tensor:
        if latents.ndim != 5:
            raise ValueError(f"latents must be [B,F,C,h,w], got shape {tuple(latents.shape)}")
        z = latents.permute(0, 2, 1, 3, 4).to(device=vae.device, dtype=vae.dtype)
        mean, std = _latent_stats(vae, z)
        with vae_conv_layout(vae):
            return vae.decode(z * std + mean).sample

    # ---- objective ----------------------------------------------------------------------------
    def add_noise(self, scheduler: Any, x0: Tensor, noise: Tensor, timesteps: Tensor) -> Tensor:
        """``x_t = (1−σ) x₀ + σ ε`` with ``σ = t / num_train_timesteps`` per sample."""
        sigma = _sigmas(scheduler, timesteps, x0)
        return ((1 - sigma) * x0 + sigma * noise).to(x0.dtype)

    def velocity_target(self, scheduler: Any, x0: Tensor, noise: Tensor, timesteps: Tensor) -> Tensor:
        """The flow velocity ``ε − x₀`` (independent of ``t``)."""
        if noise.shape != x0.shape:
            raise ValueError(f"noise {tuple(noise.shape)} must have the shape of x0 {tuple(x0.shape)}")
        return noise - x0

    # ---- forward ------------------------------------------------------------------------------
    def predict(
        self,
        transformer: nn.Module,
        noisy_latents: Tensor,
        timesteps: Tensor,
        text_emb: Tensor,
        control: ControlHooks | None = None,
    ) -> dict[str, Tensor]:
        """The model's forward, step for step, with ``control.after_block(i, ...)`` after block ``i``."""
        self.check_transformer(transformer)
        cfg = transformer.config
        if transformer.condition_embedder.image_embedder is not None:
            raise ValueError("Wan image-to-video (image embedder) is not supported: MoSA here is T2V")
        check_predict_inputs(noisy_latents, text_emb, cfg.in_channels, cfg.text_dim)
        b, f, _, h, w = noisy_latents.shape
        p_t, p_h, p_w = cfg.patch_size
        if f % p_t or h % p_h or w % p_w:
            raise ValueError(
                f"latent grid {(f, h, w)} must be divisible by the patch {tuple(cfg.patch_size)}"
            )
        t = self.batch_timesteps(timesteps, b, noisy_latents.device)

        x = noisy_latents.permute(0, 2, 1, 3, 4)
        rotary = transformer.rope(x)
        hidden = transformer.patch_embedding(x).flatten(2).transpose(1, 2).contiguous()
        temb, modulation, encoder_hidden, _ = transformer.condition_embedder(t, text_emb, None)
        ctx = BlockContext(
            temb=modulation.unflatten(1, (6, -1)),
            encoder_hidden=encoder_hidden,
            text_emb=text_emb,
            grid=(f // p_t, h // p_h, w // p_w),
            rotary=rotary,
        )

        checkpointing = torch.is_grad_enabled() and transformer.gradient_checkpointing
        for i, block in enumerate(transformer.blocks):
            if checkpointing:
                hidden, encoder_hidden = torch.utils.checkpoint.checkpoint(
                    self.run_block, block, hidden, encoder_hidden, ctx, use_reentrant=False
                )
            else:
                hidden, encoder_hidden = self.run_block(block, hidden, encoder_hidden, ctx)
            if control is not None:
                hidden = control.after_block(i, hidden, encoder_hidden, ctx)

        shift, scale = (transformer.scale_shift_table.to(temb.device) + temb.unsqueeze(1)).chunk(2, dim=1)
        hidden = (transformer.norm_out(hidden.float()) * (1 + scale) + shift).type_as(hidden)
        hidden = transformer.proj_out(hidden)
        gf, gh, gw = ctx.grid
        out = hidden.reshape(b, gf, gh, gw, p_t, p_h, p_w, -1).permute(0, 7, 1, 4, 2, 5, 3, 6)
        out = out.flatten(6, 7).flatten(4, 5).flatten(2, 3)
        return {"v_pred": out.permute(0, 2, 1, 3, 4)}

    # ---- structure-branch plumbing ------------------------------------------------------------
    def blocks(self, transformer: nn.Module) -> nn.ModuleList:
        return transformer.blocks

    def hidden_size(self, transformer: nn.Module) -> int:
        return transformer.config.num_attention_heads * transformer.config.attention_head_dim

    def latent_channels(self, transformer: nn.Module) -> int:
        return transformer.config.out_channels or transformer.config.in_channels

    def patch_size(self, transformer: nn.Module) -> tuple[int, int, int]:
        p_t, p_h, p_w = transformer.config.patch_size
        return int(p_t), int(p_h), int(p_w)

    def structure_embedder(self, transformer: nn.Module) -> nn.Module:
        """A trainable copy of ``patch_embedding`` (the 3-D patch convolution)."""
        return copy.deepcopy(transformer.patch_embedding).requires_grad_(True)

    def embed_structure(
        self, embedder: nn.Module, latents: Tensor, ctx: BlockContext
    ) -> tuple[Tensor, Tensor]:
        """Skeleton latents through the copied patch convolution; the text tokens are the base's."""
        tokens = embedder(latents.permute(0, 2, 1, 3, 4)).flatten(2).transpose(1, 2)
        return tokens, ctx.encoder_hidden

    def run_block(
        self, block: nn.Module, hidden: Tensor, encoder_hidden: Tensor, ctx: BlockContext
    ) -> tuple[Tensor, Tensor]:
        return block(hidden, encoder_hidden, ctx.temb, ctx.rotary), encoder_hidden


def _latent_stats(vae: nn.Module, like: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel latent mean and std of the Wan VAE, shaped ``[1,C,1,1,1]`` like ``like``."""
    c = vae.config.z_dim
    mean = torch.tensor(vae.config.latents_mean, device=like.device, dtype=like.dtype).view(1, c, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std, device=like.device, dtype=like.dtype).view(1, c, 1, 1, 1)
    return mean, std


def _sigmas(scheduler: Any, timesteps: Tensor, like: Tensor) -> Tensor:
    """``σ = t / num_train_timesteps`` per sample, shaped ``[B,1,...]``; checks ``t`` is in range."""
    n = scheduler.config.num_train_timesteps
    if timesteps.ndim != 1 or timesteps.shape[0] != like.shape[0]:
        raise ValueError(f"timesteps must be [B] = [{like.shape[0]}], got shape {tuple(timesteps.shape)}")
    t = timesteps.to(device=like.device, dtype=torch.float32)
    if t.numel() and (float(t.min()) < 0 or float(t.max()) > n):
        raise ValueError(
            f"flow-matching timesteps must lie in [0, {n}], got [{float(t.min())}, {float(t.max())}]"
        )
    return (t / n).reshape(-1, *([1] * (like.ndim - 1))).to(like.dtype)
