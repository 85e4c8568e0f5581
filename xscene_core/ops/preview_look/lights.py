"""Lights and shadows: street lamps and their light, sun and contact shadows, light sources and their glows."""

from __future__ import annotations

import math

import numpy as np
import torch

from ... import semantics
from ...types.layout import Layout
from ...types.occupancy import Occupancy
from ..condition_maps import box_solids
from ..street_lights import FIXTURE_RADIUS, HIDDEN_MARGIN, LIGHT_KINDS, vehicle_lights
from .classes import TWO_WHEELERS, VEHICLES
from .pixels import _Pixels
from .style import Lighting, Style


# Night lights.
LAMP_COLOR = (1.0, 0.72, 0.42)
LAMP_POWER = 14.0
LAMP_CUTOFF = 3.0  # lamps shine downwards: intensity ~ cos(angle from nadir) ** LAMP_CUTOFF
HEADLIGHT_POWER = 40.0
HEADLIGHT_EGO = (3.2, 0.0, 0.7)  # the ego car's head lights in the ego frame (nuScenes: origin at the rear axle)
SUN_GAIN = 2.4  # sun irradiance on a surface facing it, relative to an albedo-1 white


# Lights and shading ------------------------------------------------------------------------------------------

def _lamp_light(P: torch.Tensor, n: torch.Tensor, ray: torch.Tensor, pos: torch.Tensor, power: float,
                radius: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Light of downward street lamps at pos [L, 3] on points P [N, 3] with normals n seen along unit
    rays: (diffuse irradiance [N], glossy highlight [N]) summed over lamps -- inverse-square, the
    luminaire's cut-off towards the horizontal, Lambert and a Blinn-Phong lobe (scaled by gloss later)."""
    diffuse, glossy = torch.zeros(P.shape[0]), torch.zeros(P.shape[0])
    for s in range(0, P.shape[0], 65536):
        d = pos[None] - P[s:s + 65536, None]  # [M, L, 3]
        r2 = (d * d).sum(-1)
        r = r2.sqrt().clamp(min=1e-6)
        l = d / r[..., None]
        nn = n[s:s + 65536, None]
        cos = (l * nn).sum(-1).clamp(min=0)
        e = power * l[..., 2].clamp(min=0) ** LAMP_CUTOFF / (r2 + radius * radius)
        h = l - ray[s:s + 65536, None]
        h = h / h.norm(dim=-1, keepdim=True).clamp(min=1e-6)
        diffuse[s:s + 65536] = (e * cos).sum(-1)
        glossy[s:s + 65536] = (e * (h * nn).sum(-1).clamp(min=0) ** 60 * 8.0).sum(-1)
    return diffuse, glossy


def _sun_shadow(P: torch.Tensor, n: torch.Tensor, sun_dir: torch.Tensor, occupancy: Occupancy) -> torch.Tensor:
    """Sun visibility float [N] in [0, 1] of surface points: march from each point towards the sun
    through the occupancy grid (the rig's world frame = the grid frame) until it leaves the grid."""
    grid = occupancy.grid
    occ = torch.from_numpy(occupancy.labels != semantics.FREE)
    lower = torch.tensor(grid.lower, dtype=torch.float32)
    shape = torch.tensor(grid.shape)
    vs = grid.voxel_size
    step = vs * 0.5
    # Leave the grid top within this many steps; a low sun is weak and its long shadows are capped.
    z_top = grid.upper[2]
    max_dist = min(30.0, (z_top - float(grid.lower[2])) / max(float(sun_dir[2]), 0.05))
    steps = int(math.ceil(max_dist / step))
    lit = torch.ones(P.shape[0])
    active = torch.nonzero((n @ sun_dir) > 0)[:, 0]
    lit[(n @ sun_dir) <= 0] = 0.0
    # Start just off the surface so the point's own voxel does not shadow it.
    pos = P[active] + n[active] * (vs * 0.3) + sun_dir * (vs * 0.3)
    for _ in range(steps):
        if len(active) == 0:
            break
        pos = pos + sun_dir * step
        ijk = torch.floor((pos - lower) / vs).long()
        inside = ((ijk >= 0) & (ijk < shape)).all(-1)
        above = pos[:, 2] >= z_top
        ijk = torch.minimum(ijk.clamp(min=0), shape - 1)
        blocked = inside & occ[ijk[:, 0], ijk[:, 1], ijk[:, 2]]
        lit[active[blocked]] = 0.0
        keep = ~blocked & ~above
        active, pos = active[keep], pos[keep]
    return lit


def _vehicle_contact_shadow(P: torch.Tensor, layout: Layout | None, ground_z: float) -> torch.Tensor:
    """Ambient darkening float [N] in [0, 1] (1 = none) of ground points under and around vehicle boxes."""
    out = torch.ones(P.shape[0])
    if layout is None:
        return out
    boxes = [b for b in layout.boxes if b.label in VEHICLES + TWO_WHEELERS]
    if not boxes:
        return out
    c, h, rot = box_solids(boxes)
    # Only ground points within reach of a box (its bounding circle + 1.5 m) need exact distances:
    # mark those 1 m cells of a coarse BEV grid and look every ground point up.
    reach = h[:, :2].norm(dim=-1) + 1.5
    lo = torch.floor((c[:, :2] - reach[:, None]).min(0).values)
    lo_i, hi_i = torch.floor(c[:, :2] - reach[:, None] - lo).long(), torch.ceil(c[:, :2] + reach[:, None] - lo).long()
    near = torch.zeros(int(hi_i[:, 0].max()) + 1, int(hi_i[:, 1].max()) + 1, dtype=torch.bool)
    for (x0, y0), (x1, y1) in zip(lo_i.tolist(), hi_i.tolist()):
        near[x0:x1 + 1, y0:y1 + 1] = True
    cell = torch.floor(P[:, :2] - lo).long()
    inside = (cell >= 0).all(-1) & (cell[:, 0] < near.shape[0]) & (cell[:, 1] < near.shape[1])
    cell = torch.minimum(cell.clamp(min=0), torch.tensor(near.shape) - 1)
    cand = (P[:, 2] < ground_z + 0.15) & inside & near[cell[:, 0], cell[:, 1]]
    near_ground = torch.nonzero(cand)[:, 0]
    if len(near_ground) == 0:
        return out
    Q = P[near_ground]
    rel = torch.einsum("bji,mbj->mbi", rot, Q[:, None, :] - c[None])[..., :2]
    outside = (rel.abs() - h[None, :, :2]).clamp(min=0).norm(dim=-1)  # [M, B] metres outside the footprint
    occl = torch.exp(-outside / 0.35).max(1).values
    out[near_ground] = 1 - 0.75 * occl
    return out


def _light_sources(layout: Layout | None, light: Lighting, style: Style, lamps: np.ndarray):
    """Visible light sources (ops.street_lights): positions float [S, 3], colours float [S, 3] (linear
    radiance scale) and sizes float [S] (metres): the street lamp heads `lamps` float [L, 3] at night
    (ops.street_lights.street_lamps); head and tail lights of vehicles that are not parked, at night or in
    rain and fog."""
    pos, col = [], []
    if light.night:
        lamps = np.asarray(lamps, np.float32)
        pos.append(lamps)
        col.append(np.tile(np.asarray(LAMP_COLOR, np.float32) * 3.0, (len(lamps), 1)))
    if layout is not None and (light.night or style.weather in ("rainy", "foggy")):
        gain = 1.0 if light.night else 0.4
        cars = vehicle_lights(layout)
        rgb = {LIGHT_KINDS.index("head_light"): (2.5, 2.3, 2.0), LIGHT_KINDS.index("tail_light"): (1.0, 0.05, 0.02)}
        pos.append(cars.positions)
        col.append(np.asarray([rgb[int(k)] for k in cars.kinds], np.float32).reshape(-1, 3) * gain)
    P = torch.from_numpy(np.concatenate(pos)) if pos else torch.zeros(0, 3)
    C = torch.from_numpy(np.concatenate(col)) if col else torch.zeros(0, 3)
    return P, C, torch.full((len(P),), FIXTURE_RADIUS)


def _glows(px: _Pixels, image: torch.Tensor, layout: Layout | None, light: Lighting, style: Style,
           ground_z: float, lamps: np.ndarray) -> torch.Tensor:
    """Add light sources as soft glows (a core and a halo, larger in rain and fog), with their streaky
    reflections on a wet road. image: float [V, H, W, 3] radiance, returned updated; lamps: the street
    lamp heads float [L, 3] (_light_sources)."""
    V, H, W = px.shape
    S, colors, sizes = _light_sources(layout, light, style, lamps)
    if len(S) == 0:
        return image
    depth = px.depth.reshape(V, H, W)
    hit = px.hit.reshape(V, H, W)
    halo_gain = 0.25 if light.wetness > 0.5 or style.weather == "foggy" else 0.08
    mirror = S.clone()
    mirror[:, 2] = 2 * ground_z - mirror[:, 2]

    def project(T, K, pts):
        pc = pts @ T[:3, :3].T + T[:3, 3]
        z = pc[:, 2].clamp(min=1e-3)
        return K[0, 0] * pc[:, 0] / z + K[0, 2], K[1, 1] * pc[:, 1] / z + K[1, 2], pc[:, 2]

    def splat(v: int, u: float, r: float, sx: float, sy: float, reach: float, fn, color: torch.Tensor, mask=None):
        """Add fn(dy, dx) * color on the window of +-reach pixels around (r, u)."""
        i0, i1 = max(0, int(r - reach)), min(H, int(r + reach) + 1)
        j0, j1 = max(0, int(u - reach)), min(W, int(u + reach) + 1)
        if i0 >= i1 or j0 >= j1:
            return
        dy = torch.arange(i0, i1, dtype=torch.float32)[:, None] - r
        dx = torch.arange(j0, j1, dtype=torch.float32)[None, :] - u
        w = fn(dy / sy, dx / sx)
        if mask is not None:
            w = w * mask[i0:i1, j0:j1]
        image[v, i0:i1, j0:j1] += w[..., None] * color

    for v in range(V):
        T, K = px.T_cam_world[v], px.K[v]
        us, rs, zs = project(T, K, S)
        um, rm, zm = project(T, K, mirror)
        for q in torch.nonzero((zs > 0.5) & (us > -40) & (us < W + 40) & (rs > -40) & (rs < H + 40))[:, 0].tolist():
            u, r, z = float(us[q]), float(rs[q]), float(zs[q])
            ui, ri = int(round(u)), int(round(r))
            if 0 <= ui < W and 0 <= ri < H and bool(hit[v, ri, ui]) and float(depth[v, ri, ui]) < z - HIDDEN_MARGIN:
                continue  # hidden behind something nearer
            rad = max(1.2, float(K[0, 0]) * float(sizes[q]) / z)
            splat(v, u, r, rad, rad, rad * 3, lambda a, b: torch.exp(-(a * a + b * b) / 2), colors[q])
            splat(v, u, r, rad * 3, rad * 3, min(rad * 3 * 6, 60.0),
                  lambda a, b: torch.exp(-(a * a + b * b).sqrt()) * halo_gain, colors[q])
            if light.wetness > 0.5 and float(zm[q]) > 0.5:
                # The light's mirror image in the wet road, smeared vertically by the ripples.
                below = torch.zeros(H, W)
                below[min(max(ri + 1, 0), H):] = 1.0
                splat(v, float(um[q]), float(rm[q]), rad * 0.8, rad * 4, min(rad * 4 * 3, 60.0),
                      lambda a, b: torch.exp(-(a * a + b * b) / 2) * 0.5, colors[q], below * hit[v].float())
    return image
