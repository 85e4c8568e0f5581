"""Road areas from lane centre lines: drivable surface, sidewalks and painted dividers.

The layout stage generates boxes and lanes only, but the occupancy model's BEV condition (and the image
model's perspective maps) also read the drivable area, sidewalks, lane / road dividers and road edges,
which the synthetic world's layouts carry. `complete_road_map` derives them from the lanes:

- drivable: one polygon per lane, its centre line offset by half a lane width to both sides;
- lane_divider / road_divider: along a lane's left edge where another lane runs beside it, in the same
  direction (lane divider) or the opposite one (road divider);
- road_edge + sidewalk: along a lane side with no lane beside it, a kerb line and a strip of
  `sidewalk_width` beyond a `kerb_gap`, cut where it would fall on another lane (junctions).

Right-hand traffic, metres, chunk frame. The rule is ours (the paper's layouts come from nuScenes maps).
"""

from __future__ import annotations

import numpy as np

from ..types.layout import DRIVABLE_KINDS, Lane, Layout, MapLine, MapPolygon

LANE_WIDTH = 3.5
SIDEWALK_WIDTH = 3.0
KERB_GAP = 0.3  # metres between the lane edge and the sidewalk
_STEP = 1.0  # resampling step along a lane (metres)
_MIN_RUN = 3  # a divider / kerb / sidewalk piece needs at least this many samples


def _resample(points: np.ndarray, step: float = _STEP) -> np.ndarray:
    seg = np.hypot(*np.diff(points, axis=0).T)
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    if cum[-1] <= 0:
        return points[:1]
    s = np.linspace(0.0, cum[-1], max(2, int(np.ceil(cum[-1] / step)) + 1))
    return np.stack([np.interp(s, cum, points[:, 0]), np.interp(s, cum, points[:, 1])], -1)


def _normals(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit tangents and left normals float [N, 2] of a polyline (central differences)."""
    d = np.gradient(points, axis=0)
    d /= np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-9)
    return d, np.stack([-d[:, 1], d[:, 0]], -1)


def _nearest_lane(p: np.ndarray, lanes: list[np.ndarray], skip: int) -> tuple[np.ndarray, np.ndarray]:
    """For points p float [M, 2]: distance to the nearest other lane's samples and that sample's tangent."""
    best = np.full(len(p), np.inf)
    tangent = np.zeros((len(p), 2))
    for k, q in enumerate(lanes):
        if k == skip:
            continue
        d = np.linalg.norm(p[:, None] - q[None], axis=-1)
        j = d.argmin(1)
        dj = d[np.arange(len(p)), j]
        closer = dj < best
        best[closer] = dj[closer]
        tangent[closer] = _normals(q)[0][j[closer]]
    return best, tangent


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) index runs where flags is True and at least _MIN_RUN long."""
    out, start = [], None
    for i, f in enumerate(list(flags) + [False]):
        if f and start is None:
            start = i
        elif not f and start is not None:
            if i - start >= _MIN_RUN:
                out.append((start, i))
            start = None
    return out


def road_map_from_lanes(lanes: tuple[Lane, ...] | list[Lane], lane_width: float = LANE_WIDTH,
                        sidewalk_width: float = SIDEWALK_WIDTH, sidewalks: bool = True
                        ) -> tuple[list[MapPolygon], list[MapLine]]:
    """(polygons, lines) derived from lane centre lines (see the module docstring). Connector lanes (paths
    through a junction) add drivable surface only; sidewalks=False (highways, rural roads) keeps the kerb
    lines but lays no sidewalk."""
    samples = [_resample(np.asarray(l.points, np.float64)) for l in lanes]
    half = lane_width / 2
    polygons: list[MapPolygon] = []
    lines: list[MapLine] = []
    for k, (lane, pts) in enumerate(zip(lanes, samples)):
        if len(pts) < 2:
            continue
        tangent, left = _normals(pts)
        polygons.append(MapPolygon(np.concatenate([pts + half * left, (pts - half * left)[::-1]]), "drivable"))
        if lane.connector:
            continue
        for side in (1.0, -1.0):
            probe = pts + side * lane_width * left          # where a neighbouring lane's centre would be
            dist, other_t = _nearest_lane(probe, samples, k)
            beside = dist < 0.4 * lane_width
            same = np.sum(other_t * tangent, axis=1) > 0
            edge = pts + side * half * left
            if side > 0:  # dividers once, from the left edge of each lane
                for kind, flags in (("lane_divider", beside & same), ("road_divider", beside & ~same)):
                    for a, b in _runs(flags):
                        lines.append(MapLine(edge[a:b], kind))
            # a free side: kerb and sidewalk, unless the strip would lie on another lane (a junction)
            inner = pts + side * (half + KERB_GAP) * left
            outer = pts + side * (half + KERB_GAP + sidewalk_width) * left
            mid_dist, _ = _nearest_lane((inner + outer) / 2, samples, k)
            out_dist, _ = _nearest_lane(outer, samples, k)
            free = (dist >= 0.75 * lane_width) & (mid_dist > half + 0.2) & (out_dist > half)
            for a, b in _runs(free):
                lines.append(MapLine(edge[a:b], "road_edge"))
                if sidewalks:
                    polygons.append(MapPolygon(np.concatenate([inner[a:b], outer[a:b][::-1]]), "sidewalk"))
    return polygons, lines


NO_SIDEWALK_ENVIRONMENTS = ("highway", "rural")  # the synthetic world lays no sidewalks there


def complete_road_map(layout: Layout, lane_width: float = LANE_WIDTH, sidewalk_width: float = SIDEWALK_WIDTH,
                      sidewalks: bool = True, force: bool = False) -> Layout:
    """The layout with road areas and lines derived from its lanes when it has lanes but no drivable area
    (a generated layout); a layout that already has drivable polygons is returned unchanged unless
    `force`, which replaces its polygons and lines by the derived ones."""
    has_area = any(p.kind in DRIVABLE_KINDS for p in layout.polygons)
    if not layout.lanes or (has_area and not force):
        return layout
    polygons, lines = road_map_from_lanes(layout.lanes, lane_width, sidewalk_width, sidewalks)
    keep_p = () if force else layout.polygons
    keep_l = () if force else layout.lines
    return Layout(layout.boxes, layout.lanes, tuple(keep_l) + tuple(lines), tuple(keep_p) + tuple(polygons))
