"""Occupancy -> GaussianScene: one Gaussian per voxel that can be seen.

A voxel can be seen when it is occupied and at least one of its six face neighbours is free or lies
outside the grid -- except below the grid: the Occ3D grid's floor (z = -1 m) is under the road, so the
ground continues there and nothing is ever seen from beneath it (counting those faces would double the
Gaussians of a flat chunk for no visible pixel).
"""

from __future__ import annotations

import numpy as np
import torch

from .. import semantics
from ..types.gaussians import GaussianScene
from ..types.occupancy import Occupancy
from .geometry import matrix_to_quaternion
from .rasterize import BOX_SIGMAS

VOXEL_OPACITY = 1.0  # voxels are solid


def visible_voxels(labels: np.ndarray) -> np.ndarray:
    """bool [X, Y, Z]: occupied voxels of `labels` (uint8 [X, Y, Z] Occ3D ids) with at least one free or
    out-of-grid face neighbour (out-of-grid below z = 0 counts as solid, see the module docstring)."""
    occ = np.asarray(labels) != semantics.FREE
    # Pad free on all sides except the bottom, which is padded solid.
    pad = np.pad(occ, 1, constant_values=False)
    pad[:, :, 0] = pad[:, :, 1]
    inner = (slice(1, -1),) * 3
    exposed = np.zeros_like(occ)
    for axis in range(3):
        for shift in (-1, 1):
            exposed |= ~np.roll(pad, shift, axis=axis)[inner]
    return occ & exposed


def occupancy_to_gaussians(occupancy: Occupancy, T_world_grid: np.ndarray | None = None,
                           device: torch.device | str = "cpu") -> GaussianScene:
    """One Gaussian per visible voxel.

    occupancy: labels uint8 [X, Y, Z] on its GridSpec; T_world_grid: float64 [4, 4] pose of the grid
    (chunk) frame in the world (identity by default). Returns a GaussianScene: means float32 [N, 3]
    metres (voxel centres in the world frame), scales float32 [N, 3] = voxel_size / (2 * BOX_SIGMAS)
    (so the renderers' box is exactly the voxel), quats float32 [N, 4] (the grid's rotation), opacities
    float32 [N] = VOXEL_OPACITY, colors float32 [N, 3] = semantics.COLORS / 255, labels uint8 [N].
    Voxels are ordered by their flat index labels[x, y, z] (x slowest), so renders are deterministic.
    """
    T = np.eye(4) if T_world_grid is None else np.asarray(T_world_grid, dtype=np.float64)
    grid = occupancy.grid
    idx = np.argwhere(visible_voxels(occupancy.labels))  # [N, 3], C order = flat index order
    labels = occupancy.labels[idx[:, 0], idx[:, 1], idx[:, 2]]
    centres = np.asarray(grid.lower) + (idx + 0.5) * grid.voxel_size
    means = centres @ T[:3, :3].T + T[:3, 3]
    n = len(idx)
    quat = matrix_to_quaternion(T[:3, :3])
    return GaussianScene(
        means=torch.tensor(means, dtype=torch.float32, device=device),
        scales=torch.full((n, 3), grid.voxel_size / (2 * BOX_SIGMAS), dtype=torch.float32, device=device),
        quats=torch.tensor(np.tile(quat, (n, 1)), dtype=torch.float32, device=device).reshape(n, 4),
        opacities=torch.full((n,), VOXEL_OPACITY, dtype=torch.float32, device=device),
        colors=torch.tensor(semantics.COLORS[labels] / 255.0, dtype=torch.float32, device=device).reshape(n, 3),
        labels=torch.tensor(labels, dtype=torch.uint8, device=device),
    )
