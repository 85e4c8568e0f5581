"""Occupancy x views -> surface Gaussians, for one chunk and for a world of overlapping chunks.

One chunk: its visible face patches (surfels), coloured from its views (colour.colour_sums), unseen
patches filled from their neighbours (colour.fill_unseen).

A world: every world voxel belongs to the earliest chunk (in the order given) whose grid holds its
centre, so the overlap of neighbours gives one Gaussian per surface patch, never two. A patch is kept
when its voxel is owned by the chunk and the world voxel across its face (read in that voxel's owner)
is free, so the faces where a chunk's grid ends against a neighbour disappear. Each chunk's views are
gathered onto that chunk's own patches (the geometry they show) and the sums are pooled by the world
patch they name, so a patch in an overlap is coloured from the views of every chunk that sees it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from ... import semantics
from ...types.gaussians import GaussianScene
from ...types.images import MultiViewImages
from ...types.occupancy import GridSpec, Occupancy
from .colour import ColourSums, colour_sums, fill_unseen
from .surfels import SurfacePatches, exposed_faces, patches_to_gaussians, solid, subdivide, surface_patches

DEFAULT_PATCHES_PER_EDGE = 1  # k: one patch per voxel face (see GaussianStage for the measurement)


@dataclass
class LiftedSurface:
    """Surface Gaussians with where they came from.

    gaussians: the GaussianScene (frame of T_world_grid given to the lifting); patches: the face patches,
    one per Gaussian, in the grid frame of `owner`; owner: int64 [N] index of the grid (chunk) each patch
    belongs to (all 0 for one chunk); sums: the view pixels gathered per Gaussian (weight 0: colour filled).
    """

    gaussians: GaussianScene
    patches: SurfacePatches
    owner: np.ndarray
    sums: ColourSums


@dataclass(frozen=True)
class PlacedGrid:
    """An occupancy placed in the world: labels on `occupancy.grid`, T_world_grid float64 [4, 4]."""

    occupancy: Occupancy
    T_world_grid: np.ndarray

    def to_grid(self, points_world: np.ndarray) -> np.ndarray:
        """float64 [..., 3] world points in this grid's frame."""
        T = self.T_world_grid
        return (np.asarray(points_world, dtype=np.float64) - T[:3, 3]) @ T[:3, :3]


def _colors_from_sums(patches: SurfacePatches, owner: np.ndarray, sums: ColourSums) -> torch.Tensor:
    """Mean colours, with unseen patches filled (patches of different owners never fill each other)."""
    cells = patches.fine_cells().copy()
    cells[:, 0] += owner * (patches.grid.shape[0] * patches.k + 4)
    filled = fill_unseen(cells, patches.face, patches.labels, sums.colors().numpy(), sums.seen.numpy())
    return torch.from_numpy(filled)


def lift_chunk(occupancy: Occupancy, images: MultiViewImages, k: int = DEFAULT_PATCHES_PER_EDGE,
               T_world_grid: np.ndarray | None = None, on_view: Callable[[int, int], None] | None = None) -> LiftedSurface:
    """Surface Gaussians of one occupancy coloured from its views.

    occupancy: labels uint8 [X, Y, Z] in the frame of images.rig's world (the chunk frame); images: uint8
    [V, H, W, 3]; k: patches per face edge; T_world_grid: where to place the result (identity: the chunk
    frame). on_view(done, total) is called after each view.
    """
    patches = surface_patches(occupancy, k)
    local = patches_to_gaussians(patches)
    sums = colour_sums(local, images, on_view)
    owner = np.zeros(len(patches), dtype=np.int64)
    colors = _colors_from_sums(patches, owner, sums)
    return LiftedSurface(patches_to_gaussians(patches, colors, T_world_grid), patches, owner, sums)


# World assembly -------------------------------------------------------------------------------------------

def owners(points_world: np.ndarray, grids: Sequence[PlacedGrid]) -> np.ndarray:
    """int64 [...]: index of the earliest grid holding each world point (float [..., 3]), -1 for none."""
    pts = np.asarray(points_world, dtype=np.float64)
    out = np.full(pts.shape[:-1], -1, dtype=np.int64)
    for gi, g in enumerate(grids):
        free = out < 0
        if not free.any():
            break
        p = g.to_grid(pts[free])
        lo, hi = np.asarray(g.occupancy.grid.lower), np.asarray(g.occupancy.grid.upper)
        inside = np.all((p >= lo) & (p < hi), axis=-1)
        sub = out[free]
        sub[inside] = gi
        out[free] = sub
    return out


