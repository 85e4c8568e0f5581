"""The preview look: a deterministic, photo-like RGB image per view from its semantic + depth render.

It is the editor's fast look and the image model's training target, so it must read as a street: every
class gets a material with procedural texture evaluated in world coordinates (so the views of one scene
agree where they overlap), lit by a sun and a sky chosen by the time of day, then weather and night
effects. Inputs and outputs:

    preview_look(views: RenderedViews, description: SceneDescription | None, layout: Layout | None,
                 seed: int, occupancy: Occupancy | None) -> MultiViewImages  (uint8 [V, H, W, 3])

- layout (optional, in the rig's world frame): lane paint and crosswalks, car paint colours (Box.color),
  vehicle lights and street lamps at night, contact shadows under vehicles.
- occupancy (optional, in the rig's world frame): cast sun shadows, traced through the voxel grid.
- seed: the sun's azimuth, facade colours, lit windows, rain and snow; the same inputs give the same image.

Shading works in linear RGB with normals from the depth map (snapped to the voxels' up/horizontal
faces; smoothed over walls and foliage) and ends with a filmic tone curve and sRGB encoding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import maximum_filter

from .. import semantics
from ..types.images import MultiViewImages, RenderedViews
from ..types.layout import Layout
from ..types.occupancy import Occupancy
from ..types.scene import ENVIRONMENTS, TIMES_OF_DAY, WEATHERS, SceneDescription
from ..types.occupancy import ROAD_SURFACE_Z
from .condition_maps import box_solids
from .geometry import polygon_mask, sample_polyline
from .rasterize import ViewParams

ID = semantics.ID
VEHICLES = tuple(ID[n] for n in ("bus", "car", "construction_vehicle", "trailer", "truck"))
TWO_WHEELERS = (ID["bicycle"], ID["motorcycle"])


# Style ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Style:
    """What the preview depicts: time_of_day (types.scene.TIMES_OF_DAY), weather (WEATHERS) and
    environment (ENVIRONMENTS)."""

    time_of_day: str = "noon"
    weather: str = "sunny"
    environment: str = "suburban"

    def __post_init__(self) -> None:
        for name, choices in (("time_of_day", TIMES_OF_DAY), ("weather", WEATHERS), ("environment", ENVIRONMENTS)):
            if getattr(self, name) not in choices:
                raise ValueError(f"Style.{name}: {getattr(self, name)!r} is not one of {', '.join(choices)}")

    @classmethod
    def from_description(cls, description: SceneDescription | None) -> "Style":
        """The style a description names; values outside the known vocabularies fall back to the defaults
        (a free-text description may say "evening" or "drizzle")."""
        if description is None:
            return cls()
        d = cls()
        pick = lambda v, choices, default: v if v in choices else default  # noqa: E731
        return cls(pick(description.time_of_day.lower(), TIMES_OF_DAY, d.time_of_day),
                   pick(description.weather.lower(), WEATHERS, d.weather),
                   pick(description.environment.lower(), ENVIRONMENTS, d.environment))

    @property
    def night(self) -> bool:
        return self.time_of_day == "night"


# Sun elevation (degrees), sun colour (linear RGB), sky zenith / horizon colours (linear RGB) per time.
_TIME = {
    "dawn": (4.0, (1.0, 0.55, 0.32), (0.16, 0.22, 0.42), (0.95, 0.62, 0.45)),
    "morning": (26.0, (1.0, 0.90, 0.78), (0.16, 0.34, 0.80), (0.62, 0.74, 0.92)),
    "noon": (62.0, (1.0, 0.98, 0.94), (0.10, 0.26, 0.78), (0.50, 0.66, 0.92)),
    "afternoon": (36.0, (1.0, 0.90, 0.76), (0.14, 0.32, 0.78), (0.66, 0.74, 0.88)),
    "dusk": (5.0, (1.0, 0.45, 0.22), (0.10, 0.12, 0.32), (0.98, 0.48, 0.28)),
    "night": (35.0, (0.55, 0.65, 1.0), (0.004, 0.006, 0.018), (0.030, 0.032, 0.050)),
}
# Per weather: sun strength, sky light strength, sky desaturation (0..1, towards grey), sky grey level,
# fog distance (m: e-folding of the aerial perspective), wetness, snow cover.
_WEATHER = {
    "sunny": (1.0, 0.24, 0.0, 0.0, 700.0, 0.0, 0.0),
    "cloudy": (0.55, 0.42, 0.45, 0.62, 200.0, 0.0, 0.0),
    "overcast": (0.10, 0.62, 0.85, 0.55, 150.0, 0.15, 0.0),
    "rainy": (0.04, 0.50, 0.90, 0.36, 90.0, 1.0, 0.0),
    "foggy": (0.10, 0.60, 0.95, 0.62, 22.0, 0.3, 0.0),
    "snowy": (0.20, 0.66, 0.85, 0.70, 80.0, 0.2, 1.0),
}
NIGHT_LIGHT = 0.03  # sky light at night relative to day

# Paint names the layout uses (Box.color) and the description may name, as linear RGB.
PAINTS = {
    "white": (0.80, 0.80, 0.80), "black": (0.025, 0.025, 0.028), "silver": (0.50, 0.52, 0.55),
    "gray": (0.20, 0.21, 0.22), "grey": (0.20, 0.21, 0.22), "red": (0.55, 0.04, 0.03),
    "blue": (0.05, 0.13, 0.45), "dark blue": (0.02, 0.04, 0.14), "green": (0.06, 0.22, 0.08),
    "yellow": (0.75, 0.55, 0.05), "beige": (0.55, 0.46, 0.32), "orange": (0.75, 0.25, 0.03),
    "brown": (0.20, 0.10, 0.05),
}
_DEFAULT_PAINTS = ("white", "black", "silver", "gray", "red", "blue", "white", "silver")

# Facade palettes (linear RGB) and window pitch per environment: colours, floor height (m), column
# spacing (m), window fraction of a floor.
_FACADES = {
    "downtown": (((0.35, 0.34, 0.33), (0.42, 0.36, 0.28), (0.22, 0.23, 0.25), (0.50, 0.47, 0.42),
                  (0.30, 0.16, 0.11), (0.15, 0.18, 0.22)), 3.4, 2.2, 0.55),
    "suburban": (((0.62, 0.60, 0.55), (0.55, 0.42, 0.30), (0.40, 0.17, 0.11), (0.58, 0.56, 0.48),
                  (0.45, 0.50, 0.52)), 3.0, 3.4, 0.45),
    "residential": (((0.60, 0.55, 0.45), (0.42, 0.20, 0.13), (0.62, 0.61, 0.58), (0.50, 0.44, 0.36),
                     (0.35, 0.40, 0.45)), 3.0, 3.0, 0.45),
    "industrial": (((0.36, 0.38, 0.40), (0.28, 0.32, 0.36), (0.45, 0.44, 0.40), (0.30, 0.28, 0.25)), 5.0, 6.0, 0.25),
    "rural": (((0.38, 0.12, 0.08), (0.40, 0.33, 0.24), (0.55, 0.53, 0.48)), 3.0, 4.0, 0.35),
    "highway": (((0.42, 0.41, 0.38), (0.35, 0.35, 0.33)), 3.0, 6.0, 0.0),
}
# Terrain colours (grass, dirt) per environment.
_TERRAIN = {
    "rural": ((0.16, 0.22, 0.06), (0.30, 0.24, 0.13)), "highway": ((0.18, 0.22, 0.08), (0.28, 0.24, 0.15)),
    "industrial": ((0.15, 0.17, 0.08), (0.27, 0.24, 0.18)),
}
_TERRAIN_DEFAULT = ((0.10, 0.20, 0.04), (0.25, 0.20, 0.12))

# Night lights.
LAMP_SPACING = 26.0  # metres between street lamps along road edges
LAMP_HEIGHT = 6.5
LAMP_COLOR = (1.0, 0.72, 0.42)
LAMP_RANGE = 45.0  # lamps farther than this from every camera are left out (their light is negligible)
LAMP_POWER = 14.0
LAMP_CUTOFF = 3.0  # lamps shine downwards: intensity ~ cos(angle from nadir) ** LAMP_CUTOFF
HEADLIGHT_POWER = 40.0
HEADLIGHT_EGO = (3.2, 0.0, 0.7)  # the ego car's head lights in the ego frame (nuScenes: origin at the rear axle)
SUN_GAIN = 2.4  # sun irradiance on a surface facing it, relative to an albedo-1 white



@dataclass(frozen=True)
class Lighting:
    """Lights of a scene (linear RGB, world frame): unit sun direction (towards the sun), sun colour x
    strength, sky zenith and horizon colours, sky light strength, fog colour and distance (m), wetness and
    snow cover in [0, 1]."""

    sun_dir: torch.Tensor
    sun: torch.Tensor
    zenith: torch.Tensor
    horizon: torch.Tensor
    sky_light: float
    fog_color: torch.Tensor
    fog_distance: float
    wetness: float
    snow: float
    night: bool


def lighting(style: Style, seed: int) -> Lighting:
    """The sun, sky and atmosphere of a style; the sun's azimuth is drawn from the seed."""
    elev_deg, sun_col, zen, hor = _TIME[style.time_of_day]
    sun_k, sky_k, desat, grey, fog_d, wet, snow = _WEATHER[style.weather]
    azimuth = float(np.random.default_rng([seed, 7]).uniform(0, 2 * math.pi))
    e = math.radians(elev_deg)
    sun_dir = torch.tensor([math.cos(e) * math.cos(azimuth), math.cos(e) * math.sin(azimuth), math.sin(e)])
    t = lambda v: torch.tensor(v, dtype=torch.float32)  # noqa: E731
    zen_t, hor_t = t(zen), t(hor)
    level = grey * (NIGHT_LIGHT * 0.5 if style.night else (0.55 if style.time_of_day in ("dawn", "dusk") else 1.0))
    grey_t = torch.full((3,), level)
    zen_t = zen_t * (1 - desat) + grey_t * 0.85 * desat
    hor_t = hor_t * (1 - desat) + grey_t * desat
    sun = t(sun_col) * sun_k * (0.06 if style.night else 1.0)
    sky = sky_k * (NIGHT_LIGHT if style.night else 1.0)
    fog = hor_t.clone()
    return Lighting(sun_dir, sun, zen_t, hor_t, sky, fog, fog_d, wet, snow, style.night)


