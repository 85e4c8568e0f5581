"""Static features of roads and junctions: lanes, lines and map areas (the layout's map part) and the
buildings, trees and poles that stand beside the roads. All in world coordinates, one road or node at a
time, deterministic from the world seed."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ...types.layout import Lane, MapLine, MapPolygon
from .ground import median_span
from .network import PARKING_WIDTH, Node, Road, RoadNetwork
from .random import rng_for

CROSSWALK = (0.5, 4.0)  # crosswalk span, metres beyond the junction disc
STOP_LINE = 4.6


@dataclass(frozen=True)
class Building:
    """A building footprint (rectangle) with its height; uid is stable in the world."""

    uid: str
    center: tuple[float, float]
    size: tuple[float, float]
    yaw: float
    height: float
    priority: float


@dataclass(frozen=True)
class Tree:
    uid: str
    x: float
    y: float
    trunk_top: float  # height of the crown's base above the ground (m)
    radius: float  # crown radius (m)
    crown_top: float  # above the ground (m)


@dataclass(frozen=True)
class Pole:
    uid: str
    x: float
    y: float
    height: float


@dataclass
class MapFeatures:
    """Map elements in world coordinates."""

    lanes: list[Lane] = field(default_factory=list)
    lines: list[MapLine] = field(default_factory=list)
    polygons: list[MapPolygon] = field(default_factory=list)


def _circle(center: np.ndarray, radius: float, n: int = 24) -> np.ndarray:
    a = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return center + radius * np.stack([np.cos(a), np.sin(a)], -1)


def _strip(road: Road, lat0: float, lat1: float, s0: float, s1: float) -> np.ndarray:
    """Polygon between two lateral offsets over an arc-length range."""
    left = road.offset_line(lat1, s0, s1, step=4.0)
    right = road.offset_line(lat0, s0, s1, step=4.0)
    return np.concatenate([right, left[::-1]])


def road_map(net: RoadNetwork, road: Road) -> MapFeatures:
    """Lanes (outside junction discs), dividers, curbs and areas of one road."""
    sec, out = road.section, MapFeatures()
    s0, s1 = road.a.radius, road.length - road.b.radius
    if s1 - s0 < 1.0:
        return out
    for d in (1, -1):
        for k in range(sec.lanes):
            pts = road.offset_line(sec.lane_offset(d, k), s0, s1)
            end_node = road.b if d > 0 else road.a
            turn = "straight"
            if end_node.is_junction and sec.lanes >= 2 and k in (0, sec.lanes - 1):
                wanted = "left" if k == 0 else "right"
                if wanted in _turns_available(net, road, end_node, d):
                    turn = wanted
            out.lanes.append(Lane(pts if d > 0 else pts[::-1], turn, f"{road.key}:{'f' if d > 0 else 'b'}{k}"))
    m = sec.median / 2
    for k in range(1, sec.lanes):
        for side in (1, -1):
            out.lines.append(MapLine(road.offset_line(side * (m + k * sec.lane_width), s0, s1), "lane_divider"))
    if sec.median > 0:
        for side in (1, -1):
            out.lines.append(MapLine(road.offset_line(side * m, s0, s1), "road_divider"))
    else:
        out.lines.append(MapLine(road.offset_line(0.0, s0, s1), "road_divider"))
    for side in (1, -1):
        hw = sec.half_width(side)
        out.lines.append(MapLine(road.offset_line(side * hw, s0, s1), "road_edge"))
        if sec.sidewalk > 0:
            out.polygons.append(MapPolygon(_strip(road, side * hw, side * (hw + sec.sidewalk), s0, s1), "sidewalk"))
        if (sec.parking_left if side > 0 else sec.parking_right):
            inner = m + sec.lanes * sec.lane_width
            out.polygons.append(MapPolygon(_strip(road, side * inner, side * (inner + PARKING_WIDTH), s0, s1), "parking"))
    out.polygons.append(MapPolygon(_strip(road, -sec.half_width(-1), sec.half_width(1), 0.0, road.length), "drivable"))
    if sec.median > 0:
        ms0, ms1 = median_span(road)
        if ms1 - ms0 > 2:
            out.polygons.append(MapPolygon(_strip(road, -m, m, ms0, ms1), "median"))
    for node, from_start in ((road.a, True), (road.b, False)):
        if not node.is_junction:
            continue
        r = node.radius
        if node.sidewalk > 0:
            c0, c1 = (r + CROSSWALK[0], r + CROSSWALK[1]) if from_start else (road.length - r - CROSSWALK[1], road.length - r - CROSSWALK[0])
            if 0 < c0 < c1 < road.length:
                out.polygons.append(MapPolygon(_strip(road, -sec.half_width(-1), sec.half_width(1), c0, c1), "crosswalk"))
        # stop line across the lanes that arrive at this junction
        s = road.length - r - STOP_LINE if not from_start else r + STOP_LINE
        if 0 < s < road.length:
            side = -1 if not from_start else 1  # arriving lanes: a->b on the right at b, b->a on the left at a
            p, t = road.at(np.array([s, s]))
            nrm = np.array([-t[0, 1], t[0, 0]])
            lat = side * (m + sec.lanes * sec.lane_width)
            out.lines.append(MapLine(np.stack([p[0] + side * m * nrm, p[0] + lat * nrm]), "stop_line"))
    return out


def _arm_direction(road: Road, node: Node) -> np.ndarray:
    """Unit direction pointing from the node into the road."""
    if road.a.key == node.key:
        return road.tangents[0]
    return -road.tangents[-1]


def _turn_of(d_in: np.ndarray, d_out: np.ndarray) -> str:
    cross = d_in[0] * d_out[1] - d_in[1] * d_out[0]
    ang = math.degrees(math.atan2(cross, float(d_in @ d_out)))
    if abs(ang) < 35:
        return "straight"
    return "left" if ang > 0 else "right"


def _turns_available(net: RoadNetwork, road: Road, node: Node, d: int) -> set[str]:
    d_in = road.tangents[-1] if d > 0 else -road.tangents[0]
    arms = (net.road(node.key, nb) for nb in node.neighbours)
    return {_turn_of(d_in, _arm_direction(r, node)) for r in arms if r.key != road.key}


def node_map(net: RoadNetwork, node: Node) -> MapFeatures:
    """Junction disc, and connector lanes through the node from every arriving lane to the lanes that
    leave by the other arms (left from the leftmost lane, right from the rightmost)."""
    out = MapFeatures()
    if node.degree == 0 or node.radius <= 0:  # bends: the lanes of both roads meet end to end
        return out
    out.polygons.append(MapPolygon(_circle(node.pos, node.radius), "intersection" if node.is_junction else "drivable"))
    roads = [net.road(node.key, nb) for nb in node.neighbours]
    for r_in in roads:
        d_in_sign = 1 if r_in.b.key == node.key else -1  # lanes arriving at node
        s_end = r_in.length - node.radius if d_in_sign > 0 else node.radius
        p_end, t_end = r_in.at(s_end)
        d_in = t_end * d_in_sign
        for r_out in roads:
            if r_out is r_in:
                continue
            d_out_sign = 1 if r_out.a.key == node.key else -1  # lanes leaving the node
            s_start = node.radius if d_out_sign > 0 else r_out.length - node.radius
            p_start, t_start = r_out.at(s_start)
            d_out = t_start * d_out_sign
            turn = _turn_of(d_in, d_out) if node.is_junction else "straight"
            n_in, n_out = r_in.section.lanes, r_out.section.lanes
            if turn == "left":
                pairs = [(0, 0)]
            elif turn == "right":
                pairs = [(n_in - 1, n_out - 1)]
            else:
                pairs = [(k, min(k, n_out - 1)) for k in range(n_in)]
            for ki, ko in pairs:
                nrm_in = np.array([-t_end[1], t_end[0]])
                nrm_out = np.array([-t_start[1], t_start[0]])
                a = p_end + r_in.section.lane_offset(d_in_sign, ki) * nrm_in
                b = p_start + r_out.section.lane_offset(d_out_sign, ko) * nrm_out
                out.lanes.append(Lane(_bezier_connector(a, d_in, b, d_out), turn,
                                      f"{node.key[0]}_{node.key[1]}:{r_in.key}>{r_out.key}:{ki}>{ko}", connector=True))
    return out


def _bezier_connector(a: np.ndarray, da: np.ndarray, b: np.ndarray, db: np.ndarray, n: int = 8) -> np.ndarray:
    """Quadratic Bezier from a (heading da) to b (heading db), control point where the headings meet."""
    m = np.array([da, -db]).T
    ctrl = (a + b) / 2
    if abs(np.linalg.det(m)) > 1e-3:
        t, u = np.linalg.solve(m, b - a)
        if t > 0 and u > 0:
            ctrl = a + t * da
    tt = np.linspace(0, 1, n)[:, None]
    return (1 - tt) ** 2 * a + 2 * (1 - tt) * tt * ctrl + tt**2 * b


def road_buildings(seed: int, road: Road) -> list[Building]:
    """Candidate buildings along both sides of a road (validated later against all nearby roads)."""
    p, sec = road.params, road.section
    if p.built_share <= 0:
        return []
    rng = rng_for(seed, "buildings", *road.a.key, *road.b.key)
    out = []
    for side in (1, -1):
        s = road.a.radius + rng.uniform(2, 8)
        end = road.length - road.b.radius - 4
        n = 0
        while s < end:
            front = rng.uniform(*p.building_frontage)
            depth, setback = rng.uniform(*p.building_depth), rng.uniform(*p.building_setback)
            height = rng.uniform(*p.building_height)
            build = rng.random() < p.built_share
            if build and s + front <= end:
                mid = s + front / 2
                c, t = road.at(mid)
                nrm = np.array([-t[1], t[0]]) * side
                lat = sec.half_width(side) + sec.sidewalk + setback + depth / 2
                centre = c + lat * nrm
                yaw = float(math.atan2(t[1], t[0]))
                out.append(Building(f"{road.key}/b{side:+d}{n}", (float(centre[0]), float(centre[1])),
                                    (float(front - 0.6), float(depth)), yaw, float(height), float(rng.random())))
                if rng.random() < p.back_row:  # a second building behind, filling the block's interior
                    depth2 = rng.uniform(*p.building_depth)
                    back = centre + (depth / 2 + rng.uniform(1.5, 5.0) + depth2 / 2) * nrm
                    out.append(Building(f"{road.key}/b{side:+d}{n}r", (float(back[0]), float(back[1])),
                                        (float(front - 0.6), float(depth2)), yaw,
                                        float(rng.uniform(*p.building_height)), float(rng.random())))
                n += 1
            s += front + rng.uniform(*p.building_gap)
    return out


def road_trees_and_poles(seed: int, road: Road) -> tuple[list[Tree], list[Pole]]:
    """Street trees and lamp posts in the curb band of wide sidewalks, and front-yard trees."""
    p, sec = road.params, road.section
    rng = rng_for(seed, "trees", *road.a.key, *road.b.key)
    trees, poles = [], []
    s0, s1 = road.a.radius + 6, road.length - road.b.radius - 6
    for side in (1, -1):
        hw = sec.half_width(side)
        if sec.sidewalk >= 2.5 and p.street_trees > 0:
            s = s0 + rng.uniform(0, p.street_trees)
            while s < s1:
                c, t = road.at(s)
                q = c + side * (hw + 0.9) * np.array([-t[1], t[0]])
                r = rng.uniform(1.3, 2.3)
                trees.append(Tree(f"{road.key}/t{side:+d}{len(trees)}", float(q[0]), float(q[1]),
                                  float(rng.uniform(2.2, 3.0)), float(r), float(rng.uniform(5.0, 8.0))))
                s += p.street_trees * rng.uniform(0.8, 1.25)
        if sec.sidewalk >= 1.5 and p.lamp_spacing > 0:
            s = s0 + p.lamp_spacing / 2
            while s < s1:
                c, t = road.at(s)
                q = c + side * (hw + 0.4) * np.array([-t[1], t[0]])
                poles.append(Pole(f"{road.key}/p{side:+d}{len(poles)}", float(q[0]), float(q[1]), 7.0))
                s += p.lamp_spacing
        if road.env in ("suburban", "residential") and sec.sidewalk > 0:
            s = s0 + rng.uniform(0, 10)
            while s < s1:
                c, t = road.at(s)
                setback = p.building_setback[0]
                q = c + side * (hw + sec.sidewalk + setback * 0.5) * np.array([-t[1], t[0]])
                r = min(2.4, setback * 0.5)
                trees.append(Tree(f"{road.key}/y{side:+d}{len(trees)}", float(q[0]), float(q[1]),
                                  float(rng.uniform(1.2, 2.2)), float(r), float(rng.uniform(4.0, 7.5))))
                s += rng.uniform(9, 20)
    return trees, poles
