"""Occupancy -> Gaussians: only visible voxels, placed at voxel centres with class colours."""

import numpy as np
import pytest
import torch

from xscene_core import semantics
from xscene_core.ops.geometry import pose_matrix
from xscene_core.ops.rasterize import BOX_SIGMAS
from xscene_core.ops.voxel_gaussians import occupancy_to_gaussians, visible_voxels
from xscene_core.types import GridSpec, Occupancy


def cube_occupancy(z0: int) -> Occupancy:
    grid = GridSpec((8, 8, 8), 0.5, (-2.0, -2.0, 0.0))
    labels = np.full(grid.shape, semantics.FREE, np.uint8)
    labels[2:6, 2:6, z0:z0 + 4] = semantics.ID["manmade"]
    return Occupancy(labels, grid)


def test_only_voxels_with_a_free_neighbour_are_visible():
    floating = visible_voxels(cube_occupancy(2).labels)
    assert floating.sum() == 4 ** 3 - 2 ** 3  # the 2x2x2 core is hidden
    # On the grid floor the ground continues below: the bottom layer's inner voxels stay hidden too.
    grounded = visible_voxels(cube_occupancy(0).labels)
    assert grounded.sum() == 4 ** 3 - 2 ** 3 - 2 * 2
    # Out-of-grid sides and top count as free: of a full 3x3x3 grid only the centre and the voxel
    # below it (on the solid floor) are hidden.
    full = np.full((3, 3, 3), semantics.ID["terrain"], np.uint8)
    assert visible_voxels(full).sum() == 27 - 2 and not visible_voxels(full)[1, 1, :2].any()


def test_gaussians_sit_at_voxel_centres_with_class_colours_and_voxel_scale():
    occ = cube_occupancy(2)
    g = occupancy_to_gaussians(occ)
    idx = np.argwhere(visible_voxels(occ.labels))
    want = np.asarray(occ.grid.lower) + (idx + 0.5) * occ.grid.voxel_size
    assert torch.allclose(g.means, torch.tensor(want, dtype=torch.float32))
    assert torch.allclose(g.scales * 2 * BOX_SIGMAS, torch.full_like(g.scales, 0.5))
    assert (g.labels == semantics.ID["manmade"]).all() and (g.opacities == 1).all()
    assert torch.allclose(g.colors[0], torch.tensor(semantics.COLORS[semantics.ID["manmade"]] / 255.0, dtype=torch.float32))
    assert torch.allclose(g.quats, torch.tensor([[1.0, 0, 0, 0]]).expand_as(g.quats))


def test_grid_pose_moves_and_turns_the_gaussians():
    occ = cube_occupancy(2)
    T = pose_matrix(100.0, 50.0, np.pi / 2)
    a, b = occupancy_to_gaussians(occ), occupancy_to_gaussians(occ, T)
    moved = a.means.double().numpy() @ T[:3, :3].T + T[:3, 3]
    assert np.allclose(b.means.numpy(), moved, atol=1e-4)
    assert torch.allclose(b.quats[0], torch.tensor([np.cos(np.pi / 4), 0, 0, np.sin(np.pi / 4)], dtype=torch.float32), atol=1e-6)


def test_empty_occupancy_gives_no_gaussians():
    g = occupancy_to_gaussians(Occupancy(np.full((4, 4, 4), semantics.FREE, np.uint8), GridSpec((4, 4, 4))))
    assert len(g) == 0


@pytest.mark.parametrize("label", [semantics.ID["car"], semantics.ID["vegetation"]])
def test_labels_are_carried(label):
    occ = cube_occupancy(2)
    occ.labels[occ.labels != semantics.FREE] = label
    assert (occupancy_to_gaussians(occ).labels == label).all()
