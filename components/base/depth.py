"""Monocular depth for the contact loss: a small U-Net (CPU profile), unprojection to points, VGGT adapter.

The contact loss (``components.losses.contact``) needs a point per pixel of every *generated* frame,
differentiable back to the frame. ``DepthNet`` maps frames ``[B,3,H,W]`` in [-1, 1] to metric depth
``[B,1,H,W]`` (camera z, metres) with a conv encoder–decoder; ``unproject`` lifts depth to camera-space
points with the intrinsics ``K`` (pixel centres at integer coordinates, as the synthetic renderer
stores them), and ``to_world`` applies a known world→camera pose.

Camera space and the scene hull: without a known camera pose, the scene points of all frames are
aggregated in the camera frame, which is one consistent frame only if the camera does not move over
the clip. That holds for the "fixed" synthetic cameras and is an approximation for orbit/dolly/pan
clips and real footage. The paper lifts frames with VGGT, whose point maps are consistent across
frames in one world frame; ``VGGTAdapter`` is that route for GPU profiles (weights from a local
folder).

Design choices of ``DepthNet`` (ours; the paper uses VGGT): two normalised pixel-coordinate channels
are appended to the input (a camera of fixed height and field of view makes depth strongly depend on
image position, e.g. the ground plane); depth is ``softplus(x) + min_depth`` so it is positive with a
non-vanishing gradient; the output bias starts at ``init_depth`` so training starts from a plausible
constant scene. Inputs of any size are padded (replicate) to a multiple of ``2**levels`` and the
output is cropped back.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from components.base.config import DepthNetConfig
from components.io.atomic import atomic_dir
from components.io.pretrained import ArtifactFormat, read_config, write_config
from components.motion.camera import intrinsics

WEIGHTS_FILE = "depth.safetensors"
# v1 (before the one save/load convention): config.json was the bare DepthNetConfig
FORMAT = ArtifactFormat(
    "mosa-depth", 2, "DepthNet.save_pretrained", unversioned=lambda config: {"config": config}
)


class _Block(nn.Module):
    """Two 3×3 convolutions with GroupNorm and SiLU."""

    def __init__(self, c_in: int, c_out: int, groups: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, padding=1),
            nn.GroupNorm(groups, c_out),
            nn.SiLU(),
            nn.Conv2d(c_out, c_out, 3, padding=1),
            nn.GroupNorm(groups, c_out),
            nn.SiLU(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class DepthNet(nn.Module):
    """Frames ``[B,3,H,W]`` in [-1, 1] → metric depth ``[B,1,H,W]`` > ``min_depth``, differentiable in x."""

    def __init__(self, cfg: DepthNetConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or DepthNetConfig()
        widths = cfg.widths()
        g = cfg.norm_groups
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            self.stem = _Block(3 + (2 if cfg.coords else 0), widths[0], g)
            self.down = nn.ModuleList(
                nn.Conv2d(widths[i], widths[i + 1], 3, stride=2, padding=1) for i in range(cfg.levels)
            )
            self.enc = nn.ModuleList(_Block(widths[i + 1], widths[i + 1], g) for i in range(cfg.levels))
            self.dec = nn.ModuleList(
                _Block(widths[i + 1] + widths[i], widths[i], g) for i in reversed(range(cfg.levels))
            )
            self.head = nn.Conv2d(widths[0], 1, 1)
        nn.init.zeros_(self.head.weight)
        with torch.no_grad():  # softplus⁻¹(init − min): the net starts as a constant-depth predictor
            self.head.bias.fill_(math.log(math.expm1(cfg.init_depth - cfg.min_depth)))

    def save_pretrained(self, folder: Path | str) -> Path:
        """``config.json`` (format, version, the ``DepthNetConfig``) + ``depth.safetensors``, atomically."""
        with atomic_dir(folder) as tmp:
            write_config(tmp, FORMAT, {"config": self.cfg.model_dump(mode="json")})
            state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
            save_file(state, str(tmp / WEIGHTS_FILE), metadata={"format": FORMAT.name})
        return Path(folder)

    @classmethod
    def from_pretrained(cls, folder: Path | str) -> DepthNet:
        """A ``DepthNet`` written by ``save_pretrained`` (or a v1 ``depth/`` folder), eval mode, frozen."""
        folder = Path(folder)
        config = read_config(folder, FORMAT, hint="run the pretrain_base stage (dvc repro pretrain_base)")
        net = cls(DepthNetConfig.model_validate(config["config"]))
        weights = folder / WEIGHTS_FILE
        if not weights.is_file():
            raise FileNotFoundError(f"{weights} is missing: {folder} is not written by {FORMAT.writer}")
        net.load_state_dict(load_file(str(weights)), strict=True)
        return net.eval().requires_grad_(False)

    def forward(self, frames: Tensor) -> Tensor:
        if frames.ndim != 4 or frames.shape[1] != 3:
            raise ValueError(
                f"DepthNet: frames must be [B,3,H,W] in [-1, 1], got shape {tuple(frames.shape)}"
            )
        b, _, h, w = frames.shape
        m = 2**self.cfg.levels
        ph, pw = (-h) % m, (-w) % m
        x = F.pad(frames, (0, pw, 0, ph), mode="replicate") if ph or pw else frames
        if self.cfg.coords:
            x = torch.cat([x, _coord_channels(b, h, w, ph, pw, x)], dim=1)
        skips = [self.stem(x)]
        for down, enc in zip(self.down, self.enc, strict=True):
            skips.append(enc(down(skips[-1])))
        y = skips.pop()
        for dec in self.dec:
            skip = skips.pop()
            y = F.interpolate(y, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            y = dec(torch.cat([y, skip], dim=1))
        depth = F.softplus(self.head(y)) + self.cfg.min_depth
        return depth[:, :, :h, :w]


def _coord_channels(b: int, h: int, w: int, ph: int, pw: int, like: Tensor) -> Tensor:
    """``[B,2,H+ph,W+pw]`` pixel coordinates (x then y), scaled so the unpadded image spans [-1, 1]."""
    ys = torch.arange(h + ph, device=like.device, dtype=like.dtype) * (2 / max(h - 1, 1)) - 1
    xs = torch.arange(w + pw, device=like.device, dtype=like.dtype) * (2 / max(w - 1, 1)) - 1
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([xx, yy]).unsqueeze(0).expand(b, -1, -1, -1)


def default_intrinsics(height: int, width: int, fov_deg: float = 45.0) -> Tensor:
    """``K`` [3,3] float32 of a pinhole camera with a vertical field of view, principal point at the centre.

    For frames without a known camera (real clips, generated videos); the same convention as the
    synthetic renderer (``components.motion.camera.intrinsics``), whose default field of view is 45°.
    """
    if height < 1 or width < 1:
        raise ValueError(f"default_intrinsics: height and width must be >= 1, got {height}x{width}")
    if not 1.0 <= fov_deg <= 170.0:
        raise ValueError(f"default_intrinsics: fov_deg must be in [1, 170] degrees, got {fov_deg}")
    return torch.from_numpy(intrinsics(fov_deg, height, width)).float()


def unproject(depth: Tensor, K: Tensor) -> Tensor:
    """Camera-space points ``[B,H,W,3]`` = ``depth · K⁻¹ [u, v, 1]`` (differentiable in depth and ``K``).

    ``depth`` is ``[B,H,W]`` or ``[B,1,H,W]`` (camera z, metres); ``K`` is ``[3,3]`` or ``[B,3,3]``;
    ``u`` runs along columns and ``v`` along rows, pixel centres at integers. Non-finite depth gives
    non-finite points (the contact loss drops them).
    """
    if depth.ndim == 4:
        if depth.shape[1] != 1:
            raise ValueError(f"unproject: depth must be [B,H,W] or [B,1,H,W], got shape {tuple(depth.shape)}")
        depth = depth[:, 0]
    if depth.ndim != 3:
        raise ValueError(f"unproject: depth must be [B,H,W] or [B,1,H,W], got shape {tuple(depth.shape)}")
    b, h, w = depth.shape
    if K.shape == (3, 3):
        K = K.unsqueeze(0).expand(b, 3, 3)
    if K.shape != (b, 3, 3):
        raise ValueError(f"unproject: K must be [3,3] or [B={b},3,3], got shape {tuple(K.shape)}")
    K = K.to(device=depth.device, dtype=depth.dtype)
    v, u = torch.meshgrid(
        torch.arange(h, device=depth.device, dtype=depth.dtype),
        torch.arange(w, device=depth.device, dtype=depth.dtype),
        indexing="ij",
    )
    pix = torch.stack([u, v, torch.ones_like(u)], dim=-1)  # [H,W,3]
    rays = torch.einsum("bij,hwj->bhwi", torch.linalg.inv(K), pix)  # z = 1 per ray
    return rays * depth.unsqueeze(-1)


def to_world(points: Tensor, R: Tensor, t: Tensor) -> Tensor:
    """Camera-space points ``[B,H,W,3]`` → world, ``Rᵀ (x − t)`` for world→camera ``x = R X + t``.

    ``R`` is ``[B,3,3]`` and ``t`` ``[B,3]`` (one camera per image), e.g. the synthetic renderer's.
    """
    b = points.shape[0]
    if points.ndim != 4 or points.shape[-1] != 3:
        raise ValueError(f"to_world: points must be [B,H,W,3], got shape {tuple(points.shape)}")
    if R.shape != (b, 3, 3) or t.shape != (b, 3):
        raise ValueError(
            f"to_world: R must be [B={b},3,3] and t [B={b},3], got {tuple(R.shape)} and {tuple(t.shape)}"
        )
    R, t = R.to(points), t.to(points)
    return torch.einsum("bhwi,bij->bhwj", points - t[:, None, None, :], R)


class VGGTAdapter:
    """VGGT (Wang et al., 2025) world-consistent point maps, for GPU profiles; weights from a local folder.

    Needs the ``vggt`` package of the VGGT authors (``vggt.models.vggt.VGGT``, a ``PyTorchModelHubMixin``
    whose ``from_pretrained`` takes a local folder) and a local copy of its weights (e.g. VGGT-1B).
    ``point_maps(frames)`` resizes the frames so both sides are multiples of VGGT's 14-pixel patch
    (the longer side ``image_size``), runs the model on each clip as one sequence and resizes the
    ``world_points`` back (bilinear), keeping the graph to the frames. Nothing is downloaded; without
    the package or the folder, construction fails with what to install or where to point.
    """

    PATCH = 14

    def __init__(self, path: str | Path, image_size: int = 518, device: str | torch.device = "cpu") -> None:
        root = Path(path).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(
                f"VGGT weights folder {root} does not exist; point depth.vggt_path at a local copy of "
                "the VGGT-1B weights (config.json + model.safetensors), or use the base bundle's DepthNet"
            )
        if image_size % self.PATCH:
            raise ValueError(f"image_size must be a multiple of {self.PATCH}, got {image_size}")
        try:
            from vggt.models.vggt import VGGT
        except ImportError as exc:
            raise ImportError(
                "VGGTAdapter needs the `vggt` package (install it from the VGGT authors' repository); "
                "the CPU profile uses DepthNet instead"
            ) from exc
        self.path = root
        self.image_size = image_size
        self.model = VGGT.from_pretrained(str(root), local_files_only=True).to(device).eval()
        self.model.requires_grad_(False)

    def point_maps(self, frames: Tensor) -> Tensor:
        """Frames ``[B,T,3,H,W]`` in [-1, 1] → world points ``[B,T,H,W,3]`` (first frame's camera = world)."""
        if frames.ndim != 5 or frames.shape[2] != 3:
            raise ValueError(f"VGGTAdapter: frames must be [B,T,3,H,W], got shape {tuple(frames.shape)}")
        b, n, _, h, w = frames.shape
        scale = self.image_size / max(h, w)
        size = (
            max(self.PATCH, round(h * scale / self.PATCH) * self.PATCH),
            max(self.PATCH, round(w * scale / self.PATCH) * self.PATCH),
        )
        x = F.interpolate(frames.flatten(0, 1), size=size, mode="bilinear", align_corners=False)
        x = ((x + 1) / 2).clamp(0, 1).unflatten(0, (b, n))  # VGGT takes images in [0, 1]
        points = self.model(x)["world_points"]  # [B,T,h',w',3]
        points = F.interpolate(points.flatten(0, 1).permute(0, 3, 1, 2), size=(h, w), mode="bilinear")
        return points.permute(0, 2, 3, 1).unflatten(0, (b, n))
