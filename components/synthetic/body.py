"""A clothed body with volume, built from SMPL-22 joints out of capsules and ellipsoids.

Shapes (radii in metres at ``girth = limbs = 1``): capsules for the neck, the shoulder line, upper
arms, forearms, hands, the hip line, thighs, shins and feet (heel → toe); ellipsoids for the head
(oriented by ``skeleton.head_frame``), chest, abdomen and pelvis (oriented by a torso frame:
up = pelvis → neck, right = left → right shoulder). Each primitive has a part label
(``labels.PART_NAMES``) and a two-colour clothing split: along a capsule's segment (sleeves, shorts)
or across an ellipsoid's local up axis (shirt over trousers); the head ellipsoid is split into face
and hair by a hairline in the head frame. Joints are world metres, Y up (``components.motion``).
"""

from __future__ import annotations

import colorsys
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

from components.motion.skeleton import J, head_frame
from components.synthetic.labels import PART
from components.synthetic.raycast import Geometry

RGB = tuple[int, int, int]
NO_SPLIT = 9.0  # split value meaning "one colour"

SKIN_TONES: tuple[RGB, ...] = (
    (250, 220, 195), (238, 196, 164), (224, 172, 138), (200, 140, 100), (165, 110, 75), (125, 82, 55),
    (92, 60, 42),
)  # fmt: skip
HAIR_COLOURS: tuple[RGB, ...] = (
    (22, 18, 16), (48, 32, 22), (90, 58, 34), (140, 100, 55), (200, 165, 105), (125, 55, 28), (150, 150, 150),
)  # fmt: skip
TROUSER_COLOURS: tuple[RGB, ...] = (
    (52, 78, 125), (36, 50, 82), (30, 30, 34), (175, 155, 115), (105, 105, 110), (80, 88, 55), (95, 70, 50),
    (32, 36, 68), (150, 40, 45), (200, 200, 195),
)  # fmt: skip
SHOE_COLOURS: tuple[RGB, ...] = (
    (235, 235, 232), (28, 28, 30), (92, 62, 40), (128, 128, 134), (170, 42, 40), (50, 70, 150),
)  # fmt: skip


@dataclass(frozen=True)
class BodyStyle:
    """Proportions and colours (sRGB 0–255) of the rendered person.

    ``girth`` scales torso and limb radii (slim < 1 < broad), ``limbs`` scales arm and leg radii on top,
    ``head`` scales the head; ``sleeves`` short leaves the forearms (and lower upper arm) bare,
    ``legwear`` shorts leaves the shins bare.
    """

    skin: RGB = (224, 172, 138)
    hair: RGB = (48, 32, 22)
    shirt: RGB = (60, 110, 180)
    trousers: RGB = (52, 78, 125)
    shoes: RGB = (235, 235, 232)
    girth: float = 1.0
    limbs: float = 1.0
    head: float = 1.0
    sleeves: Literal["short", "long"] = "short"
    legwear: Literal["trousers", "shorts"] = "trousers"
    hair_style: Literal["short", "long", "bald"] = "short"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> BodyStyle:
        d = dict(d)
        for k in ("skin", "hair", "shirt", "trousers", "shoes"):
            d[k] = tuple(int(v) for v in d[k])
        return cls(**d)


def _hsv(h: float, s: float, v: float) -> RGB:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, s, v)
    return round(255 * r), round(255 * g), round(255 * b)


def random_style(rng: np.random.Generator) -> BodyStyle:
    """A plausible random person: skin tone, hair, shirt, trousers/shorts, shoes and build."""
    pick = lambda seq: seq[int(rng.integers(len(seq)))]  # noqa: E731
    if rng.random() < 0.2:  # white, black or grey shirt
        shirt = _hsv(0.0, 0.0, float(rng.choice([0.12, 0.5, 0.92])))
    else:
        shirt = _hsv(float(rng.random()), float(rng.uniform(0.3, 0.85)), float(rng.uniform(0.4, 0.95)))
    return BodyStyle(
        skin=pick(SKIN_TONES),
        hair=pick(HAIR_COLOURS),
        shirt=shirt,
        trousers=pick(TROUSER_COLOURS),
        shoes=pick(SHOE_COLOURS),
        girth=float(rng.uniform(0.85, 1.2)),
        limbs=float(rng.uniform(0.9, 1.1)),
        head=float(rng.uniform(0.95, 1.07)),
        sleeves="short" if rng.random() < 0.5 else "long",
        legwear="shorts" if rng.random() < 0.25 else "trousers",
        hair_style=str(rng.choice(["short", "long", "bald"], p=[0.55, 0.3, 0.15])),  # type: ignore[arg-type]
    )


# --- geometry --------------------------------------------------------------------------------
def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-9)


def _frame(up: np.ndarray, across: np.ndarray) -> np.ndarray:
    """Columns (right, up, forward) [T,3,3] from an up direction and a left→right vector."""
    up = _unit(up)
    right = _unit(across - (across * up).sum(-1, keepdims=True) * up)
    fwd = np.cross(up, right)
    return np.stack([right, up, fwd], axis=-1)


