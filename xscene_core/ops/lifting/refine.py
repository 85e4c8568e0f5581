"""A few Adam steps on the colours and opacities of Gaussians against the views they were lifted from,
through the differentiable splat renderer (ops.lifting.splat: gsplat on CUDA, the pure-torch twin on the
CPU). Positions and shapes stay fixed: they come from the occupancy.

Why refine at all: the lifted colours are the least-squares colours of opaque boxes; a splat viewer
blends each Gaussian with its neighbours, which blurs them. Refining under the blending renderer makes
what splat viewers show of the PLY closer to the views.

The loss is the mean squared error over the pixels the Gaussians cover in the box render (sky and other
pixels no Gaussian claims are left out: the scene has no model of them).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Sequence

import numpy as np
import torch

from ...types.cameras import CameraRig
from ...types.gaussians import GaussianScene
from ...types.images import MultiViewImages
from ..rasterize import ViewParams, gaussian_boxes, rasterize_boxes
from .splat import splat_render

DEFAULT_LR = 0.05
DEFAULT_DOWNSCALE = 2  # refine at 1/2 of the view size: 4x fewer pixels, the colours are per patch anyway
OPACITY_CLAMP = 0.995  # keeps the opacity logit finite for solid Gaussians


@dataclass
class RefineView:
    """Target views for refinement: images uint8 [V, H, W, 3] with their rig in the Gaussians' frame;
    members: int64 [M] indices of the Gaussians that may appear in these views (None: all), e.g. the
    Gaussians inside the chunk the views were generated for."""

    images: MultiViewImages
    members: torch.Tensor | None = None


def downscale(images: MultiViewImages, factor: int) -> MultiViewImages:
    """Area-average the views by an integer factor, with intrinsics that keep the pixel-centre convention
    (pixel j of the small image is the mean of pixels f*j .. f*j+f-1 of the large one)."""
    if factor == 1:
        return images
    V, H, W, _ = images.images.shape
    h, w = H // factor, W // factor
    arr = images.images[:, :h * factor, :w * factor].astype(np.float32)
    small = arr.reshape(V, h, factor, w, factor, 3).mean((2, 4))
    cams = []
    for c in images.rig.cameras:
        K = c.K.copy()
        K[0, 0] /= factor
        K[1, 1] /= factor
        K[0, 2] = (K[0, 2] + 0.5) / factor - 0.5
        K[1, 2] = (K[1, 2] + 0.5) / factor - 0.5
        cams.append(replace(c, K=K, height=h, width=w))
    return MultiViewImages(np.round(small).astype(np.uint8), replace(images.rig, cameras=tuple(cams)))


def _subset(g: GaussianScene, members: torch.Tensor | None, colors: torch.Tensor, opacities: torch.Tensor) -> GaussianScene:
    if members is None:
        return GaussianScene(g.means, g.scales, g.quats, opacities, colors, g.labels)
    return GaussianScene(g.means[members], g.scales[members], g.quats[members], opacities[members], colors[members],
                         g.labels[members])


def refine_gaussians(gaussians: GaussianScene, targets: Sequence[RefineView], steps: int, lr: float = DEFAULT_LR,
                     downscale_factor: int = DEFAULT_DOWNSCALE,
                     callback: Callable[[int, int, float], None] | None = None) -> GaussianScene:
    """Refined copy of `gaussians` (colours and opacities only) after `steps` Adam steps on the pooled
    squared error over every target view. callback(step, steps, loss) after each step; it may raise to
    stop. Returns the input unchanged when steps == 0."""
    if steps <= 0 or len(gaussians) == 0:
        return gaussians
    prepared = []
    for t in targets:
        small = downscale(t.images, downscale_factor)
        sub = gaussians if t.members is None else _subset(gaussians, t.members, gaussians.colors, gaussians.opacities)
        with torch.no_grad():
            hit = rasterize_boxes(*gaussian_boxes(sub), ViewParams.from_rig(small.rig)).hit
        rgb = torch.from_numpy(small.images).float() / 255.0
        prepared.append((small.rig, t.members, rgb, hit))
    eps = 1e-4
    color_logit = torch.logit(gaussians.colors.float().clamp(eps, 1 - eps)).detach().requires_grad_(True)
    opacity_logit = torch.logit(gaussians.opacities.float().clamp(eps, OPACITY_CLAMP)).detach().requires_grad_(True)
    opt = torch.optim.Adam([color_logit, opacity_logit], lr=lr)
    n_pix = sum(int(h.sum()) for *_, h in prepared)
    for step in range(steps):
        opt.zero_grad()
        total = 0.0
        for rig, members, rgb, hit in prepared:
            for v in range(len(rig)):
                if not hit[v].any():
                    continue
                sub = _subset(gaussians, members, torch.sigmoid(color_logit), torch.sigmoid(opacity_logit))
                out = splat_render(sub, CameraRig((rig.cameras[v],), rig.T_world_ego))
                err = ((out.rgb[0].cpu() - rgb[v]) ** 2).sum(-1)[hit[v]]
                loss = err.sum() / max(n_pix, 1)
                loss.backward()
                total += float(loss.detach())
        opt.step()
        if callback is not None:
            callback(step + 1, steps, total)
    with torch.no_grad():
        return GaussianScene(gaussians.means, gaussians.scales, gaussians.quats, torch.sigmoid(opacity_logit).detach(),
                             torch.sigmoid(color_logit).detach(), gaussians.labels)
