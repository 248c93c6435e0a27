"""Skeleton rendering in the DWPose/ControlNet OpenPose-18 convention, and 3D stick-figure previews.

Convention (``draw_skeleton``): black background; each limb is a filled convex ellipse
(``cv2.ellipse2Poly``) centred between its two keypoints, full length = their distance, half-width =
stick width (4 px), rotated by the limb's angle, in ``OPENPOSE18_COLORS[limb]`` at 0.6 intensity; then
each keypoint is a filled disc of radius 4 px in ``OPENPOSE18_COLORS[keypoint]`` at full intensity.
A limb is drawn only when both of its keypoints have confidence > threshold, a disc only when its
keypoint does. Limbs are drawn in ``OPENPOSE18_LIMBS`` order (a later limb covers an earlier one) on a
separate layer that is then composited at 0.6 intensity, so limb pixels replace what was under them;
drawing is aliased (no anti-aliasing), so colours are exact. Images are RGB ``uint8``.

Sizes: the convention draws 4-px sticks and discs at whatever resolution it draws at (annotators
typically work at 512 px on the short side). ``scale`` multiplies both sizes; the default 1.0 keeps the
convention's pixel sizes at the given resolution, ``scale=resolution_scale(h, w)`` makes them
proportional to a 512-px reference instead.
"""

from __future__ import annotations

import itertools
import math

import cv2
import numpy as np
from tqdm import tqdm

from components.motion.camera import Cameras, intrinsics, look_at, project
from components.motion.skeleton import (
    OPENPOSE18_COLORS,
    OPENPOSE18_LIMBS,
    SMPL22_CHAINS,
    smpl22_to_openpose18,
)

LIMB_INTENSITY = 0.6
DEFAULT_THRESHOLD = 0.3
DEFAULT_STICK_WIDTH = 4
DEFAULT_RADIUS = 4
REFERENCE_RESOLUTION = 512
_MAX_COORD = 1e5  # keypoints farther than this (pixels) are treated as missing (int overflow guard)

# Keypoints (OpenPose-18 indices) that each preset drops.
HALF_BODY_PRESETS: dict[str, tuple[int, ...]] = {
    "full": (),
    "upper_body": (9, 10, 12, 13),  # knees and ankles; hips stay
    "lower_body": (0, 1, 2, 3, 4, 5, 6, 7, 14, 15, 16, 17),  # keeps hips, knees, ankles
    "no_face": (0, 14, 15, 16, 17),  # nose, eyes, ears
    "head_and_shoulders": (3, 4, 6, 7, 8, 9, 10, 11, 12, 13),  # keeps face, neck, shoulders
}

# Colours (RGB) of the SMPL-22 chains in ``draw_stick_3d``: right leg, left leg, spine, right arm, left arm.
SMPL22_CHAIN_COLORS: tuple[tuple[int, int, int], ...] = (
    (235, 90, 50),
    (50, 140, 235),
    (240, 210, 70),
    (240, 110, 190),
    (70, 215, 120),
)


def resolution_scale(height: int, width: int, reference: int = REFERENCE_RESOLUTION) -> float:
    """Size factor that makes stick width and radius proportional to a ``reference``-px short side."""
    return min(height, width) / reference


def _sizes(stick_width: float, radius: float, scale: float) -> tuple[int, int]:
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    return max(1, round(stick_width * scale)), max(1, round(radius * scale))


def _new_canvas(height: int, width: int, canvas: np.ndarray | None) -> np.ndarray:
    if height <= 0 or width <= 0:
        raise ValueError(f"height and width must be positive, got {height}x{width}")
    if canvas is None:
        return np.zeros((height, width, 3), dtype=np.uint8)
    if canvas.shape != (height, width, 3) or canvas.dtype != np.uint8 or not canvas.flags.c_contiguous:
        raise ValueError(
            f"canvas must be C-contiguous uint8 [{height},{width},3], got {canvas.dtype} {canvas.shape}"
        )
    return canvas


def _visible(keypoints: np.ndarray, confidence: np.ndarray, threshold: float) -> np.ndarray:
    finite = np.isfinite(keypoints).all(-1) & (np.abs(np.nan_to_num(keypoints)) < _MAX_COORD).all(-1)
    return finite & (np.nan_to_num(confidence, nan=0.0) > threshold)


