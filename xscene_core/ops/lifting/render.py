"""Novel views of a GaussianScene: RGB, depth and semantic for any camera or rig.

Two modes:
- "box": every Gaussian as its opaque box (ops.rasterize.rasterize_boxes): crisp surfaces, exact
  depth and class of the first surface, fast on the CPU. This is the model the colours are lifted for.
- "splat": true alpha-blended Gaussians (ops.lifting.splat: gsplat on CUDA, its pure-torch twin
  otherwise): what 3DGS viewers show of the exported PLY; depth is the expected depth, semantic the
  argmax of the blended classes where the accumulated alpha reaches 0.5.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ... import semantics
from ...types.cameras import Camera, CameraRig
from ...types.gaussians import GaussianScene
from ..rasterize import ViewParams, gaussian_boxes, rasterize_boxes
from .splat import splat_render

MODES = ("box", "splat")
BACKGROUND = (0.0, 0.0, 0.0)  # RGB in [0, 1] where nothing is hit (behind the sky dome, if the scene has one)


@dataclass
class GaussianRender:
    """Renders of V views. rgb: uint8 [V, H, W, 3] (the sky dome, if any, behind the surfaces); depth:
    float32 [V, H, W] camera z in metres (0 where no surface is hit); semantic: uint8 [V, H, W] Occ3D ids
    (semantics.FREE where no surface is hit); alpha: float32 [V, H, W] in [0, 1], the surfaces' coverage."""

    rgb: np.ndarray
    depth: np.ndarray
    semantic: np.ndarray
    alpha: np.ndarray


def as_rig(cameras: Camera | CameraRig) -> CameraRig:
    """A rig of one camera (placed at the world origin: its T_ego_cam is its world pose) or the rig."""
    if isinstance(cameras, CameraRig):
        return cameras
    if isinstance(cameras, Camera):
        return CameraRig((cameras,))
    raise ValueError(f"expected a Camera or a CameraRig, got {type(cameras).__name__}")


def render_boxes_float(gaussians: GaussianScene, views: ViewParams) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Box-mode render as tensors: rgb float32 [V, H, W, 3] in [0, 1], depth float32 [V, H, W], index int64
    [V, H, W] of the Gaussian seen (-1 where none)."""
    hits = rasterize_boxes(*gaussian_boxes(gaussians), views)
    idx = hits.index
    colors = gaussians.colors.float()
    bg = torch.tensor(BACKGROUND, dtype=torch.float32)
    rgb = colors[idx.clamp(min=0)] if len(gaussians) else bg.expand(*idx.shape, 3)
    rgb = torch.where(hits.hit[..., None], rgb, bg)
    return rgb, hits.depth, idx


def split_sky(gaussians: GaussianScene) -> tuple[GaussianScene, GaussianScene]:
    """(surface Gaussians, sky Gaussians): the sky dome's are the ones labelled free (ops.lifting.sky)."""
    sky = gaussians.labels == semantics.FREE
    return tuple(GaussianScene(*(getattr(gaussians, f)[m] for f in GaussianScene.FIELDS)) for m in (~sky, sky))


def render_gaussians(gaussians: GaussianScene, cameras: Camera | CameraRig, mode: str = "box") -> GaussianRender:
    """Render a scene into a camera or every camera of a rig (all of one image size). The surfaces give
    depth, semantic and alpha; a sky dome (Gaussians labelled free) is drawn behind them in RGB only, as
    the background, so it never blends into a surface's depth or counts as coverage."""
    if mode not in MODES:
        raise ValueError(f"render mode {mode!r} is not one of {', '.join(MODES)}")
    rig = as_rig(cameras)
    surfaces, sky = split_sky(gaussians)
    if mode == "box":
        g = surfaces.to("cpu")
        views = ViewParams.from_rig(rig)
        rgb, depth, idx = render_boxes_float(g, views)
        hit = idx >= 0
        labels = g.labels.to(torch.uint8)
        free = torch.tensor(semantics.FREE, dtype=torch.uint8)
        sem = torch.where(hit, labels[idx.clamp(min=0)] if len(g) else free, free)
        alpha = torch.where(hit, g.opacities.float()[idx.clamp(min=0)] if len(g) else 0.0, torch.zeros(()))
        if len(sky):
            rgb = torch.where(hit[..., None], rgb, render_boxes_float(sky.to("cpu"), views)[0])
    else:
        out = splat_render(surfaces, rig, with_semantic=True, background=BACKGROUND)
        rgb, depth, sem, alpha = out.rgb, out.depth, out.semantic, out.alpha
        if len(sky):  # BACKGROUND is black, so rgb is the surfaces' premultiplied colour: "over" the sky
            rgb = rgb + (1 - alpha[..., None]) * splat_render(sky, rig).rgb
    rgb8 = (rgb.detach().cpu().clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy()
    return GaussianRender(rgb8, depth.detach().cpu().float().numpy(), sem.cpu().to(torch.uint8).numpy(),
                          alpha.detach().cpu().float().numpy())
