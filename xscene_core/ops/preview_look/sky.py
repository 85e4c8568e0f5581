"""The sky (gradient, sun, clouds, stars, city glow), its light, the distant skyline and fog."""

from __future__ import annotations

import math

import torch

from .noise import _hash, fbm
from .style import Lighting, Style
from .surfaces import _rgb


def _sky_light_color(light: Lighting) -> torch.Tensor:
    """Irradiance float [3] from the sky dome on an up-facing surface: the sky's mean colour, half
    desaturated (the dome's blue is partly cancelled by bounce light from the ground)."""
    c = light.zenith * 0.4 + light.horizon * 0.6
    c = c / max(float(c.max()), 1e-3)
    c = c * 0.5 + c.mean() * 0.5
    return c * light.sky_light * 1.6


def _sky(ray: torch.Tensor, light: Lighting, style: Style, seed: int, detail: bool = True) -> torch.Tensor:
    """Sky radiance float [N, 3] for unit view rays [N, 3]: zenith-horizon gradient, sun disc and glow,
    and with detail=True (seen directly, not in a blurry reflection) clouds and stars."""
    up = ray[:, 2].clamp(min=-0.2)
    t = (up.clamp(min=0) ** 0.5)[:, None]
    sky = light.horizon[None] * (1 - t) + light.zenith[None] * t
    cos_sun = ray @ light.sun_dir
    if not light.night:
        glow = torch.exp((cos_sun - 1) * 12.0) * 0.6 + torch.exp((cos_sun - 1) * 300.0) * 4.0
        disc = (cos_sun > 0.9997).float() * 40.0
        # The disc shows as strongly as the sun shines through the weather; its glow a little even
        # behind clouds.
        strength = float(light.sun.max())
        hue = light.sun / max(strength, 1e-6)
        sky = sky + hue[None] * (glow * min(1.0, 0.3 + strength) + disc * strength)[:, None]
    if detail and style.weather in ("cloudy", "overcast", "rainy", "snowy"):
        # Clouds: noise on a plane 1 km up, seen through the ray.
        z = ray[:, 2].clamp(min=0.02)
        uv = ray[:, :2] / z[:, None] * 1.0
        c = fbm(uv * 1.5, seed + 70, 4)
        cover = {"cloudy": 0.45, "overcast": 0.2, "rainy": 0.15, "snowy": 0.2}[style.weather]
        amount = ((c - cover) / 0.25).clamp(0, 1) * (ray[:, 2] > 0).float() * (1 - torch.exp(-ray[:, 2].clamp(min=0) * 8))
        tone = 0.9 if style.weather == "cloudy" else 0.75
        cloud_col = light.horizon * tone * (1.15 if style.weather == "cloudy" else 1.0)
        shade = 0.75 + 0.35 * fbm(uv * 3.0, seed + 71, 2)
        sky = sky * (1 - amount[:, None]) + (cloud_col[None] * shade[:, None]) * amount[:, None]
    if detail and light.night and style.weather in ("sunny", "cloudy"):
        cell = torch.floor(torch.stack([torch.atan2(ray[:, 1], ray[:, 0]) * 300, ray[:, 2] * 300], -1)).long()
        star = (_hash(seed + 72, *cell.T) > 0.9985).float() * (ray[:, 2] > 0.08).float()
        sky = sky + star[:, None] * 0.12
    if light.night:
        # City glow on the horizon.
        glow = torch.exp(-up.clamp(min=0) * 10)[:, None] * _rgb((0.06, 0.04, 0.03)) * (2.0 if style.environment == "downtown" else 0.8)
        sky = sky + glow
    return sky


def _skyline(ray: torch.Tensor, style: Style, seed: int) -> torch.Tensor:
    """Elevation (radians) of a distant skyline above the horizon along each ray's azimuth: buildings
    downtown, tree lines elsewhere (the occupancy only reaches 40 m; the world goes on)."""
    az = torch.atan2(ray[:, 1], ray[:, 0])
    blocks = {"downtown": 48.0, "industrial": 30.0}.get(style.environment)
    height = {"downtown": 0.09, "suburban": 0.035, "residential": 0.04, "industrial": 0.045, "rural": 0.025, "highway": 0.02}[style.environment]
    if blocks is not None:
        cell = torch.floor((az + math.pi) * blocks).long()
        h = _hash(seed + 80, cell) ** 1.5 * height + 0.008
    else:
        h = fbm(torch.stack([torch.cos(az), torch.sin(az)], -1) * 14.0, seed + 81, 3) * height
    return h


def _fog(color: torch.Tensor, dist: torch.Tensor, light: Lighting, fog_col: torch.Tensor) -> torch.Tensor:
    f = 1 - torch.exp(-dist / light.fog_distance)
    return color * (1 - f[:, None]) + fog_col[None] * f[:, None]
