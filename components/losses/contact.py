"""3D contact loss (Eq. 10, Appendix B): penalise human points that penetrate the scene's convex hull.

Inputs are per-pixel point maps ``points`` ``[B,T,H,W,3]`` (from a depth/point network such as VGGT,
differentiable back to the frames) and person masks ``mask`` ``[B,T,H,W]`` (True = human). Per sample:
1. scene points = the non-human points of all frames (non-finite ones dropped), detached, and
   deterministically subsampled (evenly strided) to at most ``max_scene_points``. The hull of a
   subsample lies inside the full hull, so subsampling can only under-report penetration;
2. convex hull with ``scipy.spatial.ConvexHull``; its facets are half-spaces ``n·x + d ≤ 0`` with outward
   unit normals (``hull.equations``). With ``per_object=True`` the scene points are first split into
   connected clusters (points closer than ``cluster_radius``) and each cluster gets its own hull, so the
   empty space between two objects is no longer "inside the scene";
3. signed distance ``sdf(x) = max_f (n_f·x + d_f)`` (minimum over object hulls). Inside a hull this is
   exact (−distance to the nearest facet plane); outside it is a lower bound of the true distance
   (exact where the nearest hull feature is a facet interior, smaller near edges and corners);
4. per human point: depth beyond the tolerance ``−sdf − τ`` when penetrating (``sdf < −τ``, τ = 0 by
   default), otherwise ``attract_weight·|sdf|`` — the paper's pull toward the surface; every human point
   is pulled, including ones that should float (a raised hand), hence the small default weight (0
   turns it off). The gradient of the penetration term moves a point along the outward normal of
   its nearest facet.
A frame's loss is the mean over its human points (resolution independent); a sample's loss is the sum
over frames divided by the number of frames ``T`` (frames without human points add 0); the batch loss
is the mean over samples. A sample whose scene cannot span a 3D hull (fewer than 4 points, or all
coplanar — e.g. only a floor) contributes 0 and is flagged ``degenerate`` instead of raising.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import ConvexHull, QhullError, cKDTree
from torch import Tensor

_CHUNK = 1 << 22  # max entries of one [points, hulls, facets] block when evaluating the SDF


@dataclass(frozen=True)
class SceneHulls:
    """Half-spaces of one or more convex hulls: ``normals`` ``[K,F,3]`` (outward, unit) and ``offsets``
    ``[K,F]`` with ``n·x + offset ≤ 0`` inside; hulls with fewer facets are padded with ``-inf`` offsets."""

    normals: Tensor
    offsets: Tensor

    @property
    def num_objects(self) -> int:
        return int(self.normals.shape[0])


@dataclass(frozen=True)
class ContactLoss:
    """``loss`` scalar; ``degenerate`` bool ``[B]`` (no hull: the sample added 0); ``penetrating`` bool
    ``[B,T]`` (the frame has a human point with ``sdf < −τ``; False for degenerate samples)."""

    loss: Tensor
    degenerate: Tensor
    penetrating: Tensor


def _hull_equations(pts: np.ndarray) -> np.ndarray | None:
    """Deduplicated facet equations ``[F,4]`` of the hull of ``pts`` ``[S,3]``, or None if it is flat."""
    if len(pts) < 4:
        return None
    try:
        eq = ConvexHull(pts).equations
    except QhullError:
        return None
    _, keep = np.unique(np.round(eq, 9), axis=0, return_index=True)
    return eq[np.sort(keep)]


def _clusters(pts: np.ndarray, radius: float | None) -> list[np.ndarray]:
    """Connected groups of points closer than ``radius`` (default: 3× the median nearest-neighbour gap)."""
    pts = np.unique(pts, axis=0)  # repeated points would make the nearest-neighbour gap 0
    tree = cKDTree(pts)
    if radius is None:
        gaps = tree.query(pts, k=2)[0][:, 1]
        radius = 3.0 * float(np.median(gaps))
    pairs = tree.query_pairs(radius, output_type="ndarray")
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(len(pts), len(pts)))
    count, labels = connected_components(graph, directed=False)
    return [pts[labels == k] for k in range(count)]


def scene_hulls(
    scene_points: Tensor | np.ndarray,
    per_object: bool = False,
    cluster_radius: float | None = None,
    min_object_points: int = 20,
) -> SceneHulls | None:
    """Convex hull(s) of scene points ``[S,3]`` → ``SceneHulls`` (float64), or None when degenerate.

    ``per_object``: one hull per connected cluster (``cluster_radius``; clusters with fewer than
    ``min_object_points`` points or flat ones are skipped as noise).
    """
    pts = scene_points.detach().cpu().double().numpy() if isinstance(scene_points, Tensor) else scene_points
    pts = np.asarray(pts, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"scene points must be [S,3], got {pts.shape}")
    pts = pts[np.isfinite(pts).all(axis=1)]
    if per_object and len(pts) >= 4:
        groups = [g for g in _clusters(pts, cluster_radius) if len(g) >= max(min_object_points, 4)]
    else:
        groups = [pts]
    eqs = [e for e in (_hull_equations(g) for g in groups) if e is not None]
    if not eqs:
        return None
    f_max = max(len(e) for e in eqs)
    normals = torch.zeros(len(eqs), f_max, 3, dtype=torch.float64)
    offsets = torch.full((len(eqs), f_max), -torch.inf, dtype=torch.float64)
    for k, e in enumerate(eqs):
        normals[k, : len(e)] = torch.from_numpy(e[:, :3])
        offsets[k, : len(e)] = torch.from_numpy(e[:, 3])
    return SceneHulls(normals, offsets)


def hull_sdf(x: Tensor, hulls: SceneHulls) -> Tensor:
    """Approximate signed distance of points ``x`` ``[N,3]`` to the hulls → ``[N]`` (negative inside).

    ``min_k max_f (n_kf·x + d_kf)``: differentiable in ``x``; the gradient is the outward normal of the
    selected facet (one facet on ties, so a point at a hull's centre still gets a push).
    """
    normals = hulls.normals.to(device=x.device, dtype=x.dtype)
    offsets = hulls.offsets.to(device=x.device, dtype=x.dtype)
    k, f = offsets.shape
    rows = max(1, _CHUNK // max(k * f, 1))
    out = [
        (torch.einsum("nc,kfc->nkf", part, normals) + offsets).max(dim=2).values.min(dim=1).values
        for part in x.split(rows)
    ]
    return torch.cat(out) if out else x.new_zeros(0)


def _check(points: Tensor, mask: Tensor) -> None:
    if points.ndim != 5 or points.shape[-1] != 3 or not points.dtype.is_floating_point:
        raise ValueError(
            f"points must be a float point map [B,T,H,W,3], got {points.dtype} {tuple(points.shape)}"
        )
    if mask.shape != points.shape[:4]:
        raise ValueError(
            f"mask must be [B,T,H,W] = {tuple(points.shape[:4])} (True = human), got {tuple(mask.shape)}"
        )


def _sample_hulls(
    points: Tensor, mask: Tensor, max_scene_points: int, per_object: bool, cluster_radius: float | None
) -> SceneHulls | None:
    """Hull(s) of one sample's scene points (``points`` ``[T,H,W,3]``, ``mask`` ``[T,H,W]``)."""
    scene = points.detach()[~mask]
    scene = scene[torch.isfinite(scene).all(dim=-1)]
    if scene.shape[0] > max_scene_points:
        scene = scene[
            torch.linspace(0, scene.shape[0] - 1, max_scene_points, device=scene.device).round().long()
        ]
    return scene_hulls(scene, per_object=per_object, cluster_radius=cluster_radius)


def contact_loss(
    points: Tensor,
    mask: Tensor,
    tau: float = 0.0,
    attract_weight: float = 0.01,
    max_scene_points: int = 20000,
    per_object: bool = False,
    cluster_radius: float | None = None,
) -> ContactLoss:
    """Contact loss of point maps ``points`` ``[B,T,H,W,3]`` split by ``mask`` ``[B,T,H,W]`` (see module).

    Gradients flow to the human points only (the hull is built on detached scene points).
    """
    _check(points, mask)
    if tau < 0 or attract_weight < 0 or max_scene_points < 4:
        raise ValueError(
            f"need tau >= 0, attract_weight >= 0 and max_scene_points >= 4, got {tau}, {attract_weight}, "
            f"{max_scene_points}"
        )
    mask = mask.bool()
    b, t = points.shape[:2]
    degenerate = torch.zeros(b, dtype=torch.bool)
    penetrating = torch.zeros(b, t, dtype=torch.bool)
    per_sample: list[Tensor] = []
    for i in range(b):
        hulls = _sample_hulls(points[i], mask[i], max_scene_points, per_object, cluster_radius)
        if hulls is None:
            degenerate[i] = True
            per_sample.append(points.new_zeros(()))
            continue
        # every frame's human points in one gather and one SDF call, then per-frame means by frame
        # index: the same sums as a loop over frames, without a full-size gradient buffer per frame
        human = points[i][mask[i]]  # [N,3], frame-major
        frame = torch.arange(t, device=mask.device).repeat_interleave(mask[i].reshape(t, -1).sum(dim=1))
        finite = torch.isfinite(human).all(dim=-1)
        human, frame = human[finite], frame.to(human.device)[finite]
        sdf = hull_sdf(human, hulls)
        inside = sdf < -tau
        point_loss = torch.where(inside, -sdf - tau, attract_weight * sdf.abs())
        count = torch.bincount(frame, minlength=t)
        hits = torch.bincount(frame, weights=inside.double(), minlength=t)
        penetrating[i] = (hits > 0).cpu()
        sums = point_loss.new_zeros(t).index_add(0, frame, point_loss)
        has = count > 0  # frames without human points add 0
        per_sample.append((sums[has] / count[has].to(sums.dtype)).sum() / t)
    return ContactLoss(torch.stack(per_sample).mean(), degenerate, penetrating)


def contact_violation_frames(
    points: Tensor,
    mask: Tensor,
    tau: float = 0.0,
    max_scene_points: int = 20000,
    per_object: bool = False,
    cluster_radius: float | None = None,
) -> tuple[float, int]:
    """(share of measured frames in which a human point lies inside the scene hull(s), ``sdf < −τ``;
    the number of measured frames).

    A frame is measured when its sample has a hull and the frame has at least one human point: a frame
    without a person cannot violate contact and must not count as a frame that did not. The share is
    NaN when no frame can be measured, so a report shows "not measurable" rather than a perfect 0.
    """
    _check(points, mask)
    with torch.no_grad():
        out = contact_loss(points, mask, tau, 0.0, max_scene_points, per_object, cluster_radius)
    b, t = out.penetrating.shape
    has_person = mask.reshape(b, t, -1).any(-1).cpu()
    measured = (~out.degenerate)[:, None].expand(b, t) & has_person
    n = int(measured.sum())
    if n == 0:
        return float("nan"), 0
    return float(out.penetrating[measured].float().mean()), n


def contact_violation_rate(
    points: Tensor,
    mask: Tensor,
    tau: float = 0.0,
    max_scene_points: int = 20000,
    per_object: bool = False,
    cluster_radius: float | None = None,
) -> float:
    """Share of measured frames in which any human point lies inside the scene hull(s) (``sdf < −τ``):
    :func:`contact_violation_frames` without the count (NaN when no frame can be measured)."""
    return contact_violation_frames(points, mask, tau, max_scene_points, per_object, cluster_radius)[0]
