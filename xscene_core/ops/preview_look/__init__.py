"""The preview look: a deterministic, photo-like RGB image per view from its semantic + depth render.

It is the editor's fast look and the image model's training target, so it must read as a street: every
class gets a material with procedural texture evaluated in world coordinates (so the views of one scene
agree where they overlap), lit by a sun and a sky chosen by the time of day, then weather and night
effects. Inputs and outputs:

    preview_look(views: RenderedViews, description: SceneDescription | None, layout: Layout | None,
                 seed: int, occupancy: Occupancy | None) -> MultiViewImages  (uint8 [V, H, W, 3])

- layout (optional, in the rig's world frame): lane paint and crosswalks, car paint colours (Box.color),
  vehicle lights and street lamps at night (ops.street_lights, the positions the image model's condition
  marks), contact shadows under vehicles.
- environment (of the description): facade palettes and the window grid (ops.facade_windows, the windows
  the condition marks).
- occupancy (optional, in the rig's world frame): cast sun shadows, traced through the voxel grid.
- seed: the sun's azimuth, facade colours, lit windows, rain and snow; the same inputs give the same image.

Shading works in linear RGB with normals from the depth map (snapped to the voxels' up/horizontal
faces; smoothed over walls and foliage) and ends with a filmic tone curve and sRGB encoding.
"""

from __future__ import annotations

import numpy as np
import torch

from ...types.images import MultiViewImages, RenderedViews
from ...types.layout import Layout
from ...types.occupancy import Occupancy
from ...types.scene import SceneDescription
from .lights import SUN_GAIN, _glows
from .noise import fbm
from .pixels import _ground_height, _pixels
from .shading import _shade
from .sky import _fog, _sky, _sky_light_color, _skyline
from .style import Style, lighting
from .surfaces import _materials, _rgb
from .weather import _tonemap, _weather_overlay

# Re-exported: the public names of the former single module.
from .classes import ID, TWO_WHEELERS, VEHICLES  # noqa: F401
from ..road_paint import PAINT_RES  # noqa: F401
from ..street_lights import street_lamps
from ..street_lights import LAMP_HEIGHT, LAMP_RANGE, LAMP_SPACING  # noqa: F401
from .lights import HEADLIGHT_EGO, HEADLIGHT_POWER, LAMP_COLOR, LAMP_CUTOFF, LAMP_POWER  # noqa: F401
from .noise import value_noise  # noqa: F401
from .style import NIGHT_LIGHT, Lighting  # noqa: F401
from .surfaces import PAINTS  # noqa: F401


def preview_look(views: RenderedViews, description: SceneDescription | None = None, layout: Layout | None = None,
                 seed: int = 0, occupancy: Occupancy | None = None) -> MultiViewImages:
    """The preview RGB of every view (see the module docstring). Deterministic given its inputs."""
    style = Style.from_description(description)
    light = lighting(style, seed)
    px = _pixels(views)
    ground_z = _ground_height(px)
    surf = _materials(px, style, layout, description, seed, ground_z, light)
    # street lamp heads (float [L, 3]), lit at night: shared by the shading and the glows
    lamps = street_lamps(layout, px.origin.numpy()) if light.night else np.zeros((0, 3), np.float32)
    color = _shade(px, surf, light, style, layout, occupancy, ground_z, seed, lamps)
    # Misses: sky above the horizon, a distant skyline, far ground below the horizon.
    miss = torch.nonzero(~px.hit)[:, 0]
    dist = torch.where(px.hit, (px.P - px.origin[px.view]).norm(dim=-1), torch.zeros(()))
    if len(miss):
        ray = px.ray[miss]
        sky = _sky(ray, light, style, seed)
        elev = torch.asin(ray[:, 2].clamp(-1, 1))
        sky_h = _skyline(ray, style, seed)
        below = ray[:, 2] < -1e-3
        far_t = ((ground_z - px.origin[px.view[miss], 2]) / ray[:, 2].clamp(max=-1e-3)).clamp(max=2000.0)
        far_t = torch.where(below, far_t, torch.full_like(far_t, 2000.0))
        far_p = px.origin[px.view[miss]] + ray * far_t[:, None]
        far_albedo = {"rural": (0.10, 0.13, 0.05), "highway": (0.11, 0.12, 0.07)}.get(style.environment, (0.09, 0.09, 0.09))
        tex = 0.8 + 0.4 * fbm(far_p[:, :2] / 9.0, seed + 95, 2)
        amb = _sky_light_color(light)
        ground_col = _rgb(far_albedo)[None] * tex[:, None] * (amb + light.sun * float(light.sun_dir[2].clamp(min=0)) * SUN_GAIN)[None]
        skyline_col = light.horizon * 0.55 + light.zenith * 0.1
        if light.night:
            skyline_col = light.horizon * 0.5
        c = torch.where((elev < sky_h)[:, None] & ~below[:, None], skyline_col.expand_as(sky), sky)
        c = torch.where(below[:, None], ground_col, c)
        dist_m = torch.where(below, far_t, torch.where(elev < sky_h, torch.full_like(far_t, 300.0), torch.zeros_like(far_t)))
        color[miss] = c
        dist[miss] = dist_m
    # Aerial perspective / fog (the sky itself is already the fog colour at the horizon).
    fog_col = light.horizon * (0.9 if not light.night else 1.2)
    color = _fog(color, dist, light, fog_col)
    V, H, W = px.shape
    image = color.reshape(V, H, W, 3)
    image = _glows(px, image, layout, light, style, ground_z, lamps)
    image = _weather_overlay(image, light, style, seed)
    return MultiViewImages(_tonemap(image, light, seed), views.rig)
