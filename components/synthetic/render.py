"""Render a synthetic human video with exact labels: ``render_clip(motion, camera, ...)``.

Every pixel is one ray from ``camera.pixel_rays`` (through the pixel centre); the closest hit among the
ground, the boxes and the body primitives wins, so masks, depth and occlusion are exact for the centre
sample. Shading: albedo × (ambient sky light + Lambert sun × shadow); shadows are shadow rays against
the body and the boxes (the body shadows itself, the ground and boxes). Anti-aliasing (optional,
colour only): pixels whose primitive differs from a 4-neighbour average their centre sample with four
sub-pixel samples; every label comes from the centre sample alone.

Ground-truth file (``GroundTruth.save``): one compressed ``.npz``; key ``header`` is a 0-d unicode
array holding JSON (format version, fps, num_frames, height, width, seed, motion name/action/source,
``style`` (BodyStyle dict), ``scene`` (SceneSpec dict), ``camera`` (CameraSpec dict), ``part_names``,
``conventions``). Arrays (T frames, H×W pixels):

=================  ============  =======  ===============================================================
key                shape         dtype    meaning
=================  ============  =======  ===============================================================
joints3d           [T,22,3]      float32  SMPL-22 joints, world metres, Y up (ground is y = 0)
keypoints2d        [T,18,2]      float32  OpenPose-18 pixels (x right, y down; pixel centres at integers)
keypoints_depth    [T,18]        float32  camera z of each keypoint, metres
visible            [T,18]        bool     in the image and not occluded (see ``keypoint_visibility``)
mask               [T,H,W]       bool     the closest hit is a body primitive
depth              [T,H,W]       float32  camera z (metres along the optical axis) of the closest hit;
                                          inf where the ray sees only the backdrop
parts              [T,H,W]       uint8    part label (``labels.PART_NAMES``; mask == parts >= 3)
K                  [3,3]         float64  intrinsics
R, t               [T,3,3] [T,3] float64  world→camera, OpenCV axes (x right, y down, z forward):
                                          X_cam = R @ X_world + t
ground_plane       [4]           float64  (nx, ny, nz, d) with n·X = d: (0, 1, 0, 0)
boxes_min/max      [B,3]         float64  axis-aligned box corners, world metres
=================  ============  =======  ===============================================================

The frames themselves are not in the file (write them as a video). ``joints3d`` are exactly the joints
that were rendered (rounded to float32 before rendering), so ``build_body(joints3d, style)`` rebuilds
the geometry bit for bit; ground farther than 200 m counts as backdrop.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from components.io.atomic import atomic_path
from components.motion.camera import Cameras, build_cameras, pixel_rays, project
from components.motion.config import CameraSpec
from components.motion.motion import Motion
from components.motion.skeleton import smpl22_to_openpose18
from components.synthetic.body import Body, BodyStyle, build_body, random_style
from components.synthetic.labels import BACKGROUND, BOX, FIRST_BODY_PART, GROUND, PART_NAMES
from components.synthetic.raycast import Geometry, Hits, camera_depth, cast
from components.synthetic.scene import (
    GROUND_MAX_DISTANCE,
    SceneSpec,
    background_colour,
    box_albedo,
    ground_albedo,
    light_direction,
    random_scene,
    scene_geometry,
)

FORMAT_VERSION = 1
SHADOW_BIAS = 2e-3  # metres: shadow rays start this far off the surface
# Occlusion tolerance per OpenPose-18 keypoint (metres at girth 1): a keypoint is hidden when the first
# surface at its pixel lies more than this in front of it. Joints sit inside the body, so the
# tolerance is about the body's radius there (face points sit on the head's surface).
KEYPOINT_TOLERANCE = np.array(
    [
        0.05,
        0.16,
        0.12,
        0.09,
        0.08,
        0.12,
        0.09,
        0.08,
        0.16,
        0.11,
        0.09,
        0.16,
        0.11,
        0.09,
        0.05,
        0.05,
        0.06,
        0.06,
    ]
)


# --- motion resampling -------------------------------------------------------------------------
def resample_joints(
    joints: np.ndarray, src_fps: float, fps: float, num_frames: int | None = None
) -> np.ndarray:
    """Joints [T,22,3] at ``src_fps`` → [N,22,3] at ``fps`` by linear interpolation in time.

    Frame k is at time k / fps. By default N covers the clip ((T-1)/src_fps seconds); a longer
    ``num_frames`` holds the last pose.
    """
    j = np.asarray(joints, dtype=np.float64)
    if num_frames is None:
        num_frames = int(np.floor((len(j) - 1) / src_fps * fps + 1e-9)) + 1
    x = np.clip(np.arange(num_frames) * (src_fps / fps), 0.0, len(j) - 1)
    i0 = np.floor(x).astype(np.int64)
    i1 = np.minimum(i0 + 1, len(j) - 1)
    w = (x - i0)[:, None, None]
    return j[i0] * (1 - w) + j[i1] * w


# --- one frame ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class FrameBuffers:
    """One rendered frame: colour (0–1), camera-z depth (inf = backdrop), part labels, primitive ids
    (-1 backdrop, 0 ground, 1..B boxes, B+1+k body primitive k) and world normals."""

    rgb: np.ndarray  # [H,W,3] float
    depth: np.ndarray  # [H,W] float32
    parts: np.ndarray  # [H,W] uint8
    prim: np.ndarray  # [H,W] int64
    normal: np.ndarray  # [H,W,3]

    @property
    def mask(self) -> np.ndarray:
        return self.parts >= FIRST_BODY_PART


def _union(scene_hits: Hits, body_hits: Hits | None, n_scene: int) -> Hits:
    if body_hits is None:
        return scene_hits
    body = body_hits.t < scene_hits.t
    return Hits(
        t=np.where(body, body_hits.t, scene_hits.t),
        prim=np.where(body, body_hits.prim + n_scene, scene_hits.prim),
        normal=np.where(body[:, None], body_hits.normal, scene_hits.normal),
    )


def _trace(
    origin: np.ndarray,
    d: np.ndarray,
    focal: float,
    scene: SceneSpec,
    body: Body | None,
    i: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Colour [P,3], ray distance t [P], primitive id [P], part label [P] and normal [P,3] of rays."""
    geo = scene_geometry(scene)
    n_scene = len(geo)
    hs = cast(origin, d, geo)
    far_ground = (hs.prim == 0) & (hs.t > GROUND_MAX_DISTANCE)
    hs.t[far_ground], hs.prim[far_ground] = np.inf, -1
    body_geo = body.geometry(i) if body is not None else None
    hits = _union(hs, cast(origin, d, body_geo) if body_geo is not None else None, n_scene)
    t, prim, normal = hits.t, hits.prim, hits.normal
    parts = np.full(len(d), BACKGROUND, dtype=np.uint8)
    parts[prim == 0] = GROUND
    parts[(prim >= 1) & (prim < n_scene)] = BOX
    is_body = prim >= n_scene
    if body is not None:
        parts[is_body] = body.parts[prim[is_body] - n_scene]
    rgb = np.empty((len(d), 3))
    miss = prim < 0
    rgb[miss] = background_colour(scene, d[miss])
    hit = ~miss
    if not hit.any():
        return rgb, t, prim, parts, normal
    o = origin.reshape(-1, 3)
    ph = (o if len(o) == 1 else o[hit]) + t[hit, None] * d[hit]
    nh, kh = normal[hit], prim[hit]
    albedo = np.empty((len(ph), 3))
    g = kh == 0
    footprint = t[hit][g] / (focal * np.maximum(np.abs(d[hit][g, 1]), 0.02))
    albedo[g] = ground_albedo(scene, ph[g], footprint)
    bx = (kh >= 1) & (kh < n_scene)
    albedo[bx] = box_albedo(scene, kh[bx] - 1, ph[bx])
    bd = kh >= n_scene
    if body is not None and bd.any():
        albedo[bd] = body.albedo(i, kh[bd] - n_scene, ph[bd])
    # Lighting: hemispherical ambient + Lambert sun, shadow rays toward the sun.
    L = light_direction(scene)
    lam = np.maximum(nh @ L, 0.0)
    lit = lam > 0
    shadow = np.zeros(len(ph), dtype=bool)
    if lit.any():
        so = ph[lit] + SHADOW_BIAS * nh[lit]
        sd = np.broadcast_to(L, so.shape)
        occ = np.zeros(len(so), dtype=bool)
        if len(scene.boxes):
            occ |= cast(so, sd, Geometry(box_lo=scene.boxes_lo, box_hi=scene.boxes_hi)).prim >= 0
        if body_geo is not None:
            occ |= cast(so, sd, body_geo).prim >= 0
        shadow[np.flatnonzero(lit)[occ]] = True
    ambient = scene.ambient * (0.8 + 0.2 * nh[:, 1])
    shade = ambient + scene.light * lam * ~shadow
    col = albedo * shade[:, None]
    fog = 1.0 - np.exp(-t[hit] / scene.fog)
    col = col * (1 - fog[:, None]) + (np.asarray(scene.sky_horizon) / 255.0) * fog[:, None]
    rgb[hit] = col
    return np.clip(rgb, 0.0, 1.0), t, prim, parts, normal


