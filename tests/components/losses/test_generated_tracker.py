"""Trackers of the generated video: the soft tracker unchanged, and the CoTracker3 glue differentiable
w.r.t. the frames through a scripted stand-in model."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from components.losses.generated_tracker import (
    CoTrackerLossTracker,
    SoftTracker,
    build_generated_tracker,
)
from components.losses.soft_tracker import soft_track


class FakeCoTracker(torch.nn.Module):
    """Mimics the CoTracker3 call: tracks = query xy + ``scale`` · (mean red value of frame t, in 0–255)
    px, so they move with the frames' content; ``scale`` is a parameter (to be frozen), visibility 1."""

    def __init__(self, scale: float = 0.01) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(scale))

    def forward(self, video: torch.Tensor, queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        red = video[:, :, 0].mean(dim=(-2, -1))  # [B,T]
        tracks = queries[:, None, :, 1:] + (self.scale * red)[:, :, None, None]
        vis = torch.ones(tracks.shape[:-1], dtype=video.dtype)
        return tracks, vis


class BadShapeTracker(torch.nn.Module):
    def forward(self, video: torch.Tensor, queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return queries[:, :, 1:], queries[:, :, 0]


def save_fake(path: Path, module: torch.nn.Module | None = None) -> Path:
    """``module`` (default ``FakeCoTracker()``) scripted and saved to ``path``."""
    torch.jit.script(module if module is not None else FakeCoTracker()).save(str(path))
    return path


def _inputs(b: int = 2, t: int = 4, n: int = 3, h: int = 12, w: int = 16):
    g = torch.Generator().manual_seed(0)
    frames = torch.rand(b, t, 3, h, w, generator=g) * 2 - 1
    query_xy = torch.rand(b, n, 2, generator=g) * torch.tensor([w - 1.0, h - 1.0])
    query_t = torch.tensor([0, 2])[:b]
    centres = query_xy[:, None].expand(b, t, n, 2).clone()
    return frames, query_xy, query_t, centres


def test_soft_tracker_is_soft_track() -> None:
    frames, q, qt, centres = _inputs()
    tracker = build_generated_tracker("soft", None, radius=2, patch=1, temperature=0.1)
    assert tracker == SoftTracker(2, 1, 0.1)
    expect = soft_track(frames, q, qt, centres=centres, radius=2, patch=1, temperature=0.1)
    assert torch.equal(tracker(frames, q, qt, centres), expect)


def test_cotracker_tracks_and_gradients_reach_the_frames(tmp_path) -> None:
    frames, q, qt, centres = _inputs()
    tracker = build_generated_tracker("cotracker3", save_fake(tmp_path / "fake.pt"))
    assert isinstance(tracker, CoTrackerLossTracker)
    frames.requires_grad_(True)
    tracks = tracker(frames, q, qt, centres * 0 + 100)  # centres are ignored
    red = ((frames.detach() + 1) * 127.5)[:, :, 0].mean(dim=(-2, -1))  # [B,T]
    expect = q[:, None] + 0.01 * red[:, :, None, None]
    assert tracks.shape == (2, 4, 3, 2)
    torch.testing.assert_close(tracks, expect)
    tracks.square().sum().backward()
    assert frames.grad is not None and frames.grad[:, :, 0].abs().min() > 0  # every red pixel
    assert not frames.grad[:, :, 1:].any()  # green/blue do not enter the fake
    params = list(tracker.model.parameters())
    assert params and all(not p.requires_grad and p.grad is None for p in params)


def test_cotracker_errors_name_the_path(tmp_path) -> None:
    missing = tmp_path / "nope" / "cotracker3.pt"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        CoTrackerLossTracker(missing)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model")
    with pytest.raises(ValueError, match=re.escape(str(junk))):
        CoTrackerLossTracker(junk)
    bad_path = save_fake(tmp_path / "bad.pt", BadShapeTracker())
    bad = CoTrackerLossTracker(bad_path)
    frames, q, qt, centres = _inputs()
    with pytest.raises(ValueError, match=re.escape(str(bad_path)) + r".*tracks must be \[1,T,N,2\]"):
        bad(frames, q, qt, centres)
    good = CoTrackerLossTracker(save_fake(tmp_path / "fake.pt"))
    with pytest.raises(ValueError, match=r"\[B,T,3,H,W\]"):
        good(frames[:, :, :1], q, qt, centres)
    with pytest.raises(ValueError, match="query_t"):
        good(frames, q, torch.tensor([0, 4]), centres)
    with pytest.raises(ValueError, match="needs path"):
        build_generated_tracker("cotracker3")
    with pytest.raises(ValueError, match="unknown tracker"):
        build_generated_tracker("raft")  # type: ignore[arg-type]
