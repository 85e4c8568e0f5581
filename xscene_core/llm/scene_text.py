"""The working scene and its description: `Scene` = road + objects + the facts only the text holds
(paint colours, stated positions, stated relations), with

- `Scene.graph()`: the SceneGraph (objects ordered group by group; relations as the synthetic world's
  graph_of makes them plus the stated ones);
- `Scene.description()`: the SceneDescription (one foreground entry per group of objects the text can
  tell apart: class, state, colour, stated position, stated relations);
- `Scene.from_description(description, graph)`: the inverse, used by the edit intents;
- `description_following`: a description after hand edits of its graph; `painted_layout`: the stated
  colours onto a layout's boxes.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field, replace

import numpy as np

from .. import semantics
from ..data.world.describe import NEAR_M, PAIR_M, RELATIVE_PHRASE, plural, position_word, spatial_predicate
from ..types.layout import Layout
from ..types.scene import ObjectNode, Relation, SceneDescription, SceneGraph
from .prompt_parser import RelationSpec, position_matches, read_group, read_road
from .road_geometry import Road, dist_to_lines, ego_road, lane_array, road_kind

ON_LANE_M = 1.8  # a vehicle this close to a lane centre line is "on top of" it (as describe.graph_of)
DEFAULT_SURFACE = {"rainy": "wet", "snowy": "snowy", "foggy": "wet"}  # road surface a weather implies; else dry
SURFACE_PHRASE = {"wet": "wet, reflective asphalt", "dry": "dry asphalt", "icy": "icy asphalt",
                  "snowy": "snow-covered asphalt"}
STATE_PHRASE = {
    "moving": "driving along the road", "stopped": "stopped in traffic", "parked": "parked at the curb",
    "walking": "walking on the sidewalk", "standing": "standing on the sidewalk", "crossing": "crossing the road",
    "static": "set up on the road",
}
STATED_POSITION_PHRASE = {"front": "ahead", "back": "behind", "left": "on the left", "right": "on the right",
                          **{p: RELATIVE_PHRASE[p] for p in ("front-left", "front-right", "back-left", "back-right")}}
PREDICATE_PHRASE = {"behind": "behind", "front of": "in front of", "left of": "left of", "right of": "right of",
                    "near": "near", "on top of": "in"}

def surface_of(weather: str) -> str:
    """The road surface a weather implies when nothing else says."""
    return DEFAULT_SURFACE.get(weather, "dry")


@dataclass(frozen=True)
class StatedRelation:
    """A relation the description states: predicate and target node id ("ego", an object, area or lane
    id); lane_ref: for a lane, the words the text uses for it (left, right, ego, oncoming, middle)."""

    predicate: str
    target: str
    lane_ref: str = ""


@dataclass(frozen=True)
class SceneObject:
    """A graph object plus what only the text holds: paint colour ("" = unknown; "white and black" for
    a group the source described with two colours), the position the text states (a key of
    prompt_parser.POSITION_SETS, None = not stated) and stated relations."""

    node: ObjectNode
    colour: str = ""
    stated_position: str | None = None
    stated: tuple[StatedRelation, ...] = ()

    @property
    def node_id(self) -> str:
        return self.node.node_id

    @property
    def class_name(self) -> str:
        return self.node.class_name


@dataclass(frozen=True)
class Scene:
    """A scene being composed or edited: style, road, objects and background elements."""

    time_of_day: str
    weather: str
    environment: str
    surface: str
    road: Road = field(default_factory=Road)
    objects: tuple[SceneObject, ...] = ()
    background: tuple[tuple[str, str], ...] = ()

    # -- lookups ------------------------------------------------------------------------------------
    def object(self, node_id: str) -> SceneObject:
        """The object with this id; KeyError if there is none."""
        for o in self.objects:
            if o.node_id == node_id:
                return o
        raise KeyError(node_id)

    def position_of(self, node_id: str) -> tuple[float, float] | None:
        """Centre (x, y) of an object, area or the ego."""
        if node_id == "ego":
            return (0.0, 0.0)
        for o in self.objects:
            if o.node_id == node_id:
                return o.node.location
        for a in self.road.areas:
            if a.area_id == node_id:
                return a.center
        return None

    # -- writing ------------------------------------------------------------------------------------
    def _relation_phrase(self, r: StatedRelation) -> str:
        """How the text states a relation: "behind the white bus", "near the crosswalk", "in the left lane"."""
        if r.target == "ego":
            return f"{PREDICATE_PHRASE[r.predicate]} the ego vehicle"
        lane = next((l for l in self.road.lanes if l.lane_id == r.target), None)
        if lane is not None:
            return f"in the {r.lane_ref or 'ego'} lane"
        area = next((a for a in self.road.areas if a.area_id == r.target), None)
        if area is not None:
            return f"{PREDICATE_PHRASE[r.predicate]} the {area.kind}"
        t = self.object(r.target)
        colour = f"{t.colour} " if t.colour and " and " not in t.colour else ""
        return f"{PREDICATE_PHRASE[r.predicate]} the {colour}{t.class_name.replace('_', ' ')}"

    def groups(self) -> list[tuple[tuple, list[SceneObject]]]:
        """Objects grouped by what the text can tell apart: class, state, colour, stated position and
        stated relations; groups in order of their first member."""
        groups: dict[tuple, list[SceneObject]] = {}
        for o in self.objects:
            rels = tuple(sorted({self._relation_phrase(r) for r in o.stated}))
            key = (o.class_name, o.node.state, o.colour, o.stated_position, rels)
            groups.setdefault(key, []).append(o)
        return list(groups.items())

    def graph(self) -> SceneGraph:
        """The scene graph: objects ordered group by group (so `from_description` can give each group's
        colour back to its nodes), relations as describe.graph_of makes them (vehicle on top of its
        lane, near an area, front / behind / left / right of the nearest object) plus the stated ones."""
        ordered = [o for _, members in self.groups() for o in members]
        lanes = [(l.lane_id, lane_array(l)) for l in self.road.lanes]
        relations: list[Relation] = []
        for o in ordered:
            node = o.node
            p = np.asarray(node.location)
            mine: list[Relation] = []
            if node.label in semantics.VEHICLE_IDS and lanes:
                d = dist_to_lines(p[None], [pts for _, pts in lanes])[0]
                if d.min() < ON_LANE_M:
                    mine.append(Relation(node.node_id, "on top of", lanes[int(d.argmin())][0]))
            for a in self.road.areas:
                if math.dist(a.center, node.location) < NEAR_M:
                    mine.append(Relation(node.node_id, "near", a.area_id))
            others = [(math.dist(q.node.location, node.location), q) for q in ordered if q is not o]
            if others:
                d, q = min(others, key=lambda e: e[0])
                if d < PAIR_M:
                    mine.append(Relation(node.node_id, spatial_predicate(node.location, q.node.location), q.node_id))
            for r in o.stated:
                rel = Relation(node.node_id, r.predicate, r.target)
                if rel not in mine:
                    mine.append(rel)
            relations += mine
        return SceneGraph(self.road.lanes, tuple(o.node for o in ordered), self.road.areas, tuple(relations))

    def description(self) -> SceneDescription:
        """The structured description: style, one foreground entry per group ("2 red cars": "parked at
        the curb, on the left, behind the bus"), background elements, road condition (surface, road
        kind, lane count, crosswalks), a layout summary and an abstract."""
        fg = []
        for (cls, state, colour, stated_pos, rels), members in self.groups():
            n = len(members)
            thing = f"{n} " + (f"{colour} " if colour else "") + plural(cls, n)
            if stated_pos is not None:
                where = STATED_POSITION_PHRASE[stated_pos]
            else:
                where = "mostly " + RELATIVE_PHRASE[Counter(m.node.position for m in members).most_common(1)[0][0]]
            attr = ", ".join([_state_phrase(cls, state), where, *rels])
            fg.append((thing, attr))
        kind = road_kind(self.road)
        ego = ego_road(self.road)
        junctions = [a for a in self.road.areas if a.kind == "intersection"]
        crosswalks = [a for a in self.road.areas if a.kind == "crosswalk"]
        if kind in ("intersection", "t_junction") and junctions:
            j = min(junctions, key=lambda a: math.hypot(*a.center))
            name = "a four-way intersection" if kind == "intersection" else "a T-junction"
            road = f"{name} {RELATIVE_PHRASE[position_word(*j.center)]}"
        elif self.road.lanes:
            road = f"a {kind} road"
        else:
            road = "no road in view"
        if ego.lanes:
            road += f" with {len(ego.lanes)} lane{'s' if len(ego.lanes) != 1 else ''}"
        if crosswalks:
            road += f", {len(crosswalks)} crosswalk{'s' if len(crosswalks) != 1 else ''}"
        counts = Counter(o.class_name for o in self.objects)
        layout = (f"{len(self.road.lanes)} lanes, {len(junctions)} intersection{'s' if len(junctions) != 1 else ''}, "
                  f"{len(crosswalks)} crosswalk{'s' if len(crosswalks) != 1 else ''}, {len(self.objects)} objects"
                  + (": " + ", ".join(f"{v} {plural(k, v)}" for k, v in counts.most_common()) if counts else ""))
        things = ", ".join(f"{v} {plural(k, v)}" for k, v in counts.most_common(4)) or "no traffic"
        abstract = f"A {self.weather} {self.time_of_day} in a {self.environment} area on {road}, with {things}."
        return SceneDescription(self.time_of_day, self.weather, self.environment, tuple(fg), self.background,
                                f"{SURFACE_PHRASE[self.surface]}, {road}", layout, abstract)

    # -- reading ------------------------------------------------------------------------------------
    @classmethod
    def from_description(cls, description: SceneDescription, graph: SceneGraph) -> "Scene":
        """The working scene of a description + graph pair (ours or the synthetic world's): each
        foreground entry is read back (prompt_parser.read_group) and given to the next unassigned nodes
        of its class and state in graph order, which is exact for graphs `Scene.graph` wrote. A position
        without "mostly" is a stated one; a relation phrase becomes stated when the graph holds it."""
        surface = read_road(description.road_condition).surface or surface_of(description.weather)
        road = Road(graph.lanes, graph.areas)
        assigned: dict[str, tuple[str, str | None, list[RelationSpec]]] = {}
        for thing, attr in description.foreground:
            facts = read_group(thing, attr)
            if facts.class_name is None:
                continue
            pool = [n for n in graph.objects if n.class_name == facts.class_name and n.node_id not in assigned
                    and (facts.state is None or n.state == facts.state)]
            members = pool[:facts.count] if facts.count is not None else pool
            stated_pos = facts.position if "mostly" not in attr.lower() else None
            for n in members:
                assigned[n.node_id] = (" and ".join(facts.colours), stated_pos, list(facts.relations))
        objects = []
        for n in graph.objects:
            colour, pos, rels = assigned.get(n.node_id, ("", None, []))
            stated = []
            for rs in rels:
                hit = _graph_relation(graph, n, rs)
                if hit is not None:
                    stated.append(StatedRelation(rs.predicate, hit, rs.target.name if rs.target.kind == "lane" else ""))
            if pos is not None and not position_matches(pos, n.position):
                pos = None
            objects.append(SceneObject(n, colour, pos, tuple(stated)))
        return cls(description.time_of_day, description.weather, description.environment, surface, road,
                   tuple(objects), description.background)


def description_following(description: SceneDescription, before: SceneGraph, graph: SceneGraph,
                          layout: Layout | None = None) -> SceneDescription:
    """`description` after its graph `before` became `graph` (ops.graph_sync.graph_following: boxes or
    lanes edited by hand), so no foreground entry names an object that was deleted or misses one that was
    added: the foreground entries, road condition, layout summary and abstract are written again from
    `graph`. An object keeps the colour its entry gave it, and its stated position and relations while
    they still hold; style, road surface and background are kept. layout: the edited layout, whose box
    paints (Box.color, by track id) win over an entry's colour they are not part of (a car painted red in
    the editor reads "red"). `graph is before` (a graph that could not follow) gives `description` back as
    it is."""
    if graph is before:
        return description
    old = Scene.from_description(description, before)
    known = {o.node_id: o for o in old.objects}
    paints = {b.track_id: b.color for b in layout.boxes if b.color and b.track_id} if layout is not None else {}
    objects = []
    for n in graph.objects:
        o = known.get(n.node_id)
        paint = paints.get(n.node_id, "")
        if o is None:  # added in the editor: the text knows only its paint
            objects.append(SceneObject(n, paint))
            continue
        colour = paint if paint and paint not in o.colour.split(" and ") else o.colour
        held = {(r.predicate, r.object) for r in graph.relations_of(n.node_id)}
        pos = o.stated_position if o.stated_position and position_matches(o.stated_position, n.position) else None
        objects.append(SceneObject(n, colour, pos, tuple(r for r in o.stated if (r.predicate, r.target) in held)))
    return replace(old, road=Road(graph.lanes, graph.areas), objects=tuple(objects)).description()


def painted_layout(layout: Layout, description: SceneDescription, graph: SceneGraph) -> Layout:
    """`layout` (laid out for `graph`) with each box that has no paint (Box.color "") given the colour its
    object's foreground entry states ("a red car" -> "red"); a group stated with two colours ("3 black and
    red cars") alternates them over its members in graph order. Boxes that have a colour, or whose object
    the text gives none, are kept as they are. The preview look and the image model paint a vehicle from
    its box, so a colour in the prompt reaches the pictures this way."""
    colours: dict[str, str] = {}
    seen: Counter = Counter()
    for o in Scene.from_description(description, graph).objects:
        if o.colour:
            names = o.colour.split(" and ")
            colours[o.node_id] = names[seen[o.colour] % len(names)]
            seen[o.colour] += 1
    if not any(not b.color and b.track_id in colours for b in layout.boxes):
        return layout
    return replace(layout, boxes=tuple(replace(b, color=colours[b.track_id]) if not b.color and b.track_id in colours
                                       else b for b in layout.boxes))


def _graph_relation(graph: SceneGraph, node: ObjectNode, rs: RelationSpec) -> str | None:
    """The graph node a stated relation of `node` points at, or None."""
    kinds = {a.area_id: a.kind for a in graph.areas}
    lanes = {l.lane_id for l in graph.lanes}
    classes = {o.node_id: o.class_name for o in graph.objects}
    for r in graph.relations_of(node.node_id):
        if r.predicate != rs.predicate:
            continue
        t = rs.target
        if (t.kind == "area" and kinds.get(r.object) == t.name) or (t.kind == "lane" and r.object in lanes) or \
                (t.kind == "object" and classes.get(r.object) == t.name) or (t.kind == "ego" and r.object == "ego"):
            return r.object
    return None


def _state_phrase(cls: str, state: str) -> str:
    if cls in ("bicycle", "motorcycle") and state == "moving":
        return "riding along the road"
    return STATE_PHRASE[state]