@dataclass(frozen=True)
class Body:
    """Primitives of a body over T frames. Primitive k < C is capsule k, else ellipsoid k - C.

    ``colour_a``/``colour_b`` [N,3] (0–1) and ``split`` [N]: a capsule point at fraction s along its
    segment takes colour_a if s < split else colour_b; an ellipsoid point with local up coordinate
    (unit sphere) q_up takes colour_b if q_up < split else colour_a. The head ellipsoid uses the hairline.
    """

    cap_a: np.ndarray  # [T,C,3]
    cap_b: np.ndarray  # [T,C,3]
    cap_r: np.ndarray  # [C]
    ell_center: np.ndarray  # [T,E,3]
    ell_axes: np.ndarray  # [T,E,3,3] columns: right, up, forward
    ell_radii: np.ndarray  # [E,3]
    parts: np.ndarray  # [N] uint8 part labels
    colour_a: np.ndarray
    colour_b: np.ndarray
    split: np.ndarray
    head: int  # primitive index of the head ellipsoid
    hair: np.ndarray  # [3] hair colour 0–1
    hair_style: str
    bound_center: np.ndarray  # [T,3]
    bound_radius: np.ndarray  # [T]

    @property
    def num_frames(self) -> int:
        return self.cap_a.shape[0]

    @property
    def num_capsules(self) -> int:
        return self.cap_a.shape[1]

    def geometry(self, i: int) -> Geometry:
        """Frame i's primitives (capsules, ellipsoids) with a bounding sphere for ray culling."""
        return Geometry(
            cap_a=self.cap_a[i],
            cap_b=self.cap_b[i],
            cap_r=self.cap_r,
            ell_center=self.ell_center[i],
            ell_axes=self.ell_axes[i],
            ell_radii=self.ell_radii,
            bound_center=self.bound_center[i],
            bound_radius=float(self.bound_radius[i]),
        )

    def albedo(self, i: int, prim: np.ndarray, points: np.ndarray) -> np.ndarray:
        """Surface colours [P,3] (0–1) of frame i at hit ``points`` [P,3] on body primitives ``prim`` [P]."""
        out = np.empty((len(prim), 3))
        C = self.num_capsules
        cap = prim < C
        if cap.any():
            k = prim[cap]
            a, b = self.cap_a[i, k], self.cap_b[i, k]
            ba = b - a
            s = ((points[cap] - a) * ba).sum(-1) / np.maximum((ba * ba).sum(-1), 1e-12)
            out[cap] = np.where((s < self.split[k])[:, None], self.colour_a[k], self.colour_b[k])
        ell = ~cap
        if ell.any():
            k = prim[ell]
            e = k - C
            q = np.einsum("pk,pkj->pj", points[ell] - self.ell_center[i, e], self.ell_axes[i, e])
            q /= self.ell_radii[e]
            col = np.where((q[:, 1] < self.split[k])[:, None], self.colour_b[k], self.colour_a[k])
            head = k == self.head
            if head.any():
                col[head] = np.where(self._is_hair(q[head])[:, None], self.hair, col[head])
            out[ell] = col
        return out

    def _is_hair(self, q: np.ndarray) -> np.ndarray:
        """Hair on the head ellipsoid at local unit coordinates q = (right, up, forward)."""
        up, fwd = q[:, 1], q[:, 2]
        if self.hair_style == "bald":
            return np.zeros(len(q), dtype=bool)
        if self.hair_style == "long":
            return up > -0.3 + 0.8 * fwd - 0.5 * np.maximum(-fwd, 0.0)
        return up > 0.12 + 0.4 * fwd


