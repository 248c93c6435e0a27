"""VAE on moving coloured shapes: loss falls, PSNR beats the mean-frame baseline, latents calibrated."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from components.backbone.config import TinyConfig
from components.backbone.spec import get_spec
from components.base.train_vae import (
    calibrate_latents,
    epoch_index,
    evaluate_vae,
    mean_frame,
    person_masks,
    psnr,
    train_vae,
    vae_loss,
    window_origin,
)
from components.data.clipset import ClipSample
from components.training.config import TrainPhaseParams

torch.set_num_threads(1)
SMALL = TinyConfig(sample_frames=9, sample_height=32, sample_width=48)


def moving_shapes(
    seed: int, frames: int = 9, height: int = 32, width: int = 48, caption: str = ""
) -> ClipSample:
    """Two flat-coloured discs gliding over a flat background (procedural, seeded)."""
    rng = np.random.default_rng(seed)
    background = rng.integers(0, 256, 3)
    yy, xx = np.mgrid[0:height, 0:width]
    discs = [
        (rng.uniform(5, height - 5), rng.uniform(5, width - 5), *rng.uniform(-2, 2, 2), rng.uniform(4, 9),
         rng.integers(0, 256, 3))
        for _ in range(2)
    ]  # fmt: skip
    video = np.empty((frames, height, width, 3), np.uint8)
    for t in range(frames):
        img = np.broadcast_to(background, (height, width, 3)).copy()
        for y, x, vy, vx, r, colour in discs:
            img[(yy - y - vy * t) ** 2 + (xx - x - vx * t) ** 2 < r * r] = colour
        video[t] = img
    return ClipSample(clip_id=f"shapes{seed}", split="train", caption=caption, motion_prompt="", video=video)


def test_training_lowers_the_loss_and_beats_the_mean_frame() -> None:
    spec = get_spec("cogvideox")
    vae = spec.build_tiny(SMALL).vae
    clips = [moving_shapes(i) for i in range(4)]
    baseline = mean_frame(clips)
    before = evaluate_vae(spec, vae, clips, baseline)
    logged: list[int] = []
    phase = TrainPhaseParams(steps=40, batch_size=2, lr=4e-3, warmup_steps=4)
    vae, history = train_vae(
        clips, spec, vae, phase, log_fn=lambda step, rec: logged.append(step), progress=False
    )
    after = evaluate_vae(spec, vae, clips, baseline)

    assert len(history) == 40 and logged == list(range(1, 41))
    first = np.mean([h["recon"] for h in history[:5]])
    last = np.mean([h["recon"] for h in history[-10:]])
    assert last < 0.6 * first
    assert after["psnr"] > after["psnr_mean_frame"] + 1.0 > before["psnr"] + 1.0
    assert not any(p.requires_grad for p in vae.parameters())
    # calibrated: the normalised latents of the training clips have unit standard deviation
    from components.base.phase import unit_video

    z = torch.cat([spec.vae_encode(vae, unit_video(c.video).unsqueeze(0)) for c in clips])
    assert abs(float(z.std()) - 1.0) < 1e-3
    assert vae.config.scaling_factor != 1.0


def test_wan_calibration_normalises_each_channel() -> None:
    from components.base.phase import unit_video

    spec = get_spec("wan")
    vae = spec.build_tiny(SMALL).vae
    videos = [unit_video(moving_shapes(i).video) for i in range(3)]
    set_ = calibrate_latents(vae, videos)
    assert set(set_) == {"latents_mean", "latents_std"}
    with torch.no_grad():
        z = torch.cat([spec.vae_encode(vae, v.unsqueeze(0)) for v in videos])  # [N,F,C,h,w]
    per_channel = z.transpose(0, 2).flatten(1)
    torch.testing.assert_close(per_channel.mean(1), torch.zeros(4), atol=1e-4, rtol=0)
    torch.testing.assert_close(per_channel.std(1), torch.ones(4), atol=1e-4, rtol=0)


def test_vae_loss_known_values() -> None:
    x = torch.rand(1, 3, 5, 8, 8) * 2 - 1
    zero = torch.zeros(1, 4, 2, 1, 1)
    loss, logs = vae_loss(x.clone(), x, zero, zero, beta=1.0)
    assert float(loss) == 0.0 and logs["kl"] == 0.0
    loss, logs = vae_loss(x + 0.5, x, torch.ones_like(zero), zero, beta=2.0, kind="l2")
    assert logs["recon"] == pytest.approx(0.25) and logs["kl"] == pytest.approx(0.5)
    assert float(loss) == pytest.approx(0.25 + 2.0 * 0.5)
    assert psnr(np.zeros(4), np.full(4, 255.0)) == pytest.approx(0.0)


def test_every_clip_is_seen_once_per_epoch() -> None:
    n, b = 5, 2
    seen = [epoch_index(s, k, b, n, seed=7) for s in range(5) for k in range(b)]
    assert sorted(seen[:5]) == list(range(5)) and sorted(seen[5:]) == list(range(5))
    assert seen[:5] != seen[5:]  # a fresh order each epoch


def test_bad_clips_and_settings_are_refused() -> None:
    spec = get_spec("cogvideox")
    vae = spec.build_tiny(SMALL).vae
    phase = TrainPhaseParams(steps=1, batch_size=1)
    with pytest.raises(ValueError, match="share one shape"):
        train_vae([moving_shapes(0), moving_shapes(1, height=40)], spec, vae, phase, progress=False)
    with pytest.raises(ValueError, match="8N\\+1"):
        train_vae([moving_shapes(0, frames=10)], spec, vae, phase, progress=False)
    with pytest.raises(ValueError, match="no clips"):
        train_vae([], spec, vae, phase, progress=False)
    with pytest.raises(ValueError, match="beta"):
        train_vae([moving_shapes(0)], spec, vae, phase, beta=-1.0, progress=False)
    with pytest.raises(ValueError, match=r"crop \(9, 40, 48\) is larger than the clips"):
        train_vae([moving_shapes(0)], spec, vae, phase, crop=(9, 40, 48), progress=False)
    with pytest.raises(ValueError, match=r"crop \(9, 20, 24\) does not fit the VAE.*multiple of 8"):
        train_vae([moving_shapes(0)], spec, vae, phase, crop=(9, 20, 24), progress=False)


def test_random_windows_train_a_x4_vae_that_reconstructs_whole_clips() -> None:
    """Windows of a third of the frame area, a new one each step; evaluated on the whole clips."""
    cfg = TinyConfig(sample_frames=9, sample_height=32, sample_width=48, vae_block_channels=(8, 16, 16))
    spec = get_spec("cogvideox")
    vae = spec.build_tiny(cfg).vae
    clips = [moving_shapes(i) for i in range(4)]
    seen: list[tuple[int, ...]] = []
    original = vae.encode

    def spy(x, *a, **k):
        seen.append(tuple(x.shape))
        return original(x, *a, **k)

    vae.encode = spy
    phase = TrainPhaseParams(steps=40, batch_size=2, lr=4e-3, warmup_steps=4)
    before = evaluate_vae(spec, vae, clips, mean_frame(clips))
    seen.clear()
    vae, _ = train_vae(clips, spec, vae, phase, crop=(9, 16, 24), calibrate=False, progress=False)
    after = evaluate_vae(spec, vae, clips, mean_frame(clips))
    assert seen.count((2, 3, 9, 16, 24)) == 40  # one batch of windows per step
    assert after["psnr"] > before["psnr"] + 3
    assert spec.vae_encode(vae, torch.zeros(1, 3, 9, 32, 48)).shape == (1, 3, 4, 8, 12)


def with_body(clip: ClipSample) -> ClipSample:
    """The clip with its discs (every pixel unlike the background corner) as the body mask."""
    clip.truth_mask = (clip.video != clip.video[:, :1, :1]).any(-1)
    return clip


def test_weighted_loss_counts_the_body_w_times_and_ones_are_the_plain_mean() -> None:
    x = torch.zeros(1, 3, 1, 2, 2)
    rec = x.clone()
    rec[..., 0, 0] = 1.0  # error 1 on one pixel (all colours), 0 elsewhere
    zero = torch.zeros(1, 4, 1, 1, 1)
    plain, _ = vae_loss(rec, x, zero, zero, beta=0.0)
    ones, _ = vae_loss(rec, x, zero, zero, beta=0.0, weight=torch.ones(1, 1, 1, 2, 2))
    assert float(plain) == pytest.approx(0.25) and float(ones) == pytest.approx(0.25)
    w = torch.ones(1, 1, 1, 2, 2)
    w[..., 0, 0] = 9.0  # the wrong pixel is the body: 9 / (9 + 3)
    body, _ = vae_loss(rec, x, zero, zero, beta=0.0, weight=w)
    assert float(body) == pytest.approx(9 / 12)
    w = torch.ones(1, 1, 1, 2, 2)
    w[..., 1, 1] = 9.0  # the body is right, the error elsewhere weighs less: 1 / 12
    assert float(vae_loss(rec, x, zero, zero, beta=0.0, weight=w)[0]) == pytest.approx(1 / 12)


def test_person_masks_grow_the_body_and_skip_clips_without_one() -> None:
    body = np.zeros((2, 9, 9), bool)
    body[:, 4, 4] = True
    a = ClipSample("a", "train", "", "", np.zeros((2, 9, 9, 3), np.uint8), truth_mask=body)
    b = ClipSample("b", "train", "", "", np.zeros((2, 9, 9, 3), np.uint8))
    grown, none = person_masks([a, b], dilate=2)
    assert none is None and grown.sum() == 2 * 25 and grown[:, 2:7, 2:7].all()
    assert person_masks([a], dilate=0)[0].sum() == 2


def test_person_crops_centre_windows_on_the_body() -> None:
    mask = np.zeros((9, 96, 144), bool)
    mask[:, 80:90, 130:140] = True  # a small body in the bottom-right corner
    rng = np.random.default_rng(0)
    on_body = [window_origin((9, 96, 144), (9, 32, 48), mask, 1.0, rng) for _ in range(50)]
    uniform = [window_origin((9, 96, 144), (9, 32, 48), mask, 0.0, rng) for _ in range(50)]

    def sees_body(o):
        t0, y0, x0 = o
        return bool(mask[t0 : t0 + 9, y0 : y0 + 32, x0 : x0 + 48].any())

    assert all(sees_body(o) for o in on_body)
    assert sum(sees_body(o) for o in uniform) < 25
    assert all(0 <= y0 <= 64 and 0 <= x0 <= 96 for _, y0, x0 in on_body)


def test_person_weight_reconstructs_the_body_better() -> None:
    """Same clips, steps and seed; weighting the body 30x raises the body's PSNR (``psnr_person``)."""
    spec = get_spec("cogvideox")
    clips = [with_body(moving_shapes(i)) for i in range(4)]
    phase = TrainPhaseParams(steps=40, batch_size=2, lr=4e-3, warmup_steps=4)
    scores = {}
    for w in (1.0, 30.0):
        torch.manual_seed(0)
        vae = spec.build_tiny(SMALL).vae
        vae, _ = train_vae(clips, spec, vae, phase, person_weight=w, calibrate=False, progress=False)
        scores[w] = evaluate_vae(spec, vae, clips, mean_frame(clips))
    print({w: (round(s["psnr"], 2), round(s["psnr_person"], 2)) for w, s in scores.items()})
    assert scores[30.0]["psnr_person"] > scores[1.0]["psnr_person"] + 0.7
    assert scores[1.0]["person_clips"] == 4 and len(scores[1.0]["reconstructions"]) == 4
    plain = evaluate_vae(spec, vae, [moving_shapes(0)], mean_frame(clips))
    assert "psnr_person" not in plain  # no rendered body: no body PSNR


def test_person_settings_are_checked() -> None:
    spec = get_spec("cogvideox")
    vae = spec.build_tiny(SMALL).vae
    phase = TrainPhaseParams(steps=1, batch_size=1)
    with pytest.raises(ValueError, match="person_weight must be >= 1"):
        train_vae([moving_shapes(0)], spec, vae, phase, person_weight=0.5, progress=False)
    with pytest.raises(ValueError, match="person_crops is a share"):
        train_vae([moving_shapes(0)], spec, vae, phase, person_crops=1.5, progress=False)
