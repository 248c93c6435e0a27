"""The contract every video metric follows, and a dispatcher that runs metrics by name.

A metric is a function ``compute(samples: list[VideoSample], ctx: MetricContext) -> MetricResult``
registered under its name with ``@register("name")``. ``compute_metrics(names, samples, ctx)`` runs
several; the built-in metric modules are imported on first use, so importing this module alone is
enough. A metric whose model is not available returns ``value=None`` with a ``reason``, never a number
from a stand-in; a substitute metric is registered under its own honest name.

``MetricContext`` carries the configuration (model paths, reference clips for distribution metrics,
device, seed, per-metric options) and caches what is expensive to build or run: feature extractors and
per-clip person detections shared by several metrics.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from components.annotation.mask import MediaPipeMask, build_mask_estimator
from components.annotation.pose import PoseResult, build_pose_estimator

if TYPE_CHECKING:
    from components.evaluation.features import FeatureExtractor

# Modules of the built-in metrics; each registers its metric(s) on import.
BUILTIN_METRIC_MODULES: tuple[str, ...] = (
    "fd_effnet_frames",
    "fvd_i3d",
    "clipsim",
    "subject_consistency",
    "background_consistency",
    "motion_smoothness",
    "dynamic_degree",
    "imaging_quality_proxy",
    "pose_confidence",
    "temporal_jerk",
    "contact_violation",
    "skeleton_alignment_pck",
    "mask_skeleton_iou",
    "person_detect_rate",
)
# Keypoints of the conditioning skeleton at or above this confidence count as present.
SKELETON_MIN_CONFIDENCE = 0.3
# The skeleton box is widened by this share of its size on each side (joints sit inside the silhouette).
SKELETON_BOX_PADDING = 0.1
# Errors that mean "a model or a package is not available": a metric reports them as its reason.
MODEL_UNAVAILABLE: tuple[type[Exception], ...] = (OSError, ImportError)
PER_SAMPLE = "per-sample"


@dataclass
class VideoSample:
    """One generated clip and what it was generated from.

    ``frames`` uint8 RGB [T,H,W,3]; ``fps`` > 0; ``prompt`` the text prompt. Optional:
    ``skeleton_keypoints`` float [T,18,2] (pixels, OpenPose-18) with ``skeleton_confidence`` [T,18] — the
    conditioning skeleton; ``person_mask`` bool [T,H,W]; ``point_maps`` float [T,H,W,3] (per-pixel 3D
    points from a depth/point network); ``reference_id`` the real clip this one is paired with;
    ``sample_id`` a name for reports.
    """

    frames: np.ndarray
    fps: float
    prompt: str = ""
    skeleton_keypoints: np.ndarray | None = None
    skeleton_confidence: np.ndarray | None = None
    person_mask: np.ndarray | None = None
    point_maps: np.ndarray | None = None
    reference_id: str | None = None
    sample_id: str = ""

    def __post_init__(self) -> None:
        who = f"VideoSample {self.sample_id!r}" if self.sample_id else "VideoSample"
        f = np.asarray(self.frames)
        if f.dtype != np.uint8 or f.ndim != 4 or f.shape[-1] != 3 or f.shape[0] < 1:
            raise ValueError(f"{who}: frames must be uint8 RGB [T,H,W,3], T >= 1, got {f.dtype} {f.shape}")
        self.frames = f
        T, H, W = f.shape[:3]
        if not (math.isfinite(self.fps) and self.fps > 0):
            raise ValueError(f"{who}: fps must be a positive number, got {self.fps}")
        if (self.skeleton_keypoints is None) != (self.skeleton_confidence is None):
            raise ValueError(f"{who}: give skeleton_keypoints and skeleton_confidence together, or neither")
        if self.skeleton_keypoints is not None:
            kp = np.asarray(self.skeleton_keypoints, dtype=np.float32)
            conf = np.asarray(self.skeleton_confidence, dtype=np.float32)
            if kp.shape != (T, 18, 2) or conf.shape != (T, 18):
                raise ValueError(
                    f"{who}: skeleton_keypoints must be [T,18,2] and skeleton_confidence [T,18] with T={T}, "
                    f"got {kp.shape} and {conf.shape}"
                )
            self.skeleton_keypoints, self.skeleton_confidence = kp, conf
        if self.person_mask is not None:
            m = np.asarray(self.person_mask)
            if m.shape != (T, H, W):
                raise ValueError(f"{who}: person_mask must be [T,H,W] = {(T, H, W)}, got {m.shape}")
            self.person_mask = m.astype(bool)
        if self.point_maps is not None:
            p = np.asarray(self.point_maps)
            if p.shape != (T, H, W, 3) or p.dtype.kind != "f":
                raise ValueError(
                    f"{who}: point_maps must be float [T,H,W,3] = {(T, H, W, 3)}, got {p.dtype} {p.shape}"
                )
            self.point_maps = p

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) in pixels."""
        return int(self.frames.shape[1]), int(self.frames.shape[2])

    @property
    def has_skeleton(self) -> bool:
        return self.skeleton_keypoints is not None


