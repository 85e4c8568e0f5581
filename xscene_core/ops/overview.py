"""Overview pictures of one occupancy or a world of chunks: a top-down BEV image and a raised oblique
view, both in the Occ3D class colours (semantics.COLORS) with simple shading. Used in reports, the editor
and the 2D distribution metric.

A scene is an Occupancy (placed at the world origin), a Chunk, a sequence of Chunks or a WorldMap;
chunks are placed by their T_world_chunk (where chunks overlap, the later one wins).
"""

from __future__ import annotations

import math
from typing import Sequence, Union

import numpy as np
import torch

from .. import semantics
from ..types.cameras import Camera, CameraRig
from ..types.occupancy import Occupancy
from ..types.world import Chunk, WorldMap
from .geometry import invert_rigid
from .rasterize import BOX_SIGMAS, ViewParams, rasterize_boxes, quats_to_matrices
from .voxel_gaussians import occupancy_to_gaussians

Scene = Union[Occupancy, Chunk, Sequence[Chunk], WorldMap]

BEV_PIXELS_PER_METRE = 2.5  # one Occ3D voxel = one pixel
HEIGHT_SHADE = 0.45  # how much darker the lowest voxels are drawn than the highest
LIGHT_DIR = np.array([-0.45, 0.35, 0.82]) / np.linalg.norm([-0.45, 0.35, 0.82])  # fixed key light, world frame
BACKGROUND = (24, 26, 30)


def _placed(scene: Scene) -> list[tuple[Occupancy, np.ndarray]]:
    """(occupancy, T_world_grid float64 [4, 4]) pairs of a scene."""
    if isinstance(scene, Occupancy):
        return [(scene, np.eye(4))]
    if isinstance(scene, Chunk):
        scene = [scene]
    elif isinstance(scene, WorldMap):
        scene = [scene.chunks[k] for k in sorted(scene.chunks)]
    out = [(c.occupancy, c.T_world_chunk) for c in scene if c.occupancy is not None]
    if not out:
        raise ValueError("overview: the scene holds no occupancy")
    return out


