"""Where objects may stand on a road, and placing the object groups a prompt or an edit asks for.

`Slots` holds candidate poses by kind (lane centre lines, curbs, sidewalk bands, road edges,
crosswalks, a free grid); `Slots.place` picks a free pose meeting a `Constraint` (stated position,
lane, relations to placed objects or areas). `place_specs` places ObjectSpecs group by group, targets
first, and records which of the stated relations the poses really satisfy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Iterable, Mapping, Sequence

import numpy as np

from .. import semantics
from ..data.world.describe import NEAR_M, position_word
from ..data.world.traffic import PAINT_P, PAINTS
from ..ops.clip import polygons_overlap, rect_corners
from ..types.occupancy import GridSpec
from ..types.scene import ObjectNode
from .prompt_parser import DEFAULT_STATE, FAMILY, POSITION_SETS, ObjectSpec, RelationSpec
from .road_geometry import Road, dist_to_lines, ego_road, lane_array, resample, text_round
from ..data.world.describe import spatial_predicate
from .scene_text import ON_LANE_M, SceneObject, StatedRelation

CURB_OFFSET = 2.8  # parked vehicles: this far right of the outermost lane's centre line
SIDEWALK_OFFSET = 5.5  # pedestrians: this far beside the outermost lane's centre line
EDGE_OFFSET = 1.2  # cones and barriers: on the outer half of the outermost lane
JUNCTION_CLEAR = 9.0  # no curb / sidewalk slot this close to an intersection centre
CENTRAL_M = 22.0  # relation targets stand this close to the ego, leaving room around them
EGO_SIZE = (4.6, 1.9, 1.6)
PAINTED = ("car", "truck", "bus", "motorcycle")  # classes the synthetic world paints


@dataclass(frozen=True)
class Box2D:
    """A footprint: centre, heading (radians), length and width."""

    x: float
    y: float
    yaw: float
    length: float
    width: float

    def corners(self, margin: float = 0.0) -> np.ndarray:
        return rect_corners((self.x, self.y), (self.length + 2 * margin, self.width + 2 * margin), self.yaw)

    @property
    def radius(self) -> float:
        return math.hypot(self.length, self.width) / 2


@dataclass(frozen=True)
class Constraint:
    """Where one object must go: a stated position (POSITION_SETS key), a lane id and relations to placed
    objects or areas as (predicate, x, y) of the target's centre."""

    position: str | None = None
    lane: str | None = None
    relations: tuple[tuple[str, float, float], ...] = ()
    central: bool = False  # keep within CENTRAL_M of the ego: others will be placed relative to it
    around: tuple[float, float, float] | None = None  # (x, y, radius): where the objects related to it must be


def midpoint_size(cls: str) -> tuple[float, float, float]:
    """The middle of the class's size range (semantics.SIZES), at the text form's 0.1 m."""
    r = semantics.SIZES[semantics.ID[cls]]
    return tuple(text_round((lo + hi) / 2) for lo, hi in (r.length, r.width, r.height))  # type: ignore[return-value]


SLOT_KINDS = {  # slot kinds to try, in order, per (family, state)
    ("vehicle", "moving"): ("lane", "curb", "free"), ("vehicle", "stopped"): ("lane", "curb", "free"),
    ("vehicle", "parked"): ("curb", "lane", "free"), ("person", "walking"): ("sidewalk", "crosswalk", "free"),
    ("person", "standing"): ("sidewalk", "crosswalk", "free"), ("person", "crossing"): ("crosswalk", "lane", "free"),
    ("static", "static"): ("edge", "curb", "lane", "free"),
}