@dataclass
class MetricResult:
    """A metric over a set of clips: ``value`` (None when it could not be measured, then ``reason`` says
    why), ``per_video`` values (empty for set-level metrics such as Fréchet distances),
    ``higher_is_better``, ``details`` (feature source, settings, counts) and, for metrics that measure
    the person in a frame, ``frames``: on how many frames the value was measured (0 with a None value
    when no frame showed what the metric needs)."""

    name: str
    value: float | None
    per_video: list[float | None]
    higher_is_better: bool
    details: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None
    frames: int | None = None

    def __post_init__(self) -> None:
        if self.value is not None:
            self.value = float(self.value)
            if not math.isfinite(self.value):
                raise ValueError(f"metric {self.name!r}: value must be finite or None, got {self.value}")
        elif not self.reason:
            raise ValueError(f"metric {self.name!r}: a None value needs a reason")
        self.per_video = [None if v is None else float(v) for v in self.per_video]

    @classmethod
    def unavailable(
        cls, name: str, reason: str, higher_is_better: bool, frames: int | None = None, **details: Any
    ) -> MetricResult:
        """A result that could not be measured (missing model, missing inputs, nothing to measure)."""
        return cls(name, None, [], higher_is_better, dict(details), reason, frames)

    @classmethod
    def from_per_video(
        cls,
        name: str,
        per_video: Sequence[float | None],
        higher_is_better: bool,
        frames: int | None = None,
        reason_if_none: str | None = None,
        **details: Any,
    ) -> MetricResult:
        """Mean of the per-video values that are not None; None (with ``reason_if_none`` or a generic
        reason) if every value is. ``frames``: how many frames the values were measured on."""
        values = [float(v) for v in per_video if v is not None and math.isfinite(v)]
        clean = [None if v is None or not math.isfinite(v) else float(v) for v in per_video]
        details = {"videos": len(clean), "measured": len(values), **details}
        if not values:
            why = reason_if_none or ("no clip could be measured" if clean else "no clips given")
            return cls(name, None, clean, higher_is_better, details, why, frames)
        return cls(name, float(np.mean(values)), clean, higher_is_better, details, None, frames)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "name": self.name,
            "value": self.value,
            "per_video": self.per_video,
            "higher_is_better": self.higher_is_better,
            "details": self.details,
            "reason": self.reason,
            "frames": self.frames,
        }


