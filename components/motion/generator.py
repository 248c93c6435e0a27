"""Text-conditioned autoregressive transformer over motion tokens (the structure transformer's prior).

Sequence layout: ``[c, t_0, t_1, ..., t_{L-1}]`` where ``c`` is the text embedding projected to one
prefix token; position ``i`` predicts ``t_i`` and position ``L`` predicts ``END`` (when the motion
ends inside the sequence). The vocabulary of inputs is ``codebook_size`` codes + ``END`` + ``PAD``;
the output head only covers codes + ``END``, so ``PAD`` can never be generated.

Classifier-free guidance: during training the prefix is replaced, with probability
``cond_drop_prob`` per sample, by a learned null embedding; at sampling time the logits become
``uncond + s · (cond − uncond)`` (``s = 1`` is the plain conditional model).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from components.motion.config import GeneratorConfig


class MotionGenerator(nn.Module):
    """Causal transformer: text prefix + motion tokens → next-token logits over codes + END."""

    def __init__(self, config: GeneratorConfig | None = None):
        super().__init__()
        self.config = c = config or GeneratorConfig()
        self.token_emb = nn.Embedding(c.codebook_size + 2, c.dim)
        self.pos_emb = nn.Parameter(torch.zeros(c.max_tokens + 1, c.dim))
        self.cond_proj = nn.Linear(c.text_dim, c.dim)
        self.null_cond = nn.Parameter(torch.zeros(c.dim))
        layer = nn.TransformerEncoderLayer(
            c.dim, c.heads, c.ff_mult * c.dim, c.dropout, activation="gelu", batch_first=True, norm_first=True
        )
        self.blocks = nn.TransformerEncoder(layer, c.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(c.dim)
        self.head = nn.Linear(c.dim, c.codebook_size + 1)
        nn.init.normal_(self.pos_emb, std=0.02)
        nn.init.normal_(self.null_cond, std=0.02)
        nn.init.normal_(self.token_emb.weight, std=0.02)

    # --- core ---------------------------------------------------------------------------------
    def _check_text(self, text_emb: torch.Tensor, batch: int | None = None) -> torch.Tensor:
        if text_emb.ndim != 2 or text_emb.shape[1] != self.config.text_dim:
            raise ValueError(
                f"text_emb must be [B, {self.config.text_dim}] (generator.text_dim), "
                f"got {tuple(text_emb.shape)}; "
                "the text encoder and the generator config must agree"
            )
        if batch is not None and text_emb.shape[0] != batch:
            raise ValueError(f"text_emb has {text_emb.shape[0]} rows for a batch of {batch} sequences")
        return text_emb.to(self.cond_proj.weight.dtype)

    def _prefix(self, text_emb: torch.Tensor, drop: torch.Tensor | None) -> torch.Tensor:
        cond = self.cond_proj(text_emb)
        if drop is not None:
            cond = torch.where(drop[:, None], self.null_cond.expand_as(cond), cond)
        return cond

    def logits(
        self, tokens: torch.Tensor, text_emb: torch.Tensor, drop: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logits [B, L+1, codebook_size+1] for input tokens [B, L]; ``drop`` [B] True = unconditioned."""
        b, n = tokens.shape
        if n > self.config.max_tokens:
            raise ValueError(f"{n} tokens exceed generator.max_tokens={self.config.max_tokens}")
        prefix = self._prefix(self._check_text(text_emb, b), drop)
        x = torch.cat([prefix[:, None], self.token_emb(tokens)], 1) + self.pos_emb[: n + 1]
        mask = nn.Transformer.generate_square_subsequent_mask(n + 1, device=x.device, dtype=x.dtype)
        h = self.blocks(x, mask=mask, is_causal=True)
        return self.head(self.norm(h))

    def forward(
        self,
        codes: torch.Tensor,
        lengths: torch.Tensor,
        text_emb: torch.Tensor,
        ends: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Next-token cross-entropy over codes [B, L] (valid up to ``lengths`` [B], in tokens).

        The target after the last valid token is END where ``ends`` [B] is True (default: all),
        i.e. the window reaches the end of its motion; a window cut from the middle of a longer
        motion has no END target. Positions past that are PAD and ignored.
        """
        c = self.config
        codes = torch.as_tensor(codes).long()
        if codes.ndim != 2:
            raise ValueError(f"codes must be [B, L], got {tuple(codes.shape)}")
        b, n = codes.shape
        lengths = torch.as_tensor(lengths, device=codes.device).long()
        if lengths.shape != (b,) or int(lengths.min()) < 1 or int(lengths.max()) > n:
            raise ValueError(f"lengths must be [B] = [{b}] token counts in [1, {n}], got {lengths.tolist()}")
        ends = (
            torch.ones(b, dtype=torch.bool, device=codes.device)
            if ends is None
            else torch.as_tensor(ends).bool()
        )
        pos = torch.arange(n, device=codes.device)[None]
        valid = pos < lengths[:, None]
        if int(codes[valid].min()) < 0 or int(codes[valid].max()) >= c.codebook_size:
            raise ValueError(f"codes must lie in [0, {c.codebook_size}) (generator.codebook_size)")
        inputs = torch.where(valid, codes, torch.full_like(codes, c.pad_id))
        if n == c.max_tokens:  # the last token never serves as an input, so its slot can go
            logits = self.logits(inputs[:, :-1], text_emb, self._drop_mask(b, codes.device))
            targets_len = n
        else:
            logits = self.logits(inputs, text_emb, self._drop_mask(b, codes.device))
            targets_len = n + 1
        targets = torch.full((b, n + 1), c.pad_id, dtype=torch.long, device=codes.device)
        targets[:, :n] = inputs
        rows = torch.arange(b, device=codes.device)
        targets[rows[ends], lengths[ends]] = c.end_id
        targets = targets[:, :targets_len]
        loss = F.cross_entropy(logits.transpose(1, 2).float(), targets, ignore_index=c.pad_id)
        with torch.no_grad():
            keep = targets != c.pad_id
            accuracy = (logits.argmax(-1)[keep] == targets[keep]).float().mean()
        return {"loss": loss, "logits": logits, "accuracy": accuracy}

    def _drop_mask(self, batch: int, device: torch.device) -> torch.Tensor | None:
        p = self.config.cond_drop_prob
        if not self.training or p == 0:
            return None
        return torch.rand(batch, device=device) < p

    # --- sampling -----------------------------------------------------------------------------
    def guided_logits(self, tokens: torch.Tensor, text_emb: torch.Tensor, guidance: float) -> torch.Tensor:
        """Next-token logits [B, codebook_size+1] after tokens [B, L] with classifier-free guidance."""
        cond = self.logits(tokens, text_emb)[:, -1]
        if guidance == 1.0:
            return cond
        b = tokens.shape[0]
        uncond = self.logits(tokens, text_emb, torch.ones(b, dtype=torch.bool, device=tokens.device))[:, -1]
        return uncond + guidance * (cond - uncond)

    @torch.no_grad()
    def generate(
        self,
        text_emb: torch.Tensor,
        max_tokens: int | None = None,
        guidance: float = 1.0,
        top_k: int | None = None,
        temperature: float = 1.0,
        generator: torch.Generator | Sequence[torch.Generator] | None = None,
        min_tokens: int = 1,
        context: int | None = None,
    ) -> list[torch.Tensor]:
        """Sample one token sequence per row of text_emb [B, text_dim] (END excluded, ≥ min_tokens).

        Each step samples from softmax(guided logits / temperature), restricted to the ``top_k``
        most likely entries (``top_k=1`` is greedy). END is masked until ``min_tokens`` tokens
        exist; a sequence stops at END or at ``max_tokens``. The same ``generator`` state gives
        the same sequences. ``context`` (tokens): each step sees only the latest ``context - 1``
        tokens, so a model trained on windows of ``context`` tokens cropped anywhere in a motion
        continues past its window with positions it was trained on (None = the whole sequence).
        ``generator`` may be one generator per row: row ``i`` then draws only from ``generator[i]``, so
        a batch gives each row the sequence a one-row call with that generator gives (batched
        evaluation without changing which motions the seeds draw).
        """
        c = self.config
        max_tokens = c.max_tokens if max_tokens is None else int(max_tokens)
        if not 1 <= max_tokens <= c.max_tokens:
            raise ValueError(
                f"max_tokens must be in [1, {c.max_tokens}] (generator.max_tokens), got {max_tokens}"
            )
        if not 1 <= min_tokens <= max_tokens:
            raise ValueError(f"min_tokens must be in [1, max_tokens={max_tokens}], got {min_tokens}")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature} (use top_k=1 for greedy decoding)")
        if context is not None and context < 2:
            raise ValueError(f"context must be >= 2 tokens or None, got {context}")
        if top_k is not None and not 1 <= top_k <= c.codebook_size + 1:
            raise ValueError(f"top_k must be in [1, {c.codebook_size + 1}] or None, got {top_k}")
        device = self.head.weight.device
        text_emb = self._check_text(text_emb.to(device))
        b = text_emb.shape[0]
        rows_gen = None if generator is None or isinstance(generator, torch.Generator) else list(generator)
        if rows_gen is not None and len(rows_gen) != b:
            raise ValueError(f"got {len(rows_gen)} generators for {b} rows: give one per row or one in all")
        was_training = self.training
        self.eval()
        try:
            tokens = torch.zeros(b, 0, dtype=torch.long, device=device)
            done = torch.zeros(b, dtype=torch.bool, device=device)
            lengths = torch.full((b,), max_tokens, dtype=torch.long, device=device)
            for step in range(max_tokens):
                seen = tokens if context is None else tokens[:, max(0, tokens.shape[1] - context + 1) :]
                logits = self.guided_logits(seen, text_emb, guidance).float() / temperature
                if step < min_tokens:
                    logits[:, c.end_id] = float("-inf")
                if top_k is not None and top_k < logits.shape[1]:
                    kth = torch.topk(logits, top_k, dim=1).values[:, -1:]
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                probs = torch.softmax(logits, dim=1)
                if rows_gen is not None:
                    rows = probs.cpu()
                    draws = [
                        torch.multinomial(rows[i : i + 1], 1, generator=g) for i, g in enumerate(rows_gen)
                    ]
                    nxt = torch.cat(draws).to(device)[:, 0]
                else:
                    nxt = torch.multinomial(probs.cpu(), 1, generator=generator).to(device)[:, 0]
                ended = (nxt == c.end_id) & ~done
                lengths[ended] = step
                done |= ended
                tokens = torch.cat([tokens, torch.where(done, c.pad_id, nxt)[:, None]], 1)
                if bool(done.all()):
                    break
        finally:
            self.train(was_training)
        return [tokens[i, : int(lengths[i])].cpu() for i in range(b)]