def draw_skeleton(
    keypoints: np.ndarray,
    confidence: np.ndarray,
    height: int,
    width: int,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    stick_width: float = DEFAULT_STICK_WIDTH,
    radius: float = DEFAULT_RADIUS,
    scale: float = 1.0,
    canvas: np.ndarray | None = None,
) -> np.ndarray:
    """Draw one OpenPose-18 person (keypoints [18,2] pixels x,y; confidence [18]) → uint8 [H,W,3] RGB.

    With ``canvas`` (uint8 [H,W,3]) the person is drawn into it in place and it is returned, so several
    people can share one frame; otherwise a new black image is returned.
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    conf = np.asarray(confidence, dtype=np.float64)
    if kp.shape != (18, 2) or conf.shape != (18,):
        raise ValueError(f"keypoints must be [18,2] and confidence [18], got {kp.shape} and {conf.shape}")
    out = _new_canvas(height, width, canvas)
    sw, rad = _sizes(stick_width, radius, scale)
    vis = _visible(kp, conf, threshold)

    limbs = [(i, a, b) for i, (a, b) in enumerate(OPENPOSE18_LIMBS) if vis[a] and vis[b]]
    if limbs:
        layer = np.zeros_like(out)
        mask = np.zeros((height, width), dtype=np.uint8)
        for i, a, b in limbs:
            (x0, y0), (x1, y1) = kp[a], kp[b]
            length = math.hypot(x1 - x0, y1 - y0)
            angle = math.degrees(math.atan2(y1 - y0, x1 - x0))
            centre = (round((x0 + x1) / 2), round((y0 + y1) / 2))
            poly = cv2.ellipse2Poly(centre, (round(length / 2), sw), round(angle), 0, 360, 1)
            colour = tuple(round(c * LIMB_INTENSITY) for c in OPENPOSE18_COLORS[i])
            cv2.fillConvexPoly(layer, poly, colour)
            cv2.fillConvexPoly(mask, poly, 1)
        drawn = mask.astype(bool)
        out[drawn] = layer[drawn]

    for k in np.flatnonzero(vis):
        x, y = kp[k]
        cv2.circle(out, (round(x), round(y)), rad, OPENPOSE18_COLORS[k], thickness=-1)
    return out


def _person_depth(depth: np.ndarray, visible: np.ndarray) -> float:
    d = np.asarray(depth, dtype=np.float64)
    if d.ndim == 0:
        return float(d)
    good = visible & np.isfinite(d)
    if not good.any():
        good = np.isfinite(d)
    return float(d[good].mean()) if good.any() else 0.0


def draw_people(
    keypoints: np.ndarray,
    confidence: np.ndarray,
    height: int,
    width: int,
    *,
    depth: np.ndarray | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    stick_width: float = DEFAULT_STICK_WIDTH,
    radius: float = DEFAULT_RADIUS,
    scale: float = 1.0,
    canvas: np.ndarray | None = None,
) -> np.ndarray:
    """Draw P people (keypoints [P,18,2], confidence [P,18]) into one uint8 [H,W,3] RGB frame.

    ``depth`` ([P] or [P,18], distance from the camera) sets painter's order: far people first, by
    the mean depth of their confident keypoints, so nearer people cover them. Without it people are
    drawn in the given order.
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    conf = np.asarray(confidence, dtype=np.float64)
    if kp.ndim != 3 or kp.shape[1:] != (18, 2) or conf.shape != kp.shape[:2]:
        raise ValueError(f"keypoints must be [P,18,2] and confidence [P,18], got {kp.shape} and {conf.shape}")
    out = _new_canvas(height, width, canvas)
    order = list(range(len(kp)))
    if depth is not None:
        d = np.asarray(depth, dtype=np.float64)
        if d.shape not in ((len(kp),), (len(kp), 18)):
            raise ValueError(f"depth must be [P] or [P,18] with P={len(kp)}, got {d.shape}")
        mean = [_person_depth(d[p], _visible(kp[p], conf[p], threshold)) for p in order]
        order.sort(key=lambda p: -mean[p])  # stable: ties keep the given order
    for p in order:
        draw_skeleton(
            kp[p], conf[p], height, width, threshold=threshold, stick_width=stick_width,
            radius=radius, scale=scale, canvas=out,
        )  # fmt: skip
    return out


