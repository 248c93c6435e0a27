"""A contrastive text/motion evaluator in the style of Guo et al. (2022), trained on our own data.

Text-to-motion metrics (FID, R-precision, ...) are computed on embeddings of a jointly trained
text encoder and motion encoder. The published HumanML3D evaluator cannot be downloaded here, so
this one is trained on the pipeline's own text–motion set; its numbers are "our evaluator on our
data" and are not comparable with published tables.

* Motion encoder: raw HumanML3D features [B,T,263] are normalised with stored statistics, lifted
  by a linear layer, refined by residual temporal convolutions (padding masked out), summarised
  by a bidirectional GRU over the valid frames only, and projected to ``embed_dim``.
* Text encoder: an MLP over a fixed sentence embedding supplied by the caller (MiniLM by default).
* Both embeddings are L2-normalised, so Euclidean distances used by the metrics are monotone in
  cosine similarity.
* Loss: symmetric InfoNCE with temperature. Optional hard-negative weighting (Robinson et al.
  2021: negatives reweighted by exp(β·similarity), β = ``hard_negative_beta``; 0 = plain
  InfoNCE) and removal of false negatives (near-duplicate captions of one action are common in a
  small mocap-derived set). When the batch carries ``labels`` (what each motion's texts say, e.g.
  action + speed/turn variant), pairs with equal labels are not negatives of each other. Without
  labels, pairs whose sentence embeddings have cosine above ``false_negative_threshold`` are
  dropped instead — a blunt rule: "turning to the left" and "turning to the right" have cosine
  0.98 under MiniLM, above paraphrases of one caption (0.97), so labels are preferred.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence
from tqdm.auto import tqdm

from components.io.atomic import atomic_dir
from components.io.pretrained import ArtifactFormat, read_config, write_config
from components.motion.config import FEATURE_DIM, EvaluatorConfig
from components.motion.humanml3d import FeatureStats

WEIGHTS_FILE = "evaluator.safetensors"
# v1 (before the one save/load convention): the bare EvaluatorConfig in evaluator_config.json
FORMAT = ArtifactFormat(
    "mosa-motion-evaluator",
    2,
    "MotionTextEvaluator.save_pretrained",
    legacy_file="evaluator_config.json",
    unversioned=lambda config: {"config": config},
)
BATCH_KEYS = ("features", "lengths", "text_emb")  # optional: "labels"


class _ConvBlock(nn.Module):
    def __init__(self, width: int, kernel_size: int, dropout: float):
        super().__init__()
        self.conv = nn.Conv1d(width, width, kernel_size, padding=kernel_size // 2)
        self.norm = nn.LayerNorm(width)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x [B,T,H], mask [B,T,1]: residual conv whose receptive field never sees padding."""
        y = self.conv((x * mask).transpose(1, 2)).transpose(1, 2)
        return (x + self.drop(F.leaky_relu(self.norm(y), 0.2))) * mask


