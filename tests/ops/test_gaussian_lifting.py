"""Lifting occupancy + views to surface Gaussians: patches, colours from the views with a depth test,
fill of unseen patches, world assembly without duplicates, the splat renderer and refinement."""

import numpy as np
import pytest
import torch

from xscene_core import semantics
from xscene_core.ops.lifting import (PlacedGrid, RefineView, fill_unseen, lift_chunk, lift_world,
                                     patches_to_gaussians, refine_gaussians, render_gaussians, splat_render_torch,
                                     surface_patches)
from xscene_core.ops.lifting.surfels import solid
from xscene_core.stages.gaussians import look_camera
from xscene_core.types import GridSpec, Occupancy
from xscene_core.types.cameras import CameraRig
from xscene_core.types.images import MultiViewImages

GROUND = semantics.ID["driveable_surface"]
WALL = semantics.ID["manmade"]
CAR = semantics.ID["car"]


def one_camera(eye=(0.0, 0.2, 0.2), forward=(1.0, 0.0), size=(32, 32), pitch=0.0, fov=60.0) -> CameraRig:
    return CameraRig((look_camera(np.array(eye), np.array(forward), size, fov_deg=fov, pitch_deg=pitch),))


def painted(rig: CameraRig, rgb=(255, 0, 0)) -> MultiViewImages:
    c = rig.cameras[0]
    return MultiViewImages(np.broadcast_to(np.array(rgb, np.uint8), (len(rig), c.height, c.width, 3)).copy(), rig)