def _subpixel_cameras(cams: Cameras, i: int) -> Cameras:
    """A 2× camera whose pixel (2v+dy, 2u+dx) is the sub-sample (u ± 1/4, v ± 1/4) of frame i."""
    K2 = cams.K.copy()
    K2[:2, :2] *= 2.0
    K2[:2, 2] = 2.0 * cams.K[:2, 2] + 0.5
    return Cameras(
        K=K2, R=cams.R[i : i + 1], t=cams.t[i : i + 1], height=2 * cams.height, width=2 * cams.width
    )


def render_frame(
    cams: Cameras, i: int, scene: SceneSpec, body: Body | None = None, antialias: bool = True
) -> FrameBuffers:
    """Ray-cast frame ``i`` of ``cams``: the scene, and the body's frame i if given."""
    H, W = cams.height, cams.width
    origin, dirs = pixel_rays(cams, i)
    d = dirs.reshape(-1, 3)
    focal = float(cams.K[1, 1])
    rgb, t, prim, parts, normal = _trace(origin[None], d, focal, scene, body, i)
    depth = camera_depth(t, d, cams.R[i][2]).astype(np.float32)
    prim2 = prim.reshape(H, W)
    if antialias:
        edge = np.zeros((H, W), dtype=bool)
        dv = prim2[1:] != prim2[:-1]
        dh = prim2[:, 1:] != prim2[:, :-1]
        edge[1:] |= dv
        edge[:-1] |= dv
        edge[:, 1:] |= dh
        edge[:, :-1] |= dh
        ys, xs = np.nonzero(edge)
        if len(ys):
            _, sub = pixel_rays(_subpixel_cameras(cams, i), 0)
            sd = np.stack([sub[2 * ys + dy, 2 * xs + dx] for dy in (0, 1) for dx in (0, 1)], axis=1)
            srgb = _trace(origin[None], sd.reshape(-1, 3), 2 * focal, scene, body, i)[0].reshape(-1, 4, 3)
            flat = ys * W + xs
            rgb[flat] = (rgb[flat] + srgb.sum(1)) / 5.0
    return FrameBuffers(
        rgb=rgb.reshape(H, W, 3),
        depth=depth.reshape(H, W),
        parts=parts.reshape(H, W),
        prim=prim2,
        normal=normal.reshape(H, W, 3),
    )


