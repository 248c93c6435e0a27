"""Query grids, the Lucas–Kanade tracker on textures with known motion, and the CoTracker3 glue."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from scipy.ndimage import binary_dilation, binary_erosion, gaussian_filter, shift

from components.annotation.tracks import (
    CoTrackerAdapter,
    LKTracker,
    Tracks,
    build_tracker,
    query_points,
    track_lk,
)


def texture(height: int, width: int, seed: int, sigma: float = 2.0) -> np.ndarray:
    """Smooth random colour texture, float values in 25–225."""
    t = gaussian_filter(np.random.default_rng(seed).normal(size=(height, width, 3)), (sigma, sigma, 0))
    return (t - t.min()) / (t.max() - t.min()) * 200 + 25


def translating(height: int, width: int, num_frames: int, velocity: tuple[float, float], seed: int = 0):
    """Frames of a texture whose content moves by ``velocity`` (x, y) px per frame (cubic-spline shift)."""
    pad = int(np.ceil(np.abs(velocity).max() * num_frames)) + 8
    big = texture(height + 2 * pad, width + 2 * pad, seed)
    vx, vy = velocity
    out = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    for t in range(num_frames):
        moved = shift(big, (t * vy, t * vx, 0), order=3, mode="nearest")
        out[t] = np.clip(np.rint(moved[pad : pad + height, pad : pad + width]), 0, 255)
    return out


def grid(x0: int, x1: int, y0: int, y1: int, step: int) -> np.ndarray:
    ys, xs = np.mgrid[y0:y1:step, x0:x1:step]
    return np.stack([xs.ravel(), ys.ravel()], axis=-1).astype(np.float32)


# --- query points ------------------------------------------------------------------------------
def test_query_points_respect_mask_and_strides():
    H, W = 60, 80
    mask = np.zeros((H, W), dtype=bool)
    mask[10:40, 20:45] = True
    yy, xx = np.mgrid[:H, :W]
    mask |= (yy - 45) ** 2 + (xx - 60) ** 2 < 8**2
    pts, on = query_points(mask, person_stride=4, background_stride=12)
    assert pts.dtype == np.float32 and pts.shape == (len(on), 2) and on.dtype == bool
    person, background = pts[on], pts[~on]
    assert on[: len(person)].all() and not on[len(person) :].any()  # person points first
    x, y = person[:, 0].astype(int), person[:, 1].astype(int)
    np.testing.assert_array_equal(person, np.stack([x, y], -1))  # integer pixels
    assert ((x % 4 == 2) & (y % 4 == 2)).all()
    inner = binary_erosion(mask, iterations=1)
    assert inner[y, x].all()
    assert len(person) == inner[2::4, 2::4].sum()  # every grid node inside the eroded mask
    bx, by = background[:, 0].astype(int), background[:, 1].astype(int)
    assert ((bx % 12 == 6) & (by % 12 == 6)).all()
    outer = binary_dilation(mask, iterations=2)
    assert not outer[by, bx].any()
    assert len(background) == (~outer[6::12, 6::12]).sum()


def test_query_points_tiny_mask_falls_back_to_the_mask():
    mask = np.zeros((20, 20), dtype=bool)
    mask[6, 10] = True  # one pixel on the stride-4 grid: erosion would remove it
    pts, on = query_points(mask)
    np.testing.assert_array_equal(pts[on], [[10, 6]])
    with pytest.raises(ValueError, match=r"\[H,W\]"):
        query_points(np.zeros((2, 4, 4), dtype=bool))


# --- Lucas–Kanade --------------------------------------------------------------------------------
@pytest.mark.parametrize("velocity", [(1.3, -0.7), (2.0, 1.0)])
def test_lk_recovers_translation(velocity):
    T, H, W = 6, 96, 128
    frames = translating(H, W, T, velocity)
    pts = grid(20, W - 20, 20, H - 20, 6)
    tracks = track_lk(frames, pts)
    truth = pts[None] + np.arange(T)[:, None, None] * np.asarray(velocity, dtype=np.float32)
    epe = np.linalg.norm(tracks.points - truth, axis=-1)
    assert tracks.points.shape == (T, len(pts), 2) and tracks.points.dtype == np.float32
    assert tracks.visible.all()
    assert epe[1:].mean() < 0.3, epe[1:].mean()
    np.testing.assert_array_equal(tracks.points[0], pts)


def test_lk_tracks_backward_from_a_middle_query_frame():
    T, H, W, q = 6, 96, 128, 3
    v = np.array([1.3, -0.7], dtype=np.float32)
    frames = translating(H, W, T, tuple(v))
    pts = grid(24, W - 24, 24, H - 24, 8)
    tracks = LKTracker().track(frames, pts, query_frame=q)
    truth = pts[None] + (np.arange(T) - q)[:, None, None] * v
    assert tracks.query_frame == q and tracks.visible.all()
    assert np.linalg.norm(tracks.points - truth, axis=-1).mean() < 0.3


def _occluded_clip():
    T, H, W = 6, 160, 224
    base, other = texture(H, W, 10), texture(H, W, 20)
    frames = np.repeat(base[None], T, axis=0)
    frames[3:, 60:100, 90:140] = other[60:100, 90:140]  # a textured occluder appears at frame 3
    pts = grid(4, W, 4, H, 8)
    x, y = pts[:, 0], pts[:, 1]
    inner = (x >= 93) & (x < 137) & (y >= 63) & (y < 97)  # under it, away from its edge
    far = (x < 60) | (x > 170) | (y < 30) | (y > 130)
    return np.clip(np.rint(frames), 0, 255).astype(np.uint8), pts, inner, far


def test_forward_backward_check_drops_points_under_an_appearing_occluder():
    frames, pts, inner, far = _occluded_clip()
    tracks = track_lk(frames, pts)
    assert tracks.visible[:3].all()  # static texture before the occluder
    assert (~tracks.visible[3:, inner]).mean() >= 0.9
    assert tracks.visible[3:, far].mean() >= 0.95
    # once lost, a point stays lost and keeps its last position
    lost = inner & ~tracks.visible[3]
    assert not tracks.visible[4:, lost].any()
    np.testing.assert_array_equal(tracks.points[5, lost], tracks.points[2, lost])
    # without the check (huge threshold) most of them would have been kept
    loose = track_lk(frames, pts, fb_threshold=1e9)
    assert loose.visible[3, inner].mean() > tracks.visible[3, inner].mean()
    # the optional photometric check drops the rest
    strict = track_lk(frames, pts, max_error=9.0)
    assert not strict.visible[3:, inner].any() and strict.visible[3:, far].mean() >= 0.9


def test_points_leaving_the_image_become_invisible():
    T, H, W = 8, 96, 128
    frames = translating(H, W, T, (5.0, 0.0), seed=3)
    pts = np.array([[W - 12, 48], [W - 30, 40], [40, 50]], dtype=np.float32)
    tracks = track_lk(frames, pts, on_person=np.array([True, False, False]))
    true_x = pts[None, :, 0] + 5.0 * np.arange(T)[:, None]
    assert tracks.visible[true_x <= W - 1 - 8].all()  # well inside (LK may drop a point within half a window)
    assert not tracks.visible[true_x > W - 1].any()  # outside the image
    assert tracks.visible[:, 2].all() and not tracks.visible[-1, :2].any()
    assert (np.diff(tracks.visible.astype(int), axis=0) <= 0).all()  # never re-acquired
    assert (tracks.points[..., 0] <= W - 1).all()  # lost points hold their last in-image position
    last = tracks.visible[:, 0].sum() - 1
    np.testing.assert_array_equal(tracks.points[-1, 0], tracks.points[last, 0])
    np.testing.assert_array_equal(tracks.on_person, [True, False, False])
    out = track_lk(frames, np.array([[-3.0, 10.0]], dtype=np.float32))
    assert not out.visible.any()


def test_tracks_validate_shapes():
    with pytest.raises(ValueError, match="visible"):
        Tracks(np.zeros((3, 4, 2), np.float32), np.zeros((3, 5), bool), np.zeros(4, bool))
    with pytest.raises(ValueError, match="on_person"):
        Tracks(np.zeros((3, 4, 2), np.float32), np.zeros((3, 4), bool), np.zeros(3, bool))
    with pytest.raises(ValueError, match="query_frame"):
        Tracks(np.zeros((3, 4, 2), np.float32), np.zeros((3, 4), bool), np.zeros(4, bool), query_frame=3)
    with pytest.raises(ValueError, match="uint8"):
        track_lk(np.zeros((2, 8, 8, 3), np.float32), np.zeros((1, 2)))


# --- CoTracker3 adapter ---------------------------------------------------------------------------
class FakeCoTracker(torch.nn.Module):
    """Mimics the CoTracker3 call: tracks = query xy moved by (red value of pixel (0,0) of frame t, -t) px;
    visibility score 0.9, or 0.1 for query points with x < 10."""

    def forward(self, video: torch.Tensor, queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        T = video.shape[1]
        xy = queries[:, :, 1:]  # [B,N,2]
        red = video[:, :, 0, 0, 0]  # [B,T]
        steps = torch.arange(T, dtype=video.dtype)[None].expand_as(red)
        offset = torch.stack([red - queries[0, 0, 0], -steps], dim=-1)  # [B,T,2]
        tracks = xy[:, None] + offset[:, :, None]
        vis = torch.where(xy[..., 0] < 10, 0.1, 0.9)[:, None].expand(-1, T, -1)
        return tracks, vis


class BadShapeTracker(torch.nn.Module):
    def forward(self, video: torch.Tensor, queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return queries[:, :, 1:], queries[:, :, 0]


def _script(module: torch.nn.Module, path) -> str:
    torch.jit.script(module).save(str(path))
    return str(path)


def test_cotracker_adapter_glue(tmp_path):
    T, H, W, q = 5, 16, 24, 2
    frames = np.zeros((T, H, W, 3), dtype=np.uint8)
    frames[:, 0, 0, 0] = [10, 20, 30, 40, 50]  # red channel of pixel (0,0) per frame
    frames[:, 0, 0, 1] = 200  # green: the adapter must not swap channels
    pts = np.array([[4.0, 3.0], [12.5, 7.0]], dtype=np.float32)
    tracker = build_tracker("cotracker3", _script(FakeCoTracker(), tmp_path / "fake.pt"))
    assert isinstance(tracker, CoTrackerAdapter)
    tracks = tracker.track(frames, pts, on_person=np.array([True, False]), query_frame=q)
    expect = pts[None] + np.stack([frames[:, 0, 0, 0] - q, -np.arange(T)], -1)[:, None].astype(np.float32)
    np.testing.assert_allclose(tracks.points, expect)
    assert tracks.points.dtype == np.float32 and tracks.visible.dtype == bool
    np.testing.assert_array_equal(tracks.visible, np.tile([False, True], (T, 1)))
    assert tracks.query_frame == q and tracks.on_person.tolist() == [True, False]


def test_cotracker_adapter_errors(tmp_path):
    missing = tmp_path / "nope" / "cotracker3.pt"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        CoTrackerAdapter(missing)
    with pytest.raises(ValueError, match="needs model_path"):
        build_tracker("cotracker3")
    with pytest.raises(ValueError, match="unknown tracker"):
        build_tracker("raft")
    assert isinstance(build_tracker("LK"), LKTracker)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="TorchScript"):
        CoTrackerAdapter(junk)
    bad = CoTrackerAdapter(_script(BadShapeTracker(), tmp_path / "bad.pt"))
    with pytest.raises(ValueError, match=r"tracks must be \[1,T,N,2\]"):
        bad.track(np.zeros((3, 8, 8, 3), np.uint8), np.zeros((4, 2), np.float32))
