"""Objects of the synthetic world as boxes in world coordinates: traffic in the lanes, parked vehicles,
pedestrians on sidewalks and crosswalks, work zones with cones, barriers and machines, and highway
median barriers. Candidates come per road or junction; the world validates them (on the right surface,
no overlaps) with rules that only look at what is near each object, so every chunk agrees."""

from __future__ import annotations

import math

import numpy as np

from ... import semantics
from ...types.layout import Box
from .features import CROSSWALK
from .ground import CURB, ROAD_TOP, median_span
from .network import PARKING_WIDTH, Node, Road, RoadNetwork
from .random import rng_for

PAINTS = ("white", "black", "silver", "gray", "red", "blue", "dark blue", "green", "yellow", "beige", "orange")
PAINT_P = np.array([0.24, 0.2, 0.15, 0.13, 0.08, 0.08, 0.04, 0.03, 0.02, 0.02, 0.01])
JUNCTION_CLEAR = 6.5  # traffic stops this far beyond a junction disc (stop line + crosswalk)


class Candidate:
    """An object before validation: its box, its priority in overlap resolution and where it must stand."""

    __slots__ = ("box", "priority", "surface")

    def __init__(self, box: Box, priority: float, surface: str) -> None:
        self.box, self.priority, self.surface = box, priority, surface


def _box(rng, label: int, center2: np.ndarray, yaw: float, ground: float, state: str, uid: str,
         size: tuple[float, float, float] | None = None) -> Box:
    l, w, h = size or semantics.SIZES[label].sample(rng)
    color = ""
    if label in (semantics.ID["car"], semantics.ID["truck"], semantics.ID["bus"], semantics.ID["motorcycle"]):
        color = str(rng.choice(PAINTS, p=PAINT_P))
    return Box((float(center2[0]), float(center2[1]), ground + h / 2), (l, w, h), float(math.atan2(math.sin(yaw), math.cos(yaw))),
               label, state, uid, color)