# Noise ---------------------------------------------------------------------------------------------------

_M32 = 0xFFFFFFFF
# Odd multipliers per lattice axis (x, y, z, then extra keys) for the integer hash.
_PRIMES = (0x8DA6B343, 0xD8163841, 0xCB1AB31F, 0x9E3779B1, 0x85EBCA77, 0xC2B2AE3D)


def _avalanche(h: torch.Tensor) -> torch.Tensor:
    """Avalanche a 32-bit hash held in int64 (every product stays below 2**63, so nothing overflows)."""
    h = h & _M32
    h = ((h ^ (h >> 15)) * 0x2C1B3C6D) & _M32
    h = ((h ^ (h >> 12)) * 0x297A2D39) & _M32
    return h ^ (h >> 15)


def _hash(seed: int, *ints: torch.Tensor) -> torch.Tensor:
    """Deterministic hash of integer tensors (same shape, any sign) to floats in [0, 1)."""
    h = torch.full_like(ints[0], (seed * 0x27D4EB2F) & _M32)
    for k, v in enumerate(ints):
        h = h + (v & _M32) * _PRIMES[k]
    return (_avalanche(h) & 0xFFFFFF).float() * (1.0 / 16777216)


def value_noise(p: torch.Tensor, seed: int) -> torch.Tensor:
    """Smooth value noise in [0, 1] of points float [N, D] (D = 2 or 3, lattice spacing 1)."""
    i = torch.floor(p)
    f = p - i
    s = f * f * (3 - 2 * f)
    i = i.long()
    D = p.shape[1]
    base = torch.full_like(i[:, 0], (seed * 0x27D4EB2F) & _M32)
    for d in range(D):
        base = base + (i[:, d] & _M32) * _PRIMES[d]

    def corner(bits: tuple[int, ...]) -> torch.Tensor:
        off = sum(_PRIMES[d] for d in range(D) if bits[d])
        return (_avalanche(base + off) & 0xFFFFFF).float() * (1.0 / 16777216)

    # Multilinear interpolation of the 2**D corner values along x, then y (then z).
    def lerp(a, b, t):
        return a + (b - a) * t

    if D == 2:
        return lerp(lerp(corner((0, 0)), corner((1, 0)), s[:, 0]), lerp(corner((0, 1)), corner((1, 1)), s[:, 0]), s[:, 1])
    lo = lerp(lerp(corner((0, 0, 0)), corner((1, 0, 0)), s[:, 0]), lerp(corner((0, 1, 0)), corner((1, 1, 0)), s[:, 0]), s[:, 1])
    hi = lerp(lerp(corner((0, 0, 1)), corner((1, 0, 1)), s[:, 0]), lerp(corner((0, 1, 1)), corner((1, 1, 1)), s[:, 0]), s[:, 1])
    return lerp(lo, hi, s[:, 2])


