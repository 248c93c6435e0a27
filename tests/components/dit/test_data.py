"""Cached MoSA training examples: encodings, person-track selection, disk cache, augmentation, batches."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from components.backbone.config import TinyConfig
from components.backbone.spec import get_spec
from components.data.caption_variants import caption_variants
from components.data.clipset import ClipSample
from components.dit.data import (
    DiTExample,
    ExampleSet,
    SkeletonAugment,
    augment_skeleton,
    build_examples,
    check_sample,
    collate,
    mask_video,
    seed_cache,
    select_person_tracks,
    to_unit_video,
)

torch.set_num_threads(1)
T, H, W = 9, 32, 48
TINY = TinyConfig(sample_frames=T, sample_height=H, sample_width=W)


class TokenEncoder:
    """A deterministic stand-in for the base's token text encoder: [B, 4, 384] from the text's bytes."""

    calls = 0

    def __call__(self, texts: list[str]) -> torch.Tensor:
        TokenEncoder.calls += 1
        out = []
        for text in texts:
            seed = sum(text.encode()) + 31 * len(text)
            out.append(torch.randn(4, 384, generator=torch.Generator().manual_seed(seed)))
        return torch.stack(out)


def make_sample(
    clip_id: str = "c0", seed: int = 0, speed: int = 2, cameras: bool = False, tracks: bool = True
) -> ClipSample:
    """A textured static background with a textured 'person' block moving right by ``speed`` px/frame;
    exact mask, skeleton (a coloured bar through the block) and tracks (person grid + background)."""
    rng = np.random.default_rng(seed)
    bg = np.kron(rng.integers(30, 220, (H // 4, W // 4, 3)), np.ones((4, 4, 1))).astype(np.uint8)
    body = rng.integers(0, 255, (14, 8, 3)).astype(np.uint8)
    video = np.repeat(bg[None], T, axis=0)
    mask = np.zeros((T, H, W), bool)
    skeleton = np.zeros((T, H, W, 3), np.uint8)
    y0 = 10
    for t in range(T):
        x0 = 6 + speed * t
        video[t, y0 : y0 + 14, x0 : x0 + 8] = body
        mask[t, y0 : y0 + 14, x0 : x0 + 8] = True
        skeleton[t, y0 + 1 : y0 + 13, x0 + 3 : x0 + 5] = (255, 0, 85)
    ys, xs = np.mgrid[y0 + 2 : y0 + 13 : 3, 7:14:2]
    person = np.stack([xs.ravel(), ys.ravel()], -1).astype(np.float32)  # 16 points at t=0
    background = np.array([[40.0, 4.0], [44.0, 28.0], [2.0, 2.0]], np.float32)
    shift = np.array([speed, 0], np.float32)
    tr = np.stack([np.concatenate([person + t * shift, background]) for t in range(T)])
    vis = np.ones(tr.shape[:2], bool)
    sample = ClipSample(
        clip_id=clip_id,
        split="train",
        caption=f"a person walks to the right {clip_id}",
        motion_prompt="a person walks to the right",
        video=video,
        skeleton=skeleton,
        mask=mask,
        tracks=tr if tracks else None,
        track_visible=vis if tracks else None,
    )
    if cameras:
        f = 40.0
        sample.K = np.array([[f, 0, (W - 1) / 2], [0, f, (H - 1) / 2], [0, 0, 1]], np.float32)
        sample.R = np.repeat(np.eye(3, dtype=np.float32)[None], T, 0)
        sample.t = np.tile(np.array([0.0, 0.0, 3.0], np.float32), (T, 1))
    return sample


@pytest.fixture(scope="module")
def base():
    return get_spec("cogvideox").build_tiny(TINY)


def test_examples_hold_the_frozen_encodings(base) -> None:
    spec = get_spec("cogvideox")
    samples = [make_sample("a", 0), make_sample("b", 1, cameras=True)]
    examples = build_examples(samples, spec, base.vae, TokenEncoder(), structure="vae", track_points=8)
    assert [e.clip_id for e in examples] == ["a", "b"]
    e = examples[0]
    with torch.no_grad():
        video = spec.vae_encode(base.vae, to_unit_video(samples[0].video)[None])[0]
        skel = spec.vae_encode(base.vae, to_unit_video(samples[0].skeleton)[None])[0]
        mask = spec.vae_encode(base.vae, mask_video(samples[0].mask)[None])[0]
    assert e.latents.shape == (3, 4, 4, 6)
    torch.testing.assert_close(e.latents, video)
    torch.testing.assert_close(e.structure[0], skel)
    torch.testing.assert_close(e.mask_latents, mask)
    assert e.has_mask and e.has_points and e.frame_size == (H, W)
    assert torch.equal(e.person_mask, torch.from_numpy(samples[0].mask))
    # every caption variant's token states, the caption first (components/data/caption_variants.py)
    texts = caption_variants(samples[0].caption, samples[0].motion_prompt)
    assert texts[0] == samples[0].caption and "a woman walks to the right" in texts
    torch.testing.assert_close(e.text_emb, TokenEncoder()(texts))
    # the mask video is ±1 with three identical channels
    mv = mask_video(samples[0].mask)
    assert mv.shape == (3, T, H, W) and set(mv.unique().tolist()) == {-1.0, 1.0}
    # cameras: the clip's own, or a static default
    assert torch.equal(examples[1].t[:, 2], torch.full((T,), 3.0))
    assert torch.equal(e.R, torch.eye(3).expand(T, 3, 3)) and not e.t.any()
    conv = build_examples(samples[:1], spec, base.vae, TokenEncoder(), structure="conv")[0]
    assert conv.structure[0].shape == (3, T, H, W)
    torch.testing.assert_close(conv.structure[0], to_unit_video(samples[0].skeleton))


def test_person_tracks_are_selected_normalised_and_padded() -> None:
    s = make_sample()
    tracks, vis, qt, has = select_person_tracks(s.tracks, s.track_visible, s.mask, 32, (T, H, W))
    assert has and qt == 0 and tracks.shape == (T, 32, 2) and vis.shape == (T, 32)
    assert vis[:, :16].all() and not vis[:, 16:].any()  # 16 person points, the background ones left out
    torch.testing.assert_close(
        torch.from_numpy(tracks[:, :16] * np.float32([W - 1, H - 1])), torch.from_numpy(s.tracks[:, :16])
    )
    # subsampling is even and deterministic
    t4, v4, _, _ = select_person_tracks(s.tracks, s.track_visible, s.mask, 4, (T, H, W))
    assert v4.all()
    np.testing.assert_allclose(t4[0] * [W - 1, H - 1], s.tracks[0, [0, 5, 10, 15]], atol=1e-4)
    # the query frame is the one with the most visible person tracks
    vis_late = s.track_visible.copy()
    vis_late[:3, :10] = False
    _, _, qt, _ = select_person_tracks(s.tracks, vis_late, s.mask, 8, (T, H, W))
    assert qt == 3
    # no tracks: all padding, flagged
    tr, v, _, has = select_person_tracks(None, None, s.mask, 8, (T, H, W))
    assert not has and tr.shape == (T, 8, 2) and not v.any()


def test_disk_cache_is_keyed_by_content(base, tmp_path) -> None:
    spec = get_spec("cogvideox")
    enc = TokenEncoder()
    samples = [make_sample("a", 0), make_sample("b", 1)]
    first = build_examples(samples, spec, base.vae, enc, track_points=8, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.safetensors"))) == 2
    calls = TokenEncoder.calls
    again = build_examples(samples, spec, base.vae, enc, track_points=8, cache_dir=tmp_path)
    assert TokenEncoder.calls == calls + 1  # only the fingerprint probe: no caption was encoded
    for a, b in zip(first, again, strict=True):
        assert a.key == b.key and a.clip_id == b.clip_id and a.query_t == b.query_t
        assert torch.equal(a.latents, b.latents) and torch.equal(a.structure[0], b.structure[0])
        assert torch.equal(a.track_visible, b.track_visible) and a.has_points == b.has_points
    changed = make_sample("a", 0)
    changed.video[0, 0, 0] += 1
    build_examples([changed], spec, base.vae, enc, track_points=8, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.safetensors"))) == 3
    build_examples(samples[:1], spec, base.vae, enc, track_points=4, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.safetensors"))) == 4
    path = next(tmp_path.glob("*.safetensors"))
    assert isinstance(DiTExample.load(path), DiTExample)


def test_skeleton_augmentation_moves_and_scales_the_skeleton_only(base) -> None:
    s = make_sample()
    aug = SkeletonAugment(max_shift=0.2, min_scale=0.8, max_scale=1.2, variants=3)
    moved = augment_skeleton(s.skeleton, np.random.default_rng(0), aug)
    assert moved.shape == s.skeleton.shape
    colours = {tuple(c) for c in moved.reshape(-1, 3)}
    assert colours <= {(0, 0, 0), (255, 0, 85)}  # nearest-neighbour: exact colours
    assert not np.array_equal(moved, s.skeleton)
    identity = SkeletonAugment(max_shift=0.0, min_scale=1.0, max_scale=1.0, variants=1)
    assert np.array_equal(augment_skeleton(s.skeleton, np.random.default_rng(0), identity), s.skeleton)
    spec = get_spec("cogvideox")
    e = build_examples([s], spec, base.vae, TokenEncoder(), structure="conv", augment=aug)[0]
    assert len(e.structure) == 3 and not torch.equal(e.structure[0], e.structure[1])
    plain = build_examples([s], spec, base.vae, TokenEncoder(), structure="conv")[0]
    assert torch.equal(e.latents, plain.latents) and torch.equal(e.tracks, plain.tracks)
    again = build_examples([s], spec, base.vae, TokenEncoder(), structure="conv", augment=aug)[0]
    assert all(torch.equal(a, b) for a, b in zip(e.structure, again.structure, strict=True))
    with pytest.raises(ValueError, match=r"min_scale 1\.2 must not exceed max_scale 0\.9"):
        SkeletonAugment(min_scale=1.2, max_scale=0.9)


def test_batches_are_deterministic_and_cover_every_clip(base) -> None:
    spec = get_spec("cogvideox")
    samples = [make_sample(f"c{i}", i) for i in range(3)]
    data = ExampleSet(build_examples(samples, spec, base.vae, TokenEncoder(), track_points=8))
    b = data.batch(5, 2, seed=1)
    assert b["step"] == 5
    assert b["latents"].shape == (2, 3, 4, 4, 6) and b["structure"].shape == (2, 3, 4, 4, 6)
    assert b["tracks"].shape == (2, T, 8, 2) and b["person_mask"].shape == (2, T, H, W)
    assert b["query_t"].dtype == torch.long and b["has_points"].all()
    again = data.batch(5, 2, seed=1)
    assert all(torch.equal(b[k], again[k]) for k in b if k != "step")
    # each epoch is a permutation: three consecutive single-clip steps see every clip once
    for epoch in range(3):
        seen = sorted(data.indices(3 * epoch + k, 1, seed=0)[0] for k in range(3))
        assert seen == [0, 1, 2]
    assert [data.indices(s, 1, seed=0) for s in range(6)] != [data.indices(s, 1, seed=9) for s in range(6)]


def test_batches_take_a_short_caption_variant_at_the_set_rate(base) -> None:
    spec = get_spec("cogvideox")
    samples = [make_sample(f"c{i}", i) for i in range(3)]
    examples = build_examples(samples, spec, base.vae, TokenEncoder(), track_points=8)
    captions = {e.clip_id: e.text_emb[0] for e in examples}

    def share_short(prob: float) -> float:
        data = ExampleSet(examples, short_caption_prob=prob)
        short = total = 0
        for step in range(40):
            b = data.batch(step, 3, seed=0)
            for i, k in enumerate(data.indices(step, 3, seed=0)):
                total += 1
                short += not torch.equal(b["text_emb"][i], captions[examples[k].clip_id])
        return short / total

    assert share_short(0.0) == 0.0
    assert share_short(1.0) == 1.0
    assert 0.35 < share_short(0.5) < 0.65
    data = ExampleSet(examples, short_caption_prob=0.5)
    assert torch.equal(data.batch(7, 3, seed=2)["text_emb"], data.batch(7, 3, seed=2)["text_emb"])
    with pytest.raises(ValueError, match="short_caption_prob must lie in"):
        ExampleSet(examples, short_caption_prob=1.5)
    with pytest.raises(ValueError, match="has 5 caption variants, asked for 9"):
        collate(examples[:1], texts=[9])
    with pytest.raises(ValueError, match=r"text_emb must be \[V,L,D\]"):
        collate([replace(examples[0], text_emb=examples[0].text_emb[0])])


def test_clear_errors(base) -> None:
    spec = get_spec("cogvideox")
    s = make_sample()
    s.skeleton = None
    assert "no skeleton video" in check_sample(s)
    with pytest.raises(ValueError, match="clip c0: no skeleton video"):
        build_examples([s], spec, base.vae, TokenEncoder())
    with pytest.raises(ValueError, match="structure must be 'vae' or 'conv'"):
        build_examples([make_sample()], spec, base.vae, TokenEncoder(), structure="latent")
    bad_len = build_examples(
        [make_sample("x")], spec, base.vae, lambda texts: torch.zeros(len(texts), 5, 384)
    )
    ok = build_examples([make_sample("y")], spec, base.vae, TokenEncoder())
    with pytest.raises(
        ValueError, match=r"text_emb shapes .* differ; encode every caption with a fixed-length"
    ):
        collate([bad_len[0], ok[0]])
    with pytest.raises(ValueError, match="ExampleSet needs at least one example"):
        ExampleSet([])
    with pytest.raises(ValueError, match="encode_text must return"):
        build_examples([make_sample()], spec, base.vae, lambda texts: torch.zeros(len(texts), 384))


def test_seed_cache_links_missing_files_and_never_writes_the_source(tmp_path):
    src, dst = tmp_path / "train_dit", tmp_path / "variant" / "cache"
    src.mkdir()
    for name in ("a.safetensors", "b.safetensors"):
        (src / name).write_bytes(name.encode())
    (src / "notes.txt").write_text("not a cache file")
    dst.mkdir(parents=True)
    (dst / "b.safetensors").write_bytes(b"variant's own")
    assert seed_cache(src, dst) == 1
    assert (dst / "a.safetensors").read_bytes() == b"a.safetensors"
    assert (dst / "b.safetensors").read_bytes() == b"variant's own"  # existing files are kept
    assert not (dst / "notes.txt").exists()
    (dst / "c.safetensors").write_bytes(b"new")  # a variant's miss lands in its own cache only
    assert sorted(p.name for p in src.iterdir()) == ["a.safetensors", "b.safetensors", "notes.txt"]
    assert seed_cache(src, dst) == 0 and seed_cache(tmp_path / "missing", dst) == 0
