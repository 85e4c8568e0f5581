"""Materials: albedo, gloss and emission per pixel by class (road, ground, foliage, facades, vehicles, ...)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ... import semantics
from ...types.layout import Layout
from ...types.scene import SceneDescription
from .classes import ID, TWO_WHEELERS, VEHICLES
from ..facade_paint import facade_blocks, facade_colors
from ..facade_windows import SHOP_FRONTS, WINDOW_GRIDS, window_grid
from ..road_paint import paint_canvas
from .layout_textures import _box_lookup
from .noise import _detail, _hash, fbm, value_noise
from .pixels import _Pixels
from .style import Lighting, Style


# Paint names the layout uses (Box.color) and the description may name, as linear RGB.
PAINTS = {
    "white": (0.80, 0.80, 0.80), "black": (0.025, 0.025, 0.028), "silver": (0.50, 0.52, 0.55),
    "gray": (0.20, 0.21, 0.22), "grey": (0.20, 0.21, 0.22), "red": (0.55, 0.04, 0.03),
    "blue": (0.05, 0.13, 0.45), "dark blue": (0.02, 0.04, 0.14), "green": (0.06, 0.22, 0.08),
    "yellow": (0.75, 0.55, 0.05), "beige": (0.55, 0.46, 0.32), "orange": (0.75, 0.25, 0.03),
    "brown": (0.20, 0.10, 0.05),
}
_DEFAULT_PAINTS = ("white", "black", "silver", "gray", "red", "blue", "white", "silver")

# Terrain colours (grass, dirt) per environment.
_TERRAIN = {
    "rural": ((0.16, 0.22, 0.06), (0.30, 0.24, 0.13)), "highway": ((0.18, 0.22, 0.08), (0.28, 0.24, 0.15)),
    "industrial": ((0.15, 0.17, 0.08), (0.27, 0.24, 0.18)),
}
_TERRAIN_DEFAULT = ((0.10, 0.20, 0.04), (0.25, 0.20, 0.12))


# Materials -------------------------------------------------------------------------------------------------

@dataclass
class _Surface:
    """Per-pixel material (flattened pixels): albedo [N, 3] linear RGB, gloss [N] in [0, 1] (sky reflection
    strength at normal incidence, raised by Fresnel), emission [N, 3] (linear RGB radiance)."""

    albedo: torch.Tensor
    gloss: torch.Tensor
    emission: torch.Tensor


def _rgb(v) -> torch.Tensor:
    return torch.tensor(v, dtype=torch.float32)


def _mix(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return a + (b - a) * t[:, None]


def _materials(px: _Pixels, style: Style, layout: Layout | None, description: SceneDescription | None,
               seed: int, ground_z: float, light: Lighting) -> _Surface:
    N = px.P.shape[0]
    albedo = torch.zeros(N, 3)
    gloss = torch.zeros(N)
    emission = torch.zeros(N, 3)
    P, n, sem, fp = px.P, px.normal, px.sem, px.footprint
    inner = P - 0.2 * n  # a point inside the hit voxel: stable cell hashes on faces that sit on cell edges

    def subset(*ids: int) -> torch.Tensor:
        m = torch.zeros(N, dtype=torch.bool)
        for i in ids:
            m |= sem == i
        return torch.nonzero(m)[:, 0]

    # Road: asphalt with large patches and fine grain, paint from the layout.
    k = subset(ID["driveable_surface"])
    if len(k):
        xy = P[k, :2]
        patches = fbm(xy / 7.0, seed + 1, 3)
        grain = value_noise(xy / 0.15, seed + 2) * _detail(0.15, fp[k])
        base = 0.062 + 0.04 * patches + 0.025 * (grain - 0.5)
        a = base[:, None] * _rgb((1.0, 1.0, 1.04))
        canvas = paint_canvas(layout) if layout is not None else None
        if canvas is not None:
            paint = canvas.sample(xy)
            wear = 0.6 + 0.4 * value_noise(xy / 0.7, seed + 3)
            a = _mix(a, _rgb((0.75, 0.75, 0.72)).expand_as(a), paint[:, 0] * wear)
            a = _mix(a, _rgb((0.70, 0.45, 0.04)).expand_as(a), paint[:, 1] * wear)
        albedo[k] = a
        gloss[k] = 0.04
    # Sidewalks: concrete slabs with joints; curbs lighter.
    k = subset(ID["sidewalk"])
    if len(k):
        xy = P[k, :2]
        slab = 1.5
        jx = ((xy / slab) - torch.round(xy / slab)).abs().min(-1).values * slab
        joint = (jx < 0.03).float() * _detail(0.1, fp[k])
        tone = 0.19 + 0.05 * fbm(xy / 3.0, seed + 4, 2) + 0.04 * (_hash(seed + 5, *torch.floor(xy / slab).long().T) - 0.5)
        tone = tone * (1 - 0.35 * joint)
        curb = n[k, 2].abs() < 0.5
        tone = torch.where(curb, tone * 1.25, tone)
        albedo[k] = tone[:, None] * _rgb((1.0, 0.97, 0.92))
        gloss[k] = 0.02
    # Other flat ground: gravel / paving.
    k = subset(ID["other_flat"])
    if len(k):
        g = fbm(P[k, :2] / 0.8, seed + 6, 3)
        albedo[k] = (0.16 + 0.1 * g)[:, None] * _rgb((1.0, 0.95, 0.85))
    # Terrain: grass and dirt.
    k = subset(ID["terrain"])
    if len(k):
        grass, dirt = (_rgb(c) for c in _TERRAIN.get(style.environment, _TERRAIN_DEFAULT))
        xy = P[k, :2]
        t = (fbm(xy / 5.0, seed + 7, 3) - 0.35).clamp(0, 1) * 1.6
        fine = 0.75 + 0.5 * value_noise(xy / 0.25, seed + 8) * _detail(0.25, fp[k]) + 0.25 * (1 - _detail(0.25, fp[k]))
        albedo[k] = _mix(grass.expand(len(k), 3), dirt.expand(len(k), 3), t.clamp(0, 1)) * fine[:, None]
    # Vegetation: per-tree tint, leafy clumps.
    k = subset(ID["vegetation"])
    if len(k):
        cell = torch.floor(inner[k] / 4.0).long()
        tint = _hash(seed + 9, *cell.T)
        base = _mix(_rgb((0.04, 0.11, 0.025)).expand(len(k), 3), _rgb((0.10, 0.16, 0.03)).expand(len(k), 3), tint)
        clumps = fbm(P[k] / 0.6, seed + 10, 3)
        leaf = 0.45 + 1.1 * clumps * _detail(0.3, fp[k]) + 0.55 * (1 - _detail(0.3, fp[k]))
        low = (P[k, 2] - ground_z < 2.2) & (n[k, 2].abs() < 0.5) & (_hash(seed + 11, *cell.T) < 0.5)
        trunk = _rgb((0.09, 0.06, 0.04)).expand(len(k), 3)
        albedo[k] = torch.where(low[:, None], _mix(base, trunk, torch.full((len(k),), 0.6)), base) * leaf[:, None]
    # Buildings and other man-made structures.
    k = subset(ID["manmade"])
    if len(k):
        albedo[k], gloss[k], emission[k] = _facades(px, k, inner[k], style, seed, ground_z, light)
    # Vehicles.
    k = subset(*VEHICLES, *TWO_WHEELERS)
    if len(k):
        albedo[k], gloss[k], emission[k] = _vehicles(px, k, style, layout, description, seed, ground_z)
    # People.
    k = subset(ID["pedestrian"])
    if len(k):
        # One outfit per person: keyed by their layout box when known, else by a 0.8 m cell.
        box, _ = _box_lookup(layout, P[k], (ID["pedestrian"],), margin=0.2)
        cell = torch.floor(inner[k, :2] / 0.8).long()
        key = torch.where((box >= 0)[:, None], torch.stack([box, -box - 7], -1), cell)
        shirt = torch.stack([_hash(seed + 20 + c, *key.T) for c in range(3)], -1) ** 2 * 0.6 + 0.02
        trousers = _rgb((0.03, 0.035, 0.06)).expand(len(k), 3) * (0.6 + 0.8 * _hash(seed + 23, *key.T))[:, None]
        zr = P[k, 2] - ground_z
        a = torch.where((zr < 0.85)[:, None], trousers, shirt)
        a = torch.where((zr > 1.5)[:, None], _rgb((0.35, 0.22, 0.15)).expand(len(k), 3), a)
        albedo[k] = a
    # Barriers: concrete jersey barriers or red/white plastic.
    k = subset(ID["barrier"])
    if len(k):
        cell = torch.floor(inner[k, :2] / 6.0).long()
        plastic = _hash(seed + 30, *cell.T) < 0.4
        band = ((P[k, 0] + P[k, 1]) % 1.0) < 0.5
        red_white = torch.where(band[:, None], _rgb((0.6, 0.04, 0.03)).expand(len(k), 3), _rgb((0.75, 0.75, 0.72)).expand(len(k), 3))
        concrete = (0.32 + 0.08 * fbm(P[k] / 0.5, seed + 31, 2))[:, None] * _rgb((1.0, 0.98, 0.94))
        albedo[k] = torch.where(plastic[:, None], red_white, concrete)
    # Traffic cones: orange with a white band.
    k = subset(ID["traffic_cone"])
    if len(k):
        zr = P[k, 2] - ground_z
        band = (zr > 0.35) & (zr < 0.5)
        albedo[k] = torch.where(band[:, None], _rgb((0.8, 0.8, 0.8)).expand(len(k), 3), _rgb((0.85, 0.18, 0.02)).expand(len(k), 3))
        gloss[k] = 0.05
    # Unclassified clutter.
    k = subset(semantics.OTHERS)
    if len(k):
        albedo[k] = (0.12 + 0.08 * fbm(P[k] / 0.5, seed + 40, 2))[:, None] * _rgb((1.0, 0.95, 0.9))
    return _Surface(albedo, gloss, emission)


def _facades(px: _Pixels, k: torch.Tensor, inner: torch.Tensor, style: Style, seed: int, ground_z: float,
             light: Lighting):
    """Albedo, gloss and emission of man-made pixels k: walls with a window grid per building block,
    flat roofs; lit windows at night."""
    win_frac = WINDOW_GRIDS[style.environment][2]
    P, ns, fp = px.P[k], px.smooth[k], px.footprint[k]
    M = len(k)
    block = facade_blocks(inner)  # the lit windows' key
    wall = facade_colors(inner, style.environment, seed)
    grime = 0.8 + 0.35 * fbm(P / torch.tensor([2.0, 2.0, 4.0]), seed + 51, 3)
    wall = wall * grime[:, None]
    grid = window_grid(P, ns, ground_z, style.environment)
    win, floor_i, col_i = grid.window, grid.floor, grid.column
    shop = style.environment in SHOP_FRONTS
    vertical = ns[:, 2].abs() < 0.5
    # Windows need a few pixels to read; far away they blend into a darker wall tone.
    vis = _detail(0.5, fp) * vertical.float()
    glass = _rgb((0.035, 0.045, 0.06)).expand(M, 3)
    frame = win.float() * vis
    albedo = _mix(wall, glass, frame * 0.95 + (1 - _detail(0.5, fp)) * vertical.float() * win_frac * 0.5)
    gloss = frame * 0.3
    # Roofs: flat gravel / membrane.
    roof = ns[:, 2] > 0.5
    roof_col = (0.12 + 0.06 * fbm(P[:, :2] / 1.5, seed + 52, 2))[:, None] * _rgb((1.0, 0.97, 0.95))
    albedo = torch.where(roof[:, None], roof_col, albedo)
    gloss = torch.where(roof, torch.zeros_like(gloss), gloss)
    emission = torch.zeros(M, 3)
    if light.night:
        lit = _hash(seed + 53, *block.T, floor_i.long(), col_i.long()) < 0.3
        warm = _rgb((1.0, 0.62, 0.28)) * (0.5 + 0.8 * _hash(seed + 54, *block.T, floor_i.long(), col_i.long()))[:, None]
        emission = (win & lit & vertical).float()[:, None] * warm * 0.45 * torch.maximum(vis, torch.full_like(vis, 0.4))[:, None]
        # Shop fronts glow brighter and cooler.
        if shop:
            # Shops: some lit, each its own brightness and tint, with darker shelves and people inside.
            shop = _hash(seed + 55, *block.T, col_i.long())
            tint = _mix(_rgb((1.0, 0.72, 0.45)).expand(M, 3), _rgb((0.85, 0.9, 1.0)).expand(M, 3), (shop * 7) % 1)
            inside = (0.04 + 0.22 * shop) * (0.5 + fbm(P / torch.tensor([0.5, 0.5, 0.3]), seed + 56, 2))
            emission = torch.where(((floor_i == 0) & win & vertical & (shop < 0.7))[:, None], tint * inside[:, None], emission)
    return albedo, gloss, emission


def _description_paints(description: SceneDescription | None) -> list[str]:
    """Paint names mentioned in the description's foreground things ("white sedan" -> white)."""
    if description is None:
        return []
    out = []
    for thing, attr in description.foreground:
        text = f"{thing} {attr}".lower()
        for name in sorted(PAINTS, key=len, reverse=True):
            if name in text:
                out.append(name)
                break
    return out


