"""Contact loss: unit-cube known answers, gradient direction, degenerate scenes, per-object hulls."""

from __future__ import annotations

import math

import pytest
import torch

from components.losses.contact import contact_loss, contact_violation_rate, hull_sdf, scene_hulls


def cube_surface(lo: tuple[float, float, float] = (0.0, 0.0, 0.0), n: int = 6) -> torch.Tensor:
    """Points on the faces of the unit cube with corner ``lo`` → [6·n², 3]."""
    g = torch.linspace(0, 1, n, dtype=torch.float64)
    a, b = (x.reshape(-1) for x in torch.meshgrid(g, g, indexing="ij"))
    faces = []
    for axis in range(3):
        for side in (0.0, 1.0):
            p = torch.empty(n * n, 3, dtype=torch.float64)
            others = [k for k in range(3) if k != axis]
            p[:, axis], p[:, others[0]], p[:, others[1]] = side, a, b
            faces.append(p)
    return torch.cat(faces) + torch.tensor(lo, dtype=torch.float64)


def point_map(
    scene: torch.Tensor, humans: list[list[list[float]]], width: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """A [1,T,1,W,3] point map whose frames share out the scene points and hold ``humans[t]`` (masked);
    unused pixels are NaN (dropped like invalid depth)."""
    t = len(humans)
    per = math.ceil(scene.shape[0] / t)
    width = width or per + max(len(h) for h in humans)
    pts = torch.full((1, t, 1, width, 3), float("nan"), dtype=torch.float64)
    mask = torch.zeros(1, t, 1, width, dtype=torch.bool)
    for j, hum in enumerate(humans):
        part = scene[j * per : (j + 1) * per]
        pts[0, j, 0, : len(part)] = part
        if hum:
            pts[0, j, 0, per : per + len(hum)] = torch.tensor(hum, dtype=torch.float64)
            mask[0, j, 0, per : per + len(hum)] = True
    return pts, mask


def test_cube_centre_penetrates_by_half_and_loss_is_frame_normalised():
    pts, mask = point_map(cube_surface(), [[[0.5, 0.5, 0.5]], [[2.0, 0.5, 0.5]], [[2.0, 0.5, 0.5]]])
    out = contact_loss(pts, mask, attract_weight=0.0)
    assert out.loss.item() == pytest.approx(0.5 / 3)
    assert out.penetrating.tolist() == [[True, False, False]] and out.degenerate.tolist() == [False]
    # the outside frames are pulled toward the surface (sdf = 1 there) with the attraction weight
    out2 = contact_loss(pts, mask, attract_weight=0.1)
    assert out2.loss.item() == pytest.approx((0.5 + 0.1 + 0.1) / 3)
    # a tolerance counts only the depth beyond it
    assert contact_loss(pts, mask, tau=0.2, attract_weight=0.0).loss.item() == pytest.approx(0.3 / 3)
    assert contact_violation_rate(pts, mask) == pytest.approx(1 / 3)


def test_frame_loss_is_the_mean_over_its_human_points():
    humans = [[[0.5, 0.5, 0.5], [0.5, 0.5, 0.9], [3.0, 3.0, 3.0]]]  # depths 0.5, 0.1 and outside
    pts, mask = point_map(cube_surface(), humans)
    assert contact_loss(pts, mask, attract_weight=0.0).loss.item() == pytest.approx(0.6 / 3)


def test_outside_points_have_no_penetration_penalty():
    pts, mask = point_map(cube_surface(), [[[1.5, 0.5, 0.5]], [[0.5, 0.5, -0.25]]])
    out = contact_loss(pts, mask, attract_weight=0.0)
    assert out.loss.item() == 0.0 and not out.penetrating.any()
    assert contact_loss(pts, mask, attract_weight=0.2).loss.item() == pytest.approx(0.2 * (0.5 + 0.25) / 2)
    assert contact_violation_rate(pts, mask) == 0.0


def test_sdf_is_exact_inside_and_a_lower_bound_outside():
    hulls = scene_hulls(cube_surface())
    assert hulls is not None and hulls.num_objects == 1 and hulls.normals.shape[1] == 6  # duplicates merged
    x = torch.rand(200, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    exact = -torch.minimum(x, 1 - x).min(dim=1).values
    torch.testing.assert_close(hull_sdf(x, hulls), exact)
    corner = torch.tensor([[2.0, 2.0, 0.5]], dtype=torch.float64)  # true distance √2
    assert hull_sdf(corner, hulls).item() == pytest.approx(1.0)


def test_gradient_pushes_a_penetrating_point_out_through_the_nearest_face():
    pts, mask = point_map(cube_surface(), [[[0.5, 0.5, 0.2]], [[0.5, 0.5, 0.2]]])
    pts.requires_grad_()
    contact_loss(pts, mask, attract_weight=0.0).loss.backward()
    grad = pts.grad[mask]  # [2 frames, 3]
    torch.testing.assert_close(grad, torch.tensor([[0.0, 0.0, 0.5]] * 2, dtype=torch.float64))
    assert torch.nan_to_num(pts.grad[~mask]).abs().sum() == 0  # the scene gets no gradient
    hulls = scene_hulls(cube_surface())
    before = pts.detach()[mask]
    after = before - 0.25 * grad / grad.norm(dim=-1, keepdim=True)  # a descent step
    assert (hull_sdf(after, hulls) > 0).all() and (hull_sdf(before, hulls) < 0).all()


def test_degenerate_scenes_give_zero_and_a_flag():
    g = torch.linspace(0, 1, 5, dtype=torch.float64)
    floor = torch.stack([*torch.meshgrid(g, g, indexing="ij"), torch.zeros(5, 5, dtype=torch.float64)], -1)
    flat, fmask = point_map(floor.reshape(-1, 3), [[[0.5, 0.5, 0.0]], [[0.5, 0.5, -0.1]]], width=120)
    out = contact_loss(flat, fmask)
    assert out.loss.item() == 0.0 and out.degenerate.tolist() == [True]
    assert math.isnan(contact_violation_rate(flat, fmask))
    few, few_mask = point_map(cube_surface()[:3], [[[0.5, 0.5, 0.5]]])
    assert contact_loss(few, few_mask).degenerate.tolist() == [True]
    # a batch with one degenerate and one valid sample: the valid one's loss over the batch of 2
    good, good_mask = point_map(cube_surface(), [[[0.5, 0.5, 0.5]], [[2.0, 0.5, 0.5]]], width=120)
    batch = contact_loss(torch.cat([flat, good]), torch.cat([fmask, good_mask]), attract_weight=0.0)
    assert batch.degenerate.tolist() == [True, False]
    assert batch.loss.item() == pytest.approx(0.5 / 2 / 2)


def test_per_object_hulls_leave_the_gap_between_objects_free():
    scene = torch.cat([cube_surface((0.0, 0.0, 0.0)), cube_surface((3.0, 0.0, 0.0))])
    pts, mask = point_map(scene, [[[2.0, 0.5, 0.5]], [[3.5, 0.5, 0.2]]])
    single = contact_loss(pts, mask, attract_weight=0.0)
    assert single.penetrating.tolist() == [[True, True]]  # one hull spans the gap
    split = contact_loss(pts, mask, attract_weight=0.0, per_object=True)
    assert split.penetrating.tolist() == [[False, True]]
    assert split.loss.item() == pytest.approx(0.2 / 2)
    hulls = scene_hulls(scene, per_object=True)
    assert hulls is not None and hulls.num_objects == 2
    assert scene_hulls(scene, per_object=True, cluster_radius=5.0).num_objects == 1


def test_scene_subsampling_is_deterministic_and_conservative():
    scene = cube_surface(n=20)
    x = torch.rand(300, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 1.4 - 0.2
    humans = [[p.tolist() for p in x[:150]], [p.tolist() for p in x[150:]]]
    pts, mask = point_map(scene, humans)
    a = contact_loss(pts, mask, max_scene_points=60)
    b = contact_loss(pts, mask, max_scene_points=60)
    assert a.loss.item() == b.loss.item()
    full, sub = scene_hulls(scene), scene_hulls(scene[:: len(scene) // 60])
    # a sub-hull lies inside the full hull: whatever penetrates it penetrates the full hull, less deeply
    d_sub, d_full = hull_sdf(x, sub), hull_sdf(x, full)
    inside_sub = d_sub < 0
    assert inside_sub.any() and (d_full[inside_sub] < 0).all()
    assert (d_sub[inside_sub] >= d_full[inside_sub] - 1e-12).all()


def test_bad_inputs_name_the_problem():
    pts, mask = point_map(cube_surface(), [[[0.5, 0.5, 0.5]]])
    with pytest.raises(ValueError, match=r"points must be a float point map \[B,T,H,W,3\]"):
        contact_loss(pts[0], mask)
    with pytest.raises(ValueError, match=r"mask must be \[B,T,H,W\]"):
        contact_loss(pts, mask[0])
    with pytest.raises(ValueError, match="tau >= 0"):
        contact_loss(pts, mask, tau=-1.0)


def _loop_reference(points: torch.Tensor, mask: torch.Tensor, tau: float, attract: float) -> tuple:
    """Eq. 10 frame by frame, as written before the batched rewrite: (loss, penetrating [B,T])."""
    b, t = points.shape[:2]
    per_sample, penetrating = [], torch.zeros(b, t, dtype=torch.bool)
    for i in range(b):
        scene = points[i].detach()[~mask[i]]
        hulls = scene_hulls(scene[torch.isfinite(scene).all(dim=-1)])
        frame_losses = []
        for j in range(t):
            human = points[i, j][mask[i, j]]
            human = human[torch.isfinite(human).all(dim=-1)]
            if human.shape[0] == 0:
                continue
            sdf = hull_sdf(human, hulls)
            inside = sdf < -tau
            penetrating[i, j] = bool(inside.any())
            frame_losses.append(torch.where(inside, -sdf - tau, attract * sdf.abs()).mean())
        per_sample.append(torch.stack(frame_losses).sum() / t if frame_losses else points.new_zeros(()))
    return torch.stack(per_sample).mean(), penetrating


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_batched_frames_give_the_frame_by_frame_loss_and_gradient(dtype) -> None:
    g = torch.Generator().manual_seed(0)
    b, t, h, w = 2, 5, 6, 7
    points = (torch.rand(b, t, h, w, 3, generator=g, dtype=torch.float64) * 2 - 0.5).to(dtype)
    mask = torch.rand(b, t, h, w, generator=g) < 0.3
    mask[0, 1] = False  # a frame without a person adds 0 but still counts in T
    mask[1, 3] = True  # a frame with only human points (its scene comes from the other frames)
    points[1, 2, 0, :3] = float("nan")  # invalid depth, human and scene pixels alike
    mask[1, 2, 0, :2] = True
    for tau, attract in ((0.0, 0.01), (0.05, 0.0)):
        exact = points.clone().requires_grad_(True)
        ref, ref_pen = _loop_reference(exact, mask, tau, attract)
        ref.backward()
        fast = points.clone().requires_grad_(True)
        out = contact_loss(fast, mask, tau=tau, attract_weight=attract)
        out.loss.backward()
        assert ref.item() > 0 and bool(ref_pen.any()) and not bool(ref_pen.all())
        assert out.loss.item() == pytest.approx(ref.item(), rel=1e-5)
        torch.testing.assert_close(fast.grad, exact.grad, rtol=1e-5, atol=1e-7)
        assert torch.equal(out.penetrating, ref_pen)
