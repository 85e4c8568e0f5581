"""The layout of a new chunk next to existing ones: what the neighbours already placed, roads that run on
across the seam, and new traffic on them.

1. Carried: the neighbours' boxes, lanes, lines and areas moved into the new chunk's frame and clipped to
   its square (a box is kept when its centre lies in the square; one box per track id).
2. Continued: a carried lane that ends (or starts) at the edge of the known region, inside the new square,
   runs on straight along its end (start) direction to the far edge; the continued pieces get road areas,
   dividers, kerbs and sidewalks from ops.road_areas.
3. Traffic: cars (a few trucks and buses downtown) along the continued pieces at gaps drawn per
   environment, pedestrians on their new sidewalks; nothing overlaps a carried box.

The rules are ours (the paper outpaints occupancy and images; its layouts come from the dataset). Seeded.
"""

from __future__ import annotations

import math

import numpy as np

from .. import semantics
from ..ops.clip import clip_polygon, clip_polyline
from ..ops.road_areas import NO_SIDEWALK_ENVIRONMENTS, road_map_from_lanes
from ..types.layout import Box, Lane, Layout, MapLine, MapPolygon
from ..types.occupancy import ROAD_SURFACE_Z, GridSpec
from ..types.world import ChunkIndex, WorldMap

SIDEWALK_Z = 0.6  # top of the synthetic world's sidewalks (metres)
STEP = 2.0  # point spacing of continued lanes (metres)
# Gap between consecutive vehicles on a continued lane (metres, uniform range), per environment.
VEHICLE_GAP = {"downtown": (9.0, 22.0), "suburban": (18.0, 45.0), "residential": (15.0, 40.0),
               "industrial": (14.0, 35.0), "highway": (25.0, 60.0), "rural": (35.0, 90.0)}
PEDESTRIANS_PER_100M = {"downtown": 6.0, "suburban": 1.5, "residential": 2.0, "industrial": 0.8}


def _T_new_other(world: WorldMap, index: ChunkIndex, other: ChunkIndex) -> np.ndarray:
    return np.linalg.inv(world.pose_of(index)) @ world.pose_of(other)


def carried_layout(world: WorldMap, index: ChunkIndex, grid: GridSpec) -> Layout:
    """The existing chunks' layout elements in the frame of the cell `index`, clipped to its square."""
    lo, hi = tuple(grid.lower[:2]), tuple(grid.upper[:2])
    boxes: dict[str, Box] = {}
    centres: list[np.ndarray] = []
    lanes, lines, polygons = [], [], []
    for other, chunk in world.chunks.items():
        if chunk.layout is None or other == index:
            continue
        T = _T_new_other(world, index, other)
        if np.any(np.abs(T[:2, 3]) >= np.asarray(hi) - np.asarray(lo)):
            continue  # no overlap
        moved = chunk.layout.transformed(T)
        for b in moved.boxes:
            c = np.asarray(b.center[:2])
            if not (lo[0] <= c[0] < hi[0] and lo[1] <= c[1] < hi[1]):
                continue
            key = b.track_id or f"_{len(boxes)}"
            if key in boxes or any(np.hypot(*(c - q)) < 0.5 for q in centres):
                continue
            boxes[key] = b
            centres.append(c)
        for lane in moved.lanes:
            lanes += [Lane(p, lane.turn, lane.lane_id, lane.connector) for p in clip_polyline(lane.points, lo, hi)]
        for line in moved.lines:
            lines += [MapLine(p, line.kind) for p in clip_polyline(line.points, lo, hi)]
        for poly in moved.polygons:
            pts = clip_polygon(poly.points, lo, hi)
            if len(pts) >= 3 and MapPolygon(pts, poly.kind).area > 1e-3:
                polygons.append(MapPolygon(pts, poly.kind))
    return Layout(tuple(boxes.values()), _dedupe_lanes(lanes), tuple(lines), tuple(polygons))


def _dedupe_lanes(lanes: list[Lane]) -> tuple[Lane, ...]:
    """Overlapping neighbours carry the same lane twice: keep the longest piece per lane id (pieces of
    lanes without an id are all kept)."""
    best: dict[str, Lane] = {}
    out = []
    for lane in lanes:
        if not lane.lane_id:
            out.append(lane)
            continue
        length = float(np.hypot(*np.diff(lane.points, axis=0).T).sum())
        if lane.lane_id not in best or length > float(np.hypot(*np.diff(best[lane.lane_id].points, axis=0).T).sum()):
            best[lane.lane_id] = lane
    return tuple(out) + tuple(best.values())


def _known_at(known: np.ndarray, grid: GridSpec, p: np.ndarray) -> bool | None:
    """Whether the BEV column holding point p is known; None outside the square."""
    (i, j, _), inside = grid.index_of(np.array([p[0], p[1], grid.lower[2]]))
    return bool(known[i, j]) if inside else None


