"""Road geometry of a scene graph in the ego frame (x forward, y left): lanes as 5-point polylines and
areas (crosswalks, intersections).

- `to_ego_lane`: move a retrieved road so the ego stands on a lane heading along it;
- `ego_road`: the lanes of the ego's road, left to right, and lane references ("the left lane");
- `road_kind`: 4-way intersection, T-junction, straight or curved;
- `template_road`, `with_junction`, `with_crosswalk`: procedural roads and edits of a road.
Right-hand traffic, 3.5 m lanes. Coordinates are kept at the text form's 0.1 m so graphs round-trip.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from ..data.world.describe import flow_word
from ..ops.clip import clip_polyline
from ..types.occupancy import GridSpec
from ..types.scene import AreaNode, LaneNode

LANE_POINTS = 5  # points per lane in a scene graph (as the synthetic world writes them)
LANE_WIDTH = 3.5
EGO_LANE_AHEAD = 25.0  # metres of its lane the ego should have ahead after `to_ego_lane`


@dataclass(frozen=True)
class Road:
    """The road part of a scene graph: lanes and areas."""

    lanes: tuple[LaneNode, ...] = ()
    areas: tuple[AreaNode, ...] = ()


def text_round(v: float) -> float:
    # the value the text form writes (0.1 m), so graphs round-trip through scene_graph_text exactly
    return float(f"{v:.1f}")


def resample(points: np.ndarray, n: int | None = None, step: float | None = None) -> np.ndarray:
    """A polyline float [K, 2] resampled to n points, or every `step` metres."""
    seg = np.hypot(*np.diff(points, axis=0).T)
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    if n is None:
        n = max(2, int(cum[-1] / step) + 1)
    s = np.linspace(0, cum[-1], n)
    return np.stack([np.interp(s, cum, points[:, 0]), np.interp(s, cum, points[:, 1])], -1)


def _length(points: np.ndarray) -> float:
    return float(np.hypot(*np.diff(points, axis=0).T).sum())


def dist_to_lines(p: np.ndarray, lines: Sequence[np.ndarray]) -> np.ndarray:
    """float [M, L]: distance of each point p float [M, 2] to each polyline."""
    out = np.empty((len(p), len(lines)))
    for j, line in enumerate(lines):
        a, d = line[:-1], np.diff(line, axis=0)
        rel = p[:, None, :] - a[None]
        u = np.clip((rel * d[None]).sum(-1) / np.maximum((d * d).sum(-1), 1e-12), 0, 1)
        out[:, j] = np.hypot(*(rel - u[..., None] * d[None]).transpose(2, 0, 1)).min(1)
    return out


def _lane(lane_id: str, points: np.ndarray, turn: str = "straight") -> LaneNode:
    pts = resample(points, LANE_POINTS)
    d = pts[-1] - pts[0]
    return LaneNode(lane_id, tuple((text_round(x), text_round(y)) for x, y in pts), flow_word(math.atan2(d[1], d[0])), turn)


def _clip_lanes(parts: Iterable[tuple[np.ndarray, str]], grid: GridSpec) -> list[LaneNode]:
    """Lanes clipped to the chunk, parts shorter than 4 m dropped, renumbered lane_0..."""
    (lx, ly, _), (ux, uy, _) = grid.lower, grid.upper
    out = []
    for pts, turn in parts:
        for part in clip_polyline(np.asarray(pts, float), (lx, ly), (ux, uy)):
            if _length(part) >= 4.0:
                out.append(_lane(f"lane_{len(out)}", part, turn))
    return out


def lane_array(lane: LaneNode) -> np.ndarray:
    return np.asarray(lane.points, float)


def to_ego_lane(road: Road, grid: GridSpec) -> Road:
    """The road moved rigidly so that the ego (origin, heading +x) stands on its nearest lane, heading
    along it. Memories are chunks centred anywhere near a road, often off it; a prompt's "ahead" and
    "in the left lane" assume an ego driving on a lane."""
    if not road.lanes:
        return road
    best = None
    for lane in road.lanes:
        dense = resample(lane_array(lane), step=1.0)
        s = np.arange(len(dense)) * float(np.hypot(*(dense[1] - dense[0])))
        # the ego stands where its lane still runs on ahead, so "ahead in our lane" has room
        ahead = s[-1] - s >= min(EGO_LANE_AHEAD, s[-1] / 2)
        d = np.where(ahead, np.hypot(*dense.T), np.inf)
        i = int(d.argmin())
        t = dense[min(i + 1, len(dense) - 1)] - dense[max(i - 1, 0)]
        if best is None or d[i] < best[0]:
            best = (float(d[i]), dense[i], math.atan2(t[1], t[0]))
    dist, p0, theta = best
    if dist < 1.0 and abs(theta) < math.radians(15):
        return road
    c, s = math.cos(-theta), math.sin(-theta)
    rot = np.array([[c, -s], [s, c]])
    move = lambda pts: (np.asarray(pts, float) - p0) @ rot.T  # noqa: E731
    lanes = _clip_lanes(((move(l.points), l.turn) for l in road.lanes), grid)
    areas, counts = [], Counter()
    for a in road.areas:
        x, y = move([a.center])[0]
        if grid.contains_xy(x, y):
            areas.append(AreaNode(f"{a.kind}_{counts[a.kind]}", a.kind, (text_round(x), text_round(y))))
            counts[a.kind] += 1
    return Road(tuple(lanes), tuple(areas))


@dataclass(frozen=True)
class EgoRoad:
    """The lanes of the road the ego drives on, left to right at the probe line x = probe_x:
    (lane_id, y, forward) with y the lateral offset and forward the direction of travel (+x)."""

    lanes: tuple[tuple[str, float, bool], ...]
    probe_x: float
    ego: str | None  # the lane under the ego

    def ref(self, name: str) -> str | None:
        """Lane id of a lane reference (prompt_parser.LANE_REFS): ego, left / right (the neighbour on
        that side of the ego lane, else the ego lane), oncoming (nearest backward lane), middle."""
        if not self.lanes or self.ego is None:
            return None
        ids = [l[0] for l in self.lanes]
        e = ids.index(self.ego)
        if name == "ego":
            return self.ego
        if name == "left":
            return ids[e - 1] if e > 0 else self.ego
        if name == "right":
            return ids[e + 1] if e + 1 < len(ids) else self.ego
        if name == "oncoming":
            back = [l for l in self.lanes if not l[2]]
            return min(back, key=lambda l: abs(l[1]))[0] if back else None
        if name == "middle":
            fwd = [l for l in self.lanes if l[2]] or list(self.lanes)
            return fwd[len(fwd) // 2][0]
        return None


def ego_road(road: Road, probes: Sequence[float] = (0.0, -5.0, 5.0, -10.0, 10.0)) -> EgoRoad:
    """Lanes roughly parallel to the ego's heading that cross the first probe line x = probe (metres)
    where a lane passes within 2.5 m of the ego's line y = 0, kept as one road while the gaps between
    them stay lane-sized (a parallel street 30 m away is another road)."""
    for probe in probes:
        hits = []
        for lane in road.lanes:
            pts = lane_array(lane)
            for a, b in zip(pts[:-1], pts[1:]):
                if (a[0] - probe) * (b[0] - probe) <= 0 and a[0] != b[0]:
                    d = b - a
                    if abs(d[1]) > abs(d[0]) * 0.7:  # not parallel enough to the ego's road
                        continue
                    y = a[1] + (probe - a[0]) / d[0] * d[1]
                    hits.append((lane.lane_id, float(y), bool(d[0] > 0)))
                    break
        if not hits:
            continue
        hits.sort(key=lambda h: -h[1])  # left to right
        e = min(range(len(hits)), key=lambda i: abs(hits[i][1]))
        if abs(hits[e][1]) > 2.5:
            continue
        lo = e
        while lo > 0 and hits[lo - 1][1] - hits[lo][1] <= 7.5:
            lo -= 1
        hi = e
        while hi + 1 < len(hits) and hits[hi][1] - hits[hi + 1][1] <= 7.5:
            hi += 1
        return EgoRoad(tuple(hits[lo:hi + 1]), probe, hits[e][0])
    return EgoRoad((), 0.0, None)


def road_kind(road: Road) -> str:
    """One of prompt_parser.ROAD_KINDS: the nearest intersection's arm count (3 = T-junction), else
    straight or curved by the heading change along the ego road's lanes."""
    junctions = [a for a in road.areas if a.kind == "intersection"]
    if junctions:
        c = np.asarray(min(junctions, key=lambda a: math.hypot(*a.center)).center)
        angles = []
        for lane in road.lanes:  # each lane ending at the junction points along its arm, away from it
            pts = lane_array(lane)
            ends = [np.linalg.norm(pts[0] - c), np.linalg.norm(pts[-1] - c)]
            if min(ends) < 22.0:
                away = pts[1] - pts[0] if ends[0] < ends[1] else pts[-2] - pts[-1]
                angles.append(math.degrees(math.atan2(away[1], away[0])) % 360)
        arms: list[float] = []
        for a in sorted(angles):
            if all(min(abs(a - b) % 360, 360 - abs(a - b) % 360) > 40 for b in arms):
                arms.append(a)
        return "t_junction" if len(arms) == 3 else "intersection"
    ego = ego_road(road)
    ids = {l[0] for l in ego.lanes} or {l.lane_id for l in road.lanes}
    for lane in road.lanes:
        if lane.lane_id in ids:
            pts = lane_array(lane)
            h = np.unwrap(np.arctan2(*np.diff(pts, axis=0).T[::-1]))
            if abs(h[-1] - h[0]) > math.radians(12) or np.abs(np.diff(h)).max(initial=0) > math.radians(8):
                return "curved"
    return "straight"


