"""Layout -> condition maps: the BEV layout map (the occupancy model's additive condition) and the
perspective maps per camera (projected 3D boxes and map lines: a condition of the image model).

BEV cells are the occupancy grid's columns: cell [x, y] covers voxel column labels[x, y, :]. Areas and
footprints are coverage fractions in [0, 1] (supersampled), lines are 1 where a line passes the cell.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .. import semantics
from ..types.cameras import CameraRig
from ..types.layout import DRIVABLE_KINDS, Box, Layout
from ..types.occupancy import ROAD_SURFACE_Z, GridSpec
from .geometry import points_in_polygon, polygon_mask, sample_polyline
from .rasterize import ViewParams, rasterize_boxes, NEAR
from .road_paint import paint_canvas

AREA_CHANNELS = ("drivable", "lane_divider", "road_divider", "crosswalk", "sidewalk")
BEV_CHANNELS: tuple[str, ...] = AREA_CHANNELS + tuple(semantics.NAMES[i] for i in semantics.OBJECT_IDS)
# Polygon kinds painted into each area channel: every area a vehicle may stand on is drivable (as in
# nuScenes, whose drivable area includes junctions, crossings and car parks).
_AREA_KINDS = {"drivable": DRIVABLE_KINDS, "crosswalk": ("crosswalk",), "sidewalk": ("sidewalk",)}
_SUPERSAMPLE = 4  # sub-samples per cell side for area coverage

# Lines drawn in the perspective maps, one channel each ("lane" = lane centre lines).
PERSPECTIVE_LINE_KINDS = ("lane", "lane_divider", "road_divider", "road_edge", "stop_line")
# Map lines have no z: they are drawn on the road surface (types.occupancy.ROAD_SURFACE_Z).
# Map areas drawn in the perspective maps, one channel each: the painted areas that no occupancy class
# tells apart from the road (a crossing is driveable surface in Occ3D, its zebra only paint), then the
# road paint itself (ops.road_paint: dashes, the double yellow, the zebra's bars), white and yellow.
PERSPECTIVE_AREA_KINDS = ("crosswalk", "paint_white", "paint_yellow")
_PAINT_KINDS = ("paint_white", "paint_yellow")  # the canvas's channels, in its order
AREA_FAR = 80.0  # metres: the road surface beyond this camera depth is not drawn (the horizon's pixels)


@dataclass
class BevLayoutMap:
    """BEV condition map on an occupancy grid: channels float32 [C, X, Y] in [0, 1], named by `names`
    (BEV_CHANNELS: areas, then one footprint channel per object class in semantics.OBJECT_IDS order)."""

    channels: np.ndarray
    names: tuple[str, ...]
    grid: GridSpec

    def __post_init__(self) -> None:
        want = (len(self.names), *self.grid.shape[:2])
        if self.channels.shape != want:
            raise ValueError(f"BevLayoutMap.channels: expected shape {list(want)}, got {list(self.channels.shape)}")

    def channel(self, name: str) -> np.ndarray:
        """float32 [X, Y] of one named channel."""
        if name not in self.names:
            raise ValueError(f"BevLayoutMap has no channel {name!r}; channels are {', '.join(self.names)}")
        return self.channels[self.names.index(name)]

    def to_rgb(self) -> np.ndarray:
        """uint8 [Y, X, 3] picture (x to the right, y up), class colours over grey map areas."""
        img = np.full((*self.grid.shape[:2], 3), 30.0)
        area_colors = {"drivable": (90, 90, 90), "sidewalk": (75, 0, 75), "crosswalk": (200, 200, 200),
                       "lane_divider": (255, 255, 255), "road_divider": (255, 200, 0)}
        for name in self.names:
            c = np.array(area_colors.get(name) or semantics.COLORS[semantics.ID[name]], dtype=np.float64)
            a = self.channel(name)[..., None]
            img = img * (1 - a) + c * a
        return np.ascontiguousarray(np.transpose(img, (1, 0, 2))[::-1]).astype(np.uint8)


def _cell_axes(grid: GridSpec, sub: int) -> tuple[np.ndarray, np.ndarray]:
    """Sub-sample coordinates along x and y: float64 [X * sub], [Y * sub]."""
    step = grid.voxel_size / sub
    return tuple(grid.lower[a] + (np.arange(grid.shape[a] * sub) + 0.5) * step for a in (0, 1))  # type: ignore[return-value]


def _coverage(mask: np.ndarray, sub: int) -> np.ndarray:
    """Mean of sub x sub blocks: float32 [X, Y] from bool [X * sub, Y * sub]."""
    X, Y = mask.shape[0] // sub, mask.shape[1] // sub
    return mask.reshape(X, sub, Y, sub).mean(axis=(1, 3)).astype(np.float32)


def _line_cells(points: np.ndarray, grid: GridSpec) -> np.ndarray:
    """bool [X, Y]: cells a polyline (float [N, 2]) passes through."""
    out = np.zeros(grid.shape[:2], dtype=bool)
    s, _ = sample_polyline(points, grid.voxel_size / 4)
    ij = np.floor((s - np.asarray(grid.lower[:2])) / grid.voxel_size).astype(np.int64)
    ok = (ij >= 0).all(1) & (ij[:, 0] < grid.shape[0]) & (ij[:, 1] < grid.shape[1])
    out[ij[ok, 0], ij[ok, 1]] = True
    return out


def bev_layout_map(layout: Layout, grid: GridSpec | None = None) -> BevLayoutMap:
    """Rasterise a layout (chunk frame) onto the occupancy grid's BEV cells.

    Areas: drivable (polygons of types.layout.DRIVABLE_KINDS), crosswalk, sidewalk -> coverage fractions; lane and
    road dividers -> cells the lines cross; boxes -> footprint coverage in their class channel (the cell
    holding a box centre is always marked, so even a traffic cone thinner than a cell shows).
    """
    grid = grid or GridSpec()
    X, Y = grid.shape[:2]
    out = np.zeros((len(BEV_CHANNELS), X, Y), dtype=np.float32)
    xs, ys = _cell_axes(grid, _SUPERSAMPLE)
    for name in ("drivable", "crosswalk", "sidewalk"):
        polys = [p for p in layout.polygons if p.kind in _AREA_KINDS[name]]
        if polys:
            mask = np.zeros((len(xs), len(ys)), dtype=bool)
            for p in polys:
                mask |= polygon_mask(p.points, xs, ys)
            out[BEV_CHANNELS.index(name)] = _coverage(mask, _SUPERSAMPLE)
    for kind in ("lane_divider", "road_divider"):
        c = BEV_CHANNELS.index(kind)
        for line in layout.lines:
            if line.kind == kind:
                out[c] = np.maximum(out[c], _line_cells(line.points, grid))
    for box in layout.boxes:
        c = BEV_CHANNELS.index(semantics.NAMES[box.label])
        cov = _coverage(polygon_mask(box.corners_bev(), xs, ys), _SUPERSAMPLE)
        (i, j, _), inside = grid.index_of(np.array([box.center[0], box.center[1], grid.lower[2]]))
        if inside:
            cov[i, j] = max(cov[i, j], 1.0)
        out[c] = np.maximum(out[c], cov)
    return BevLayoutMap(out, BEV_CHANNELS, grid)


# Perspective maps --------------------------------------------------------------------------------------

@dataclass
class PerspectiveMaps:
    """Layout projected into each camera of a rig (V views of H x W).

    box_class: uint8 [V, H, W] Occ3D id of the nearest box face (semantics.FREE elsewhere);
    box_depth: float32 [V, H, W] camera z of that face in metres (0 elsewhere);
    box_edges: uint8 [V, H, W] Occ3D id of a box whose projected edge passes (FREE elsewhere; all edges,
    hidden ones included, as the image model's 3D-box condition draws them);
    lines: bool [V, L, H, W] map lines per kind of PERSPECTIVE_LINE_KINDS, drawn on the road surface;
    areas: bool [V, A, H, W] map polygons and road paint per kind of PERSPECTIVE_AREA_KINDS on the road
    surface, hidden where a box face is nearer (None: none).
    """

    box_class: np.ndarray
    box_depth: np.ndarray
    box_edges: np.ndarray
    lines: np.ndarray
    rig: CameraRig
    areas: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.areas is None:
            self.areas = np.zeros((self.lines.shape[0], len(PERSPECTIVE_AREA_KINDS), *self.lines.shape[2:]), bool)

    def channels(self) -> tuple[np.ndarray, tuple[str, ...]]:
        """The maps as one float32 [V, C, H, W] stack for a network, with channel names: one face and one
        edge channel per object class, then one channel per line kind and one per area kind."""
        objs = np.asarray(semantics.OBJECT_IDS)
        faces = (self.box_class[:, None] == objs[None, :, None, None])
        edges = (self.box_edges[:, None] == objs[None, :, None, None])
        stack = np.concatenate([faces, edges, self.lines, self.areas], axis=1).astype(np.float32)
        names = tuple(f"face_{semantics.NAMES[i]}" for i in objs) + tuple(f"edge_{semantics.NAMES[i]}" for i in objs)
        return stack, names + PERSPECTIVE_LINE_KINDS + PERSPECTIVE_AREA_KINDS

    def to_rgb(self) -> np.ndarray:
        """uint8 [V, H, W, 3] picture: crossings in grey, road paint in pale white and yellow, box faces in
        faded class colours, edges and lines on top."""
        img = np.zeros((*self.box_class.shape, 3), dtype=np.float32)
        area_colors = {"crosswalk": (110, 110, 110), "paint_white": (180, 180, 180), "paint_yellow": (180, 140, 0)}
        for kind, c in area_colors.items():
            img[self.areas[:, PERSPECTIVE_AREA_KINDS.index(kind)]] = c
        faces = self.box_class != semantics.FREE
        img[faces] = semantics.COLORS[self.box_class[faces]] * 0.45
        line_colors = ((0, 255, 120), (255, 255, 255), (255, 200, 0), (150, 150, 255), (255, 80, 80))
        for k, c in enumerate(line_colors):
            img[self.lines[:, k]] = c
        edges = self.box_edges != semantics.FREE
        img[edges] = semantics.COLORS[self.box_edges[edges]]
        return img.astype(np.uint8)


def box_solids(boxes: tuple[Box, ...] | list[Box]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Boxes as solids for ops.rasterize.rasterize_boxes: centres float32 [N, 3], half-extents float32
    [N, 3] (l, w, h) / 2, rotations float32 [N, 3, 3] (yaw about z)."""
    c = torch.tensor([b.center for b in boxes], dtype=torch.float32).reshape(-1, 3)
    h = torch.tensor([b.size for b in boxes], dtype=torch.float32).reshape(-1, 3) / 2
    yaw = torch.tensor([b.yaw for b in boxes], dtype=torch.float32)
    cos, sin, zero, one = torch.cos(yaw), torch.sin(yaw), torch.zeros_like(yaw), torch.ones_like(yaw)
    rot = torch.stack([cos, -sin, zero, sin, cos, zero, zero, zero, one], -1).reshape(-1, 3, 3)
    return c, h, rot


def _clip_segments_2d(p0: np.ndarray, p1: np.ndarray, width: int, height: int):
    """Liang-Barsky: clip 2D segments [S, 2] to the image rectangle; returns (p0, p1, keep [S])."""
    d = p1 - p0
    t0, t1 = np.zeros(len(p0)), np.ones(len(p0))
    keep = np.ones(len(p0), dtype=bool)
    lo, hi = np.array([-0.5, -0.5]), np.array([width - 0.5, height - 0.5])
    for axis in (0, 1):
        for p, q in ((-d[:, axis], p0[:, axis] - lo[axis]), (d[:, axis], hi[axis] - p0[:, axis])):
            parallel = p == 0
            keep &= ~(parallel & (q < 0))
            with np.errstate(divide="ignore", invalid="ignore"):
                r = np.where(parallel, 0.0, q / np.where(parallel, 1.0, p))
            t0 = np.where(~parallel & (p < 0), np.maximum(t0, r), t0)
            t1 = np.where(~parallel & (p > 0), np.minimum(t1, r), t1)
    keep &= t0 <= t1
    return p0 + t0[:, None] * d, p0 + t1[:, None] * d, keep


def draw_segments(a_cam: np.ndarray, b_cam: np.ndarray, K: np.ndarray, height: int, width: int) -> np.ndarray:
    """Pixels touched by 3D segments (camera frame, float [S, 3] end points), clipped to the near plane
    and the image: int64 [M, 2] (row, column) pairs, possibly repeated."""
    a, b = np.asarray(a_cam, dtype=np.float64), np.asarray(b_cam, dtype=np.float64)
    za, zb = a[:, 2], b[:, 2]
    keep = (za >= NEAR) | (zb >= NEAR)
    a, b, za, zb = a[keep], b[keep], za[keep], zb[keep]
    # Move the end behind the near plane onto it.
    s = np.clip((NEAR - za) / np.where(zb != za, zb - za, 1.0), 0, 1)
    a = np.where((za < NEAR)[:, None], a + s[:, None] * (b - a), a)
    s = np.clip((NEAR - zb) / np.where(za != zb, za - zb, 1.0), 0, 1)
    b = np.where((zb < NEAR)[:, None], b + s[:, None] * (a - b), b)
    proj = lambda p: np.c_[K[0, 0] * p[:, 0] / p[:, 2] + K[0, 2], K[1, 1] * p[:, 1] / p[:, 2] + K[1, 2]]  # noqa: E731
    u0, u1, ok = _clip_segments_2d(proj(a), proj(b), width, height)
    u0, u1 = u0[ok], u1[ok]
    n = np.ceil(np.abs(u1 - u0).max(1)).astype(np.int64) + 1
    seg = np.repeat(np.arange(len(n)), n)
    t = (np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)) / np.maximum(np.repeat(n, n) - 1, 1)
    uv = u0[seg] + t[:, None] * (u1[seg] - u0[seg])
    px = np.rint(uv).astype(np.int64)
    px[:, 0] = px[:, 0].clip(0, width - 1)
    px[:, 1] = px[:, 1].clip(0, height - 1)
    return px[:, ::-1]


