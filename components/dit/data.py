"""Training examples of the MoSA modules: each clip's tensors, computed once with the frozen models.

The base transformer, VAE and text encoder are frozen while the structure blocks and HADC train, so
everything they compute from a clip is a constant: it is computed once per clip (``build_examples``)
and kept in memory, optionally also on disk as one safetensors file per clip under ``cache_dir``,
named by a content hash of the clip, the settings and the frozen models (a changed clip, setting or
model is a cache miss, never a stale hit).

Per clip (``DiTExample``), with ``T`` frames of ``H×W`` and latents ``[F,C,h,w]``:
- ``latents``: ``spec.vae_encode`` of the video mapped to [-1, 1] (posterior mean);
- ``structure``: the skeleton video in [-1, 1] ``[3,T,H,W]`` for ``skeleton_encoder="conv"``, or its
  VAE latents ``[F,C,h,w]`` for ``"vae"``;
- ``mask_latents``: ``E(mask)`` of Eq. 6, the VAE latents of the person mask as a 3-channel ±1 video
  (zeros and ``has_mask=False`` when the clip has no mask);
- ``text_emb``: the text encoder's token states ``[V,L,D]`` of the clip's caption variants
  (``components.data.caption_variants``: the caption first, then its motion-only prompt with other
  subjects); a batch takes one variant per item (``ExampleSet.batch``'s ``short_caption_prob``);
- ``tracks``: ground-truth person tracks normalised to [0, 1] (``u = x/(W−1)``, ``v = y/(H−1)``, so
  the first and last pixel centres map to 0 and 1) ``[T,N,2]``, ``track_visible`` ``[T,N]`` and the
  query frame ``query_t``. Person tracks are those visible and inside the person mask in the query
  frame, which is the frame with the most such tracks (earliest on ties); they are subsampled evenly
  (deterministic) to at most ``track_points`` and padded with invisible points to exactly that many,
  so clips stack into batches. ``has_points`` is False when no person track exists;
- ``person_mask``: the pixel-level person mask ``[T,H,W]`` (bool) for the contact loss;
- ``K``, ``R``, ``t``: per-frame cameras ``[T,3,3]``, ``[T,3,3]``, ``[T,3]`` that lift decoded depth to
  one world frame for the contact loss: the synthetic renderer's cameras when the clip has them,
  otherwise a static pinhole camera with a ``default_fov`` vertical field of view (identity pose).

Skeleton augmentation for image-to-video training (MoSA's I2V variant randomly translates and scales
the skeletons): ``SkeletonAugment`` draws ``variants`` random similarity transforms per clip (seeded by
the clip's content hash), applies each to the whole skeleton video (nearest-neighbour, so the
DWPose colours stay exact; black outside) and caches each variant's structure input; ``batch`` picks
a variant per step. Video, mask and tracks are not moved: the skeleton then no longer lines up with
the pixels exactly, which is what I2V training wants (the image prompt fixes the appearance).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from tqdm import tqdm

from components.backbone.spec import BackboneSpec
from components.data.caption_variants import caption_variants, pick_variant
from components.data.clipset import ClipSample
from components.io.atomic import atomic_path
from components.motion.camera import intrinsics

StructureKind = Literal["vae", "conv"]
EncodeText = Callable[[list[str]], Tensor]

CACHE_VERSION = 2  # 2: text_emb holds every caption variant [V,L,D]
DEFAULT_FOV = 45.0
_TENSOR_FIELDS = (
    "latents",
    "mask_latents",
    "text_emb",
    "tracks",
    "track_visible",
    "person_mask",
    "K",
    "R",
    "t",
)


class SkeletonAugment(BaseModel):
    """Random translation and scaling of the skeleton video (I2V training); see the module docstring."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_shift: float = Field(0.1, ge=0, le=1, description="largest shift, as a share of the frame side")
    min_scale: float = Field(0.85, gt=0)
    max_scale: float = Field(1.15, gt=0)
    variants: int = Field(4, ge=1, description="augmented copies cached per clip")
    seed: int = 0

    @model_validator(mode="after")
    def _ordered(self) -> SkeletonAugment:
        if self.min_scale > self.max_scale:
            raise ValueError(f"min_scale {self.min_scale} must not exceed max_scale {self.max_scale}")
        return self


