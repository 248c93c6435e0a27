"""Multi-person pose at source resolution: geometry helpers and the Sports2D back-flip."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from components.annotation.people import (
    PeopleTracker,
    PersonTrack,
    _unrotate,
    choose_subject,
    map_to_clip,
    mask_to_clip,
    parse_transform,
    tiles,
)
from components.annotation.pose import PoseResult


@pytest.mark.parametrize(("h", "w", "size"), [(994, 1768, 640), (480, 640, 640), (300, 2000, 256)])
def test_tiles_cover_the_frame(h, w, size) -> None:
    covered = np.zeros((h, w), bool)
    for y, x, side in tiles(h, w, size, 0.25):
        assert y >= 0 and x >= 0 and y + side <= h and x + side <= w
        covered[y : y + side, x : x + side] = True
    assert covered.all()


@pytest.mark.parametrize("angle", [0, 90, 180, 270])
def test_unrotate_maps_points_back(angle) -> None:
    side = 50
    img = np.zeros((side, side), np.uint8)
    img[12, 33] = 255  # y=12, x=33
    code = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}
    rot = img if angle == 0 else cv2.rotate(img, code[angle])
    ry, rx = np.argwhere(rot)[0]
    x, y = _unrotate(np.array([rx], float), np.array([ry], float), angle, side)
    assert (x[0], y[0]) == (33, 12)


def test_map_to_clip_applies_the_transform_and_drops_cropped_keypoints() -> None:
    kp = np.zeros((2, 18, 2), np.float32)
    kp[:, :, 0], kp[:, :, 1] = 100.0, 50.0
    kp[1, :, 0] = 5000.0  # far right: cropped away in the clip
    pose = PoseResult(kp, np.ones((2, 18)), np.ones(2, bool))
    out = map_to_clip(pose, (0.1, 0.2, -3.0, 1.0), 96, 144)
    assert np.allclose(out.keypoints[0, 0], [100 * 0.1 - 3, 50 * 0.2 + 1])
    assert out.found.tolist() == [True, False] and out.confidence[1].max() == 0


def test_parse_transform_names_bad_input() -> None:
    assert parse_transform("0.5,0.5,1,2") == (0.5, 0.5, 1.0, 2.0)
    with pytest.raises(ValueError, match="source_to_clip"):
        parse_transform("0.5,0.5")


def test_mask_to_clip_places_a_crop_segmentation() -> None:
    tr = PersonTrack.new(1)
    seg = np.zeros((200, 200), np.float32)
    seg[50:150, 50:150] = 1.0  # source square x,y in [350,450) x [150,250) for a crop at (y0=100, x0=300)
    tr.segmentation[0] = (seg, (100, 300))
    sx = sy = 0.1
    out = mask_to_clip([tr], 0, (sx, sy, 0.5 * sx - 0.5, 0.5 * sy - 0.5), 96, 144)
    ys, xs = np.nonzero(out > 0.5)
    assert xs.min() == 35 and xs.max() == 44 and ys.min() == 15 and ys.max() == 24


def test_choose_subject_prefers_the_moving_person() -> None:
    rng = np.random.default_rng(0)
    still, moving = PersonTrack.new(10), PersonTrack.new(10)
    base = rng.uniform(100, 200, (18, 2)).astype(np.float32)
    for t in range(10):
        still.keypoints[t] = base
        moving.keypoints[t] = base + np.array([0.0, 8.0 * t], np.float32)
    for tr in (still, moving):
        tr.confidence[:] = 0.9
        tr.found[:] = True
    assert choose_subject([still, moving]) == 1
    assert choose_subject([moving, still]) == 0


def test_sports2d_backflip_is_followed_at_source_resolution() -> None:
    """Sports2D's demo: a man back-flips off a shed (upper middle) while a woman walks left in front.
    During the flip (source frames 159-189) the subject must be the man, found in most frames."""
    from components.data.demo import locate
    from components.io.video import read_frames

    indices = list(range(159, 190, 2))
    frames = read_frames(locate("sports2d/demo"), indices)
    tracks = PeopleTracker().track(frames)
    assert len(tracks) >= 2  # the man and the woman
    subject = tracks[choose_subject(tracks)]
    assert subject.found.mean() >= 0.7
    centre = np.array([np.median(subject.keypoints[t], axis=0) for t in np.flatnonzero(subject.found)])
    # the man is in the air right of the shed's edge and well above the lawn the woman walks on
    assert np.median(centre[:, 0]) > 700 and np.median(centre[:, 1]) < 450
    # at least one frame was found only with the image rotated (he is upside down)
    assert any(a != 0 for a in subject.rotations.values())


def test_is_steady_rejects_brief_or_faint_tracks() -> None:
    from components.annotation.people import is_steady

    tr = PersonTrack.new(20)
    tr.found[:10], tr.confidence[:10] = True, 0.8
    assert is_steady(tr)
    brief = PersonTrack.new(20)
    brief.found[:3], brief.confidence[:3] = True, 0.9
    faint = PersonTrack.new(20)
    faint.found[:], faint.confidence[:] = True, 0.3
    assert not is_steady(brief) and not is_steady(faint)