def road_objects(seed: int, road: Road) -> list[Candidate]:
    """All object candidates that belong to one road."""
    rng = rng_for(seed, "objects", *road.a.key, *road.b.key)
    p, sec = road.params, road.section
    out: list[Candidate] = []
    names = [n for n, _ in p.vehicle_mix]
    weights = np.array([w for _, w in p.vehicle_mix])
    s_lo = road.a.radius + (JUNCTION_CLEAR if road.a.is_junction else 1.0)
    s_hi = road.length - road.b.radius - (JUNCTION_CLEAR if road.b.is_junction else 1.0)
    if s_hi - s_lo < 6:
        return out

    # a work zone closes the outer lane of one direction over a stretch
    zone = None
    if rng.random() < p.construction and sec.lanes >= 2 and s_hi - s_lo > 45:
        d = int(rng.choice([1, -1]))
        z0 = rng.uniform(s_lo + 5, s_hi - 35)
        zone = (d, sec.lanes - 1, z0, z0 + rng.uniform(20, 30))
        out.extend(_work_zone(rng, road, zone))

    # moving and stopped traffic, lane by lane, in the direction of travel
    for d in (1, -1):
        for k in range(sec.lanes):
            lateral = sec.lane_offset(d, k)
            pos = rng.exponential(p.vehicle_gap)
            seq = []
            while True:
                cls = str(rng.choice(names, p=weights / weights.sum()))
                if cls == "bicycle" and k != sec.lanes - 1:
                    cls = "car"
                label = semantics.ID[cls]
                size = semantics.SIZES[label].sample(rng)
                start = pos
                pos += size[0]
                if pos > s_hi - s_lo:
                    break
                centre_along = start + size[0] / 2
                s = s_lo + centre_along if d > 0 else s_hi - centre_along
                if zone and zone[0] == d and zone[1] == k and zone[2] - 4 < s < zone[3] + 4:
                    pos += rng.exponential(p.vehicle_gap) + 2.0
                    continue
                c, t = road.at(s)
                off = lateral + (0.9 * (-1 if d > 0 else 1) if cls == "bicycle" else 0.0)
                centre = c + off * np.array([-t[1], t[0]])
                yaw = math.atan2(t[1], t[0]) + (0 if d > 0 else math.pi)
                state = "moving" if rng.random() > 0.12 else "stopped"
                seq.append((s, _box(rng, label, centre, yaw, ROAD_TOP, state, f"{road.key}/v{d:+d}{k}.{len(seq)}", size)))
                pos += 1.5 + rng.exponential(p.vehicle_gap)
            if seq:  # the vehicle nearest a junction waits at the stop line
                end_node = road.b if d > 0 else road.a
                s_first, b_first = max(seq, key=lambda e: e[0] * d)
                if end_node.is_junction and abs((s_hi if d > 0 else s_lo) - s_first) < 10:
                    seq[seq.index((s_first, b_first))] = (s_first, _restate(b_first, "stopped"))
            out.extend(Candidate(b, rng.random(), "road") for _, b in seq)

    # parked cars in the parking lanes
    for side in (1, -1):
        if not (sec.parking_left if side > 0 else sec.parking_right):
            continue
        lateral = side * (sec.median / 2 + sec.lanes * sec.lane_width + PARKING_WIDTH / 2)
        s = s_lo + rng.uniform(0, 4)
        n = 0
        while s < s_hi:
            label = semantics.ID["car"] if rng.random() > 0.06 else semantics.ID["motorcycle"]
            size = semantics.SIZES[label].sample(rng)
            if s + size[0] > s_hi:
                break
            if rng.random() < p.parked_rate:
                c, t = road.at(s + size[0] / 2)
                yaw = math.atan2(t[1], t[0]) + (0 if side < 0 else math.pi)
                box = _box(rng, label, c + lateral * np.array([-t[1], t[0]]), yaw, ROAD_TOP, "parked",
                           f"{road.key}/k{side:+d}.{n}", size)
                out.append(Candidate(box, rng.random(), "road"))
                n += 1
            s += size[0] + rng.uniform(0.8, 3.5)

    # pedestrians walking or standing on the sidewalks, bicycles parked at the curb
    for side in (1, -1):
        if sec.sidewalk < 1.2:
            continue
        hw = sec.half_width(side)
        band = (hw + 1.3, hw + sec.sidewalk - 0.45) if sec.sidewalk >= 2.5 else (hw + 0.45, hw + sec.sidewalk - 0.45)
        n_ped = rng.poisson(p.pedestrian_rate * (s_hi - s_lo))
        for n in range(n_ped):
            s = rng.uniform(s_lo, s_hi)
            c, t = road.at(s)
            centre = c + side * rng.uniform(*band) * np.array([-t[1], t[0]])
            walking = rng.random() < 0.7
            yaw = math.atan2(t[1], t[0]) + (math.pi if rng.random() < 0.5 else 0.0) if walking else rng.uniform(-math.pi, math.pi)
            box = _box(rng, semantics.ID["pedestrian"], centre, yaw, ROAD_TOP + CURB,
                       "walking" if walking else "standing", f"{road.key}/p{side:+d}.{n}")
            out.append(Candidate(box, rng.random(), "sidewalk"))
        if road.env == "downtown" and sec.sidewalk >= 2.5:
            for n in range(rng.poisson(0.02 * (s_hi - s_lo))):
                s = rng.uniform(s_lo, s_hi)
                c, t = road.at(s)
                centre = c + side * (hw + 0.9) * np.array([-t[1], t[0]])
                yaw = math.atan2(t[1], t[0]) + math.pi / 2
                box = _box(rng, semantics.ID["bicycle"], centre, yaw, ROAD_TOP + CURB, "parked", f"{road.key}/c{side:+d}.{n}",
                           (rng.uniform(1.6, 1.9), rng.uniform(0.6, 0.75), rng.uniform(1.1, 1.3)))
                out.append(Candidate(box, rng.random(), "sidewalk"))

    # highway median barriers, end to end
    if road.env == "highway" and sec.median > 0:
        s, s_end = median_span(road)
        s += 0.2
        n = 0
        while s + 3.0 < s_end:
            c, t = road.at(s + 1.5)
            box = _box(rng, semantics.ID["barrier"], c, math.atan2(t[1], t[0]), ROAD_TOP, "static",
                       f"{road.key}/m.{n}", (2.9, 0.6, float(rng.uniform(0.9, 1.1))))
            out.append(Candidate(box, rng.random(), "median"))
            s += 3.1
            n += 1
    return out


