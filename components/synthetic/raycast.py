"""Vectorised analytic ray casting: planes, axis-aligned boxes, capsules and ellipsoids.

Rays are ``o + t·d`` with ``d`` unit length (world metres); ``o`` is one origin ``[3]`` (camera rays) or
one per ray ``[P,3]`` (shadow rays). Every ``ray_*`` function returns the entry distance ``t`` of each
ray against each primitive, ``[P,N]``, with ``inf`` where the ray misses or enters behind ``t_min``.
A ray that starts inside a primitive does not hit it (the camera is assumed to be outside all geometry;
shadow rays start on a surface, offset along its normal). ``cast`` runs a z-buffer over a ``Geometry``:
the closest hit wins, so occlusion between primitives is exact.

Primitive ids in a ``Geometry`` run over planes, then boxes, then capsules, then ellipsoids.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

T_MIN = 1e-6  # hits closer than this along the ray are ignored


def _as_rays(o: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    o = np.asarray(o, dtype=np.float64).reshape(-1, 3)
    d = np.asarray(d, dtype=np.float64).reshape(-1, 3)
    return o, d


def ray_plane(o: np.ndarray, d: np.ndarray, normal: np.ndarray, offset: np.ndarray, t_min: float = T_MIN):
    """Planes ``n·x = offset`` (``normal`` [N,3] unit, ``offset`` [N]) → t [P,N]."""
    o, d = _as_rays(o, d)
    n = np.asarray(normal, dtype=np.float64).reshape(-1, 3)
    denom = d @ n.T
    num = np.asarray(offset, dtype=np.float64).reshape(1, -1) - o @ n.T
    with np.errstate(divide="ignore", invalid="ignore"):
        t = num / denom
    return np.where((np.abs(denom) > 1e-12) & (t > t_min), t, np.inf)


def ray_sphere(o: np.ndarray, d: np.ndarray, center: np.ndarray, radius: np.ndarray, t_min: float = T_MIN):
    """Spheres (``center`` [N,3], ``radius`` [N]) → t [P,N]."""
    o, d = _as_rays(o, d)
    c = np.asarray(center, dtype=np.float64).reshape(-1, 3)
    r = np.asarray(radius, dtype=np.float64).reshape(1, -1)
    # oc = o - c; b = d·oc; cc = |oc|² - r²
    b = (d * o).sum(-1, keepdims=True) - d @ c.T
    cc = (o * o).sum(-1, keepdims=True) - 2.0 * o @ c.T + (c * c).sum(-1)[None] - r * r
    return _entry(b, cc, t_min)


def _entry(b: np.ndarray, c: np.ndarray, t_min: float) -> np.ndarray:
    """Near root of t² + 2bt + c = 0 when it lies beyond t_min, else inf."""
    h = b * b - c
    t = -b - np.sqrt(np.maximum(h, 0.0))
    return np.where((h >= 0.0) & (t > t_min), t, np.inf)


def ray_capsule(
    o: np.ndarray, d: np.ndarray, a: np.ndarray, b: np.ndarray, radius: np.ndarray, t_min: float = T_MIN
):
    """Capsules (segment ``a``→``b`` [N,3] swept by a sphere of ``radius`` [N]) → t [P,N].

    The capsule is the union of a finite cylinder and two end spheres, all convex, so for a ray starting
    outside it the entry point is the nearest of the three entries. ``a == b`` gives a sphere.
    """
    o, d = _as_rays(o, d)
    a = np.asarray(a, dtype=np.float64).reshape(-1, 3)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 3)
    r2 = np.asarray(radius, dtype=np.float64).reshape(1, -1) ** 2
    ba = b - a
    baba = (ba * ba).sum(-1)[None]  # [1,N]
    bard = d @ ba.T  # [P,N]
    baoa = o @ ba.T - (a * ba).sum(-1)[None]  # ba·(o - a)
    rdoa = (d * o).sum(-1, keepdims=True) - d @ a.T  # d·(o - a)
    oaoa = (o * o).sum(-1, keepdims=True) - 2.0 * o @ a.T + (a * a).sum(-1)[None]
    # Finite cylinder: |oa + t d - ba (y/baba)|² = r², y = baoa + t·bard in (0, baba).
    qa = baba - bard * bard
    qb = baba * rdoa - baoa * bard
    qc = baba * oaoa - baoa * baoa - r2 * baba
    h = qb * qb - qa * qc
    ok = (qa > 1e-12 * np.maximum(baba, 1e-12)) & (h >= 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_cyl = (-qb - np.sqrt(np.maximum(h, 0.0))) / np.where(ok, qa, 1.0)
    y = baoa + t_cyl * bard
    t_cyl = np.where(ok & (t_cyl > t_min) & (y > 0.0) & (y < baba), t_cyl, np.inf)
    # End spheres: at a (oc = oa) and at b (oc = oa - ba).
    t_a = _entry(rdoa, oaoa - r2, t_min)
    t_b = _entry(rdoa - bard, oaoa - 2.0 * baoa + baba - r2, t_min)
    return np.minimum(t_cyl, np.minimum(t_a, t_b))


def ray_ellipsoid(
    o: np.ndarray,
    d: np.ndarray,
    center: np.ndarray,
    axes: np.ndarray,
    radii: np.ndarray,
    t_min: float = T_MIN,
):
    """Ellipsoids → t [P,N]; ``axes`` [N,3,3] has the unit local axes as columns, ``radii`` [N,3]."""
    o, d = _as_rays(o, d)
    c = np.asarray(center, dtype=np.float64).reshape(-1, 3)
    ax = np.asarray(axes, dtype=np.float64).reshape(-1, 3, 3)
    s = np.asarray(radii, dtype=np.float64).reshape(-1, 3)
    # Local (unit-sphere) coordinates: q = (Aᵀ (x - c)) / s.
    dl = np.einsum("pk,nkj->pnj", d, ax) / s[None]
    ol = (np.einsum("pk,nkj->pnj", o, ax) - np.einsum("nk,nkj->nj", c, ax)[None]) / s[None]
    qa = (dl * dl).sum(-1)
    qb = (ol * dl).sum(-1)
    qc = (ol * ol).sum(-1) - 1.0
    h = qb * qb - qa * qc
    t = (-qb - np.sqrt(np.maximum(h, 0.0))) / qa
    return np.where((h >= 0.0) & (t > t_min), t, np.inf)


def ray_aabb(o: np.ndarray, d: np.ndarray, lo: np.ndarray, hi: np.ndarray, t_min: float = T_MIN):
    """Axis-aligned boxes (corners ``lo``, ``hi`` [N,3]) → t [P,N] by the slab method."""
    o, d = _as_rays(o, d)
    lo = np.asarray(lo, dtype=np.float64).reshape(-1, 3)
    hi = np.asarray(hi, dtype=np.float64).reshape(-1, 3)
    inv = 1.0 / np.where(np.abs(d) < 1e-15, 1e-15, d)
    t_near, t_far = np.full((len(d), len(lo)), -np.inf), np.full((len(d), len(lo)), np.inf)
    for k in range(3):  # per axis [P,N]: faster than reducing a trailing axis of 3
        t1 = (lo[None, :, k] - o[:, k, None]) * inv[:, k, None]
        t2 = (hi[None, :, k] - o[:, k, None]) * inv[:, k, None]
        t_near = np.maximum(t_near, np.minimum(t1, t2))
        t_far = np.minimum(t_far, np.maximum(t1, t2))
    return np.where((t_near <= t_far) & (t_near > t_min), t_near, np.inf)


# --- normals at hit points --------------------------------------------------------------------
def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def capsule_normal(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Outward normals [P,3] at points ``p`` on capsules with segments ``a``→``b`` (each [P,3])."""
    ba = b - a
    s = np.clip(((p - a) * ba).sum(-1) / np.maximum((ba * ba).sum(-1), 1e-12), 0.0, 1.0)
    return _unit(p - (a + s[:, None] * ba))


