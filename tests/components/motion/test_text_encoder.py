"""Text encoders: the real packaged MiniLM, a tiny locally built T5, the cache and the errors."""

from __future__ import annotations

import pytest
import torch

from components.motion.text_encoder import (
    MiniLMTextEncoder,
    T5TextEncoder,
    TextEncoder,
    build_text_encoder,
)

WORDS = ["<pad>", "</s>", "<unk>", "a", "person", "walks", "runs", "jumps", "forward", "slowly", "the", "man"]


@pytest.fixture(scope="module")
def minilm() -> MiniLMTextEncoder:
    return MiniLMTextEncoder()


@pytest.fixture(scope="module")
def tiny_t5_dir(tmp_path_factory):
    """A randomly initialised 2-layer T5 encoder with a word-level tokenizer, saved like a real one."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast, T5Config, T5EncoderModel

    folder = tmp_path_factory.mktemp("t5")
    tk = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tk.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tk, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )
    fast.save_pretrained(folder)
    torch.manual_seed(0)
    cfg = T5Config(
        vocab_size=len(WORDS), d_model=16, d_kv=4, d_ff=32, num_layers=2, num_heads=4,
        pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
    )  # fmt: skip
    T5EncoderModel(cfg).save_pretrained(folder)
    return folder


def test_minilm_paraphrases_are_closer_than_unrelated(minilm):
    assert isinstance(minilm, TextEncoder)
    emb = minilm.encode(
        [
            "a person walks forward",
            "someone is walking ahead",
            "a man does a backflip",
            "the stock market fell sharply today",
        ]
    )
    assert emb.shape == (4, 384) and emb.dtype == torch.float32 and not emb.requires_grad
    assert torch.allclose(emb.norm(dim=1), torch.ones(4), atol=1e-4)
    sim = emb @ emb.T
    assert sim[0, 1] > sim[0, 2] + 0.1
    assert sim[0, 1] > sim[0, 3] + 0.3
    assert sim[0, 2] > sim[0, 3]  # two motions are closer than a motion and finance


def test_cache_returns_same_vectors_and_counts_unique_texts(minilm):
    minilm.clear_cache()
    a = minilm.encode(["a person jumps", "a person jumps", "a person runs"])
    assert minilm.cache_len == 2
    assert torch.equal(a[0], a[1])
    b = minilm.encode(["a person runs", "a person jumps"])
    assert torch.equal(b[0], a[2]) and torch.equal(b[1], a[0])
    b += 1.0  # callers may modify what they get back without corrupting the cache
    assert torch.equal(minilm.encode(["a person runs"])[0], a[2])
    assert minilm.encode([]).shape == (0, 384)
    with pytest.raises(TypeError, match="list of strings"):
        minilm.encode("a person runs")


def test_t5_mean_pools_over_the_attention_mask(tiny_t5_dir):
    enc = build_text_encoder("t5", str(tiny_t5_dir))
    assert isinstance(enc, T5TextEncoder) and enc.dim == 16
    short, long = "a person walks", "the man runs forward slowly slowly slowly"
    batched = enc.encode([short, long])
    enc.clear_cache()
    alone = enc.encode([short])[0]
    assert torch.allclose(batched[0], alone, atol=1e-5)  # padding does not leak into the mean
    ids = enc.tokenizer([short], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        expected = enc.model(input_ids=ids).last_hidden_state[0].mean(0)
    assert torch.allclose(alone, expected, atol=1e-5)
    assert not torch.allclose(batched[0], batched[1])


def test_build_errors_name_the_param(tmp_path):
    with pytest.raises(ValueError, match=r"text_encoder\.path is required"):
        build_text_encoder("t5", None)
    with pytest.raises(FileNotFoundError, match=r"text_encoder\.path.*does not exist"):
        build_text_encoder("t5", tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match=r"text_encoder\.path.*no config\.json"):
        build_text_encoder("t5", tmp_path)
    with pytest.raises(ValueError, match=r"text_encoder\.name must be one of"):
        build_text_encoder("clip")