class MotionTextEvaluator(nn.Module):
    """Joint text/motion embedding model; see the module docstring."""

    def __init__(self, config: EvaluatorConfig | None = None, stats: FeatureStats | None = None):
        super().__init__()
        self.config = cfg = config if config is not None else EvaluatorConfig()
        self.register_buffer("feature_mean", torch.zeros(cfg.feature_dim))
        self.register_buffer("feature_std", torch.ones(cfg.feature_dim))
        if stats is not None:
            self.set_feature_stats(stats)
        h = cfg.hidden_dim
        self.motion_in = nn.Linear(cfg.feature_dim, h)
        self.convs = nn.ModuleList(
            _ConvBlock(h, cfg.kernel_size, cfg.dropout) for _ in range(cfg.conv_layers)
        )
        self.gru = nn.GRU(h, h, num_layers=cfg.gru_layers, batch_first=True, bidirectional=True)
        self.motion_out = nn.Sequential(nn.Linear(2 * h, h), nn.LeakyReLU(0.2), nn.Linear(h, cfg.embed_dim))
        layers: list[nn.Module] = []
        width = cfg.text_dim
        for _ in range(cfg.text_layers):
            layers += [nn.Linear(width, h), nn.LeakyReLU(0.2), nn.Dropout(cfg.dropout)]
            width = h
        layers.append(nn.Linear(width, cfg.embed_dim))
        self.text_mlp = nn.Sequential(*layers)

    def set_feature_stats(self, stats: FeatureStats) -> None:
        """Use ``stats`` to normalise raw features inside ``embed_motion`` (saved with the weights)."""
        if self.config.feature_dim != FEATURE_DIM:
            raise ValueError(
                f"FeatureStats are {FEATURE_DIM}-d but this evaluator has "
                f"feature_dim={self.config.feature_dim}; build it with feature_dim={FEATURE_DIM}"
            )
        self.feature_mean.copy_(torch.as_tensor(stats.mean, dtype=torch.float32))
        self.feature_std.copy_(torch.as_tensor(stats.std, dtype=torch.float32))

    # --- encoders ------------------------------------------------------------------------------------
    def _check_motion(self, features: torch.Tensor, lengths: Any) -> tuple[torch.Tensor, torch.Tensor]:
        features = torch.as_tensor(features, dtype=torch.float32, device=self.feature_mean.device)
        if features.ndim != 3 or features.shape[-1] != self.config.feature_dim:
            raise ValueError(
                f"features must be [B, T, {self.config.feature_dim}] (raw, unnormalised), "
                f"got {tuple(features.shape)}"
            )
        lengths = torch.as_tensor(lengths, dtype=torch.long).reshape(-1).cpu()
        if lengths.shape[0] != features.shape[0]:
            raise ValueError(f"lengths has {lengths.shape[0]} entries for a batch of {features.shape[0]}")
        if len(lengths) and (lengths.min() < 1 or lengths.max() > features.shape[1]):
            raise ValueError(
                f"lengths must be in [1, T={features.shape[1]}], got min {int(lengths.min())} "
                f"max {int(lengths.max())}"
            )
        if not torch.isfinite(features).all():
            raise ValueError("features contain NaN or inf")
        return features, lengths

    def embed_motion(self, features: torch.Tensor, lengths: torch.Tensor | Sequence[int]) -> torch.Tensor:
        """Unit-norm embeddings [B, embed_dim] of raw features [B,T,F] whose first lengths[b] frames count."""
        features, lengths = self._check_motion(features, lengths)
        t = features.shape[1]
        mask = (torch.arange(t)[None, :] < lengths[:, None]).to(features.device)[..., None].float()
        x = (features - self.feature_mean) / self.feature_std
        x = F.leaky_relu(self.motion_in(x * mask), 0.2) * mask
        for block in self.convs:
            x = block(x, mask)
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        _, h_n = self.gru(packed)  # [layers*2, B, H]
        summary = torch.cat([h_n[-2], h_n[-1]], dim=-1)
        return F.normalize(self.motion_out(summary), dim=-1)

    def embed_text(self, text_emb: torch.Tensor) -> torch.Tensor:
        """Unit-norm embeddings [B, embed_dim] of sentence embeddings [B, text_dim]."""
        text_emb = torch.as_tensor(text_emb, dtype=torch.float32, device=self.feature_mean.device)
        if text_emb.ndim != 2 or text_emb.shape[1] != self.config.text_dim:
            raise ValueError(f"text_emb must be [B, {self.config.text_dim}], got {tuple(text_emb.shape)}")
        if not torch.isfinite(text_emb).all():
            raise ValueError("text_emb contains NaN or inf")
        return F.normalize(self.text_mlp(text_emb), dim=-1)

    # --- training objective ------------------------------------------------------------------------
    def loss(
        self,
        features: torch.Tensor,
        lengths: torch.Tensor | Sequence[int],
        text_emb: torch.Tensor,
        labels: Sequence[Hashable | None] | None = None,
    ) -> torch.Tensor:
        """Symmetric InfoNCE between the batch's motions and texts (row b of each is a pair).

        ``labels`` (one per pair, or None): pairs with equal non-None labels are false negatives
        and are left out; with no labels at all the cosine ``false_negative_threshold`` applies."""
        text_emb = torch.as_tensor(text_emb, dtype=torch.float32, device=self.feature_mean.device)
        zm = self.embed_motion(features, lengths)
        zt = self.embed_text(text_emb)
        b = zm.shape[0]
        if b < 2:
            raise ValueError(f"a contrastive loss needs a batch of >= 2 pairs, got {b}")
        if zt.shape[0] != b:
            raise ValueError(f"text_emb has {zt.shape[0]} rows for {b} motions")
        sim = zt @ zm.T  # [B texts, B motions], cosine
        negatives = ~torch.eye(b, dtype=torch.bool, device=sim.device)
        thr = self.config.false_negative_threshold
        if labels is not None and any(x is not None for x in labels):
            if len(labels) != b:
                raise ValueError(f"labels has {len(labels)} entries for {b} pairs")
            codes = {x: i for i, x in enumerate(dict.fromkeys(labels)) if x is not None}
            lab = torch.tensor([codes[x] if x is not None else -1 - i for i, x in enumerate(labels)])
            negatives &= (lab[:, None] != lab[None, :]).to(sim.device)
        elif thr is not None:
            raw = F.normalize(text_emb, dim=-1)
            negatives &= (raw @ raw.T) <= thr
        return 0.5 * (self._info_nce(sim, negatives) + self._info_nce(sim.T, negatives.T))

    def _info_nce(self, sim: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
        """−log softmax of the diagonal against its row's negatives (optionally hardness-weighted)."""
        logits = sim / self.config.temperature
        beta = self.config.hard_negative_beta
        if beta > 0:
            # log of Robinson et al.'s weights, N_neg · softmax(β·sim) over the row's negatives
            scores = (beta * sim.detach()).masked_fill(~negatives, -math.inf)
            n_neg = negatives.sum(dim=1, keepdim=True).clamp(min=1)
            log_w = torch.log(n_neg.float()) + scores - torch.logsumexp(scores, dim=1, keepdim=True)
            logits = logits + torch.where(negatives, log_w, torch.zeros_like(log_w))
        keep = negatives | torch.eye(len(sim), dtype=torch.bool, device=sim.device)
        logits = logits.masked_fill(~keep, -math.inf)
        return F.cross_entropy(logits, torch.arange(len(sim), device=sim.device))

    # --- persistence -------------------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path) -> Path:
        """``config.json`` (format, version, the config) and the weights (safetensors), atomically."""
        with atomic_dir(directory) as tmp:
            write_config(tmp, FORMAT, {"config": self.config.model_dump(mode="json")})
            state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
            save_file(state, str(tmp / WEIGHTS_FILE), metadata={"format": FORMAT.name})
        return Path(directory)

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> MotionTextEvaluator:
        """Rebuild an evaluator written by ``save_pretrained`` (or a v1 folder), in eval mode."""
        directory = Path(directory)
        config = read_config(directory, FORMAT, hint="run the pretrain_motion stage")
        weights = directory / WEIGHTS_FILE
        if not weights.is_file():
            raise FileNotFoundError(f"{weights} is missing: {directory} is not written by {FORMAT.writer}")
        model = cls(EvaluatorConfig.model_validate(config["config"]))
        model.load_state_dict(load_file(str(weights)), strict=True)
        return model.eval()


def pad_motions(features: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-pad variable-length feature arrays [T_i, F] into ([B, max T, F], lengths [B])."""
    if not features:
        raise ValueError("pad_motions needs at least one feature array")
    arrays = [np.asarray(f, dtype=np.float32) for f in features]
    for i, a in enumerate(arrays):
        if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] != arrays[0].shape[1]:
            raise ValueError(f"feature array {i} must be [T>=1, {arrays[0].shape[1]}], got {a.shape}")
    lengths = torch.tensor([len(a) for a in arrays], dtype=torch.long)
    out = torch.zeros(len(arrays), int(lengths.max()), arrays[0].shape[1])
    for i, a in enumerate(arrays):
        out[i, : len(a)] = torch.from_numpy(a)
    return out, lengths


def train_evaluator(
    model: MotionTextEvaluator,
    batches: Callable[[int], dict[str, Any]],
    steps: int,
    lr: float = 1e-3,
    seed: int = 0,
    progress: bool = False,
) -> list[float]:
    """Train ``model`` with Adam for ``steps`` steps; ``batches(step)`` returns a dict with
    ``features`` [B,T,F] (raw), ``lengths`` [B] and ``text_emb`` [B,text_dim], optionally ``labels``
    (see ``MotionTextEvaluator.loss``). Returns the losses.

    ``seed`` fixes the dropout/initial-order randomness inside a forked torch RNG, so the global
    RNG is untouched. The model is left in eval mode.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr}")
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    losses: list[float] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model.train()
        for step in tqdm(range(steps), desc="train evaluator", disable=not progress):
            batch = batches(step)
            missing = [k for k in BATCH_KEYS if k not in batch]
            if missing:
                raise KeyError(f"batches({step}) lacks {missing}; it must return keys {list(BATCH_KEYS)}")
            loss = model.loss(batch["features"], batch["lengths"], batch["text_emb"], batch.get("labels"))
            if not torch.isfinite(loss):
                raise FloatingPointError(f"evaluator loss is {loss.item()} at step {step}; lower lr")
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimiser.step()
            losses.append(float(loss.detach()))
    model.eval()
    return losses