def _vehicles(px: _Pixels, k: torch.Tensor, style: Style, layout: Layout | None,
              description: SceneDescription | None, seed: int, ground_z: float):
    """Albedo, gloss and emission of vehicle pixels k: body paint (the layout box's colour, else a colour
    the description names, else a common one), glass band, dark wheels and bumpers, lights."""
    P, n, sem = px.P[k], px.normal[k], px.sem[k]
    M = len(k)
    box, local = _box_lookup(layout, P, VEHICLES + TWO_WHEELERS)
    names = _description_paints(description) or list(_DEFAULT_PAINTS)
    cell = torch.floor((P[:, :2] - 0.2 * n[:, :2]) / 5.0).long()
    fallback = (_hash(seed + 60, *cell.T) * len(names)).long().clamp(max=len(names) - 1)
    paint_table = torch.tensor([PAINTS[c] for c in names], dtype=torch.float32)
    paint = paint_table[fallback]
    if layout is not None and (box >= 0).any():
        box_paint = torch.stack([
            torch.tensor(PAINTS.get(b.color, PAINTS[names[i % len(names)]]), dtype=torch.float32)
            for i, b in enumerate(layout.boxes)
        ])
        paint = torch.where((box >= 0)[:, None], box_paint[box.clamp(min=0)], paint)
    # Height within the vehicle: from its box when known, else from the ground.
    zr = P[:, 2] - ground_z
    heights = {ID["car"]: 1.6, ID["bus"]: 3.4, ID["truck"]: 3.2, ID["trailer"]: 3.6, ID["construction_vehicle"]: 3.2}
    h_default = torch.tensor([heights.get(int(c), 1.4) for c in range(semantics.NUM_CLASSES)])[sem]
    fz = torch.where(box >= 0, local[:, 2] + 0.5, zr / h_default).clamp(0, 1)
    fx = torch.where(box >= 0, local[:, 0] + 0.5, torch.full_like(fz, 0.5))  # 0 rear .. 1 front
    glass = _rgb((0.02, 0.025, 0.03)).expand(M, 3)
    dark = _rgb((0.018, 0.018, 0.02)).expand(M, 3)
    is_car = sem == ID["car"]
    is_bus = sem == ID["bus"]
    is_truck = (sem == ID["truck"]) | (sem == ID["trailer"])
    paint = torch.where((sem == ID["construction_vehicle"])[:, None], _rgb((0.75, 0.5, 0.03)).expand(M, 3), paint)
    # Trucks: painted cab in front, white or grey cargo box behind.
    cargo = is_truck & (fx < 0.72)
    paint = torch.where(cargo[:, None], _rgb((0.62, 0.62, 0.6)).expand(M, 3), paint)
    side = n[:, 2].abs() < 0.5
    a = paint.clone()
    win = torch.zeros(M, dtype=torch.bool)
    win |= is_car & side & (fz > 0.58) & (fz < 0.93)
    win |= is_bus & side & (fz > 0.42) & (fz < 0.85)
    win |= is_truck & ~cargo & side & (fz > 0.55) & (fz < 0.85)
    a = torch.where(win[:, None], glass, a)
    low = side & (fz < 0.22)
    a = torch.where(low[:, None], dark, a)
    a = torch.where(((sem == ID["bicycle"]) | (sem == ID["motorcycle"]))[:, None], _mix(dark, paint, torch.full((M,), 0.4)), a)
    gloss = torch.where(win, torch.full((M,), 0.5), torch.full((M,), 0.12))
    gloss = torch.where(low, torch.zeros(M), gloss)
    # Lights on the front and rear faces: head lights white-yellow, tail lights red.
    emission = torch.zeros(M, 3)
    if layout is not None:
        lx_face = local[:, 0].abs() > 0.45
        band = (fz > 0.35) & (fz < 0.55) & (local[:, 1].abs() > 0.28) & (local[:, 1].abs() < 0.47) & lx_face & (box >= 0)
        front = local[:, 0] > 0
        head = _rgb((1.0, 0.92, 0.75))
        tail = _rgb((0.7, 0.02, 0.01))
        a = torch.where((band & front)[:, None], _rgb((0.7, 0.7, 0.65)).expand(M, 3), a)
        a = torch.where((band & ~front)[:, None], tail.expand(M, 3), a)
        if style.night or style.weather in ("rainy", "foggy"):
            on = torch.zeros(M, dtype=torch.bool)
            moving = torch.tensor([b.state not in ("parked",) for b in layout.boxes] + [False])
            on = band & moving[box.clamp(min=0)] & (box >= 0)
            power = 6.0 if style.night else 1.5
            emission = torch.where((on & front)[:, None], head * power, emission)
            emission = torch.where((on & ~front)[:, None], tail * power * 0.6, emission)
    return a, gloss, emission