def apply_preset(confidence: np.ndarray, preset: str) -> np.ndarray:
    """Copy of ``confidence`` [..., 18] with the keypoints dropped by ``preset`` set to 0."""
    if preset not in HALF_BODY_PRESETS:
        valid = ", ".join(HALF_BODY_PRESETS)
        raise ValueError(f"unknown skeleton preset {preset!r}; valid presets: {valid}")
    conf = np.asarray(confidence)
    out = conf.astype(conf.dtype if conf.dtype.kind == "f" else np.float64, copy=True)
    if out.shape[-1:] != (18,):
        raise ValueError(f"confidence must end with 18 keypoints, got {out.shape}")
    out[..., list(HALF_BODY_PRESETS[preset])] = 0
    return out


def skeleton_video(
    keypoints: np.ndarray,
    confidence: np.ndarray,
    height: int,
    width: int,
    preset: str = "full",
    *,
    depth: np.ndarray | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    stick_width: float = DEFAULT_STICK_WIDTH,
    radius: float = DEFAULT_RADIUS,
    scale: float = 1.0,
    progress: bool = False,
) -> np.ndarray:
    """Render a skeleton video uint8 [T,H,W,3] RGB from keypoints [T,18,2] or [T,P,18,2].

    ``confidence`` has the keypoints' shape without the last axis; ``preset`` (a ``HALF_BODY_PRESETS``
    name) drops keypoints; ``depth`` ([T,P] or [T,P,18], multi-person only) sets painter's order.
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    conf = np.asarray(confidence, dtype=np.float64)
    if kp.ndim == 3:
        kp, conf = kp[:, None], conf[:, None]
        if depth is not None:
            depth = np.asarray(depth)[:, None]
    if kp.ndim != 4 or kp.shape[2:] != (18, 2) or conf.shape != kp.shape[:3]:
        raise ValueError(
            f"keypoints must be [T,18,2] or [T,P,18,2] with confidence [T,18] or [T,P,18], "
            f"got {np.shape(keypoints)} and {np.shape(confidence)}"
        )
    conf = apply_preset(conf, preset)
    if depth is not None and len(depth) != len(kp):
        raise ValueError(f"depth has {len(depth)} frames but keypoints have {len(kp)}")
    video = np.zeros((len(kp), height, width, 3), dtype=np.uint8)
    frames = tqdm(range(len(kp)), desc="skeleton video", unit="frame", disable=not progress)
    for t in frames:
        draw_people(
            kp[t], conf[t], height, width, depth=None if depth is None else depth[t],
            threshold=threshold, stick_width=stick_width, radius=radius, scale=scale, canvas=video[t],
        )  # fmt: skip
    return video


def project_motion_to_openpose(
    joints: np.ndarray, cams: Cameras, visibility_margin: float = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SMPL-22 joints [T,22,3] (world, metres) → OpenPose-18 keypoints [T,18,2], confidence, depth [T,18].

    Keypoints come from ``smpl22_to_openpose18`` then ``camera.project``. Confidence is 1 for points
    in front of the camera (depth > 0) whose pixel lies inside the image, else 0; the image spans
    [-0.5, W-0.5] × [-0.5, H-0.5] (pixel centres at integers) widened by ``visibility_margin`` pixels
    on every side (negative values shrink it). There is no self-occlusion reasoning: a hand behind the
    torso still gets confidence 1 (the synthetic renderer provides true visibility).
    """
    joints = np.asarray(joints, dtype=np.float64)
    if joints.ndim != 3 or joints.shape[1:] != (22, 3):
        raise ValueError(f"joints must be [T,22,3], got {joints.shape}")
    uv, depth = project(smpl22_to_openpose18(joints), cams)
    m = float(visibility_margin)
    inside = (
        (uv[..., 0] >= -0.5 - m)
        & (uv[..., 0] <= cams.width - 0.5 + m)
        & (uv[..., 1] >= -0.5 - m)
        & (uv[..., 1] <= cams.height - 0.5 + m)
    )
    visible = (depth > 0) & inside & np.isfinite(uv).all(-1)
    return uv, visible.astype(np.float32), depth


# --- 3D stick-figure preview ----------------------------------------------------------------------


def _clip_segment(a: np.ndarray, b: np.ndarray, near: float) -> tuple[np.ndarray, np.ndarray] | None:
    """Clip a camera-space segment to z >= near; None if it is entirely behind."""
    if a[2] < near and b[2] < near:
        return None
    if a[2] < near or b[2] < near:
        s = (near - a[2]) / (b[2] - a[2])
        cut = a + s * (b - a)
        a, b = (cut, b) if a[2] < near else (a, cut)
    return a, b


