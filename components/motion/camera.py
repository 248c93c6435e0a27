"""Pinhole cameras, fixed and time-varying (orbit, dolly, pan), and 3D → 2D projection.

World: metres, Y up (the motion convention). Camera: OpenCV convention, x right, y down, z
forward; a world point X maps to camera coordinates ``R @ X + t`` and to pixels
``(fx·x/z + cx, fy·y/z + cy)``. Pixel centres sit at integer coordinates.

A camera spec is parsed from text such as ``orbit``, ``fixed:azimuth=90,elevation=20``, ``track`` or
``dolly:distance=5,end_distance=2.5`` (``mosa generate --camera``, ``mosa motion-preview``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from components.motion.config import CameraSpec


@dataclass(frozen=True)
class Cameras:
    """Per-frame pinhole cameras: intrinsics K [3,3], world→camera R [T,3,3] and t [T,3]."""

    K: np.ndarray
    R: np.ndarray
    t: np.ndarray
    height: int
    width: int

    def __len__(self) -> int:
        return self.R.shape[0]

    @property
    def centers(self) -> np.ndarray:
        """Camera centres in world coordinates [T,3]."""
        return -np.einsum("tji,tj->ti", self.R, self.t)

    def frame(self, i: int) -> Cameras:
        return replace(self, R=self.R[i : i + 1], t=self.t[i : i + 1])


def intrinsics(fov_deg: float, height: int, width: int) -> np.ndarray:
    """K for a vertical field of view, square pixels, principal point at the image centre."""
    f = 0.5 * height / math.tan(math.radians(fov_deg) / 2)
    return np.array([[f, 0, (width - 1) / 2], [0, f, (height - 1) / 2], [0, 0, 1]], dtype=np.float64)


_WORLD_UP = np.array([0.0, 1.0, 0.0])


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray = _WORLD_UP):
    """World→camera (R, t) for cameras at ``eye`` [T,3] looking at ``target`` [T,3] (OpenCV axes)."""
    eye, target = np.atleast_2d(eye).astype(float), np.atleast_2d(target).astype(float)
    z = target - eye
    z /= np.linalg.norm(z, axis=-1, keepdims=True)
    x = np.cross(z, up)  # camera x (right) = forward × world up
    x /= np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-9)
    y = np.cross(z, x)  # camera y points down
    R = np.stack([x, y, z], axis=-2)
    t = -np.einsum("tij,tj->ti", R, eye)
    return R, t


def _spherical(target: np.ndarray, elevation: np.ndarray, azimuth: np.ndarray, distance: np.ndarray):
    el, az = np.radians(elevation), np.radians(azimuth)
    offset = np.stack([np.sin(az) * np.cos(el), np.sin(el), np.cos(az) * np.cos(el)], axis=-1)
    return target + distance[:, None] * offset


def build_cameras(
    spec: CameraSpec, num_frames: int, height: int, width: int, root: np.ndarray | None = None
) -> Cameras:
    """Cameras for ``num_frames`` frames; ``root`` (the motion's pelvis, [T,3], or [P·T,3] for P people
    one after the other) places the target: its mean over the clip, or frame by frame for ``track``."""
    T = num_frames
    s = np.linspace(0.0, 1.0, T) if T > 1 else np.zeros(1)
    center = np.zeros((T, 3))
    if root is not None and (spec.follow or spec.kind == "track"):
        pts = np.asarray(root, dtype=float).reshape(-1, 3)
        if spec.kind == "track":
            if len(pts) % T:
                raise ValueError(
                    f"a track camera needs the root of every frame: {len(pts)} rows for {T} frames"
                )
            center = pts.reshape(-1, T, 3).mean(0)  # people side by side: their mid-point per frame
        else:
            center = np.tile(pts.mean(0), (T, 1))
    target = np.stack([center[:, 0], np.full(T, spec.target_height), center[:, 2]], axis=-1)
    el = np.full(T, spec.elevation)
    az = np.full(T, spec.azimuth)
    dist = np.full(T, spec.distance)
    if spec.kind == "orbit":
        az = spec.azimuth + spec.sweep * s
    elif spec.kind == "dolly":
        dist = spec.distance + (spec.end_distance - spec.distance) * s
    eye = _spherical(target, el, az, dist)
    if spec.kind == "pan":
        # Fixed eye; the view direction yaws by ``sweep`` degrees across the clip, centred on the target.
        yaw = np.radians(spec.sweep * (s - 0.5))
        d = target - eye
        c, si = np.cos(yaw), np.sin(yaw)
        d = np.stack([c * d[:, 0] + si * d[:, 2], d[:, 1], -si * d[:, 0] + c * d[:, 2]], axis=-1)
        target = eye + d
    R, t = look_at(eye, target)
    return Cameras(K=intrinsics(spec.fov, height, width), R=R, t=t, height=height, width=width)


def project(points: np.ndarray, cams: Cameras) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates [T,J,2] and depth (camera z, metres) [T,J] of world points [T,J,3].

    One camera (len 1) projects every frame; otherwise frame i uses camera i. Points behind the
    camera get depth ≤ 0 and their pixel coordinates are not meaningful.
    """
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 3 or points.shape[-1] != 3:
        raise ValueError(f"points must be [T,J,3], got {points.shape}")
    R, t = cams.R, cams.t
    if len(R) == 1:
        R, t = np.repeat(R, len(points), 0), np.repeat(t, len(points), 0)
    if len(R) != len(points):
        raise ValueError(f"{len(points)} frames of points but {len(R)} cameras")
    pc = np.einsum("tij,tkj->tki", R, points) + t[:, None, :]
    z = pc[..., 2]
    zs = np.where(np.abs(z) < 1e-9, 1e-9, z)
    u = cams.K[0, 0] * pc[..., 0] / zs + cams.K[0, 2]
    v = cams.K[1, 1] * pc[..., 1] / zs + cams.K[1, 2]
    return np.stack([u, v], axis=-1), z


def pixel_rays(cams: Cameras, i: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Origin [3] and unit directions [H,W,3] (world) of the rays through every pixel centre of frame i."""
    v, u = np.mgrid[0 : cams.height, 0 : cams.width].astype(np.float64)
    pix = np.stack([u, v, np.ones_like(u)], axis=-1)
    d_cam = pix @ np.linalg.inv(cams.K).T
    d_world = d_cam @ cams.R[i]  # R^T applied to row vectors
    d_world /= np.linalg.norm(d_world, axis=-1, keepdims=True)
    return cams.centers[i], d_world
