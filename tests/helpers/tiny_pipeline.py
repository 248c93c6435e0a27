"""A tiny random-weight MoSA pipeline (every stage the real one) for tests that need a saved pipeline."""

from __future__ import annotations

from pathlib import Path

import torch

from components.backbone.config import TinyConfig
from components.backbone.spec import get_spec
from components.base.bundle import BaseBundle, make_config
from components.base.token_encoder import TokenTextEncoder
from components.dit.config import MoSAConfig
from components.dit.mosa import MoSATransformer
from components.dit.pipeline import MoSAPipeline, PipelineDefaults
from components.motion.config import GeneratorConfig, VQVAEConfig
from components.motion.deepmimic import load_deepmimic
from components.motion.generator import MotionGenerator
from components.motion.humanml3d import compute_stats, joints_to_features
from components.motion.structure import StructureModel
from components.motion.vqvae import MotionVQVAE


def _randomise_output_layers(mosa: MoSATransformer, seed: int, std: float) -> None:
    """Give the zero-initialised HADC output layers random weights so the skeleton shows in the frames."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for hadc in mosa.hadc or []:
            if hadc.mode == "on":
                last = hadc.predictor.mlp[-1]
                last.weight.copy_(torch.randn(last.weight.shape, generator=g) * std)
                last.bias.copy_(torch.randn(last.bias.shape, generator=g) * std)
            else:
                hadc.alpha.fill_(1.0)


def tiny_structure_model(seed: int = 0) -> StructureModel:
    """A random-weight tiny structure transformer whose features are normalised with the statistics of
    a real motion (the packaged DeepMimic walk), so its joints look like a person; MiniLM text."""

    stats = compute_stats([joints_to_features(load_deepmimic("walk").joints)])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vqvae = MotionVQVAE(VQVAEConfig(width=16, depth=1, codebook_size=16, code_dim=8)).eval()
        generator = MotionGenerator(
            GeneratorConfig(
                codebook_size=16, max_tokens=8, dim=16, layers=1, heads=2, text_dim=384, dropout=0.0
            )
        ).eval()
    return StructureModel(vqvae, generator, stats, "minilm", None)


def build_tiny_pipeline(
    directory: str | Path,
    seed: int = 0,
    text: TokenTextEncoder | None = None,
    backbone: str = "cogvideox",
    skeleton_encoder: str = "vae",
) -> Path:
    """Build and save a tiny random-weight pipeline (9 frames × 32×48 at 8 fps, 4 steps) for tests.

    Random weights throughout (nothing learned, the frames are noise-like), but every stage is the
    real one; HADC's output layers are randomised so the skeleton changes the frames. ``text`` reuses
    a loaded MiniLM token encoder (``max_tokens`` 8); otherwise one is loaded.
    """

    frames, height, width, fps = 9, 32, 48, 8.0
    text = text if text is not None else TokenTextEncoder("minilm", max_tokens=8)
    spec = get_spec(backbone)
    tiny = TinyConfig(
        sample_frames=frames, sample_height=height, sample_width=width, text_dim=text.dim, seed=seed
    )
    models = spec.build_tiny(tiny)
    bundle = BaseBundle(
        spec=spec,
        models=models,
        text=text,
        depth=None,
        config=make_config(spec, tiny, text, frames, height, width, fps),
    )
    mosa = MoSATransformer(
        models.transformer,
        MoSAConfig(backbone=backbone, num_structure_blocks=1, skeleton_encoder=skeleton_encoder),
        spec.vae_spatial_compression(models.vae),
    )
    _randomise_output_layers(mosa, seed, std=0.5)
    defaults = PipelineDefaults(steps=4, guidance=3.0, frames=frames, height=height, width=width, fps=fps)
    pipe = MoSAPipeline(bundle, mosa.eval(), tiny_structure_model(seed), defaults)
    return pipe.save_pretrained(directory)
