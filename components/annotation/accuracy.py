"""Accuracy of the annotators against the exact labels of synthetic clips (``components.synthetic``).

Three measures: PCK of 2D keypoints, person-mask IoU and point-track end-point error. For the last,
``ground_truth_tracks`` derives the true 2D trajectories of the surface points seen at query pixels
from the rendered depth, the cameras and the body geometry (``build_body``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from components.annotation.tracks import Tracks
from components.motion.camera import Cameras, project
from components.motion.humanml3d import rotation_between
from components.synthetic.body import Body, build_body
from components.synthetic.labels import FIRST_BODY_PART, PART
from components.synthetic.render import GroundTruth


# --- keypoints ---------------------------------------------------------------------------------
def bbox_diagonal(gt_kp: np.ndarray, gt_visible: np.ndarray) -> np.ndarray:
    """Per frame [T]: diagonal (px) of the axis-aligned box around the visible keypoints ``gt_kp`` [T,K,2].

    NaN for a frame with no visible keypoint (0 with one).
    """
    kp = np.asarray(gt_kp, dtype=np.float64)
    vis = np.asarray(gt_visible, dtype=bool) & np.isfinite(kp).all(-1)
    lo = np.where(vis[..., None], kp, np.inf).min(1)
    hi = np.where(vis[..., None], kp, -np.inf).max(1)
    diag = np.linalg.norm(hi - lo, axis=-1)
    return np.where(vis.any(1), diag, np.nan)


def mask_bbox_diagonal(mask: np.ndarray) -> np.ndarray:
    """Per frame [T]: diagonal (px) of the box around the mask pixels of ``mask`` [T,H,W], counting whole
    pixels (a single pixel has diagonal √2). NaN for an empty frame."""
    mask = np.asarray(mask, dtype=bool)
    out = np.full(len(mask), np.nan)
    for i, m in enumerate(mask):
        ys, xs = np.nonzero(m)
        if len(ys):
            out[i] = np.hypot(xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
    return out


def pck(
    pred: np.ndarray,
    pred_conf: np.ndarray,
    gt: np.ndarray,
    gt_visible: np.ndarray,
    bbox_diag: np.ndarray | None = None,
    alpha: float = 0.1,
    conf_threshold: float = 0.3,
) -> float:
    """PCK@alpha: the share of ground-truth-visible keypoints that are predicted correctly.

    Counted keypoints: ``gt_visible[t,k]`` in frames whose ``bbox_diag[t]`` (px; default
    ``bbox_diagonal(gt, gt_visible)``) is finite and positive. Keypoint (t,k) is correct when
    ``pred_conf[t,k] > conf_threshold``, ``pred[t,k]`` is finite and
    ``‖pred[t,k] − gt[t,k]‖ ≤ alpha · bbox_diag[t]``; a missing prediction (low confidence or NaN)
    counts as wrong. Shapes: pred, gt [T,K,2]; pred_conf, gt_visible [T,K]. NaN when nothing is counted.
    """
    pred, gt = np.asarray(pred, dtype=np.float64), np.asarray(gt, dtype=np.float64)
    conf, vis = np.asarray(pred_conf, dtype=np.float64), np.asarray(gt_visible, dtype=bool)
    if pred.shape != gt.shape or pred.ndim != 3 or pred.shape[-1] != 2:
        raise ValueError(f"pred and gt must both be [T,K,2], got {pred.shape} and {gt.shape}")
    if conf.shape != pred.shape[:2] or vis.shape != pred.shape[:2]:
        raise ValueError(f"pred_conf and gt_visible must be [T,K] = {pred.shape[:2]}")
    diag = bbox_diagonal(gt, vis) if bbox_diag is None else np.asarray(bbox_diag, dtype=np.float64)
    if diag.shape != (len(gt),):
        raise ValueError(f"bbox_diag must be [T] = ({len(gt)},), got {diag.shape}")
    good_frame = np.isfinite(diag) & (diag > 0)
    counted = vis & good_frame[:, None]
    n = int(counted.sum())
    if n == 0:
        return float("nan")
    with np.errstate(invalid="ignore"):
        dist = np.linalg.norm(pred - gt, axis=-1)
        hit = (conf > conf_threshold) & np.isfinite(dist) & (dist <= alpha * diag[:, None])
    return float((hit & counted).sum() / n)


# --- masks -------------------------------------------------------------------------------------
def mask_iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean over frames of |pred ∩ gt| / |pred ∪ gt| for bool masks [T,H,W] (or one [H,W] frame).

    Frames where the union is empty (no person predicted nor present) are left out; NaN if all are.
    """
    pred, gt = np.asarray(pred, dtype=bool), np.asarray(gt, dtype=bool)
    if pred.shape != gt.shape:
        raise ValueError(f"pred and gt masks differ in shape: {pred.shape} vs {gt.shape}")
    if pred.ndim == 2:
        pred, gt = pred[None], gt[None]
    inter = (pred & gt).reshape(len(pred), -1).sum(1)
    union = (pred | gt).reshape(len(pred), -1).sum(1)
    keep = union > 0
    if not keep.any():
        return float("nan")
    return float(np.mean(inter[keep] / union[keep]))


