"""Train the tiny video VAE of the CPU profile on the clip set, through the DeepSpeed Trainer.

Objective per clip: ``L = rec(x̂, x) + β · KL(q(z|x) ‖ N(0, I))`` with ``x̂ = D(μ + σ ε)`` (the
reparameterised posterior sample of the diffusers encoder's ``latent_dist``), ``rec`` the mean
absolute (``l1``) or squared (``l2``) error over pixels in [-1, 1], and ``KL`` averaged over latent
elements (so ``β`` does not depend on the clip size). With ``crop=None`` clips keep all their frames
(the VAE is causal with ×4 temporal compression and the clip set already has ``4N+1``/``8N+1``
frames); with ``crop=(t, h, w)`` every batch item is a fresh random ``t×h×w`` window of its clip. The
VAE is fully convolutional, so small windows teach the same filters; on CPU they are also cheaper per
pixel than whole clips (measured: 9×32×48 windows ~2.6× the pixel throughput of 17×48×72), and a
new window each step shows far more of the data than a fixed set of crops. Batches are a function of
the step (a per-epoch permutation of the clips, the window, a seeded horizontal flip, the ε noise),
so a resumed run sees the same data.

After training, ``calibrate_latents`` sets the VAE's own latent normalisation from the training
clips' posterior means so the DiT sees roughly unit-variance latents: CogVideoX's single
``scaling_factor = 1/std`` (the convention of latent diffusion VAEs), Wan's per-channel
``latents_mean``/``latents_std``. ``spec.vae_encode``/``vae_decode`` apply it and ``save_pretrained``
stores it.

Held-out quality: ``evaluate_vae`` reports the PSNR (peak 255, frames rounded to uint8) of the
posterior-mean reconstructions next to the "mean frame" baseline, the per-pixel mean of the training
frames, which ignores its input; a VAE that does not beat it has learned nothing clip-specific.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from components.base import History, LogFn, fit_phase, unit_video
from components.config.sections.common import TrainPhaseParams
from components.data.clipset import ClipSample
from components.dit.spec import BackboneSpec

Recon = Literal["l1", "l2"]


def latent_channels(vae: nn.Module) -> int:
    """Latent channels of a CogVideoX (``latent_channels``) or Wan (``z_dim``) VAE."""
    c = vae.config.get("latent_channels") or vae.config.get("z_dim")
    if c is None:
        raise TypeError(f"{type(vae).__name__} declares no latent width (latent_channels / z_dim)")
    return int(c)


def check_clips(
    samples: Sequence[ClipSample], spec: BackboneSpec, who: str, spatial: int | None = None
) -> tuple[int, int, int]:
    """All clips share one ``(T, H, W)`` that the backbone's VAE (spatial factor ``spatial``) accepts;
    returns it."""
    if not samples:
        raise ValueError(f"{who}: no clips to train on; check the ingest stage's output (dvc repro ingest)")
    shapes = {s.video.shape for s in samples}
    if len(shapes) != 1:
        raise ValueError(
            f"{who}: clips must share one shape [T,H,W,3] to batch, got {sorted(shapes)}; "
            "ingest with one clip size (ingest.clip.frames/height/width)"
        )
    t, h, w, _ = next(iter(shapes))
    spec.latent_shape(t, h, w, patch_size=1, spatial=spatial)
    return t, h, w


def epoch_index(step: int, k: int, batch: int, n: int, seed: int) -> int:
    """Item ``k`` of the batch of ``step``: clips in a fresh seeded permutation every epoch."""
    i = step * batch + k
    return int(np.random.default_rng([seed, i // n]).permutation(n)[i % n])


class _VAEObjective(nn.Module):
    """Encoder → reparameterised sample → decoder, as one module so the engine runs (and gathers) it."""

    def __init__(self, vae: nn.Module) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, video: Tensor, noise: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        dist = self.vae.encode(video).latent_dist
        z = dist.mean + dist.std * noise
        return self.vae.decode(z).sample, dist.mean, dist.logvar


def vae_loss(
    recon: Tensor, video: Tensor, mean: Tensor, logvar: Tensor, beta: float, kind: Recon = "l1"
) -> tuple[Tensor, dict[str, float]]:
    """``rec + β·KL`` (see the module docstring) and its parts for logging."""
    if recon.shape != video.shape:
        raise ValueError(f"reconstruction {tuple(recon.shape)} does not match the video {tuple(video.shape)}")
    diff = recon.float() - video.float()
    rec = diff.abs().mean() if kind == "l1" else diff.square().mean()
    kl = 0.5 * (mean.float().square() + logvar.float().exp() - 1.0 - logvar.float()).mean()
    mse = float(diff.detach().square().mean())
    psnr = 10 * np.log10(4.0 / max(mse, 1e-12))  # peak-to-peak 2 in [-1, 1]
    return rec + beta * kl, {"recon": float(rec.detach()), "kl": float(kl.detach()), "psnr": psnr}


def train_vae(
    samples: Sequence[ClipSample],
    spec: BackboneSpec,
    vae: nn.Module,
    phase: TrainPhaseParams,
    *,
    beta: float = 1e-4,
    recon: Recon = "l1",
    flip: bool = True,
    crop: tuple[int, int, int] | None = None,
    seed: int = 0,
    calibrate: bool = True,
    ckpt_dir: Path | str | None = None,
    log_fn: LogFn | None = None,
    progress: bool = True,
) -> tuple[nn.Module, History]:
    """Train ``vae`` (e.g. ``spec.build_tiny(tiny).vae``) on the clips; returns it frozen and the history.

    ``beta`` weighs the KL term, ``recon`` picks L1 or L2, ``flip`` mirrors half the clips, ``crop``
    trains on random ``(frames, height, width)`` windows; with ``calibrate`` the latent normalisation
    is fitted afterwards on the whole clips (``calibrate_latents``).
    """
    if beta < 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    if recon not in ("l1", "l2"):
        raise ValueError(f"recon must be 'l1' or 'l2', got {recon!r}")
    spatial = spec.vae_spatial_compression(vae)
    t, h, w = check_clips(samples, spec, "train_vae", spatial)
    if crop is not None:
        ct, ch, cw = crop
        if ct > t or ch > h or cw > w:
            raise ValueError(f"train_vae: crop {tuple(crop)} is larger than the clips ({t}, {h}, {w})")
        try:
            spec.latent_shape(ct, ch, cw, patch_size=1, spatial=spatial)
        except ValueError as exc:
            raise ValueError(f"train_vae: crop {tuple(crop)} does not fit the VAE: {exc}") from None
        t, h, w = ct, ch, cw
    f, c, lh, lw = spec.latent_shape(t, h, w, latent_channels(vae), patch_size=1, spatial=spatial)
    videos = [unit_video(s.video, s.clip_id) for s in samples]
    n, bsz = len(videos), phase.batch_size

    def window(v: Tensor, rng: np.random.Generator) -> Tensor:
        if crop is None:
            return v
        sizes = zip(v.shape[1:], (t, h, w), strict=True)
        t0, y0, x0 = (int(rng.integers(0, full - size + 1)) for full, size in sizes)
        return v[:, t0 : t0 + t, y0 : y0 + h, x0 : x0 + w]

    def batches(step: int) -> dict[str, Tensor]:
        rng = np.random.default_rng([seed, step, 1])
        items = []
        for k in range(bsz):
            v = window(videos[epoch_index(step, k, bsz, n, seed)], rng)
            items.append(v.flip(-1) if flip and rng.random() < 0.5 else v)
        g = torch.Generator().manual_seed(int(rng.integers(2**62)))
        return {"video": torch.stack(items), "noise": torch.randn(bsz, c, f, lh, lw, generator=g)}

    def loss_fn(engine: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        dtype = next(engine.module.parameters()).dtype
        rec, mean, logvar = engine(batch["video"].to(dtype), batch["noise"].to(dtype))
        return vae_loss(rec, batch["video"], mean, logvar, beta, recon)

    vae.train().requires_grad_(True)
    trained, history = fit_phase(
        _VAEObjective(vae), phase, seed, loss_fn, batches, ckpt_dir, log_fn, progress
    )
    vae = trained.vae
    if calibrate:
        calibrate_latents(vae, videos)
    return vae, history


@torch.no_grad()
def calibrate_latents(vae: nn.Module, videos: Sequence[Tensor]) -> dict[str, float | list[float]]:
    """Fit the VAE's latent normalisation to the posterior means of ``videos`` (each ``[3,T,H,W]``).

    Returns what was set (also written into ``vae.config``, which ``save_pretrained`` stores).
    """
    if not videos:
        raise ValueError("calibrate_latents needs at least one video")
    p = next(vae.parameters())
    zs = [vae.encode(v.unsqueeze(0).to(p)).latent_dist.mode().float() for v in videos]
    z = torch.cat([x.transpose(0, 1).flatten(1) for x in zs], dim=1)  # [C, N]
    if vae.config.get("latents_mean") is not None and vae.config.get("latents_std") is not None:
        mean = z.mean(dim=1).tolist()
        std = z.std(dim=1).clamp_min(1e-6).tolist()
        vae.register_to_config(latents_mean=mean, latents_std=std)
        return {"latents_mean": mean, "latents_std": std}
    if vae.config.get("scaling_factor") is not None:
        scale = 1.0 / max(float(z.std()), 1e-6)
        vae.register_to_config(scaling_factor=scale)
        return {"scaling_factor": scale}
    raise TypeError(f"{type(vae).__name__} has neither scaling_factor nor latents_mean/std to calibrate")


def mean_frame(samples: Sequence[ClipSample]) -> np.ndarray:
    """Per-pixel mean float64 ``[H,W,3]`` of all frames of ``samples`` (the baseline reconstruction)."""
    if not samples:
        raise ValueError("mean_frame needs at least one clip")
    return np.mean([s.video.astype(np.float64).mean(axis=0) for s in samples], axis=0)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8-range arrays (peak 255); ``inf`` when they are equal."""
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


@torch.no_grad()
def reconstruct(spec: BackboneSpec, vae: nn.Module, frames: np.ndarray) -> np.ndarray:
    """uint8 ``[T,H,W,3]`` → the VAE's posterior-mean reconstruction, uint8 ``[T,H,W,3]``."""
    video = unit_video(frames).unsqueeze(0)
    out = spec.vae_decode(vae, spec.vae_encode(vae, video))[0].float().clamp(-1, 1)
    return ((out + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 3, 0).cpu().numpy()


def evaluate_vae(
    spec: BackboneSpec, vae: nn.Module, samples: Sequence[ClipSample], baseline: np.ndarray
) -> dict[str, float | int]:
    """Mean PSNR over ``samples`` of the reconstructions and of the ``baseline`` frame (``mean_frame``)."""
    if not samples:
        raise ValueError("evaluate_vae needs at least one held-out clip")
    vae.eval()
    ours = [psnr(reconstruct(spec, vae, s.video), s.video) for s in samples]
    base = [psnr(np.broadcast_to(baseline, s.video.shape), s.video) for s in samples]
    return {"psnr": float(np.mean(ours)), "psnr_mean_frame": float(np.mean(base)), "clips": len(samples)}
