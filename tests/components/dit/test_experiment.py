"""train_dit's frozen base: the CPU bundle or, with ``base_path`` (the GPU profiles), a published
diffusers folder with its T5 — loaded and trained around for real, on a tiny folder laid out like
THUDM/CogVideoX-5b (transformer/, vae/, scheduler/, text_encoder/, tokenizer/)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from components.config import validate_section
from components.dit.experiment import geometry_reason, load_frozen_base, train_and_follow

FRAMES, HEIGHT, WIDTH, FPS = 9, 64, 96, 8.0
T5_DIM = 16


def _save_tiny_t5(root: Path) -> None:
    """A random 1-layer T5 encoder and a word-level tokenizer, saved where the published repos keep them."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast, T5Config, T5EncoderModel

    words = ["<pad>", "</s>", "<unk>", "a", "person", "walks", "runs", "moves", "forward", "jumps"]
    tk = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tk.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tk, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )
    fast.save_pretrained(root / "tokenizer")
    torch.manual_seed(0)
    cfg = T5Config(
        vocab_size=len(words), d_model=T5_DIM, d_kv=4, d_ff=32, num_layers=1, num_heads=4,
        pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
    )  # fmt: skip
    T5EncoderModel(cfg).save_pretrained(root / "text_encoder")


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> Path:
    """A tiny CogVideoX folder in the published layout (GroupNorm VAE, as the real one), with T5."""
    from components.backbone.config import TinyConfig
    from components.backbone.spec import get_spec

    root = tmp_path_factory.mktemp("CogVideoX-tiny")
    tiny = TinyConfig(
        sample_frames=FRAMES, sample_height=HEIGHT, sample_width=WIDTH, text_dim=T5_DIM,
        vae_block_channels=(8, 16, 16), vae_norm="published", seed=3,
    )  # fmt: skip
    models = get_spec("cogvideox").build_tiny(tiny)
    models.transformer.save_pretrained(root / "transformer", safe_serialization=True)
    models.vae.save_pretrained(root / "vae", safe_serialization=True)
    models.scheduler.save_pretrained(root / "scheduler")
    _save_tiny_t5(root)
    return root


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """Four synthetic clips ingested and annotated at the published folder's clip size, and a motion model."""
    from tests.flows.test_evaluate_main import tiny_annotated_clips
    from tests.helpers.tiny_pipeline import tiny_structure_model

    root = tmp_path_factory.mktemp("inputs")
    torch.set_num_threads(1)
    tiny_structure_model(0).save_pretrained(root / "motion")
    tiny_annotated_clips(root, FRAMES, HEIGHT, WIDTH, FPS)
    return root


def _params(published: Path, inputs: Path, tmp_path: Path, **extra):
    section = {
        "ingest": str(inputs / "ingest"), "annotate": str(inputs / "annotate"),
        "motion": str(inputs / "motion"), "base": str(tmp_path / "no-cpu-base"),
        "base_path": str(published), "base_dtype": "float32",
        "text_encoder": {"name": "t5", "max_tokens": 8},
        "frames": FRAMES, "height": HEIGHT, "width": WIDTH,
        "mosa": {"num_structure_blocks": 1, "skeleton_encoder": "vae", "structure": "2d", "hadc": "on"},
        "losses": {"contact_enabled": False, "mask": 0.001, "track": 0.01, "track_mode": "temporal"},
        "steps": 2, "checkpoint_every": 0, "batch_size": 1, "warmup_steps": 1, "aux_every": 2,
        "aux_samples": 1, "track_points": 8, "zero_stage": 0, "follow": {"clips": 1, "steps": 1},
        "cache": str(tmp_path / "cache"),
    }  # fmt: skip
    section.update(extra)
    return validate_section("train_dit", section)