def _to_pixel(p: np.ndarray, K: np.ndarray) -> tuple[int, int]:
    x = K[0, 0] * p[0] / p[2] + K[0, 2]
    y = K[1, 1] * p[1] / p[2] + K[1, 2]
    x, y = np.clip([x, y], -_MAX_COORD, _MAX_COORD)
    return round(float(x)), round(float(y))


def draw_stick_3d(
    joints: np.ndarray,
    height: int,
    width: int,
    elevation: float = 20.0,
    azimuth: float = 45.0,
    *,
    distance: float | None = None,
    fov: float = 40.0,
    ground: float | None = None,
    grid: bool = True,
) -> np.ndarray:
    """Perspective preview uint8 [H,W,3] RGB of SMPL-22 joints [22,3] (metres, Y up), coloured by chain.

    The camera looks at the skeleton's bounding-box centre from ``elevation``/``azimuth`` degrees
    (same spherical convention as ``CameraSpec``) at ``distance`` metres (default: fits the body). A
    1 m ground grid (0.5 m lines) lies at height ``ground`` (default: the lowest joint).
    """
    joints = np.asarray(joints, dtype=np.float64)
    if joints.shape != (22, 3) or not np.isfinite(joints).all():
        raise ValueError(f"joints must be finite [22,3], got {joints.shape}")
    lo, hi = joints.min(0), joints.max(0)
    centre = (lo + hi) / 2
    r = max(float(np.linalg.norm(joints - centre, axis=1).max()), 0.3)
    dist = distance if distance is not None else 1.15 * r / math.sin(math.radians(fov) / 2)
    el, az = math.radians(elevation), math.radians(azimuth)
    eye = centre + dist * np.array([math.sin(az) * math.cos(el), math.sin(el), math.cos(az) * math.cos(el)])
    R, t = look_at(eye, centre)
    R, t = R[0], t[0]
    K = intrinsics(fov, height, width)
    near = 0.05
    img = np.zeros((height, width, 3), dtype=np.uint8)
    thick = max(2, round(min(height, width) / 110))

    def cam(p: np.ndarray) -> np.ndarray:
        return R @ p + t

    if grid:
        g = lo[1] if ground is None else ground
        cx, cz = np.round(centre[[0, 2]] * 2) / 2
        ticks = np.arange(-2.0, 2.0 + 1e-9, 0.5)
        for k in ticks:
            major = abs(k - round(k)) < 1e-9
            colour = (90, 90, 90) if major else (55, 55, 55)
            for a, b in (
                ((cx + k, g, cz - 2.0), (cx + k, g, cz + 2.0)),
                ((cx - 2.0, g, cz + k), (cx + 2.0, g, cz + k)),
            ):
                seg = _clip_segment(cam(np.array(a)), cam(np.array(b)), near)
                if seg is not None:
                    cv2.line(img, _to_pixel(seg[0], K), _to_pixel(seg[1], K), colour, 1, cv2.LINE_AA)

    pc = joints @ R.T + t
    bones: list[tuple[float, int, int, tuple[int, int, int]]] = []
    joint_colour: dict[int, tuple[int, int, int]] = {}
    for chain, colour in zip(SMPL22_CHAINS, SMPL22_CHAIN_COLORS, strict=True):
        for a, b in itertools.pairwise(chain):
            bones.append((float(pc[a, 2] + pc[b, 2]) / 2, a, b, colour))
            joint_colour.setdefault(b, colour)
    joint_colour.setdefault(0, SMPL22_CHAIN_COLORS[2])
    # Painter's order, far first; a joint is a bone from itself to itself (drawn as a disc).
    items = bones + [(float(pc[j, 2]), j, j, c) for j, c in joint_colour.items()]
    for _, a, b, colour in sorted(items, key=lambda x: -x[0]):
        if a == b:
            if pc[a, 2] >= near:
                cv2.circle(img, _to_pixel(pc[a], K), thick + 1, colour, -1, cv2.LINE_AA)
            continue
        seg = _clip_segment(pc[a], pc[b], near)
        if seg is not None:
            cv2.line(img, _to_pixel(seg[0], K), _to_pixel(seg[1], K), colour, thick, cv2.LINE_AA)
    return img
