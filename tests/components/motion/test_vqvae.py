"""Motion VQ-VAE: shapes, errors, EMA codebook maths, dead-code reset, masking, overfitting, DDP sync."""

from __future__ import annotations

import os
import socket

import numpy as np
import pytest
import torch

from components.motion.config import VQVAEConfig
from components.motion.deepmimic import load_deepmimic
from components.motion.humanml3d import compute_stats, joints_to_features
from components.motion.vqvae import EMAQuantizer, MotionVQVAE

TINY = VQVAEConfig(width=32, depth=1, codebook_size=32, code_dim=16, dead_code_threshold=20)


@pytest.fixture(scope="module")
def windows() -> torch.Tensor:
    """Three real 24-frame DeepMimic windows (walk, jump, punch), normalised: [3, 24, 263]."""
    feats = [joints_to_features(load_deepmimic(n).joints) for n in ("walk", "jump", "punch")]
    stats = compute_stats(feats)
    return torch.tensor(np.stack([stats.normalize(f[:24]) for f in feats]), dtype=torch.float32)


def test_shapes_and_encode_decode_agree_with_forward(windows):
    torch.manual_seed(0)
    model = MotionVQVAE(TINY)
    model(windows)  # one training step initialises the codebook from the data
    model.eval()
    out = model(windows)
    assert out["recon"].shape == windows.shape
    assert out["codes"].shape == (3, 6) and out["codes"].dtype == torch.long
    for key in ("loss", "recon_loss", "commit_loss", "velocity_loss", "perplexity"):
        assert out[key].ndim == 0 and torch.isfinite(out[key]), key
    codes = model.encode(windows)
    assert torch.equal(codes, out["codes"])
    assert torch.allclose(model.decode(codes), out["recon"], atol=1e-5)
    assert model.decode(codes[0]).shape == (1, 24, 263)  # a single sequence is accepted too
    assert 1.0 <= float(out["perplexity"]) <= 18.0  # at most 18 tokens in the batch


def test_frames_must_be_a_multiple_of_four_and_inputs_are_checked(windows):
    model = MotionVQVAE(TINY)
    with pytest.raises(ValueError, match=r"T=22 must be a positive multiple of 4"):
        model(windows[:, :22])
    with pytest.raises(ValueError, match=r"T=10 must be a positive multiple of 4"):
        model.encode(windows[:, :10])
    with pytest.raises(ValueError, match=r"\[B, T, 263\]"):
        model(windows[..., :100])
    with pytest.raises(ValueError, match=r"lengths must be"):
        model(windows, lengths=torch.tensor([24, 0, 8]))
    with pytest.raises(ValueError, match=r"codes must lie in \[0, 32\)"):
        model.decode(torch.tensor([[0, 32]]))


def test_published_sizes_are_expressible():
    cfg = VQVAEConfig(width=512, depth=3, codebook_size=512, code_dim=512)
    model = MotionVQVAE(cfg)
    assert model.quantizer.codebook.shape == (512, 512)
    assert model.frames_per_token == 4
    with pytest.raises(ValueError, match="extra"):
        VQVAEConfig(widht=64)


def test_ema_update_matches_the_formula_and_converges_to_cluster_means():
    torch.manual_seed(0)
    q = EMAQuantizer(codebook_size=3, code_dim=2, decay=0.9, dead_code_threshold=0, eps=1e-12)
    q.codebook.copy_(torch.tensor([[0.0, 0.0], [10.0, 10.0], [-10.0, 5.0]]))
    q.ema_sum.copy_(q.codebook)
    q.ema_count.fill_(1.0)
    q.initialized.fill_(True)
    z = torch.tensor([[2.0, 0.0], [2.0, 2.0], [9.0, 11.0]])
    codes = q.nearest(z)
    assert codes.tolist() == [0, 0, 1]
    q.update(z, codes)
    # code 0: count 0.9 + 0.1·2 = 1.1, sum 0.9·0 + 0.1·(4, 2) = (0.4, 0.2) → (0.3636, 0.1818)
    assert torch.allclose(q.codebook[0], torch.tensor([0.4, 0.2]) / 1.1, atol=1e-5)
    # code 1: count 1.0, sum 0.9·(10, 10) + 0.1·(9, 11) = (9.9, 10.1)
    assert torch.allclose(q.codebook[1], torch.tensor([9.9, 10.1]), atol=1e-5)
    # code 2 (unused) only decays its count and sum together: it stays where it was
    assert torch.allclose(q.codebook[2], torch.tensor([-10.0, 5.0]), atol=1e-5)
    for _ in range(200):
        q.update(z, q.nearest(z))
    assert torch.allclose(q.codebook[0], torch.tensor([2.0, 1.0]), atol=1e-3)
    assert torch.allclose(q.codebook[1], torch.tensor([9.0, 11.0]), atol=1e-3)