def test_base_path_loads_the_published_folder_at_the_profile_size(published, tmp_path):
    from safetensors.torch import load_file

    bundle = load_frozen_base(_params(published, tmp_path, tmp_path))
    assert (bundle.frames, bundle.height, bundle.width) == (FRAMES, HEIGHT, WIDTH)
    assert bundle.text.name == "t5" and bundle.text.max_tokens == 8 and bundle.text.dim == T5_DIM
    saved = load_file(str(published / "transformer" / "diffusion_pytorch_model.safetensors"))
    state = bundle.models.transformer.state_dict()
    assert all(torch.equal(state[k], v) for k, v in saved.items())
    assert next(bundle.models.transformer.parameters()).dtype == torch.float32
    # without an explicit max_tokens, the published pipeline's text length; the published geometry
    # when the profile gives no size
    section = {"base_path": str(published), "text_encoder": {"name": "t5"}, "base_dtype": "bfloat16"}
    default = load_frozen_base(validate_section("train_dit", section))
    assert default.text.max_tokens == 226
    assert (default.frames, default.height, default.width) == (49, 480, 720)
    assert next(default.models.transformer.parameters()).dtype == torch.bfloat16


def test_base_path_needs_t5_and_a_real_folder(published, tmp_path):
    with pytest.raises(ValueError, match="set it to t5"):
        load_frozen_base(validate_section("train_dit", {"base_path": str(published)}))
    with pytest.raises(FileNotFoundError):
        missing = {"base_path": str(tmp_path / "nowhere"), "text_encoder": {"name": "t5"}}
        load_frozen_base(validate_section("train_dit", missing))


def test_clips_of_another_size_are_quarantined_with_the_fix():
    class Clip:
        video = np.zeros((17, 96, 144, 3), np.uint8)

    class Base:
        frames, height, width = FRAMES, HEIGHT, WIDTH

    reason = geometry_reason(Clip(), Base())
    assert reason is not None and "17x96x144" in reason and "ingest.clip.frames" in reason
    Base.frames, Base.height, Base.width = 17, 96, 144
    assert geometry_reason(Clip(), Base()) is None


def test_train_dit_trains_around_a_published_base(published, inputs, tmp_path):
    """The GPU profiles' route end to end at tiny size: MoSA modules train around the loaded base,
    which stays frozen, and the following check generates at the profile's size."""
    from safetensors.torch import load_file

    params = _params(published, inputs, tmp_path)
    run = train_and_follow(params, tmp_path / "ckpt", progress=False)
    assert run.result.steps == 2 and len(run.history) == 2
    assert all(np.isfinite(row["loss"]) for row in run.history)
    saved = load_file(str(published / "transformer" / "diffusion_pytorch_model.safetensors"))
    base = run.pipe.base.models.transformer.state_dict()
    assert all(torch.equal(base[k], v) for k, v in saved.items())  # the base did not move
    assert run.generated["mosa"][0].shape == (FRAMES, HEIGHT, WIDTH, 3)
    # ingested clips of another size than the base's are named, not trained on
    with pytest.raises(ValueError, match=r"ingest\.clip\.frames/height/width"):
        train_and_follow(
            _params(published, inputs, tmp_path, frames=17, height=HEIGHT, width=WIDTH),
            tmp_path / "ckpt2",
            progress=False,
        )


def test_gradient_checkpointing_recomputes_the_base_and_changes_no_loss(published, inputs, tmp_path):
    """What the GPU profiles switch on: the same losses, the base's blocks recomputed in the backward."""
    plain = train_and_follow(_params(published, inputs, tmp_path), tmp_path / "a", progress=False)
    ckpt = train_and_follow(
        _params(published, inputs, tmp_path, gradient_checkpointing=True), tmp_path / "b", progress=False
    )
    assert ckpt.pipe.base.models.transformer.gradient_checkpointing
    assert not plain.pipe.base.models.transformer.gradient_checkpointing
    for a, b in zip(plain.history, ckpt.history, strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4, abs=1e-6)