class Slots:
    """Candidate poses of a road, by kind: "lane" (lane centre lines, heading along the flow), "curb"
    (right of an outermost lane), "sidewalk" (beyond the curb, both sides), "edge" (outer half of an
    outermost lane), "crosswalk" (on crosswalk areas, heading across the road) and "free" (a 2 m grid
    over the chunk, the last resort). Poses are at the text form's precision."""

    def __init__(self, road: Road, grid: GridSpec) -> None:
        self.road = road
        (lx, ly, _), (ux, uy, _) = grid.lower, grid.upper
        self.bounds = (lx + 1.5, ly + 1.5, ux - 1.5, uy - 1.5)
        lines = [lane_array(l) for l in road.lanes]
        junctions = np.array([a.center for a in road.areas if a.kind == "intersection"]).reshape(-1, 2)
        # kind -> (xy float [N, 2], yaw float [N] radians, lane index int [N] (-1: none), sector str [N])
        self.kinds: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}
        P, T, L = [], [], []
        for k, pts in enumerate(lines):
            dense = resample(pts, step=1.0)
            t = np.gradient(dense, axis=0)
            t /= np.linalg.norm(t, axis=1, keepdims=True) + 1e-12
            P.append(dense), T.append(t), L.append(np.full(len(dense), k))
        if lines:
            P, T, L = np.concatenate(P), np.concatenate(T), np.concatenate(L)
        else:
            P, T, L = np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0, int)
        right = np.stack([T[:, 1], -T[:, 0]], -1)
        yaw = np.arctan2(T[:, 1], T[:, 0])

        def clear_of_lanes(pts: np.ndarray, dmin: float) -> np.ndarray:
            ok = np.ones(len(pts), bool)
            if lines and len(pts):
                ok &= dist_to_lines(pts, lines).min(1) >= dmin
            if len(junctions) and len(pts):
                ok &= np.hypot(*(pts[:, None] - junctions[None]).transpose(2, 0, 1)).min(1) > JUNCTION_CLEAR
            return ok

        self._add("lane", P, yaw, L)
        curb = P + right * CURB_OFFSET
        outer = clear_of_lanes(curb, CURB_OFFSET - 0.3)
        self._add("curb", curb[outer], yaw[outer], L[outer])
        self._add("edge", (P + right * EDGE_OFFSET)[outer], yaw[outer], L[outer])
        walk = np.concatenate([P + right * SIDEWALK_OFFSET, P - right * SIDEWALK_OFFSET])
        walk_yaw = np.concatenate([yaw, yaw])
        ok = clear_of_lanes(walk, SIDEWALK_OFFSET - 0.8)
        self._add("sidewalk", walk[ok], walk_yaw[ok], np.concatenate([L, L])[ok])
        cw = [a.center for a in road.areas if a.kind == "crosswalk"]
        pts, yws = [], []
        for c in cw:
            g = np.stack(np.meshgrid(np.arange(-3, 3.01, 1.0), np.arange(-3, 3.01, 1.0)), -1).reshape(-1, 2) + c
            across = 0.0
            if lines:
                near = int(dist_to_lines(np.asarray([c]), lines)[0].argmin())
                d = lines[near][-1] - lines[near][0]
                across = math.atan2(d[1], d[0]) + math.pi / 2
            pts.append(g), yws.append(np.full(len(g), across))
        if pts:
            self._add("crosswalk", np.concatenate(pts), np.concatenate(yws), np.full(sum(len(p) for p in pts), -1))
        else:
            self._add("crosswalk", np.zeros((0, 2)), np.zeros(0), np.zeros(0, int))
        g = np.stack(np.meshgrid(np.arange(lx + 2, ux - 1, 2.0), np.arange(ly + 2, uy - 1, 2.0)), -1).reshape(-1, 2)
        self._add("free", g, np.zeros(len(g)), np.full(len(g), -1))
        self.lane_ids = [l.lane_id for l in road.lanes]

    def _add(self, kind: str, xy: np.ndarray, yaw: np.ndarray, lane: np.ndarray) -> None:
        xy = np.round(np.asarray(xy, float).reshape(-1, 2), 1)
        x0, y0, x1, y1 = self.bounds
        ok = (xy[:, 0] >= x0) & (xy[:, 0] <= x1) & (xy[:, 1] >= y0) & (xy[:, 1] <= y1)
        yaw_deg = np.round(np.degrees(np.arctan2(np.sin(yaw), np.cos(yaw))))
        xy = xy[ok]
        sectors = np.array([position_word(x, y) for x, y in xy], dtype=object)
        self.kinds[kind] = (xy, np.radians(yaw_deg[ok]), np.asarray(lane)[ok], sectors)

    def place(self, cls: str, state: str, c: Constraint, occupied: list[Box2D], rng: np.random.Generator,
              kinds: Sequence[str] | None = None) -> Box2D | None:
        """A free pose for one object meeting the constraint, or None. Candidates close to a relation
        target come first (nearest first); otherwise a seeded shuffle that favours 6-32 m from the ego."""
        length, width, _ = midpoint_size(cls)
        family = FAMILY[cls]
        kinds = kinds or SLOT_KINDS[(family, state)]
        if c.lane is not None:
            kinds = ("lane",) + tuple(k for k in kinds if k == "free")
        margin = 0.4 if family == "vehicle" else 0.15
        for kind in kinds:
            xy, yaw, lane, sectors = self.kinds[kind]
            if not len(xy):
                continue
            ok = np.ones(len(xy), bool)
            if c.lane is not None and kind == "lane":
                ok &= lane == self.lane_ids.index(c.lane)
            if c.position is not None:
                ok &= np.isin(sectors, list(POSITION_SETS[c.position]))
            if c.central:
                ok &= (np.abs(xy[:, 0]) <= CENTRAL_M) & (np.abs(xy[:, 1]) <= CENTRAL_M)
            if c.around is not None:
                ok &= np.hypot(xy[:, 0] - c.around[0], xy[:, 1] - c.around[1]) <= c.around[2]
            score = np.zeros(len(xy))
            for pred, tx, ty in c.relations:
                dx, dy = xy[:, 0] - tx, xy[:, 1] - ty
                gap = 0.5
                if pred == "behind":
                    ok &= -dx >= np.abs(dy) + gap
                elif pred == "front of":
                    ok &= dx >= np.abs(dy) + gap
                elif pred == "left of":
                    ok &= dy > np.abs(dx) + gap
                elif pred == "right of":
                    ok &= -dy > np.abs(dx) + gap
                elif pred == "near":
                    ok &= np.hypot(dx, dy) <= NEAR_M - 0.5
                score += np.hypot(dx, dy)
            idx = np.flatnonzero(ok)
            if not len(idx):
                continue
            if c.relations:
                order = idx[np.argsort(score[idx] + rng.uniform(0, 1.5, len(idx)), kind="stable")]
            else:
                d = np.hypot(*xy[idx].T)
                w = np.where((d >= 6) & (d <= 32), 1.0, 0.25)
                order = idx[np.argsort(-rng.random(len(idx)) ** (1 / w), kind="stable")]
            for i in order[:600]:
                box = Box2D(float(xy[i, 0]), float(xy[i, 1]), float(yaw[i]), length, width)
                if not collides(box, occupied, margin):
                    if kind == "lane" and family == "person":  # crossing where no crosswalk: across the lane
                        box = replace(box, yaw=box.yaw + math.pi / 2)
                    return box
        return None