@dataclass
class DiTExample:
    """One clip's cached tensors (see the module docstring); ``structure`` holds one entry per variant."""

    clip_id: str
    latents: Tensor
    structure: list[Tensor]
    mask_latents: Tensor
    text_emb: Tensor
    tracks: Tensor
    track_visible: Tensor
    query_t: int
    person_mask: Tensor
    K: Tensor
    R: Tensor
    t: Tensor
    has_mask: bool
    has_points: bool
    structure_kind: StructureKind
    key: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def frame_size(self) -> tuple[int, int]:
        """``(H, W)`` of the clip."""
        return int(self.person_mask.shape[1]), int(self.person_mask.shape[2])

    def save(self, path: Path | str) -> None:
        """Write the example as one safetensors file (tensors + JSON metadata), atomically."""
        tensors = {name: getattr(self, name).contiguous() for name in _TENSOR_FIELDS}
        for i, s in enumerate(self.structure):
            tensors[f"structure_{i}"] = s.contiguous()
        meta = {
            "version": CACHE_VERSION,
            "clip_id": self.clip_id,
            "query_t": self.query_t,
            "has_mask": self.has_mask,
            "has_points": self.has_points,
            "structure_kind": self.structure_kind,
            "variants": len(self.structure),
            "key": self.key,
        }
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata={"mosa": json.dumps(meta)})

    @classmethod
    def load(cls, path: Path | str) -> DiTExample:
        """Read a file written by ``save``."""
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("mosa", "{}"))
        if meta.get("version") != CACHE_VERSION:
            raise ValueError(
                f"{path}: cache version {meta.get('version')!r} is not {CACHE_VERSION}; delete it"
            )
        tensors = load_file(str(path))
        return cls(
            clip_id=meta["clip_id"],
            structure=[tensors[f"structure_{i}"] for i in range(int(meta["variants"]))],
            query_t=int(meta["query_t"]),
            has_mask=bool(meta["has_mask"]),
            has_points=bool(meta["has_points"]),
            structure_kind=meta["structure_kind"],
            key=meta.get("key", ""),
            **{name: tensors[name] for name in _TENSOR_FIELDS},
        )


# ---------------------------------------------------------------- per-clip pieces


def check_sample(sample: ClipSample) -> str | None:
    """Why ``sample`` cannot train the MoSA modules (a quarantine reason), or None if it can."""
    if sample.skeleton is None:
        return "no skeleton video (run the annotate stage with skeleton_videos: true)"
    if sample.skeleton.shape != sample.video.shape:
        return f"skeleton video {sample.skeleton.shape} does not match the video {sample.video.shape}"
    if sample.mask is not None and sample.mask.shape != sample.video.shape[:3]:
        return f"mask {sample.mask.shape} does not match the video frames {sample.video.shape[:3]}"
    if sample.tracks is not None and (
        sample.tracks.ndim != 3
        or sample.tracks.shape[0] != len(sample.video)
        or sample.track_visible is None
        or sample.track_visible.shape != sample.tracks.shape[:2]
    ):
        return "tracks must be [T,N,2] with track_visible [T,N] over the clip's frames"
    return None