@dataclass
class MetricContext:
    """Configuration and caches shared by the metrics of one evaluation run.

    ``reference``: real clips for distribution metrics (FD, FVD). Model paths: ``i3d_path`` (TorchScript
    file), ``clip_path`` / ``dino_path`` (transformers checkpoint directories). ``feature_backbone``
    selects the image features of the consistency metrics (``"efficientnet-lite0"``, ``"clip"``,
    ``"dino"``). ``pose_estimator`` / ``mask_estimator`` name the detectors run on generated frames
    (``components.annotation``; ``pose_model_path`` / ``mask_model_path`` for DWPose / SAM).
    ``options[metric][key]`` holds per-metric settings (read with :meth:`option`). ``seed`` is for metrics
    that sample at random (none of the built-ins does: their frame and point sampling is deterministic).
    """

    reference: list[VideoSample] = field(default_factory=list)
    i3d_path: str | Path | None = None
    clip_path: str | Path | None = None
    dino_path: str | Path | None = None
    feature_backbone: str = "efficientnet-lite0"
    pose_estimator: str = "mediapipe"
    pose_model_path: str | Path | None = None
    mask_estimator: str = "mediapipe"
    mask_model_path: str | Path | None = None
    device: str = "cpu"
    seed: int = 0
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    cache: dict[Any, Any] = field(default_factory=dict, repr=False)

    def option(self, metric: str, key: str, default: Any) -> Any:
        """``options[metric][key]`` or ``default``."""
        return self.options.get(metric, {}).get(key, default)

    def cached(self, key: Any, factory: Callable[[], Any]) -> Any:
        """The cached object under ``key``, built by ``factory()`` on first use."""
        if key not in self.cache:
            self.cache[key] = factory()
        return self.cache[key]

    def feature_extractor(self, backbone: str | None = None) -> FeatureExtractor:
        """A cached image feature extractor (``features.build_feature_extractor``): ``backbone`` or
        ``feature_backbone``, with ``clip_path`` / ``dino_path`` for CLIP / DINO."""
        # lazy: torch and the EfficientNet weights load only when a feature metric runs
        from components.evaluation.features import build_feature_extractor

        name = (backbone or self.feature_backbone).strip().lower()
        path = {"clip": self.clip_path, "dino": self.dino_path}.get(name)
        key = ("features", name, None if path is None else str(path))
        return self.cached(key, lambda: build_feature_extractor(name, path, self.device))

    def _per_sample(self, kind: str, sample: VideoSample, factory: Callable[[], Any]) -> Any:
        # Keyed by object identity; the sample is kept in the entry so its id cannot be reused.
        key = (PER_SAMPLE, kind, id(sample))
        if key not in self.cache:
            self.cache[key] = (sample, factory())
        return self.cache[key][1]

    def clear_sample_cache(self) -> None:
        """Drop the per-clip detections (masks [T,H,W] add up over many clips); models stay cached."""
        for key in [k for k in self.cache if isinstance(k, tuple) and k[:1] == (PER_SAMPLE,)]:
            del self.cache[key]

    def detected_pose(self, sample: VideoSample) -> PoseResult:
        """OpenPose-18 keypoints with confidence detected on the generated frames (cached per sample).

        With MediaPipe for both pose and masks one pass yields both (see :meth:`detected_masks`).
        """
        if self.pose_estimator == "mediapipe" and self.mask_estimator == "mediapipe":
            return self._mediapipe_both(sample)[1]

        def run() -> PoseResult:
            est = self.cached(
                ("pose", self.pose_estimator, str(self.pose_model_path)),
                lambda: build_pose_estimator(self.pose_estimator, self.pose_model_path),
            )
            return est(sample.frames)

        return self._per_sample("pose", sample, run)

    def detected_masks(self, sample: VideoSample) -> np.ndarray:
        """Person masks bool [T,H,W] detected on the generated frames (cached per sample)."""
        if self.pose_estimator == "mediapipe" and self.mask_estimator == "mediapipe":
            return self._mediapipe_both(sample)[0]

        def run() -> np.ndarray:
            est = self.cached(
                ("mask", self.mask_estimator, str(self.mask_model_path)),
                lambda: build_mask_estimator(self.mask_estimator, self.mask_model_path),
            )
            return est(sample.frames)

        return self._per_sample("mask", sample, run)

    def _mediapipe_both(self, sample: VideoSample) -> tuple[np.ndarray, PoseResult]:
        est = self.cached(("mask+pose", "mediapipe"), MediaPipeMask)
        return self._per_sample("mask+pose", sample, lambda: est.with_pose(sample.frames))

    def person_region(self, sample: VideoSample) -> tuple[np.ndarray, str]:
        """Person region bool [T,H,W] and where it came from, in this order of preference:

        1. ``"given mask"``: ``sample.person_mask``;
        2. ``"skeleton box"``: per frame, the box around the conditioning skeleton's keypoints with
           confidence ≥ 0.3, widened by 10% of its size on each side (empty where none qualifies);
        3. ``"detected mask (<estimator>)"``: :meth:`detected_masks`.
        """
        if sample.person_mask is not None:
            return sample.person_mask, "given mask"
        if sample.has_skeleton:
            return skeleton_boxes_mask(sample), "skeleton box"
        return self.detected_masks(sample), f"detected mask ({self.mask_estimator})"