def template_road(kind: str, lanes: int, rng: np.random.Generator, grid: GridSpec, highway: bool = False) -> Road:
    """A procedural road of `kind` with `lanes` lanes (both directions; right-hand traffic), the ego in the
    rightmost forward lane (the middle one of three). Used when no retrieved road matches."""
    fwd = (lanes + 1) // 2
    back = lanes - fwd
    e = 1 if fwd >= 3 else 0
    median = 2.0 if highway else 0.0
    offsets = [((k - e) * LANE_WIDTH, True) for k in range(fwd)]
    offsets += [((fwd - e) * LANE_WIDTH - LANE_WIDTH + median + (j + 1) * LANE_WIDTH, False) for j in range(back)]
    (lx, _, _), (ux, _, _) = grid.lower, grid.upper
    parts = []
    if kind == "curved":
        radius = float(rng.uniform(45, 70))
        bend = 1.0 if rng.random() < 0.5 else -1.0
        t = np.linspace(-45, 45, 46)
        phi = t / radius
        ref = np.stack([radius * np.sin(phi), bend * radius * (1 - np.cos(phi))], -1)
        tangent = np.stack([np.cos(phi), bend * np.sin(phi)], -1)
        normal = np.stack([-tangent[:, 1], tangent[:, 0]], -1)
        for y0, forward in offsets:
            pts = ref + y0 * normal
            parts.append((pts if forward else pts[::-1], "straight"))
    else:
        xs = np.array([lx, ux])
        for y0, forward in offsets:
            pts = np.stack([xs, np.full(2, y0)], -1)
            parts.append((pts if forward else pts[::-1], "straight"))
    road = Road(tuple(_clip_lanes(parts, grid)), ())
    if kind in ("intersection", "t_junction"):
        road = with_junction(road, kind, float(rng.uniform(14, 24)), rng, grid)
    return road


