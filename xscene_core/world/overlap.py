"""What a new chunk of a WorldMap inherits from the chunks already there.

Chunks are axis-aligned squares of the occupancy grid's extent, centred on a grid of `stride` metres
(types.world.WorldMap); with a stride below the extent neighbours overlap. A neighbour at index offset
(di, dj) sees the new chunk's cell (a, b) at its own cell (a + di s, b + dj s), s = stride / cell, for voxels
(cell = voxel size) and for latent cells of the triplane's xy plane (cell = the plane's cell size) alike.
The xz plane aggregates a chunk over y, so its rows are inherited only from a neighbour covering the same y
range (dj = 0); the yz plane likewise only from di = 0. Where several chunks cover a cell the one added
first to the world wins, the rule `stitch_occupancy` follows too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..types.occupancy import GridSpec, Triplane
from ..types.world import ChunkIndex, WorldMap


def voxel_shift(stride: float, cell: float) -> int:
    """stride / cell as an integer; ValueError when the stride is not a whole number of cells."""
    s = stride / cell
    if abs(s - round(s)) > 1e-6:
        raise ValueError(f"the world stride {stride:g} m is not a whole number of {cell:g} m cells")
    return int(round(s))


def _shifted(dst: np.ndarray | torch.Tensor, src, da: int, db: int | None, taken: np.ndarray) -> np.ndarray:
    """Copy src[..., a + da, b + db] into dst[..., a, b] where it exists and dst is not taken yet (axes -2, -1
    for 2-axis shifts, or axis -2 only when db is None). Returns the cells newly taken (bool like `taken`)."""
    n0 = taken.shape[0]
    a0, a1 = max(0, -da), min(n0, n0 - da)
    if a0 >= a1:
        return np.zeros_like(taken)
    if db is None:
        new = np.zeros_like(taken)
        new[a0:a1] = ~taken[a0:a1]
        rows = np.nonzero(new[:, 0] if new.ndim == 2 else new)[0]
        dst[..., rows, :] = src[..., rows + da, :]
        return new
    n1 = taken.shape[1]
    b0, b1 = max(0, -db), min(n1, n1 - db)
    if b0 >= b1:
        return np.zeros_like(taken)
    new = np.zeros_like(taken)
    new[a0:a1, b0:b1] = ~taken[a0:a1, b0:b1]
    ia, ib = np.nonzero(new)
    dst[..., ia, ib] = src[..., ia + da, ib + db]
    return new


@dataclass
class ChunkOverlap:
    """What a new chunk inherits. known_labels: uint8 [X, Y, Z] (the neighbours' voxels, FREE elsewhere),
    known_voxels: bool [X, Y] (BEV columns covered by a neighbour); triplane: a Triplane holding the
    neighbours' latent cells (zeros elsewhere) and mask_xy bool [X', Y'], mask_xz bool [X', Z'],
    mask_yz bool [Y', Z'] the inherited cells; sources: the neighbours used, by index."""

    known_labels: np.ndarray
    known_voxels: np.ndarray
    triplane: Triplane
    mask_xy: np.ndarray
    mask_xz: np.ndarray
    mask_yz: np.ndarray
    sources: tuple[ChunkIndex, ...]

    @property
    def empty(self) -> bool:
        return not self.sources


def chunk_overlap(world: WorldMap, index: ChunkIndex, grid: GridSpec, plane_shape: tuple[int, int, int],
                  channels: int, encode=None) -> ChunkOverlap:
    """The overlap of the cell `index` (not yet in the world) with the world's chunks. Chunks without a
    triplane are encoded with `encode(occupancy) -> Triplane` (and keep it); None skips their latents."""
    from ..semantics import FREE

    X, Y, Z = grid.shape
    Xp, Yp, Zp = plane_shape
    vs = voxel_shift(world.stride, grid.voxel_size)
    ratio = X // Xp
    labels = np.full((Z, X, Y), FREE, np.uint8)  # [Z, X, Y] so that the shifted axes are the last two
    taken_v = np.zeros((X, Y), bool)
    planes = [torch.zeros(channels, Xp, Yp), torch.zeros(channels, Xp, Zp), torch.zeros(channels, Yp, Zp)]
    taken_xy, taken_xz, taken_yz = np.zeros((Xp, Yp), bool), np.zeros((Xp, Zp), bool), np.zeros((Yp, Zp), bool)
    sources = []
    for other, chunk in world.chunks.items():
        di, dj = other.i - index.i, other.j - index.j
        # neighbour cell (a + da, b + db) = new cell (a, b); the neighbour sits at +di strides, so its own
        # coordinates of a new-chunk point are shifted by -di strides
        da, db = -di * vs, -dj * vs
        if abs(da) >= X or abs(db) >= Y or (di, dj) == (0, 0):
            continue
        if chunk.occupancy is None:
            continue
        new = _shifted(labels, chunk.occupancy.labels.transpose(2, 0, 1), da, db, taken_v)
        if not new.any():
            continue
        taken_v |= new
        sources.append(other)
        tri = chunk.triplane
        if tri is None and encode is not None:
            tri = chunk.triplane = encode(chunk.occupancy)
        if tri is None:
            continue
        if tri.resolution != tuple(plane_shape):
            raise ValueError(f"chunk {other}: triplane {tri.resolution} does not match the model's {tuple(plane_shape)}")
        la, lb = da // ratio, db // ratio
        taken_xy |= _shifted(planes[0], tri.xy, la, lb, taken_xy)
        if dj == 0:
            taken_xz |= _shifted(planes[1], tri.xz, la, None, taken_xz)
        if di == 0:
            taken_yz |= _shifted(planes[2], tri.yz, lb, None, taken_yz)
    return ChunkOverlap(np.ascontiguousarray(labels.transpose(1, 2, 0)), taken_v, Triplane(*planes), taken_xy,
                        taken_xz, taken_yz, tuple(sources))