def evenly_spaced_indices(num_frames: int, max_frames: int | None) -> np.ndarray:
    """Up to ``max_frames`` evenly spaced frame indices in [0, num_frames) (all when None or fewer)."""
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be >= 1 or None, got {max_frames}")
    if max_frames is None or num_frames <= max_frames:
        return np.arange(num_frames)
    return np.unique(np.round(np.linspace(0, num_frames - 1, max_frames)).astype(int))


def skeleton_boxes(
    keypoints: np.ndarray,
    confidence: np.ndarray,
    min_confidence: float = SKELETON_MIN_CONFIDENCE,
    padding: float = SKELETON_BOX_PADDING,
) -> np.ndarray:
    """Per frame (x0, y0, x1, y1) float64 [T,4] around the keypoints [T,18,2] whose confidence is at least
    ``min_confidence``, widened by ``padding`` × the box size (≥ 1 px) each side; NaN rows where none is."""
    kp, conf = np.asarray(keypoints, np.float64), np.asarray(confidence, np.float64)
    ok = (conf >= min_confidence) & np.isfinite(kp).all(-1)
    out = np.full((len(kp), 4), np.nan)
    for t in range(len(kp)):
        if ok[t].any():
            p = kp[t, ok[t]]
            lo, hi = p.min(0), p.max(0)
            pad = padding * np.maximum(hi - lo, 1.0)
            out[t] = (*(lo - pad), *(hi + pad))
    return out