def collides(box: Box2D, occupied: list[Box2D], margin: float) -> bool:
    """Whether a footprint grown by `margin` metres overlaps any occupied one (a circle test first)."""
    mine = box.corners(margin)
    for o in occupied:
        if math.hypot(o.x - box.x, o.y - box.y) < o.radius + box.radius + margin and polygons_overlap(mine, o.corners()):
            return True
    return False


def make_node(node_id: str, cls: str, state: str, box: Box2D) -> ObjectNode:
    """An ObjectNode at the text form's precision (0.1 m, 1 degree)."""
    x, y = text_round(box.x), text_round(box.y)
    heading = float(f"{math.degrees(math.atan2(math.sin(box.yaw), math.cos(box.yaw))):.0f}")
    return ObjectNode(node_id, semantics.ID[cls], state, position_word(x, y), heading, (x, y), midpoint_size(cls))


def box_of(node: ObjectNode) -> Box2D:
    return Box2D(node.location[0], node.location[1], math.radians(node.heading_deg), node.size[0], node.size[1])


def ego_box() -> Box2D:
    return Box2D(0.0, 0.0, 0.0, EGO_SIZE[0], EGO_SIZE[1])


def next_id(cls: str, taken: Iterable[str]) -> str:
    taken = set(taken)
    k = 0
    while f"{cls}_{k}" in taken:
        k += 1
    return f"{cls}_{k}"


