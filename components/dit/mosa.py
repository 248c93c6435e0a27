"""The MoSA appearance-branch transformer: a frozen base DiT plus trainable structure blocks and HADC.

``MoSATransformer`` owns only the trainable parts (structure blocks, HADC modules unless
``hadc="off"``, optionally the conv skeleton encoder). The frozen base is kept *outside* the module
tree: it is stored as a plain attribute (not registered), and may also be passed to ``forward``. So
``parameters()``, ``state_dict()``, ``.to()`` and an optimizer see only what trains, and a DeepSpeed
ZeRO-3 engine built on this module partitions the trainable parameters and never the base; the base
stays replicated (e.g. bf16) on each rank and is moved with its own ``.to()``.

Data flow, with N = ``num_structure_blocks``: the base runs block by block; after base block
``i < N`` the structure branch computes ``s_{i+1}`` from the skeleton latents and HADC ``i`` updates
the video tokens (``hadc="off"``: no HADC module, ``z + s_{i+1}`` is added directly). With
``hadc="on"``/``"no_w"`` the zero-initialised HADC output (``W``, resp. the static weight) makes the
model equal the base exactly at initialisation; with ``hadc="off"`` it does not (``s`` enters at unit
weight from step 0); ``structure="off"`` is the plain base (nothing is built, nothing trains).

Mask latents are returned as a list, one per HADC module with ``hadc="on"`` (each is supervised
against the encoded person mask; the loss averages them), so each module's ``W`` gets its own mask
supervision.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from components.backbone.spec import BackboneSpec, BlockContext, ControlHooks, get_spec
from components.dit.config import MoSAConfig
from components.dit.hadc import HADC, direct_injection
from components.dit.skeleton_encoder import SkeletonConvEncoder
from components.dit.structure import StructureBranch
from components.io.atomic import atomic_dir
from components.io.pretrained import ArtifactFormat, read_config, write_config

FORMAT = ArtifactFormat("mosa-dit", 1, "MoSATransformer.save_pretrained")
WEIGHTS_FILE = "model.safetensors"


class _InjectStructure(ControlHooks):
    """Per-call state: runs ``B_{i+1}`` and HADC ``i`` (or ``z + s``) after base block ``i``; collects
    W and masks."""

    def __init__(self, model: MoSATransformer, skeleton_latents: Tensor, compute_masks: bool) -> None:
        self.model = model
        self.latents = skeleton_latents
        self.compute_masks = compute_masks
        self.s: Tensor | None = None
        self.s_text: Tensor | None = None
        self.weights: list[Tensor] = []
        self.masks: list[Tensor] = []

    def after_block(self, index: int, hidden: Tensor, encoder_hidden: Tensor, ctx: BlockContext) -> Tensor:
        structure, hadc = self.model.structure, self.model.hadc
        if index >= len(structure.blocks):
            return hidden
        if index == 0:
            self.s, self.s_text = structure.embed(self.latents, ctx)
        self.s, self.s_text = structure.step(index, self.s, self.s_text, ctx)
        if hadc is None:  # hadc="off": direct injection with unit weight
            return direct_injection(hidden, self.s)
        out = hadc[index](hidden, self.s, encoder_hidden, ctx.grid, compute_mask=self.compute_masks)
        if out.weights is not None:
            self.weights.append(out.weights)
        if out.mask_latent is not None:
            self.masks.append(out.mask_latent)
        return out.hidden


class MoSATransformer(nn.Module):
    """Trainable structure blocks + HADC around a frozen base transformer (kept out of the module tree).

    Construction freezes ``base`` in place (``requires_grad=False``, eval mode) and copies its patch
    embedding and first N blocks; new modules are created on the base's device and in its dtype (so a
    meta-device base gives a meta-device model, for memory planning without allocation).
    """

    def __init__(
        self, base: nn.Module, config: MoSAConfig | None = None, spatial_compression: int | None = None
    ) -> None:
        """``spatial_compression``: the base VAE's spatial factor (``spec.vae_spatial_compression``),
        which the ``conv`` skeleton encoder must match; None: the published ×8."""
        super().__init__()
        config = config or MoSAConfig()
        spec = get_spec(config.backbone)
        spec.check_transformer(base)
        cfg = base.config
        if cfg.in_channels != spec.latent_channels(base):
            raise ValueError(
                f"the base takes {cfg.in_channels} input channels but predicts {spec.latent_channels(base)}: "
                "an image-to-video base; MoSATransformer supports text-to-video bases"
            )
        base.requires_grad_(False)
        base.eval()
        object.__setattr__(self, "_base", base)  # not registered: no parameters, state or .to() through us
        self.config = config
        self.spec: BackboneSpec = spec
        self.spatial_compression = int(spatial_compression or spec.spatial_compression)
        self.structure: StructureBranch | None = None
        self.hadc: nn.ModuleList | None = None
        self.skeleton_encoder: SkeletonConvEncoder | None = None
        if not config.branch_active:
            return

        ref = next(base.parameters())
        dim, channels, patch = spec.hidden_size(base), spec.latent_channels(base), spec.patch_size(base)
        self.structure = StructureBranch(spec, base, config.num_structure_blocks)
        with torch.device(ref.device):
            if config.hadc != "off":
                self.hadc = nn.ModuleList(
                    HADC(
                        config.hadc,
                        dim,
                        channels,
                        patch,
                        hidden=config.hadc_hidden_dim,
                        mask_channels=config.mask_channels,
                        upsample=config.mask_upsample,
                        activation=config.activation,
                    )
                    for _ in range(config.num_structure_blocks)
                )
            if config.skeleton_encoder == "conv":
                self.skeleton_encoder = SkeletonConvEncoder(
                    channels,
                    width=config.conv_encoder_width,
                    spatial_factor=self.spatial_compression,
                    temporal_factor=spec.temporal_compression,
                )
        # new modules take the base's dtype; the copied blocks keep the base's per-module dtypes
        # (diffusers keeps some Wan modules in float32 under a bf16 load)
        if self.hadc is not None:
            self.hadc.to(dtype=ref.dtype)
        if self.skeleton_encoder is not None:
            self.skeleton_encoder.to(dtype=ref.dtype)

    @property
    def base(self) -> nn.Module:
        """The frozen base transformer given at construction."""
        return self._base

    # ---- forward ------------------------------------------------------------------------------
    def encode_structure(self, structure_input: Tensor, latent_shape: torch.Size) -> Tensor:
        """Skeleton latents (``"vae"``: passed through) or skeleton video (``"conv"``: encoded), checked."""
        if self.config.skeleton_encoder == "conv":
            latents = self.skeleton_encoder(structure_input)
            what = f"the skeleton video {tuple(structure_input.shape)} encodes to"
        else:
            latents = structure_input
            what = "skeleton latents have shape"
        if latents.shape != latent_shape:
            raise ValueError(
                f"{what} {tuple(latents.shape)}, but the video latents are {tuple(latent_shape)}: use the "
                "same clip size and frame count for the skeleton video (skeleton_encoder="
                f"{self.config.skeleton_encoder!r}: pass "
                + (
                    "the skeleton video [B,3,F,H,W] in [-1,1])"
                    if self.config.skeleton_encoder == "conv"
                    else "VAE latents [B,F,C,h,w] of the skeleton video)"
                )
            )
        return latents

    def forward(
        self,
        base: nn.Module | None,
        noisy_latents: Tensor,
        timesteps: Tensor,
        text_emb: Tensor,
        structure_input: Tensor | None = None,
        compute_masks: bool = True,
    ) -> dict[str, Any]:
        """→ ``{"v_pred": [B,F,C,h,w], "mask_latents": [m̂ per HADC], "weights": [W per HADC]}``.

        ``mask_latents`` and ``weights`` are empty unless ``hadc="on"``.

        ``base`` is the frozen transformer (``None``: the one given at construction); ``structure_input``
        is the skeleton latents (``skeleton_encoder="vae"``) or skeleton video (``"conv"``), required
        unless ``structure="off"``. ``compute_masks=False`` skips the mask heads (generation).
        """
        base = self._base if base is None else base
        if not self.config.branch_active:
            out = self.spec.predict(base, noisy_latents, timesteps, text_emb)
            return {"v_pred": out["v_pred"], "mask_latents": [], "weights": []}
        if structure_input is None:
            raise ValueError(
                f"structure_input is required with structure={self.config.structure!r}, "
                f"hadc={self.config.hadc!r}: pass skeleton latents [B,F,C,h,w] (skeleton_encoder='vae') or "
                "the skeleton video [B,3,F,H,W] in [-1,1] (skeleton_encoder='conv')"
            )
        latents = self.encode_structure(structure_input, noisy_latents.shape)
        embed_weight = next(self.structure.embedder.parameters())
        latents = latents.to(device=embed_weight.device, dtype=embed_weight.dtype)
        hooks = _InjectStructure(self, latents, compute_masks)
        out = self.spec.predict(base, noisy_latents, timesteps, text_emb, control=hooks)
        return {"v_pred": out["v_pred"], "mask_latents": hooks.masks, "weights": hooks.weights}

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters that train (the base is never among them)."""
        return [p for p in self.parameters() if p.requires_grad]

    # ---- persistence --------------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``model.safetensors`` (trainable weights only) and ``config.json``; atomic folder swap."""
        state = {}
        for key, value in self.state_dict().items():
            if value.is_meta:
                raise ValueError(f"cannot save {key}: the model is on the meta device (materialise it first)")
            state[key] = value.detach().to("cpu").contiguous()
        meta = {
            "mosa": self.config.model_dump(),
            "base": {
                "class": type(self._base).__name__,
                "hidden_size": self.spec.hidden_size(self._base),
                "num_layers": len(self.spec.blocks(self._base)),
                "latent_channels": self.spec.latent_channels(self._base),
                "spatial_compression": self.spatial_compression,
            },
            "parameters": count_parameters(self),
        }
        with atomic_dir(directory) as tmp:
            save_file(state, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
            write_config(tmp, FORMAT, meta)
        return Path(directory)

    @classmethod
    def from_pretrained(
        cls, directory: str | Path, base: nn.Module, spatial_compression: int | None = None
    ) -> MoSATransformer:
        """Rebuild around ``base`` (the same base architecture it was trained on) and load the weights.

        ``spatial_compression``: the base VAE's spatial factor, checked against the saved one."""
        directory = Path(directory)
        meta = read_config(directory, FORMAT)
        weights_path = directory / WEIGHTS_FILE
        if not weights_path.is_file():
            raise FileNotFoundError(
                f"{weights_path} is missing: {directory} is not written by {FORMAT.writer}"
            )
        saved = meta["base"]
        saved_spatial = int(saved.get("spatial_compression", 8))  # saves before ×4 VAEs: ×8
        model = cls(base, MoSAConfig(**meta["mosa"]), spatial_compression or saved_spatial)
        here = model.spec
        actual = {
            "hidden_size": here.hidden_size(base),
            "num_layers": len(here.blocks(base)),
            "latent_channels": here.latent_channels(base),
            "spatial_compression": model.spatial_compression,
        }
        saved = {**saved, "spatial_compression": saved_spatial}
        wrong = {k: (saved[k], v) for k, v in actual.items() if saved.get(k) != v}
        if wrong:
            detail = ", ".join(f"{k}: saved {a}, base {b}" for k, (a, b) in wrong.items())
            raise ValueError(
                f"{directory} was trained on a different base ({detail}); load the matching base"
            )
        device = next(base.parameters()).device
        state = load_file(str(weights_path), device="cpu" if device.type == "meta" else str(device))
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(
                f"{weights_path} does not match the model built from {directory / 'config.json'}: "
                f"missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}"
            )
        return model


def count_parameters(model: nn.Module) -> dict[str, int]:
    """``{"trainable", "frozen"}`` parameter counts; a ``MoSATransformer`` also counts its base.

    Works on the meta device (counts shapes, allocates nothing), which the memory planner uses.
    """
    modules = [model]
    if isinstance(model, MoSATransformer):
        modules.append(model.base)
    seen: set[int] = set()
    counts = {"trainable": 0, "frozen": 0}
    for module in modules:
        for p in module.parameters():
            if id(p) in seen:
                continue
            seen.add(id(p))
            counts["trainable" if p.requires_grad else "frozen"] += p.numel()
    return counts
