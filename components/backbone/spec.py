"""Backbone specification: what the MoSA code needs from a text-to-video DiT, per backbone.

One ``BackboneSpec`` subclass per base model family (CogVideoX, Wan) hides its conventions behind one
interface: building tiny random models for CPU runs, loading pretrained weights from a local folder,
VAE encode/decode, the noise/target of its training objective, and a block-by-block forward that
calls a ``ControlHooks`` object after every block (where HADC injects the structure features).

Latent layout is the same for every backbone: ``[B, F, C, h, w]`` (frames before channels, as the
CogVideoX transformer takes it); adapters for other layouts permute internally. Videos are
``[B, 3, F, H, W]`` in ``[-1, 1]``. Text embeddings are the text encoder's token states ``[B, L, D]``.

The registry ``SPECS`` imports an adapter (and so diffusers) only when it is first looked up.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from components.backbone.config import TinyConfig

Objective = Literal["v_prediction", "flow_matching"]


@dataclass
class BaseModels:
    """The frozen parts of a base model; the text encoder is separate (the pipeline owns it)."""

    transformer: nn.Module
    vae: nn.Module
    scheduler: Any


def enable_gradient_checkpointing(models: BaseModels, vae: bool = True) -> dict[str, bool | str]:
    """Recompute the base transformer's blocks in the backward pass (``predict`` honours the diffusers
    flag) and, with ``vae``, the VAE decoder's blocks where diffusers supports it (the tracking and
    contact losses decode x̂₀ with gradients). Returns what was switched on, or why not."""
    models.transformer.enable_gradient_checkpointing()
    done: dict[str, bool | str] = {"base_blocks": True, "vae_decoder": False}
    if vae and getattr(models.vae, "_supports_gradient_checkpointing", False):
        models.vae.enable_gradient_checkpointing()
        done["vae_decoder"] = True
    elif vae:
        done["vae_decoder"] = f"not supported by {type(models.vae).__name__} (diffusers)"
    return done


@dataclass
class BlockContext:
    """Everything a base block receives besides the video tokens; structure blocks need the same.

    ``temb`` is the timestep conditioning in the form the blocks take (CogVideoX: ``[B, E]``; Wan: the
    six modulation vectors ``[B, 6, D]``). ``encoder_hidden`` holds the text tokens entering block 0;
    ``text_emb`` the raw text-encoder states (CogVideoX's patch embedding projects them itself).
    ``grid`` is the token grid ``(f, h, w)``; tokens are ordered frame-major, then rows, then columns.
    """

    temb: Tensor
    encoder_hidden: Tensor
    text_emb: Tensor
    grid: tuple[int, int, int]
    rotary: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


class ControlHooks(ABC):
    """Called by ``BackboneSpec.predict`` after every base block; returns the (modified) video tokens."""

    @abstractmethod
    def after_block(self, index: int, hidden: Tensor, encoder_hidden: Tensor, ctx: BlockContext) -> Tensor:
        """``hidden`` [B, T, D] after block ``index`` (0-based); ``encoder_hidden`` the text tokens then."""


class BackboneSpec(ABC):
    """Per-backbone conventions behind one interface (stateless; one instance per registry entry)."""

    name: ClassVar[str]
    objective: ClassVar[Objective]
    temporal_compression: ClassVar[int] = 4
    spatial_compression: ClassVar[int] = 8
    """The published VAEs' spatial factor; a given VAE's own is ``vae_spatial_compression(vae)``."""
    frame_multiple: ClassVar[int] = 4
    """Clips must have ``frame_multiple·N + 1`` frames."""

    # ---- models -------------------------------------------------------------------------------
    @abstractmethod
    def build_tiny(self, cfg: TinyConfig) -> BaseModels:
        """Random tiny transformer + VAE and the backbone's real scheduler (deterministic in ``cfg.seed``)."""

    @abstractmethod
    def published_config(self, variant: str) -> dict[str, Any]:
        """Transformer constructor arguments of a published checkpoint (for meta-device planning)."""

    @abstractmethod
    def build_transformer(self, config: Mapping[str, Any]) -> nn.Module:
        """A transformer from constructor arguments, without weights; honours ``with torch.device(...)``."""

    @abstractmethod
    def load_pretrained(self, path: str | Path, dtype: torch.dtype = torch.bfloat16) -> BaseModels:
        """Transformer, VAE and scheduler from a local diffusers folder (no download)."""

    @abstractmethod
    def check_transformer(self, transformer: nn.Module) -> None:
        """Raise ``TypeError`` naming the expected class if ``transformer`` is not this backbone's."""

    # ---- VAE ----------------------------------------------------------------------------------
    @abstractmethod
    def vae_encode(self, vae: nn.Module, video: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Video ``[B,3,F,H,W]`` in [-1,1] → normalised latents ``[B,F',C,h,w]``.

        The posterior mean unless a ``generator`` is given (then a posterior sample).
        """

    @abstractmethod
    def vae_decode(self, vae: nn.Module, latents: Tensor) -> Tensor:
        """Normalised latents ``[B,F',C,h,w]`` → video ``[B,3,F,H,W]`` (about [-1,1], not clamped)."""

    @abstractmethod
    def vae_spatial_compression(self, vae: nn.Module) -> int:
        """Spatial downsampling factor of this VAE (from its config: ×2 per stage but the last)."""

    def latent_shape(
        self,
        frames: int,
        height: int,
        width: int,
        latent_channels: int = 16,
        patch_size: int = 2,
        spatial: int | None = None,
    ) -> tuple[int, int, int, int]:
        """``(F', C, h, w)`` of a clip's latents; checks the clip fits the VAE and the patch grid.

        ``spatial`` is the VAE's spatial factor (``vae_spatial_compression``); None: the published ×8.
        """
        m, s = self.frame_multiple, spatial or self.spatial_compression
        if frames < 1 or (frames - 1) % m:
            raise ValueError(
                f"{self.name}: frames must be {m}N+1 (e.g. {m + 1}, {2 * m + 1}, {4 * m + 1}), got {frames}"
            )
        for what, v in (("height", height), ("width", width)):
            if v <= 0 or v % (s * patch_size):
                raise ValueError(
                    f"{self.name}: {what} must be a positive multiple of {s * patch_size} (VAE ×{s}, "
                    f"patch ×{patch_size}), got {v}"
                )
        return (frames - 1) // self.temporal_compression + 1, latent_channels, height // s, width // s

    # ---- diffusion objective ------------------------------------------------------------------
    @abstractmethod
    def add_noise(self, scheduler: Any, x0: Tensor, noise: Tensor, timesteps: Tensor) -> Tensor:
        """The training forward process ``x_t`` for per-sample ``timesteps`` [B]."""

    @abstractmethod
    def velocity_target(self, scheduler: Any, x0: Tensor, noise: Tensor, timesteps: Tensor) -> Tensor:
        """What ``predict``'s ``v_pred`` is trained to match (v-prediction or flow velocity ε − x₀)."""

    @abstractmethod
    def predict(
        self,
        transformer: nn.Module,
        noisy_latents: Tensor,
        timesteps: Tensor,
        text_emb: Tensor,
        control: ControlHooks | None = None,
    ) -> dict[str, Tensor]:
        """The base forward, block by block, with ``control.after_block`` after each → ``{"v_pred"}``."""

    # ---- structure-branch plumbing ------------------------------------------------------------
    @abstractmethod
    def blocks(self, transformer: nn.Module) -> nn.ModuleList:
        """The transformer blocks in call order."""

    @abstractmethod
    def hidden_size(self, transformer: nn.Module) -> int:
        """Token width ``D`` inside the blocks."""

    @abstractmethod
    def latent_channels(self, transformer: nn.Module) -> int:
        """Channels of the VAE latents the transformer predicts."""

    @abstractmethod
    def patch_size(self, transformer: nn.Module) -> tuple[int, int, int]:
        """Patch ``(t, h, w)`` mapping latents to tokens."""

    @abstractmethod
    def structure_embedder(self, transformer: nn.Module) -> nn.Module:
        """A trainable copy of the transformer's patch embedding, for skeleton latents."""

    @abstractmethod
    def embed_structure(
        self, embedder: nn.Module, latents: Tensor, ctx: BlockContext
    ) -> tuple[Tensor, Tensor]:
        """Skeleton latents ``[B,F,C,h,w]`` → ``(tokens [B,T,D], text tokens)`` on the video token grid."""

    @abstractmethod
    def run_block(
        self, block: nn.Module, hidden: Tensor, encoder_hidden: Tensor, ctx: BlockContext
    ) -> tuple[Tensor, Tensor]:
        """Call one block the way the base does → ``(hidden, encoder_hidden)``."""

    # ---- shared checks ------------------------------------------------------------------------
    @staticmethod
    def check_video(video: Tensor, who: str) -> None:
        """Raise if ``video`` is not ``[B,3,F,H,W]`` in [-1, 1]."""
        if video.ndim != 5 or video.shape[1] != 3:
            raise ValueError(f"{who}: video must be [B,3,F,H,W], got shape {tuple(video.shape)}")
        if video.numel() and video.device.type != "meta":
            lo, hi = float(video.min()), float(video.max())
            if lo < -1.001 or hi > 1.001:
                raise ValueError(
                    f"{who}: video values must lie in [-1, 1], got [{lo:.3g}, {hi:.3g}]; "
                    "map uint8 frames with x / 127.5 - 1"
                )

    @staticmethod
    def batch_timesteps(timesteps: Tensor | float, batch: int, device: torch.device) -> Tensor:
        """Timesteps as a ``[B]`` tensor (a scalar is broadcast)."""
        t = torch.as_tensor(timesteps, device=device)
        if t.ndim == 0:
            t = t.expand(batch)
        if t.ndim != 1 or t.shape[0] != batch:
            raise ValueError(f"timesteps must be a scalar or [B] = [{batch}], got shape {tuple(t.shape)}")
        return t


def check_predict_inputs(latents: Tensor, text_emb: Tensor, channels: int, text_dim: int) -> None:
    """Shape checks shared by the adapters' ``predict``; messages name the bad input and expected shape."""
    if latents.ndim != 5 or latents.shape[2] != channels:
        raise ValueError(
            f"noisy_latents must be [B,F,C,h,w] with C={channels}, got shape {tuple(latents.shape)}"
        )
    if text_emb.ndim != 3 or text_emb.shape[0] != latents.shape[0] or text_emb.shape[2] != text_dim:
        raise ValueError(
            f"text_emb must be [B={latents.shape[0]}, L, {text_dim}] (the text encoder's token states), "
            f"got shape {tuple(text_emb.shape)}"
        )


def flow_shift(scheduler: Any) -> float:
    """The σ shift of a flow-matching scheduler: ``shift`` (FlowMatchEulerDiscreteScheduler, the tiny
    Wan) or ``flow_shift`` (UniPC / DPM-Solver with flow sigmas, as the published Wan 2.1 configs);
    1.0 when the config has neither."""
    config = scheduler.config
    for key in ("shift", "flow_shift"):
        value = config.get(key) if hasattr(config, "get") else getattr(config, key, None)
        if value:
            return float(value)
    return 1.0


def check_model_folder(path: str | Path, what: str, example: str) -> Path:
    """A local diffusers model folder with ``transformer/``, ``vae/`` and ``scheduler/``, or a clear error."""
    root = Path(path)
    missing = [sub for sub in ("transformer", "vae", "scheduler") if not (root / sub).is_dir()]
    if not root.is_dir() or missing:
        raise FileNotFoundError(
            f"{what} weights not found at {root} "
            f"(missing: {', '.join(missing) if root.is_dir() else 'folder'}); point the profile's model "
            f"path at {example} in diffusers layout (transformer/, vae/, scheduler/)"
        )
    return root


_SPEC_CLASSES: dict[str, tuple[str, str]] = {
    "cogvideox": ("components.backbone.cogvideox", "CogVideoXSpec"),
    "wan": ("components.backbone.wan", "WanSpec"),
}


class _SpecRegistry(Mapping[str, BackboneSpec]):
    """Name → spec instance; adapters (and diffusers) are imported on first lookup."""

    def __init__(self, classes: Mapping[str, tuple[str, str]]) -> None:
        self._classes = dict(classes)
        self._instances: dict[str, BackboneSpec] = {}

    def __getitem__(self, name: str) -> BackboneSpec:
        if name not in self._instances:
            module, cls = self._classes[name]
            self._instances[name] = getattr(importlib.import_module(module), cls)()
        return self._instances[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._classes)

    def __len__(self) -> int:
        return len(self._classes)


SPECS: Mapping[str, BackboneSpec] = _SpecRegistry(_SPEC_CLASSES)


def get_spec(name: str) -> BackboneSpec:
    """The spec registered under ``name``; a clear error lists the known names."""
    if name not in _SPEC_CLASSES:
        raise KeyError(f"unknown DiT backbone {name!r}; known backbones: {', '.join(sorted(_SPEC_CLASSES))}")
    return SPECS[name]
