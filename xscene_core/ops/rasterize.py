"""Rendering 3D Gaussians (and boxes) to per-pixel semantic class, metric depth and alpha.

Three implementations with one signature, `f(gaussians, rig) -> Raster`:

- `rasterize_torch`: the default, pure torch, CPU or GPU. It treats every Gaussian as the opaque
  oriented box of half-extents `BOX_SIGMAS * scales` (for voxel Gaussians: exactly the voxel) and
  returns, per pixel, the nearest box surface hit by the pixel's ray. That is what the image model and
  the 2D metrics need (the class and distance of the first visible voxel) and it is exact: each box is
  splatted over its projected bounding rectangle, every covered pixel runs an exact ray/box slab test
  and a z-buffer keeps the nearest hit (ties go to the lower Gaussian index, so renders are
  deterministic).
- `rasterize_reference`: the brute-force twin of `rasterize_torch` (every pixel ray against every
  box, float64); tests compare the two at every pixel on small scenes.
- `rasterize_gsplat`: gsplat's CUDA rasterizer (true alpha-blended Gaussians: semantic = argmax of the
  blended one-hot classes, depth = expected depth). Only when CUDA is present; it agrees with the box
  model on most pixels, not on every one.

`rasterize` picks gsplat when CUDA is available and the torch path otherwise.

Conventions: cameras are OpenCV pinholes; pixel (row i, column j) is the ray through the image point
(u, v) = (j, i), i.e. pixel centres sit at integer coordinates as in OpenCV and nuScenes. Depth is the
camera z of the hit point in metres (not the ray length); 0 where nothing is hit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .. import semantics
from ..types.cameras import CameraRig
from ..types.gaussians import GaussianScene
from .geometry import invert_rigid

# A Gaussian's solid for the box renderers: the box of half-extents BOX_SIGMAS * scale along its axes.
# voxel_gaussians sets scale = voxel_size / (2 * BOX_SIGMAS), so the solid is exactly the voxel.
BOX_SIGMAS = 1.0
# Surfaces closer to the camera than this (metres of camera z) are clipped away.
NEAR = 0.05
# Pixels of slack around each projected box rectangle, so float32 rounding of the corner projections can
# never drop a pixel whose ray grazes the box silhouette (the slab test rejects the extra pixels).
_BOUNDS_SLACK = 0.5
# Fragments processed at once per view (bounds memory: ~60 bytes per fragment).
_CHUNK = 4_000_000

_CORNER_SIGNS = torch.tensor(
    [[sx, sy, sz] for sx in (-1.0, 1.0) for sy in (-1.0, 1.0) for sz in (-1.0, 1.0)]
)  # [8, 3]
# The 12 edges of a box as pairs of corner indices (corners differ in exactly one sign).
_EDGES = torch.tensor([(a, b) for a in range(8) for b in range(a + 1, 8) if bin(a ^ b).count("1") == 1])


@dataclass
class Raster:
    """Renders of V views (torch tensors on the input's device).

    semantic: uint8 [V, H, W] Occ3D ids (semantics.FREE where nothing is hit); depth: float32 [V, H, W]
    camera z in metres (0 where nothing is hit); alpha: float32 [V, H, W] in [0, 1].
    """

    semantic: torch.Tensor
    depth: torch.Tensor
    alpha: torch.Tensor


@dataclass
class BoxHits:
    """Nearest box surface per pixel of V views.

    depth: float32 [V, H, W] camera z in metres (0 on a miss); index: int64 [V, H, W] index of the hit
    box (-1 on a miss); normal: float32 [V, H, W, 3] world-frame unit normal of the hit face (0 on a miss).
    """

    depth: torch.Tensor
    index: torch.Tensor
    normal: torch.Tensor

    @property
    def hit(self) -> torch.Tensor:
        """bool [V, H, W]."""
        return self.index >= 0


@dataclass(frozen=True)
class ViewParams:
    """The cameras of a rig as tensors: K float32 [V, 3, 3]; T_cam_world float32 [V, 4, 4] (maps world
    points into each camera); height, width of every view in pixels."""

    K: torch.Tensor
    T_cam_world: torch.Tensor
    height: int
    width: int

    @classmethod
    def from_rig(cls, rig: CameraRig, device: torch.device | str = "cpu") -> "ViewParams":
        sizes = {(c.height, c.width) for c in rig.cameras}
        if len(sizes) != 1:
            raise ValueError(f"all cameras of a rig must share one image size to be rendered together, got {sorted(sizes)}")
        (h, w), = sizes
        # Compose in float64 before the cast: world coordinates of a world of chunks reach kilometres.
        T = np.stack([invert_rigid(rig.T_world_cam(i)) for i in range(len(rig))])
        K = np.stack([c.K for c in rig.cameras])
        return cls(torch.tensor(K, dtype=torch.float32, device=device),
                   torch.tensor(T, dtype=torch.float32, device=device), int(h), int(w))

    def __len__(self) -> int:
        return int(self.K.shape[0])

    def pixel_rays(self, v: int) -> tuple[torch.Tensor, torch.Tensor]:
        """World-frame rays of view v: origin float32 [3] and directions float32 [H*W, 3] scaled so
        that their camera z is 1 (a ray parameter t is then the camera depth), row-major pixels."""
        K, T = self.K[v], self.T_cam_world[v]
        dev = K.device
        jj = torch.arange(self.width, device=dev, dtype=torch.float32)
        ii = torch.arange(self.height, device=dev, dtype=torch.float32)
        x = ((jj - K[0, 2]) / K[0, 0])[None, :].expand(self.height, -1)
        y = ((ii - K[1, 2]) / K[1, 1])[:, None].expand(-1, self.width)
        d_cam = torch.stack([x, y, torch.ones_like(x)], -1).reshape(-1, 3)
        R_wc = T[:3, :3].T
        origin = -R_wc @ T[:3, 3]
        return origin, d_cam @ R_wc.T


def quats_to_matrices(quats: torch.Tensor) -> torch.Tensor:
    """Rotation matrices float [N, 3, 3] of quaternions (w, x, y, z) float [N, 4] (normalised here)."""
    q = quats / quats.norm(dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
        2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
        2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y),
    ], -1).reshape(-1, 3, 3)


def _slab(origin: torch.Tensor, d: torch.Tensor, half: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Ray/box slab test in box-local coordinates.

    origin, d, half: float [..., 3] (ray origin relative to the box centre, direction, half-extents).
    Returns (t_enter [...], t_exit [...], enter_axis int64 [...]).
    """
    # Keep |d| away from 0 so that 0 * inf never makes a NaN; the nudge is far below pixel precision.
    tiny = torch.finfo(d.dtype).tiny * 1e6
    d = torch.where(d.abs() < tiny, torch.full_like(d, tiny), d)
    inv = 1.0 / d
    t1 = (-half - origin) * inv
    t2 = (half - origin) * inv
    t_enter, axis = torch.minimum(t1, t2).max(-1)
    t_exit = torch.maximum(t1, t2).amin(-1)
    return t_enter, t_exit, axis


def _face_normals(rot: torch.Tensor | None, d_local: torch.Tensor, axis: torch.Tensor) -> torch.Tensor:
    """World normals float [P, 3] of the entered faces: box axis `axis` facing against the ray."""
    sign = -torch.sign(d_local.gather(-1, axis[:, None]))
    if rot is None:
        n = torch.zeros_like(d_local)
        return n.scatter_(-1, axis[:, None], sign)
    return rot.gather(-1, axis[:, None, None].expand(-1, 3, 1))[..., 0] * sign


def _box_bounds(c_cam: torch.Tensor, axes_cam: torch.Tensor, K: torch.Tensor, height: int, width: int):
    """Pixel rectangles covering the part of each box in front of the near plane.

    c_cam: float [M, 3] box centres in the camera frame; axes_cam: float [M or 1, 3, 3] box half-axes as
    columns in the camera frame. Returns int64 (j0, j1, i0, i1) [M] inclusive bounds clipped to the
    image (empty where j1 < j0 or i1 < i0).
    """
    corners = c_cam[:, None, :] + _CORNER_SIGNS.to(c_cam)[None] @ axes_cam.transpose(1, 2)  # [M, 8, 3]
    z = corners[..., 2]
    # The clipped box is the convex hull of its corners in front of the near plane and the points where
    # its edges cross that plane; the rectangle of those points bounds its image exactly.
    a, b = corners[:, _EDGES[:, 0]], corners[:, _EDGES[:, 1]]  # [M, 12, 3]
    za, zb = a[..., 2], b[..., 2]
    crosses = (za - NEAR) * (zb - NEAR) < 0
    s = ((NEAR - za) / torch.where(crosses, zb - za, torch.ones_like(za))).clamp(0, 1)
    pts = torch.cat([corners, a + s[..., None] * (b - a)], 1)  # [M, 20, 3]
    valid = torch.cat([z >= NEAR, crosses], 1)
    pz = pts[..., 2].clamp(min=NEAR)
    u = K[0, 0] * pts[..., 0] / pz + K[0, 2]
    v = K[1, 1] * pts[..., 1] / pz + K[1, 2]
    inf = torch.tensor(float("inf"), dtype=u.dtype, device=u.device)
    # Clamp before the integer cast: corners near the plane project to huge coordinates.
    big = float(4 * (height + width))
    umin = torch.where(valid, u, inf).amin(1).clamp(-big, big)
    umax = torch.where(valid, u, -inf).amax(1).clamp(-big, big)
    vmin = torch.where(valid, v, inf).amin(1).clamp(-big, big)
    vmax = torch.where(valid, v, -inf).amax(1).clamp(-big, big)
    j0 = torch.ceil(umin - _BOUNDS_SLACK).long().clamp(min=0)
    j1 = torch.floor(umax + _BOUNDS_SLACK).long().clamp(max=width - 1)
    i0 = torch.ceil(vmin - _BOUNDS_SLACK).long().clamp(min=0)
    i1 = torch.floor(vmax + _BOUNDS_SLACK).long().clamp(max=height - 1)
    return j0, j1, i0, i1


def rasterize_boxes(centers: torch.Tensor, half_extents: torch.Tensor, rotations: torch.Tensor | None,
                    views: ViewParams) -> BoxHits:
    """Nearest opaque box surface per pixel, by splatting boxes with an exact ray/box test and a z-buffer.

    centers, half_extents: float32 [N, 3] metres (world frame); rotations: float32 [N, 3, 3] box-to-world
    rotations, or None for axis-aligned boxes (the voxel case, which skips the per-box rotations).
    Ties in depth go to the lower box index. Cost grows with the projected area of the boxes, so it suits
    surface voxels (each pixel is covered by a few of them), not large overlapping boxes.
    """
    dev = centers.device
    centers, half_extents = centers.float(), half_extents.float()
    V, H, W = len(views), views.height, views.width
    n = centers.shape[0]
    if n >= 2**31:
        raise ValueError("rasterize_boxes: at most 2**31 - 1 boxes")
    depth = torch.zeros(V, H * W, dtype=torch.float32, device=dev)
    index = torch.full((V, H * W), -1, dtype=torch.int64, device=dev)
    normal = torch.zeros(V, H * W, 3, dtype=torch.float32, device=dev)
    rot_t = None if rotations is None else rotations.float().transpose(1, 2)  # world-to-box
    for v in range(V):
        if n == 0:
            break
        K, T = views.K[v], views.T_cam_world[v]
        origin, dirs = views.pixel_rays(v)
        c_cam = centers @ T[:3, :3].T + T[:3, 3]
        # Box half-axes as columns in the camera frame.
        if rotations is None:
            axes_cam = T[:3, :3][None] * half_extents[:, None, :]
        else:
            axes_cam = T[:3, :3][None] @ rotations.float() * half_extents[:, None, :]
        j0, j1, i0, i1 = _box_bounds(c_cam, axes_cam, K, H, W)
        bw, bh = (j1 - j0 + 1).clamp(min=0), (i1 - i0 + 1).clamp(min=0)
        counts = bw * bh
        keep = torch.nonzero(counts > 0)[:, 0]
        if keep.numel() == 0:
            continue
        counts, j0, i0, bw = counts[keep], j0[keep], i0[keep], bw[keep]
        o_rel = origin[None] - centers[keep]  # ray origin relative to each box centre, world axes
        if rot_t is not None:
            o_rel = (rot_t[keep] @ o_rel[:, :, None])[..., 0]
        half_k = half_extents[keep]
        # 62 bits: float32 depth bits (positive floats order like their bit patterns) over the box index;
        # one scatter-amin then gives the nearest hit and breaks ties by the lower index.
        zbuf = torch.full((H * W,), torch.iinfo(torch.int64).max, dtype=torch.int64, device=dev)
        ends = torch.cumsum(counts, 0)
        start = 0
        while start < keep.numel():
            # Group boxes into chunks of about _CHUNK fragments.
            base = int(ends[start - 1]) if start else 0
            stop = int(torch.searchsorted(ends, torch.tensor(base + _CHUNK, device=dev), right=True))
            stop = max(stop, start + 1)
            sl = slice(start, stop)
            cnt = counts[sl]
            box = torch.repeat_interleave(torch.arange(start, stop, device=dev), cnt)
            local = torch.arange(int(cnt.sum()), device=dev) - (torch.cumsum(cnt, 0) - cnt).repeat_interleave(cnt)
            w_b = bw[box]
            pix = (i0[box] + local // w_b) * W + (j0[box] + local % w_b)
            d = dirs[pix]
            if rot_t is not None:
                d = (rot_t[keep[box]] @ d[:, :, None])[..., 0]
            t_in, t_out, _ = _slab(o_rel[box], d, half_k[box])
            ok = (t_in >= NEAR) & (t_out >= t_in)
            key = (t_in[ok].contiguous().view(torch.int32).long() << 31) | keep[box[ok]]
            zbuf.scatter_reduce_(0, pix[ok], key, reduce="amin")
            start = stop
        hit = zbuf != torch.iinfo(torch.int64).max
        idx = torch.where(hit, zbuf & (2**31 - 1), torch.full_like(zbuf, -1))
        depth[v] = torch.where(hit, (zbuf >> 31).int().view(torch.float32), torch.zeros((), device=dev))
        index[v] = idx
        # Normals of the winning faces: one more slab test per hit pixel.
        p = torch.nonzero(hit)[:, 0]
        b = idx[p]
        d = dirs[p]
        o = origin[None] - centers[b]
        rot_b = None
        if rotations is not None:
            rot_b = rotations[b].float()
            d, o = (rot_t[b] @ d[:, :, None])[..., 0], (rot_t[b] @ o[:, :, None])[..., 0]
        _, _, axis = _slab(o, d, half_extents[b])
        normal[v, p] = _face_normals(rot_b, d, axis)
    return BoxHits(depth.reshape(V, H, W), index.reshape(V, H, W), normal.reshape(V, H, W, 3))


def rasterize_boxes_reference(centers: torch.Tensor, half_extents: torch.Tensor, rotations: torch.Tensor | None,
                              views: ViewParams) -> BoxHits:
    """Brute-force twin of `rasterize_boxes`: every pixel ray against every box in float64 (small scenes
    only: memory grows as pixels x boxes)."""
    dev = centers.device
    V, H, W = len(views), views.height, views.width
    c, h = centers.double(), half_extents.double()
    rot = None if rotations is None else rotations.double()
    depth = torch.zeros(V, H * W, dtype=torch.float64, device=dev)
    index = torch.full((V, H * W), -1, dtype=torch.int64, device=dev)
    normal = torch.zeros(V, H * W, 3, dtype=torch.float64, device=dev)
    for v in range(V):
        K, T = views.K[v].double(), views.T_cam_world[v].double()
        R_wc = T[:3, :3].T
        origin = -R_wc @ T[:3, 3]
        for p0 in range(0, H * W, 256):
            p = torch.arange(p0, min(p0 + 256, H * W), device=dev)
            x = (p % W - K[0, 2]) / K[0, 0]
            y = (p // W - K[1, 2]) / K[1, 1]
            d = torch.stack([x, y, torch.ones_like(x)], -1) @ R_wc.T  # [P, 3]
            o = (origin[None] - c)[None].expand(len(p), -1, -1)  # [P, N, 3]
            dd = d[:, None, :].expand(-1, c.shape[0], -1)
            if rot is not None:
                o = torch.einsum("nji,pnj->pni", rot, o)
                dd = torch.einsum("nji,pnj->pni", rot, dd)
            t_in, t_out, axis = _slab(o, dd, h[None].expand_as(o))
            ok = (t_in >= NEAR) & (t_out >= t_in)
            t = torch.where(ok, t_in, torch.full_like(t_in, float("inf")))
            best = t.min(1).values
            # Lowest index among the nearest hits.
            cand = ok & (t == best[:, None])
            first = torch.where(cand, torch.arange(c.shape[0], device=dev)[None], c.shape[0]).amin(1)
            got = torch.isfinite(best)
            q = p[got]
            b = first[got]
            depth[v, q] = best[got]
            index[v, q] = b
            rows = torch.nonzero(got)[:, 0]
            normal[v, q] = _face_normals(None if rot is None else rot[b], dd[rows, b], axis[rows, b])
    return BoxHits(depth.reshape(V, H, W).float(), index.reshape(V, H, W), normal.reshape(V, H, W, 3).float())


def gaussian_boxes(g: GaussianScene) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Boxes of Gaussians, the arguments of rasterize_boxes: centres float32 [N, 3], half-extents float32
    [N, 3] and rotations float32 [N, 3, 3] (None when every quaternion is identity)."""
    q = g.quats.float()
    identity = bool(((q[:, 1:].abs() < 1e-7).all() & (q[:, 0] > 0).all()).item()) if len(g) else True
    rot = None if identity else quats_to_matrices(q)
    return g.means.float(), g.scales.float() * BOX_SIGMAS, rot


def _raster_from_hits(g: GaussianScene, hits: BoxHits) -> Raster:
    idx = hits.index.clamp(min=0)
    hit = hits.hit
    labels = g.labels.to(torch.uint8)
    free = torch.tensor(semantics.FREE, dtype=torch.uint8, device=idx.device)
    sem = torch.where(hit, labels[idx] if len(g) else free, free)
    alpha = torch.where(hit, g.opacities.float()[idx] if len(g) else 0.0, torch.zeros((), device=idx.device))
    return Raster(sem, hits.depth, alpha)


def rasterize_torch(gaussians: GaussianScene, rig: CameraRig) -> Raster:
    """Pure-torch render of Gaussians as opaque boxes (see the module docstring); CPU or GPU."""
    views = ViewParams.from_rig(rig, gaussians.means.device)
    return _raster_from_hits(gaussians, rasterize_boxes(*gaussian_boxes(gaussians), views))


def rasterize_reference(gaussians: GaussianScene, rig: CameraRig) -> Raster:
    """Brute-force twin of `rasterize_torch` (tests; small scenes only)."""
    views = ViewParams.from_rig(rig, gaussians.means.device)
    return _raster_from_hits(gaussians, rasterize_boxes_reference(*gaussian_boxes(gaussians), views))


def rasterize_gsplat(gaussians: GaussianScene, rig: CameraRig) -> Raster:
    """gsplat's CUDA rasterizer: alpha-blended Gaussians, semantic = argmax of the blended one-hot classes
    (FREE where the accumulated alpha is below 0.5), depth = expected camera z. Needs CUDA."""
    if not torch.cuda.is_available():
        raise RuntimeError("rasterize_gsplat needs CUDA (gsplat cannot rasterize on the CPU); use rasterize_torch")
    from gsplat import rasterization

    g = gaussians.to("cuda")
    views = ViewParams.from_rig(rig, "cuda")
    K = views.K.clone()
    # gsplat samples pixel (i, j) at (j + 0.5, i + 0.5); shift the principal point so the same rays are
    # taken as in the OpenCV convention used here (pixel centres at integer coordinates).
    K[:, 0, 2] += 0.5
    K[:, 1, 2] += 0.5
    onehot = torch.nn.functional.one_hot(g.labels.long(), semantics.NUM_CLASSES).float()
    out, alpha, _ = rasterization(
        g.means.float(), g.quats.float(), g.scales.float() , g.opacities.float(), onehot,
        views.T_cam_world, K, views.width, views.height, near_plane=NEAR, render_mode="RGB+ED", packed=False,
    )
    alpha = alpha[..., 0]
    covered = alpha >= 0.5
    sem = torch.where(covered, out[..., :-1].argmax(-1), semantics.FREE).to(torch.uint8)
    depth = torch.where(covered, out[..., -1], 0.0)
    return Raster(sem, depth.float(), alpha.clamp(0, 1).float())


def rasterize(gaussians: GaussianScene, rig: CameraRig) -> Raster:
    """Render with gsplat when CUDA is present, else with the pure-torch box renderer."""
    if torch.cuda.is_available():
        return rasterize_gsplat(gaussians, rig)
    return rasterize_torch(gaussians, rig)
