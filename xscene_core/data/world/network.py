"""The road network of the synthetic world: a jittered grid of junction nodes joined by curved roads.

Every node, road and its cross-section is a pure function of (seed, grid keys), so any chunk anywhere
sees the same roads. Roads run between 4-neighbour grid nodes; which of them exist depends on the
environment at the road's midpoint (highways keep only roads along their axis, rural areas are sparse).
Traffic drives on the right. For a road from node a to node b, "lateral" is the signed offset to the
left of the direction a->b; lanes a->b lie on the right (lateral < 0), lanes b->a on the left.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
from scipy.spatial import cKDTree

from .environment import ENV_PARAMS, EnvironmentMap, EnvParams
from .random import rng_for

CELL = 140.0  # grid spacing of junction nodes (m)
JITTER = 0.16  # node offset from the cell centre, as a fraction of CELL
SAMPLE_STEP = 0.5  # spacing of road centre-line samples (m)
PARKING_WIDTH = 2.4
SHOULDER_WIDTH = 2.0  # paved (driveable) shoulder of highways

NodeKey = tuple[int, int]


@dataclass(frozen=True)
class Node:
    """A junction (degree >= 3), bend or road end. radius: the driveable disc that joins its roads."""

    key: NodeKey
    pos: np.ndarray  # float64 [2]
    env: str
    neighbours: tuple[NodeKey, ...]
    radius: float = 0.0
    sidewalk: float = 0.0

    @property
    def degree(self) -> int:
        return len(self.neighbours)

    @property
    def is_junction(self) -> bool:
        return self.degree >= 3


@dataclass(frozen=True)
class CrossSection:
    """Lateral profile of a road (metres). Lanes per direction, their width, the central median (0 =
    painted divider), parking lanes on the right (a->b side) and left (b->a side), a paved shoulder
    (highways) and the sidewalk width (0 = none)."""

    lanes: int
    lane_width: float
    median: float
    parking_right: bool
    parking_left: bool
    shoulder: float
    sidewalk: float

    def half_width(self, side: int) -> float:
        """Distance from the centre line to the curb on side +1 (left) or -1 (right)."""
        parking = self.parking_left if side > 0 else self.parking_right
        return self.median / 2 + self.lanes * self.lane_width + (PARKING_WIDTH if parking else 0.0) + self.shoulder

    def lane_offset(self, direction: int, k: int) -> float:
        """Lateral offset of lane k (0 = next to the centre) of direction +1 (a->b) or -1 (b->a)."""
        off = self.median / 2 + (k + 0.5) * self.lane_width
        return -off if direction > 0 else off


@dataclass
class Road:
    """One road between two nodes: centre-line samples every SAMPLE_STEP metres and its cross-section."""

    a: Node
    b: Node
    env: str
    params: EnvParams
    section: CrossSection
    pts: np.ndarray  # float64 [M, 2]
    tangents: np.ndarray  # float64 [M, 2] unit
    s: np.ndarray  # float64 [M] arc length
    tree: cKDTree = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.tree = cKDTree(self.pts)

    @property
    def key(self) -> str:
        return f"{self.a.key[0]}_{self.a.key[1]}-{self.b.key[0]}_{self.b.key[1]}"

    @property
    def length(self) -> float:
        return float(self.s[-1])

    @cached_property
    def bbox(self) -> tuple[float, float, float, float]:
        m = max(self.section.half_width(1), self.section.half_width(-1)) + self.section.sidewalk
        lo, hi = self.pts.min(0) - m, self.pts.max(0) + m
        return float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])

    def at(self, s: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """Centre point(s) and unit tangent(s) at arc length s (linear interpolation)."""
        s = np.clip(np.asarray(s, dtype=np.float64), 0.0, self.length)
        x = np.interp(s, self.s, self.pts[:, 0])
        y = np.interp(s, self.s, self.pts[:, 1])
        tx = np.interp(s, self.s, self.tangents[:, 0])
        ty = np.interp(s, self.s, self.tangents[:, 1])
        n = np.hypot(tx, ty)
        return np.stack([x, y], -1), np.stack([tx / n, ty / n], -1)

    def offset_line(self, lateral: float, s0: float, s1: float, step: float = 2.0) -> np.ndarray:
        """Points [K, 2] of the line at a constant lateral offset between arc lengths s0 < s1."""
        k = max(2, int(math.ceil((s1 - s0) / step)) + 1)
        p, t = self.at(np.linspace(s0, s1, k))
        normal = np.stack([-t[:, 1], t[:, 0]], -1)
        return p + lateral * normal

    def project(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Arc length and signed lateral offset (left +) of points q [N, 2] on this road; points whose
        projection falls beyond an end get s outside [0, length]."""
        _, idx = self.tree.query(q)
        best_s = np.zeros(len(q))
        best_lat = np.full(len(q), np.inf)
        for lo in (idx - 1, idx):
            lo = np.clip(lo, 0, len(self.pts) - 2)
            p0, p1 = self.pts[lo], self.pts[lo + 1]
            d = p1 - p0
            seg = np.hypot(d[:, 0], d[:, 1])
            u = ((q - p0) * d).sum(1) / seg**2
            ends = (lo == 0) & (u < 0) | (lo == len(self.pts) - 2) & (u > 1)
            uc = np.where(ends, u, np.clip(u, 0, 1))  # extrapolate past the road's ends only
            foot = p0 + uc[:, None] * d
            lat = (d[:, 0] * (q[:, 1] - p0[:, 1]) - d[:, 1] * (q[:, 0] - p0[:, 0])) / seg
            dist = np.hypot(*(q - foot).T)
            better = dist < np.abs(best_lat) - 1e-12
            best_s = np.where(better, self.s[lo] + uc * seg, best_s)
            best_lat = np.where(better, np.where(lat >= 0, dist, -dist), best_lat)
        return best_s, best_lat


