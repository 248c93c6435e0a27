"""The 3D structure transformer as one object: prompt → motion tokens → features → SMPL-22 joints.

``StructureModel`` bundles the normalisation statistics, the motion VQ-VAE, the token generator
and a reference (name + local path) to the text encoder, which is built on first use unless one
is passed in. A saved model is a folder, written atomically (temp folder, then rename):

    config.json             {"format", "version", "vqvae", "generator", "text_encoder", "fps", "window"}
    vqvae.safetensors       MotionVQVAE state (codebook buffers included)
    generator.safetensors   MotionGenerator state
    stats.npz               feature mean/std (FeatureStats)

No pickles anywhere. Length policy of ``generate`` (frames at ``fps``):

* the generator samples at most ``ceil(frames / frames_per_token)`` tokens, so a motion longer
  than asked is never produced, and the decoded frames are trimmed to ``frames``;
* ``fill="hold"`` (default): when the model emits END early, the motion it chose ends there and
  the last pose is held for the remaining frames (the person stands still, no teleport);
* ``fill="continue"``: END is suppressed until enough tokens exist, so the motion keeps going;
* past the training window the generator sees only the latest ``window`` frames' tokens
  (``context_tokens``): trained on windows cropped anywhere in a motion, it keeps moving instead of
  reading positions it never trained (before this, motions froze after ~1.2 s);
* beyond the generator's capacity (``max_tokens · frames_per_token`` frames) the last pose is held
  in both modes.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from components.io.atomic import atomic_dir
from components.io.pretrained import ArtifactFormat, read_config, write_config
from components.motion.config import FEATURE_DIM, GeneratorConfig, VQVAEConfig
from components.motion.generator import MotionGenerator
from components.motion.humanml3d import FeatureStats, features_to_joints
from components.motion.motion import HUMANML3D_FPS
from components.motion.text_encoder import TextEncoder, build_text_encoder
from components.motion.vqvae import MotionVQVAE

FORMAT = ArtifactFormat("mosa-structure-model", 1, "StructureModel.save_pretrained")
FILES = ("config.json", "vqvae.safetensors", "generator.safetensors", "stats.npz")
DEFAULT_GUIDANCE = 2.0


class StructureModel:
    """Text → 3D joints [frames, 22, 3] at ``fps``; see the module docstring."""

    def __init__(
        self,
        vqvae: MotionVQVAE,
        generator: MotionGenerator,
        stats: FeatureStats,
        text_encoder_name: str = "minilm",
        text_encoder_path: str | None = None,
        fps: float = HUMANML3D_FPS,
        window: int = 64,
        text_encoder: TextEncoder | None = None,
    ):
        if vqvae.config.codebook_size != generator.config.codebook_size:
            raise ValueError(
                f"generator.codebook_size ({generator.config.codebook_size}) must equal "
                f"vqvae.codebook_size ({vqvae.config.codebook_size})"
            )
        if vqvae.config.feature_dim != FEATURE_DIM:
            raise ValueError(
                f"vqvae.feature_dim must be {FEATURE_DIM} (HumanML3D features), "
                f"got {vqvae.config.feature_dim}"
            )
        if not fps > 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.vqvae, self.generator, self.stats = vqvae, generator, stats
        self.text_encoder_name = text_encoder_name
        self.text_encoder_path = None if text_encoder_path is None else str(text_encoder_path)
        self.fps, self.window = float(fps), int(window)
        self._text_encoder = text_encoder

    @property
    def text_encoder(self) -> TextEncoder:
        if self._text_encoder is None:
            self._text_encoder = build_text_encoder(self.text_encoder_name, self.text_encoder_path)
        return self._text_encoder

    @property
    def frames_per_token(self) -> int:
        return self.vqvae.frames_per_token

    @property
    def max_frames(self) -> int:
        """Longest motion the generator can produce before the last pose is held."""
        return self.generator.config.max_tokens * self.frames_per_token

    # --- generation -------------------------------------------------------------------------------
    def embed(self, prompts: list[str]) -> torch.Tensor:
        emb = self.text_encoder.encode(prompts)
        want = self.generator.config.text_dim
        if emb.shape[-1] != want:
            raise ValueError(
                f"text encoder {self.text_encoder.name!r} gives {emb.shape[-1]}-d vectors but the generator "
                f"expects text_dim={want}; use the text encoder the model was trained with"
            )
        return emb

    @property
    def context_tokens(self) -> int:
        """Tokens the generator attends to: its training window (windows were cropped anywhere in a
        motion, so the latest ``window`` frames are always an in-distribution context)."""
        return max(2, self.window // self.frames_per_token)

    def sample_tokens(
        self,
        prompt: str,
        frames: int,
        seed: int,
        guidance: float = DEFAULT_GUIDANCE,
        top_k: int | None = None,
        temperature: float = 1.0,
        fill: Literal["hold", "continue"] = "hold",
    ) -> torch.Tensor:
        """Motion tokens [L] for ``prompt``, at most enough for ``frames`` frames."""
        if int(frames) != frames or frames < 1:
            raise ValueError(f"frames must be a positive integer, got {frames}")
        if fill not in ("hold", "continue"):
            raise ValueError(f"fill must be 'hold' or 'continue', got {fill!r}")
        needed = min(math.ceil(frames / self.frames_per_token), self.generator.config.max_tokens)
        gen = torch.Generator().manual_seed(int(seed))
        return self.generator.generate(
            self.embed([prompt]),
            max_tokens=needed,
            guidance=guidance,
            top_k=top_k,
            temperature=temperature,
            generator=gen,
            min_tokens=needed if fill == "continue" else 1,
            context=self.context_tokens,
        )[0]

    def sample_tokens_batch(
        self,
        prompts: list[str],
        frames: list[int],
        seeds: list[int],
        guidance: float = DEFAULT_GUIDANCE,
        top_k: int | None = None,
        temperature: float = 1.0,
        batch_size: int = 256,
    ) -> list[torch.Tensor]:
        """``sample_tokens(prompts[i], frames[i], seeds[i], fill="continue")`` for every ``i``, in batches.

        Rows needing the same number of tokens run together, each drawing from its own seeded
        generator, so every sequence is the one the one-prompt call draws (up to float round-off in
        the batched logits): the evaluation's thousands of generations cost a few batched passes."""
        if not len(prompts) == len(frames) == len(seeds):
            raise ValueError(f"got {len(prompts)} prompts, {len(frames)} frame counts and {len(seeds)} seeds")
        for n in frames:
            if int(n) != n or n < 1:
                raise ValueError(f"frames must be positive integers, got {n}")
        cap = self.generator.config.max_tokens
        needed = [min(math.ceil(n / self.frames_per_token), cap) for n in frames]
        emb = self.embed(list(prompts)) if prompts else None
        out: list[torch.Tensor | None] = [None] * len(prompts)
        for length in sorted(set(needed)):
            idx = [i for i, k in enumerate(needed) if k == length]
            for start in range(0, len(idx), batch_size):
                chunk = idx[start : start + batch_size]
                gens = [torch.Generator().manual_seed(int(seeds[i])) for i in chunk]
                codes = self.generator.generate(
                    emb[chunk], max_tokens=length, guidance=guidance, top_k=top_k, temperature=temperature,
                    generator=gens, min_tokens=length, context=self.context_tokens,
                )  # fmt: skip
                for i, c in zip(chunk, codes, strict=True):
                    out[i] = c
        return out  # type: ignore[return-value]

    @torch.no_grad()
    def decode_tokens(self, codes: torch.Tensor) -> np.ndarray:
        """Joints [L · frames_per_token, 22, 3] (float64, metres) of token ids [L]."""
        feats = self.vqvae.decode(torch.as_tensor(codes).long().reshape(1, -1))[0]
        return np.asarray(features_to_joints(self.stats.denormalize(feats.double().cpu().numpy())))

    def generate(
        self,
        prompt: str,
        frames: int,
        seed: int,
        guidance: float = DEFAULT_GUIDANCE,
        top_k: int | None = None,
        temperature: float = 1.0,
        fill: Literal["hold", "continue"] = "hold",
    ) -> np.ndarray:
        """SMPL-22 joints [frames, 22, 3] at ``self.fps`` for ``prompt``; same seed, same motion."""
        codes = self.sample_tokens(prompt, frames, seed, guidance, top_k, temperature, fill)
        joints = self.decode_tokens(codes)
        if len(joints) >= frames:
            return joints[:frames]
        return np.concatenate([joints, np.repeat(joints[-1:], frames - len(joints), axis=0)])

    # --- persistence ------------------------------------------------------------------------------
    def config_dict(self) -> dict[str, Any]:
        """The fields of ``config.json`` (the format header is added on save)."""
        return {
            "vqvae": self.vqvae.config.model_dump(),
            "generator": self.generator.config.model_dump(),
            "text_encoder": {"name": self.text_encoder_name, "path": self.text_encoder_path},
            "fps": self.fps,
            "window": self.window,
        }

    def save_pretrained(self, path: str | Path) -> Path:
        """Write the model folder (see the module docstring) atomically; replaces an existing one."""
        from safetensors.torch import save_file

        path = Path(path)
        with atomic_dir(path) as tmp:
            for name, module in (("vqvae", self.vqvae), ("generator", self.generator)):
                state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
                save_file(state, str(tmp / f"{name}.safetensors"), metadata={"format": "pt"})
            self.stats.save(tmp / "stats.npz")
            write_config(tmp, FORMAT, self.config_dict())
        return path

    @classmethod
    def from_pretrained(
        cls, path: str | Path, text_encoder: TextEncoder | None = None, device: str | torch.device = "cpu"
    ) -> StructureModel:
        """Load a folder written by ``save_pretrained`` (``text_encoder`` overrides the saved reference)."""
        from safetensors.torch import load_file

        path = Path(path)
        cfg = read_config(path, FORMAT, hint="run the pretrain_motion stage (dvc repro pretrain_motion)")
        missing = [f for f in FILES if not (path / f).is_file()]
        if missing:
            raise FileNotFoundError(
                f"structure model folder {path} lacks {missing}; "
                "expected the output of StructureModel.save_pretrained"
            )
        vqvae = MotionVQVAE(VQVAEConfig(**cfg["vqvae"]))
        generator = MotionGenerator(GeneratorConfig(**cfg["generator"]))
        for name, module in (("vqvae", vqvae), ("generator", generator)):
            try:
                module.load_state_dict(load_file(str(path / f"{name}.safetensors")), strict=True)
            except RuntimeError as exc:
                raise ValueError(
                    f"{path / (name + '.safetensors')} does not match config.json: {exc}"
                ) from exc
            module.to(device).eval()
        te = cfg.get("text_encoder") or {}
        return cls(
            vqvae,
            generator,
            FeatureStats.load(path / "stats.npz"),
            text_encoder_name=te.get("name", "minilm"),
            text_encoder_path=te.get("path"),
            fps=cfg.get("fps", HUMANML3D_FPS),
            window=cfg.get("window", 64),
            text_encoder=text_encoder,
        )