def build_body(joints: np.ndarray, style: BodyStyle) -> Body:
    """Primitives for SMPL-22 ``joints`` [T,22,3] (metres, Y up) dressed in ``style``."""
    j = np.asarray(joints, dtype=np.float64)
    if j.ndim == 2:
        j = j[None]
    g, gl, hs = style.girth, style.girth * style.limbs, style.head
    P = lambda name: j[:, J[name]]  # noqa: E731
    skin, hair = np.array(style.skin) / 255, np.array(style.hair) / 255
    shirt, trousers = np.array(style.shirt) / 255, np.array(style.trousers) / 255
    shoes = np.array(style.shoes) / 255
    caps: list[tuple[np.ndarray, np.ndarray, float, str, np.ndarray, np.ndarray, float]] = []

    def cap(a, b, r, part, ca, cb=None, split=NO_SPLIT):
        caps.append((a, b, r, part, ca, ca if cb is None else cb, split))

    short = style.sleeves == "short"
    shorts = style.legwear == "shorts"
    cap(P("neck"), P("head"), 0.052 * g, "neck", skin)
    cap(P("left_shoulder"), P("right_shoulder"), 0.062 * g, "torso", shirt)
    cap(P("left_hip"), P("right_hip"), 0.082 * g, "pelvis", trousers)
    # Flanks: one column per side from above the hip to below the shoulder fills the waist.
    torso_up = _unit(P("neck") - P("pelvis"))
    for side in ("left", "right"):
        lo = P("pelvis") + 0.9 * (P(f"{side}_hip") - P("pelvis")) + 0.1 * torso_up
        hi = P("neck") + 0.55 * (P(f"{side}_shoulder") - P("neck")) - 0.07 * torso_up
        cap(lo, hi, 0.075 * g, "torso", trousers, shirt, 0.12)
    for side in ("left", "right"):
        sh, el, wr = P(f"{side}_shoulder"), P(f"{side}_elbow"), P(f"{side}_wrist")
        hip, kn, an, ft = P(f"{side}_hip"), P(f"{side}_knee"), P(f"{side}_ankle"), P(f"{side}_foot")
        cap(sh, el, 0.054 * gl, f"{side}_upper_arm", shirt, skin, 0.45 if short else NO_SPLIT)
        cap(el, wr, 0.043 * gl, f"{side}_forearm", skin if short else shirt)
        hand_dir = _unit(wr - el)
        cap(wr + 0.015 * hand_dir, wr + 0.075 * hand_dir, 0.042 * style.limbs, f"{side}_hand", skin)
        cap(hip, kn, 0.074 * gl, f"{side}_thigh", trousers, skin, 0.7 if shorts else NO_SPLIT)
        cap(hip, 0.5 * (hip + kn), 0.085 * gl, f"{side}_thigh", trousers)
        cap(kn, an, 0.054 * gl, f"{side}_shin", skin if shorts else trousers)
        # Foot: heel below and behind the ankle to a toe ahead of the foot joint.
        down = _unit(an - kn)
        f = ft - an
        f_flat = f - (f * down).sum(-1, keepdims=True) * down
        heel = an + 0.035 * down - 0.3 * f_flat
        toe = ft + 0.3 * f_flat - 0.012 * down
        cap(heel, toe, 0.042 * style.limbs, f"{side}_foot", shoes)

    # Ellipsoids: head, chest, abdomen, pelvis.
    fwd, up_h, right_h = head_frame(j)
    head_axes = np.stack([right_h, up_h, fwd], axis=-1)
    head_c = P("head") + 0.035 * hs * up_h + 0.01 * hs * fwd
    torso_axes = _frame(P("neck") - P("pelvis"), P("right_shoulder") - P("left_shoulder"))
    hips_axes = _frame(P("spine2") - P("pelvis"), P("right_hip") - P("left_hip"))
    span = np.linalg.norm(P("right_shoulder") - P("left_shoulder"), axis=-1).mean()
    hip_span = np.linalg.norm(P("right_hip") - P("left_hip"), axis=-1).mean()
    chest_len = np.linalg.norm(P("neck") - P("spine2"), axis=-1).mean()
    abd_len = np.linalg.norm(P("spine2") - P("pelvis"), axis=-1).mean()
    ells = [
        (head_c, head_axes, (0.08 * hs, 0.117 * hs, 0.1 * hs), "head", skin, skin, -9.0),
        (
            0.5 * (P("spine2") + P("neck")),
            torso_axes,
            (max(0.42 * span, 0.12) * g, 0.62 * chest_len, 0.105 * g),
            "torso",
            shirt,
            shirt,
            -9.0,
        ),
        (
            0.5 * (P("pelvis") + P("spine2")),
            torso_axes,
            (0.135 * g, 0.62 * abd_len, 0.1 * g),
            "torso",
            shirt,
            trousers,
            -0.55,
        ),
        (
            P("pelvis") - 0.02 * hips_axes[..., 1],
            hips_axes,
            ((0.5 * hip_span + 0.085) * g, 0.115, 0.105 * g),
            "pelvis",
            trousers,
            trousers,
            -9.0,
        ),
    ]
    C = len(caps)
    cap_a = np.stack([c[0] for c in caps], axis=1)
    cap_b = np.stack([c[1] for c in caps], axis=1)
    cap_r = np.array([c[2] for c in caps])
    ell_c = np.stack([e[0] for e in ells], axis=1)
    ell_ax = np.stack([e[1] for e in ells], axis=1)
    ell_r = np.array([e[2] for e in ells], dtype=np.float64)
    prims = [(c[3], c[4], c[5], c[6]) for c in caps] + [(e[3], e[4], e[5], e[6]) for e in ells]
    # Bounding sphere per frame around every primitive.
    pts = np.concatenate([cap_a, cap_b, ell_c], axis=1)
    pad = np.concatenate([cap_r, cap_r, ell_r.max(1)])
    center = 0.5 * (pts.min(1) + pts.max(1))
    radius = (np.linalg.norm(pts - center[:, None], axis=-1) + pad[None]).max(1) + 1e-3
    return Body(
        cap_a=cap_a,
        cap_b=cap_b,
        cap_r=cap_r,
        ell_center=ell_c,
        ell_axes=ell_ax,
        ell_radii=ell_r,
        parts=np.array([PART[p[0]] for p in prims], dtype=np.uint8),
        colour_a=np.array([p[1] for p in prims], dtype=np.float64),
        colour_b=np.array([p[2] for p in prims], dtype=np.float64),
        split=np.array([p[3] for p in prims], dtype=np.float64),
        head=C,
        hair=hair,
        hair_style=style.hair_style,
        bound_center=center,
        bound_radius=radius,
    )