def _world_solid(points_world: np.ndarray, grids: Sequence[PlacedGrid], solids: Sequence[np.ndarray]):
    """(solid bool [...], owner int64 [...]) of the world at points: the owner's solid() voxel there, open
    where no grid holds the point."""
    owner = owners(points_world, grids)
    out = np.zeros(owner.shape, dtype=bool)
    for gi, g in enumerate(grids):
        m = owner == gi
        if m.any():
            idx, _ = g.occupancy.grid.index_of(g.to_grid(points_world[m]))
            out[m] = solids[gi][idx[:, 0], idx[:, 1], idx[:, 2]]
    return out, owner


def world_patches(grids: Sequence[PlacedGrid], ci: int, k: int, solids: Sequence[np.ndarray] | None = None) -> SurfacePatches:
    """The patches of grid `ci` in the assembled world: faces of the voxels it owns whose world neighbour
    is open air (below the world's floor counts solid, as for one grid). solids: solid() of every grid
    (computed when None)."""
    if solids is None:
        solids = [solid(g.occupancy.labels) for g in grids]
    g = grids[ci]
    grid = g.occupancy.grid
    X, Y, Z = grid.shape
    # Centres of the grid's voxels and a one-voxel border, in the world.
    ax = [grid.lower[a] + (np.arange(-1, n + 1) + 0.5) * grid.voxel_size for a, n in enumerate(grid.shape)]
    c = np.stack(np.meshgrid(*ax, indexing="ij"), -1)
    T = g.T_world_grid
    pw = c @ T[:3, :3].T + T[:3, 3]
    pad, owner = _world_solid(pw, grids, solids)
    pad[:, :, 0] = pad[:, :, 1]
    own = (owner[1:-1, 1:-1, 1:-1] == ci) & (g.occupancy.labels != semantics.FREE)
    vox, face = exposed_faces(pad, own)
    return subdivide(vox, face, g.occupancy.labels[vox[:, 0], vox[:, 1], vox[:, 2]], grid, k)


def _patch_keys(patches: SurfacePatches, T_world_grid: np.ndarray, grids: Sequence[PlacedGrid]) -> np.ndarray:
    """int64 [N]: the world patch each patch names -- (owner, fine cell in the owner's grid, face id in the
    owner's frame) as one integer, -1 where no grid owns it. Every grid must share one GridSpec."""
    grid, k = patches.grid, patches.k
    n_world = patches.normals() @ T_world_grid[:3, :3].T
    # A point just inside the patch's fine cell, in the world.
    inner = patches.centers() - patches.normals() * grid.voxel_size / (4 * k)
    pw = inner @ T_world_grid[:3, :3].T + T_world_grid[:3, 3]
    vox_centre = (np.asarray(grid.lower) + (patches.voxel + 0.5) * grid.voxel_size) @ T_world_grid[:3, :3].T + T_world_grid[:3, 3]
    owner = owners(vox_centre, grids)
    keys = np.full(len(patches), -1, dtype=np.int64)
    fx, fy, fz = (n * k for n in grid.shape)
    for gi, g in enumerate(grids):
        m = owner == gi
        if not m.any():
            continue
        p = g.to_grid(pw[m])
        fine = np.floor((p - np.asarray(grid.lower)) / (grid.voxel_size / k)).astype(np.int64)
        fine = np.clip(fine, 0, [fx - 1, fy - 1, fz - 1])
        n = n_world[m] @ g.T_world_grid[:3, :3]  # normals in the owner's frame
        axis = np.abs(n).argmax(1)
        face = 2 * axis + (n[np.arange(len(n)), axis] > 0)
        keys[m] = (((gi * 6 + face) * fx + fine[:, 0]) * fy + fine[:, 1]) * fz + fine[:, 2]
    return keys


