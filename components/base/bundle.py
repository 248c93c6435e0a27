"""The base-model folder ``models/base/`` (written by ``pretrain_base``) and its loaders.

Layout::

    config.json    {"format": "mosa-base", "version": 2, "backbone": "cogvideox" | "wan",
                    "tiny": TinyConfig dict or null, "text_encoder": {"name", "path", "max_tokens"},
                    "frames", "height", "width", "fps"}   (version 1 kept it in base.json; still read)
    transformer/   diffusers save_pretrained (config.json + safetensors)
    vae/           diffusers save_pretrained
    scheduler/     scheduler save_pretrained (scheduler_config.json)
    depth/         DepthNet.save_pretrained (config.json + depth.safetensors); optional

The text encoder is referenced, not copied: ``path: null`` means the packaged all-MiniLM-L6-v2.
``frames/height/width/fps`` are the clip geometry the base was trained for (what ``sample_video``
generates). Modules are rebuilt from their ``config.json`` (``_class_name`` names the diffusers class)
and their safetensors are loaded strictly; this needs no ``accelerate`` (which diffusers'
``from_pretrained`` requires for Wan), and the folders stay loadable with plain diffusers.
``BaseBundle.save_pretrained`` / ``BaseBundle.from_pretrained`` follow the one save/load convention
(``components.io.pretrained``). ``load_pretrained_base`` is the GPU-profile route: published weights
from a local diffusers folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import diffusers
import torch
from safetensors.torch import load_file
from torch import nn

from components.backbone.cogvideox_vae import PROJECT_VAE_CLASSES
from components.backbone.config import TinyConfig
from components.backbone.spec import BackboneSpec, BaseModels, get_spec
from components.base.depth import DepthNet
from components.base.token_encoder import TokenTextEncoder, build_token_encoder
from components.io.atomic import atomic_dir
from components.io.pretrained import ArtifactFormat, read_config, write_config

# v1: the same fields in base.json (before the one save/load convention)
FORMAT = ArtifactFormat(
    "mosa-base", 2, "BaseBundle.save_pretrained", legacy={1: lambda config: config}, legacy_file="base.json"
)
RUN_STAGE = "run the pretrain_base stage first (dvc repro pretrain_base)"

# Clip geometry and text length of the published checkpoints (their pipelines' defaults).
PUBLISHED_GEOMETRY: dict[str, dict[str, int]] = {
    "cogvideox": {"frames": 49, "height": 480, "width": 720, "fps": 8, "max_tokens": 226},
    "wan": {"frames": 81, "height": 480, "width": 832, "fps": 16, "max_tokens": 512},
}


def text_dim(transformer: nn.Module) -> int:
    """Width of the text states a CogVideoX (``text_embed_dim``) or Wan (``text_dim``) transformer takes."""
    cfg = transformer.config
    dim = cfg.get("text_embed_dim") or cfg.get("text_dim")
    if dim is None:
        raise TypeError(f"{type(transformer).__name__} declares no text width (text_embed_dim / text_dim)")
    return int(dim)


def check_compatible(
    spec: BackboneSpec,
    transformer: nn.Module,
    text: TokenTextEncoder,
    frames: int,
    height: int,
    width: int,
    vae: nn.Module | None = None,
) -> None:
    """Raise if the text encoder or the clip geometry does not fit the transformer and ``vae`` (messages
    say the fix)."""
    spec.check_transformer(transformer)
    if text.dim != text_dim(transformer):
        raise ValueError(
            f"text encoder {text.name!r} gives {text.dim}-d token states but the transformer takes "
            f"{text_dim(transformer)}-d; use the encoder it was trained with (TinyConfig.text_dim)"
        )
    cfg = transformer.config
    sincos = spec.name == "cogvideox" and not cfg.use_rotary_positional_embeddings
    if sincos and text.max_tokens != cfg.max_text_seq_length:
        raise ValueError(
            f"CogVideoX with sin-cos positions lays out exactly max_text_seq_length="
            f"{cfg.max_text_seq_length} text tokens, but text_encoder.max_tokens={text.max_tokens}; "
            "make them equal"
        )
    spatial = spec.vae_spatial_compression(vae) if vae is not None else None
    spec.latent_shape(
        frames, height, width, spec.latent_channels(transformer), spec.patch_size(transformer)[1], spatial
    )


@dataclass
class BaseBundle:
    """A frozen text-to-video base: backbone spec, transformer/VAE/scheduler, text encoder, depth net.

    ``config`` is the content of ``config.json`` but its format header (see the module docstring).
    """

    spec: BackboneSpec
    models: BaseModels
    text: TokenTextEncoder
    depth: DepthNet | None = None
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def frames(self) -> int:
        return int(self.config["frames"])

    @property
    def height(self) -> int:
        return int(self.config["height"])

    @property
    def width(self) -> int:
        return int(self.config["width"])

    @property
    def fps(self) -> float:
        return float(self.config["fps"])

    def save_pretrained(self, path: Path | str) -> Path:
        """Write the bundle folder atomically (a reader sees the old folder or the complete new one)."""
        path = Path(path)
        tiny = self.config.get("tiny")
        config = make_config(
            self.spec,
            TinyConfig(**tiny) if tiny else None,
            self.text,
            self.frames,
            self.height,
            self.width,
            self.fps,
        )
        models = self.models
        check_compatible(
            self.spec, models.transformer, self.text, self.frames, self.height, self.width, models.vae
        )
        with atomic_dir(path) as tmp:
            self.models.transformer.save_pretrained(tmp / "transformer", safe_serialization=True)
            self.models.vae.save_pretrained(tmp / "vae", safe_serialization=True)
            self.models.scheduler.save_pretrained(tmp / "scheduler")
            if self.depth is not None:
                self.depth.save_pretrained(tmp / "depth")
            write_config(tmp, FORMAT, config)
        self.config = config
        return path

    @classmethod
    def from_pretrained(cls, path: Path | str, text: TokenTextEncoder | None = None) -> BaseBundle:
        """Load a bundle written by ``save_pretrained`` (all modules frozen, eval mode, float32, CPU).

        ``text`` reuses an already loaded encoder; it must match the config's ``text_encoder``.
        """
        root = Path(path)
        config = bundle_config(root)
        spec = get_spec(config["backbone"])
        transformer = _load_diffusers_module(root / "transformer")
        vae = _load_diffusers_module(root / "vae")
        scheduler = _load_scheduler(root / "scheduler")
        te = config["text_encoder"]
        if text is None:
            text = build_token_encoder(te["name"], te.get("path"), te["max_tokens"])
        elif (text.name, text.max_tokens) != (te["name"], te["max_tokens"]):
            raise ValueError(
                f"the given text encoder ({text.name}, max_tokens={text.max_tokens}) is not the bundle's "
                f"({te['name']}, max_tokens={te['max_tokens']}); pass text=None to load the bundle's"
            )
        depth = DepthNet.from_pretrained(root / "depth") if (root / "depth").exists() else None
        check_compatible(spec, transformer, text, config["frames"], config["height"], config["width"], vae)
        models = BaseModels(transformer=transformer, vae=vae, scheduler=scheduler)
        return cls(spec=spec, models=models, text=text, depth=depth, config=config)


def make_config(
    spec: BackboneSpec,
    tiny: TinyConfig | None,
    text: TokenTextEncoder,
    frames: int,
    height: int,
    width: int,
    fps: float,
) -> dict[str, Any]:
    """The ``config.json`` fields of a bundle (the format header is added on save)."""
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    return {
        "backbone": spec.name,
        "tiny": tiny.model_dump(mode="json") if tiny is not None else None,
        "text_encoder": text.config(),
        "frames": int(frames),
        "height": int(height),
        "width": int(width),
        "fps": float(fps),
    }


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"base bundle incomplete: {path} ({what}) is missing; {RUN_STAGE}")
    return path


def _load_diffusers_module(folder: Path) -> nn.Module:
    """A diffusers model rebuilt from ``folder/config.json`` with its safetensors (single or sharded)."""
    config_file = _require(folder / "config.json", "model config")
    class_name = json.loads(config_file.read_text(encoding="utf-8")).get("_class_name")
    cls = PROJECT_VAE_CLASSES.get(class_name or "") or getattr(diffusers, class_name or "", None)
    if cls is None:
        raise ValueError(f"{config_file}: unknown diffusers class {class_name!r}; {RUN_STAGE}")
    index = folder / "diffusion_pytorch_model.safetensors.index.json"
    if index.is_file():
        files = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
    else:
        files = ["diffusion_pytorch_model.safetensors"]
    state: dict[str, torch.Tensor] = {}
    for name in files:
        state.update(load_file(str(_require(folder / name, "weights"))))
    module = cls.from_config(cls.load_config(str(folder)))
    module.load_state_dict(state, strict=True)
    return module.eval().requires_grad_(False)


def _load_scheduler(folder: Path) -> Any:
    config_file = _require(folder / "scheduler_config.json", "scheduler config")
    class_name = json.loads(config_file.read_text(encoding="utf-8")).get("_class_name")
    cls = getattr(diffusers, class_name or "", None)
    if cls is None:
        raise ValueError(f"{config_file}: unknown scheduler class {class_name!r}; {RUN_STAGE}")
    return cls.from_pretrained(str(folder), local_files_only=True)


def bundle_config(path: Path | str) -> dict[str, Any]:
    """The config of a bundle folder (format and version checked, v1 ``base.json`` upgraded)."""
    root = Path(path)
    config = read_config(root, FORMAT, hint=RUN_STAGE)
    missing = [k for k in ("backbone", "text_encoder", "frames", "height", "width", "fps") if k not in config]
    if missing:
        raise ValueError(f"{root / 'config.json'}: missing keys {missing}; {RUN_STAGE}")
    return config


def load_pretrained_base(
    backbone: str,
    path: Path | str,
    text_path: Path | str | None = None,
    tokenizer_path: Path | str | None = None,
    max_tokens: int | None = None,
    depth_path: Path | str | None = None,
    dtype: torch.dtype = torch.bfloat16,
    frames: int | None = None,
    height: int | None = None,
    width: int | None = None,
) -> BaseBundle:
    """GPU profiles: a published base (CogVideoX-5B, Wan 2.1) from a local diffusers folder, with T5.

    ``path`` holds ``transformer/``, ``vae/``, ``scheduler/`` (``spec.load_pretrained``); the T5 encoder
    defaults to ``path/text_encoder`` with ``path/tokenizer``, as the published repositories lay them
    out. ``max_tokens`` defaults to the published pipeline's (CogVideoX 226, Wan 512); the clip
    geometry to the published one (``PUBLISHED_GEOMETRY``) unless ``frames``/``height``/``width`` say
    otherwise (a profile training at another size). ``depth_path`` optionally adds a saved ``DepthNet``
    folder. Nothing is downloaded; the published weights are not on the CPU machines, so the tests load
    a tiny folder laid out like the published ones.
    """
    spec = get_spec(backbone)
    root = Path(path)
    models = spec.load_pretrained(root, dtype=dtype)
    geometry = dict(PUBLISHED_GEOMETRY[spec.name])
    geometry.update({k: int(v) for k, v in (("frames", frames), ("height", height), ("width", width)) if v})
    text_root = Path(text_path) if text_path is not None else root / "text_encoder"
    if tokenizer_path is None and (root / "tokenizer").is_dir():
        tokenizer_path = root / "tokenizer"
    text = TokenTextEncoder(
        "t5",
        text_root,
        max_tokens=max_tokens or geometry["max_tokens"],
        tokenizer_path=tokenizer_path,
        dtype=dtype,
    )
    depth = DepthNet.from_pretrained(depth_path) if depth_path is not None else None
    config = make_config(
        spec, None, text, geometry["frames"], geometry["height"], geometry["width"], geometry["fps"]
    )
    check_compatible(
        spec, models.transformer, text, config["frames"], config["height"], config["width"], models.vae
    )
    return BaseBundle(spec=spec, models=models, text=text, depth=depth, config=config)