# --- ground truth --------------------------------------------------------------------------------
def keypoint_visibility(
    uv: np.ndarray, z: np.ndarray, depth: np.ndarray, tolerance: np.ndarray | float = KEYPOINT_TOLERANCE
) -> np.ndarray:
    """Visible [T,K]: in front of the camera, inside the image (its nearest pixel exists) and not occluded.

    Occluded means the z-buffer at the keypoint's nearest pixel is more than ``tolerance`` metres in
    front of the keypoint's camera z. Joints lie inside the body, so the tolerance is about the body's
    radius there. Self-occlusion counts: a limb or the torso in front of a joint hides it (in a side
    view the far shoulder, hip and ear; from behind the face points; a strongly foreshortened limb can
    hide its own end joint), as does a box. ``depth`` is [T,H,W] camera z with inf for the backdrop.
    """
    T, H, W = depth.shape
    px = np.rint(uv).astype(np.int64)
    inside = (z > 1e-3) & (px[..., 0] >= 0) & (px[..., 0] < W) & (px[..., 1] >= 0) & (px[..., 1] < H)
    x = np.clip(px[..., 0], 0, W - 1)
    y = np.clip(px[..., 1], 0, H - 1)
    zbuf = depth[np.arange(T)[:, None], y, x]
    return inside & (zbuf >= z - np.asarray(tolerance))