def _top(occ: Occupancy) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per column: label uint8 [X, Y] of the top-most occupied voxel, its top height float [X, Y]
    (metres) and whether the column holds anything bool [X, Y]."""
    occupied = occ.labels != semantics.FREE
    nz = occ.grid.shape[2]
    k = nz - 1 - np.argmax(occupied[:, :, ::-1], axis=2)
    has = occupied.any(2)
    label = np.take_along_axis(occ.labels, k[..., None], 2)[..., 0]
    top = occ.grid.lower[2] + (k + 1) * occ.grid.voxel_size
    return label, top, has


def bev_image(scene: Scene, pixels_per_metre: float = BEV_PIXELS_PER_METRE) -> np.ndarray:
    """Top-down image uint8 [H, W, 3] of a scene: the top-most voxel of every column in its class colour,
    brighter when higher, with hill shading of the height map. Rows run from +y (top) to -y, columns
    from -x to +x (north up for axis-aligned chunks); empty ground is BACKGROUND."""
    placed = _placed(scene)
    # World extent of all grids.
    corners = []
    for occ, T in placed:
        (x0, y0, _), (x1, y1, _) = occ.grid.lower, occ.grid.upper
        c = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
        corners.append(c @ T[:2, :2].T + T[:2, 3])
    corners = np.concatenate(corners)
    lo, hi = corners.min(0), corners.max(0)
    res = 1.0 / pixels_per_metre
    W = int(math.ceil((hi[0] - lo[0]) / res))
    H = int(math.ceil((hi[1] - lo[1]) / res))
    xs = lo[0] + (np.arange(W) + 0.5) * res
    ys = hi[1] - (np.arange(H) + 0.5) * res
    gx, gy = np.meshgrid(xs, ys)  # [H, W]
    label = np.full((H, W), semantics.FREE, np.uint8)
    height = np.full((H, W), np.nan)
    z_lo, z_hi = np.inf, -np.inf
    for occ, T in placed:
        lab, top, has = _top(occ)
        Ti = invert_rigid(T)
        lx = Ti[0, 0] * gx + Ti[0, 1] * gy + Ti[0, 3]
        ly = Ti[1, 0] * gx + Ti[1, 1] * gy + Ti[1, 3]
        g = occ.grid
        i = np.floor((lx - g.lower[0]) / g.voxel_size).astype(np.int64)
        j = np.floor((ly - g.lower[1]) / g.voxel_size).astype(np.int64)
        inside = (i >= 0) & (i < g.shape[0]) & (j >= 0) & (j < g.shape[1])
        ii, jj = np.clip(i, 0, g.shape[0] - 1), np.clip(j, 0, g.shape[1] - 1)
        ok = inside & has[ii, jj]
        label[ok] = lab[ii, jj][ok]
        height[ok] = top[ii, jj][ok] + T[2, 3]
        z_lo, z_hi = min(z_lo, g.lower[2] + T[2, 3]), max(z_hi, g.upper[2] + T[2, 3])
    filled = ~np.isnan(height)
    h = np.where(filled, height, z_lo)
    # Hill shading: Lambert of the height-map normal under the key light.
    dzdx = np.gradient(h, res, axis=1)
    dzdy = -np.gradient(h, res, axis=0)  # rows run towards -y
    n = np.stack([-dzdx, -dzdy, np.ones_like(h)], -1)
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    lambert = np.clip(n @ LIGHT_DIR, 0, 1) / LIGHT_DIR[2]
    t = np.clip((h - z_lo) / max(z_hi - z_lo, 1e-6), 0, 1)
    shade = ((1 - HEIGHT_SHADE) + HEIGHT_SHADE * t) * (0.55 + 0.45 * np.clip(lambert, 0, 1.3))
    rgb = semantics.COLORS[label].astype(np.float64) * shade[..., None]
    rgb = np.where(filled[..., None], rgb, np.asarray(BACKGROUND, dtype=np.float64))
    return rgb.clip(0, 255).astype(np.uint8)


def oblique_camera(center: np.ndarray, radius: float, image_size: tuple[int, int], elevation_deg: float,
                   azimuth_deg: float, fov_deg: float) -> Camera:
    """A pinhole looking at `center` (float [3], world) from elevation_deg above the horizon and from the
    direction azimuth_deg (0 = from -x looking towards +x, counter-clockwise), far enough back for a
    sphere of `radius` metres to fit the horizontal field of view fov_deg."""
    h, w = image_size
    f = (w / 2) / math.tan(math.radians(fov_deg) / 2)
    dist = radius / math.sin(math.radians(fov_deg) / 2)
    e, a = math.radians(elevation_deg), math.radians(azimuth_deg)
    forward = np.array([math.cos(e) * math.cos(a), math.cos(e) * math.sin(a), -math.sin(e)])
    eye = np.asarray(center, dtype=np.float64) - forward * dist
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    T = np.eye(4)
    T[:3, :3] = np.stack([right, down, forward], 1)  # OpenCV axes as columns in the world frame
    T[:3, 3] = eye
    K = np.array([[f, 0, (w - 1) / 2], [0, f, (h - 1) / 2], [0, 0, 1]])
    return Camera("OBLIQUE", K, T, h, w)


def oblique_view(scene: Scene, image_size: tuple[int, int] = (480, 800), elevation_deg: float = 40.0,
                 azimuth_deg: float = -60.0, fov_deg: float = 50.0) -> np.ndarray:
    """A raised oblique view uint8 [H, W, 3] of a scene (camera from oblique_camera, aimed at the centre
    of all grids): voxels in class colours with Lambert shading of their faces under a fixed key light
    and a light distance haze; the background is a dark gradient."""
    placed = _placed(scene)
    parts = [occupancy_to_gaussians(occ, T) for occ, T in placed]
    means = torch.cat([g.means for g in parts])
    half = torch.cat([g.scales for g in parts]) * BOX_SIGMAS
    quats = torch.cat([g.quats for g in parts])
    labels = torch.cat([g.labels for g in parts]).long()
    identity = bool(((quats[:, 1:].abs() < 1e-7).all() & (quats[:, 0] > 0).all()).item())
    rot = None if identity else quats_to_matrices(quats)
    # Aim at the middle of all grids (at the height of the chunk frames) and fit every grid's circle.
    centres = np.stack([T[:3, :3] @ ((np.asarray(o.grid.lower) + np.asarray(o.grid.upper)) / 2) + T[:3, 3] for o, T in placed])
    center = centres.mean(0)
    center[2] = float(np.median([T[2, 3] for _, T in placed]))
    radius = max(float(np.linalg.norm(c[:2] - center[:2])) + 0.5 * math.hypot(*o.grid.extent[:2])
                 for c, (o, _) in zip(centres, placed))
    cam = oblique_camera(center, radius, image_size, elevation_deg, azimuth_deg, fov_deg)
    views = ViewParams.from_rig(CameraRig((cam,)))
    hits = rasterize_boxes(means, half, rot, views)
    hit = hits.hit[0].numpy()
    n = hits.normal[0].numpy()
    lab = labels[hits.index[0].clamp(min=0)].numpy()
    lambert = np.clip(n @ LIGHT_DIR, 0, 1)
    shade = 0.45 + 0.55 * lambert + 0.1 * np.clip(n[..., 2], 0, 1)
    rgb = semantics.COLORS[lab].astype(np.float64) * shade[..., None]
    depth = hits.depth[0].numpy()
    haze = 1 - np.exp(-np.maximum(depth - depth[hit].min(initial=0), 0) / (4 * radius))
    rgb = rgb * (1 - haze[..., None]) + np.array([200, 205, 215]) * haze[..., None] * 0.35
    H, W = image_size
    sky = np.linspace(0, 1, H)[:, None, None] * (np.array([60, 64, 72]) - np.array(BACKGROUND)) + np.array(BACKGROUND)
    rgb = np.where(hit[..., None], rgb, np.broadcast_to(sky, (H, W, 3)))
    return rgb.clip(0, 255).astype(np.uint8)