_BOX_EDGES = [(a, b) for a in range(8) for b in range(a + 1, 8) if bin(a ^ b).count("1") == 1]


def box_corners(box: Box) -> np.ndarray:
    """float64 [8, 3] corners of a box (corner k has sign bits (x, y, z) of k, high bit x)."""
    signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=np.float64)
    c, s = math.cos(box.yaw), math.sin(box.yaw)
    R = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    return (signs * np.asarray(box.size) / 2) @ R.T + np.asarray(box.center)


def perspective_maps(layout: Layout, rig: CameraRig, ground_z: float = ROAD_SURFACE_Z) -> PerspectiveMaps:
    """Project a layout (in the rig's world frame) into every camera of the rig.

    Box faces come from the exact box renderer (nearest face per pixel); edges and map lines are 1-pixel
    polylines, lines at height ground_z (metres).
    """
    views = ViewParams.from_rig(rig)
    V, H, W = len(views), views.height, views.width
    boxes = layout.boxes
    if boxes:
        hits = rasterize_boxes(*box_solids(boxes), views)
        labels = torch.tensor([b.label for b in boxes], dtype=torch.uint8)
        box_class = torch.where(hits.hit, labels[hits.index.clamp(min=0)], semantics.FREE).numpy().astype(np.uint8)
        box_depth = hits.depth.numpy()
    else:
        box_class = np.full((V, H, W), semantics.FREE, np.uint8)
        box_depth = np.zeros((V, H, W), np.float32)
    box_edges = np.full((V, H, W), semantics.FREE, np.uint8)
    lines = np.zeros((V, len(PERSPECTIVE_LINE_KINDS), H, W), dtype=bool)
    polylines = [("lane", l.points) for l in layout.lanes] + [(l.kind, l.points) for l in layout.lines]
    corners = [box_corners(b) for b in boxes]
    for v in range(V):
        T = np.linalg.inv(rig.T_world_cam(v))
        K = rig.cameras[v].K
        to_cam = lambda p: p @ T[:3, :3].T + T[:3, 3]  # noqa: E731
        for kind, pts in polylines:
            p3 = np.c_[pts, np.full(len(pts), ground_z)]
            px = draw_segments(to_cam(p3[:-1]), to_cam(p3[1:]), K, H, W)
            lines[v, PERSPECTIVE_LINE_KINDS.index(kind), px[:, 0], px[:, 1]] = True
        # Larger boxes first so that a small box's edges stay on top of a bus behind it.
        for k in sorted(range(len(boxes)), key=lambda k: -np.prod(boxes[k].size)):
            cc = to_cam(corners[k])
            e = np.array(_BOX_EDGES)
            px = draw_segments(cc[e[:, 0]], cc[e[:, 1]], K, H, W)
            box_edges[v, px[:, 0], px[:, 1]] = boxes[k].label
    areas = ground_areas(layout, rig, box_depth, ground_z)
    return PerspectiveMaps(box_class, box_depth, box_edges, lines, rig, areas)