@dataclass
class GroundTruth:
    """Exact labels of a rendered clip (see the module docstring for the file format)."""

    joints3d: np.ndarray
    keypoints2d: np.ndarray
    keypoints_depth: np.ndarray
    visible: np.ndarray
    mask: np.ndarray
    depth: np.ndarray
    parts: np.ndarray
    K: np.ndarray
    R: np.ndarray
    t: np.ndarray
    boxes_min: np.ndarray
    boxes_max: np.ndarray
    style: BodyStyle
    scene: SceneSpec
    camera: CameraSpec
    fps: float
    seed: int = 0
    motion_name: str = ""
    action: str = ""
    source: str = ""
    captions: tuple[str, ...] = ()  # set by the ingest source: appearance + motion + scene
    motion_prompt: str = ""  # motion only

    ground_plane = np.array([0.0, 1.0, 0.0, 0.0])
    _ARRAYS = (
        "joints3d", "keypoints2d", "keypoints_depth", "visible", "mask", "depth", "parts", "K", "R", "t",
        "boxes_min", "boxes_max",
    )  # fmt: skip

    @property
    def num_frames(self) -> int:
        return int(self.mask.shape[0])

    def header(self) -> dict:
        return {
            "format_version": FORMAT_VERSION,
            "fps": float(self.fps),
            "num_frames": self.num_frames,
            "height": int(self.mask.shape[1]),
            "width": int(self.mask.shape[2]),
            "seed": int(self.seed),
            "motion_name": self.motion_name,
            "action": self.action,
            "source": self.source,
            "captions": list(self.captions),
            "motion_prompt": self.motion_prompt,
            "style": self.style.to_dict(),
            "scene": self.scene.to_dict(),
            "camera": asdict(self.camera),
            "part_names": list(PART_NAMES),
            "conventions": "world metres, Y up, ground y=0; camera OpenCV (x right, y down, z forward), "
            "X_cam = R X + t; pixels x right y down, centres at integers; depth = camera z, inf = backdrop",
        }

    def save(self, path: str | Path) -> Path:
        """Write one compressed .npz (arrays + JSON ``header``)."""
        path = Path(path)
        arrays = {k: getattr(self, k) for k in self._ARRAYS}
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(
                fh, header=np.array(json.dumps(self.header())), ground_plane=self.ground_plane, **arrays
            )
        return path

    @classmethod
    def load(cls, path: str | Path) -> GroundTruth:
        with np.load(path, allow_pickle=False) as z:
            head = json.loads(str(z["header"]))
            if head.get("format_version") != FORMAT_VERSION:
                raise ValueError(
                    f"{path}: ground-truth format {head.get('format_version')} != {FORMAT_VERSION}"
                )
            arrays = {k: z[k] for k in cls._ARRAYS}
        return cls(
            **arrays,
            style=BodyStyle.from_dict(head["style"]),
            scene=SceneSpec.from_dict(head["scene"]),
            camera=CameraSpec(**head["camera"]),
            fps=head["fps"],
            seed=head["seed"],
            motion_name=head["motion_name"],
            action=head["action"],
            source=head["source"],
            captions=tuple(head.get("captions", ())),
            motion_prompt=head.get("motion_prompt", ""),
        )