def fbm(p: torch.Tensor, seed: int, octaves: int = 3) -> torch.Tensor:
    """Fractal value noise in [0, 1] (octaves at doubling frequency, halving amplitude)."""
    total, amp, norm = torch.zeros(p.shape[0], dtype=p.dtype, device=p.device), 1.0, 0.0
    for o in range(octaves):
        total = total + amp * value_noise(p * (2.0 ** o), seed + 101 * o)
        norm += amp
        amp *= 0.5
    return total / norm


def _detail(feature_m: float, footprint: torch.Tensor) -> torch.Tensor:
    """How much of a texture feature of size feature_m (metres) to show at a pixel footprint (metres per
    pixel): 1 when it spans several pixels, fading to 0 before it aliases."""
    return (1.5 - footprint / feature_m).clamp(0, 1)


# Geometry from the render ----------------------------------------------------------------------------------

@dataclass
class _Pixels:
    """Flattened pixels of all views (N = V * H * W): world points P [N, 3], unit view rays ray [N, 3],
    depth [N], hit [N], sem (int64) [N], normal [N, 3] (snapped), smooth [N, 3] (smoothed over walls and
    foliage), footprint [N] (metres per pixel), view [N], row [N], col [N]; per view: ray origins
    origin [V, 3], intrinsics K [V, 3, 3] and extrinsics T_cam_world [V, 4, 4]."""

    P: torch.Tensor
    ray: torch.Tensor
    depth: torch.Tensor
    hit: torch.Tensor
    sem: torch.Tensor
    normal: torch.Tensor
    smooth: torch.Tensor
    footprint: torch.Tensor
    view: torch.Tensor
    row: torch.Tensor
    col: torch.Tensor
    origin: torch.Tensor
    K: torch.Tensor
    T_cam_world: torch.Tensor
    T_world_ego: torch.Tensor
    shape: tuple[int, int, int]


