"""Ground of the synthetic world: which surface class covers each world (x, y) and how high it is.

Driveable surface (road corridors and junction discs) wins over medians, medians over sidewalks,
sidewalks over land; land is the environment's ground class, forest where a noise field says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ... import semantics
from ...types.occupancy import ROAD_SURFACE_Z
from .environment import ENV_PARAMS, EnvironmentMap
from .network import Node, Road
from .random import ValueNoise2D

DRIVEABLE, SIDEWALK, OTHER_FLAT, TERRAIN, VEGETATION = (
    semantics.ID[n] for n in ("driveable_surface", "sidewalk", "other_flat", "terrain", "vegetation"))

ROAD_TOP = ROAD_SURFACE_Z  # top of the road surface (m, chunk/ego frame)
CURB = 0.4  # sidewalks and raised medians are one voxel higher
MEDIAN_END = 8.0  # medians stop this far from a junction disc so traffic can turn


def median_span(road: Road) -> tuple[float, float]:
    """Arc-length range of a road's median: it stops short of junctions and runs through bends."""
    s0 = road.a.radius + MEDIAN_END if road.a.is_junction else 0.0
    s1 = road.length - (road.b.radius + MEDIAN_END if road.b.is_junction else 0.0)
    return s0, s1


@dataclass
class GroundSample:
    """Ground at N points: label uint8 [N] (Occ3D id), top float64 [N] (surface height, m),
    canopy float64 [N] (top of forest vegetation, m; 0 where no forest), env int64 [N]."""

    label: np.ndarray
    top: np.ndarray
    canopy: np.ndarray
    env: np.ndarray


class GroundField:
    """Ground classification of world points from the roads and nodes around them."""

    def __init__(self, seed: int, envmap: EnvironmentMap) -> None:
        self.envmap = envmap
        self.bump = ValueNoise2D(seed, "terrain-height", 23.0)
        self.forest = ValueNoise2D(seed, "forest", 37.0)
        self.park = ValueNoise2D(seed, "park", 53.0)
        self.canopy_h = ValueNoise2D(seed, "canopy", 11.0)

    def road_masks(self, q: np.ndarray, roads: list[Road], nodes: list[Node]) -> tuple[np.ndarray, ...]:
        """bool masks [N] (driveable, median, sidewalk) and float [N] distance to the nearest curb
        outside roads (inf where no road is near)."""
        n = len(q)
        drive, median, walk = np.zeros(n, bool), np.zeros(n, bool), np.zeros(n, bool)
        clearance = np.full(n, np.inf)
        for r in roads:
            x0, y0, x1, y1 = r.bbox
            sel = np.flatnonzero((q[:, 0] >= x0) & (q[:, 0] <= x1) & (q[:, 1] >= y0) & (q[:, 1] <= y1))
            if not len(sel):
                continue
            s, lat = r.project(q[sel])
            within = (s >= 0) & (s <= r.length)
            sec = r.section
            hw = np.where(lat >= 0, sec.half_width(1), sec.half_width(-1))
            a = np.abs(lat)
            on_road = within & (a < hw)
            m0, m1 = median_span(r)
            med = on_road & (a < sec.median / 2) & (s > m0) & (s < m1)
            drive[sel] |= on_road & ~med
            median[sel] |= med
            walk[sel] |= within & (a >= hw) & (a < hw + sec.sidewalk)
            clearance[sel] = np.minimum(clearance[sel], np.where(within, a - hw - sec.sidewalk, np.inf))
        for nd in nodes:
            if nd.radius <= 0:
                continue
            d = np.hypot(q[:, 0] - nd.pos[0], q[:, 1] - nd.pos[1])
            drive |= d < nd.radius
            walk |= (d >= nd.radius) & (d < nd.radius + nd.sidewalk)
            clearance = np.minimum(clearance, d - nd.radius - nd.sidewalk)
        median &= ~drive
        walk &= ~drive & ~median
        return drive, median, walk, clearance

    def sample(self, q: np.ndarray, roads: list[Road], nodes: list[Node]) -> GroundSample:
        """Ground at world points q float64 [N, 2]."""
        drive, median, walk, clearance = self.road_masks(q, roads, nodes)
        env, _ = self.envmap.lookup(q[:, 0], q[:, 1])
        names = list(ENV_PARAMS)
        env_names = np.array(self.envmap._names)[env]
        label = np.empty(len(q), np.uint8)
        top = np.full(len(q), ROAD_TOP)
        canopy = np.zeros(len(q))
        land = ~(drive | median | walk)
        base = np.array([semantics.ID[ENV_PARAMS[n].land] for n in self.envmap._names], np.uint8)[env]
        # parks and lawns break up paved land; fields and verges in the open country
        greens = self.park(q[:, 0], q[:, 1]) > np.where(base == OTHER_FLAT, 0.72, 0.2)
        land_label = np.where(greens, TERRAIN, base).astype(np.uint8)
        forest_share = np.array([ENV_PARAMS[n].forest for n in self.envmap._names])[env]
        forest = land & (self.forest(q[:, 0], q[:, 1]) > 1 - forest_share) & (clearance > 3.0)
        label[:] = land_label
        label[drive] = DRIVEABLE
        label[walk] = SIDEWALK
        hwy = env_names == "highway"
        label[median] = np.where(hwy[median], OTHER_FLAT, TERRAIN)
        bump = self.bump(q[:, 0], q[:, 1])
        top = np.where(label == TERRAIN, ROAD_TOP + 0.9 * (bump - 0.35), top)
        top = np.where(walk | (median & ~hwy), ROAD_TOP + CURB, top)
        canopy = np.where(forest, top + 3.0 + 5.0 * self.canopy_h(q[:, 0], q[:, 1]), 0.0)
        label[forest] = VEGETATION
        del names
        return GroundSample(label, top, canopy, env)
