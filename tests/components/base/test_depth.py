"""DepthNet shapes/range/gradients, unprojection against the numpy point map, intrinsics, VGGT errors."""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest
import torch

from components.base.config import DepthNetConfig
from components.base.depth import DepthNet, VGGTAdapter, default_intrinsics, to_world, unproject
from components.data.clipset import point_map
from components.motion.camera import intrinsics

torch.set_num_threads(1)


def _rotation(seed: int) -> torch.Tensor:
    q, _ = torch.linalg.qr(
        torch.randn(3, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    )
    return q * torch.sign(torch.linalg.det(q))


@pytest.mark.parametrize("size", [(32, 48), (30, 45), (17, 9)])
def test_depthnet_keeps_the_frame_size_and_starts_at_init_depth(size: tuple[int, int]) -> None:
    cfg = DepthNetConfig(base_channels=8, levels=3, init_depth=4.0, min_depth=0.1)
    net = DepthNet(cfg)
    x = torch.rand(2, 3, *size) * 2 - 1
    d = net(x)
    assert d.shape == (2, 1, *size)
    torch.testing.assert_close(d, torch.full_like(d, 4.0))  # zero-initialised head: a constant scene


def test_depth_is_positive_and_differentiable_in_the_frames() -> None:
    net = DepthNet(DepthNetConfig(base_channels=8, min_depth=0.2))
    with torch.no_grad():
        net.head.weight.normal_(0, 5.0)  # large outputs of both signs
    x = (torch.rand(1, 3, 24, 40) * 2 - 1).requires_grad_(True)
    d = net(x)
    assert float(d.detach().min()) >= 0.2
    assert float(d.detach().std()) > 0
    d.sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0


def test_same_seed_same_weights_and_config_validation() -> None:
    a, b = DepthNet(DepthNetConfig(seed=3)), DepthNet(DepthNetConfig(seed=3))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    with pytest.raises(ValueError, match="init_depth"):
        DepthNetConfig(init_depth=0.01, min_depth=0.05)
    with pytest.raises(ValueError, match="norm_groups"):
        DepthNetConfig(base_channels=6, norm_groups=4)
    with pytest.raises(ValueError, match=r"\[B,3,H,W\]"):
        DepthNet()(torch.zeros(1, 4, 16, 16))


def test_unproject_matches_the_numpy_point_map_and_reprojects_to_the_pixels() -> None:
    rng = np.random.default_rng(0)
    h, w = 6, 9
    depth = rng.uniform(1.0, 10.0, size=(2, h, w))
    depth[0, 2, 3] = np.inf
    K = np.array([[50.0, 0.5, 4.2], [0.0, 45.0, 2.7], [0.0, 0.0, 1.0]])
    ref = point_map(depth, K, np.broadcast_to(np.eye(3), (2, 3, 3)), np.zeros((2, 3)))
    ours = unproject(torch.from_numpy(depth), torch.from_numpy(K)).numpy()
    finite = np.isfinite(depth)
    np.testing.assert_allclose(ours[finite], ref[finite], rtol=1e-5, atol=1e-5)
    assert not np.isfinite(ours[0, 2, 3]).all()
    uvw = ours[1] @ K.T
    v, u = np.mgrid[0:h, 0:w]
    np.testing.assert_allclose(uvw[..., :2] / uvw[..., 2:], np.stack([u, v], -1), atol=1e-9)


def test_unproject_is_differentiable_and_takes_per_image_intrinsics() -> None:
    depth = torch.full((2, 1, 4, 5), 2.0, requires_grad=True)
    K = torch.stack([default_intrinsics(4, 5, 40.0), default_intrinsics(4, 5, 80.0)])
    pts = unproject(depth, K)
    assert pts.shape == (2, 4, 5, 3)
    torch.testing.assert_close(pts[..., 2], torch.full((2, 4, 5), 2.0))
    corner = pts.detach()[:, 0, 0, 0].abs()
    assert float(corner[1]) > float(corner[0])  # a wider view spreads the rays
    pts[..., 0].sum().backward()
    assert depth.grad is not None and float(depth.grad.abs().sum()) > 0
    with pytest.raises(ValueError, match="K must be"):
        unproject(depth.detach(), torch.eye(3).expand(3, 3, 3))
    with pytest.raises(ValueError, match="depth must be"):
        unproject(torch.ones(2, 2, 4, 5), torch.eye(3))


def test_default_intrinsics_is_the_renderer_convention() -> None:
    K = default_intrinsics(96, 144, 45.0)
    np.testing.assert_allclose(K.numpy(), intrinsics(45.0, 96, 144).astype(np.float32))
    assert math.isclose(48 / float(K[1, 1]), math.tan(math.radians(22.5)), rel_tol=1e-6)
    assert (float(K[0, 2]), float(K[1, 2])) == (71.5, 47.5)
    with pytest.raises(ValueError, match="fov_deg"):
        default_intrinsics(96, 144, 0.0)


def test_to_world_inverts_the_world_to_camera_pose() -> None:
    R = torch.stack([_rotation(1), _rotation(2)])
    t = torch.tensor([[0.3, -1.0, 4.0], [2.0, 0.5, -0.7]], dtype=torch.float64)
    world = torch.randn(2, 3, 4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    cam = torch.einsum("bij,bhwj->bhwi", R, world) + t[:, None, None]
    torch.testing.assert_close(to_world(cam, R, t), world)
    with pytest.raises(ValueError, match="R must be"):
        to_world(cam, R[:1], t)


def test_vggt_adapter_needs_a_local_folder_and_the_package(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        VGGTAdapter(tmp_path / "missing")
    if importlib.util.find_spec("vggt") is not None:
        pytest.skip("vggt is installed: the missing-package error cannot be shown")
    (tmp_path / "weights").mkdir()
    with pytest.raises(ImportError, match="vggt"):
        VGGTAdapter(tmp_path / "weights")