def _normals(P: torch.Tensor, depth: torch.Tensor, hit: torch.Tensor) -> torch.Tensor:
    """World normals [V, H, W, 3] from world points [V, H, W, 3]: per pixel the one-sided differences on the
    side with the smaller depth step (so edges take the normal of their own surface), snapped to up/down
    or horizontal (voxel faces are one or the other)."""
    big = torch.tensor(1e6)
    d = torch.where(hit, depth, big)

    def side_diff(axis: int) -> torch.Tensor:
        fwd = torch.roll(P, -1, dims=axis) - P
        bwd = P - torch.roll(P, 1, dims=axis)
        dfw = (torch.roll(d, -1, dims=axis) - d).abs()
        dbw = (d - torch.roll(d, 1, dims=axis)).abs()
        n = P.shape[axis]
        idx = torch.arange(n)
        shape = [1, 1, 1]
        shape[axis - 0] = n
        last = (idx == n - 1).reshape(shape)
        first = (idx == 0).reshape(shape)
        dfw = torch.where(last, big, dfw)
        dbw = torch.where(first, big, dbw)
        return torch.where((dfw <= dbw)[..., None], fwd, bwd)

    du, dv = side_diff(2), side_diff(1)
    n = torch.cross(dv, du, dim=-1)
    n = n / n.norm(dim=-1, keepdim=True).clamp(min=1e-9)
    up = n[..., 2].abs() > 0.7
    horiz = torch.stack([n[..., 0], n[..., 1], torch.zeros_like(n[..., 0])], -1)
    horiz = horiz / horiz.norm(dim=-1, keepdim=True).clamp(min=1e-9)
    vert = torch.zeros_like(n)
    vert[..., 2] = torch.sign(n[..., 2])
    return torch.where(up[..., None], vert, horiz) * hit[..., None]


def _box_sum(t: torch.Tensor, k: int, dim: int) -> torch.Tensor:
    """Sum over a centred window of k (odd) samples along dim, zero beyond the edges (running sums:
    the cost does not grow with k)."""
    r = k // 2
    pad = [0, 0] * (t.ndim - 1 - dim) + [r + 1, r]
    c = torch.cumsum(F.pad(t, pad), dim)
    n = t.shape[dim]
    return c.narrow(dim, k, n) - c.narrow(dim, 0, n)


