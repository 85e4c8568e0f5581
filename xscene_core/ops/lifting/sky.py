"""The sky of a lifted scene: a dome of Gaussians far around it, coloured from the view pixels that see no
geometry.

The surface Gaussians stop where the occupancy stops, so a novel view showed a black void above the
horizon and beyond the grid. Street-scene 3DGS methods model the sky apart from the surfaces (Street
Gaussians: a cube map over view directions); here it is a dome of flat Gaussians far around the scene
(sky_radius: SKY_RADIUS, or more for a large world), so the exported PLY and any splat viewer show it too;
render_gaussians draws it behind the surfaces, in colour only. The dome is a grid of cells in azimuth x
elevation (SKY_CELL_DEG wide, from SKY_LOWEST_DEG below the horizon, where the views show the far ground
beyond the grid, up to the zenith). A cell's colour is the mean of the view pixels whose ray points into it
and whose render hit nothing (semantic free); at that distance a ray's direction is all that matters, so
the camera positions are ignored. Cells no view saw take the nearest seen cell of their azimuth column
(above the cameras' field of view: the highest one seen), and columns no view saw the nearest seen column.
The dome's Gaussians carry the label free, so semantic renders still say "nothing" there.
"""

from __future__ import annotations

import functools
import math
from typing import Sequence

import numpy as np
import torch

from ... import semantics
from ...types.gaussians import GaussianScene
from ...types.images import MultiViewImages
from ..geometry import matrix_to_quaternion
from ..rasterize import BOX_SIGMAS

SKY_RADIUS = 500.0  # metres from the scene centre, at least: far beyond a world of a few chunks
SKY_REACH = 3.0  # and at least this many times the scene's reach, so cameras in and above it stay far inside
SKY_CELL_DEG = 2.0
SKY_LOWEST_DEG = -12.0
SKY_OVERLAP = 1.15  # cells are drawn this much larger than their spacing, so no gap shows between them
THIN = 0.01  # the dome's thickness, relative to a cell's size


def sky_radius(reach: float) -> float:
    """The dome's radius in metres for a scene reaching `reach` metres from its centre (its farthest point)."""
    return max(SKY_RADIUS, SKY_REACH * float(reach))


def sky_grid_shape() -> tuple[int, int]:
    """(rows, columns) of the dome: elevation cells from SKY_LOWEST_DEG to 90 degrees, azimuth cells."""
    return int(round((90.0 - SKY_LOWEST_DEG) / SKY_CELL_DEG)), int(round(360.0 / SKY_CELL_DEG))


def sky_cells(directions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) int64 [M] of the dome cell each unit direction float [M, 3] (world frame) points into;
    row -1 for directions below the dome."""
    rows, cols = sky_grid_shape()
    d = np.asarray(directions, dtype=np.float64)
    el = np.degrees(np.arcsin(np.clip(d[:, 2], -1.0, 1.0)))
    az = np.degrees(np.arctan2(d[:, 1], d[:, 0])) % 360.0
    row = np.floor((el - SKY_LOWEST_DEG) / SKY_CELL_DEG).astype(np.int64)
    row = np.where(el < SKY_LOWEST_DEG, -1, np.minimum(row, rows - 1))
    return row, np.minimum(np.floor(az / SKY_CELL_DEG).astype(np.int64), cols - 1)


def sky_sums(images: MultiViewImages, semantic: np.ndarray, T_world_rig: np.ndarray | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
    """(colour sums float64 [rows, cols, 3] in [0, 1], pixel counts int64 [rows, cols]) of the pixels of
    `images` (uint8 [V, H, W, 3]) whose render `semantic` (uint8 [V, H, W]) hit nothing, by the dome cell
    of their ray. T_world_rig float64 [4, 4]: where the rig's world frame is in the scene (identity: the
    rig's own world frame). Pixel (i, j) is the ray through (u, v) = (j, i), as in ops.rasterize."""
    rows, cols = sky_grid_shape()
    sums, counts = np.zeros((rows, cols, 3)), np.zeros((rows, cols), np.int64)
    T = np.eye(4) if T_world_rig is None else np.asarray(T_world_rig, dtype=np.float64)
    rig = images.rig
    if semantic.shape != images.images.shape[:3]:
        raise ValueError(f"sky_sums: semantic {semantic.shape} does not match the images {images.images.shape[:3]}")
    for v, cam in enumerate(rig.cameras):
        i, j = np.nonzero(semantic[v] == semantics.FREE)
        if not len(i):
            continue
        R = (T @ rig.T_world_cam(v))[:3, :3] @ np.linalg.inv(cam.K)
        # element by element, not a BLAS product: a ray on a cell border must fall the same way every time
        rays = j[:, None] * R[:, 0] + i[:, None] * R[:, 1] + R[:, 2]
        rays /= np.linalg.norm(rays, axis=1, keepdims=True)
        row, col = sky_cells(rays)
        keep = row >= 0
        flat = row[keep] * cols + col[keep]
        rgb = images.images[v, i[keep], j[keep]].astype(np.float64) / 255.0
        for c in range(3):
            sums[..., c] += np.bincount(flat, rgb[:, c], rows * cols).reshape(rows, cols)
        counts += np.bincount(flat, minlength=rows * cols).reshape(rows, cols)
    return sums, counts