def continued_lanes(lanes: tuple[Lane, ...], known: np.ndarray, grid: GridSpec) -> list[Lane]:
    """The straight continuations (new pieces only) of lanes that stop at the edge of the known region:
    known bool [X, Y] are the BEV columns the neighbours cover."""
    lo, hi = np.asarray(grid.lower[:2]), np.asarray(grid.upper[:2])
    out = []
    for lane in lanes:
        if lane.connector:
            continue
        pts = lane.points
        for end, tangent in ((pts[-1], pts[-1] - pts[-2]), (pts[0], pts[0] - pts[1])):
            n = float(np.hypot(*tangent))
            if n < 1e-6:
                continue
            t = tangent / n
            if _known_at(known, grid, end + 1.0 * t) is not False:
                continue  # runs into known ground or out of the square: nothing to continue
            # walk to the far edge of the square
            length = 0.0
            while length < 2 * float((hi - lo).max()) and np.all(end + (length + STEP) * t >= lo) and np.all(end + (length + STEP) * t <= hi):
                length += STEP
            if length < STEP:
                continue
            piece = end + np.arange(0.0, length + 1e-9, STEP)[:, None] * t
            forward = end is pts[-1]
            out.append(Lane(piece if forward else piece[::-1], "straight", f"{lane.lane_id}+" if lane.lane_id else ""))
    return out


def _overlaps(box: Box, others: list[Box]) -> bool:
    c = np.asarray(box.center[:2])
    return any(np.hypot(*(c - np.asarray(o.center[:2]))) < (max(box.size[:2]) + max(o.size[:2])) / 2 + 0.5 for o in others)


def traffic(pieces: list[Lane], sidewalks: list[MapPolygon], environment: str, rng: np.random.Generator,
            existing: list[Box]) -> list[Box]:
    """New boxes on continued lanes (vehicles) and their sidewalks (pedestrians), none overlapping
    `existing` or each other."""
    placed: list[Box] = []
    lo, hi = VEHICLE_GAP.get(environment, (15.0, 40.0))
    big = environment in ("downtown", "industrial")
    for k, lane in enumerate(pieces):
        seg = np.hypot(*np.diff(lane.points, axis=0).T)
        cum = np.concatenate([[0.0], np.cumsum(seg)])
        s = rng.uniform(2.0, hi)
        while s < cum[-1] - 2.0:
            r = rng.random()
            label = semantics.ID["bus" if big and r < 0.04 else "truck" if r < (0.12 if big else 0.06) else "car"]
            size = semantics.SIZES[label].sample(rng)
            x, y = np.interp(s, cum, lane.points[:, 0]), np.interp(s, cum, lane.points[:, 1])
            d = lane.points[-1] - lane.points[0]
            box = Box((x, y, ROAD_SURFACE_Z + size[2] / 2), size, math.atan2(d[1], d[0]), label, "moving",
                      f"ext:{k}:{s:.1f}")
            if not _overlaps(box, existing + placed):
                placed.append(box)
            s += size[0] + rng.uniform(lo, hi)
    per_100 = PEDESTRIANS_PER_100M.get(environment, 0.0)
    for k, walk in enumerate(sidewalks):
        pts = walk.points
        half = len(pts) // 2
        if half < 2:
            continue
        length = float(np.hypot(*np.diff(pts[:half], axis=0).T).sum())
        for n in range(rng.poisson(per_100 * length / 100.0)):
            i = rng.integers(0, half)
            p = (pts[i] + pts[len(pts) - 1 - i]) / 2  # middle of the strip
            label = semantics.ID["pedestrian"]
            size = semantics.SIZES[label].sample(rng)
            box = Box((p[0], p[1], SIDEWALK_Z + size[2] / 2), size, rng.uniform(-math.pi, math.pi), label,
                      "walking" if rng.random() < 0.7 else "standing", f"ext:p{k}:{n}")
            if not _overlaps(box, existing + placed):
                placed.append(box)
    return placed


def continuation_layout(world: WorldMap, index: ChunkIndex, grid: GridSpec, known: np.ndarray,
                        environment: str = "suburban", seed: int = 0) -> Layout:
    """The layout of the new cell `index`: carried elements, continued roads and new traffic (see the module
    docstring). known: bool [X, Y] BEV columns the neighbours cover (world.overlap.ChunkOverlap.known_voxels)."""
    carried = carried_layout(world, index, grid)
    pieces = continued_lanes(carried.lanes, known, grid)
    polygons, lines = road_map_from_lanes(pieces, sidewalks=environment not in NO_SIDEWALK_ENVIRONMENTS) if pieces else ([], [])
    rng = np.random.default_rng([int(seed), index.i & 0xFFFFFFFF, index.j & 0xFFFFFFFF])
    new_boxes = traffic(pieces, [p for p in polygons if p.kind == "sidewalk"], environment, rng, list(carried.boxes))
    return Layout(carried.boxes + tuple(new_boxes), carried.lanes + tuple(pieces), carried.lines + tuple(lines),
                  carried.polygons + tuple(polygons))