def place_specs(specs: Sequence[ObjectSpec], road: Road, slots: Slots, rng: np.random.Generator,
                existing: Sequence[SceneObject] = (), bound: Mapping[int, SceneObject] | None = None
                ) -> list[SceneObject]:
    """`place_groups`, flattened in spec order."""
    groups = place_groups(specs, road, slots, rng, existing, bound)
    return [o for i in sorted(groups) if i not in (bound or {}) for o in groups[i]]


def place_groups(specs: Sequence[ObjectSpec], road: Road, slots: Slots, rng: np.random.Generator,
                 existing: Sequence[SceneObject] = (), bound: Mapping[int, SceneObject] | None = None
                 ) -> dict[int, list[SceneObject]]:
    """Place object groups, relation targets first; spec index -> its objects.

    specs: the groups (count (lo, hi) drawn with rng; (0, 0) places nothing); existing: objects already
    in the scene (kept clear of, their ids not reused); bound: spec index -> an existing object that
    spec stands for (an edit's "behind the truck" names a truck already there), never placed again.
    New objects get ids class_k not taken yet. Each group gets one colour: the stated one, else
    a paint distinct from the other new groups of its class, so the groups stay apart in the text. When
    the road has no pose for everything, what the text promised is kept in this order: the surface
    (lane, curb, sidewalk), the position, the relations, then only the position.
    """
    bound = dict(bound or {})
    order = _dependency_order(specs)
    targets = {j for i in order for j in _dependencies(specs, i)}
    members: dict[int, list[SceneObject]] = {i: [o] for i, o in bound.items()}
    placed: list[SceneObject] = []
    occupied = [ego_box()] + [box_of(o.node) for o in existing]
    taken = [o.node_id for o in existing]
    ego = ego_road(road)
    used_colours: dict[str, set[str]] = {}
    for i in order:
        o = specs[i]
        if i in bound:
            continue
        lo, hi = o.count
        n = int(rng.integers(lo, hi + 1)) if hi > lo else lo
        if n == 0:
            continue
        state = o.state or DEFAULT_STATE[o.class_name]
        colour = o.colour or ""
        if not colour and o.class_name in PAINTED:
            colour = paint(rng, avoid=used_colours.get(o.class_name, set()))
        used_colours.setdefault(o.class_name, set()).add(colour)
        lane_id, rel_targets, stated = None, [], []
        for r in o.relations:
            if r.target.kind == "lane":
                lane_id = ego.ref(r.target.name)
                if lane_id is not None:
                    stated.append(StatedRelation("on top of", lane_id, r.target.name))
            elif r.target.kind == "area":
                areas = [a for a in road.areas if a.kind == r.target.name]
                if areas:
                    a = min(areas, key=lambda a: math.hypot(*a.center))
                    rel_targets.append(("near", a.center[0], a.center[1]))
                    stated.append(StatedRelation("near", a.area_id))
            elif r.target.kind == "object":
                t = _target_of(specs, r, members)
                if t is not None:
                    rel_targets.append((r.predicate, *t.node.location))
                    stated.append(StatedRelation(r.predicate, t.node_id))
        if state == "crossing" and not any(a.kind == "crosswalk" for a in road.areas):
            state = "walking"
        c = Constraint(o.position, lane_id, tuple(rel_targets), central=i in targets, around=_around(specs, i, road))
        attempts = [(c, None), (replace(c, around=None), None), (replace(c, position=None, around=None), None),
                    (replace(c, around=None), ("free",)), (replace(c, position=None, around=None), ("free",)),
                    (Constraint(o.position), ("free",))]
        group = []
        for _ in range(n):
            box = None
            for constraint, kinds in attempts:
                box = slots.place(o.class_name, state, constraint, occupied, rng, kinds=kinds)
                if box is not None:
                    break
            if box is None:
                break
            node = make_node(next_id(o.class_name, taken), o.class_name, state, box)
            taken.append(node.node_id)
            rels = tuple(s for s in stated if stated_holds(s, node, road, list(existing) + placed))
            obj = SceneObject(node, colour, o.position, rels)
            occupied.append(box)
            group.append(obj)
            placed.append(obj)
        members[i] = group
    return members


