"""From a chunk's layout to its scene graph and its structured description (the paper's JSON)."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np

from ... import semantics
from ...types.layout import Layout
from ...types.occupancy import GridSpec, Occupancy
from ...types.scene import POSITIONS, AreaNode, LaneNode, ObjectNode, Relation, SceneDescription, SceneGraph

GRAPH_LANE_POINTS = 5  # points per lane in the scene graph
NEAR_M = 6.0  # "near" an area
PAIR_M = 12.0  # objects closer than this get a spatial relation


def position_word(x: float, y: float) -> str:
    """Ego-relative position of a point as one of POSITIONS (8 sectors of 45 degrees)."""
    ang = math.degrees(math.atan2(y, x))
    sector = int(((ang + 22.5) % 360) // 45)
    return ("front", "front-left", "left", "back-left", "back", "back-right", "right", "front-right")[sector]


def flow_word(heading: float) -> str:
    """Direction of travel relative to the ego heading (+x): forward, leftward, backward or rightward."""
    ang = math.degrees(heading) % 360
    return ("forward", "leftward", "backward", "rightward")[int(((ang + 45) % 360) // 90)]


def _resample(points: np.ndarray, n: int) -> np.ndarray:
    seg = np.hypot(*np.diff(points, axis=0).T)
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    s = np.linspace(0, cum[-1], n)
    return np.stack([np.interp(s, cum, points[:, 0]), np.interp(s, cum, points[:, 1])], -1)


def graph_lane_points(points: np.ndarray) -> np.ndarray:
    """A lane's points in its scene-graph node: GRAPH_LANE_POINTS points evenly along the polyline float
    [N, 2], rounded to 0.1 m (so the graph's text form round-trips)."""
    return np.round(_resample(np.asarray(points, np.float64), GRAPH_LANE_POINTS), 1)


def dist_to_polyline(p: np.ndarray, line: np.ndarray) -> float:
    """Distance (m) from a point float [2] to a polyline float [N, 2]."""
    a, b = line[:-1], line[1:]
    d = b - a
    u = np.clip(((p - a) * d).sum(1) / np.maximum((d * d).sum(1), 1e-12), 0, 1)
    return float(np.min(np.hypot(*(a + u[:, None] * d - p).T)))


def spatial_predicate(p, q) -> str:
    """How point p lies relative to point q (x, y, ego frame): front of / behind along the dominant x
    offset, else left of / right of. The rule behind every object-object relation of a scene graph."""
    dx, dy = float(p[0]) - float(q[0]), float(p[1]) - float(q[1])
    return ("front of" if dx > 0 else "behind") if abs(dx) >= abs(dy) else ("left of" if dy > 0 else "right of")


def graph_of(layout: Layout, grid: GridSpec) -> SceneGraph:
    """The scene graph of a chunk: its lanes (not junction connectors), the objects whose centre lies in
    the chunk, crosswalks and junction areas, and relations (object on top of lane, near an area, and
    front of / behind / left of / right of its nearest neighbour). Values are rounded to 0.1 m / 1 deg
    so the text form round-trips exactly."""
    lanes = []
    for lane in sorted((l for l in layout.lanes if not l.connector), key=lambda l: l.lane_id):
        seg = np.hypot(*np.diff(lane.points, axis=0).T).sum()
        if seg < 4.0:
            continue
        pts = graph_lane_points(lane.points)
        lanes.append((lane, LaneNode(f"lane_{len(lanes)}", tuple(map(tuple, pts)), flow_word(lane.heading), lane.turn)))
    objects, counts = [], Counter()
    for b in layout.boxes:
        if not grid.contains_xy(*b.center[:2]):
            continue
        name = b.class_name
        node = object_node(f"{name}_{counts[name]}", b)
        counts[name] += 1
        objects.append((b, node))
    areas = []
    for poly in layout.polygons:
        if poly.kind == "crosswalk":
            c = np.round(poly.points.mean(0), 1)
            areas.append(AreaNode(f"crosswalk_{len(areas)}", "crosswalk", (c[0], c[1])))
    for poly in (p for p in layout.polygons if p.kind == "intersection"):
        c = np.round(poly.points.mean(0), 1)
        if grid.contains_xy(c[0], c[1]):
            areas.append(AreaNode(f"intersection_{sum(a.kind == 'intersection' for a in areas)}", "intersection", (c[0], c[1])))
    lane_lines = [(lane.points, node.lane_id) for lane, node in lanes]
    relations = []
    for b, node in objects:
        others = [(o.center[:2], n.node_id) for o, n in objects if n is not node]
        relations += object_relations(node.node_id, b.label, b.center[:2], lane_lines, areas, others)
    return SceneGraph(tuple(n for _, n in lanes), tuple(n for _, n in objects), tuple(areas), tuple(relations))


def object_node(node_id: str, box, state: str | None = None) -> ObjectNode:
    """The scene-graph node of a layout box (state: the box's own by default), rounded to 0.1 m and 1
    degree so the text form round-trips."""
    x, y = box.center[:2]
    return ObjectNode(node_id, box.label, state or box.state, position_word(x, y), round(math.degrees(box.yaw)),
                      (round(x, 1), round(y, 1)), tuple(round(max(v, 0.1), 1) for v in box.size))


def object_relations(node_id: str, label: int, center, lanes, areas, others) -> list[Relation]:
    """The relations a scene graph gives an object at `center` (x, y metres, chunk frame): a vehicle is
    "on top of" the nearest lane within 1.8 m (lanes: (points float [N, 2], lane id)); any object is "near"
    each area within NEAR_M; and front of / behind / left of / right of its nearest other object within
    PAIR_M (others: (centre (x, y), node id))."""
    p = np.array(center[:2], np.float64)
    out = []
    if label in semantics.VEHICLE_IDS and lanes:
        points, lane_id = min(lanes, key=lambda ln: dist_to_polyline(p, ln[0]))
        if dist_to_polyline(p, points) < 1.8:
            out.append(Relation(node_id, "on top of", lane_id))
    for a in areas:
        if math.dist(a.center, p) < NEAR_M:
            out.append(Relation(node_id, "near", a.area_id))
    if others:
        d, q, other = min(((math.dist(q[:2], p), q, n) for q, n in others), key=lambda e: e[0])
        if d < PAIR_M:
            out.append(Relation(node_id, spatial_predicate(p, q[:2]), other))
    return out


PLURAL = {"bus": "buses", "pedestrian": "pedestrians", "traffic_cone": "traffic cones", "construction_vehicle": "construction vehicles"}
STATE_PHRASE = {
    "moving": "driving along the road", "stopped": "stopped in traffic", "parked": "parked at the curb",
    "walking": "walking on the sidewalk", "standing": "standing on the sidewalk", "crossing": "crossing at the crosswalk",
    "static": "set up on the road",
}
ENV_BACKGROUND = {
    "downtown": ("buildings", "tall facades lining both sides of the street"),
    "suburban": ("houses", "low detached houses set back behind lawns"),
    "residential": ("houses", "rows of small houses with front gardens"),
    "industrial": ("warehouses", "large warehouses and paved yards"),
    "rural": ("fields", "open fields with scattered farmhouses"),
    "highway": ("embankments", "grass verges along the carriageway"),
}
RELATIVE_PHRASE = {
    "front": "ahead", "front-left": "ahead on the left", "left": "to the left", "back-left": "behind on the left",
    "back": "behind", "back-right": "behind on the right", "right": "to the right", "front-right": "ahead on the right",
}
ROAD_SURFACE = {"sunny": "dry asphalt", "cloudy": "dry asphalt", "overcast": "dry asphalt", "rainy": "wet, reflective asphalt",
                "foggy": "damp asphalt", "snowy": "snow-dusted asphalt"}


def plural(name: str, n: int) -> str:
    """The class name as words, plural when n != 1 (\"traffic cones\", \"buses\")."""
    word = name.replace("_", " ")
    return word if n == 1 else PLURAL.get(name, word + "s")


def describe_chunk(layout: Layout, occ: Occupancy, environment: str, style, graph: SceneGraph) -> SceneDescription:
    """A SceneDescription of a chunk from what is in it (objects by class and state with colours and
    where they are, background classes by voxel share, road type from lanes and junctions)."""
    fg = []
    groups: dict[tuple[str, str], list] = {}
    for node in graph.objects:
        groups.setdefault((node.class_name, node.state), []).append(node)
    box_color = {}
    counts = Counter()
    for b in layout.boxes:
        if b.center[0] >= occ.grid.lower[0] and b.center[0] < occ.grid.upper[0] and b.center[1] >= occ.grid.lower[1] and b.center[1] < occ.grid.upper[1]:
            box_color[f"{b.class_name}_{counts[b.class_name]}"] = b.color
            counts[b.class_name] += 1
    for (name, state), nodes in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        colours = [box_color.get(n.node_id, "") for n in nodes]
        colours = [c for c, _ in Counter(c for c in colours if c).most_common(2)]
        where = Counter(n.position for n in nodes).most_common(1)[0][0]
        thing = f"{len(nodes)} " + (" and ".join(colours) + " " if colours else "") + plural(name, len(nodes))
        fg.append((thing, f"{STATE_PHRASE[state]}, mostly {RELATIVE_PHRASE[where]}"))
    counts_v = occ.class_counts()
    total = max(1, counts_v.sum() - counts_v[semantics.FREE])
    bg = [ENV_BACKGROUND[environment]]
    for cid, phrase in ((semantics.ID["vegetation"], ("trees", "green foliage along the road")),
                        (semantics.ID["sidewalk"], ("sidewalks", "paved sidewalks beside the road")),
                        (semantics.ID["terrain"], ("grass", "patches of grass and verges")),
                        (semantics.ID["manmade"], ("structures", "poles, walls and building fronts"))):
        if counts_v[cid] / total > 0.03 and phrase[0] not in {b[0] for b in bg}:
            bg.append(phrase)
    n_lanes = len(graph.lanes)
    junctions = [a for a in graph.areas if a.kind == "intersection"]
    crosswalks = [a for a in graph.areas if a.kind == "crosswalk"]
    flows = Counter(l.flow for l in graph.lanes)
    if junctions:
        road = f"an intersection {RELATIVE_PHRASE[position_word(*junctions[0].center)]}"
    elif n_lanes:
        road = f"a road with {n_lanes} lane{'s' if n_lanes != 1 else ''} ({', '.join(f'{v} {k}' for k, v in flows.items())})"
    else:
        road = "no road in view"
    road_condition = f"{ROAD_SURFACE[style.weather]}, {road}"
    layout_text = (f"{n_lanes} lanes, {len(junctions)} intersection{'s' if len(junctions) != 1 else ''}, "
                   f"{len(crosswalks)} crosswalk{'s' if len(crosswalks) != 1 else ''}, "
                   f"{len(graph.objects)} objects: " + ", ".join(f"{v} {plural(k, v)}" for k, v in
                                                                  Counter(n.class_name for n in graph.objects).most_common()))
    n_veh = sum(1 for n in graph.objects if n.label in semantics.VEHICLE_IDS)
    n_ped = sum(1 for n in graph.objects if n.class_name == "pedestrian")
    article = "an" if environment[0] in "aeiou" else "a"
    abstract = (f"A {style.weather} {style.time_of_day} in {article} {environment} area: {road}, with "
                f"{n_veh} vehicle{'s' if n_veh != 1 else ''} and {n_ped} pedestrian{'s' if n_ped != 1 else ''}.")
    return SceneDescription(style.time_of_day, style.weather, environment, tuple(fg), tuple(bg), road_condition,
                            layout_text, abstract)
