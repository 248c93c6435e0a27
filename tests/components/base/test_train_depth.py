"""DepthNet on rendered synthetic clips: held-out AbsRel beats the constant-depth baseline; loss terms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from components.base.config import DepthNetConfig
from components.base.train_depth import depth_loss, evaluate_depth, median_depth, train_depth
from components.data.clipset import ClipSample
from components.motion.config import CameraSpec
from components.synthetic.render import render_clip
from components.training.config import TrainPhaseParams
from tests.components.synthetic.conftest import walking_motion

torch.set_num_threads(1)


def rendered(seed: int, azimuth: float, frames: int = 5) -> ClipSample:
    video, gt = render_clip(
        walking_motion(),
        CameraSpec(azimuth=azimuth, elevation=10 + 3 * seed),
        32,
        48,
        16,
        seed=seed,
        num_frames=frames,
        antialias=False,
    )
    return ClipSample(
        clip_id=f"syn{seed}", split="train", caption="", motion_prompt="", video=video, depth=gt.depth
    )


def test_training_beats_the_constant_depth_on_held_out_scenes() -> None:
    train = [rendered(s, 40.0 * s) for s in range(4)]
    held_out = [rendered(10 + s, 20.0 + 40.0 * s) for s in range(2)]
    median = median_depth(train)
    cfg = DepthNetConfig(base_channels=8, init_depth=median)
    phase = TrainPhaseParams(steps=80, batch_size=4, lr=3e-3, warmup_steps=5)
    net, history = train_depth(train, cfg, phase, progress=False)
    report = evaluate_depth(net, held_out, median)

    assert len(history) == 80 and {"log_l1", "grad"} <= set(history[0])
    assert report["frames"] == 10 and report["pixels"] == sum(
        int(np.isfinite(c.depth).sum()) for c in held_out
    )
    assert report["abs_rel"] < 0.8 * report["abs_rel_constant"]
    assert report["delta1"] > report["delta1_constant"]
    assert not any(p.requires_grad for p in net.parameters())


def test_depth_loss_known_values_and_masking() -> None:
    g = torch.Generator().manual_seed(0)
    target = torch.rand(2, 1, 8, 12, generator=g) * 9 + 1
    loss, logs = depth_loss(target.clone(), target)
    assert float(loss) == 0.0
    loss, logs = depth_loss(2 * target, target, grad_weight=1.0)
    assert logs["log_l1"] == pytest.approx(math.log(2), rel=1e-5)
    assert logs["grad"] == pytest.approx(0.0, abs=1e-6)  # a pure scale error has no gradient mismatch
    # backdrop pixels carry no label: whatever is predicted there does not matter
    holed = target.clone()
    holed[:, :, :3] = float("inf")
    pred = target * torch.exp(0.1 * torch.randn(target.shape, generator=g))
    wild = pred.clone()
    wild[:, :, :3] = 1000.0
    a, _ = depth_loss(pred, holed)
    b, _ = depth_loss(wild, holed)
    assert float(a) == pytest.approx(float(b))
    assert float(a) > 0
    with pytest.raises(ValueError, match="no pixel with finite"):
        depth_loss(pred, torch.full_like(target, float("inf")))


def test_clips_without_depth_are_refused_and_median_ignores_backdrop() -> None:
    clip = rendered(0, 0.0, frames=2)
    assert np.isinf(clip.depth).any()
    assert math.isfinite(median_depth([clip]))
    no_depth = ClipSample(clip_id="real", split="train", caption="", motion_prompt="", video=clip.video)
    with pytest.raises(ValueError, match="synthetic"):
        train_depth([no_depth], DepthNetConfig(), TrainPhaseParams(steps=1, batch_size=1), progress=False)
    with pytest.raises(ValueError, match="positive"):
        evaluate_depth(None, [clip], 0.0)