# --- ground-truth tracks -----------------------------------------------------------------------


# Capsule part → the part whose frame carries its twist (a capsule label, or an ellipsoid label for the
# torso and pelvis frames). Proximal capsules follow the torso/pelvis, distal ones their parent limb.
_TWIST_PARENT = {
    "neck": "torso",
    "torso": "torso",
    "pelvis": "pelvis",
    **{f"{s}_upper_arm": "torso" for s in ("left", "right")},
    **{f"{s}_thigh": "pelvis" for s in ("left", "right")},
    **{f"{s}_forearm": f"{s}_upper_arm" for s in ("left", "right")},
    **{f"{s}_hand": f"{s}_forearm" for s in ("left", "right")},
    **{f"{s}_shin": f"{s}_thigh" for s in ("left", "right")},
    **{f"{s}_foot": f"{s}_shin" for s in ("left", "right")},
}


def _primitive_rotations(body: Body, q: int) -> np.ndarray:
    """Rotations [P,T,3,3] carrying each primitive's local offsets from frame q to every frame.

    Ellipsoids are rigid: ``A_t A_qᵀ``. A capsule's axis is defined by its segment, but its twist about
    the axis is not (two end points fix no roll); it inherits the twist of a parent frame (see
    ``_TWIST_PARENT``): ``M_t = M_parent,t · S_t`` where ``S_t`` is the minimal rotation turning the
    axis at frame q into the axis at frame t seen in the parent's frame (``M_parent,tᵀ u_t``).
    """
    C = body.num_capsules
    T = body.num_frames
    names = {v: k for k, v in PART.items()}
    ell_rot = np.einsum("teij,ekj->etik", body.ell_axes, body.ell_axes[q])  # A_t A_qᵀ per ellipsoid
    rots: list[np.ndarray | None] = [None] * (C + len(body.ell_radii))
    frame_of: dict[str, np.ndarray] = {}
    for e in range(len(body.ell_radii)):
        rots[C + e] = ell_rot[e]
        frame_of.setdefault(names[int(body.parts[C + e])], ell_rot[e])  # first torso/pelvis ellipsoid
    axis = body.cap_b - body.cap_a
    axis = axis / np.maximum(np.linalg.norm(axis, axis=-1, keepdims=True), 1e-12)  # [T,C,3]
    fallback = frame_of.get("torso", np.broadcast_to(np.eye(3), (T, 3, 3)))
    pending = list(range(C))
    while pending:
        left = []
        for k in pending:
            part = names[int(body.parts[k])]
            parent_name = _TWIST_PARENT.get(part, "torso")
            parent = frame_of.get(parent_name)
            if parent is None and parent_name in {names[int(body.parts[i])] for i in pending}:
                left.append(k)  # its parent capsule is not resolved yet
                continue
            if parent is None:
                parent = fallback
            seen = np.einsum("tji,tj->ti", parent, axis[:, k])  # M_parentᵀ u_t
            rot = parent @ rotation_between(np.broadcast_to(axis[q, k], seen.shape), seen)
            rots[k] = rot
            frame_of.setdefault(part, rot)  # the first capsule of a part (e.g. the whole thigh)
        if len(left) == len(pending):  # a cycle cannot happen with _TWIST_PARENT; guard anyway
            for k in left:
                rots[k] = fallback
            break
        pending = left
    return np.stack(rots)