def ground_areas(layout: Layout, rig: CameraRig, box_depth: np.ndarray | None = None,
                 ground_z: float = ROAD_SURFACE_Z) -> np.ndarray:
    """Map polygons of the kinds in PERSPECTIVE_AREA_KINDS and the layout's road paint (ops.road_paint, more
    than half a pixel's alpha) seen on the road surface: bool [V, A, H, W] at the rig's size. A pixel is in
    an area when its ray meets the plane z = ground_z (metres, the rig's world frame) in front of the
    camera, nearer than AREA_FAR, inside a polygon of that kind (or on paint), and no box face is nearer
    (box_depth float [V, H, W], camera z in metres, 0 = no box; None = no boxes). Buildings and trees do
    not hide it: the semantic and depth renders say what stands in front."""
    V, H, W = len(rig), rig.cameras[0].height, rig.cameras[0].width
    out = np.zeros((V, len(PERSPECTIVE_AREA_KINDS), H, W), dtype=bool)
    polys = [(PERSPECTIVE_AREA_KINDS.index(p.kind), np.asarray(p.points, np.float64)) for p in layout.polygons
             if p.kind in PERSPECTIVE_AREA_KINDS]
    canvas = paint_canvas(layout)
    if not polys and canvas is None:
        return out
    paint = [PERSPECTIVE_AREA_KINDS.index(k) for k in _PAINT_KINDS]
    v_, u_ = np.meshgrid(np.arange(H) + 0.5, np.arange(W) + 0.5, indexing="ij")
    for v in range(V):
        K, T = rig.cameras[v].K, rig.T_world_cam(v)
        ray = np.stack([(u_ - K[0, 2]) / K[0, 0], (v_ - K[1, 2]) / K[1, 1], np.ones_like(u_)], -1)  # camera z = 1
        d = ray @ T[:3, :3].T
        with np.errstate(divide="ignore", invalid="ignore"):
            z = (ground_z - T[2, 3]) / d[..., 2]  # the camera depth of the ground hit
        seen = (d[..., 2] < 0) & (z > 0) & (z < AREA_FAR)
        if box_depth is not None:
            seen &= ~((box_depth[v] > 0) & (box_depth[v] < z))
        if not seen.any():
            continue
        xy = T[:2, 3] + z[seen][:, None] * d[seen][:, :2]
        for a, poly in polys:
            lo, hi = poly.min(0), poly.max(0)
            near = ((xy >= lo) & (xy <= hi)).all(1)
            if near.any():
                hit = np.zeros(len(xy), bool)
                hit[near] = points_in_polygon(xy[near], poly)
                out[v, a][seen] |= hit
        if canvas is not None:
            alpha = canvas.sample(torch.from_numpy(xy)).numpy() > 0.5  # [N, 2]
            for c, a in enumerate(paint):
                out[v, a][seen] = alpha[:, c]
    return out