def with_junction(road: Road, kind: str, ahead: float, rng: np.random.Generator, grid: GridSpec) -> Road:
    """The road with a junction `ahead` metres along the ego road: its lanes cut at the junction box, a
    cross road of lanes along y (both arms for a 4-way intersection, one for a T-junction), the
    intersection area and a crosswalk on each arm."""
    ego = ego_road(road)
    if ego.lanes:
        ys = [y for _, y, _ in ego.lanes]
        yc = (max(ys) + min(ys)) / 2
        half_ego = (max(ys) - min(ys)) / 2 + LANE_WIDTH / 2
    else:
        yc, half_ego = 0.0, LANE_WIDTH
    n_cross = 2 if len(ego.lanes) <= 2 else 4
    half_cross = n_cross * LANE_WIDTH / 2
    xc = ahead
    rx, ry = half_cross + 2.0, half_ego + 2.0
    (lx, ly, _), (ux, uy, _) = grid.lower, grid.upper
    parts = []
    for lane in road.lanes:  # cut the lanes that pass through the junction box
        dense = resample(lane_array(lane), step=0.5)
        inside = (np.abs(dense[:, 0] - xc) < rx) & (np.abs(dense[:, 1] - yc) < ry)
        runs, start = [], None
        for i, flag in enumerate(np.append(inside, True)):
            if not flag and start is None:
                start = i
            elif flag and start is not None:
                runs.append(dense[start:i])
                start = None
        parts += [(r, lane.turn) for r in runs if len(r) >= 2]
    sides = [1.0, -1.0] if kind == "intersection" else [1.0 if rng.random() < 0.5 else -1.0]
    for side in sides:  # side +1: the arm on the left (+y)
        y_near, y_far = yc + side * ry, (uy if side > 0 else ly)
        for k in range(n_cross // 2):
            off = (k + 0.5) * LANE_WIDTH
            # right-hand traffic: lanes heading +y lie at larger x, lanes heading -y at smaller x
            up = np.array([[xc + off, min(y_near, y_far)], [xc + off, max(y_near, y_far)]])
            down = np.array([[xc - off, max(y_near, y_far)], [xc - off, min(y_near, y_far)]])
            parts += [(up, "straight"), (down, "straight")]
    lanes = _clip_lanes(parts, grid)
    keep = [a for a in road.areas if not (abs(a.center[0] - xc) < rx + 3 and abs(a.center[1] - yc) < ry + 3)]
    areas = [a for a in keep if a.kind == "crosswalk"]
    spots = [(xc - rx - 1.5, yc), (xc + rx + 1.5, yc)] + [(xc, yc + s * (ry + 1.5)) for s in sides]
    for x, y in spots:
        if lx + 1 <= x < ux - 1 and ly + 1 <= y < uy - 1:
            areas.append(AreaNode("crosswalk", "crosswalk", (text_round(x), text_round(y))))
    junctions = [a for a in keep if a.kind == "intersection"]
    junctions.append(AreaNode("j", "intersection", (text_round(xc), text_round(yc))))
    return Road(tuple(lanes), renumber_areas(areas + junctions))


def with_crosswalk(road: Road, rng: np.random.Generator) -> Road:
    """The road with a crosswalk across the ego road 10-20 m ahead (further places tried when the road
    does not reach there) when it has none."""
    if any(a.kind == "crosswalk" for a in road.areas):
        return road
    for x in (float(rng.uniform(10, 20)), 15.0, 8.0, -10.0):
        at = ego_road(road, probes=(x,))
        if at.lanes:
            ys = [y for _, y, _ in at.lanes]
            crosswalk = AreaNode("c", "crosswalk", (text_round(x), text_round((max(ys) + min(ys)) / 2)))
            return Road(road.lanes, renumber_areas(list(road.areas) + [crosswalk]))
    return Road(road.lanes, renumber_areas(list(road.areas) + [AreaNode("c", "crosswalk", (12.0, 0.0))]))


def renumber_areas(areas: Sequence[AreaNode]) -> tuple[AreaNode, ...]:
    counts: Counter = Counter()
    out = []
    for a in sorted(areas, key=lambda a: a.kind):
        out.append(AreaNode(f"{a.kind}_{counts[a.kind]}", a.kind, a.center))
        counts[a.kind] += 1
    return tuple(out)
