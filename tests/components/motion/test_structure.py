"""StructureModel: generation shape and length policy, save/load round trip, atomic saves, errors."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from components.data.config import SyntheticSource
from components.data.synthetic_source import write_motion_set
from components.motion.config import GeneratorConfig, VQVAEConfig
from components.motion.dataset import MotionDataset
from components.motion.generator import MotionGenerator
from components.motion.structure import FILES, StructureModel
from components.motion.vqvae import MotionVQVAE

VQ = VQVAEConfig(width=16, depth=1, codebook_size=16, code_dim=8)
GEN = GeneratorConfig(codebook_size=16, max_tokens=6, dim=16, layers=1, heads=2, text_dim=8, dropout=0.0)


class HashEncoder:
    """A deterministic stand-in text encoder: a seeded random vector per text."""

    name = "hash"
    dim = 8

    def encode(self, texts: list[str]) -> torch.Tensor:
        seeds = [int(hashlib.sha256(t.encode()).hexdigest()[:8], 16) for t in texts]
        return torch.stack([torch.randn(8, generator=torch.Generator().manual_seed(s)) for s in seeds])


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> MotionDataset:
    out = tmp_path_factory.mktemp("ingest")
    write_motion_set([SyntheticSource(motions=["walk", "jump", "punch"])], out)
    return MotionDataset(out / "motions", window=16)


@pytest.fixture(scope="module")
def model(dataset) -> StructureModel:
    """A briefly trained tiny model (the codebook initialised from real motion features)."""
    torch.manual_seed(0)
    vq, gen = MotionVQVAE(VQ), MotionGenerator(GEN)
    enc = HashEncoder()
    opt = torch.optim.Adam([*vq.parameters(), *gen.parameters()], lr=1e-3)
    for step in range(5):
        b = dataset.batch(step, 4, seed=0)
        out = vq(b["features"], b["lengths"])
        tokens = gen(vq.encode(b["features"]), b["lengths"] // 4, enc.encode(b["texts"]), b["ends"])
        opt.zero_grad()
        (out["loss"] + tokens["loss"]).backward()
        opt.step()
    return StructureModel(vq, gen, dataset.stats, "hash", "/models/hash", window=16, text_encoder=enc)


def test_generate_returns_finite_joints_of_the_requested_length(model):
    for frames in (1, 13, 24, 40):
        joints = model.generate("a person walks forward", frames=frames, seed=0)
        assert joints.shape == (frames, 22, 3) and np.isfinite(joints).all()
    a = model.generate("a person jumps", frames=20, seed=3, top_k=5, temperature=0.9)
    assert np.array_equal(a, model.generate("a person jumps", frames=20, seed=3, top_k=5, temperature=0.9))
    assert not np.array_equal(
        a, model.generate("a person jumps", frames=20, seed=4, top_k=5, temperature=0.9)
    )


def test_sample_tokens_batch_draws_what_each_one_prompt_call_draws(model):
    prompts = ["a person walks", "a person jumps", "a person walks", "a person punches", "a person jumps"]
    frames, seeds = [16, 9, 16, 24, 30], [5, 6, 7, 8, 9]
    kw = {"guidance": 2.5, "top_k": 5, "temperature": 0.8}
    batched = model.sample_tokens_batch(prompts, frames, seeds, batch_size=2, **kw)
    single = [
        model.sample_tokens(p, n, s, fill="continue", **kw)
        for p, n, s in zip(prompts, frames, seeds, strict=True)
    ]
    assert [len(t) for t in batched] == [4, 3, 4, 6, 6]  # ceil(frames / 4), capped at max_tokens
    for b, one in zip(batched, single, strict=True):
        assert torch.equal(b, one)
    # the seeds matter: another seed for a row changes that row only
    other = model.sample_tokens_batch(prompts, frames, [5, 6, 70, 8, 9], batch_size=8, **kw)
    assert torch.equal(other[0], batched[0]) and not torch.equal(other[2], batched[2])
    with pytest.raises(ValueError, match="2 frame counts"):
        model.sample_tokens_batch(prompts, frames[:2], seeds)


def test_generate_is_the_decoded_token_sequence_trimmed_or_held(model):
    tokens = model.sample_tokens("a person punches", frames=17, seed=1)
    assert 1 <= len(tokens) <= 5  # ceil(17 / 4) tokens at most
    decoded = model.decode_tokens(tokens)
    joints = model.generate("a person punches", frames=17, seed=1)
    n = min(len(decoded), 17)
    assert np.allclose(joints[:n], decoded[:n])
    assert np.all(joints[n:] == decoded[-1])
    # beyond the generator's capacity (6 tokens = 24 frames) the last pose is held
    long = model.generate("a person punches", frames=30, seed=1, fill="continue")
    assert model.max_frames == 24
    assert np.all(long[24:] == long[23])


def test_early_end_holds_the_last_pose_or_continues(model):
    gen = model.generator
    saved = gen.head.bias.detach().clone()
    with torch.no_grad():
        gen.head.bias[GEN.end_id] = 1e4  # END right after the first token
    try:
        held = model.generate("a person walks", frames=20, seed=0)
        assert np.all(held[4:] == held[3]) and not np.allclose(held[0], held[3])
        cont = model.generate("a person walks", frames=20, seed=0, fill="continue")
        assert len(model.sample_tokens("a person walks", 20, 0, fill="continue")) == 5
        assert not np.all(cont[4:] == cont[3])
    finally:
        with torch.no_grad():
            gen.head.bias.copy_(saved)


def test_save_load_round_trip_gives_identical_generations(model, tmp_path):
    out = model.save_pretrained(tmp_path / "structure")
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["vqvae"]["codebook_size"] == 16 and cfg["generator"]["max_tokens"] == 6
    assert cfg["text_encoder"] == {"name": "hash", "path": "/models/hash"}
    assert cfg["fps"] == 20.0 and cfg["window"] == 16
    loaded = StructureModel.from_pretrained(out, text_encoder=HashEncoder())
    assert loaded.text_encoder_name == "hash" and loaded.window == 16
    assert torch.equal(loaded.vqvae.quantizer.codebook, model.vqvae.quantizer.codebook)
    for seed in (0, 1, 2):
        kw = {"frames": 21, "seed": seed, "guidance": 2.0, "top_k": 4}
        assert np.array_equal(loaded.generate("a person jumps", **kw), model.generate("a person jumps", **kw))
    assert np.array_equal(loaded.stats.mean, model.stats.mean)


def test_save_is_atomic(model, tmp_path, monkeypatch):
    target = model.save_pretrained(tmp_path / "structure")
    before = (target / "generator.safetensors").read_bytes()
    import safetensors.torch

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", boom)
    with pytest.raises(OSError, match="disk full"):
        model.save_pretrained(target)
    assert (target / "generator.safetensors").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["structure"]  # no temp folder left behind


def test_minilm_reference_is_built_lazily_and_survives_a_round_trip(dataset, tmp_path):
    torch.manual_seed(0)
    gen = MotionGenerator(GEN.model_copy(update={"text_dim": 384}))
    model = StructureModel(MotionVQVAE(VQ), gen, dataset.stats, "minilm", None, window=16)
    joints = model.generate("a person does a backflip", frames=12, seed=5)
    assert joints.shape == (12, 22, 3) and np.isfinite(joints).all()
    assert model.text_encoder.dim == 384
    loaded = StructureModel.from_pretrained(model.save_pretrained(tmp_path / "m"))
    assert np.array_equal(loaded.generate("a person does a backflip", frames=12, seed=5), joints)


def test_clear_errors(model, dataset, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        StructureModel.from_pretrained(tmp_path / "none")
    out = model.save_pretrained(tmp_path / "m")
    (out / "stats.npz").unlink()
    with pytest.raises(FileNotFoundError, match=r"lacks \['stats\.npz'\]"):
        StructureModel.from_pretrained(out)
    out = model.save_pretrained(tmp_path / "m2")
    cfg = json.loads((out / "config.json").read_text())
    cfg["generator"]["dim"] = 32
    (out / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"generator\.safetensors does not match config\.json"):
        StructureModel.from_pretrained(out)
    with pytest.raises(
        ValueError, match=r"generator\.codebook_size \(32\) must equal vqvae\.codebook_size \(16\)"
    ):
        StructureModel(
            MotionVQVAE(VQ), MotionGenerator(GEN.model_copy(update={"codebook_size": 32})), dataset.stats
        )
    with pytest.raises(ValueError, match="frames must be a positive integer"):
        model.generate("a person walks", frames=0, seed=0)

    class Wide(HashEncoder):
        dim = 12

        def encode(self, texts):
            return torch.zeros(len(texts), 12)

    wide = StructureModel(model.vqvae, model.generator, model.stats, text_encoder=Wide())
    with pytest.raises(ValueError, match=r"gives 12-d vectors but the generator expects text_dim=8"):
        wide.generate("a person walks", frames=8, seed=0)


def test_past_the_training_window_the_generator_sees_only_the_latest_window(model):
    """window=16 frames = 4 tokens: token i is chosen after tokens i-3..i-1 only (greedy check)."""
    import copy

    assert model.context_tokens == 4
    m = copy.deepcopy(model)
    torch.manual_seed(1)
    with torch.no_grad():  # a briefly trained generator barely uses positions: make them matter
        for p in m.generator.parameters():
            p.add_(0.3 * torch.randn_like(p))
    tokens = m.sample_tokens("a person walks", frames=24, seed=0, guidance=1.0, top_k=1, fill="continue")
    assert len(tokens) == 6
    emb = m.embed(["a person walks"])
    with torch.no_grad():
        for i in range(3, 6):
            logits = m.generator.guided_logits(tokens[None, i - 3 : i], emb, 1.0)
            logits[:, GEN.end_id] = float("-inf")
            assert int(logits.argmax()) == int(tokens[i]), i
