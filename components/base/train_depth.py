"""Train ``DepthNet`` on the synthetic clips' exact depth, through the DeepSpeed Trainer.

Supervision: the renderer's camera-z depth, on finite pixels only (backdrop pixels are ``inf`` and
carry no label). With the log residual ``r = log d̂ − log d`` over valid pixels:

- ``L_log = mean |r|``: an L1 on log-depth. It is *scale-aware* (not the scale-invariant loss of
  relative-depth networks) because the contact loss needs metric points; it weighs relative errors
  equally at 2 m and at 50 m;
- ``L_grad = mean_s mean (|∂x r_s| + |∂y r_s|)``: gradient matching of the residual at ``grad_scales``
  scales (every 2^s-th pixel), pairs of valid pixels only; it rewards sharp depth edges (a person in
  front of a wall) that a per-pixel loss blurs;
- ``L = L_log + grad_weight · L_grad``.

Frames are drawn from all (clip, frame) pairs of the clips that have depth, in a fresh seeded
permutation per epoch, flipped left–right with probability 1/2 (the principal point is the image
centre, so a mirrored frame has the mirrored depth). ``evaluate_depth`` reports AbsRel and δ<1.25 over
the valid pixels of held-out frames, beside the same numbers for a constant prediction (the training
median, ``median_depth``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from components.base.config import DepthNetConfig
from components.base.depth import DepthNet
from components.base.phase import History, LogFn, fit_phase
from components.base.train_vae import epoch_index
from components.data.clipset import ClipSample
from components.training.config import TrainPhaseParams


def _depth_clips(samples: Sequence[ClipSample], who: str) -> list[ClipSample]:
    clips = [s for s in samples if s.has_depth]
    if not clips:
        raise ValueError(
            f"{who}: none of the {len(samples)} clips has ground-truth depth; depth comes from synthetic "
            "clips (add an ingest source of kind 'synthetic')"
        )
    for s in clips:
        if s.depth.shape != s.video.shape[:3]:
            raise ValueError(
                f"{who}: {s.clip_id} depth {s.depth.shape} does not match video {s.video.shape[:3]}"
            )
    return clips


def frame_tensor(frame: np.ndarray) -> Tensor:
    """uint8 ``[H,W,3]`` → float32 ``[3,H,W]`` in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1).float().div(127.5).sub(1.0)


def depth_loss(
    pred: Tensor, target: Tensor, grad_weight: float = 0.5, grad_scales: int = 3
) -> tuple[Tensor, dict[str, float]]:
    """``L_log + grad_weight·L_grad`` of ``[B,1,H,W]`` maps (module docstring); non-finite targets ignored."""
    if pred.shape != target.shape:
        raise ValueError(
            f"depth prediction {tuple(pred.shape)} does not match the target {tuple(target.shape)}"
        )
    valid = torch.isfinite(target) & (target > 0)
    if not bool(valid.any()):
        raise ValueError("depth_loss: the batch has no pixel with finite positive depth")
    safe = torch.where(valid, target, torch.ones_like(target))
    r = torch.where(
        valid, pred.float().log() - safe.float().log(), torch.zeros_like(pred, dtype=torch.float32)
    )
    w = valid.float()
    l_log = (r.abs() * w).sum() / w.sum()
    grads = []
    for s in range(grad_scales):
        k = 2**s
        rs, ws = r[..., ::k, ::k], w[..., ::k, ::k]
        wx = ws[..., :, 1:] * ws[..., :, :-1]
        wy = ws[..., 1:, :] * ws[..., :-1, :]
        count = wx.sum() + wy.sum()
        if float(count) > 0:
            gx = (rs[..., :, 1:] - rs[..., :, :-1]).abs() * wx
            gy = (rs[..., 1:, :] - rs[..., :-1, :]).abs() * wy
            grads.append((gx.sum() + gy.sum()) / count)
    l_grad = torch.stack(grads).mean() if grads else r.new_zeros(())
    loss = l_log + grad_weight * l_grad
    return loss, {"log_l1": float(l_log.detach()), "grad": float(l_grad.detach())}