def _surface_distance(body: Body, i: int, x: np.ndarray) -> np.ndarray:
    """Approximate signed distance [P,Prim] of points x [P,3] to every primitive's surface in frame i."""
    a, b, r = body.cap_a[i], body.cap_b[i], body.cap_r
    ba = b - a
    s = np.clip(
        np.einsum("pnk,nk->pn", x[:, None] - a[None], ba) / np.maximum((ba * ba).sum(-1), 1e-12), 0, 1
    )
    closest = a[None] + s[..., None] * ba[None]
    d_cap = np.linalg.norm(x[:, None] - closest, axis=-1) - r[None]
    loc = np.einsum("pek,ekj->pej", x[:, None] - body.ell_center[i][None], body.ell_axes[i]) / body.ell_radii
    d_ell = (np.linalg.norm(loc, axis=-1) - 1.0) * body.ell_radii.min(1)[None]
    return np.concatenate([d_cap, d_ell], axis=1)


def _move_body_points(body: Body, q: int, x: np.ndarray, parts: np.ndarray) -> np.ndarray:
    """World positions [T,P,3] of body surface points x [P,3] (seen at frame q, part labels [P])."""
    C = body.num_capsules
    d = np.abs(_surface_distance(body, q, x))
    d[parts[:, None] != body.parts[None]] = np.inf  # the primitive must carry the pixel's part label
    prim = d.argmin(1)
    rots = _primitive_rotations(body, q)  # [Prim,T,3,3]
    out = np.empty((body.num_frames, len(x), 3))
    cap = prim < C
    if cap.any():
        k = prim[cap]
        a_q, b_q = body.cap_a[q, k], body.cap_b[q, k]
        len_q = np.linalg.norm(b_q - a_q, axis=-1)
        u_q = (b_q - a_q) / np.maximum(len_q, 1e-12)[:, None]
        s = ((x[cap] - a_q) * u_q).sum(-1)  # metres along the axis from a
        perp = x[cap] - a_q - s[:, None] * u_q
        a_t, b_t = body.cap_a[:, k], body.cap_b[:, k]  # [T,P,3]
        len_t = np.linalg.norm(b_t - a_t, axis=-1)
        u_t = (b_t - a_t) / np.maximum(len_t, 1e-12)[..., None]
        # Inside the segment the point keeps its fraction of the length; beyond an end, its distance.
        along = np.where(
            s < 0, s, np.where(s > len_q, len_t + (s - len_q), s / np.maximum(len_q, 1e-12) * len_t)
        )
        turned = np.einsum("ptij,pj->tpi", rots[k], perp)
        out[:, cap] = a_t + along[..., None] * u_t + turned
    ell = ~cap
    if ell.any():
        k = prim[ell]
        e = k - C
        off = x[ell] - body.ell_center[q, e]
        out[:, ell] = body.ell_center[:, e] + np.einsum("ptij,pj->tpi", rots[k], off)
    return out