def to_unit_video(frames: np.ndarray) -> Tensor:
    """uint8 ``[T,H,W,3]`` → float ``[3,T,H,W]`` in [-1, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).float().div_(127.5).sub_(1.0)
    return x.permute(3, 0, 1, 2).contiguous()


def mask_video(mask: np.ndarray) -> Tensor:
    """Person mask bool ``[T,H,W]`` → the 3-channel ±1 video ``[3,T,H,W]`` whose VAE latent is E(mask)."""
    m = torch.from_numpy(np.ascontiguousarray(mask)).bool()
    return torch.where(m, 1.0, -1.0)[None].expand(3, *m.shape).contiguous()


def select_person_tracks(
    tracks: np.ndarray | None,
    visible: np.ndarray | None,
    mask: np.ndarray | None,
    max_points: int,
    shape: tuple[int, int, int],
) -> tuple[np.ndarray, np.ndarray, int, bool]:
    """Person tracks normalised to [0, 1], padded to ``max_points`` → ``(tracks, visible, query_t, has)``.

    ``shape`` is the clip's ``(T, H, W)``. See the module docstring for the rule; without a mask every
    visible track counts as a person's.
    """
    t, h, w = shape
    if tracks is None or visible is None or tracks.shape[1] == 0:
        return np.zeros((t, max_points, 2), np.float32), np.zeros((t, max_points), bool), 0, False
    vis = visible.astype(bool) & np.isfinite(tracks).all(-1)
    if mask is not None:
        xi = np.clip(np.rint(np.nan_to_num(tracks[..., 0])), 0, w - 1).astype(int)
        yi = np.clip(np.rint(np.nan_to_num(tracks[..., 1])), 0, h - 1).astype(int)
        on_person = mask[np.arange(t)[:, None], yi, xi] & vis
    else:
        on_person = vis
    counts = on_person.sum(axis=1)
    query_t = int(np.argmax(counts))
    chosen = np.flatnonzero(on_person[query_t])
    if len(chosen) > max_points:
        chosen = chosen[np.unique(np.linspace(0, len(chosen) - 1, max_points).round().astype(int))]
    out = np.zeros((t, max_points, 2), np.float32)
    out_vis = np.zeros((t, max_points), bool)
    scale = np.array([max(w - 1, 1), max(h - 1, 1)], np.float64)
    out[:, : len(chosen)] = np.nan_to_num(tracks[:, chosen] / scale).astype(np.float32)
    out_vis[:, : len(chosen)] = vis[:, chosen]
    return out, out_vis, query_t, len(chosen) > 0


def augment_skeleton(frames: np.ndarray, rng: np.random.Generator, aug: SkeletonAugment) -> np.ndarray:
    """One random similarity transform (scale about the centre, then shift) of a uint8 ``[T,H,W,3]``
    skeleton video; nearest-neighbour, black outside."""
    _, h, w, _ = frames.shape
    scale = rng.uniform(aug.min_scale, aug.max_scale)
    dx, dy = rng.uniform(-aug.max_shift, aug.max_shift, size=2) * np.array([w, h])
    cx, cy = (w - 1) / 2, (h - 1) / 2
    matrix = np.array([[scale, 0, (1 - scale) * cx + dx], [0, scale, (1 - scale) * cy + dy]], np.float64)
    return np.stack(
        [
            cv2.warpAffine(
                np.ascontiguousarray(f), matrix, (w, h), flags=cv2.INTER_NEAREST, borderValue=(0, 0, 0)
            )
            for f in frames
        ]
    )


def clip_cameras(sample: ClipSample, default_fov: float = DEFAULT_FOV) -> tuple[Tensor, Tensor, Tensor]:
    """Per-frame ``(K [T,3,3], R [T,3,3], t [T,3])``: the clip's own cameras or a static default one."""
    n, h, w = sample.video.shape[:3]
    if sample.K is not None and sample.R is not None and sample.t is not None:
        k = np.broadcast_to(np.asarray(sample.K, np.float32), (n, 3, 3))
        r = np.broadcast_to(np.asarray(sample.R, np.float32), (n, 3, 3))
        t = np.broadcast_to(np.asarray(sample.t, np.float32), (n, 3))
    else:
        k = np.broadcast_to(intrinsics(default_fov, h, w).astype(np.float32), (n, 3, 3))
        r = np.broadcast_to(np.eye(3, dtype=np.float32), (n, 3, 3))
        t = np.zeros((n, 3), np.float32)
    return (torch.from_numpy(k.copy()), torch.from_numpy(r.copy()), torch.from_numpy(t.copy()))


