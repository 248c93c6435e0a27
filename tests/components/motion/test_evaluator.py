"""The contrastive text/motion evaluator: learning, loss invariants, masking, persistence."""

from __future__ import annotations

import json

import numpy as np
import pydantic
import pytest
import torch
import torch.nn.functional as F

from components.motion.config import FEATURE_DIM, EvaluatorConfig
from components.motion.evaluator import MotionTextEvaluator, pad_motions, train_evaluator
from components.motion.humanml3d import FeatureStats
from components.motion.t2m_metrics import r_precision

TEXT_DIM, FRAMES = 8, 20


@pytest.fixture(autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def small_config(**overrides) -> EvaluatorConfig:
    kw = {"text_dim": TEXT_DIM, "hidden_dim": 64, "embed_dim": 32, "dropout": 0.0}
    kw.update(overrides)
    return EvaluatorConfig(**kw)


class SyntheticPairs:
    """Text vector t ~ N(0, I); its motion's features are W·A·t modulated by a cosine in time, plus noise."""

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)
        self.mix = self.rng.normal(size=(TEXT_DIM, TEXT_DIM))
        self.lift = self.rng.normal(size=(FEATURE_DIM, TEXT_DIM)) / np.sqrt(TEXT_DIM)

    def sample(self, n: int) -> dict[str, torch.Tensor]:
        text = self.rng.normal(size=(n, TEXT_DIM))
        lengths = self.rng.integers(12, FRAMES + 1, size=n)
        wave = np.cos(0.4 * np.arange(FRAMES))
        feats = np.einsum("t,nf->ntf", wave, text @ self.mix.T @ self.lift.T)
        feats += 0.1 * self.rng.normal(size=feats.shape)
        for i, length in enumerate(lengths):
            feats[i, length:] = 0.0
        return {
            "features": torch.tensor(feats, dtype=torch.float32),
            "lengths": torch.tensor(lengths),
            "text_emb": torch.tensor(text, dtype=torch.float32),
        }


def held_out_r_precision(model: MotionTextEvaluator, data: dict[str, torch.Tensor]) -> np.ndarray:
    with torch.no_grad():
        motion = model.embed_motion(data["features"], data["lengths"]).numpy()
        text = model.embed_text(data["text_emb"]).numpy()
    return r_precision(text, motion, batch_size=32, top_k=3, rng=np.random.default_rng(0))


def test_trained_evaluator_retrieves_held_out_pairs_far_above_chance():
    pairs = SyntheticPairs(seed=0)
    train, test = pairs.sample(24), pairs.sample(64)
    torch.manual_seed(0)
    model = MotionTextEvaluator(small_config(false_negative_threshold=None))
    before = held_out_r_precision(model, test)
    losses = train_evaluator(model, lambda step: train, steps=80, lr=2e-3, seed=0)
    after = held_out_r_precision(model, test)
    assert len(losses) == 80 and losses[-1] < 0.2 * losses[0]
    assert after[0] > 0.2 and after[2] > 0.4  # chance: 1/32 and 3/32
    assert after[2] > before[2] + 0.2
    assert not model.training


def test_loss_is_symmetric_infonce():
    torch.manual_seed(1)
    model = MotionTextEvaluator(small_config(false_negative_threshold=None)).eval()
    batch = SyntheticPairs(seed=1).sample(6)
    with torch.no_grad():
        zm = model.embed_motion(batch["features"], batch["lengths"])
        zt = model.embed_text(batch["text_emb"])
        logits = zt @ zm.T / model.config.temperature
        target = torch.arange(6)
        expected = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
        got = model.loss(batch["features"], batch["lengths"], batch["text_emb"])
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)


def test_duplicate_captions_are_not_negatives():
    torch.manual_seed(2)
    batch = SyntheticPairs(seed=2).sample(1)
    same = {k: v.repeat(5, *([1] * (v.ndim - 1))) for k, v in batch.items()}  # 5 identical pairs
    masked = MotionTextEvaluator(small_config(false_negative_threshold=0.9)).eval()
    plain = MotionTextEvaluator(small_config(false_negative_threshold=None)).eval()
    with torch.no_grad():
        assert masked.loss(**same).item() == pytest.approx(0.0, abs=1e-6)
        assert plain.loss(**same).item() == pytest.approx(np.log(5), rel=1e-4)


def test_hard_negative_weighting_only_raises_the_loss():
    torch.manual_seed(3)
    batch = SyntheticPairs(seed=3).sample(8)
    plain = MotionTextEvaluator(small_config(false_negative_threshold=None)).eval()
    hard = MotionTextEvaluator(small_config(false_negative_threshold=None, hard_negative_beta=5.0)).eval()
    hard.load_state_dict(plain.state_dict())
    with torch.no_grad():
        l_plain, l_hard = plain.loss(**batch).item(), hard.loss(**batch).item()
    # weights N·softmax(β·s) grow with s, so the weighted denominator is never smaller
    assert l_hard > l_plain


def test_padding_does_not_change_an_embedding():
    torch.manual_seed(4)
    model = MotionTextEvaluator(small_config()).eval()
    feats = torch.randn(1, 15, FEATURE_DIM)
    padded = torch.cat([feats, 100 * torch.randn(1, 9, FEATURE_DIM)], dim=1)
    with torch.no_grad():
        a = model.embed_motion(feats, [15])
        b = model.embed_motion(padded, [15])
    torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    assert a.norm(dim=-1).item() == pytest.approx(1.0, abs=1e-6)