def _pixels(views: RenderedViews) -> _Pixels:
    vp = ViewParams.from_rig(views.rig)
    V, H, W = len(vp), vp.height, vp.width
    depth = torch.from_numpy(views.depth)
    sem = torch.from_numpy(views.semantic.astype(np.int64))
    hit = sem != semantics.FREE
    origins, dirs = [], []
    for v in range(V):
        o, d = vp.pixel_rays(v)
        origins.append(o)
        dirs.append(d.reshape(H, W, 3))
    origin, dirs = torch.stack(origins), torch.stack(dirs)
    P = origin[:, None, None] + dirs * depth[..., None]
    normal = _normals(P, depth, hit)
    # Face normals toward the camera.
    flip = ((normal * dirs).sum(-1) > 0)[..., None]
    normal = torch.where(flip, -normal, normal)
    smooth = normal.clone()
    for cls_id in (ID["manmade"], ID["vegetation"]):
        m = ((sem == cls_id) & (normal[..., 2].abs() < 0.5) if cls_id == ID["manmade"] else sem == cls_id)
        m = m.float()[:, None]
        k = 9 if cls_id == ID["manmade"] else 5
        # Box sums of mask-weighted normals and of the mask; their ratio is the masked mean.
        box = lambda t: _box_sum(_box_sum(t, k, 2), k, 3)  # noqa: E731
        nb, wb = box(normal.permute(0, 3, 1, 2) * m), box(m)
        avg = (nb / wb.clamp(min=1e-6)).permute(0, 2, 3, 1)
        avg = avg / avg.norm(dim=-1, keepdim=True).clamp(min=1e-6)
        smooth = torch.where((m[:, 0] > 0)[..., None], avg, smooth)
    ray = dirs / dirs.norm(dim=-1, keepdim=True)
    f = vp.K[:, 0, 0][:, None, None]
    footprint = depth / f
    vv, ii, jj = torch.meshgrid(torch.arange(V), torch.arange(H), torch.arange(W), indexing="ij")
    flat = lambda t: t.reshape(V * H * W, *t.shape[3:])  # noqa: E731
    return _Pixels(flat(P), flat(ray), flat(depth), flat(hit), flat(sem), flat(normal), flat(smooth),
                   flat(footprint), flat(vv), flat(ii), flat(jj), origin, vp.K, vp.T_cam_world,
                   torch.tensor(views.rig.T_world_ego, dtype=torch.float32), (V, H, W))


def _ground_height(px: _Pixels) -> float:
    """Height of the road surface seen in the views (median of up-facing ground hits), metres."""
    ground = torch.zeros_like(px.hit)
    for c in semantics.GROUND_IDS:
        ground |= px.sem == c
    ground &= px.normal[:, 2] > 0.5
    if ground.sum() < 50:
        return ROAD_SURFACE_Z
    return float(px.P[ground, 2].median())


# Layout-derived textures -----------------------------------------------------------------------------------

PAINT_RES = 0.05  # metres per cell of the road-paint canvas


@dataclass
class _PaintCanvas:
    """Road paint in the world plane: alpha float [2, Y, X] (white, yellow) over cells of PAINT_RES
    metres starting at (x0, y0)."""

    alpha: torch.Tensor
    x0: float
    y0: float

    def sample(self, xy: torch.Tensor) -> torch.Tensor:
        """Paint alpha float [N, 2] at world points xy float [N, 2] (bilinear, 0 outside)."""
        Y, X = self.alpha.shape[1:]
        gx = (xy[:, 0] - self.x0) / PAINT_RES / (X - 1) * 2 - 1
        gy = (xy[:, 1] - self.y0) / PAINT_RES / (Y - 1) * 2 - 1
        grid = torch.stack([gx, gy], -1)[None, None]
        out = F.grid_sample(self.alpha[None], grid.float(), align_corners=True, padding_mode="zeros")
        return out[0, :, 0].T