# ---------------------------------------------------------------- cache keys


def models_fingerprint(vae: nn.Module, encode_text: EncodeText) -> str:
    """A hash of the frozen VAE's weights and of the text encoder's answer to a probe sentence."""
    h = hashlib.sha256()
    for name, value in sorted(vae.state_dict().items()):
        h.update(name.encode())
        h.update(str((tuple(value.shape), str(value.dtype))).encode())
        h.update(value.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    probe = encode_text(["a person walks forward"]).detach().to("cpu", torch.float32)
    h.update(probe.numpy().tobytes())
    return h.hexdigest()


def _sample_hash(sample: ClipSample, text: str, settings: dict) -> str:
    h = hashlib.sha256()
    h.update(json.dumps({"text": text, **settings}, sort_keys=True).encode())
    for name in ("video", "skeleton", "mask", "tracks", "track_visible", "K", "R", "t"):
        arr = getattr(sample, name)
        h.update(name.encode())
        if arr is None:
            h.update(b"none")
            continue
        arr = np.ascontiguousarray(arr)
        h.update(str((arr.shape, arr.dtype.str)).encode())
        h.update(arr.tobytes())
    return h.hexdigest()


# ---------------------------------------------------------------- building


@torch.no_grad()
def _encode(spec: BackboneSpec, vae: nn.Module, video: Tensor) -> Tensor:
    """``[3,T,H,W]`` in [-1, 1] → float32 CPU latents ``[F,C,h,w]``."""
    return spec.vae_encode(vae, video[None])[0].to("cpu", torch.float32)


def build_examples(
    samples: Sequence[ClipSample],
    spec: BackboneSpec,
    vae: nn.Module,
    encode_text: EncodeText,
    structure: StructureKind = "vae",
    track_points: int = 64,
    augment: SkeletonAugment | None = None,
    default_fov: float = DEFAULT_FOV,
    cache_dir: Path | str | None = None,
    progress: bool = False,
) -> list[DiTExample]:
    """One ``DiTExample`` per sample, encoded with the frozen ``vae`` and ``encode_text`` (see module).

    ``encode_text(texts) -> [B,L,D]`` must give every text the same length ``L`` (a padded token
    encoder), so clips stack into batches. Samples that cannot train raise ``ValueError`` naming the
    clip and the reason (use ``check_sample`` first to quarantine them instead).
    """
    if structure not in ("vae", "conv"):
        raise ValueError(
            f"structure must be 'vae' or 'conv' (MoSAConfig.skeleton_encoder), got {structure!r}"
        )
    if track_points < 1:
        raise ValueError(f"track_points must be >= 1, got {track_points}")
    for s in samples:
        reason = check_sample(s)
        if reason:
            raise ValueError(f"clip {s.clip_id}: {reason}")
    vae.requires_grad_(False).eval()
    cache = Path(cache_dir) if cache_dir is not None else None
    settings = {
        "cache_version": CACHE_VERSION,
        "backbone": spec.name,
        "structure": structure,
        "track_points": track_points,
        "augment": augment.model_dump() if augment is not None else None,
        "default_fov": default_fov,
        "models": models_fingerprint(vae, encode_text) if cache is not None else "",
    }
    variants = [caption_variants(s.caption, s.motion_prompt) for s in samples]
    keys = [_sample_hash(s, "\n".join(v), settings) for s, v in zip(samples, variants, strict=True)]
    out: list[DiTExample | None] = [None] * len(samples)
    todo = []
    for i, key in enumerate(keys):
        path = cache / f"{key}.safetensors" if cache is not None else None
        if path is not None and path.is_file():
            out[i] = DiTExample.load(path)
            out[i].clip_id = samples[i].clip_id
        else:
            todo.append(i)
    if todo:
        flat = [t for i in todo for t in variants[i]]
        text_emb = encode_text(flat).detach().to("cpu", torch.float32)
        if text_emb.ndim != 3 or text_emb.shape[0] != len(flat):
            raise ValueError(
                f"encode_text must return [B,L,D] token states for B={len(flat)} texts, "
                f"got shape {tuple(text_emb.shape)}"
            )
        starts = np.cumsum([0] + [len(variants[i]) for i in todo])
        for j, i in enumerate(tqdm(todo, desc="encode clips", unit="clip", disable=not progress)):
            emb = text_emb[starts[j] : starts[j + 1]]
            example = _build_one(
                samples[i], spec, vae, emb, structure, track_points, augment, default_fov, keys[i]
            )
            if cache is not None:
                example.save(cache / f"{keys[i]}.safetensors")
            out[i] = example
    return [e for e in out if e is not None]


def _build_one(
    sample: ClipSample,
    spec: BackboneSpec,
    vae: nn.Module,
    text_emb: Tensor,
    structure: StructureKind,
    track_points: int,
    augment: SkeletonAugment | None,
    default_fov: float,
    key: str,
) -> DiTExample:
    n, h, w = sample.video.shape[:3]
    latents = _encode(spec, vae, to_unit_video(sample.video))
    skeletons = [sample.skeleton]
    if augment is not None:
        rng = np.random.default_rng([augment.seed, int(key[:12], 16)])
        skeletons = [augment_skeleton(sample.skeleton, rng, augment) for _ in range(augment.variants)]
    structures = [
        _encode(spec, vae, to_unit_video(s)) if structure == "vae" else to_unit_video(s) for s in skeletons
    ]
    has_mask = sample.mask is not None
    person = sample.mask.astype(bool) if has_mask else np.zeros((n, h, w), bool)
    mask_latents = _encode(spec, vae, mask_video(person)) if has_mask else torch.zeros_like(latents)
    tracks, vis, query_t, has_points = select_person_tracks(
        sample.tracks, sample.track_visible, sample.mask if has_mask else None, track_points, (n, h, w)
    )
    k, r, t = clip_cameras(sample, default_fov)
    return DiTExample(
        clip_id=sample.clip_id,
        latents=latents,
        structure=structures,
        mask_latents=mask_latents,
        text_emb=text_emb.clone(),
        tracks=torch.from_numpy(tracks),
        track_visible=torch.from_numpy(vis),
        query_t=query_t,
        person_mask=torch.from_numpy(np.ascontiguousarray(person)),
        K=k,
        R=r,
        t=t,
        has_mask=has_mask,
        has_points=has_points,
        structure_kind=structure,
        key=key,
    )


# ---------------------------------------------------------------- batching


def collate(
    examples: Sequence[DiTExample], variant: int = 0, texts: Sequence[int] | None = None
) -> dict[str, Tensor]:
    """Stack examples into a batch dict (structure variant ``variant`` modulo each clip's count; item
    ``i`` takes caption variant ``texts[i]``, default the caption itself)."""
    if not examples:
        raise ValueError("collate needs at least one example")
    texts = [0] * len(examples) if texts is None else list(texts)
    if len(texts) != len(examples):
        raise ValueError(f"{len(texts)} caption choices for {len(examples)} examples")
    for e, k in zip(examples, texts, strict=True):
        if e.text_emb.ndim != 3:
            raise ValueError(
                f"{e.clip_id}: text_emb must be [V,L,D] (one row per caption variant), got "
                f"{tuple(e.text_emb.shape)}; build examples with build_examples or add the variant axis"
            )
        if not 0 <= k < e.text_emb.shape[0]:
            raise ValueError(f"{e.clip_id} has {e.text_emb.shape[0]} caption variants, asked for {k}")
    first = examples[0]
    for e in examples[1:]:
        for name in ("latents", "text_emb", "tracks", "person_mask"):
            a, b = getattr(first, name), getattr(e, name)
            if name == "text_emb":
                a, b = a[0], b[0]
            if a.shape != b.shape:
                hint = (
                    "encode every caption with a fixed-length (padded) text encoder"
                    if name == "text_emb"
                    else "build every clip at the same size and frame count"
                )
                raise ValueError(
                    f"cannot batch {first.clip_id} and {e.clip_id}: {name} shapes {tuple(a.shape)} and "
                    f"{tuple(b.shape)} differ; {hint}"
                )
        if e.structure_kind != first.structure_kind:
            raise ValueError(
                f"cannot batch {first.clip_id} ({first.structure_kind}) and {e.clip_id} ({e.structure_kind})"
            )
    batch = {
        name: torch.stack([getattr(e, name) for e in examples])
        for name in _TENSOR_FIELDS
        if name != "text_emb"
    }
    batch["text_emb"] = torch.stack([e.text_emb[k] for e, k in zip(examples, texts, strict=True)])
    batch["structure"] = torch.stack([e.structure[variant % len(e.structure)] for e in examples])
    batch["query_t"] = torch.tensor([e.query_t for e in examples], dtype=torch.long)
    batch["has_mask"] = torch.tensor([e.has_mask for e in examples])
    batch["has_points"] = torch.tensor([e.has_points for e in examples])
    return batch


class ExampleSet:
    """Examples with a deterministic batch order: ``batch(step, batch_size, seed)``.

    Step ``s`` takes positions ``s·B .. s·B+B−1`` of an endless sequence made of one random
    permutation of the examples per epoch (seeded by ``seed`` and the epoch), so any step's batch is
    known without replaying the earlier ones (exact resume). The structure variant is drawn the same way,
    and so is each item's caption variant (``pick_variant``: a short rewording with probability
    ``short_caption_prob``).
    """

    def __init__(self, examples: Sequence[DiTExample], short_caption_prob: float = 0.0) -> None:
        if not examples:
            raise ValueError("ExampleSet needs at least one example (did every clip fail check_sample?)")
        if not 0.0 <= short_caption_prob <= 1.0:
            raise ValueError(f"short_caption_prob must lie in [0, 1], got {short_caption_prob}")
        self.examples = list(examples)
        self.short_caption_prob = short_caption_prob

    def __len__(self) -> int:
        return len(self.examples)

    def indices(self, step: int, batch_size: int, seed: int = 0) -> list[int]:
        """Example indices of ``step``'s batch."""
        if step < 0 or batch_size < 1:
            raise ValueError(f"need step >= 0 and batch_size >= 1, got {step} and {batch_size}")
        n = len(self.examples)
        out = []
        for pos in range(step * batch_size, (step + 1) * batch_size):
            epoch, k = divmod(pos, n)
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
            out.append(int(perm[k]))
        return out

    def batch(self, step: int, batch_size: int, seed: int = 0) -> dict[str, Tensor | int]:
        """The batch of ``step`` (collated tensors plus ``"step"``)."""
        idx = self.indices(step, batch_size, seed)
        variants = max(len(e.structure) for e in self.examples)
        variant = int(torch.randint(variants, (1,), generator=torch.Generator().manual_seed(seed + 7 * step)))
        rng = np.random.default_rng([seed, step, 3])
        picked = [self.examples[i] for i in idx]
        texts = [pick_variant(rng, e.text_emb.shape[0], self.short_caption_prob) for e in picked]
        out: dict[str, Tensor | int] = dict(collate(picked, variant, texts))
        out["step"] = step
        return out


def seed_cache(source: Path, target: Path) -> int:
    """Hard-link (copy across file systems) the cached examples of ``source`` missing from ``target``.

    Cache files are keyed by content, so a variant that changes what it encodes (``structure: 3d``
    draws other skeletons) simply misses and writes its own files into ``target``; ``source`` is never
    written. Returns the number of files added."""
    if not source.is_dir():
        return 0
    target.mkdir(parents=True, exist_ok=True)
    added = 0
    for f in sorted(source.glob("*.safetensors")):
        dst = target / f.name
        if dst.exists():
            continue
        try:
            os.link(f, dst)
        except OSError:
            shutil.copy2(f, dst)
        added += 1
    return added