def test_dead_codes_are_reset_to_batch_encoder_outputs():
    torch.manual_seed(0)
    q = EMAQuantizer(codebook_size=4, code_dim=2, decay=0.9, dead_code_threshold=3, eps=1e-5)
    q.codebook.copy_(torch.tensor([[0.0, 0.0], [50.0, 50.0], [60.0, 60.0], [70.0, 70.0]]))
    q.ema_sum.copy_(q.codebook)
    q.initialized.fill_(True)
    z = torch.randn(16, 2) * 0.1 + torch.tensor([1.0, -1.0])
    for step in range(1, 4):
        q.update(z, q.nearest(z))
        if step < 3:
            assert q.last_reset == 0 and q.unused_steps.tolist() == [0, step, step, step]
    assert q.last_reset == 3
    assert q.unused_steps.tolist() == [0, 0, 0, 0]
    for k in (1, 2, 3):
        assert (q.codebook[k] - z).abs().sum(1).min() < 1e-6, "a reset code must equal a batch row"
        assert torch.equal(q.ema_sum[k], q.codebook[k]) and q.ema_count[k] == 1.0


def test_padded_frames_do_not_count_for_the_codebook(windows):
    torch.manual_seed(0)
    model = MotionVQVAE(TINY.model_copy(update={"ema_decay": 0.5}))
    model(windows)  # initialise
    before = float(model.quantizer.ema_count.sum())
    model(windows, lengths=torch.tensor([24, 8, 4]))  # 6 + 2 + 1 valid tokens
    after = float(model.quantizer.ema_count.sum())
    assert after == pytest.approx(0.5 * before + 0.5 * 9, rel=1e-5)


def test_overfits_a_few_real_motion_windows(windows):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = MotionVQVAE(TINY)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    first = None
    for _ in range(200):
        out = model(windows)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        first = float(out["recon_loss"].detach()) if first is None else first
    model.eval()
    final = float(model(windows)["recon_loss"].detach())
    assert final < 0.15 * first, (first, final)
    assert len(torch.unique(model.encode(windows))) >= 6  # the codebook did not collapse


def _ddp_worker(rank: int, port: int, out_dir: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    torch.manual_seed(0)
    model = MotionVQVAE(VQVAEConfig(width=8, depth=1, codebook_size=8, code_dim=4, dead_code_threshold=2))
    torch.manual_seed(100 + rank)  # each rank sees different data and draws different resets
    for _ in range(4):
        model(torch.randn(2, 8, 263) + rank)
    torch.save(model.quantizer.state_dict(), os.path.join(out_dir, f"q{rank}.pt"))
    dist.destroy_process_group()


def test_codebooks_stay_identical_across_distributed_ranks(tmp_path):
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.start_processes(_ddp_worker, args=(port, str(tmp_path)), nprocs=2, join=True, start_method="spawn")
    # spawn, not fork: a forked child inherits any process group and threads the parent holds
    # (e.g. a 1-process DeepSpeed world from an earlier test) and can hang tearing them down.
    q0, q1 = (torch.load(tmp_path / f"q{r}.pt") for r in (0, 1))
    for name in ("codebook", "ema_sum", "ema_count", "unused_steps"):
        assert torch.equal(q0[name], q1[name]), name


def test_l2_codes_keep_latents_and_codes_on_the_unit_sphere(windows):
    torch.manual_seed(0)
    model = MotionVQVAE(TINY.model_copy(update={"l2_codes": True}))
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(30):
        out = model(windows)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    z = model._encode_latent(windows)
    assert torch.allclose(z.norm(dim=-1), torch.ones(z.shape[:2]), atol=1e-5)
    norms = model.quantizer.codebook.norm(dim=-1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)
    # unit vectors are at most 2 apart: the commitment term cannot blow up
    assert float(out["commit_loss"]) <= 4.0
    plain = MotionVQVAE(TINY)
    assert not torch.allclose(plain._encode_latent(windows).norm(dim=-1), torch.ones(3, 6), atol=1e-2)