def boxes_to_mask(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """bool [T,H,W]: pixels whose centre lies inside the frame's box (x0, y0, x1, y1); NaN rows are empty."""
    ys, xs = np.arange(height)[:, None], np.arange(width)[None, :]
    out = np.zeros((len(boxes), height, width), dtype=bool)
    for t, (x0, y0, x1, y1) in enumerate(np.asarray(boxes, np.float64)):
        if np.isfinite([x0, y0, x1, y1]).all():
            out[t] = (xs >= x0) & (xs <= x1) & (ys >= y0) & (ys <= y1)
    return out


def skeleton_boxes_mask(sample: VideoSample) -> np.ndarray:
    """bool [T,H,W]: the padded box around each frame's conditioning skeleton (:func:`skeleton_boxes`)."""
    if not sample.has_skeleton:
        raise ValueError(f"sample {sample.sample_id!r} has no conditioning skeleton")
    return boxes_to_mask(skeleton_boxes(sample.skeleton_keypoints, sample.skeleton_confidence), *sample.size)


# --- registry ------------------------------------------------------------------------------------
MetricFn = Callable[[list[VideoSample], MetricContext], MetricResult]
_METRICS: dict[str, MetricFn] = {}
_DIRECTIONS: dict[str, bool] = {}
_builtins_loaded = False


def register(name: str, higher_is_better: bool = True) -> Callable[[MetricFn], MetricFn]:
    """Decorator: register ``compute(samples, ctx) -> MetricResult`` under ``name`` (names are unique).

    ``higher_is_better`` is the metric's direction, used for results of a metric that failed.
    """

    def deco(fn: MetricFn) -> MetricFn:
        existing = _METRICS.get(name)
        if existing is not None and (existing.__module__, existing.__qualname__) != (
            fn.__module__,
            fn.__qualname__,
        ):
            raise ValueError(f"metric {name!r} is already registered by {existing.__module__}")
        _METRICS[name] = fn
        _DIRECTIONS[name] = higher_is_better
        return fn

    return deco


def _load_builtins() -> None:
    global _builtins_loaded
    if not _builtins_loaded:
        for module in BUILTIN_METRIC_MODULES:
            importlib.import_module(f"components.evaluation.{module}")
        _builtins_loaded = True


def available_metrics() -> list[str]:
    """Sorted names of every registered metric (built-ins included)."""
    _load_builtins()
    return sorted(_METRICS)


def get_metric(name: str) -> MetricFn:
    """The registered metric ``name``; KeyError listing the known names otherwise."""
    _load_builtins()
    try:
        return _METRICS[name]
    except KeyError:
        raise KeyError(f"unknown metric {name!r}; known metrics: {', '.join(sorted(_METRICS))}") from None


class MetricError(RuntimeError):
    """A metric raised while it ran: the message names the metric, the error and the way out."""

    def __init__(self, name: str, exc: BaseException):
        self.metric = name
        super().__init__(
            f"metric {name!r} failed: {type(exc).__name__}: {exc} (fix it, or list {name!r} in "
            "evaluate.optional_metrics to record it as null with the error as its reason)"
        )


def compute_metrics(
    names: Sequence[str],
    samples: list[VideoSample],
    ctx: MetricContext | None = None,
    on_error: str = "raise",
    optional: Collection[str] = (),
) -> dict[str, MetricResult]:
    """Run the metrics ``names`` on ``samples`` → {name: MetricResult}, in the given order.

    Every name is checked before anything runs. An exception inside a metric raises ``MetricError``
    (naming the metric and the error) unless the metric is in ``optional`` or ``on_error="record"``:
    then it becomes a None result whose reason names the error. A metric that could not be measured
    (missing model, nothing to measure) is not an error: it returns None with its reason. Per-clip
    detections shared between metrics are dropped from
    ``ctx`` at the end (models stay cached), so call it on chunks of clips for per-video metrics when
    memory is short; set-level metrics (FD, FVD) need the whole set in one call.
    """
    if on_error not in ("raise", "record"):
        raise ValueError(f"on_error must be 'raise' or 'record', got {on_error!r}")
    if isinstance(names, str):
        raise TypeError(f"names must be a list of metric names, got the string {names!r}")
    fns = {name: get_metric(name) for name in names}
    unknown = sorted(set(optional) - set(available_metrics()))
    if unknown:
        raise KeyError(
            f"optional metrics {unknown} are not registered; known: {', '.join(available_metrics())}"
        )
    if not all(isinstance(s, VideoSample) for s in samples):
        raise TypeError("samples must be a list of VideoSample")
    ctx = ctx if ctx is not None else MetricContext()
    out: dict[str, MetricResult] = {}
    for name, fn in fns.items():
        try:
            result = fn(samples, ctx)
        except Exception as exc:
            if on_error == "raise" and name not in optional:
                raise MetricError(name, exc) from exc
            result = MetricResult(
                name, None, [], _DIRECTIONS.get(name, True), {}, f"error: {type(exc).__name__}: {exc}"
            )
        if not isinstance(result, MetricResult):
            raise TypeError(f"metric {name!r} returned {type(result).__name__}, not MetricResult")
        out[name] = result
    ctx.clear_sample_cache()
    return out