def _paint_canvas(layout: Layout, seed: int) -> _PaintCanvas | None:
    """Lane markings of a layout: dashed white lane dividers, double yellow road dividers, solid white
    road edges and stop lines, zebra crosswalks."""
    items = [l.points for l in layout.lines] + [p.points for p in layout.polygons if p.kind == "crosswalk"]
    if not items:
        return None
    pts = np.concatenate(items)
    lo, hi = pts.min(0) - 1.0, pts.max(0) + 1.0
    lo, hi = np.maximum(lo, -90.0), np.minimum(hi, 90.0)  # a layout is a chunk; bounds the canvas size
    if (hi <= lo).any():
        return None
    X, Y = (np.ceil((hi - lo) / PAINT_RES).astype(int) + 1).tolist()
    canvas = np.zeros((2, Y, X), dtype=np.float32)

    # Line centres are marked per (channel, brush width) and widened by one max-pool per group.
    marks: dict[tuple[int, int], np.ndarray] = {}

    def stamp(points: np.ndarray, channel: int, width: float, dash: tuple[float, float] | None = None) -> None:
        s, arc = sample_polyline(points, PAINT_RES / 2)
        if dash is not None:
            s = s[(arc % (dash[0] + dash[1])) < dash[0]]
        ij = np.round((s - lo) / PAINT_RES).astype(np.int64)
        ok = (ij[:, 0] >= 0) & (ij[:, 0] < X) & (ij[:, 1] >= 0) & (ij[:, 1] < Y)
        k = max(1, int(round(width / PAINT_RES))) | 1
        m = marks.setdefault((channel, k), np.zeros((Y, X), dtype=np.float32))
        m[ij[ok, 1], ij[ok, 0]] = 1.0

    def offset(points: np.ndarray, d: float) -> np.ndarray:
        t = np.gradient(points, axis=0)
        t /= np.linalg.norm(t, axis=1, keepdims=True).clip(1e-9)
        return points + d * np.c_[-t[:, 1], t[:, 0]]

    for line in layout.lines:
        if line.kind == "lane_divider":
            stamp(line.points, 0, 0.15, (3.0, 6.0))
        elif line.kind == "road_divider":
            dense, _ = sample_polyline(line.points, 0.5)
            stamp(offset(dense, 0.12), 1, 0.12)
            stamp(offset(dense, -0.12), 1, 0.12)
        elif line.kind == "road_edge":
            stamp(line.points, 0, 0.15)
        elif line.kind == "stop_line":
            stamp(line.points, 0, 0.45)
    for (channel, k), m in marks.items():
        np.maximum(canvas[channel], maximum_filter(m, size=k, mode="constant"), out=canvas[channel])
    for poly in layout.polygons:
        if poly.kind != "crosswalk":
            continue
        # Zebra bars run along the crossing's long side, 0.6 m painted, 0.6 m apart; work in its bbox only.
        p = poly.points
        edges = np.roll(p, -1, 0) - p
        u = edges[np.argmax(np.linalg.norm(edges, axis=1))]
        u = u / np.linalg.norm(u)
        (i0, j0), (i1, j1) = np.clip(np.floor((p.min(0) - lo) / PAINT_RES), 0, None).astype(int), \
            np.minimum(np.ceil((p.max(0) - lo) / PAINT_RES).astype(int) + 1, (X, Y))
        if i1 <= i0 or j1 <= j0:
            continue
        xs = lo[0] + np.arange(i0, i1) * PAINT_RES
        ys = lo[1] + np.arange(j0, j1) * PAINT_RES
        inside = polygon_mask(p, xs, ys).T  # [y, x]
        stripes = ((xs[None, :] * u[0] + ys[:, None] * u[1]) % 1.2) < 0.6
        region = canvas[0, j0:j1, i0:i1]
        np.maximum(region, (inside & stripes).astype(np.float32), out=region)
    return _PaintCanvas(torch.from_numpy(canvas), float(lo[0]), float(lo[1]))


def _box_lookup(layout: Layout | None, P: torch.Tensor, labels: tuple[int, ...], margin: float = 0.3):
    """For points [M, 3], the index of the layout box (of the given classes) containing them (grown by
    margin), -1 where none, and the points in that box's frame normalised to [-0.5, 0.5]^3."""
    M = P.shape[0]
    idx = torch.full((M,), -1, dtype=torch.long)
    local = torch.zeros(M, 3)
    if layout is None or M == 0:
        return idx, local
    sel = [k for k, b in enumerate(layout.boxes) if b.label in labels]
    if not sel:
        return idx, local
    boxes = [layout.boxes[k] for k in sel]
    c, h, rot = box_solids(boxes)
    rel = torch.einsum("bji,mbj->mbi", rot, P[:, None, :] - c[None])  # [M, B, 3] in box frames
    inside = (rel.abs() <= h[None] + margin).all(-1)
    dist = (rel.abs() - h[None]).clamp(min=0).norm(dim=-1) + (~inside) * 1e9
    best = dist.argmin(1)
    got = inside.any(1)
    idx[got] = torch.tensor(sel)[best[got]]
    local[got] = (rel[torch.arange(M), best] / (2 * h[best]))[got]
    return idx, local


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
        canvas = _paint_canvas(layout, seed) if layout is not None else None
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
    palette, floor_h, col_w, win_frac = _FACADES[style.environment]
    P, ns, fp = px.P[k], px.smooth[k], px.footprint[k]
    M = len(k)
    block = torch.floor(inner / torch.tensor([9.0, 9.0, 1000.0])).long()
    pick = (_hash(seed + 50, *block.T) * len(palette)).long().clamp(max=len(palette) - 1)
    wall = torch.tensor(palette, dtype=torch.float32)[pick]
    grime = 0.8 + 0.35 * fbm(P / torch.tensor([2.0, 2.0, 4.0]), seed + 51, 3)
    wall = wall * grime[:, None]
    # Facade coordinates: s along the (smoothed) wall, z up from the ground.
    s = P[:, 0] * -ns[:, 1] + P[:, 1] * ns[:, 0]
    zr = P[:, 2] - ground_z
    floor_i = torch.floor(zr / floor_h)
    fz = zr / floor_h - floor_i
    col_i = torch.floor(s / col_w)
    fs = s / col_w - col_i
    lo_z = 0.5 - win_frac / 2 + 0.05
    win = (fz > lo_z) & (fz < lo_z + win_frac) & (fs > 0.18) & (fs < 0.82) & (zr > 0.8)
    shop = style.environment == "downtown"
    if shop:
        # Shop fronts: tall glazing split by mullions every half column.
        shop_win = (floor_i == 0) & (fz > 0.12) & (fz < 0.8) & ((fs * 2) % 1 > 0.08)
        win = torch.where(floor_i == 0, shop_win, win)
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


