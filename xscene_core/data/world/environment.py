"""Environments of the synthetic world (downtown, suburban, rural, industrial, highway, residential):
their parameters, and the map of which environment covers which world point."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...types.scene import ENVIRONMENTS
from .random import rng_for


@dataclass(frozen=True)
class EnvParams:
    """How one environment builds its streets and fills its land. Probabilities are per road or per
    metre as named; sizes in metres.

    Fields: edge_keep (probability a grid road exists), lanes (lanes-per-direction choices and weights),
    parking (probability of a parking lane per side), median (probability of a median and its width),
    sidewalk (width range; 0 = none), building_* (frontage, depth, setback and height ranges, and the
    share of frontage built), street_trees (spacing or 0), lamp_spacing, vehicle_gap (mean free gap
    between moving vehicles), pedestrian_rate (per metre of sidewalk), parked_rate (share of parking
    lane filled), building_gap (gap range between neighbouring buildings), back_row (probability of a
    second building behind a frontage building), construction (probability of a work zone per road), vehicle_mix (class weights of
    the traffic), land (ground class of unbuilt land), forest (share of land under trees).
    """

    edge_keep: float
    lanes: tuple[tuple[int, float], ...]
    parking: float
    median: tuple[float, float]
    sidewalk: tuple[float, float]
    building_frontage: tuple[float, float]
    building_depth: tuple[float, float]
    building_setback: tuple[float, float]
    building_height: tuple[float, float]
    built_share: float
    building_gap: tuple[float, float]
    back_row: float
    street_trees: float
    lamp_spacing: float
    vehicle_gap: float
    pedestrian_rate: float
    parked_rate: float
    construction: float
    vehicle_mix: tuple[tuple[str, float], ...]
    land: str
    forest: float


ENV_PARAMS: dict[str, EnvParams] = {
    "downtown": EnvParams(
        0.95, ((1, 0.15), (2, 0.6), (3, 0.25)), 0.5, (0.3, 2.0), (3.5, 5.0), (12, 30), (16, 34), (0.6, 2.0),
        (12, 40), 0.9, (0.3, 2.0), 0.7, 9.0, 22.0, 9.0, 0.12, 0.8, 0.15,
        (("car", 0.72), ("bus", 0.08), ("truck", 0.08), ("motorcycle", 0.06), ("bicycle", 0.06)),
        "other_flat", 0.0),
    "suburban": EnvParams(
        0.85, ((1, 0.6), (2, 0.4)), 0.4, (0.1, 2.0), (1.8, 2.5), (12, 22), (10, 16), (5, 9),
        (4, 9), 0.7, (3.0, 8.0), 0.0, 12.0, 30.0, 16.0, 0.03, 0.5, 0.05,
        (("car", 0.84), ("truck", 0.06), ("bus", 0.03), ("motorcycle", 0.04), ("bicycle", 0.03)),
        "terrain", 0.15),
    "residential": EnvParams(
        0.85, ((1, 1.0),), 0.8, (0.0, 0.0), (1.6, 2.2), (9, 15), (8, 12), (3, 6),
        (5, 10), 0.85, (2.0, 5.0), 0.1, 10.0, 30.0, 22.0, 0.05, 0.65, 0.03,
        (("car", 0.88), ("truck", 0.03), ("motorcycle", 0.04), ("bicycle", 0.05)),
        "terrain", 0.1),
    "industrial": EnvParams(
        0.8, ((1, 0.5), (2, 0.5)), 0.2, (0.0, 0.0), (0.0, 1.8), (30, 60), (25, 45), (6, 15),
        (6, 14), 0.6, (4.0, 12.0), 0.4, 0.0, 35.0, 18.0, 0.01, 0.3, 0.3,
        (("car", 0.45), ("truck", 0.3), ("trailer", 0.12), ("construction_vehicle", 0.08), ("motorcycle", 0.05)),
        "other_flat", 0.05),
    "rural": EnvParams(
        0.55, ((1, 1.0),), 0.0, (0.0, 0.0), (0.0, 0.0), (10, 18), (8, 14), (10, 25),
        (4, 8), 0.12, (10.0, 40.0), 0.0, 0.0, 0.0, 40.0, 0.0, 0.0, 0.02,
        (("car", 0.75), ("truck", 0.12), ("trailer", 0.05), ("construction_vehicle", 0.03), ("motorcycle", 0.05)),
        "terrain", 0.45),
    "highway": EnvParams(
        1.0, ((2, 0.4), (3, 0.6)), 0.0, (1.0, 3.0), (0.0, 0.0), (0, 0), (0, 0), (0, 0),
        (0, 0), 0.0, (0.0, 0.0), 0.0, 0.0, 0.0, 25.0, 0.0, 0.0, 0.05,
        (("car", 0.7), ("truck", 0.16), ("trailer", 0.07), ("bus", 0.04), ("motorcycle", 0.03)),
        "terrain", 0.3),
}
assert set(ENV_PARAMS) == set(ENVIRONMENTS)

# Environments cover Voronoi regions around one jittered seed point per region cell.
REGION_SIZE = 420.0
ENV_WEIGHTS = {"downtown": 0.22, "suburban": 0.2, "residential": 0.18, "industrial": 0.14, "rural": 0.13, "highway": 0.13}


class EnvironmentMap:
    """Which environment covers a world point, and (for highways) along which axis the highway runs."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._cache: dict[tuple[int, int], tuple[float, float, int, int]] = {}
        self._names = list(ENV_WEIGHTS)
        self._p = np.array([ENV_WEIGHTS[n] for n in self._names])

    def region(self, ri: int, rj: int) -> tuple[float, float, int, int]:
        """(seed x, seed y, environment index, highway axis 0=x / 1=y) of region cell (ri, rj)."""
        key = (ri, rj)
        if key not in self._cache:
            rng = rng_for(self.seed, "region", ri, rj)
            x = (ri + 0.2 + 0.6 * rng.random()) * REGION_SIZE
            y = (rj + 0.2 + 0.6 * rng.random()) * REGION_SIZE
            self._cache[key] = (x, y, int(rng.choice(len(self._names), p=self._p)), int(rng.integers(2)))
        return self._cache[key]

    def lookup(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """x, y float arrays (metres) -> (environment index int [..], highway axis int [..])."""
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        ri0, rj0 = np.floor(x / REGION_SIZE).astype(np.int64), np.floor(y / REGION_SIZE).astype(np.int64)
        best = np.full(x.shape, np.inf)
        env = np.zeros(x.shape, dtype=np.int64)
        axis = np.zeros(x.shape, dtype=np.int64)
        for ri in np.unique(ri0):
            for rj in np.unique(rj0):
                sel = (ri0 == ri) & (rj0 == rj)
                for di in (-1, 0, 1):
                    for dj in (-1, 0, 1):
                        sx, sy, e, a = self.region(int(ri) + di, int(rj) + dj)
                        d = (x[sel] - sx) ** 2 + (y[sel] - sy) ** 2
                        closer = d < best[sel]
                        idx = np.flatnonzero(sel)[closer]
                        best[idx], env[idx], axis[idx] = d[closer], e, a
        return env, axis

    def region_key(self, x: float, y: float) -> tuple[int, int]:
        """The region cell whose seed point is nearest to (x, y)."""
        ri0, rj0 = int(np.floor(x / REGION_SIZE)), int(np.floor(y / REGION_SIZE))
        cells = [(ri0 + di, rj0 + dj) for di in (-1, 0, 1) for dj in (-1, 0, 1)]
        return min(cells, key=lambda c: (self.region(*c)[0] - x) ** 2 + (self.region(*c)[1] - y) ** 2)

    def name_at(self, x: float, y: float) -> str:
        e, _ = self.lookup(np.array([x]), np.array([y]))
        return self._names[int(e[0])]

    def params_at(self, x: float, y: float) -> tuple[str, EnvParams, int]:
        """(name, parameters, highway axis) at one point."""
        e, a = self.lookup(np.array([x]), np.array([y]))
        name = self._names[int(e[0])]
        return name, ENV_PARAMS[name], int(a[0])
