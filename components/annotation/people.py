"""Several people, found and followed at the source video's full resolution.

MediaPipe's BlazePose finds one person per image. On a real clip scaled to 96×144 the subject of the
action may be 20 px tall and lose to a larger bystander (Sports2D's demo: a man back-flips off a shed
while a woman walks past in front). This module works on the source frames instead:

1. **Seeding** — every ``reseed_every`` frames the frame is cut into overlapping square tiles and
   BlazePose runs on each tile (static mode): every tile that shows someone yields a candidate, so
   up to one person per tile is found, however small relative to the frame.
2. **Following** — each person is tracked top-down: a square region of interest around its last
   position (``roi_scale`` × the body's extent, moved by the recent velocity) is cropped and BlazePose
   runs on it upright and, when that fails, rotated by 180°, 90° and 270° (BlazePose misses inverted
   bodies: flips, cartwheels, handstands). A detection only counts if its centre stays near the
   prediction, so a track cannot jump to a more salient neighbour inside its crop.
3. **Choosing** — tracks are scored by body motion (mean keypoint displacement per frame, in body
   sizes, as the motion filter measures it) times the share of frames they were found in; the best
   is the clip's subject, the others are kept as extra people for the skeleton video.

Keypoints come back in source pixels; :func:`map_to_clip` applies the ingest stage's
source → clip transform (``source_to_clip`` manifest column).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from components.annotation.filters import body_size, mean_keypoint_displacement
from components.annotation.pose import (
    NUM_KEYPOINTS,
    PoseResult,
    _import_mediapipe,
    blazepose_to_openpose18,
    check_frames,
)

ROTATIONS: dict[int, int | None] = {
    0: None,
    180: cv2.ROTATE_180,
    90: cv2.ROTATE_90_CLOCKWISE,
    270: cv2.ROTATE_90_COUNTERCLOCKWISE,
}


@dataclass(eq=False)
class PersonTrack:
    """One followed person: OpenPose-18 keypoints [T,18,2] in source pixels, confidence, found,
    and the person-probability map of each found frame pasted into a full-frame float16 map."""

    keypoints: np.ndarray
    confidence: np.ndarray
    found: np.ndarray
    segmentation: dict[int, np.ndarray] = field(default_factory=dict)
    rotations: dict[int, int] = field(default_factory=dict)  # frame -> rotation that found the person
    lost: int = 0
    centre: np.ndarray | None = None
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))
    side: float = 0.0

    @classmethod
    def new(cls, num_frames: int) -> PersonTrack:
        return cls(
            keypoints=np.zeros((num_frames, NUM_KEYPOINTS, 2), np.float32),
            confidence=np.zeros((num_frames, NUM_KEYPOINTS), np.float32),
            found=np.zeros(num_frames, bool),
        )

    def pose(self) -> PoseResult:
        return PoseResult(self.keypoints.copy(), self.confidence.copy(), self.found.copy())

    def activity(self, threshold: float = 0.3) -> float:
        """Motion score used to choose the subject: displacement per frame (body sizes) × presence."""
        if self.found.sum() < 2:
            return 0.0
        motion = mean_keypoint_displacement(self.keypoints, self.confidence, threshold)
        return 0.0 if not math.isfinite(motion) else float(motion * self.found.mean())

    def size(self, threshold: float = 0.3) -> float:
        s = body_size(self.keypoints, self.confidence, threshold)
        return 0.0 if not math.isfinite(s) else s


def tiles(height: int, width: int, size: int, overlap: float) -> list[tuple[int, int, int]]:
    """Top-left corners and side (y, x, side) of overlapping square tiles covering the frame."""
    side = min(size, height, width)
    step = max(1, int(side * (1.0 - overlap)))

    def starts(n: int) -> list[int]:
        s = list(range(0, max(1, n - side + 1), step))
        if s[-1] + side < n:
            s.append(n - side)
        return s

    return [(y, x, side) for y in starts(height) for x in starts(width)]


def _unrotate(x: np.ndarray, y: np.ndarray, angle: int, side: int) -> tuple[np.ndarray, np.ndarray]:
    """Map coordinates in a crop rotated by ``angle`` (cv2.rotate convention) back to the crop."""
    if angle == 90:  # clockwise: (x, y) -> (side-1-y, x)
        return y, side - 1 - x
    if angle == 180:
        return side - 1 - x, side - 1 - y
    if angle == 270:  # counter-clockwise: (x, y) -> (y, side-1-x)
        return side - 1 - y, x
    return x, y


_UNROTATE_IMAGE = {90: cv2.ROTATE_90_COUNTERCLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_CLOCKWISE}


class PeopleTracker:
    """Multi-person BlazePose at full resolution (see the module docstring).

    ``tile``: side of the seeding tiles (px); ``overlap``: their overlap; ``reseed_every``: frames
    between seeding passes; ``roi_scale``: crop side / body extent; ``max_lost``: frames a person may
    be missed before its track ends; ``max_people``: tracks kept at once; ``gate``: largest allowed
    distance between prediction and detection, as a share of the crop side.
    """

    def __init__(
        self,
        tile: int = 640,
        overlap: float = 0.25,
        reseed_every: int = 6,
        roi_scale: float = 1.6,
        min_roi: int = 256,
        max_lost: int = 6,
        max_people: int = 4,
        gate: float = 0.35,
        min_detection_confidence: float = 0.3,
        min_keypoint_confidence: float = 0.5,
        segmentation: bool = True,
    ):
        if not 0.0 <= overlap < 1.0:
            raise ValueError(f"overlap must be in [0, 1), got {overlap}")
        if tile < 64 or reseed_every < 1 or max_people < 1:
            raise ValueError("tile must be >= 64 px, reseed_every >= 1 and max_people >= 1")
        self.tile, self.overlap, self.reseed_every = tile, overlap, reseed_every
        self.roi_scale, self.min_roi, self.max_lost = roi_scale, min_roi, max_lost
        self.max_people, self.gate = max_people, gate
        self.min_detection_confidence = min_detection_confidence
        self.min_keypoint_confidence = min_keypoint_confidence
        self.segmentation = segmentation
        self._pose = None

    # -- BlazePose on one square image -------------------------------------------------------------
    def _detect(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None] | None:
        """Landmarks [33,3] (x, y in pixels of ``image``, visibility) and segmentation, or None."""
        res = self._pose.process(np.ascontiguousarray(image))
        if res.pose_landmarks is None:
            return None
        h, w = image.shape[:2]
        lm = np.array([(p.x * w, p.y * h, p.visibility) for p in res.pose_landmarks.landmark], np.float32)
        lm[:, :2] -= 0.5
        seg = None
        if self.segmentation and res.segmentation_mask is not None:
            seg = np.asarray(res.segmentation_mask, dtype=np.float32)
        return lm, seg

    def _detect_rotated(
        self, crop: np.ndarray, predicted: np.ndarray | None, origin: tuple[int, int]
    ) -> tuple[np.ndarray, np.ndarray | None, int] | None:
        """Best gated detection over rotations: landmarks in frame pixels, segmentation (crop-sized,
        upright) and the rotation used."""
        side = crop.shape[0]
        best, best_score = None, -math.inf
        for angle, code in ROTATIONS.items():
            got = self._detect(crop if code is None else cv2.rotate(crop, code))
            if got is None:
                continue
            lm, seg = got
            x, y = _unrotate(lm[:, 0], lm[:, 1], angle, side)
            lm = np.stack([x + origin[1], y + origin[0], lm[:, 2]], axis=1).astype(np.float32)
            vis = lm[:, 2] >= self.min_keypoint_confidence
            if vis.sum() < 4:
                continue
            centre = np.median(lm[vis, :2], axis=0)
            dist = 0.0 if predicted is None else float(np.linalg.norm(centre - predicted)) / side
            if dist > self.gate:
                continue
            score = float(lm[:, 2].mean()) - dist
            if score > best_score:
                if seg is not None and angle in _UNROTATE_IMAGE:
                    seg = cv2.rotate(seg, _UNROTATE_IMAGE[angle])
                best, best_score = (lm, seg, angle), score
            if angle == 0 and lm[:, 2].mean() > 0.8 and dist < 0.2:
                break  # a clear upright detection: skip the rotated passes
        return best

    # -- tracking ------------------------------------------------------------------------------------
    @staticmethod
    def _crop(frame: np.ndarray, centre: np.ndarray, side: int) -> tuple[np.ndarray, tuple[int, int]]:
        """Square crop of ``side`` px centred at ``centre`` (zero-padded beyond the frame)."""
        H, W = frame.shape[:2]
        y0, x0 = math.floor(centre[1] - side / 2 + 0.5), math.floor(centre[0] - side / 2 + 0.5)
        out = np.zeros((side, side, 3), frame.dtype)
        ys, xs = max(0, y0), max(0, x0)
        ye, xe = min(H, y0 + side), min(W, x0 + side)
        if ye > ys and xe > xs:
            out[ys - y0 : ye - y0, xs - x0 : xe - x0] = frame[ys:ye, xs:xe]
        return out, (y0, x0)

    def _update(self, track: PersonTrack, t: int, lm: np.ndarray, seg, angle: int, origin, H: int, W: int):
        kp, conf = blazepose_to_openpose18(lm[:, :2], lm[:, 2])
        inside = (kp[:, 0] >= -0.5) & (kp[:, 0] <= W - 0.5) & (kp[:, 1] >= -0.5) & (kp[:, 1] <= H - 0.5)
        track.keypoints[t] = kp
        track.confidence[t] = np.clip(conf, 0, 1) * inside
        track.found[t] = True
        track.rotations[t] = angle
        vis = lm[:, 2] >= self.min_keypoint_confidence
        pts = lm[vis, :2] if vis.sum() >= 4 else lm[:, :2]
        centre = np.median(pts, axis=0).astype(np.float64)
        if track.centre is not None:
            track.velocity = 0.5 * track.velocity + 0.5 * (centre - track.centre)
        track.centre = centre
        extent = float(max(np.ptp(pts[:, 0]), np.ptp(pts[:, 1])))
        track.side = float(np.clip(self.roi_scale * extent, self.min_roi, max(H, W)))
        track.lost = 0
        if seg is not None:
            track.segmentation[t] = (seg, origin)

    def _follow(self, track: PersonTrack, frame: np.ndarray, t: int) -> None:
        H, W = frame.shape[:2]
        predicted = track.centre + track.velocity
        side = math.floor(track.side + 0.5)
        crop, origin = self._crop(frame, predicted, side)
        got = self._detect_rotated(crop, predicted, origin)
        if got is None:  # look wider next time, coasting on a damped velocity
            track.centre, track.lost = predicted, track.lost + 1
            track.velocity = 0.5 * track.velocity
            track.side = min(track.side * 1.3, float(max(H, W)))
            return
        self._update(track, t, got[0], got[1], got[2], origin, H, W)

    def _seed(self, frame: np.ndarray, t: int, tracks: list[PersonTrack], T: int) -> None:
        """Tiled detection: a person near a track that missed this frame re-attaches to it, anyone
        else far from every followed person starts a new track."""
        H, W = frame.shape[:2]
        active = [tr for tr in tracks if tr.lost <= self.max_lost and tr.centre is not None]
        for y, x, side in tiles(H, W, self.tile, self.overlap):
            got = self._detect(frame[y : y + side, x : x + side])
            if got is None:
                continue
            lm = got[0].copy()
            lm[:, 0] += x
            lm[:, 1] += y
            vis = lm[:, 2] >= self.min_keypoint_confidence
            if vis.sum() < 4:
                continue
            centre = np.median(lm[vis, :2], axis=0)
            extent = float(max(np.ptp(lm[vis, 0]), np.ptp(lm[vis, 1])))
            if any(tr.found[t] and np.linalg.norm(centre - tr.centre) < 0.5 * tr.side for tr in active):
                continue  # someone we already follow
            missed = [tr for tr in active if not tr.found[t]]
            near = min(missed, key=lambda tr: np.linalg.norm(centre - tr.centre), default=None)
            if near is not None and np.linalg.norm(centre - near.centre) < 1.5 * near.side:
                track = near  # re-acquire a person lost for a few frames
            elif len(active) < self.max_people:
                track = PersonTrack.new(T)
            else:
                continue
            track.centre, track.velocity = centre.astype(np.float64), np.zeros(2)
            track.side = float(np.clip(self.roi_scale * extent, self.min_roi, max(H, W)))
            self._follow(track, frame, t)  # the crop pass gives the segmentation and gates duplicates
            if track.found[t] and track not in tracks:
                tracks.append(track)
                active.append(track)

    def track(self, frames: np.ndarray, progress: bool = False) -> list[PersonTrack]:
        """Follow everyone in ``frames`` uint8 [T,H,W,3] RGB; tracks in order of first appearance."""
        frames = check_frames(frames)
        mp = _import_mediapipe()
        T = len(frames)
        tracks: list[PersonTrack] = []
        self._pose = mp.solutions.pose.Pose(
            static_image_mode=True,
            model_complexity=1,
            enable_segmentation=self.segmentation,
            min_detection_confidence=self.min_detection_confidence,
        )
        try:
            from tqdm import tqdm

            for t in tqdm(range(T), desc="people", unit="frame", disable=not progress):
                for tr in tracks:
                    if tr.lost <= self.max_lost:
                        self._follow(tr, frames[t], t)
                _drop_duplicates(tracks, t)
                missing = any(0 < tr.lost <= self.max_lost for tr in tracks)
                if t % self.reseed_every == 0 or missing:
                    self._seed(frames[t], t, tracks, T)
        finally:
            self._pose.close()
            self._pose = None
        return tracks


def _drop_duplicates(tracks: list[PersonTrack], t: int) -> None:
    """Two tracks on the same body in frame t: the one found in fewer frames stops at t."""
    live = [tr for tr in tracks if tr.found[t]]
    for i, a in enumerate(live):
        for b in live[i + 1 :]:
            if not (a.found[t] and b.found[t]):
                continue
            d = float(np.linalg.norm(np.median(a.keypoints[t], 0) - np.median(b.keypoints[t], 0)))
            if d < 0.25 * min(a.side, b.side):
                loser = a if a.found.sum() < b.found.sum() else b
                loser.found[t] = False
                loser.confidence[t] = 0
                loser.segmentation.pop(t, None)
                loser.lost = 10**6  # ends the track


def is_steady(track: PersonTrack, min_found: float = 0.25, min_confidence: float = 0.5) -> bool:
    """A real person rather than a passing false detection: found in at least ``min_found`` of the
    frames with a mean keypoint confidence of at least ``min_confidence`` there."""
    if track.found.mean() < min_found:
        return False
    return float(track.confidence[track.found].mean()) >= min_confidence


def choose_subject(tracks: list[PersonTrack]) -> int:
    """Index of the most active track (see :meth:`PersonTrack.activity`); ties → larger body."""
    if not tracks:
        raise ValueError("choose_subject needs at least one track")
    return max(range(len(tracks)), key=lambda i: (tracks[i].activity(), tracks[i].size()))


def parse_transform(text: str) -> tuple[float, float, float, float]:
    """The manifest's ``source_to_clip`` string "sx,sy,ox,oy" → floats (clear error otherwise)."""
    try:
        sx, sy, ox, oy = (float(v) for v in str(text).split(","))
    except ValueError:
        raise ValueError(f"source_to_clip must be 'sx,sy,ox,oy', got {text!r}") from None
    return sx, sy, ox, oy