def ellipsoid_normal(p: np.ndarray, center: np.ndarray, axes: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Outward normals [P,3] at points on ellipsoids (``center`` [P,3], ``axes`` [P,3,3], ``radii`` [P,3])."""
    q = np.einsum("pk,pkj->pj", p - center, axes) / radii**2
    return _unit(np.einsum("pij,pj->pi", axes, q))


def aabb_normal(p: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Outward normals [P,3] at points on boxes: the axis of the nearest face."""
    dist = np.concatenate([np.abs(p - lo), np.abs(p - hi)], axis=-1)  # [P,6]
    k = dist.argmin(-1)
    n = np.zeros_like(p)
    n[np.arange(len(p)), k % 3] = np.where(k < 3, -1.0, 1.0)
    return n


# --- geometry and the z-buffer ----------------------------------------------------------------
def _empty(*shape: int) -> np.ndarray:
    return np.zeros((0, *shape), dtype=np.float64)


@dataclass(frozen=True)
class Geometry:
    """One frame's primitives, all world metres. Ids: planes, boxes, capsules, ellipsoids (in that order)."""

    plane_normal: np.ndarray = field(default_factory=lambda: _empty(3))
    plane_offset: np.ndarray = field(default_factory=lambda: _empty())
    box_lo: np.ndarray = field(default_factory=lambda: _empty(3))
    box_hi: np.ndarray = field(default_factory=lambda: _empty(3))
    cap_a: np.ndarray = field(default_factory=lambda: _empty(3))
    cap_b: np.ndarray = field(default_factory=lambda: _empty(3))
    cap_r: np.ndarray = field(default_factory=lambda: _empty())
    ell_center: np.ndarray = field(default_factory=lambda: _empty(3))
    ell_axes: np.ndarray = field(default_factory=lambda: _empty(3, 3))
    ell_radii: np.ndarray = field(default_factory=lambda: _empty(3))
    bound_center: np.ndarray | None = None  # optional bounding sphere of the capsules and ellipsoids
    bound_radius: float = 0.0

    @property
    def counts(self) -> tuple[int, int, int, int]:
        return len(self.plane_normal), len(self.box_lo), len(self.cap_a), len(self.ell_center)

    def __len__(self) -> int:
        return sum(self.counts)


@dataclass(frozen=True)
class Hits:
    """Closest hit per ray: distance ``t`` [P] (inf = miss), primitive id [P] (-1 = miss), normal [P,3]."""

    t: np.ndarray
    prim: np.ndarray
    normal: np.ndarray

    def points(self, o: np.ndarray, d: np.ndarray) -> np.ndarray:
        """Hit points [P,3] (inf rows for misses)."""
        return np.asarray(o).reshape(-1, 3) + self.t[:, None] * np.asarray(d).reshape(-1, 3)


def _miss(p: int) -> Hits:
    return Hits(np.full(p, np.inf), np.full(p, -1, dtype=np.int64), np.zeros((p, 3)))


def cast(o: np.ndarray, d: np.ndarray, geom: Geometry, t_min: float = T_MIN) -> Hits:
    """Closest hit of every ray against every primitive of ``geom`` (a z-buffer over primitives).

    If ``geom`` has a bounding sphere and no planes or boxes (a body), only rays whose line meets the
    sphere are tested; the others miss.
    """
    o, d = _as_rays(o, d)
    P = len(d)
    hits = _miss(P)
    if len(geom) == 0 or P == 0:
        return hits
    n_pl, n_bx, n_cp, n_el = geom.counts
    sel = np.arange(P)
    if geom.bound_center is not None and n_pl == 0 and n_bx == 0:
        tb = ray_sphere(o, d, geom.bound_center[None], np.array([geom.bound_radius]), t_min=-np.inf)[:, 0]
        sel = np.flatnonzero(np.isfinite(tb))
        if len(sel) == 0:
            return hits
    os_ = o if len(o) == 1 else o[sel]
    ds = d[sel]
    groups = []
    if n_pl:
        groups.append(ray_plane(os_, ds, geom.plane_normal, geom.plane_offset, t_min))
    if n_bx:
        groups.append(ray_aabb(os_, ds, geom.box_lo, geom.box_hi, t_min))
    if n_cp:
        groups.append(ray_capsule(os_, ds, geom.cap_a, geom.cap_b, geom.cap_r, t_min))
    if n_el:
        groups.append(ray_ellipsoid(os_, ds, geom.ell_center, geom.ell_axes, geom.ell_radii, t_min))
    tt = np.concatenate(groups, axis=1)
    k = tt.argmin(1)
    t = tt[np.arange(len(sel)), k]
    hit = np.isfinite(t)
    sel, k, t = sel[hit], k[hit], t[hit]
    if len(sel) == 0:
        return hits
    p = (o if len(o) == 1 else o[sel]) + t[:, None] * d[sel]
    normal = np.zeros((len(sel), 3))
    start = np.cumsum([0, n_pl, n_bx, n_cp])
    m = k < start[1]
    normal[m] = geom.plane_normal[k[m]]
    m = (k >= start[1]) & (k < start[2])
    if m.any():
        i = k[m] - start[1]
        normal[m] = aabb_normal(p[m], geom.box_lo[i], geom.box_hi[i])
    m = (k >= start[2]) & (k < start[3])
    if m.any():
        i = k[m] - start[2]
        normal[m] = capsule_normal(p[m], geom.cap_a[i], geom.cap_b[i])
    m = k >= start[3]
    if m.any():
        i = k[m] - start[3]
        normal[m] = ellipsoid_normal(p[m], geom.ell_center[i], geom.ell_axes[i], geom.ell_radii[i])
    hits.t[sel], hits.prim[sel], hits.normal[sel] = t, k, normal
    return hits


def camera_depth(t: np.ndarray, d: np.ndarray, forward: np.ndarray) -> np.ndarray:
    """Camera z (metres along the optical axis ``forward``) of hits at ray distance ``t`` along unit ``d``."""
    return t * (np.asarray(d).reshape(-1, 3) @ np.asarray(forward, dtype=np.float64))