def _restate(box: Box, state: str) -> Box:
    from dataclasses import replace

    return replace(box, state=state)


def _work_zone(rng, road: Road, zone: tuple[int, int, float, float]) -> list[Candidate]:
    """Cones along the closed lane's inner edge, a barrier across its start and a machine inside."""
    d, k, z0, z1 = zone
    sec = road.section
    inner = sec.lane_offset(d, k) + (0.5 * sec.lane_width * (1 if d > 0 else -1))
    out = []
    n = 0
    for s in np.arange(z0, z1, 3.0):
        c, t = road.at(s)
        box = _box(rng, semantics.ID["traffic_cone"], c + inner * np.array([-t[1], t[0]]), 0.0, ROAD_TOP, "static",
                   f"{road.key}/z.c{n}")
        out.append(Candidate(box, 2.0, "road"))
        n += 1
    entry = z0 if d > 0 else z1
    c, t = road.at(entry - 1.0 * d)
    centre = c + sec.lane_offset(d, k) * np.array([-t[1], t[0]])
    barrier = _box(rng, semantics.ID["barrier"], centre, math.atan2(t[1], t[0]) + math.pi / 2, ROAD_TOP, "static",
                   f"{road.key}/z.b", (2.8, 0.6, 1.0))
    out.append(Candidate(barrier, 2.0, "road"))
    c, t = road.at((z0 + z1) / 2)
    centre = c + sec.lane_offset(d, k) * np.array([-t[1], t[0]])
    machine = _box(rng, semantics.ID["construction_vehicle"], centre, math.atan2(t[1], t[0]) + (0 if d > 0 else math.pi),
                   ROAD_TOP, "parked", f"{road.key}/z.m", (6.0, 2.6, 3.0))
    out.append(Candidate(machine, 1.9, "road"))
    return out


def node_objects(seed: int, net: RoadNetwork, node: Node) -> list[Candidate]:
    """Pedestrians crossing on the crosswalks of a junction."""
    if not node.is_junction or node.sidewalk <= 0:
        return []
    rng = rng_for(seed, "crossing", *node.key)
    p_cross = 0.45 if node.env == "downtown" else 0.2
    out = []
    for nb in node.neighbours:
        road = net.road(node.key, nb)
        if rng.random() > p_cross:
            continue
        s = node.radius + sum(CROSSWALK) / 2
        s = s if road.a.key == node.key else road.length - s
        c, t = road.at(s)
        hw_l, hw_r = road.section.half_width(1), road.section.half_width(-1)
        for n in range(int(rng.integers(1, 3))):
            lat = rng.uniform(-hw_r + 0.6, hw_l - 0.6)
            yaw = math.atan2(t[1], t[0]) + (math.pi / 2 if rng.random() < 0.5 else -math.pi / 2)
            box = _box(rng, semantics.ID["pedestrian"], c + lat * np.array([-t[1], t[0]]), yaw, ROAD_TOP, "crossing",
                       f"{node.key[0]}_{node.key[1]}/x{road.key}.{n}")
            out.append(Candidate(box, 3.0 + rng.random(), "crosswalk"))
    return out
