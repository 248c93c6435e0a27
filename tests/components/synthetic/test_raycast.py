"""Ray–primitive intersections against hand-computed cases, and the z-buffer over primitives."""

from __future__ import annotations

import math

import numpy as np
import pytest

from components.synthetic.raycast import (
    Geometry,
    aabb_normal,
    camera_depth,
    capsule_normal,
    cast,
    ellipsoid_normal,
    ray_aabb,
    ray_capsule,
    ray_ellipsoid,
    ray_plane,
    ray_sphere,
)

CAP_A, CAP_B, CAP_R = np.array([[0.0, 0.0, 0.0]]), np.array([[0.0, 2.0, 0.0]]), np.array([0.5])


@pytest.mark.parametrize(
    ("origin", "direction", "expected"),
    [
        ((0, 1, 5), (0, 0, -1), 4.5),  # side of the cylinder
        ((0.3, 1, 5), (0, 0, -1), 5 - 0.4),  # off-centre: sqrt(0.5² - 0.3²) = 0.4
        ((0, 5, 0), (0, -1, 0), 2.5),  # along the axis onto the cap at b
        ((0, -3, 0), (0, 1, 0), 2.5),  # along the axis onto the cap at a
        ((0, 2.3, 5), (0, 0, -1), 4.6),  # above b: the end sphere, 0.3 above its centre
        ((0, -0.3, -5), (0, 0, 1), 4.6),  # below a
        ((0.6, 1, 5), (0, 0, -1), math.inf),  # passes beside
        ((0, 2.6, 5), (0, 0, -1), math.inf),  # passes above
        ((0, 1, 5), (0, 0, 1), math.inf),  # points away
    ],
)
def test_ray_capsule_hand_computed(origin, direction, expected):
    t = ray_capsule(np.array(origin, float), np.array(direction, float), CAP_A, CAP_B, CAP_R)
    assert t.shape == (1, 1)
    assert t[0, 0] == pytest.approx(expected, abs=1e-9)


def test_capsule_normals_on_side_and_cap():
    p = np.array([[0.0, 1.0, 0.5], [0.0, 2.3, 0.4]])
    n = capsule_normal(p, np.repeat(CAP_A, 2, 0), np.repeat(CAP_B, 2, 0))
    np.testing.assert_allclose(n, [[0, 0, 1], [0, 0.6, 0.8]], atol=1e-12)


def test_ray_capsule_random_rays_hit_surface_and_misses_stay_clear():
    rng = np.random.default_rng(0)
    a, b, r = np.array([[0.2, 0.5, -0.1]]), np.array([[-0.4, 1.3, 0.3]]), np.array([0.25])
    o = rng.normal(size=(400, 3)) * 0.4 + [0, 0.9, 4.0]
    target = rng.uniform([-0.8, 0.0, -0.6], [0.8, 1.8, 0.6], size=(400, 3))
    d = target - o
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    t = ray_capsule(o, d, a, b, r)[:, 0]
    ba = b[0] - a[0]

    def dist(p):
        s = np.clip(((p - a[0]) @ ba) / (ba @ ba), 0, 1)
        return np.linalg.norm(p - (a[0] + s[..., None] * ba), axis=-1)

    hit = np.isfinite(t)
    assert 50 < hit.sum() < 350
    np.testing.assert_allclose(dist(o[hit] + t[hit, None] * d[hit]), 0.25, atol=1e-9)
    # Just before the entry the ray is outside; a missing ray never comes within r of the segment.
    assert (dist(o[hit] + (t[hit, None] - 1e-4) * d[hit]) > 0.25).all()
    s = np.linspace(0, 8, 8001)
    pts = o[~hit][:, None] + s[None, :, None] * d[~hit][:, None]
    assert (dist(pts).min(1) > 0.25 - 1e-3).all()


def test_degenerate_capsule_is_a_sphere():
    o, d = np.array([0.0, 0.0, -5.0]), np.array([[0.0, 0.0, 1.0], [0.0, 0.6, 0.8]])
    c = np.array([[0.0, 0.0, 0.0]])
    t_cap = ray_capsule(o, d, c, c, np.array([1.0]))
    t_sph = ray_sphere(o, d, c, np.array([1.0]))
    np.testing.assert_allclose(t_cap, t_sph)
    assert t_sph[0, 0] == pytest.approx(4.0)


