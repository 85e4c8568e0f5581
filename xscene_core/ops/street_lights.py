"""Light fixtures of a layout: street lamp heads along the road edges and the head and tail lights of the
vehicles that are not parked.

The preview look lights its night and bad-weather scenes with them (ops.preview_look.lights), and the image
model's condition marks where each is seen (fixture_masks), from these same positions: the lamps are street
furniture of the layout, not of a look seed, so a generated night street has its lights where the preview
has them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .. import semantics
from ..types.cameras import CameraRig
from ..types.layout import Layout
from .geometry import sample_polyline

LIGHT_KINDS = ("street_lamp", "head_light", "tail_light")
VEHICLES = tuple(semantics.ID[n] for n in ("bus", "car", "construction_vehicle", "trailer", "truck"))  # box labels with lights
LAMP_SPACING = 26.0  # metres between street lamps along a road edge
LAMP_OFFSET = LAMP_SPACING / 2  # metres from a road edge's first point to its first lamp
LAMP_HEIGHT = 6.5  # metres above the world frame's z = 0
LAMP_RANGE = 45.0  # lamps farther than this from every camera are left out (their light is negligible)
FIXTURE_RADIUS = 0.12  # metres: a lamp head or a vehicle light seen as a disc of this radius
# A far light is still marked by a disc of this radius in pixels of the size the marks are pooled to
# (view_condition_arrays: the condition's), so that it covers most of a condition pixel wherever it falls.
FIXTURE_MIN_RADIUS = 1.0
HIDDEN_MARGIN = 1.0  # metres: a light is hidden when the render's surface at its pixel is this much nearer


@dataclass
class LightFixtures:
    """Lights in the layout's world frame: positions float32 [S, 3] (metres) and kinds int64 [S] (index
    into LIGHT_KINDS)."""

    positions: np.ndarray
    kinds: np.ndarray

    def of_kind(self, kind: str) -> np.ndarray:
        """positions float32 [n, 3] of one kind of LIGHT_KINDS."""
        return self.positions[self.kinds == LIGHT_KINDS.index(kind)]


def street_lamps(layout: Layout | None, origins: np.ndarray) -> np.ndarray:
    """Lamp heads float32 [L, 3]: along each road edge of the layout every LAMP_SPACING metres from
    LAMP_OFFSET, or on a lattice when there is no layout; only those within LAMP_RANGE (in plan) of a camera
    origin (origins float [V, >=2], metres)."""
    origins = np.asarray(origins, np.float64)
    pts = []
    if layout is not None and layout.lines:
        for line in layout.lines:
            if line.kind != "road_edge":
                continue
            s, arc = sample_polyline(line.points, 1.0)
            sel = np.nonzero(np.diff(np.floor((arc + LAMP_SPACING - LAMP_OFFSET) / LAMP_SPACING), prepend=0) > 0)[0]
            pts.extend(s[sel].tolist())
    else:
        c = origins[:, :2].mean(0)
        g = np.arange(-3, 4) * LAMP_SPACING
        gx, gy = np.meshgrid(np.floor(c[0] / LAMP_SPACING) * LAMP_SPACING + g, np.floor(c[1] / LAMP_SPACING) * LAMP_SPACING + g)
        pts = np.c_[gx.ravel() + LAMP_SPACING / 2, gy.ravel() + 7.5].tolist()
    if not pts:
        return np.zeros((0, 3), np.float32)
    lamps = np.asarray(pts, np.float64)[:, :2]
    near = np.linalg.norm(lamps[:, None] - origins[None, :, :2], axis=-1).min(1) < LAMP_RANGE
    lamps = lamps[near]
    return np.c_[lamps, np.full(len(lamps), LAMP_HEIGHT)].astype(np.float32)


def vehicle_lights(layout: Layout | None) -> LightFixtures:
    """Head and tail lights (two each, at 45% of the body's height, 38% of its width out from the middle) of
    the layout's vehicles that are not parked."""
    pos, kinds = [], []
    for b in layout.boxes if layout is not None else ():
        if b.label not in VEHICLES or b.state == "parked":
            continue
        c, s = math.cos(b.yaw), math.sin(b.yaw)
        l, w, h = b.size
        z = b.center[2] - h / 2 + 0.45 * h
        for fwd, kind in ((1, "head_light"), (-1, "tail_light")):
            for side in (-1, 1):
                pos.append([b.center[0] + fwd * l / 2 * c - side * 0.38 * w * s,
                            b.center[1] + fwd * l / 2 * s + side * 0.38 * w * c, z])
                kinds.append(LIGHT_KINDS.index(kind))
    return LightFixtures(np.asarray(pos, np.float32).reshape(-1, 3), np.asarray(kinds, np.int64))


def light_fixtures(layout: Layout | None, origins: np.ndarray) -> LightFixtures:
    """All fixtures of a layout seen from cameras at origins float [V, >=2]: street lamps, then vehicle lights."""
    lamps, cars = street_lamps(layout, origins), vehicle_lights(layout)
    return LightFixtures(np.concatenate([lamps, cars.positions]),
                         np.concatenate([np.full(len(lamps), LIGHT_KINDS.index("street_lamp")), cars.kinds]))


def fixture_masks(fixtures: LightFixtures, rig: CameraRig, depth: np.ndarray, pooled_to: int | None = None) -> np.ndarray:
    """Where each kind of light is seen: bool [V, len(LIGHT_KINDS), H, W] at the rig's size, a disc of
    FIXTURE_RADIUS metres around each light in front of a camera that the render's surface (depth float
    [V, H, W], camera z in metres, 0 = nothing hit) does not hide. The disc is at least FIXTURE_MIN_RADIUS
    pixels of the height `pooled_to` (rows) the masks will be pooled to (None: of the rig's own size)."""
    V, H, W = len(rig), rig.cameras[0].height, rig.cameras[0].width
    if depth.shape != (V, H, W):
        raise ValueError(f"depth must be [V, H, W] = {(V, H, W)} at the rig's size, got {depth.shape}")
    out = np.zeros((V, len(LIGHT_KINDS), H, W), bool)
    if not len(fixtures.positions):
        return out
    rows, cols = np.arange(H) + 0.5, np.arange(W) + 0.5
    min_rad = FIXTURE_MIN_RADIUS * H / (pooled_to or H)
    for v in range(V):
        K, T = rig.cameras[v].K, np.linalg.inv(rig.T_world_cam(v))
        pc = fixtures.positions @ T[:3, :3].T + T[:3, 3]
        for (x, y, z), kind in zip(pc, fixtures.kinds):
            if z < 0.5:
                continue
            u, r = K[0, 0] * x / z + K[0, 2], K[1, 1] * y / z + K[1, 2]
            ui, ri = int(math.floor(u)), int(math.floor(r))
            if not (0 <= ui < W and 0 <= ri < H):
                continue
            d = depth[v, ri, ui]
            if 0 < d < z - HIDDEN_MARGIN:
                continue
            rad = max(min_rad, K[0, 0] * FIXTURE_RADIUS / z)
            i0, i1 = max(0, int(r - rad)), min(H, int(r + rad) + 1)
            j0, j1 = max(0, int(u - rad)), min(W, int(u + rad) + 1)
            disc = (rows[i0:i1, None] - r) ** 2 + (cols[None, j0:j1] - u) ** 2 <= rad * rad
            out[v, kind, i0:i1, j0:j1] |= disc
    return out