def _depth_visible(uv: np.ndarray, z: np.ndarray, depth: np.ndarray, tolerance: float) -> np.ndarray:
    """In front of the camera, inside the image and not behind the rendered surface.

    Not behind: z ≤ (the largest rendered depth among the 4 pixels around uv) + tolerance, so sloped
    surfaces and sub-pixel positions do not count as occlusion (at silhouettes this is lenient by a pixel).
    """
    T, H, W = depth.shape
    px = np.rint(uv)
    inside = (z > 1e-6) & np.isfinite(uv).all(-1)
    inside &= (px[..., 0] >= 0) & (px[..., 0] <= W - 1) & (px[..., 1] >= 0) & (px[..., 1] <= H - 1)
    u = np.clip(np.nan_to_num(uv[..., 0]), 0, W - 1)
    v = np.clip(np.nan_to_num(uv[..., 1]), 0, H - 1)
    ti = np.arange(T)[:, None]
    zmax = np.full(z.shape, -np.inf)
    for yy in (np.floor(v), np.ceil(v)):
        for xx in (np.floor(u), np.ceil(u)):
            zmax = np.maximum(zmax, depth[ti, yy.astype(np.int64), xx.astype(np.int64)])
    with np.errstate(invalid="ignore"):
        return inside & (z <= zmax + tolerance)