def world_labels(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """A small continuous world: one-voxel ground at z in [0, 0.4), a wall along y = 1.0 and a car."""
    lab = np.full(x.shape, semantics.FREE, np.uint8)
    lab[(z >= 0) & (z < 0.4)] = GROUND
    lab[(np.abs(y - 1.0) < 0.25) & (z >= 0.4) & (z < 2.0) & (x > 1.0)] = WALL
    lab[(np.abs(x - 2.0) < 0.9) & (np.abs(y + 1.2) < 0.5) & (z >= 0.4) & (z < 1.2)] = CAR
    return lab


def sample_grid(grid: GridSpec, T: np.ndarray) -> Occupancy:
    c = grid.centers() @ T[:3, :3].T + T[:3, 3]
    return Occupancy(world_labels(c[..., 0], c[..., 1], c[..., 2]), grid)


def translation(x: float, y: float) -> np.ndarray:
    T = np.eye(4)
    T[:2, 3] = (x, y)
    return T


SMALL = GridSpec((20, 20, 6), 0.4, (-4.0, -4.0, -0.8))


def test_patches_are_the_visible_faces_and_deterministic():
    grid = GridSpec((5, 5, 5), 0.4, (0.0, 0.0, 0.0))
    labels = np.full(grid.shape, semantics.FREE, np.uint8)
    labels[2, 2, 2] = CAR  # a floating voxel: 5 faces (the one below looks into the "under the ground" pocket)
    p = surface_patches(Occupancy(labels, grid))
    assert len(p) == 5 and sorted(p.face.tolist()) == [0, 1, 2, 3, 5]
    labels[1:4, 1:4, 0] = GROUND  # ground under it, with an air gap: the car's bottom is seen now
    p = surface_patches(Occupancy(labels, grid))
    assert (p.face == 5).sum() == 10 and (p.face == 4).sum() == 1  # 9 ground tops + car top; car bottom
    assert len(p) == 10 + 1 + 4 + 12  # + car sides + the ground rim's outer sides
    # Subdivision: k x k patches per face, tiling it exactly.
    p2 = surface_patches(Occupancy(labels, grid), k=2)
    assert len(p2) == 4 * len(p)
    g = patches_to_gaussians(p2)
    assert g.means.shape == (len(p2), 3) and g.scales.shape == (len(p2), 3)
    assert torch.allclose(g.scales.max(1).values, torch.full((len(p2),), 0.1))
    again = patches_to_gaussians(surface_patches(Occupancy(labels, grid), k=2))
    assert torch.equal(g.means, again.means) and torch.equal(g.labels, again.labels)


def test_ground_pocket_counts_solid():
    labels = np.full((3, 3, 4), semantics.FREE, np.uint8)
    labels[:, :, 2] = GROUND  # ground one voxel thick, free below it
    s = solid(labels)
    assert s[:, :, :3].all() and not s[:, :, 3].any()
    # Only the ground's top and its four outer sides (out of the grid is open) are visible.
    p = surface_patches(Occupancy(labels, GridSpec((3, 3, 4), 0.4, (0.0, 0.0, 0.0))))
    assert (p.face == 5).sum() == 9 and (p.face == 4).sum() == 0 and len(p) == 9 + 12


def test_colours_come_from_the_views():
    occ = sample_grid(SMALL, np.eye(4))
    rig = one_camera(eye=(-3.0, 0.0, 1.5), pitch=-20.0)
    red = lift_chunk(occ, painted(rig, (255, 0, 0)))
    blue = lift_chunk(occ, painted(rig, (0, 0, 255)))
    seen = red.sums.seen
    assert seen.sum() > 50
    assert torch.allclose(red.gaussians.colors[seen], torch.tensor([1.0, 0.0, 0.0]).expand(int(seen.sum()), 3))
    assert torch.allclose(blue.gaussians.colors[seen], torch.tensor([0.0, 0.0, 1.0]).expand(int(seen.sum()), 3))
    # Deterministic.
    again = lift_chunk(occ, painted(rig, (255, 0, 0)))
    assert torch.equal(again.gaussians.colors, red.gaussians.colors) and torch.equal(again.gaussians.means, red.gaussians.means)


def test_an_occluded_voxel_does_not_take_the_occluders_colour():
    grid = GridSpec((20, 5, 5), 0.4, (0.0, -1.0, -1.0))
    labels = np.full(grid.shape, semantics.FREE, np.uint8)
    labels[5, 2, 2] = WALL  # centre (2.2, 0, 0)
    labels[10, 2, 2] = CAR  # centre (4.2, 0, 0), straight behind it
    occ = Occupancy(labels, grid)
    rig = one_camera(eye=(0.0, 0.0, 0.0), size=(40, 40), fov=40.0)
    lifted = lift_chunk(occ, painted(rig, (255, 0, 0)))
    g, p = lifted.gaussians, lifted.patches
    front_wall = torch.from_numpy((p.labels == WALL) & (p.face == 0))
    front_car = torch.from_numpy((p.labels == CAR) & (p.face == 0))
    assert lifted.sums.seen[front_wall].all() and not lifted.sums.seen[front_car].any()
    assert torch.allclose(g.colors[front_wall], torch.tensor([[1.0, 0.0, 0.0]]))
    # No pixel reached the hidden car (above); its colour is the fill's: the scene's tone, as no car was seen.
    assert torch.allclose(g.colors[front_car], torch.tensor([[1.0, 0.0, 0.0]]))


def test_fill_spreads_from_seen_neighbours_of_the_same_class():
    cells = np.array([[0, 0, 0], [1, 0, 0], [2, 0, 0], [3, 0, 0], [9, 9, 9], [20, 0, 0], [20, 5, 0], [30, 0, 0]])
    face = np.array([5, 5, 5, 5, 5, 0, 5, 5])
    labels = np.array([GROUND, GROUND, GROUND, WALL, GROUND, CAR, CAR, CAR], np.uint8)
    colors = np.zeros((8, 3))
    colors[0] = (0.2, 0.4, 0.6)
    colors[5] = (0.8, 0.0, 0.0)
    seen = np.array([True, False, False, False, False, True, False, False])
    out = fill_unseen(cells, face, labels, colors, seen)
    assert np.allclose(out[1], colors[0]) and np.allclose(out[2], colors[0])  # two rounds along the row
    assert np.allclose(out[4], colors[0])  # far away: the mean of its class and face direction
    assert np.allclose(out[6], colors[5]) and np.allclose(out[7], colors[5])  # same class, another face
    assert np.allclose(out[3], (colors[0] + colors[5]) / 2)  # a class no view saw: the mean of all seen
    assert np.array_equal(out[seen], colors[seen].astype(np.float32))
    nothing = fill_unseen(cells, face, labels, colors, np.zeros(8, bool))  # nothing seen: the class colours
    assert np.allclose(nothing, semantics.COLORS[labels] / 255.0)


def test_world_has_one_gaussian_per_patch_and_matches_the_union_grid():
    # Two 8 m chunks 4 m apart along x: the world must equal one grid covering both.
    grids = [PlacedGrid(sample_grid(SMALL, translation(0, 0)), translation(0, 0)),
             PlacedGrid(sample_grid(SMALL, translation(4, 0)), translation(4, 0))]
    rigs = [one_camera(eye=(-3.0, 0.0, 1.5), pitch=-20.0), one_camera(eye=(3.0, 0.0, 1.5), forward=(-1.0, 0.0), pitch=-20.0)]
    world = lift_world(grids, [painted(rigs[0], (255, 0, 0)), painted(rigs[1], (0, 0, 255))])
    means = world.gaussians.means
    assert len(torch.unique(means, dim=0)) == len(means)  # no duplicates in the overlap
    union = GridSpec((30, 20, 6), 0.4, (-4.0, -4.0, -0.8))
    single = patches_to_gaussians(surface_patches(sample_grid(union, np.eye(4))))
    key = lambda m: set(map(tuple, np.round(m.numpy() * 100).astype(int).tolist()))  # noqa: E731
    assert key(means) == key(single.means)
    # The overlap is coloured from both chunks' views: some patch sees red and blue.
    c = world.gaussians.colors[world.sums.seen]
    assert ((c[:, 0] > 0.05) & (c[:, 2] > 0.05)).any()
    # Order of the chunks decides ownership: the first chunk owns the overlap.
    owned_first = world.owner == 0
    assert (world.gaussians.means[torch.from_numpy(owned_first)][:, 0] < 4.0).all()


def test_splat_renderer_shows_a_facing_splat_and_is_differentiable():
    grid = GridSpec((5, 5, 5), 0.4, (1.0, -1.0, -1.0))
    labels = np.full(grid.shape, semantics.FREE, np.uint8)
    labels[2, 2, 2] = WALL
    g = patches_to_gaussians(surface_patches(Occupancy(labels, grid)), colors=np.tile([0.1, 0.8, 0.3], (5, 1)))
    rig = one_camera(eye=(0.0, 0.0, 0.0), size=(21, 21), fov=40.0)
    colors = g.colors.clone().requires_grad_(True)
    out = splat_render_torch(g, rig, with_semantic=True, colors=colors)
    assert out.rgb.shape == (1, 21, 21, 3) and out.alpha.shape == (1, 21, 21)
    assert torch.allclose(out.rgb[0, 10, 10], torch.tensor([0.1, 0.8, 0.3]), atol=0.01)
    assert out.semantic[0, 10, 10] == WALL and out.semantic[0, 0, 0] == semantics.FREE
    assert abs(float(out.depth[0, 10, 10]) - 1.8) < 0.05  # the -x face at x = 1.8 m
    out.rgb.sum().backward()
    assert torch.isfinite(colors.grad).all() and colors.grad.abs().sum() > 0


def test_refinement_lowers_the_splat_error():
    occ = sample_grid(SMALL, np.eye(4))
    rig = one_camera(eye=(-3.0, 0.0, 1.5), pitch=-20.0, size=(24, 32))
    rng = np.random.default_rng(0)
    images = MultiViewImages(rng.integers(0, 255, (1, 24, 32, 3), dtype=np.uint8), rig)
    g = lift_chunk(occ, images).gaussians
    losses = []
    refined = refine_gaussians(g, [RefineView(images)], steps=4, lr=0.1, downscale_factor=1,
                               callback=lambda s, n, loss: losses.append(loss))
    assert len(losses) == 4 and losses[-1] < losses[0]
    assert torch.equal(refined.means, g.means) and not torch.equal(refined.colors, g.colors)


def test_rerender_psnr_on_a_synthetic_chunk():
    from xscene_core.data.world import SyntheticWorld
    from xscene_core.eval.splat_metrics import splat_tally
    from xscene_core.stages.render import RenderStage, default_rig

    chunk = SyntheticWorld(7).chunk(0.0, 0.0)
    stage = RenderStage(default_rig((56, 100)))
    views = stage(chunk.occupancy)
    images = stage.preview(views, chunk.description, chunk.layout, occupancy=chunk.occupancy)
    scene = lift_chunk(chunk.occupancy, images).gaussians
    tally = splat_tally(scene, images, views)
    assert tally.pixels > 0.3 * views.depth.size and tally.psnr() > 20.0
    r = render_gaussians(scene, images.rig)
    assert r.rgb.shape == images.images.shape and r.depth.shape == views.depth.shape
    # The re-render's geometry is the occupancy's: same class on nearly every pixel.
    assert (r.semantic == views.semantic).mean() > 0.97


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gsplat_and_torch_splats_agree():
    from xscene_core.ops.lifting import splat_render_gsplat

    occ = sample_grid(SMALL, np.eye(4))
    rig = one_camera(eye=(-3.0, 0.0, 1.5), pitch=-20.0, size=(48, 64))
    rng = np.random.default_rng(1)
    g = lift_chunk(occ, MultiViewImages(rng.integers(0, 255, (1, 48, 64, 3), dtype=np.uint8), rig)).gaussians
    a = splat_render_torch(g, rig, with_semantic=True)
    colors = g.colors.clone().cuda().requires_grad_(True)
    b = splat_render_gsplat(g, rig, with_semantic=True, colors=colors)
    assert (a.rgb - b.rgb.cpu()).abs().mean() < 0.01
    assert (a.alpha - b.alpha.cpu()).abs().mean() < 0.01
    assert (a.semantic == b.semantic.cpu()).float().mean() > 0.97
    # Backward: the colour gradients of the two twins agree.
    ct = g.colors.clone().requires_grad_(True)
    splat_render_torch(g, rig, colors=ct).rgb.sum().backward()
    b.rgb.sum().backward()
    assert torch.allclose(ct.grad, colors.grad.cpu(), atol=0.05, rtol=0.05)
