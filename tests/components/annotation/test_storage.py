"""Annotation files: round trip, packed masks, shape checks, atomic writes."""

from __future__ import annotations

import numpy as np
import pytest

from components.annotation.storage import ClipAnnotation


def _ann(T=5, H=12, W=20, N=7, seed=0) -> ClipAnnotation:
    rng = np.random.default_rng(seed)
    return ClipAnnotation(
        clip_id="c1",
        keypoints=rng.uniform(0, 20, (T, 18, 2)).astype(np.float32),
        confidence=rng.uniform(0, 1, (T, 18)).astype(np.float32),
        mask=rng.random((T, H, W)) > 0.6,
        tracks=rng.uniform(0, 20, (T, N, 2)).astype(np.float32),
        track_visible=rng.random((T, N)) > 0.3,
        track_on_person=rng.random(N) > 0.5,
        query_frame=2,
        caption="a person walks",
        motion_prompt="a person walks",
        annotators={"pose": "mediapipe"},
    )


def test_round_trip_is_exact(tmp_path):
    a = _ann()
    b = ClipAnnotation.load(a.save(tmp_path / "a.npz"))
    for key in ("keypoints", "confidence", "mask", "tracks", "track_visible", "track_on_person"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
    assert (b.query_frame, b.caption, b.annotators) == (2, "a person walks", {"pose": "mediapipe"})
    assert list(tmp_path.iterdir()) == [tmp_path / "a.npz"]  # no temp files left


def test_masks_are_packed(tmp_path):
    a = _ann(T=17, H=96, W=144, N=3)
    with np.load(a.save(tmp_path / "a.npz")) as z:
        assert z["mask_bits"].nbytes == 17 * 96 * 144 // 8


def test_shape_errors_name_the_field():
    a = _ann()
    with pytest.raises(ValueError, match="confidence"):
        ClipAnnotation(
            "x", a.keypoints, a.confidence[:, :17], a.mask, a.tracks, a.track_visible, a.track_on_person
        )
    with pytest.raises(ValueError, match="track_on_person"):
        ClipAnnotation(
            "x", a.keypoints, a.confidence, a.mask, a.tracks, a.track_visible, a.track_on_person[:3]
        )


def test_other_people_round_trip_and_default_to_none(tmp_path):
    import dataclasses

    a = _ann()
    assert a.extra_keypoints.shape == (0, 5, 18, 2) and a.extra_confidence.shape == (0, 5, 18)
    rng = np.random.default_rng(1)
    b = dataclasses.replace(
        a,
        extra_keypoints=rng.uniform(0, 20, (2, 5, 18, 2)).astype(np.float32),
        extra_confidence=rng.uniform(0, 1, (2, 5, 18)).astype(np.float32),
    )
    c = ClipAnnotation.load(b.save(tmp_path / "b.npz"))
    np.testing.assert_array_equal(c.extra_keypoints, b.extra_keypoints)
    np.testing.assert_array_equal(c.extra_confidence, b.extra_confidence)
    with pytest.raises(ValueError, match="extra_keypoints"):
        dataclasses.replace(a, extra_keypoints=np.zeros((1, 4, 18, 2)), extra_confidence=np.zeros((1, 4, 18)))
