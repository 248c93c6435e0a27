"""Motion VQ-VAE: 1-D conv encoder → EMA vector quantiser → conv decoder over 263-d features.

The structure transformer generates motion as discrete tokens; this module turns normalised
HumanML3D features [B, T, 263] into tokens [B, T / 2**down_t] and back. Design (after the
T2M-GPT family, written here from the published description):

* encoder: conv in, then ``down_t`` levels of (stride-2 conv, ``depth`` residual blocks with
  dilations ``dilation_growth**k``), conv out to ``code_dim``;
* quantiser: nearest code by Euclidean distance, straight-through gradient to the encoder, a
  commitment loss ``beta·‖z − sg(q)‖²``; the codebook gets no gradient — it is the exponential
  moving average (``ema_decay``) of the encoder outputs assigned to each code, with Laplace
  smoothing of the counts. A code unused for ``dead_code_threshold`` consecutive training
  steps is re-initialised to a random encoder output of the current batch. The first training
  batch initialises the whole codebook from its encoder outputs;
* decoder: the mirror image with nearest-neighbour upsampling;
* loss: smooth-L1 reconstruction + ``velocity_weight`` × smooth-L1 of the frame-to-frame
  differences + ``beta`` × commitment, all averaged over valid frames only (``lengths``).

Under torch.distributed the codebook statistics are summed over ranks and the codebook buffers
broadcast from rank 0 after every update, so all ranks keep the same codebook.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from components.motion.config import VQVAEConfig


class _ResBlock(nn.Module):
    def __init__(self, width: int, dilation: int):
        super().__init__()
        self.conv1 = nn.Conv1d(width, width, 3, padding=dilation, dilation=dilation)
        self.conv2 = nn.Conv1d(width, width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


def _res_stack(width: int, depth: int, growth: int, reverse: bool) -> list[nn.Module]:
    dilations = [growth**k for k in range(depth)]
    if reverse:
        dilations = dilations[::-1]
    return [_ResBlock(width, d) for d in dilations]


def _encoder(cfg: VQVAEConfig) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv1d(cfg.feature_dim, cfg.width, 3, padding=1), nn.ReLU()]
    for _ in range(cfg.down_t):
        layers.append(nn.Conv1d(cfg.width, cfg.width, 4, stride=2, padding=1))
        layers += _res_stack(cfg.width, cfg.depth, cfg.dilation_growth, reverse=False)
    layers.append(nn.Conv1d(cfg.width, cfg.code_dim, 3, padding=1))
    return nn.Sequential(*layers)


def _decoder(cfg: VQVAEConfig) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv1d(cfg.code_dim, cfg.width, 3, padding=1), nn.ReLU()]
    for _ in range(cfg.down_t):
        layers += _res_stack(cfg.width, cfg.depth, cfg.dilation_growth, reverse=True)
        layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv1d(cfg.width, cfg.width, 3, padding=1)]
    layers += [
        nn.Conv1d(cfg.width, cfg.width, 3, padding=1),
        nn.ReLU(),
        nn.Conv1d(cfg.width, cfg.feature_dim, 3, padding=1),
    ]
    return nn.Sequential(*layers)


def _dist_world() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class EMAQuantizer(nn.Module):
    """Nearest-code quantiser whose codebook follows an EMA of its assigned encoder outputs."""

    def __init__(
        self,
        codebook_size: int,
        code_dim: int,
        decay: float,
        dead_code_threshold: int,
        eps: float,
        unit_codes: bool = False,
    ):
        super().__init__()
        self.codebook_size, self.code_dim, self.unit_codes = codebook_size, code_dim, unit_codes
        self.decay, self.dead_code_threshold, self.eps = decay, dead_code_threshold, eps
        self.register_buffer("codebook", torch.randn(codebook_size, code_dim) * 0.1)
        self.register_buffer("ema_count", torch.ones(codebook_size))
        self.register_buffer("ema_sum", self.codebook.clone())
        self.register_buffer("unused_steps", torch.zeros(codebook_size, dtype=torch.long))
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))
        self.last_reset = 0  # codes re-initialised by the latest update (for logs and tests)

    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """Code index of each row of z [N, code_dim]."""
        cb = self.codebook.float()
        z = z.float()
        d = z.pow(2).sum(1, keepdim=True) - 2 * z @ cb.T + cb.pow(2).sum(1)[None]
        return d.argmin(1)

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.codebook_size):
            raise ValueError(
                f"codes must lie in [0, {self.codebook_size}), "
                f"got range [{int(codes.min())}, {int(codes.max())}]"
            )
        return F.embedding(codes, self.codebook)

    def _sample_rows(self, z: torch.Tensor, n: int) -> torch.Tensor:
        idx = torch.randint(0, z.shape[0], (n,), device=z.device)
        return z[idx]

    @torch.no_grad()
    def init_from(self, z: torch.Tensor) -> None:
        """Set every code to a random row of z [N, D] (the first training batch's encoder outputs)."""
        import torch.distributed as dist

        self.codebook.copy_(self._sample_rows(z, self.codebook_size))
        if _dist_world() > 1:
            dist.broadcast(self.codebook, 0)
        self.ema_sum.copy_(self.codebook)
        self.ema_count.fill_(1.0)
        self.initialized.fill_(True)

    @torch.no_grad()
    def update(self, z: torch.Tensor, codes: torch.Tensor) -> None:
        """One EMA step from valid encoder outputs z [N, D] and their codes [N]; then dead-code reset."""
        import torch.distributed as dist

        world = _dist_world()
        z = z.float()
        onehot = F.one_hot(codes, self.codebook_size).float()  # [N, K]
        count = onehot.sum(0)
        total = onehot.T @ z
        if world > 1:
            dist.all_reduce(count)
            dist.all_reduce(total)
        self.ema_count.mul_(self.decay).add_(count.to(self.ema_count.dtype), alpha=1 - self.decay)
        self.ema_sum.mul_(self.decay).add_(total.to(self.ema_sum.dtype), alpha=1 - self.decay)
        ema_count = self.ema_count.float()
        n = ema_count.sum()
        smoothed = (ema_count + self.eps) / (n + self.codebook_size * self.eps) * n
        codebook = self.ema_sum.float() / smoothed[:, None]
        self.codebook.copy_(F.normalize(codebook, dim=-1) if self.unit_codes else codebook)

        self.unused_steps.add_(1).masked_fill_(count > 0, 0)
        self.last_reset = 0
        if self.dead_code_threshold > 0:
            dead = self.unused_steps >= self.dead_code_threshold
            n_dead = int(dead.sum())
            if n_dead and z.shape[0]:
                fresh = self._sample_rows(z, n_dead)
                self.codebook[dead] = fresh
                self.ema_sum[dead] = fresh
                self.ema_count[dead] = 1.0
                self.unused_steps[dead] = 0
                self.last_reset = n_dead
        if world > 1:  # resets drew from each rank's own batch: rank 0's choice wins everywhere
            for buf in (self.codebook, self.ema_sum, self.ema_count, self.unused_steps):
                dist.broadcast(buf, 0)

    def forward(self, z: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Quantise z [B, T', D] (valid where mask [B, T'] is True); EMA update in training mode."""
        b, t, d = z.shape
        flat = z.reshape(-1, d).float()
        valid = mask.reshape(-1)
        if self.training and not bool(self.initialized):
            self.init_from(flat[valid].detach())
        codes = self.nearest(flat.detach())
        q = self.lookup(codes).to(z.dtype).reshape(b, t, d)
        if self.training:  # after the lookup: this batch is quantised with the codebook it was assigned to
            self.update(flat[valid].detach(), codes[valid])
        commit = _masked_mean((z - q.detach()).pow(2).mean(-1), mask)
        with torch.no_grad():
            usage = F.one_hot(codes[valid], self.codebook_size).float().sum(0)
            p = usage / usage.sum().clamp_min(1.0)
            perplexity = torch.exp(-(p * torch.log(p.clamp_min(1e-10))).sum())
        q_st = z + (q - z).detach()
        return {
            "quantized": q_st,
            "codes": codes.reshape(b, t),
            "commit_loss": commit,
            "perplexity": perplexity,
        }


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of values [B, T] over mask [B, T] (0 if the mask is empty)."""
    m = mask.to(values.dtype)
    return (values * m).sum() / m.sum().clamp_min(1.0)


class MotionVQVAE(nn.Module):
    """Normalised features [B, T, 263] ↔ tokens [B, T / frames_per_token]; see the module docstring."""

    def __init__(self, config: VQVAEConfig | None = None):
        super().__init__()
        self.config = config or VQVAEConfig()
        c = self.config
        self.encoder = _encoder(c)
        self.quantizer = EMAQuantizer(
            c.codebook_size, c.code_dim, c.ema_decay, c.dead_code_threshold, c.laplace_eps, c.l2_codes
        )
        self.decoder = _decoder(c)

    @property
    def frames_per_token(self) -> int:
        return self.config.frames_per_token

    def _check(self, x: torch.Tensor) -> None:
        if x.ndim != 3 or x.shape[-1] != self.config.feature_dim:
            raise ValueError(
                f"motion features must be [B, T, {self.config.feature_dim}], got {tuple(x.shape)}"
            )
        f = self.frames_per_token
        if x.shape[1] == 0 or x.shape[1] % f:
            raise ValueError(
                f"the number of frames T={x.shape[1]} must be a positive multiple of {f} "
                f"(2**down_t); crop or pad the window to a multiple of {f}"
            )

    def _frame_mask(self, x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        b, t = x.shape[:2]
        if lengths is None:
            return torch.ones(b, t, dtype=torch.bool, device=x.device)
        lengths = torch.as_tensor(lengths, device=x.device).long()
        if lengths.shape != (b,) or int(lengths.min()) < 1 or int(lengths.max()) > t:
            raise ValueError(f"lengths must be [B] = [{b}] values in [1, {t}], got {lengths.tolist()}")
        return torch.arange(t, device=x.device)[None] < lengths[:, None]

    def _encode_latent(self, x: torch.Tensor) -> torch.Tensor:
        z = self.encoder(x.transpose(1, 2)).transpose(1, 2)  # [B, T', code_dim]
        return F.normalize(z, dim=-1) if self.config.l2_codes else z

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Reconstruct x; losses are averaged over frames < lengths (all frames when None)."""
        self._check(x)
        frame_mask = self._frame_mask(x, lengths)
        f = self.frames_per_token
        token_mask = frame_mask[:, ::f]  # a token is valid if its first frame is
        q = self.quantizer(self._encode_latent(x), token_mask)
        recon = self.decoder(q["quantized"].transpose(1, 2)).transpose(1, 2)
        recon_loss = _masked_mean(F.smooth_l1_loss(recon, x, reduction="none").mean(-1), frame_mask)
        pair_mask = frame_mask[:, 1:] & frame_mask[:, :-1]
        vel = F.smooth_l1_loss(recon.diff(dim=1), x.diff(dim=1), reduction="none").mean(-1)
        velocity_loss = _masked_mean(vel, pair_mask)
        c = self.config
        loss = recon_loss + c.velocity_weight * velocity_loss + c.beta * q["commit_loss"]
        return {
            "recon": recon,
            "loss": loss,
            "recon_loss": recon_loss,
            "commit_loss": q["commit_loss"],
            "velocity_loss": velocity_loss,
            "perplexity": q["perplexity"],
            "codes": q["codes"],
            "reset_codes": torch.tensor(self.quantizer.last_reset if self.training else 0),
        }

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Token ids [B, T / frames_per_token] of normalised features x [B, T, 263] (no codebook update)."""
        self._check(x)
        z = self._encode_latent(x)
        return self.quantizer.nearest(z.reshape(-1, z.shape[-1]).float()).reshape(z.shape[:2])

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Normalised features [B, L·frames_per_token, 263] from token ids [B, L]."""
        codes = torch.as_tensor(codes)
        if codes.ndim == 1:
            codes = codes[None]
        if codes.ndim != 2 or codes.shape[1] == 0 or codes.dtype not in (torch.long, torch.int, torch.int16):
            raise ValueError(
                f"codes must be a non-empty integer tensor [B, L], got {tuple(codes.shape)} {codes.dtype}"
            )
        q = self.quantizer.lookup(codes.long().to(self.quantizer.codebook.device))
        return self.decoder(q.transpose(1, 2)).transpose(1, 2)
