"""Per-clip annotation files: one compressed ``.npz`` per clip, with a JSON header.

| key | shape, dtype | meaning |
|---|---|---|
| ``keypoints`` | [T,18,2] float32 | OpenPose-18 pixels (x right, y down) of the detected person |
| ``confidence`` | [T,18] float32 | detector confidence in [0,1]; 0 = not found / outside the frame |
| ``mask_bits`` | packed uint8 | person mask [T,H,W] bool, ``np.packbits`` over the flattened array |
| ``tracks`` | [T,N,2] float32 | point tracks (pixels); ``track_visible`` [T,N] bool |
| ``track_on_person`` | [N] bool | query point on the person (else background) |
| ``extra_keypoints`` | [P,T,18,2] float32 | other people (P may be 0); drawn in the skeleton video |
| ``extra_confidence`` | [P,T,18] float32 | their confidence |
| ``header`` | JSON | format_version, clip_id, T/H/W, query_frame, caption, motion_prompt, annotators |

Masks pack to one bit a pixel (a 17×96×144 clip: 29 KB before compression).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from components.io.atomic import atomic_path

FORMAT_VERSION = 1


@dataclass
class ClipAnnotation:
    """Everything the annotate stage learned about one clip."""

    clip_id: str
    keypoints: np.ndarray
    confidence: np.ndarray
    mask: np.ndarray
    tracks: np.ndarray
    track_visible: np.ndarray
    track_on_person: np.ndarray
    query_frame: int = 0
    caption: str = ""
    motion_prompt: str = ""
    annotators: dict = field(default_factory=dict)
    extra_keypoints: np.ndarray | None = None
    extra_confidence: np.ndarray | None = None

    def __post_init__(self):
        T = self.keypoints.shape[0]
        if self.extra_keypoints is None:
            self.extra_keypoints = np.zeros((0, T, 18, 2), np.float32)
            self.extra_confidence = np.zeros((0, T, 18), np.float32)
        checks = {
            "keypoints": (self.keypoints.shape, (T, 18, 2)),
            "confidence": (self.confidence.shape, (T, 18)),
            "mask": (self.mask.shape[:1], (T,)),
            "tracks": (self.tracks.shape[:1] + self.tracks.shape[2:], (T, 2)),
            "track_visible": (self.track_visible.shape, self.tracks.shape[:2]),
            "track_on_person": (self.track_on_person.shape, self.tracks.shape[1:2]),
            "extra_keypoints": (self.extra_keypoints.shape[1:], (T, 18, 2)),
            "extra_confidence": (self.extra_confidence.shape, self.extra_keypoints.shape[:3]),
        }
        for name, (got, want) in checks.items():
            if tuple(got) != tuple(want):
                raise ValueError(f"ClipAnnotation {self.clip_id}: {name} has shape {got}, expected {want}")

    def save(self, path: str | Path) -> Path:
        """Write the .npz atomically."""
        path = Path(path)
        header = {
            "format_version": FORMAT_VERSION,
            "clip_id": self.clip_id,
            "frames": int(self.mask.shape[0]),
            "height": int(self.mask.shape[1]),
            "width": int(self.mask.shape[2]),
            "query_frame": int(self.query_frame),
            "caption": self.caption,
            "motion_prompt": self.motion_prompt,
            "annotators": self.annotators,
        }
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(
                fh,
                header=np.array(json.dumps(header)),
                keypoints=self.keypoints.astype(np.float32),
                confidence=self.confidence.astype(np.float32),
                mask_bits=np.packbits(self.mask.astype(bool).ravel()),
                tracks=self.tracks.astype(np.float32),
                track_visible=self.track_visible.astype(bool),
                track_on_person=self.track_on_person.astype(bool),
                extra_keypoints=self.extra_keypoints.astype(np.float32),
                extra_confidence=self.extra_confidence.astype(np.float32),
            )
        return path

    @classmethod
    def load(cls, path: str | Path) -> ClipAnnotation:
        with np.load(path, allow_pickle=False) as z:
            head = json.loads(str(z["header"]))
            if head.get("format_version") != FORMAT_VERSION:
                raise ValueError(
                    f"{path}: annotation format {head.get('format_version')} != {FORMAT_VERSION}"
                )
            T, H, W = head["frames"], head["height"], head["width"]
            mask = np.unpackbits(z["mask_bits"], count=T * H * W).astype(bool).reshape(T, H, W)
            return cls(
                clip_id=head["clip_id"],
                keypoints=z["keypoints"],
                confidence=z["confidence"],
                mask=mask,
                tracks=z["tracks"],
                track_visible=z["track_visible"],
                track_on_person=z["track_on_person"],
                query_frame=head["query_frame"],
                caption=head["caption"],
                motion_prompt=head["motion_prompt"],
                annotators=head["annotators"],
                extra_keypoints=z.get("extra_keypoints"),
                extra_confidence=z.get("extra_confidence"),
            )
