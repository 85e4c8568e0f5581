"""All chunks of a WorldMap as one occupancy in the world frame."""

from __future__ import annotations

import numpy as np

from ..semantics import FREE
from ..types.occupancy import GridSpec, Occupancy
from ..types.world import WorldMap
from .overlap import voxel_shift


def stitch_occupancy(world: WorldMap) -> Occupancy:
    """One Occupancy covering every chunk (world frame: x east, y north; the grid's z range). Where chunks
    overlap, the chunk added to the world first keeps its voxels (the neighbour a later chunk was
    outpainted from). Columns no chunk covers are FREE. Needs axis-aligned chunks on the world grid of one
    GridSpec; raises ValueError otherwise."""
    chunks = [(k, c) for k, c in world.chunks.items() if c.occupancy is not None]
    if not chunks:
        raise ValueError("stitch_occupancy: the world has no chunk with an occupancy")
    grid = chunks[0][1].occupancy.grid
    for k, c in chunks:
        if c.occupancy.grid != grid:
            raise ValueError(f"stitch_occupancy: chunk {k} has another grid ({c.occupancy.grid} != {grid})")
        if not np.allclose(c.T_world_chunk[:3, :3], np.eye(3)):
            raise ValueError(f"stitch_occupancy: chunk {k} is rotated; only axis-aligned world grids stitch")
    s = voxel_shift(world.stride, grid.voxel_size)
    X, Y, Z = grid.shape
    i0 = min(k.i for k, _ in chunks)
    j0 = min(k.j for k, _ in chunks)
    W = (max(k.i for k, _ in chunks) - i0) * s + X
    H = (max(k.j for k, _ in chunks) - j0) * s + Y
    labels = np.full((W, H, Z), FREE, np.uint8)
    taken = np.zeros((W, H), bool)
    for k, c in chunks:
        a, b = (k.i - i0) * s, (k.j - j0) * s
        free = ~taken[a:a + X, b:b + Y]
        labels[a:a + X, b:b + Y][free] = c.occupancy.labels[free]
        taken[a:a + X, b:b + Y] = True
    lower = (i0 * world.stride + grid.lower[0], j0 * world.stride + grid.lower[1], grid.lower[2])
    return Occupancy(labels, GridSpec((W, H, Z), grid.voxel_size, lower))
