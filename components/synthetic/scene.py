"""The scene around the person: a backdrop at infinity, a textured ground plane y = 0, boxes, a sun.

Backdrop (no geometry, depth inf): a vertical sky gradient, optionally with a distant skyline, hills
or a wall pattern, all functions of the ray direction only (so they turn with the camera). Ground: the
plane y = 0 (normal +Y) with a checker, tile or noise texture in world x/z metres; the texture fades
to its mean colour where a pixel covers more than a fraction of a cell (no aliasing near the horizon)
and into the horizon colour with distance (fog). Boxes: axis-aligned, ``lo``/``hi`` corners in world
metres, with darkened edges. Light: one directional sun (azimuth/elevation in degrees, azimuth 0 = +Z,
90 = +X) plus ambient; shading lives in ``render``.
"""

from __future__ import annotations

import colorsys
import functools
import math
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

from components.synthetic.raycast import Geometry

RGB = tuple[int, int, int]
GROUND_MAX_DISTANCE = 200.0  # metres; farther rays see the backdrop


@dataclass(frozen=True)
class Box:
    """An axis-aligned box (bench, step, crate, pillar) on or above the ground."""

    lo: tuple[float, float, float]
    hi: tuple[float, float, float]
    colour: RGB = (150, 110, 70)
    kind: str = "crate"


@dataclass(frozen=True)
class SceneSpec:
    """Everything but the person. Colours are sRGB 0–255; lengths metres; angles degrees."""

    sky_top: RGB = (110, 160, 220)
    sky_horizon: RGB = (210, 222, 235)
    backdrop: Literal["sky", "skyline", "hills", "wall"] = "skyline"
    backdrop_colour: RGB = (120, 128, 145)
    floor: Literal["checker", "tiles", "noise"] = "checker"
    floor_a: RGB = (185, 180, 170)
    floor_b: RGB = (120, 116, 110)
    cell: float = 0.5  # checker/tile size or noise scale, metres
    boxes: tuple[Box, ...] = ()
    light_azimuth: float = 35.0
    light_elevation: float = 55.0
    light: float = 0.7  # sun intensity
    ambient: float = 0.42  # sky light intensity
    fog: float = 45.0  # metres at which the ground is 63% horizon colour
    seed: int = 0  # seed of texture noise and the skyline

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> SceneSpec:
        d = dict(d)
        for k in ("sky_top", "sky_horizon", "backdrop_colour", "floor_a", "floor_b"):
            d[k] = tuple(int(v) for v in d[k])
        d["boxes"] = tuple(
            Box(tuple(b["lo"]), tuple(b["hi"]), tuple(int(c) for c in b["colour"]), b["kind"])
            for b in d.get("boxes", ())
        )
        return cls(**d)

    @property
    def boxes_lo(self) -> np.ndarray:
        return np.array([b.lo for b in self.boxes], dtype=np.float64).reshape(-1, 3)

    @property
    def boxes_hi(self) -> np.ndarray:
        return np.array([b.hi for b in self.boxes], dtype=np.float64).reshape(-1, 3)


def scene_geometry(spec: SceneSpec) -> Geometry:
    """The ground plane (primitive 0) and the boxes (primitives 1..B)."""
    return Geometry(
        plane_normal=np.array([[0.0, 1.0, 0.0]]),
        plane_offset=np.zeros(1),
        box_lo=spec.boxes_lo,
        box_hi=spec.boxes_hi,
    )


def light_direction(spec: SceneSpec) -> np.ndarray:
    """Unit vector from the scene toward the sun."""
    az, el = math.radians(spec.light_azimuth), math.radians(spec.light_elevation)
    return np.array([math.sin(az) * math.cos(el), math.sin(el), math.cos(az) * math.cos(el)])


def _rgb(c) -> np.ndarray:
    return np.asarray(c, dtype=np.float64) / 255.0


@functools.lru_cache(maxsize=64)
def _noise_table(seed: int, size: int = 64) -> np.ndarray:
    table = np.random.default_rng(seed).random((size, size))
    table.flags.writeable = False
    return table


