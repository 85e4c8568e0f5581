"""Shading of hit pixels: snow and wetness, sun, sky and artificial light, reflections and glints."""

from __future__ import annotations

import numpy as np
import torch

from ...types.layout import Layout
from ...types.occupancy import Occupancy
from .classes import ID
from .lights import (HEADLIGHT_EGO, HEADLIGHT_POWER, LAMP_COLOR, LAMP_POWER, SUN_GAIN, _lamp_light,
                     _sun_shadow, _vehicle_contact_shadow)
from .noise import fbm
from .pixels import _Pixels
from .sky import _sky, _sky_light_color
from .style import Lighting, Style
from .surfaces import _Surface, _mix, _rgb


def _shade(px: _Pixels, surf: _Surface, light: Lighting, style: Style, layout: Layout | None,
           occupancy: Occupancy | None, ground_z: float, seed: int, lamps: np.ndarray) -> torch.Tensor:
    """Radiance float [N, 3] of hit pixels (zeros elsewhere); lamps: the street lamp heads float [L, 3] that
    light the night (ops.street_lights.street_lamps)."""
    N = px.P.shape[0]
    k = torch.nonzero(px.hit)[:, 0]
    color = torch.zeros(N, 3)
    if len(k) == 0:
        return color
    P, sem = px.P[k], px.sem[k]
    shade_n = torch.where(((sem == ID["manmade"]) | (sem == ID["vegetation"]))[:, None], px.smooth[k], px.normal[k])
    albedo, gloss, emission = surf.albedo[k], surf.gloss[k], surf.emission[k]
    # Snow settles on up-facing surfaces (less on roads, where traffic clears it).
    if light.snow > 0:
        up = shade_n[:, 2].clamp(min=0) ** 2
        road = (sem == ID["driveable_surface"]).float()
        # Traffic keeps the road mostly clear: grey slush with a little snow, paint still showing.
        slush = fbm(P[:, :2] / 0.7, seed + 90, 2)
        cover = up * light.snow * torch.where(road > 0, 0.1 + 0.35 * slush, torch.ones_like(slush))
        albedo = _mix(albedo, _rgb((0.78, 0.80, 0.84)).expand_as(albedo), cover.clamp(0, 1) * 0.92)
    # Wet surfaces are darker and glossier (puddles on the road).
    if light.wetness > 0:
        flat = (shade_n[:, 2] > 0.5).float()
        puddle = ((fbm(P[:, :2] / 1.2, seed + 91, 3) - 0.55) / 0.08).clamp(0, 1) * flat * (sem == ID["driveable_surface"]).float()
        puddle = puddle * float(light.wetness >= 0.5)
        albedo = albedo * (1 - 0.35 * light.wetness * flat)[:, None]
        gloss = gloss + light.wetness * flat * (0.12 + 0.55 * puddle)
    # Sun (Lambert) with cast shadows from the voxels when the occupancy is given.
    ndl = (shade_n @ light.sun_dir).clamp(min=0)
    vis = torch.ones(len(k))
    if occupancy is not None and float(light.sun.max()) > 0.05:
        vis = _sun_shadow(P, px.normal[k], light.sun_dir, occupancy)
    direct = light.sun[None] * (ndl * vis)[:, None] * SUN_GAIN
    # Sky light: from above for up-facing surfaces, half for walls, bounced light from below.
    hemi = (0.5 + 0.5 * shade_n[:, 2])[:, None]
    ambient = _sky_light_color(light)[None] * (hemi + (1 - hemi) * 0.2)
    ambient = ambient * _vehicle_contact_shadow(P, layout, ground_z)[:, None]
    if light.night:
        ambient = ambient + _rgb((0.01, 0.011, 0.016))
    # Night: street lamps and the ego car's head lights.
    artificial = torch.zeros(len(k), 3)
    lamp_gloss = torch.zeros(len(k), 3)
    if light.night:
        lamps = torch.from_numpy(np.asarray(lamps, np.float32))
        if len(lamps):
            diffuse, glossy = _lamp_light(P, shade_n, px.ray[k], lamps, LAMP_POWER)
            artificial = artificial + diffuse[:, None] * _rgb(LAMP_COLOR)[None]
            lamp_gloss = glossy[:, None] * _rgb(LAMP_COLOR)[None]
        # The ego car's head lights: a cone ahead of the ego.
        T = px.T_world_ego
        fwd = T[:3, 0] * torch.tensor([1.0, 1.0, 0.0])
        fwd = fwd / fwd.norm().clamp(min=1e-6)
        src = T[:3, :3] @ torch.tensor(HEADLIGHT_EGO) + T[:3, 3]
        d = P - src[None]
        dist = d.norm(dim=-1).clamp(min=0.5)
        cone = ((d @ fwd) / dist - 0.85).clamp(min=0) / 0.15
        # Roads are seen lit at grazing head-light incidence (retro-reflection): wrap the Lambert term.
        ndl_h = 0.3 + 0.7 * ((-d * shade_n).sum(-1) / dist).clamp(min=0)
        artificial = artificial + (HEADLIGHT_POWER * cone * ndl_h / (dist ** 2 + 1))[:, None] * _rgb((1.0, 0.95, 0.85))[None]
    diffuse = albedo * (direct + ambient + artificial)
    # Reflection of the sky (glossy surfaces, Fresnel).
    ray = px.ray[k]
    cos_i = (-(ray * shade_n).sum(-1)).clamp(0, 1)
    # Schlick's Fresnel, damped for rough surfaces (dry asphalt has little grazing sheen, wet has a lot).
    fresnel = gloss + (1 - gloss) * (1 - cos_i) ** 5 * (2 * gloss).clamp(max=1)
    refl_dir = ray - 2 * (ray * shade_n).sum(-1, keepdim=True) * shade_n
    refl = _sky(refl_dir, light, style, seed, detail=False)
    # A vertical mirror mostly reflects the street and the buildings opposite, darker than the sky.
    refl = refl * (0.35 + 0.65 * shade_n[:, 2].clamp(min=0))[:, None]
    if light.night:
        refl = refl * 0.6
    spec = fresnel.clamp(0, 1)[:, None] * refl * (gloss > 0).float()[:, None]
    # Sun glints on wet or glossy surfaces.
    half = light.sun_dir[None] - ray
    half = half / half.norm(dim=-1, keepdim=True)
    glint = ((half * shade_n).sum(-1).clamp(min=0) ** 200) * gloss * vis
    spec = spec + glint[:, None] * light.sun[None] * 6.0 + lamp_gloss * gloss[:, None]
    color[k] = diffuse * (1 - fresnel.clamp(0, 1)[:, None] * 0.5) + spec + emission
    return color