def ground_truth_tracks(
    gt: GroundTruth, points: np.ndarray, query_frame: int = 0, depth_tolerance: float = 0.03
) -> tuple[np.ndarray, np.ndarray]:
    """True trajectories [T,N,2] (px) and visibility [T,N] of the surface points seen at ``points`` [N,2].

    Each query pixel is looked up at its nearest pixel in ``query_frame``:
    - body (``gt.parts`` is a body part): back-projected with the rendered depth and the camera to a 3D
      point; its primitive is the one of ``build_body(gt.joints3d, gt.style)`` with the pixel's part label
      whose surface is nearest. Ellipsoid points move rigidly with the ellipsoid's centre and axes.
      Capsule points keep their fraction of the segment length (their distance beyond an end on the end
      caps) and their perpendicular offset, turned by the capsule's rotation; a capsule's twist about
      its axis is not defined by its two joints, so it is taken from the parent frame (torso or pelvis
      ellipsoid for proximal segments, the parent limb capsule for distal ones) plus the minimal swing
      of the axis in that frame — an approximation of real limb roll;
    - ground and boxes: static world points, back-projected once and projected into every frame;
    - backdrop (infinite depth): a point at infinity along the pixel's ray (moves only with camera rotation).
    Visible: in front of the camera, inside the image, and not behind the rendered depth by more than
    ``depth_tolerance`` metres (see ``_depth_visible``; a backdrop point needs backdrop around it).
    At the query frame the trajectory is exactly ``points`` and points inside the image are visible.
    The depth is that of the nearest pixel, so sub-pixel query points are slightly approximate.
    Points outside the image at the query frame get NaN positions and are never visible.
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    T, H, W = gt.depth.shape
    q = int(query_frame)
    if not 0 <= q < T:
        raise ValueError(f"query_frame {q} is outside 0..{T - 1}")
    N = len(pts)
    tracks = np.full((T, N, 2), np.nan)
    visible = np.zeros((T, N), dtype=bool)
    px = np.rint(pts).astype(np.int64)
    inside = (px[:, 0] >= 0) & (px[:, 0] < W) & (px[:, 1] >= 0) & (px[:, 1] < H)
    idx = np.flatnonzero(inside)
    if len(idx) == 0:
        return tracks, visible
    K, R, t = np.asarray(gt.K, np.float64), np.asarray(gt.R, np.float64), np.asarray(gt.t, np.float64)
    cams = Cameras(K=K, R=R, t=t, height=H, width=W)
    xs, ys = px[idx, 0], px[idx, 1]
    zq = gt.depth[q, ys, xs].astype(np.float64)
    label = gt.parts[q, ys, xs]
    ray_cam = np.concatenate([pts[idx], np.ones((len(idx), 1))], axis=1) @ np.linalg.inv(K).T  # z = 1
    finite = np.isfinite(zq)
    world = np.full((len(idx), 3), np.nan)
    world[finite] = (zq[finite, None] * ray_cam[finite] - t[q]) @ R[q]  # Rᵀ (X_cam − t)
    depth = gt.depth.astype(np.float64)

    # Backdrop: directions at infinity.
    sky = ~finite
    if sky.any():
        d_world = ray_cam[sky] @ R[q]
        p = np.einsum("ij,tjk,pk->tpi", K, R, d_world)
        z = p[..., 2]
        uv = p[..., :2] / np.where(np.abs(z) < 1e-12, 1e-12, z)[..., None]
        uv[z <= 0] = np.nan
        tracks[:, idx[sky]] = uv
        vis = _depth_visible(uv, np.where(z > 0, np.inf, -1.0), depth, 0.0)
        visible[:, idx[sky]] = vis & (z > 0)
    # Scene surfaces: static.
    static = finite & (label < FIRST_BODY_PART)
    if static.any():
        uv, z = project(np.broadcast_to(world[static], (T, int(static.sum()), 3)), cams)
        tracks[:, idx[static]] = uv
        visible[:, idx[static]] = _depth_visible(uv, z, depth, depth_tolerance)
    # Body surfaces: move with their primitive.
    on_body = finite & (label >= FIRST_BODY_PART)
    if on_body.any():
        body = build_body(gt.joints3d.astype(np.float64), gt.style)
        moved = _move_body_points(body, q, world[on_body], label[on_body])
        uv, z = project(moved, cams)
        tracks[:, idx[on_body]] = uv
        visible[:, idx[on_body]] = _depth_visible(uv, z, depth, depth_tolerance)
    tracks[q, idx] = pts[idx]
    visible[q, idx] = True
    return tracks, visible


# --- track accuracy ----------------------------------------------------------------------------
@dataclass(frozen=True)
class TrackScore:
    """End-point error of predicted tracks against the truth (see ``track_epe``)."""

    epe_px: float  # mean EPE over points/frames visible in both
    kept_fraction: float  # share of ground-truth-visible points/frames the tracker kept visible
    epe_person_px: float  # as epe_px, on-person query points only
    epe_background_px: float  # as epe_px, background query points only
    count: int  # points/frames in epe_px


def track_epe(
    pred: Tracks, gt_tracks: np.ndarray, gt_visible: np.ndarray, include_query_frame: bool = False
) -> TrackScore:
    """Score ``pred`` against true tracks [T,N,2] and visibility [T,N] of the same query points.

    Scored entries (t, n): ``gt_visible & pred.visible`` (finite truth), leaving out the query frame
    unless ``include_query_frame`` (there both are the query point by construction). ``epe_px`` is the
    mean ‖pred − truth‖ over them; ``epe_person_px``/``epe_background_px`` split it by
    ``pred.on_person``; ``kept_fraction`` = scored / ground-truth-visible entries. NaN where empty.
    """
    gt_tracks = np.asarray(gt_tracks, dtype=np.float64)
    gt_visible = np.asarray(gt_visible, dtype=bool)
    if gt_tracks.shape != pred.points.shape or gt_visible.shape != pred.visible.shape:
        raise ValueError(
            f"truth [T,N,2] {gt_tracks.shape} / [T,N] {gt_visible.shape} does not match the prediction "
            f"{pred.points.shape}"
        )
    gv = gt_visible & np.isfinite(gt_tracks).all(-1)
    if not include_query_frame:
        gv[pred.query_frame] = False
    both = gv & pred.visible
    err = np.linalg.norm(pred.points.astype(np.float64) - np.nan_to_num(gt_tracks), axis=-1)

    def mean(sel: np.ndarray) -> float:
        return float(err[sel].mean()) if sel.any() else float("nan")

    n_gt = int(gv.sum())
    return TrackScore(
        epe_px=mean(both),
        kept_fraction=float(both.sum() / n_gt) if n_gt else float("nan"),
        epe_person_px=mean(both & pred.on_person[None]),
        epe_background_px=mean(both & ~pred.on_person[None]),
        count=int(both.sum()),
    )