def lift_world(grids: Sequence[PlacedGrid], images: Sequence[MultiViewImages], k: int = DEFAULT_PATCHES_PER_EDGE,
               on_chunk: Callable[[int, int], None] | None = None,
               on_view: Callable[[int, int], None] | None = None) -> LiftedSurface:
    """One set of surface Gaussians (world frame) for chunks placed in a world.

    grids: the chunks' occupancies and poses, in ownership order (earlier wins); images: each chunk's
    views (rig in the chunk frame), same order. on_chunk(done, total) after each chunk; on_view as in
    lift_chunk. All grids must share one GridSpec.
    """
    if len(grids) != len(images):
        raise ValueError(f"lift_world: {len(grids)} grids but {len(images)} image sets")
    specs = {g.occupancy.grid for g in grids}
    if len(specs) > 1:
        raise ValueError(f"lift_world: every chunk must share one voxel grid, got {len(specs)} different ones")
    # 1. Gather each chunk's views onto its own patches and key the sums by world patch.
    keys, rgb_sum, weight = [], [], []
    for ci, (g, im) in enumerate(zip(grids, images)):
        own = surface_patches(g.occupancy, k)
        s = colour_sums(patches_to_gaussians(own), im, on_view)
        keys.append(_patch_keys(own, g.T_world_grid, grids))
        rgb_sum.append(s.rgb_sum)
        weight.append(s.weight)
        if on_chunk is not None:
            on_chunk(ci + 1, len(grids))
    keys_all = np.concatenate(keys)
    valid = keys_all >= 0
    uniq, inv = np.unique(keys_all[valid], return_inverse=True)
    pooled = ColourSums.zeros(len(uniq))
    pooled.rgb_sum.index_add_(0, torch.from_numpy(inv), torch.cat(rgb_sum)[torch.from_numpy(valid)])
    pooled.weight.index_add_(0, torch.from_numpy(inv), torch.cat(weight)[torch.from_numpy(valid)])
    # 2. The world's patches, chunk by chunk, each taking the pooled sums of its key.
    parts, owner, sums = [], [], []
    solids = [solid(g.occupancy.labels) for g in grids]
    for ci, g in enumerate(grids):
        wp = world_patches(grids, ci, k, solids)
        kk = _patch_keys(wp, g.T_world_grid, grids)
        pos = np.clip(np.searchsorted(uniq, kk), 0, max(len(uniq) - 1, 0))
        hit = (len(uniq) > 0) & (uniq[pos] == kk) if len(uniq) else np.zeros(len(kk), dtype=bool)
        s = ColourSums.zeros(len(wp))
        h = torch.from_numpy(hit)
        s.rgb_sum[h] = pooled.rgb_sum[torch.from_numpy(pos[hit])]
        s.weight[h] = pooled.weight[torch.from_numpy(pos[hit])]
        parts.append(wp)
        owner.append(np.full(len(wp), ci, dtype=np.int64))
        sums.append(s)
    patches = _concat(parts, grids[0].occupancy.grid if grids else GridSpec(), k)
    owner_all = np.concatenate(owner) if owner else np.zeros(0, np.int64)
    sums_all = ColourSums(torch.cat([s.rgb_sum for s in sums]) if sums else torch.zeros(0, 3, dtype=torch.float64),
                          torch.cat([s.weight for s in sums]) if sums else torch.zeros(0, dtype=torch.float64))
    # 3. Colours (fill within each owner), then Gaussians placed by each owner's pose.
    colors = _colors_from_sums(patches, owner_all, sums_all)
    scenes = []
    for ci, (g, wp) in enumerate(zip(grids, parts)):
        m = torch.from_numpy(owner_all == ci)
        scenes.append(patches_to_gaussians(wp, colors[m], g.T_world_grid))
    return LiftedSurface(concat_scenes(scenes), patches, owner_all, sums_all)


def _concat(parts: Sequence[SurfacePatches], grid: GridSpec, k: int) -> SurfacePatches:
    if not parts:
        return SurfacePatches(np.zeros((0, 3), np.int64), np.zeros(0, np.int64), np.zeros((0, 2), np.int64),
                              np.zeros(0, np.uint8), grid, k)
    return SurfacePatches(np.concatenate([p.voxel for p in parts]), np.concatenate([p.face for p in parts]),
                          np.concatenate([p.sub for p in parts]), np.concatenate([p.labels for p in parts]), grid, k)


def concat_scenes(scenes: Sequence[GaussianScene]) -> GaussianScene:
    """One GaussianScene of several, in order."""
    if not scenes:
        z = torch.zeros(0, 3)
        return GaussianScene(z, z.clone(), torch.zeros(0, 4), torch.zeros(0), z.clone(), torch.zeros(0, dtype=torch.uint8))
    return GaussianScene(*(torch.cat([getattr(s, f) for s in scenes]) for f in GaussianScene.FIELDS))