# Lights and shading ------------------------------------------------------------------------------------------

def _street_lamps(layout: Layout | None, origins: torch.Tensor, seed: int) -> torch.Tensor:
    """Lamp head positions float [L, 3]: along road edges every LAMP_SPACING metres (from the layout), or
    on a lattice when there is no layout; only lamps within LAMP_RANGE of a camera."""
    pts = []
    if layout is not None and layout.lines:
        for line in layout.lines:
            if line.kind != "road_edge":
                continue
            s, arc = sample_polyline(line.points, 1.0)
            phase = float(np.random.default_rng([seed, 11]).uniform(0, LAMP_SPACING))
            sel = np.nonzero(np.diff(np.floor((arc + phase) / LAMP_SPACING), prepend=-1) > 0)[0]
            pts.extend(s[sel].tolist())
    else:
        c = origins[:, :2].mean(0).numpy()
        g = np.arange(-3, 4) * LAMP_SPACING
        gx, gy = np.meshgrid(np.floor(c[0] / LAMP_SPACING) * LAMP_SPACING + g, np.floor(c[1] / LAMP_SPACING) * LAMP_SPACING + g)
        pts = np.c_[gx.ravel() + LAMP_SPACING / 2, gy.ravel() + 7.5].tolist()
    if not pts:
        return torch.zeros(0, 3)
    lamps = torch.tensor(pts, dtype=torch.float32)
    near = (torch.cdist(lamps, origins[:, :2]).min(1).values < LAMP_RANGE)
    lamps = lamps[near]
    return torch.cat([lamps, torch.full((len(lamps), 1), LAMP_HEIGHT)], 1)


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


def _shade(px: _Pixels, surf: _Surface, light: Lighting, style: Style, layout: Layout | None,
           occupancy: Occupancy | None, ground_z: float, seed: int) -> torch.Tensor:
    """Radiance float [N, 3] of hit pixels (zeros elsewhere)."""
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
        lamps = _street_lamps(layout, px.origin, seed)
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


def _light_sources(layout: Layout | None, light: Lighting, style: Style, origins: torch.Tensor, seed: int):
    """Visible light sources: positions float [S, 3], colours float [S, 3] (linear radiance scale) and
    sizes float [S] (metres): street lamp heads at night; head and tail lights of vehicles that are not
    parked, at night or in rain and fog."""
    pos, col, size = [], [], []
    if light.night:
        for l in _street_lamps(layout, origins, seed):
            pos.append(l.tolist())
            col.append([c * 3.0 for c in LAMP_COLOR])
            size.append(0.12)
    if layout is not None and (light.night or style.weather in ("rainy", "foggy")):
        gain = 1.0 if light.night else 0.4
        for b in layout.boxes:
            if b.label not in VEHICLES or b.state == "parked":
                continue
            c, s = math.cos(b.yaw), math.sin(b.yaw)
            l, w, h = b.size
            z = b.center[2] - h / 2 + 0.45 * h
            for fwd, rgb in ((1, (2.5, 2.3, 2.0)), (-1, (1.0, 0.05, 0.02))):
                for side in (-1, 1):
                    pos.append([b.center[0] + fwd * l / 2 * c - side * 0.38 * w * s,
                                b.center[1] + fwd * l / 2 * s + side * 0.38 * w * c, z])
                    col.append([v * gain for v in rgb])
                    size.append(0.12)
    return torch.tensor(pos).reshape(-1, 3), torch.tensor(col).reshape(-1, 3), torch.tensor(size)


