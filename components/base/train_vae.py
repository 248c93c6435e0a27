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

Person emphasis (``person_weight``, ``person_crops``; ours, not in the VAE papers): the CPU default's
people are ~40–60 px tall in 96×144 frames, a few percent of the pixels, and a plain per-pixel loss
spends the tiny VAE's capacity on sky and floor; its reconstructions blurred the body past what the
pose detector can read (measured: 0 % of reconstructed held-out frames detected at uniform weight).
With ``person_weight`` w the reconstruction error inside the rendered body (``truth_mask`` of synthetic
clips, dilated by ``PERSON_DILATE`` px so the outline counts) weighs w times the rest, normalised by
the batch's total weight (w = 1 is the plain mean); ``person_crops`` is the share of training windows
centred (± 8 px) on a random body pixel instead of drawn uniformly. Clips without a body mask (real
clips) keep weight 1 and uniform windows.

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

from components.backbone.spec import BackboneSpec
from components.base.phase import History, LogFn, fit_phase, unit_video
from components.data.clipset import ClipSample
from components.training.config import TrainPhaseParams

Recon = Literal["l1", "l2"]
PERSON_DILATE = 2  # px around the rendered body that count as the person (its outline)


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
    recon: Tensor,
    video: Tensor,
    mean: Tensor,
    logvar: Tensor,
    beta: float,
    kind: Recon = "l1",
    weight: Tensor | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """``rec + β·KL`` (see the module docstring) and its parts for logging; ``weight`` ``[B,1,T,H,W]``
    (broadcast over colour) weighs each pixel's error, normalised by its sum (None: the plain mean)."""
    if recon.shape != video.shape:
        raise ValueError(f"reconstruction {tuple(recon.shape)} does not match the video {tuple(video.shape)}")
    diff = recon.float() - video.float()
    err = diff.abs() if kind == "l1" else diff.square()
    if weight is None:
        rec = err.mean()
    else:
        w = weight.float().expand_as(err)
        rec = (err * w).sum() / w.sum()
    kl = 0.5 * (mean.float().square() + logvar.float().exp() - 1.0 - logvar.float()).mean()
    mse = float(diff.detach().square().mean())
    psnr = 10 * np.log10(4.0 / max(mse, 1e-12))  # peak-to-peak 2 in [-1, 1]
    return rec + beta * kl, {"recon": float(rec.detach()), "kl": float(kl.detach()), "psnr": psnr}