def value_noise(table: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Smooth periodic value noise in [0, 1] at continuous lattice coordinates (bilinear, smoothstep)."""
    n = table.shape[0]
    xf, yf = np.floor(x), np.floor(y)
    fx, fy = x - xf, y - yf
    fx, fy = fx * fx * (3 - 2 * fx), fy * fy * (3 - 2 * fy)
    x0, y0 = xf.astype(np.int64) % n, yf.astype(np.int64) % n
    x1, y1 = (x0 + 1) % n, (y0 + 1) % n
    top = table[y0, x0] * (1 - fx) + table[y0, x1] * fx
    bot = table[y1, x0] * (1 - fx) + table[y1, x1] * fx
    return top * (1 - fy) + bot * fy


def background_colour(spec: SceneSpec, d: np.ndarray) -> np.ndarray:
    """Backdrop colours [P,3] (0–1) for unit ray directions ``d`` [P,3]."""
    el = np.arcsin(np.clip(d[:, 1], -1.0, 1.0))
    az = np.arctan2(d[:, 0], d[:, 2])
    s = np.clip(el / (math.pi / 3), 0.0, 1.0)[:, None] ** 0.7
    col = _rgb(spec.sky_horizon) * (1 - s) + _rgb(spec.sky_top) * s
    if spec.backdrop == "sky":
        return col
    rng = np.random.default_rng(spec.seed + 7)
    back = _rgb(spec.backdrop_colour)
    if spec.backdrop == "skyline":
        n = 96
        heights = rng.uniform(0.02, 0.16, n) * (rng.random(n) < 0.8)
        shades = rng.uniform(0.8, 1.15, n)
        seg = ((az + math.pi) / (2 * math.pi) * n).astype(np.int64) % n
        inside = el < heights[seg]
        shade = shades[seg][:, None] * back
        # Rows of lit windows on some facades: a grid in (azimuth, elevation) masked by noise.
        wx = (az * 90 / math.pi) % 1.0
        wy = (el * 140) % 1.0
        win = (wx > 0.55) & (wy > 0.5) & (value_noise(_noise_table(spec.seed), az * 40, el * 40) > 0.55)
        shade = np.where(win[:, None], shade * 1.25 + 0.05, shade)
    elif spec.backdrop == "hills":
        ph = rng.uniform(0, 2 * math.pi, 3)
        h = (
            0.05
            + 0.03 * np.sin(2 * az + ph[0])
            + 0.02 * np.sin(5 * az + ph[1])
            + 0.01 * np.sin(11 * az + ph[2])
        )
        inside = el < h
        shade = back * (0.85 + 0.3 * value_noise(_noise_table(spec.seed), az * 30, el * 30))[:, None]
    else:  # wall: panels with a darker skirting band near the horizon
        inside = el < math.pi / 2
        panel = (np.abs(((az * 8 / math.pi) % 1.0) - 0.5) > 0.48) | (np.abs(el - 0.35) < 0.006)
        shade = back * (1.0 - 0.15 * np.clip(el, 0, 1))[:, None]
        shade = np.where(panel[:, None], shade * 0.82, shade)
        shade = np.where((el < 0.04)[:, None], shade * 0.7, shade)
    col = np.where(inside[:, None], 0.75 * shade + 0.25 * _rgb(spec.sky_horizon), col)
    return np.clip(col, 0.0, 1.0)


def ground_albedo(spec: SceneSpec, p: np.ndarray, footprint: np.ndarray) -> np.ndarray:
    """Floor colours [P,3] (0–1) at ground points ``p`` [P,3]; ``footprint`` [P] is a pixel's size (m)."""
    a, b = _rgb(spec.floor_a), _rgb(spec.floor_b)
    u, v = p[:, 0] / spec.cell, p[:, 2] / spec.cell
    # Texture contrast fades where a pixel covers a large part of a cell.
    w = np.clip(1.0 - (footprint / spec.cell - 0.12) / 0.3, 0.0, 1.0)[:, None]
    table = _noise_table(spec.seed)
    fine = value_noise(table, 4 * u + 17.0, 4 * v + 5.0) - 0.5
    wf = np.clip(1.0 - (footprint / spec.cell - 0.03) / 0.1, 0.0, 1.0)
    if spec.floor == "checker":
        c = ((np.floor(u) + np.floor(v)) % 2)[:, None]
        mean = 0.5 * (a + b)
        col = mean + w * (a * (1 - c) + b * c - mean)
    elif spec.floor == "tiles":
        grout = ((u % 1.0) < 0.06) | ((v % 1.0) < 0.06)
        tile_var = value_noise(table, np.floor(u) * 7.3, np.floor(v) * 3.1) - 0.5
        tile = a * (1 + 0.12 * tile_var[:, None])
        mean = 0.88 * a + 0.12 * b
        col = mean + w * (np.where(grout[:, None], b, tile) - mean)
    else:
        n = 0.6 * value_noise(table, u, v) + 0.4 * value_noise(table, 3 * u + 31.0, 3 * v + 11.0)
        mean = 0.5 * (a + b)
        col = mean + w * (a * (1 - n[:, None]) + b * n[:, None] - mean)
        fine = 1.6 * fine
    col = col * (1 + 0.12 * (wf * fine)[:, None])
    return np.clip(col, 0.0, 1.0)


def box_albedo(spec: SceneSpec, idx: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Box colours [P,3] (0–1) at points ``p`` on boxes ``idx`` [P], with darker edges."""
    if len(idx) == 0:
        return np.zeros((0, 3))
    lo, hi = spec.boxes_lo[idx], spec.boxes_hi[idx]
    cols = np.array([_rgb(b.colour) for b in spec.boxes])[idx]
    m = np.sort(np.minimum(np.abs(p - lo), np.abs(hi - p)), axis=-1)
    edge = m[:, 1] < 0.025
    grain = value_noise(_noise_table(spec.seed + 1), p[:, 0] * 3 + p[:, 2] * 3, p[:, 1] * 40)
    cols = cols * (0.92 + 0.16 * grain)[:, None]
    return np.clip(np.where(edge[:, None], cols * 0.6, cols), 0.0, 1.0)


# --- random scenes ---------------------------------------------------------------------------
def _hsv(h: float, s: float, v: float) -> RGB:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, s, v)
    return round(255 * r), round(255 * g), round(255 * b)


_SKIES: tuple[tuple[RGB, RGB], ...] = (
    ((95, 150, 215), (205, 220, 235)),  # clear day
    ((150, 160, 172), (205, 208, 212)),  # overcast
    ((80, 95, 160), (235, 180, 135)),  # dusk
    ((120, 175, 225), (230, 235, 240)),  # bright
)
_FLOORS: tuple[tuple[str, RGB, RGB, float], ...] = (
    ("checker", (190, 185, 175), (120, 116, 110), 0.5),
    ("checker", (200, 170, 130), (150, 115, 80), 0.6),
    ("tiles", (205, 200, 190), (110, 105, 100), 0.6),
    ("tiles", (150, 155, 160), (70, 72, 78), 0.8),
    ("noise", (100, 140, 62), (55, 90, 38), 0.5),  # grass
    ("noise", (210, 190, 150), (165, 140, 100), 0.45),  # sand
    ("noise", (140, 137, 132), (90, 88, 86), 0.35),  # asphalt
    ("checker", (70, 110, 150), (45, 75, 110), 0.7),  # gym mats
)
_BOX_COLOURS: tuple[RGB, ...] = (
    (150, 110, 70), (118, 84, 55), (150, 150, 145), (175, 135, 85), (60, 90, 160), (170, 60, 50),
    (90, 130, 80), (200, 190, 170),
)  # fmt: skip
_BOX_KINDS: dict[str, tuple[tuple[float, float], tuple[float, float], tuple[float, float]]] = {
    # (length, height, depth) ranges in metres
    "bench": ((1.2, 2.0), (0.4, 0.5), (0.35, 0.45)),
    "step": ((0.8, 1.6), (0.15, 0.3), (0.5, 0.9)),
    "crate": ((0.4, 0.8), (0.4, 0.8), (0.4, 0.8)),
    "pillar": ((0.3, 0.5), (1.6, 2.2), (0.3, 0.5)),
}


def _footprint_distance(lo: np.ndarray, hi: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Distance in the x/z plane from points [P,2] to a box footprint (lo/hi x, z)."""
    dx = np.maximum(np.maximum(lo[0] - pts[:, 0], pts[:, 0] - hi[0]), 0.0)
    dz = np.maximum(np.maximum(lo[1] - pts[:, 1], pts[:, 1] - hi[1]), 0.0)
    return np.hypot(dx, dz)


def _segment_points(a: np.ndarray, b: np.ndarray, n: int = 24) -> np.ndarray:
    s = np.linspace(0.0, 1.0, n)[:, None]
    return a[None] * (1 - s) + b[None] * s


def random_scene(
    rng: np.random.Generator,
    motion_root_xz: np.ndarray,
    avoid_xz: np.ndarray | None = None,
    max_boxes: int = 3,
    clearance: float = 0.4,
    near: tuple[float, float] = (0.12, 0.25),
) -> SceneSpec:
    """A random scene whose boxes keep ``clearance`` metres (x/z) from the motion's path.

    ``motion_root_xz`` [N,2] are the x/z points to keep clear of: the root path, or better every joint
    of every frame (what ``render_clip`` passes), so no box cuts through a limb. With probability 0.3
    one box is placed deliberately ``near`` the path (for contact). Boxes taller than 0.3 m also stay
    0.35 m clear of the lines of sight from ``avoid_xz`` [K,2] (camera centres) to the path, so they
    rarely hide the person.
    """
    root = np.asarray(motion_root_xz, dtype=np.float64).reshape(-1, 2)
    center = root.mean(0)
    sight = np.zeros((0, 2))
    if avoid_xz is not None and len(avoid_xz):
        cams = np.asarray(avoid_xz, dtype=np.float64).reshape(-1, 2)
        cams = cams[np.linspace(0, len(cams) - 1, min(len(cams), 8)).round().astype(int)]
        targets = root[np.linspace(0, len(root) - 1, min(len(root), 5)).round().astype(int)]
        sight = np.concatenate([_segment_points(c, t) for c in cams for t in targets])
    boxes: list[Box] = []
    n_boxes = int(rng.integers(0, max_boxes + 1))
    near_first = rng.random() < 0.3
    for k in range(n_boxes):
        kind = str(rng.choice(list(_BOX_KINDS), p=[0.35, 0.25, 0.3, 0.1]))
        (l0, l1), (h0, h1), (d0, d1) = _BOX_KINDS[kind]
        size = np.array([rng.uniform(l0, l1), rng.uniform(h0, h1), rng.uniform(d0, d1)])
        if rng.random() < 0.5:
            size = size[[2, 1, 0]]
        gap = near if (near_first and k == 0) else (clearance, clearance + 2.5)
        for _ in range(60):
            ang = rng.uniform(0, 2 * math.pi)
            dist = rng.uniform(0.8, 3.8)
            c = center + dist * np.array([math.sin(ang), math.cos(ang)])
            lo2, hi2 = c - size[[0, 2]] / 2, c + size[[0, 2]] / 2
            dmin = _footprint_distance(lo2, hi2, root).min()
            if not gap[0] <= dmin <= gap[1]:
                continue
            if size[1] > 0.3 and len(sight) and _footprint_distance(lo2, hi2, sight).min() < 0.35:
                continue
            if any(
                (
                    lo2[0] < b.hi[0] + 0.2
                    and b.lo[0] - 0.2 < hi2[0]
                    and lo2[1] < b.hi[2] + 0.2
                    and b.lo[2] - 0.2 < hi2[1]
                )
                for b in boxes
            ):
                continue
            colour = _BOX_COLOURS[int(rng.integers(len(_BOX_COLOURS)))]
            boxes.append(
                Box(
                    (float(lo2[0]), 0.0, float(lo2[1])),
                    (float(hi2[0]), float(size[1]), float(hi2[1])),
                    colour,
                    kind,
                )
            )
            break
    sky_top, sky_horizon = _SKIES[int(rng.integers(len(_SKIES)))]
    floor, fa, fb, cell = _FLOORS[int(rng.integers(len(_FLOORS)))]
    backdrop = str(rng.choice(["sky", "skyline", "hills", "wall"], p=[0.15, 0.35, 0.25, 0.25]))
    if backdrop == "wall":
        back = _hsv(float(rng.random()), float(rng.uniform(0.05, 0.35)), float(rng.uniform(0.55, 0.9)))
    elif backdrop == "hills":
        back = _hsv(
            float(rng.uniform(0.2, 0.4)), float(rng.uniform(0.25, 0.5)), float(rng.uniform(0.35, 0.6))
        )
    else:
        back = _hsv(
            float(rng.uniform(0.55, 0.7)), float(rng.uniform(0.05, 0.2)), float(rng.uniform(0.4, 0.65))
        )
    return SceneSpec(
        sky_top=sky_top,
        sky_horizon=sky_horizon,
        backdrop=backdrop,  # type: ignore[arg-type]
        backdrop_colour=back,
        floor=floor,  # type: ignore[arg-type]
        floor_a=fa,
        floor_b=fb,
        cell=cell * float(rng.uniform(0.8, 1.25)),
        boxes=tuple(boxes),
        light_azimuth=float(rng.uniform(-180, 180)),
        light_elevation=float(rng.uniform(35, 75)),
        light=float(rng.uniform(0.55, 0.8)),
        ambient=float(rng.uniform(0.35, 0.5)),
        seed=int(rng.integers(2**31)),
    )