def map_to_clip(pose: PoseResult, transform: tuple[float, float, float, float], height: int, width: int):
    """Source-pixel pose → clip pixels; keypoints that leave the clip (cropped away) get confidence 0."""
    sx, sy, ox, oy = transform
    kp = pose.keypoints.copy()
    kp[..., 0] = kp[..., 0] * sx + ox
    kp[..., 1] = kp[..., 1] * sy + oy
    inside = (
        (kp[..., 0] >= -0.5)
        & (kp[..., 0] <= width - 0.5)
        & (kp[..., 1] >= -0.5)
        & (kp[..., 1] <= height - 0.5)
    )
    conf = pose.confidence * inside
    found = pose.found & (conf > 0).any(axis=1)
    return PoseResult(kp, conf, found)


def mask_to_clip(
    tracks: list[PersonTrack],
    t: int,
    transform: tuple[float, float, float, float],
    height: int,
    width: int,
) -> np.ndarray:
    """Person probability of frame t (max over tracks' crop segmentations) at clip size [height,width]."""
    sx, sy, ox, oy = transform
    out = np.zeros((height, width), np.float32)
    for tr in tracks:
        if t not in tr.segmentation:
            continue
        seg, (y0, x0) = tr.segmentation[t]
        side = seg.shape[0]
        # area-average down to about the clip's scale first, then place with the exact affine map:
        # a pixel centre i of the small map sits at crop x = (i + 0.5)·side/n − 0.5
        n_x, n_y = max(1, round(side * sx)), max(1, round(side * sy))
        small = cv2.resize(seg, (n_x, n_y), interpolation=cv2.INTER_AREA)
        a, b = sx * side / n_x, sy * side / n_y
        M = np.array(
            [[a, 0.0, 0.5 * a - 0.5 * sx + x0 * sx + ox], [0.0, b, 0.5 * b - 0.5 * sy + y0 * sy + oy]]
        )
        warped = cv2.warpAffine(small, M, (width, height), flags=cv2.INTER_LINEAR, borderValue=0)
        np.maximum(out, warped, out=out)
    return out