def _glows(px: _Pixels, image: torch.Tensor, layout: Layout | None, light: Lighting, style: Style,
           ground_z: float, seed: int) -> torch.Tensor:
    """Add light sources as soft glows (a core and a halo, larger in rain and fog), with their streaky
    reflections on a wet road. image: float [V, H, W, 3] radiance, returned updated."""
    V, H, W = px.shape
    S, colors, sizes = _light_sources(layout, light, style, px.origin, seed)
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
            if 0 <= ui < W and 0 <= ri < H and bool(hit[v, ri, ui]) and float(depth[v, ri, ui]) < z - 1.0:
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


def _weather_overlay(image: torch.Tensor, light: Lighting, style: Style, seed: int) -> torch.Tensor:
    """Rain streaks or snow flakes in front of the scene (deterministic per seed and view)."""
    V, H, W, _ = image.shape
    if style.weather not in ("rainy", "snowy"):
        return image
    for v in range(V):
        g = torch.Generator().manual_seed(seed * 1009 + v * 7 + 3)
        if style.weather == "rainy":
            n = int(H * W / 180)
            x0 = torch.rand(n, generator=g) * W
            y0 = torch.rand(n, generator=g) * H
            length = 6 + torch.rand(n, generator=g) * 14
            steps = torch.linspace(0, 1, 16)
            xs = (x0[:, None] + steps[None] * length[:, None] * 0.18).round().long().clamp(0, W - 1)
            ys = (y0[:, None] + steps[None] * length[:, None]).round().long().clamp(0, H - 1)
            mask = torch.zeros(H, W)
            mask.index_put_((ys.reshape(-1), xs.reshape(-1)), torch.full((xs.numel(),), 0.12), accumulate=True)
            mask = mask.clamp(max=0.35)
            streak_col = light.horizon * 1.6 + 0.02
            image[v] = image[v] * (1 - mask[..., None]) + streak_col * mask[..., None]
        else:
            n = int(H * W / 90)
            x = torch.rand(n, generator=g) * W
            y = torch.rand(n, generator=g) * H
            size = torch.rand(n, generator=g)
            mask = torch.zeros(H, W)
            mask.index_put_((y.long().clamp(0, H - 1), x.long().clamp(0, W - 1)), 0.5 + 0.5 * size, accumulate=True)
            big = (size > 0.8)
            mask = mask + F.max_pool2d(torch.zeros(H, W).index_put_((y[big].long().clamp(0, H - 1), x[big].long().clamp(0, W - 1)), torch.ones(int(big.sum())))[None, None], 3, 1, 1)[0, 0] * 0.6
            mask = F.avg_pool2d(mask[None, None], 3, 1, 1)[0, 0] * 2.0
            flake = light.horizon * 1.4 + 0.15
            image[v] = image[v] * (1 - mask.clamp(0, 0.9)[..., None]) + flake * mask.clamp(0, 0.9)[..., None]
    return image


def _tonemap(image: torch.Tensor, light: Lighting, seed: int) -> np.ndarray:
    """Linear radiance float [V, H, W, 3] -> uint8 sRGB: exposure, a filmic curve, slight vignette and grain."""
    V, H, W, _ = image.shape
    exposure = 1.3 if light.night else 0.62
    x = image * exposure
    # Filmic (ACES-like fit) keeps highlights from clipping harshly.
    x = (x * (2.51 * x + 0.03)) / (x * (2.43 * x + 0.59) + 0.14)
    ii = torch.linspace(-1, 1, H)[:, None]
    jj = torch.linspace(-1, 1, W)[None, :]
    vign = 1 - 0.18 * (ii ** 2 * 0.8 + jj ** 2 * 0.5)
    x = x * vign[None, ..., None]
    srgb = torch.where(x <= 0.0031308, 12.92 * x, 1.055 * x.clamp(min=0.0031308) ** (1 / 2.4) - 0.055)
    g = torch.Generator().manual_seed(seed * 31 + 5)
    srgb = srgb + (torch.rand(V, H, W, 1, generator=g) - 0.5) * 0.02
    return (srgb.clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy()


def preview_look(views: RenderedViews, description: SceneDescription | None = None, layout: Layout | None = None,
                 seed: int = 0, occupancy: Occupancy | None = None) -> MultiViewImages:
    """The preview RGB of every view (see the module docstring). Deterministic given its inputs."""
    style = Style.from_description(description)
    light = lighting(style, seed)
    px = _pixels(views)
    ground_z = _ground_height(px)
    surf = _materials(px, style, layout, description, seed, ground_z, light)
    color = _shade(px, surf, light, style, layout, occupancy, ground_z, seed)
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
    image = _glows(px, image, layout, light, style, ground_z, seed)
    image = _weather_overlay(image, light, style, seed)
    return MultiViewImages(_tonemap(image, light, seed), views.rig)