def test_ray_sphere_and_ellipsoid_hand_computed():
    o = np.array([0.0, 0.0, -5.0])
    assert ray_sphere(o, np.array([0, 0, 1.0]), np.zeros((1, 3)), np.array([1.0]))[0, 0] == pytest.approx(4.0)
    assert ray_sphere(o, np.array([0, 0, -1.0]), np.zeros((1, 3)), np.array([1.0]))[0, 0] == math.inf
    radii = np.array([[2.0, 1.0, 0.5]])
    eye = np.eye(3)[None]
    assert ray_ellipsoid(o, np.array([0, 0, 1.0]), np.zeros((1, 3)), eye, radii)[0, 0] == pytest.approx(4.5)
    t = ray_ellipsoid(np.array([-5.0, 0, 0]), np.array([1.0, 0, 0]), np.zeros((1, 3)), eye, radii)
    assert t[0, 0] == pytest.approx(3.0)
    # Rotate the ellipsoid 90° about Y: its long local x axis now points along world z.
    rot = np.array([[[0.0, 0, 1], [0, 1, 0], [-1, 0, 0]]])  # columns: local x = world -z, local z = +x
    t = ray_ellipsoid(o, np.array([0, 0, 1.0]), np.zeros((1, 3)), rot, radii)
    assert t[0, 0] == pytest.approx(3.0)
    p = np.array([[0.0, 0.0, -2.0]])
    np.testing.assert_allclose(ellipsoid_normal(p, np.zeros((1, 3)), rot, radii), [[0, 0, -1]], atol=1e-12)
    # Off-axis point on an axis-aligned ellipsoid: normal ∝ (x/a², y/b², z/c²).
    p = np.array([[2 * math.cos(0.5), math.sin(0.5), 0.0]])
    n = ellipsoid_normal(p, np.zeros((1, 3)), eye, radii)
    ref = np.array([math.cos(0.5) / 2, math.sin(0.5), 0.0])
    np.testing.assert_allclose(n[0], ref / np.linalg.norm(ref), atol=1e-12)


def test_ray_plane_hand_computed():
    n, off = np.array([[0.0, 1.0, 0.0]]), np.zeros(1)
    d = np.array([0.0, -1.0, 1.0]) / math.sqrt(2)
    assert ray_plane(np.array([0, 2.0, 0]), d, n, off)[0, 0] == pytest.approx(2 * math.sqrt(2))
    assert ray_plane(np.array([0, 2.0, 0]), np.array([0, 0, 1.0]), n, off)[0, 0] == math.inf  # parallel
    assert ray_plane(np.array([0, 2.0, 0]), np.array([0, 1.0, 0]), n, off)[0, 0] == math.inf  # behind


def test_ray_aabb_hand_computed():
    lo, hi = np.array([[-1.0, 0.0, -1.0]]), np.array([[1.0, 1.0, 1.0]])
    o = np.array([[0.0, 0.5, -5.0], [3.0, 2.5, 0.0], [3.0, 1.5, 0.0], [0.0, 0.5, 0.0]])
    d = np.array([[0, 0, 1.0], [-1, -1, 0], [-1, -1, 0], [0, 0, 1.0]])
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    t = ray_aabb(o, d, lo, hi)[:, 0]
    assert t[0] == pytest.approx(4.0)
    assert t[1] == pytest.approx(2 * math.sqrt(2))  # enters through x = 1 at (1, 0.5, 0)
    assert t[2] == math.inf  # leaves the y slab before entering the x slab
    assert t[3] == math.inf  # starts inside: not a hit (documented)
    p = o[:2] + t[:2, None] * d[:2]
    np.testing.assert_allclose(p[1], [1.0, 0.5, 0.0], atol=1e-12)
    n = aabb_normal(p, np.repeat(lo, 2, 0), np.repeat(hi, 2, 0))
    np.testing.assert_allclose(n, [[0, 0, -1], [1, 0, 0]])


def test_cast_closest_primitive_wins_with_ids_and_normals():
    geom = Geometry(
        plane_normal=np.array([[0.0, 1.0, 0.0]]),
        plane_offset=np.zeros(1),
        box_lo=np.array([[-0.5, 0.0, 1.0]]),
        box_hi=np.array([[0.5, 1.0, 1.5]]),
        cap_a=np.array([[0.0, 0.0, 0.0]]),
        cap_b=np.array([[0.0, 2.0, 0.0]]),
        cap_r=np.array([0.3]),
        ell_center=np.array([[1.5, 1.0, -1.0]]),
        ell_axes=np.eye(3)[None],
        ell_radii=np.array([[0.5, 0.5, 0.5]]),
    )
    o = np.array([0.0, 0.5, 5.0])
    d = np.array([[0, 0, -1.0], [0, 0.3, -1.0], [1.5, 0.5, -6.0], [0, -0.3, -1.0], [0, 0.5, -1]])
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    h = cast(o, d, geom)
    assert h.prim.tolist() == [1, 2, 3, 0, -1]  # box in front of capsule; capsule top; ellipsoid; ground
    assert h.t[0] == pytest.approx(3.5)
    np.testing.assert_allclose(h.normal[0], [0, 0, 1])
    np.testing.assert_allclose(h.normal[3], [0, 1, 0])
    assert h.t[4] == math.inf
    # Camera depth along the optical axis (-z here) equals t·cos(angle).
    np.testing.assert_allclose(camera_depth(h.t[:1], d[:1], np.array([0, 0, -1.0])), [3.5])