def train_depth(
    samples: Sequence[ClipSample],
    cfg: DepthNetConfig,
    phase: TrainPhaseParams,
    *,
    grad_weight: float = 0.5,
    grad_scales: int = 3,
    flip: bool = True,
    seed: int = 0,
    ckpt_dir: Path | str | None = None,
    log_fn: LogFn | None = None,
    progress: bool = True,
) -> tuple[DepthNet, History]:
    """Train a ``DepthNet(cfg)`` on the clips that have depth; returns it frozen and the history.

    A good ``cfg.init_depth`` is the training median (``median_depth``): the net starts as the
    constant baseline.
    """
    if grad_weight < 0 or grad_scales < 0:
        raise ValueError(f"grad_weight and grad_scales must be >= 0, got {grad_weight}, {grad_scales}")
    clips = _depth_clips(samples, "train_depth")
    pool = [(i, t) for i, s in enumerate(clips) for t in range(len(s.video))]
    n, bsz = len(pool), phase.batch_size

    def batches(step: int) -> dict[str, Tensor]:
        rng = np.random.default_rng([seed, step, 3])
        frames, depths = [], []
        for k in range(bsz):
            i, t = pool[epoch_index(step, k, bsz, n, seed)]
            f, d = (
                frame_tensor(clips[i].video[t]),
                torch.from_numpy(clips[i].depth[t].astype(np.float32))[None],
            )
            if flip and rng.random() < 0.5:
                f, d = f.flip(-1), d.flip(-1)
            frames.append(f)
            depths.append(d)
        return {"frames": torch.stack(frames), "depth": torch.stack(depths)}

    def loss_fn(engine: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        dtype = next(engine.module.parameters()).dtype
        pred = engine(batch["frames"].to(dtype))
        return depth_loss(pred, batch["depth"], grad_weight, grad_scales)

    net = DepthNet(cfg).train()
    trained, history = fit_phase(net, phase, seed, loss_fn, batches, ckpt_dir, log_fn, progress)
    return trained, history


def median_depth(samples: Sequence[ClipSample]) -> float:
    """Median of all finite depth values of the clips with depth (the best constant under L1 on log-depth)."""
    clips = _depth_clips(samples, "median_depth")
    values = np.concatenate([s.depth[np.isfinite(s.depth) & (s.depth > 0)] for s in clips])
    return float(np.median(values))


def _scores(pred: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    ratio = np.maximum(pred / gt, gt / pred)
    return float(np.mean(np.abs(pred - gt) / gt)), float(np.mean(ratio < 1.25))


@torch.no_grad()
def evaluate_depth(
    net: DepthNet, samples: Sequence[ClipSample], constant: float, batch_size: int = 8
) -> dict[str, float | int]:
    """AbsRel and δ<1.25 of ``net`` and of the ``constant`` depth over the valid pixels of every frame."""
    if constant <= 0:
        raise ValueError(f"constant depth must be positive, got {constant}")
    clips = _depth_clips(samples, "evaluate_depth")
    net.eval()
    p = next(net.parameters())
    preds, gts = [], []
    for s in clips:
        for a in range(0, len(s.video), batch_size):
            x = torch.stack([frame_tensor(f) for f in s.video[a : a + batch_size]]).to(p)
            d = net(x)[:, 0].float().cpu().numpy()
            gt = s.depth[a : a + batch_size]
            valid = np.isfinite(gt) & (gt > 0)
            preds.append(d[valid].astype(np.float64))
            gts.append(gt[valid].astype(np.float64))
    pred, gt = np.concatenate(preds), np.concatenate(gts)
    abs_rel, delta1 = _scores(pred, gt)
    abs_rel_c, delta1_c = _scores(np.full_like(gt, constant), gt)
    return {
        "abs_rel": abs_rel,
        "delta1": delta1,
        "abs_rel_constant": abs_rel_c,
        "delta1_constant": delta1_c,
        "frames": sum(len(s.video) for s in clips),
        "pixels": int(gt.size),
    }
