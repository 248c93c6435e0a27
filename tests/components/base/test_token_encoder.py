"""TokenTextEncoder: token states of the packaged MiniLM and of a local T5 folder, padding, cache, errors."""

from __future__ import annotations

import shutil

import pytest
import torch

from components.base.token_encoder import TokenTextEncoder, build_token_encoder, minilm_folder

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def minilm() -> TokenTextEncoder:
    return TokenTextEncoder(max_tokens=12)


def _n_tokens(enc: TokenTextEncoder, text: str) -> int:
    """Tokens of ``text`` without padding (special tokens included)."""
    return len(enc.tokenizer([text], truncation=True, max_length=enc.max_tokens)["input_ids"][0])


def test_minilm_states_have_fixed_length_and_zero_padding(minilm: TokenTextEncoder) -> None:
    texts = ["a man runs and jumps over a bench", "walk"]
    emb = minilm.encode(texts)
    assert emb.shape == (2, 12, 384) and emb.dtype == torch.float32 and not emb.requires_grad
    for i, text in enumerate(texts):
        n = _n_tokens(minilm, text)
        assert 2 < n < 12
        assert torch.all(emb[i, n:] == 0)
        assert bool((emb[i, :n].abs().sum(-1) > 0).all())


def test_long_prompts_are_truncated_to_max_tokens(minilm: TokenTextEncoder) -> None:
    emb = minilm.encode([" ".join(["jump"] * 40)])
    assert emb.shape == (1, 12, 384)
    assert bool((emb[0].abs().sum(-1) > 0).all())  # no padding left


def test_batch_and_order_do_not_change_a_prompt_and_cache_serves_repeats(monkeypatch) -> None:
    enc = TokenTextEncoder(max_tokens=10)
    a = enc.encode(["a woman dances", "a dog"])
    calls: list[list[str]] = []
    original = enc._encode_uncached
    monkeypatch.setattr(enc, "_encode_uncached", lambda texts: calls.append(texts) or original(texts))
    b = enc.encode(["a dog", "a child kicks a ball", "a woman dances", "a dog"])
    assert calls == [["a child kicks a ball"]]
    torch.testing.assert_close(b[0], a[1])
    torch.testing.assert_close(b[2], a[0])
    torch.testing.assert_close(b[3], a[1])
    fresh = TokenTextEncoder(max_tokens=10).encode(["a child kicks a ball"])
    torch.testing.assert_close(b[1], fresh[0], atol=1e-5, rtol=1e-5)
    b[0].zero_()  # the caller's copy; the cache must not change
    torch.testing.assert_close(enc.encode(["a dog"])[0], a[1])
    assert enc.cache_len == 3


def test_cache_is_bounded() -> None:
    enc = TokenTextEncoder(max_tokens=6, cache_size=2)
    enc.encode(["one", "two", "three"])
    assert enc.cache_len == 2


def test_config_round_trips_and_stores_the_packaged_model_as_null(minilm: TokenTextEncoder) -> None:
    cfg = minilm.config()
    assert cfg == {"name": "minilm", "path": None, "max_tokens": 12}
    again = build_token_encoder(**cfg)
    torch.testing.assert_close(again.encode(["a person crawls"]), minilm.encode(["a person crawls"]))


def test_bad_inputs_and_settings_raise_clear_errors(minilm: TokenTextEncoder, tmp_path) -> None:
    with pytest.raises(TypeError, match="wrap it"):
        minilm.encode("a single string")
    with pytest.raises(TypeError, match="must all be str"):
        minilm.encode(["ok", 3])
    assert minilm.encode([]).shape == (0, 12, 384)
    with pytest.raises(ValueError, match=r"text_encoder\.path is required"):
        build_token_encoder("t5", None)
    with pytest.raises(ValueError, match="must be one of"):
        build_token_encoder("clip")
    with pytest.raises(ValueError, match="max_tokens"):
        build_token_encoder("minilm", max_tokens=0)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_token_encoder("t5", tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"no config\.json"):
        build_token_encoder("t5", tmp_path / "empty")


def test_t5_from_a_local_folder_with_a_separate_tokenizer(tmp_path) -> None:
    from transformers import AutoTokenizer, T5Config, T5EncoderModel

    tok = AutoTokenizer.from_pretrained(str(minilm_folder()), local_files_only=True)
    cfg = T5Config(
        vocab_size=tok.vocab_size, d_model=24, d_kv=8, d_ff=32, num_layers=1, num_heads=3, pad_token_id=0
    )
    torch.manual_seed(0)
    T5EncoderModel(cfg).save_pretrained(tmp_path / "text_encoder")
    tok.save_pretrained(tmp_path / "tokenizer")
    enc = build_token_encoder(
        "t5", tmp_path / "text_encoder", max_tokens=9, tokenizer_path=tmp_path / "tokenizer"
    )
    emb = enc.encode(["a man runs", "a woman jumps high"])
    assert enc.dim == 24 and emb.shape == (2, 9, 24)
    n = _n_tokens(enc, "a man runs")
    assert torch.all(emb[0, n:] == 0) and bool((emb[0, :n].abs().sum(-1) > 0).all())
    assert enc.config() == {"name": "t5", "path": str(tmp_path / "text_encoder"), "max_tokens": 9}
    # without the tokenizer beside it, the model folder alone is not enough
    shutil.rmtree(tmp_path / "tokenizer")
    with pytest.raises(FileNotFoundError, match="tokenizer"):
        build_token_encoder("t5", tmp_path / "text_encoder")
