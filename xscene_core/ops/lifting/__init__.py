"""Lifting a world to 3D Gaussians: surface patches of the occupancy coloured from the views that see
them (lift), a sky dome coloured from the pixels that see no geometry (sky), optional refinement through
a differentiable splat renderer (refine, splat), and novel-view renders (render). The Gaussian stage
(stages.gaussians) wires them."""

from .colour import ColourSums, colour_sums, fill_unseen
from .lift import LiftedSurface, PlacedGrid, concat_scenes, lift_chunk, lift_world, owners
from .refine import RefineView, refine_gaussians
from .render import GaussianRender, render_gaussians
from .sky import lift_sky
from .splat import SplatOutput, splat_render, splat_render_gsplat, splat_render_torch
from .surfels import SurfacePatches, patches_to_gaussians, surface_patches

__all__ = ["ColourSums", "GaussianRender", "LiftedSurface", "PlacedGrid", "RefineView", "SplatOutput",
           "SurfacePatches", "colour_sums", "concat_scenes", "fill_unseen", "lift_chunk", "lift_sky", "lift_world",
           "owners", "patches_to_gaussians", "refine_gaussians", "render_gaussians", "splat_render", "splat_render_gsplat",
           "splat_render_torch", "surface_patches"]