def window_origin(
    full: tuple[int, int, int],
    size: tuple[int, int, int],
    mask: np.ndarray | None,
    person_crops: float,
    rng: np.random.Generator,
) -> tuple[int, int, int]:
    """Start ``(t0, y0, x0)`` of a ``size`` window in a clip of shape ``full`` (frames, height, width):
    uniform, or with probability ``person_crops`` (when ``mask`` has body pixels in the drawn frames)
    centred on a random body pixel, jittered by ±8 px and kept inside the frame."""
    (full_t, full_h, full_w), (t, h, w) = full, size
    t0, y0, x0 = (int(rng.integers(0, a - b + 1)) for a, b in ((full_t, t), (full_h, h), (full_w, w)))
    if mask is not None and rng.random() < person_crops:
        ys, xs = np.nonzero(mask[t0 : t0 + t].any(axis=0))
        if len(ys):
            j = int(rng.integers(len(ys)))
            y0 = int(np.clip(ys[j] - h // 2 + rng.integers(-8, 9), 0, full_h - h))
            x0 = int(np.clip(xs[j] - w // 2 + rng.integers(-8, 9), 0, full_w - w))
    return t0, y0, x0


def person_masks(samples: Sequence[ClipSample], dilate: int = PERSON_DILATE) -> list[np.ndarray | None]:
    """Per clip the rendered body's pixels bool ``[T,H,W]`` grown by ``dilate`` px (None without one)."""
    from scipy.ndimage import binary_dilation

    out: list[np.ndarray | None] = []
    for s in samples:
        m = s.truth_mask
        if m is None or not m.any():
            out.append(None)
            continue
        size = 2 * dilate + 1
        out.append(binary_dilation(m, structure=np.ones((1, size, size), bool)) if dilate > 0 else m.copy())
    return out


def person_weights(
    samples: Sequence[ClipSample], person_weight: float, person_crops: float
) -> tuple[bool, list[np.ndarray | None], list[Tensor | None]]:
    """``(emphasis, masks, weights)`` of the person-weighted L1: whether any emphasis is on, each clip's
    grown body mask (``person_masks``) and its per-pixel weight ``1 + (person_weight − 1)·mask``
    (None for a clip without a body, and for every clip when there is no emphasis)."""
    emphasis = person_weight > 1 or person_crops > 0
    masks = person_masks(samples) if emphasis else [None] * len(samples)
    weights = [
        None if m is None else torch.from_numpy(1.0 + (person_weight - 1.0) * m.astype(np.float32))
        for m in masks
    ]
    return emphasis, masks, weights


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
    person_weight: float = 1.0,
    person_crops: float = 0.0,
    seed: int = 0,
    calibrate: bool = True,
    ckpt_dir: Path | str | None = None,
    log_fn: LogFn | None = None,
    progress: bool = True,
) -> tuple[nn.Module, History]:
    """Train ``vae`` (e.g. ``spec.build_tiny(tiny).vae``) on the clips; returns it frozen and the history.

    ``beta`` weighs the KL term, ``recon`` picks L1 or L2, ``flip`` mirrors half the clips, ``crop``
    trains on random ``(frames, height, width)`` windows, ``person_weight``/``person_crops`` emphasise
    the rendered body (module docstring); with ``calibrate`` the latent normalisation is fitted
    afterwards on the whole clips (``calibrate_latents``).
    """
    if beta < 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    if person_weight < 1:
        raise ValueError(f"person_weight must be >= 1 (1: every pixel alike), got {person_weight}")
    if not 0 <= person_crops <= 1:
        raise ValueError(f"person_crops is a share of the windows and must lie in [0, 1], got {person_crops}")
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
    emphasis, masks, weights = person_weights(samples, person_weight, person_crops)
    n, bsz = len(videos), phase.batch_size

    def batches(step: int) -> dict[str, Tensor]:
        rng = np.random.default_rng([seed, step, 1])
        items, item_w = [], []
        for k in range(bsz):
            i = epoch_index(step, k, bsz, n, seed)
            v, wt = videos[i], weights[i]
            if wt is None:
                wt = torch.ones(v.shape[1:]) if emphasis else None
            if crop is not None:
                t0, y0, x0 = window_origin(v.shape[1:], (t, h, w), masks[i], person_crops, rng)
                v = v[:, t0 : t0 + t, y0 : y0 + h, x0 : x0 + w]
                wt = None if wt is None else wt[t0 : t0 + t, y0 : y0 + h, x0 : x0 + w]
            if flip and rng.random() < 0.5:
                v, wt = v.flip(-1), (None if wt is None else wt.flip(-1))
            items.append(v)
            item_w.append(wt)
        g = torch.Generator().manual_seed(int(rng.integers(2**62)))
        batch = {"video": torch.stack(items), "noise": torch.randn(bsz, c, f, lh, lw, generator=g)}
        if emphasis:
            batch["weight"] = torch.stack(item_w).unsqueeze(1)
        return batch

    def loss_fn(engine: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        dtype = next(engine.module.parameters()).dtype
        rec, mean, logvar = engine(batch["video"].to(dtype), batch["noise"].to(dtype))
        return vae_loss(rec, batch["video"], mean, logvar, beta, recon, batch.get("weight"))

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
    """Mean PSNR over ``samples`` of the reconstructions and of the ``baseline`` frame (``mean_frame``);
    with rendered bodies (``truth_mask``) also ``psnr_person``, the PSNR over the body's pixels (dilated
    as in training), mean over those clips. ``reconstructions`` holds the uint8 frames, for callers
    that judge them further (e.g. a pose detector)."""
    if not samples:
        raise ValueError("evaluate_vae needs at least one held-out clip")
    vae.eval()
    recs = [reconstruct(spec, vae, s.video) for s in samples]
    ours = [psnr(r, s.video) for r, s in zip(recs, samples, strict=True)]
    base = [psnr(np.broadcast_to(baseline, s.video.shape), s.video) for s in samples]
    body = [
        psnr(r[m], s.video[m])
        for r, s, m in zip(recs, samples, person_masks(samples), strict=True)
        if m is not None
    ]
    out: dict = {"psnr": float(np.mean(ours)), "psnr_mean_frame": float(np.mean(base)), "clips": len(samples)}
    if body:
        out.update(psnr_person=float(np.mean(body)), person_clips=len(body))
    out["reconstructions"] = recs
    return out
