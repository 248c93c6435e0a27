"""CogVideoX adapter: ``CogVideoXTransformer3DModel`` + ``AutoencoderKLCogVideoX`` + DDIM (v-prediction).

``predict`` re-runs the transformer's own submodules in the order of diffusers' ``forward`` (time
embedding, joint text+video patch embedding, dropout, rotary positions, ``transformer_blocks``,
``norm_final``, ``norm_out``, ``proj_out``, unpatchify) so a hook can edit the video tokens after
every block; with no hook the result equals ``transformer(...).sample`` (tested). Rotary positions
are computed here the way the diffusers CogVideoX pipeline does (the model's forward takes them as
an input). Text tokens are concatenated in the patch embedding and updated by every block.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.utils.checkpoint
from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXTransformer3DModel
from diffusers.models.embeddings import get_3d_rotary_pos_embed
from torch import Tensor, nn

from components.backbone.cogvideox_vae import AutoencoderKLCogVideoXPixelNorm
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

# Scheduler of the published CogVideoX-5B checkpoint (scheduler/scheduler_config.json).
SCHEDULER_5B: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "set_alpha_to_one": True,
    "steps_offset": 0,
    "prediction_type": "v_prediction",
    "rescale_betas_zero_snr": True,
    "snr_shift_scale": 1.0,
    "timestep_spacing": "trailing",
}

# Transformer constructor arguments of the published checkpoints (transformer/config.json).
_PUBLISHED: dict[str, dict[str, Any]] = {
    "5b": {
        "num_attention_heads": 48,
        "attention_head_dim": 64,
        "in_channels": 16,
        "out_channels": 16,
        "time_embed_dim": 512,
        "text_embed_dim": 4096,
        "num_layers": 42,
        "sample_width": 90,
        "sample_height": 60,
        "sample_frames": 49,
        "patch_size": 2,
        "max_text_seq_length": 226,
        "use_rotary_positional_embeddings": True,
    },
    "2b": {
        "num_attention_heads": 30,
        "attention_head_dim": 64,
        "in_channels": 16,
        "out_channels": 16,
        "time_embed_dim": 512,
        "text_embed_dim": 4096,
        "num_layers": 30,
        "sample_width": 90,
        "sample_height": 60,
        "sample_frames": 49,
        "patch_size": 2,
        "max_text_seq_length": 226,
        "use_rotary_positional_embeddings": False,
    },
}


def crop_region(grid: tuple[int, int], base: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
    """Where a token grid ``(h, w)`` sits when fitted, aspect kept and centred, into ``base`` ``(h, w)``.

    CogVideoX 1.0 rotary positions are laid out over the base grid (``sample_height/width`` over the
    patch size) and sampled in this region: ``((top, left), (bottom, right))``.
    """
    h, w = grid
    bh, bw = base
    if h / w > bh / bw:
        fit_h, fit_w = bh, round(bh / h * w)
    else:
        fit_h, fit_w = round(bw / w * h), bw
    top, left = round((bh - fit_h) / 2), round((bw - fit_w) / 2)
    return (top, left), (top + fit_h, left + fit_w)


def rotary_embedding(
    transformer: CogVideoXTransformer3DModel, latent_frames: int, latent_height: int, latent_width: int
) -> tuple[Tensor, Tensor] | None:
    """``(cos, sin)`` rotary tables for a latent grid, or ``None`` if the model uses sin-cos tables."""
    cfg = transformer.config
    if not cfg.use_rotary_positional_embeddings:
        return None
    p, p_t = cfg.patch_size, cfg.patch_size_t
    grid = (latent_height // p, latent_width // p)
    base = (cfg.sample_height // p, cfg.sample_width // p)
    device = transformer.proj_out.weight.device
    if p_t is None:
        return get_3d_rotary_pos_embed(
            embed_dim=cfg.attention_head_dim,
            crops_coords=crop_region(grid, base),
            grid_size=grid,
            temporal_size=latent_frames,
            device=device,
        )
    return get_3d_rotary_pos_embed(
        embed_dim=cfg.attention_head_dim,
        crops_coords=None,
        grid_size=grid,
        temporal_size=(latent_frames + p_t - 1) // p_t,
        grid_type="slice",
        max_size=base,
        device=device,
    )


class CogVideoXSpec(BackboneSpec):
    """CogVideoX (1.0 and 1.5 T2V) with its 3-D causal VAE and v-prediction DDIM scheduler."""

    name = "cogvideox"
    objective = "v_prediction"
    frame_multiple = 8

    # ---- models -------------------------------------------------------------------------------
    def build_tiny(self, cfg: TinyConfig) -> BaseModels:
        """Tiny random transformer + VAE (×4 time as the real VAE; ×8 or ×4 space, see ``TinyConfig``) +
        the 5B scheduler."""
        bad = [c for c in cfg.vae_block_channels if c % cfg.vae_norm_groups]
        if bad and cfg.vae_norm == "published":
            raise ValueError(
                f"TinyConfig.vae_block_channels {cfg.vae_block_channels} must be divisible by "
                f"vae_norm_groups={cfg.vae_norm_groups} (GroupNorm); change either"
            )
        s = cfg.spatial_compression
        self.latent_shape(
            cfg.sample_frames, cfg.sample_height, cfg.sample_width, patch_size=cfg.patch_size, spatial=s
        )
        stages = len(cfg.vae_block_channels)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            transformer = self.build_transformer(
                {
                    "num_attention_heads": cfg.heads,
                    "attention_head_dim": cfg.head_dim,
                    "in_channels": cfg.latent_channels,
                    "out_channels": cfg.latent_channels,
                    "time_embed_dim": cfg.time_embed_dim,
                    "text_embed_dim": cfg.text_dim,
                    "num_layers": cfg.layers,
                    "sample_width": cfg.sample_width // s,
                    "sample_height": cfg.sample_height // s,
                    "sample_frames": cfg.sample_frames,
                    "patch_size": cfg.patch_size,
                    "max_text_seq_length": cfg.max_text_seq_length,
                    "use_rotary_positional_embeddings": cfg.rotary,
                }
            )
            vae_class = AutoencoderKLCogVideoXPixelNorm if cfg.vae_norm == "pixel" else AutoencoderKLCogVideoX
            vae = vae_class(
                in_channels=3,
                out_channels=3,
                block_out_channels=cfg.vae_block_channels,
                down_block_types=("CogVideoXDownBlock3D",) * stages,
                up_block_types=("CogVideoXUpBlock3D",) * stages,
                latent_channels=cfg.latent_channels,
                layers_per_block=cfg.vae_layers_per_block,
                norm_num_groups=cfg.vae_norm_groups,
                temporal_compression_ratio=self.temporal_compression,
                sample_height=cfg.sample_height,
                sample_width=cfg.sample_width,
                scaling_factor=1.0,
            )
        return BaseModels(transformer=transformer, vae=vae, scheduler=CogVideoXDDIMScheduler(**SCHEDULER_5B))

    def published_config(self, variant: str) -> dict[str, Any]:
        """Constructor arguments of CogVideoX-``variant`` (``"5b"`` or ``"2b"``)."""
        if variant not in _PUBLISHED:
            raise KeyError(f"unknown CogVideoX variant {variant!r}; known: {', '.join(sorted(_PUBLISHED))}")
        return dict(_PUBLISHED[variant])

    def build_transformer(self, config: Mapping[str, Any]) -> CogVideoXTransformer3DModel:
        """A randomly initialised transformer (weights live wherever ``torch.device(...)`` says)."""
        return CogVideoXTransformer3DModel(**config)

    def load_pretrained(self, path: str | Path, dtype: torch.dtype = torch.bfloat16) -> BaseModels:
        """Load a local diffusers CogVideoX folder (``transformer/``, ``vae/``, ``scheduler/``).

        Used by the GPU profiles (e.g. a local copy of CogVideoX-5b); nothing is downloaded
        (``local_files_only``). The CPU default never calls this.
        """
        root = check_model_folder(path, "CogVideoX", "a local copy of THUDM/CogVideoX-5b")
        transformer = CogVideoXTransformer3DModel.from_pretrained(
            root, subfolder="transformer", torch_dtype=dtype, local_files_only=True, use_safetensors=True
        )
        vae = AutoencoderKLCogVideoX.from_pretrained(
            root, subfolder="vae", torch_dtype=dtype, local_files_only=True, use_safetensors=True
        )
        scheduler = CogVideoXDDIMScheduler.from_pretrained(root, subfolder="scheduler", local_files_only=True)
        return BaseModels(transformer=transformer, vae=vae, scheduler=scheduler)

    def check_transformer(self, transformer: nn.Module) -> None:
        if not isinstance(transformer, CogVideoXTransformer3DModel):
            raise TypeError(
                f"the cogvideox backbone needs a CogVideoXTransformer3DModel, "
                f"got {type(transformer).__name__}"
            )

    # ---- VAE ----------------------------------------------------------------------------------
    def vae_encode(self, vae: nn.Module, video: Tensor, generator: torch.Generator | None = None) -> Tensor:
        self.check_video(video, "CogVideoX vae_encode")
        spatial = self.vae_spatial_compression(vae)
        self.latent_shape(video.shape[2], video.shape[3], video.shape[4], patch_size=1, spatial=spatial)
        with vae_conv_layout(vae):
            dist = vae.encode(video.to(device=vae.device, dtype=vae.dtype)).latent_dist
        z = dist.mode() if generator is None else dist.sample(generator)
        return (z * vae.config.scaling_factor).permute(0, 2, 1, 3, 4).contiguous()

    def vae_spatial_compression(self, vae: nn.Module) -> int:
        """×2 per encoder stage but the last (``block_out_channels``): 8 for the published VAE."""
        return 2 ** (len(vae.config.block_out_channels) - 1)

    def vae_decode(self, vae: nn.Module, latents: Tensor) -> Tensor:
        if latents.ndim != 5:
            raise ValueError(f"latents must be [B,F,C,h,w], got shape {tuple(latents.shape)}")
        z = latents.permute(0, 2, 1, 3, 4).to(device=vae.device, dtype=vae.dtype) / vae.config.scaling_factor
        with vae_conv_layout(vae):
            return vae.decode(z).sample

    # ---- objective ----------------------------------------------------------------------------
    def add_noise(self, scheduler: Any, x0: Tensor, noise: Tensor, timesteps: Tensor) -> Tensor:
        """``x_t = √ᾱ_t x₀ + √(1−ᾱ_t) ε`` (the scheduler's own ``add_noise``)."""
        return scheduler.add_noise(x0, noise, timesteps.long())

    def velocity_target(self, scheduler: Any, x0: Tensor, noise: Tensor, timesteps: Tensor) -> Tensor:
        """``v = √ᾱ_t ε − √(1−ᾱ_t) x₀`` (the scheduler's own ``get_velocity``)."""
        return scheduler.get_velocity(x0, noise, timesteps.long())

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
        if transformer.ofs_embedding is not None:
            raise ValueError(
                "CogVideoX 1.5 image-to-video (ofs embedding) is not supported: MoSA here is T2V"
            )
        check_predict_inputs(noisy_latents, text_emb, cfg.in_channels, cfg.text_embed_dim)
        b, f, _, h, w = noisy_latents.shape
        p, p_t = cfg.patch_size, cfg.patch_size_t
        if h % p or w % p or (p_t is not None and f % p_t):
            raise ValueError(f"latent grid {(f, h, w)} must be divisible by the patch {(p_t or 1, p, p)}")
        t = self.batch_timesteps(timesteps, b, noisy_latents.device)

        t_emb = transformer.time_proj(t).to(dtype=noisy_latents.dtype)
        emb = transformer.time_embedding(t_emb, None)
        tokens = transformer.embedding_dropout(transformer.patch_embed(text_emb, noisy_latents))
        n_text = text_emb.shape[1]
        encoder_hidden, hidden = tokens[:, :n_text], tokens[:, n_text:]
        ctx = BlockContext(
            temb=emb,
            encoder_hidden=encoder_hidden,
            text_emb=text_emb,
            grid=((f // p_t if p_t else f), h // p, w // p),
            rotary=rotary_embedding(transformer, f, h, w),
        )

        checkpointing = torch.is_grad_enabled() and transformer.gradient_checkpointing
        for i, block in enumerate(transformer.transformer_blocks):
            if checkpointing:
                hidden, encoder_hidden = torch.utils.checkpoint.checkpoint(
                    self.run_block, block, hidden, encoder_hidden, ctx, use_reentrant=False
                )
            else:
                hidden, encoder_hidden = self.run_block(block, hidden, encoder_hidden, ctx)
            if control is not None:
                hidden = control.after_block(i, hidden, encoder_hidden, ctx)

        hidden = transformer.norm_final(hidden)
        hidden = transformer.norm_out(hidden, temb=emb)
        hidden = transformer.proj_out(hidden)
        return {"v_pred": _unpatchify(hidden, b, f, h, w, p, p_t)}

    # ---- structure-branch plumbing ------------------------------------------------------------
    def blocks(self, transformer: nn.Module) -> nn.ModuleList:
        return transformer.transformer_blocks

    def hidden_size(self, transformer: nn.Module) -> int:
        return transformer.config.num_attention_heads * transformer.config.attention_head_dim

    def latent_channels(self, transformer: nn.Module) -> int:
        return transformer.config.out_channels or transformer.config.in_channels

    def patch_size(self, transformer: nn.Module) -> tuple[int, int, int]:
        p = transformer.config.patch_size
        return transformer.config.patch_size_t or 1, p, p

    def structure_embedder(self, transformer: nn.Module) -> nn.Module:
        """A trainable copy of ``patch_embed`` (latent patches + text projection + positions)."""
        return copy.deepcopy(transformer.patch_embed).requires_grad_(True)

    def embed_structure(
        self, embedder: nn.Module, latents: Tensor, ctx: BlockContext
    ) -> tuple[Tensor, Tensor]:
        """Skeleton latents through the copied joint patch embedding; text tokens come out beside them."""
        tokens = embedder(ctx.text_emb.to(latents.dtype), latents)
        n_text = ctx.text_emb.shape[1]
        return tokens[:, n_text:], tokens[:, :n_text]

    def run_block(
        self, block: nn.Module, hidden: Tensor, encoder_hidden: Tensor, ctx: BlockContext
    ) -> tuple[Tensor, Tensor]:
        return block(
            hidden_states=hidden,
            encoder_hidden_states=encoder_hidden,
            temb=ctx.temb,
            image_rotary_emb=ctx.rotary,
        )


def _unpatchify(hidden: Tensor, b: int, f: int, h: int, w: int, p: int, p_t: int | None) -> Tensor:
    """Tokens ``[B, T, p_t·p·p·C]`` → latents ``[B, F, C, h, w]`` (CogVideoX 1.0 and 1.5 layouts)."""
    if p_t is None:
        out = hidden.reshape(b, f, h // p, w // p, -1, p, p)
        return out.permute(0, 1, 4, 2, 5, 3, 6).flatten(5, 6).flatten(3, 4)
    out = hidden.reshape(b, (f + p_t - 1) // p_t, h // p, w // p, -1, p_t, p, p)
    return out.permute(0, 1, 5, 4, 2, 6, 3, 7).flatten(6, 7).flatten(4, 5).flatten(1, 2)
