"""Config leaf of the backbone room: the sizes of a tiny, randomly initialised base (``TinyConfig``).
Pydantic only."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class TinyConfig(BaseModel):
    """Sizes of a tiny, randomly initialised base model (CPU default; no weights are downloaded).

    The VAE keeps the published ×4 compression in time; in space it compresses ×2 per VAE stage but
    the last: four ``vae_block_channels`` give the published ×8, three give ×4 (the CPU default: at
    96×144 a person ~40 px tall is 10 latent pixels instead of 5, which a tiny VAE can reconstruct).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    layers: int = Field(2, ge=1, description="transformer blocks")
    heads: int = Field(2, ge=1)
    head_dim: int = Field(16, ge=2, description="even (rotary embeddings)")
    text_dim: int = Field(384, ge=1, description="text-encoder width (384: the packaged MiniLM states)")
    latent_channels: int = Field(4, ge=1)
    patch_size: int = Field(2, ge=1, description="spatial patch; Wan uses (1, p, p)")
    time_embed_dim: int = Field(32, ge=1, description="CogVideoX timestep embedding width")
    ffn_dim: int = Field(64, ge=1, description="Wan feed-forward width")
    freq_dim: int = Field(32, ge=2, description="Wan sinusoidal timestep width")
    rotary: bool = Field(True, description="CogVideoX: rotary positions (as the 5B) instead of sin-cos")
    max_text_seq_length: int = Field(16, ge=1, description="CogVideoX sin-cos table text length")
    vae_block_channels: tuple[int, ...] = Field(
        (8, 8, 16, 16), description="VAE stage widths; 4 stages: ×8 spatial (as published), 3: ×4"
    )
    vae_layers_per_block: int = Field(1, ge=1)
    vae_norm_groups: int = Field(4, ge=1, description="CogVideoX VAE GroupNorm groups")
    vae_norm: Literal["published", "pixel"] = Field(
        "published",
        description=(
            "VAE norm layers: 'published' (CogVideoX: GroupNorm), 'pixel' (RMS over channels at every "
            "position: tiny CogVideoX VAEs keep colour; Wan's VAE normalises this way in both cases)"
        ),
    )
    sample_frames: int = Field(17, ge=1, description="clip size the positional tables are built for")
    sample_height: int = Field(96, ge=16)
    sample_width: int = Field(144, ge=16)
    seed: int = 0

    @field_validator("head_dim")
    @classmethod
    def _even_head_dim(cls, v: int) -> int:
        if v % 2:
            raise ValueError(f"head_dim must be even for rotary embeddings, got {v}")
        return v

    @field_validator("vae_block_channels")
    @classmethod
    def _positive_channels(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if len(v) not in (3, 4):
            raise ValueError(
                f"vae_block_channels needs 3 (×4 spatial) or 4 (×8 spatial) stage widths, got {len(v)}: {v}"
            )
        if min(v) < 1:
            raise ValueError(f"vae_block_channels must be positive, got {v}")
        return v

    @property
    def spatial_compression(self) -> int:
        """Spatial downsampling of the tiny VAE: ×2 per stage but the last."""
        return 2 ** (len(self.vae_block_channels) - 1)