def fill_sky(sums: np.ndarray, counts: np.ndarray) -> np.ndarray | None:
    """Cell colours float64 [rows, cols, 3]: the mean where seen, else the nearest seen cell of the column,
    else of the nearest column with any (azimuth wraps round); None when no cell was seen."""
    seen = counts > 0
    if not seen.any():
        return None
    rows, cols = counts.shape
    mean = np.where(seen[..., None], sums / np.maximum(counts, 1)[..., None], 0.0)
    out = mean.copy()
    has = seen.any(0)
    r = np.arange(rows)
    for c in np.nonzero(has)[0]:
        got = np.nonzero(seen[:, c])[0]
        out[:, c] = mean[got[np.abs(r[:, None] - got[None, :]).argmin(1)], c]
    with_sky = np.nonzero(has)[0]
    for c in np.nonzero(~has)[0]:
        gap = np.abs(with_sky - c)
        out[:, c] = out[:, with_sky[np.minimum(gap, cols - gap).argmin()]]
    return out


@functools.lru_cache(maxsize=4)
def _dome_cells(rows: int, cols: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(radial unit directions float64 [N, 3], quaternions (w, x, y, z) float64 [N, 4] of the axes (along
    azimuth, along elevation, radial), cos of each cell's elevation nearest the horizon [N]) of the cells of
    a rows x cols dome, row-major. The same for every dome of that grid, so built once (read-only)."""
    step = math.radians(SKY_CELL_DEG)
    el = np.radians(SKY_LOWEST_DEG) + (np.arange(rows) + 0.5) * step
    az = (np.arange(cols) + 0.5) * step
    E, A = np.meshgrid(el, az, indexing="ij")
    E, A = E.ravel(), A.ravel()
    ce, se, ca, sa = np.cos(E), np.sin(E), np.cos(A), np.sin(A)
    radial = np.stack([ce * ca, ce * sa, se], 1)
    along_az = np.stack([-sa, ca, np.zeros_like(A)], 1)
    along_el = np.stack([-se * ca, -se * sa, ce], 1)
    R = np.stack([along_az, along_el, radial], 2)  # columns: the Gaussian's axes; along_az x along_el = radial
    quats = np.stack([matrix_to_quaternion(m) for m in R])
    # a cell's width in azimuth is widest at its edge nearer the horizon; keep it covered there
    widest = np.cos(np.maximum(np.abs(E) - step / 2, 0.0))
    for a in (radial, quats, widest):
        a.setflags(write=False)
    return radial, quats, widest


def sky_dome(colours: np.ndarray, centre: Sequence[float] = (0.0, 0.0, 0.0),
             radius: float = SKY_RADIUS) -> GaussianScene:
    """Flat Gaussians, one per cell of `colours` (float [rows, cols, 3] in [0, 1], rows by elevation from
    SKY_LOWEST_DEG, columns by azimuth from +x), on the sphere of `radius` metres around `centre` (world
    metres), facing it; label free, opaque."""
    rows, cols = colours.shape[:2]
    radial, quats, widest = _dome_cells(rows, cols)
    step = math.radians(SKY_CELL_DEG)
    half = SKY_OVERLAP * radius * step / 2 / BOX_SIGMAS
    n = len(radial)
    scales = np.stack([np.maximum(half * widest, half * 0.05), np.full(n, half), np.full(n, half * THIN)], 1)
    return GaussianScene(
        means=torch.tensor(np.asarray(centre, np.float64) + radius * radial, dtype=torch.float32),
        scales=torch.tensor(scales, dtype=torch.float32), quats=torch.tensor(quats, dtype=torch.float32),
        opacities=torch.ones(n), colors=torch.tensor(colours.reshape(n, 3), dtype=torch.float32).clamp(0, 1),
        labels=torch.full((n,), semantics.FREE, dtype=torch.uint8))


def lift_sky(views: Sequence[tuple[MultiViewImages, np.ndarray, np.ndarray]], centre: Sequence[float],
             reach: float = 0.0) -> GaussianScene | None:
    """The sky dome of a scene from its views: (images, their render's semantic uint8 [V, H, W],
    T_world_rig float64 [4, 4]) per chunk, around `centre` with the radius sky_radius(reach) (reach: metres
    from the centre to the scene's farthest point); None when no view shows any sky."""
    rows, cols = sky_grid_shape()
    sums, counts = np.zeros((rows, cols, 3)), np.zeros((rows, cols), np.int64)
    for images, semantic, T in views:
        s, c = sky_sums(images, semantic, T)
        sums += s
        counts += c
    colours = fill_sky(sums, counts)
    return None if colours is None else sky_dome(colours, centre, sky_radius(reach))