def test_feature_stats_normalise_inside_the_model():
    rng = np.random.default_rng(5)
    stats = FeatureStats(mean=rng.normal(size=FEATURE_DIM), std=rng.uniform(0.5, 2.0, size=FEATURE_DIM))
    torch.manual_seed(5)
    with_stats = MotionTextEvaluator(small_config(), stats=stats).eval()
    identity = MotionTextEvaluator(small_config()).eval()
    identity.load_state_dict(with_stats.state_dict() | {"feature_mean": identity.feature_mean})
    identity.feature_std.fill_(1.0)
    raw = torch.randn(2, 10, FEATURE_DIM, dtype=torch.float64)
    normalised = torch.as_tensor(stats.normalize(raw.numpy()))
    with torch.no_grad():
        torch.testing.assert_close(
            with_stats.embed_motion(raw, [10, 7]),
            identity.embed_motion(normalised, [10, 7]),
            atol=1e-5,
            rtol=1e-4,
        )


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(6)
    model = MotionTextEvaluator(small_config(hard_negative_beta=1.0)).eval()
    batch = SyntheticPairs(seed=6).sample(4)
    model.save_pretrained(tmp_path / "ev")
    loaded = MotionTextEvaluator.from_pretrained(tmp_path / "ev")
    assert loaded.config == model.config and not loaded.training
    with torch.no_grad():
        assert torch.equal(
            model.embed_motion(batch["features"], batch["lengths"]),
            loaded.embed_motion(batch["features"], batch["lengths"]),
        )
        assert torch.equal(model.embed_text(batch["text_emb"]), loaded.embed_text(batch["text_emb"]))
    saved = json.loads((tmp_path / "ev" / "config.json").read_text())
    assert saved["format"] == "mosa-motion-evaluator" and saved["version"] == 2
    assert saved["config"]["hard_negative_beta"] == 1.0
    with pytest.raises(FileNotFoundError, match="does not exist"):
        MotionTextEvaluator.from_pretrained(tmp_path / "missing")
    # a folder from before the one save/load convention (bare config in evaluator_config.json) loads
    (tmp_path / "ev" / "config.json").unlink()
    (tmp_path / "ev" / "evaluator_config.json").write_text(json.dumps(saved["config"]))
    assert MotionTextEvaluator.from_pretrained(tmp_path / "ev").config == model.config


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(pydantic.ValidationError, match="hiden_dim"):
        EvaluatorConfig(hiden_dim=3)
    model = MotionTextEvaluator(small_config()).eval()
    feats = torch.zeros(2, 10, FEATURE_DIM)
    with pytest.raises(ValueError, match=r"lengths must be in \[1, T=10\]"):
        model.embed_motion(feats, [10, 11])
    with pytest.raises(ValueError, match="lengths has 1 entries"):
        model.embed_motion(feats, [10])
    with pytest.raises(ValueError, match=r"features must be \[B, T, 263\]"):
        model.embed_motion(torch.zeros(2, 10, 12), [10, 10])
    with pytest.raises(ValueError, match=r"text_emb must be \[B, 8\]"):
        model.embed_text(torch.zeros(2, 384))
    with pytest.raises(ValueError, match=">= 2 pairs"):
        model.loss(feats[:1], [10], torch.zeros(1, TEXT_DIM))
    with pytest.raises(KeyError, match="text_emb"):
        train_evaluator(model, lambda step: {"features": feats, "lengths": [10, 10]}, steps=1)


def test_pad_motions():
    feats, lengths = pad_motions([np.ones((3, 5)), 2 * np.ones((6, 5))])
    assert feats.shape == (2, 6, 5) and lengths.tolist() == [3, 6]
    assert feats[0, 3:].abs().sum() == 0 and feats[1].eq(2).all()
    with pytest.raises(ValueError, match="feature array 1"):
        pad_motions([np.ones((3, 5)), np.ones((3, 4))])


def test_labels_decide_false_negatives_instead_of_the_text_cosine():
    """Two near-identical sentence embeddings ("turning left" / "turning right" under MiniLM) stay
    negatives when their labels differ, and pairs with one label are dropped even if their texts differ."""
    torch.manual_seed(5)
    batch = SyntheticPairs(seed=5).sample(6)
    batch["text_emb"][1] = batch["text_emb"][0] + 1e-3 * torch.randn(TEXT_DIM)  # cosine ~1
    masked = MotionTextEvaluator(small_config(false_negative_threshold=0.9)).eval()
    plain = MotionTextEvaluator(small_config(false_negative_threshold=None)).eval()
    plain.load_state_dict(masked.state_dict())
    with torch.no_grad():
        distinct = masked.loss(**batch, labels=list("abcdef")).item()
        assert distinct == pytest.approx(plain.loss(**batch).item(), rel=1e-6)  # threshold not applied
        assert masked.loss(**batch).item() != pytest.approx(distinct, rel=1e-4)  # without labels it is
        # rows 2 and 3 share a label: neither is the other's negative, so the loss drops
        assert masked.loss(**batch, labels=list("abccef")).item() < distinct
        # unknown labels (None) keep every negative
        assert masked.loss(**batch, labels=["a", None, None, "d", "e", "f"]).item() == pytest.approx(distinct)
    with pytest.raises(ValueError, match="labels has 2 entries"):
        masked.loss(**batch, labels=["a", "b"])