def _around(specs: Sequence[ObjectSpec], i: int, road: Road) -> tuple[float, float, float] | None:
    """Where spec i should stand when an object related to it must also be near an area ("a bike against
    a barrier near the crossroads": the barrier goes near the crossroads too)."""
    for j, o in enumerate(specs):
        if i in _dependencies(specs, j):
            for r in o.relations:
                if r.target.kind == "area":
                    areas = [a for a in road.areas if a.kind == r.target.name]
                    if areas:
                        a = min(areas, key=lambda a: math.hypot(*a.center))
                        return (a.center[0], a.center[1], NEAR_M + 3.0)
    return None


def _target_of(specs: Sequence[ObjectSpec], rel: RelationSpec, members: Mapping[int, list[SceneObject]]
               ) -> SceneObject | None:
    """The first placed member of the first group that a relation's object target names."""
    for i, o in enumerate(specs):
        if o.class_name == rel.target.name and (rel.target.colour is None or o.colour == rel.target.colour) \
                and members.get(i):
            return members[i][0]
    return None


def stated_holds(s: StatedRelation, node: ObjectNode, road: Road, others: Sequence[SceneObject]) -> bool:
    """Whether a stated relation is true of a node, judged as layout_metrics judges a graph's relations:
    on top of a lane within ON_LANE_M, near within NEAR_M, directions by graph_of's rule."""
    if s.target == "ego":
        return spatial_predicate(node.location, (0.0, 0.0)) == s.predicate
    if s.predicate == "on top of":
        lane = next((l for l in road.lanes if l.lane_id == s.target), None)
        return lane is not None and float(dist_to_lines(np.asarray([node.location]), [lane_array(lane)])[0, 0]) < ON_LANE_M
    where = next((a.center for a in road.areas if a.area_id == s.target), None)
    if where is None:
        where = next((o.node.location for o in others if o.node_id == s.target), None)
    if where is None:
        return False
    if s.predicate == "near":
        return math.dist(where, node.location) < NEAR_M
    return spatial_predicate(node.location, where) == s.predicate


def _dependencies(specs: Sequence[ObjectSpec], i: int) -> set[int]:
    """Indices of the specs that spec i is related to."""
    return {j for r in specs[i].relations if r.target.kind == "object" for j, t in enumerate(specs)
            if j != i and t.class_name == r.target.name}


def _dependency_order(specs: Sequence[ObjectSpec]) -> list[int]:
    """Spec indices with relation targets before the objects related to them (spec order otherwise)."""
    deps = {i: _dependencies(specs, i) for i in range(len(specs))}
    order: list[int] = []
    visiting: set[int] = set()

    def visit(i: int) -> None:
        if i in order or i in visiting:
            return
        visiting.add(i)
        for j in sorted(deps[i]):
            visit(j)
        order.append(i)

    for i in range(len(specs)):
        visit(i)
    return order


def paint(rng: np.random.Generator, avoid: set[str] = frozenset()) -> str:
    p = np.array([0.0 if c in avoid else w for c, w in zip(PAINTS, PAINT_P)])
    if p.sum() == 0:
        p = PAINT_P.copy()
    return str(rng.choice(PAINTS, p=p / p.sum()))
