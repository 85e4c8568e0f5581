"""Differentiable alpha-blended rendering of 3D Gaussians (3DGS), two twins with one signature:

- `splat_render_torch`: pure torch (CPU or GPU), differentiable by autograd. It follows gsplat's
  classic rasterizer: EWA projection with the Jacobian clamped to 1.3x the field of view, a 0.3 px^2
  screen-space blur, a 3.33-sigma footprint per axis, alpha = min(0.999, o * exp(-q/2)) dropped below
  1/255, front-to-back compositing by the Gaussians' camera depth, stopping before transmittance would
  fall to 1e-4. Fragments are enumerated band by band of image rows to bound memory.
- `splat_render_gsplat`: gsplat's CUDA rasterizer (needs CUDA).

`splat_render` picks gsplat when CUDA is present. Pixel (row i, column j) is the ray through the image
point (u, v) = (j, i) as in ops.rasterize (gsplat's K is shifted by half a pixel to take the same rays).
Depth is the expected camera z (sum w z / sum w), 0 where nothing is hit.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ... import semantics
from ...types.cameras import CameraRig
from ...types.gaussians import GaussianScene
from ..rasterize import NEAR, ViewParams, quats_to_matrices

EPS2D = 0.3  # px^2 added to every projected covariance (gsplat's low-pass filter)
EXTENT_SIGMAS = 3.33  # footprint half-size per screen axis, in standard deviations
ALPHA_MIN = 1.0 / 255.0
ALPHA_MAX = 0.999
T_MIN = 1e-4
_BAND_FRAGMENTS = 3_000_000  # fragments enumerated at once (bounds memory, ~100 bytes each with autograd)


@dataclass
class SplatOutput:
    """rgb float32 [V, H, W, 3] (background composited); alpha float32 [V, H, W] accumulated opacity;
    depth float32 [V, H, W] expected camera z in metres (0 where alpha is 0); semantic uint8 [V, H, W]
    argmax of the blended one-hot classes where alpha >= 0.5, else semantics.FREE (None unless asked)."""

    rgb: torch.Tensor
    alpha: torch.Tensor
    depth: torch.Tensor
    semantic: torch.Tensor | None = None


def _project(means: torch.Tensor, quats: torch.Tensor, scales: torch.Tensor, K: torch.Tensor,
             T_cam_world: torch.Tensor, width: int, height: int):
    """Screen-space Gaussians of one camera: mean2d float [N, 2] (u, v), conic float [N, 3] (a, b, c of the
    inverse 2D covariance), radius float [N, 2] (px), depth float [N] camera z."""
    R, t = T_cam_world[:3, :3], T_cam_world[:3, 3]
    p = means @ R.T + t
    M = (R[None] @ quats_to_matrices(quats)) * scales[:, None, :]
    cov = M @ M.transpose(1, 2)
    x, y, z = p.unbind(-1)
    zs = z.clamp(min=NEAR)
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    lim_xp, lim_xn = (width - cx) / fx + 0.15 * width / fx, cx / fx + 0.15 * width / fx
    lim_yp, lim_yn = (height - cy) / fy + 0.15 * height / fy, cy / fy + 0.15 * height / fy
    tx = zs * torch.clamp(x / zs, -lim_xn, lim_xp)
    ty = zs * torch.clamp(y / zs, -lim_yn, lim_yp)
    O = torch.zeros_like(zs)
    J = torch.stack([fx / zs, O, -fx * tx / zs**2, O, fy / zs, -fy * ty / zs**2], -1).reshape(-1, 2, 3)
    cov2 = J @ cov @ J.transpose(1, 2)
    a = cov2[:, 0, 0] + EPS2D
    b = cov2[:, 0, 1]
    c = cov2[:, 1, 1] + EPS2D
    det = (a * c - b * b).clamp(min=1e-10)
    conic = torch.stack([c / det, -b / det, a / det], -1)
    mean2d = torch.stack([fx * x / zs + cx, fy * y / zs + cy], -1)
    radius = torch.ceil(EXTENT_SIGMAS * torch.stack([a, c], -1).sqrt())
    return mean2d, conic, radius, z


def _render_view(g: GaussianScene, colors: torch.Tensor, K: torch.Tensor, T: torch.Tensor, H: int, W: int):
    """Blend one view: (rgb_acc [H*W, C], alpha [H*W], depth_acc [H*W]) before the background."""
    dev = g.means.device
    C = colors.shape[1]
    rgb = torch.zeros(H * W, C, dtype=colors.dtype, device=dev)
    acc = torch.zeros(H * W, dtype=colors.dtype, device=dev)
    dacc = torch.zeros(H * W, dtype=colors.dtype, device=dev)
    with torch.no_grad():
        mean2d, conic, radius, z = _project(g.means.float(), g.quats.float(), g.scales.float(), K, T, W, H)
        j0 = torch.ceil(mean2d[:, 0] - radius[:, 0]).clamp(min=0)
        j1 = torch.floor(mean2d[:, 0] + radius[:, 0]).clamp(max=W - 1)
        i0 = torch.ceil(mean2d[:, 1] - radius[:, 1]).clamp(min=0)
        i1 = torch.floor(mean2d[:, 1] + radius[:, 1]).clamp(max=H - 1)
        ok = (z >= NEAR) & (j1 >= j0) & (i1 >= i0) & torch.isfinite(mean2d).all(-1)
        keep = torch.nonzero(ok)[:, 0]
        if keep.numel() == 0:
            return rgb, acc, dacc
        j0, j1, i0, i1 = (v[keep].long() for v in (j0, j1, i0, i1))
        # Depth rank of each kept Gaussian (ties by index): fragments sort by (pixel, rank).
        order = torch.sort(z[keep], stable=True).indices
        rank = torch.empty_like(order)
        rank[order] = torch.arange(len(order), device=dev)
        bw = j1 - j0 + 1
        rows_total = (bw * (i1 - i0 + 1)).sum()
        band = max(1, int(H * _BAND_FRAGMENTS / max(int(rows_total), 1)))
    # Differentiable per-Gaussian quantities (colours and opacities may require grad).
    # Projection again with grad where means/scales/quats require it is not needed for the refinement,
    # which optimises colours and opacities only.
    mean2d, conic, z = mean2d[keep], conic[keep], z[keep]
    op = g.opacities[keep]
    col = colors[keep]
    for r0 in range(0, H, band):
        r1 = min(H, r0 + band) - 1
        with torch.no_grad():
            bi0, bi1 = i0.clamp(min=r0), i1.clamp(max=r1)
            cnt = bw * (bi1 - bi0 + 1).clamp(min=0)
            sel = torch.nonzero(cnt > 0)[:, 0]
            if sel.numel() == 0:
                continue
            cnt = cnt[sel]
            gid = torch.repeat_interleave(sel, cnt)
            local = torch.arange(int(cnt.sum()), device=dev) - (torch.cumsum(cnt, 0) - cnt).repeat_interleave(cnt)
            row = bi0[gid] + local // bw[gid]
            colm = j0[gid] + local % bw[gid]
            dx = colm.float() - mean2d[gid, 0]
            dy = row.float() - mean2d[gid, 1]
            cg = conic[gid]
            power = -0.5 * (cg[:, 0] * dx * dx + cg[:, 2] * dy * dy) - cg[:, 1] * dx * dy
            a_nograd = (op[gid].detach() * torch.exp(power)).clamp(max=ALPHA_MAX)
            live = (power <= 0) & (a_nograd >= ALPHA_MIN)
            gid, row, colm, power = gid[live], row[live], colm[live], power[live]
            pix = row * W + colm
            key = pix * len(keep) + rank[gid]
            srt = torch.sort(key).indices
            gid, pix, power = gid[srt], pix[srt], power[srt]
            n = pix.numel()
            start = torch.ones(n, dtype=torch.bool, device=dev)
            start[1:] = pix[1:] != pix[:-1]
            start_pos = torch.cummax(torch.where(start, torch.arange(n, device=dev), 0), 0).values
        alpha = (op[gid] * torch.exp(power)).clamp(max=ALPHA_MAX)
        # Segmented exclusive cumulative product of (1 - alpha) in log space; float64 keeps the long
        # running sum exact enough to subtract the segment's base.
        log1m = torch.log1p(-alpha.double())
        excl = torch.cumsum(log1m, 0) - log1m
        trans = torch.exp(excl - excl[start_pos])
        alive = (trans * (1 - alpha.double())) > T_MIN
        w = (alpha.double() * trans * alive).to(colors.dtype)
        rgb = rgb.index_add(0, pix, w[:, None] * col[gid])
        acc = acc.index_add(0, pix, w)
        dacc = dacc.index_add(0, pix, w * z[gid].to(colors.dtype))
    return rgb, acc, dacc


def splat_render_torch(gaussians: GaussianScene, rig: CameraRig, with_semantic: bool = False,
                       background: tuple[float, float, float] = (0.0, 0.0, 0.0),
                       colors: torch.Tensor | None = None) -> SplatOutput:
    """Pure-torch alpha-blended render (module docstring); differentiable w.r.t. gaussians.colors /
    gaussians.opacities (or `colors`, float [N, 3], used instead of gaussians.colors when given)."""
    dev = gaussians.means.device
    views = ViewParams.from_rig(rig, dev)
    V, H, W = len(views), views.height, views.width
    col = (gaussians.colors if colors is None else colors).float()
    if with_semantic:
        onehot = torch.nn.functional.one_hot(gaussians.labels.long(), semantics.NUM_CLASSES).float()
        col = torch.cat([col, onehot], 1)
    bg = torch.tensor(background, dtype=torch.float32, device=dev)
    rgbs, alphas, depths, sems = [], [], [], []
    for v in range(V):
        rgb, acc, dacc = _render_view(gaussians, col, views.K[v], views.T_cam_world[v], H, W)
        rgbs.append((rgb[:, :3] + (1 - acc)[:, None] * bg).reshape(H, W, 3))
        alphas.append(acc.reshape(H, W))
        depths.append(torch.where(acc > 0, dacc / acc.clamp(min=1e-10), 0.0).reshape(H, W))
        if with_semantic:
            sem = torch.where(acc >= 0.5, rgb[:, 3:].argmax(-1), semantics.FREE)
            sems.append(sem.to(torch.uint8).reshape(H, W))
    return SplatOutput(torch.stack(rgbs), torch.stack(alphas), torch.stack(depths),
                       torch.stack(sems) if with_semantic else None)


def splat_render_gsplat(gaussians: GaussianScene, rig: CameraRig, with_semantic: bool = False,
                        background: tuple[float, float, float] = (0.0, 0.0, 0.0),
                        colors: torch.Tensor | None = None) -> SplatOutput:
    """gsplat's CUDA rasterizer with the conventions of splat_render_torch (needs CUDA; differentiable)."""
    if not torch.cuda.is_available():
        raise RuntimeError("splat_render_gsplat needs CUDA (gsplat cannot rasterize on the CPU); use splat_render_torch")
    from gsplat import rasterization

    g = gaussians.to("cuda")
    col = (g.colors if colors is None else colors.to("cuda")).float()
    if with_semantic:
        col = torch.cat([col, torch.nn.functional.one_hot(g.labels.long(), semantics.NUM_CLASSES).float()], 1)
    views = ViewParams.from_rig(rig, "cuda")
    K = views.K.clone()
    K[:, 0, 2] += 0.5  # gsplat samples pixel (i, j) at (j + 0.5, i + 0.5)
    K[:, 1, 2] += 0.5
    out, alpha, _ = rasterization(g.means.float(), g.quats.float(), g.scales.float(), g.opacities.float(), col,
                                  views.T_cam_world, K, views.width, views.height, near_plane=NEAR, eps2d=EPS2D,
                                  render_mode="RGB+ED", packed=False)
    alpha = alpha[..., 0]
    bg = torch.tensor(background, dtype=torch.float32, device="cuda")
    rgb = out[..., :3] + (1 - alpha)[..., None] * bg
    depth = torch.where(alpha > 0, out[..., -1], 0.0)
    sem = None
    if with_semantic:
        sem = torch.where(alpha >= 0.5, out[..., 3:-1].argmax(-1), semantics.FREE).to(torch.uint8)
    return SplatOutput(rgb, alpha, depth, sem)


def splat_render(gaussians: GaussianScene, rig: CameraRig, with_semantic: bool = False,
                 background: tuple[float, float, float] = (0.0, 0.0, 0.0), colors: torch.Tensor | None = None) -> SplatOutput:
    """gsplat when CUDA is present, else the pure-torch twin."""
    fn = splat_render_gsplat if torch.cuda.is_available() else splat_render_torch
    return fn(gaussians, rig, with_semantic, background, colors)