class RoadNetwork:
    """Nodes and roads of one world, computed lazily and cached."""

    def __init__(self, seed: int, envmap: EnvironmentMap) -> None:
        self.seed = seed
        self.envmap = envmap
        self._pos: dict[NodeKey, np.ndarray] = {}
        self._edge: dict[tuple[NodeKey, NodeKey], bool] = {}
        self._nodes: dict[NodeKey, Node] = {}
        self._sections: dict[tuple[NodeKey, NodeKey], tuple[str, CrossSection]] = {}
        self._roads: dict[tuple[NodeKey, NodeKey], Road] = {}

    # -- graph ---------------------------------------------------------------------------------------
    def node_pos(self, key: NodeKey) -> np.ndarray:
        if key not in self._pos:
            rng = rng_for(self.seed, "node", *key)
            jitter = (rng.random(2) - 0.5) * 2 * JITTER * CELL
            self._pos[key] = (np.array(key, dtype=np.float64) + 0.5) * CELL + jitter
        return self._pos[key]

    def edge_exists(self, a: NodeKey, b: NodeKey) -> bool:
        a, b = min(a, b), max(a, b)
        if (a, b) not in self._edge:
            mid = (self.node_pos(a) + self.node_pos(b)) / 2
            name, params, axis = self.envmap.params_at(*mid)
            horizontal = a[1] == b[1]
            if name == "highway":
                keep = horizontal == (axis == 0)
            else:
                keep = rng_for(self.seed, "edge", *a, *b).random() < params.edge_keep
            self._edge[(a, b)] = bool(keep)
        return self._edge[(a, b)]

    def neighbours(self, key: NodeKey) -> tuple[NodeKey, ...]:
        i, j = key
        cand = ((i + 1, j), (i, j + 1), (i - 1, j), (i, j - 1))
        return tuple(c for c in cand if self.edge_exists(key, c))

    def section(self, a: NodeKey, b: NodeKey) -> tuple[str, CrossSection]:
        a, b = min(a, b), max(a, b)
        if (a, b) not in self._sections:
            mid = (self.node_pos(a) + self.node_pos(b)) / 2
            name, p, _ = self.envmap.params_at(*mid)
            # a highway keeps one cross-section through its region, so its bends join lane to lane
            rng = (rng_for(self.seed, "section-highway", *self.envmap.region_key(*mid)) if name == "highway"
                   else rng_for(self.seed, "section", *a, *b))
            lanes = int(rng.choice([n for n, _ in p.lanes], p=[w for _, w in p.lanes]))
            median = p.median[1] if (rng.random() < p.median[0] and lanes >= 2 or name == "highway") else 0.0
            if name == "highway":
                median = float(rng.uniform(1.2, 3.0))
            park_r = bool(lanes <= 2 and rng.random() < p.parking)
            park_l = bool(lanes <= 2 and rng.random() < p.parking)
            sw = float(rng.uniform(*p.sidewalk)) if p.sidewalk[1] > 0 else 0.0
            if name == "industrial" and rng.random() < 0.4:
                sw = 0.0
            self._sections[(a, b)] = (name, CrossSection(
                lanes, float(rng.uniform(3.3, 3.7)), float(median), park_r, park_l,
                SHOULDER_WIDTH if name == "highway" else 0.0, round(sw, 2)))
        return self._sections[(a, b)]

    def node(self, key: NodeKey) -> Node:
        if key not in self._nodes:
            nbrs = self.neighbours(key)
            secs = [self.section(key, n)[1] for n in nbrs]
            hw = max((max(s.half_width(1), s.half_width(-1)) for s in secs), default=0.0)
            sw = max((s.sidewalk for s in secs), default=0.0)
            # junctions get a disc; bends need none (their roads share a tangent and join seamlessly);
            # a dead end gets a turning circle
            radius = hw + 2.0 if len(nbrs) >= 3 else 0.0 if len(nbrs) == 2 else hw
            pos = self.node_pos(key)
            self._nodes[key] = Node(key, pos, self.envmap.name_at(*pos), nbrs, float(radius), float(sw))
        return self._nodes[key]

    # -- geometry ------------------------------------------------------------------------------------
    def _tangent(self, node: Node, toward: NodeKey) -> np.ndarray:
        """Unit tangent of a road leaving `node` toward a neighbour: smooth through bends (degree 2),
        straight at junctions and road ends."""
        here = node.pos
        chord = self.node_pos(toward) - here
        chord /= np.linalg.norm(chord)
        if node.degree == 2:
            other = node.neighbours[0] if node.neighbours[1] == toward else node.neighbours[1]
            t = self.node_pos(toward) - self.node_pos(other)
            return t / np.linalg.norm(t)
        return chord

    def road(self, a: NodeKey, b: NodeKey) -> Road:
        """The road between neighbouring nodes, oriented from min(a, b) to max(a, b)."""
        a, b = min(a, b), max(a, b)
        if (a, b) not in self._roads:
            if not self.edge_exists(a, b):
                raise KeyError(f"no road between {a} and {b}")
            na, nb = self.node(a), self.node(b)
            env, sec = self.section(a, b)
            rng = rng_for(self.seed, "curve", *a, *b)
            p0, p3 = na.pos, nb.pos
            length = float(np.linalg.norm(p3 - p0))
            t0, t3 = self._tangent(na, b), -self._tangent(nb, a)
            p1, p2 = p0 + t0 * length / 3, p3 - t3 * length / 3
            if env != "highway" and not na.is_junction and not nb.is_junction and rng.random() < 0.5:
                chord = (p3 - p0) / length
                bulge = np.array([-chord[1], chord[0]]) * rng.uniform(-0.18, 0.18) * length
                p1, p2 = p1 + bulge, p2 + bulge
            tt = np.linspace(0, 1, max(64, int(length)))[:, None]
            curve = (1 - tt) ** 3 * p0 + 3 * (1 - tt) ** 2 * tt * p1 + 3 * (1 - tt) * tt**2 * p2 + tt**3 * p3
            seg = np.hypot(*np.diff(curve, axis=0).T)
            cum = np.concatenate([[0.0], np.cumsum(seg)])
            s = np.linspace(0, cum[-1], max(2, int(math.ceil(cum[-1] / SAMPLE_STEP)) + 1))
            t_at = np.interp(s, cum, tt[:, 0])[:, None]
            pts = (1 - t_at) ** 3 * p0 + 3 * (1 - t_at) ** 2 * t_at * p1 + 3 * (1 - t_at) * t_at**2 * p2 + t_at**3 * p3
            deriv = 3 * (1 - t_at) ** 2 * (p1 - p0) + 6 * (1 - t_at) * t_at * (p2 - p1) + 3 * t_at**2 * (p3 - p2)
            tang = deriv / np.linalg.norm(deriv, axis=1, keepdims=True)
            seg = np.hypot(*np.diff(pts, axis=0).T)
            s = np.concatenate([[0.0], np.cumsum(seg)])
            self._roads[(a, b)] = Road(na, nb, env, ENV_PARAMS[env], sec, pts, tang, s)
        return self._roads[(a, b)]

    # -- spatial queries -----------------------------------------------------------------------------
    def nodes_near(self, xmin: float, ymin: float, xmax: float, ymax: float) -> list[Node]:
        """Nodes whose disc or roads may reach the box (cells overlapping it, plus one ring)."""
        i0, i1 = int(math.floor(xmin / CELL)) - 1, int(math.floor(xmax / CELL)) + 1
        j0, j1 = int(math.floor(ymin / CELL)) - 1, int(math.floor(ymax / CELL)) + 1
        return [self.node((i, j)) for i in range(i0, i1 + 1) for j in range(j0, j1 + 1)]

    def roads_near(self, xmin: float, ymin: float, xmax: float, ymax: float) -> list[Road]:
        """Roads whose corridor (curb + sidewalk) bounding box intersects the box."""
        out = []
        for n in self.nodes_near(xmin, ymin, xmax, ymax):
            for nb in n.neighbours:
                if nb > n.key:  # each road once, owned by its lower node
                    r = self.road(n.key, nb)
                    bx0, by0, bx1, by1 = r.bbox
                    if bx0 <= xmax and bx1 >= xmin and by0 <= ymax and by1 >= ymin:
                        out.append(r)
        return out
