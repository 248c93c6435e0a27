"""Cameras: hand-computed pinhole projection, look-at geometry, trajectories, spec parsing."""

from __future__ import annotations

import math

import numpy as np
import pytest

from components.motion.camera import Cameras, build_cameras, intrinsics, pixel_rays, project
from components.motion.config import CameraSpec, parse_camera


def test_projection_matches_hand_computed_pinhole():
    # Identity rotation, camera at the origin: X=(0.5, -0.25, 2) -> u = f*0.25 + cx, v = f*(-0.125) + cy
    K = np.array([[100.0, 0, 50.0], [0, 100.0, 40.0], [0, 0, 1]])
    cams = Cameras(K=K, R=np.eye(3)[None], t=np.zeros((1, 3)), height=80, width=100)
    uv, depth = project(np.array([[[0.5, -0.25, 2.0], [0.0, 0.0, 4.0]]]), cams)
    np.testing.assert_allclose(uv[0, 0], [75.0, 27.5])
    np.testing.assert_allclose(uv[0, 1], [50.0, 40.0])
    np.testing.assert_allclose(depth[0], [2.0, 4.0])


def test_intrinsics_from_vertical_fov():
    K = intrinsics(90.0, 100, 150)
    assert K[0, 0] == pytest.approx(50.0) and K[1, 1] == pytest.approx(50.0)
    assert (K[0, 2], K[1, 2]) == (74.5, 49.5)


def test_front_camera_sees_body_left_on_image_right():
    cams = build_cameras(CameraSpec(elevation=0.0, azimuth=0.0, distance=4.0), 1, 96, 144)
    np.testing.assert_allclose(cams.centers[0], [0, 0.9, 4.0], atol=1e-9)
    uv, depth = project(np.array([[[0.0, 0.9, 0.0], [0.3, 0.9, 0.0], [0.0, 1.5, 0.0]]]), cams)
    assert uv[0, 0] == pytest.approx([71.5, 47.5])  # target at the principal point
    assert uv[0, 1, 0] > uv[0, 0, 0]  # +X (the body's left) appears on the image right
    assert uv[0, 2, 1] < uv[0, 0, 1]  # higher is up in the image
    assert depth[0, 0] == pytest.approx(4.0)


def test_orbit_keeps_distance_and_sweeps_azimuth():
    spec = CameraSpec(kind="orbit", azimuth=0, sweep=90, distance=3.0, elevation=0.0)
    cams = build_cameras(spec, 5, 64, 96)
    d = np.linalg.norm(cams.centers - np.array([0, 0.9, 0]), axis=1)
    np.testing.assert_allclose(d, 3.0)
    np.testing.assert_allclose(cams.centers[-1], [3.0, 0.9, 0.0], atol=1e-9)
    _, depth = project(np.tile([[[0.0, 0.9, 0.0]]], (5, 1, 1)), cams)
    np.testing.assert_allclose(depth[:, 0], 3.0)  # the target stays in the middle at the same depth


def test_dolly_moves_in_and_pan_turns_view():
    dolly = build_cameras(CameraSpec(kind="dolly", distance=5.0, end_distance=2.0, elevation=0), 4, 64, 96)
    dist = np.linalg.norm(dolly.centers - np.array([0, 0.9, 0]), axis=1)
    np.testing.assert_allclose(dist, [5.0, 4.0, 3.0, 2.0])
    pan = build_cameras(CameraSpec(kind="pan", sweep=40.0, elevation=0), 3, 64, 96)
    np.testing.assert_allclose(pan.centers, pan.centers[[0, 0, 0]], atol=1e-12)  # eye fixed
    uv, _ = project(np.tile([[[0.0, 0.9, 0.0]]], (3, 1, 1)), pan)
    assert uv[0, 0, 0] != pytest.approx(uv[2, 0, 0])  # the target drifts across the image
    assert uv[1, 0, 0] == pytest.approx(47.5)  # centred mid-clip


def test_follow_targets_mean_root():
    root = np.array([[2.0, 0.9, 1.0], [4.0, 0.9, 1.0]])
    cams = build_cameras(CameraSpec(elevation=0), 2, 64, 96, root=root)
    uv, _ = project(np.array([[[3.0, 0.9, 1.0]], [[3.0, 0.9, 1.0]]]), cams)
    np.testing.assert_allclose(uv[:, 0], [[47.5, 31.5], [47.5, 31.5]])


def test_track_keeps_the_runner_centred_at_the_set_distance():
    # a pelvis running 4.5 m toward a camera 2.6 m from the path's middle: a fixed camera is run through
    T = 10
    root = np.stack([np.zeros(T), np.full(T, 0.9), np.linspace(-2.25, 2.25, T)], axis=-1)
    fixed = build_cameras(CameraSpec(kind="fixed", elevation=0), T, 64, 96, root=root)
    track = build_cameras(CameraSpec(kind="track", elevation=0), T, 64, 96, root=root)
    _, z_fixed = project(root[:, None], fixed)
    uv, z_track = project(root[:, None], track)
    assert z_fixed[-1, 0] < 0.5 < 4.5 < z_fixed[0, 0]
    np.testing.assert_allclose(z_track[:, 0], 2.6)
    np.testing.assert_allclose(uv[:, 0], np.tile([[47.5, 31.5]], (T, 1)), atol=1e-9)
    # two people side by side (rows person-major): the camera tracks their mid-point
    offset = np.array([0.5, 0.0, 0.0])
    two = np.concatenate([root + offset, root - offset])
    uv2, _ = project(root[:, None], build_cameras(CameraSpec(kind="track", elevation=0), T, 64, 96, root=two))
    np.testing.assert_allclose(uv2[:, 0], uv[:, 0], atol=1e-9)
    with pytest.raises(ValueError, match="track camera needs the root of every frame"):
        build_cameras(CameraSpec(kind="track"), T, 64, 96, root=root[:7])
    assert parse_camera("track:azimuth=90") == CameraSpec(kind="track", azimuth=90.0)


def test_pixel_rays_hit_projected_points():
    cams = build_cameras(CameraSpec(kind="fixed", azimuth=30, elevation=20), 1, 48, 64)
    origin, dirs = pixel_rays(cams, 0)
    point = np.array([0.3, 1.1, -0.2])
    uv, depth = project(point[None, None], cams)
    u, v = uv[0, 0]
    # the ray through the (fractional) projected pixel passes through the point
    d = (np.array([u, v, 1.0]) @ np.linalg.inv(cams.K).T) @ cams.R[0]
    d /= np.linalg.norm(d)
    along = (point - origin) @ d
    np.testing.assert_allclose(origin + along * d, point, atol=1e-9)
    np.testing.assert_allclose(np.linalg.norm(dirs, axis=-1), 1.0)
    assert depth[0, 0] > 0


def test_parse_camera_specs_and_errors():
    assert parse_camera("orbit") == CameraSpec(kind="orbit")
    spec = parse_camera("fixed:azimuth=90, elevation=20,follow=false")
    assert (spec.kind, spec.azimuth, spec.elevation, spec.follow) == ("fixed", 90.0, 20.0, False)
    with pytest.raises(ValueError, match="kind must be one of"):
        parse_camera("zoom")
    with pytest.raises(ValueError, match="azimut"):
        parse_camera("orbit:azimut=3")
    with pytest.raises(ValueError, match="not a number"):
        parse_camera("orbit:sweep=lots")
    with pytest.raises(ValueError, match="fov"):
        parse_camera("fixed:fov=0")
    assert math.isclose(parse_camera("dolly:end_distance=1.5").end_distance, 1.5)