# --- a clip --------------------------------------------------------------------------------------
def render_clip(
    motion: Motion,
    camera: CameraSpec,
    height: int,
    width: int,
    fps: float,
    style: BodyStyle | None = None,
    scene: SceneSpec | None = None,
    seed: int = 0,
    num_frames: int | None = None,
    antialias: bool = True,
    look: SceneSpec | None = None,
) -> tuple[np.ndarray, GroundTruth]:
    """Render ``motion`` (resampled to ``fps``) → frames uint8 [T,H,W,3] (RGB) and their ground truth.

    Cameras come from ``build_cameras(camera, T, height, width, root=pelvis path)``. A missing style or
    scene is drawn from ``np.random.default_rng(seed)`` (style first, then scene), so the same seed
    gives identical output. ``look`` (with ``scene`` None): the drawn scene keeps its boxes, placed
    around this motion, and takes everything else (sky, backdrop, floor, light, texture seed) from it.
    """
    if height < 1 or width < 1 or fps <= 0 or (num_frames is not None and num_frames < 1):
        raise ValueError(
            f"render_clip needs height, width, num_frames >= 1 and fps > 0, got "
            f"{height}x{width}, {num_frames} frames at {fps} fps"
        )
    rng = np.random.default_rng(seed)
    # Rounded to float32 first, so the stored joints3d rebuild exactly the geometry that was rendered.
    joints = resample_joints(motion.joints, motion.fps, fps, num_frames).astype(np.float32).astype(np.float64)
    T = len(joints)
    cams = build_cameras(camera, T, height, width, root=joints[:, 0])
    if style is None:
        style = random_style(rng)
    if scene is None:
        scene = random_scene(rng, joints[:, :, [0, 2]].reshape(-1, 2), avoid_xz=cams.centers[:, [0, 2]])
        if look is not None:
            scene = replace(look, boxes=scene.boxes)
    body = build_body(joints, style)
    frames = np.empty((T, height, width, 3), dtype=np.uint8)
    depth = np.empty((T, height, width), dtype=np.float32)
    parts = np.empty((T, height, width), dtype=np.uint8)
    for i in range(T):
        fb = render_frame(cams, i, scene, body, antialias=antialias)
        frames[i] = np.clip(np.rint(fb.rgb * 255.0), 0, 255).astype(np.uint8)
        depth[i], parts[i] = fb.depth, fb.parts
    kp3d = smpl22_to_openpose18(joints)
    uv, z = project(kp3d, cams)
    tol = KEYPOINT_TOLERANCE * max(style.girth, 1.0)
    gt = GroundTruth(
        joints3d=joints.astype(np.float32),
        keypoints2d=uv.astype(np.float32),
        keypoints_depth=z.astype(np.float32),
        visible=keypoint_visibility(uv, z, depth, tol),
        mask=parts >= FIRST_BODY_PART,
        depth=depth,
        parts=parts,
        K=cams.K.copy(),
        R=cams.R.copy(),
        t=cams.t.copy(),
        boxes_min=scene.boxes_lo,
        boxes_max=scene.boxes_hi,
        style=style,
        scene=scene,
        camera=camera,
        fps=float(fps),
        seed=int(seed),
        motion_name=motion.name,
        action=motion.action,
        source=motion.source,
    )
    return frames, gt
