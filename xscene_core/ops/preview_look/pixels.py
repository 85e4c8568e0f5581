"""Geometry from the render: world points, rays, normals and footprints of every pixel of the views."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ... import semantics
from ...types.images import RenderedViews
from ...types.occupancy import ROAD_SURFACE_Z
from ..rasterize import ViewParams
from .classes import ID


# Geometry from the render ----------------------------------------------------------------------------------

@dataclass
class _Pixels:
    """Flattened pixels of all views (N = V * H * W): world points P [N, 3], unit view rays ray [N, 3],
    depth [N], hit [N], sem (int64) [N], normal [N, 3] (snapped), smooth [N, 3] (smoothed over walls and
    foliage), footprint [N] (metres per pixel), view [N], row [N], col [N]; per view: ray origins
    origin [V, 3], intrinsics K [V, 3, 3] and extrinsics T_cam_world [V, 4, 4]."""

    P: torch.Tensor
    ray: torch.Tensor
    depth: torch.Tensor
    hit: torch.Tensor
    sem: torch.Tensor
    normal: torch.Tensor
    smooth: torch.Tensor
    footprint: torch.Tensor
    view: torch.Tensor
    row: torch.Tensor
    col: torch.Tensor
    origin: torch.Tensor
    K: torch.Tensor
    T_cam_world: torch.Tensor
    T_world_ego: torch.Tensor
    shape: tuple[int, int, int]


def _normals(P: torch.Tensor, depth: torch.Tensor, hit: torch.Tensor) -> torch.Tensor:
    """World normals [V, H, W, 3] from world points [V, H, W, 3]: per pixel the one-sided differences on the
    side with the smaller depth step (so edges take the normal of their own surface), snapped to up/down
    or horizontal (voxel faces are one or the other)."""
    big = torch.tensor(1e6)
    d = torch.where(hit, depth, big)

    def side_diff(axis: int) -> torch.Tensor:
        fwd = torch.roll(P, -1, dims=axis) - P
        bwd = P - torch.roll(P, 1, dims=axis)
        dfw = (torch.roll(d, -1, dims=axis) - d).abs()
        dbw = (d - torch.roll(d, 1, dims=axis)).abs()
        n = P.shape[axis]
        idx = torch.arange(n)
        shape = [1, 1, 1]
        shape[axis - 0] = n
        last = (idx == n - 1).reshape(shape)
        first = (idx == 0).reshape(shape)
        dfw = torch.where(last, big, dfw)
        dbw = torch.where(first, big, dbw)
        return torch.where((dfw <= dbw)[..., None], fwd, bwd)

    du, dv = side_diff(2), side_diff(1)
    n = torch.cross(dv, du, dim=-1)
    n = n / n.norm(dim=-1, keepdim=True).clamp(min=1e-9)
    up = n[..., 2].abs() > 0.7
    horiz = torch.stack([n[..., 0], n[..., 1], torch.zeros_like(n[..., 0])], -1)
    horiz = horiz / horiz.norm(dim=-1, keepdim=True).clamp(min=1e-9)
    vert = torch.zeros_like(n)
    vert[..., 2] = torch.sign(n[..., 2])
    return torch.where(up[..., None], vert, horiz) * hit[..., None]


def _box_sum(t: torch.Tensor, k: int, dim: int) -> torch.Tensor:
    """Sum over a centred window of k (odd) samples along dim, zero beyond the edges (running sums:
    the cost does not grow with k)."""
    r = k // 2
    pad = [0, 0] * (t.ndim - 1 - dim) + [r + 1, r]
    c = torch.cumsum(F.pad(t, pad), dim)
    n = t.shape[dim]
    return c.narrow(dim, k, n) - c.narrow(dim, 0, n)


def _pixels(views: RenderedViews) -> _Pixels:
    vp = ViewParams.from_rig(views.rig)
    V, H, W = len(vp), vp.height, vp.width
    depth = torch.from_numpy(views.depth)
    sem = torch.from_numpy(views.semantic.astype(np.int64))
    hit = sem != semantics.FREE
    origins, dirs = [], []
    for v in range(V):
        o, d = vp.pixel_rays(v)
        origins.append(o)
        dirs.append(d.reshape(H, W, 3))
    origin, dirs = torch.stack(origins), torch.stack(dirs)
    P = origin[:, None, None] + dirs * depth[..., None]
    normal = _normals(P, depth, hit)
    # Face normals toward the camera.
    flip = ((normal * dirs).sum(-1) > 0)[..., None]
    normal = torch.where(flip, -normal, normal)
    smooth = normal.clone()
    for cls_id in (ID["manmade"], ID["vegetation"]):
        m = ((sem == cls_id) & (normal[..., 2].abs() < 0.5) if cls_id == ID["manmade"] else sem == cls_id)
        m = m.float()[:, None]
        k = 9 if cls_id == ID["manmade"] else 5
        # Box sums of mask-weighted normals and of the mask; their ratio is the masked mean.
        box = lambda t: _box_sum(_box_sum(t, k, 2), k, 3)  # noqa: E731
        nb, wb = box(normal.permute(0, 3, 1, 2) * m), box(m)
        avg = (nb / wb.clamp(min=1e-6)).permute(0, 2, 3, 1)
        avg = avg / avg.norm(dim=-1, keepdim=True).clamp(min=1e-6)
        smooth = torch.where((m[:, 0] > 0)[..., None], avg, smooth)
    ray = dirs / dirs.norm(dim=-1, keepdim=True)
    f = vp.K[:, 0, 0][:, None, None]
    footprint = depth / f
    vv, ii, jj = torch.meshgrid(torch.arange(V), torch.arange(H), torch.arange(W), indexing="ij")
    flat = lambda t: t.reshape(V * H * W, *t.shape[3:])  # noqa: E731
    return _Pixels(flat(P), flat(ray), flat(depth), flat(hit), flat(sem), flat(normal), flat(smooth),
                   flat(footprint), flat(vv), flat(ii), flat(jj), origin, vp.K, vp.T_cam_world,
                   torch.tensor(views.rig.T_world_ego, dtype=torch.float32), (V, H, W))


def _ground_height(px: _Pixels) -> float:
    """Height of the road surface seen in the views (median of up-facing ground hits), metres."""
    ground = torch.zeros_like(px.hit)
    for c in semantics.GROUND_IDS:
        ground |= px.sem == c
    ground &= px.normal[:, 2] > 0.5
    if ground.sum() < 50:
        return ROAD_SURFACE_Z
    return float(px.P[ground, 2].median())
