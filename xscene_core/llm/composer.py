"""Offline composer: PromptSpec + retrieved memories -> a new SceneDescription and SceneGraph.

The default Describe path when no LLM endpoint is configured. It synthesises a scene grounded in the
top-k retrieved memories (pairs of a description and a scene graph) rather than copying one:

1. style: time of day, weather and environment as the prompt states them, else the majority of the
   retrieved memories; the road surface as stated, else what the weather implies;
2. road: lanes and areas of the best-ranked retrieved graph whose environment, road kind (4-way
   intersection, T-junction, straight, curved), lane count and needed lanes (oncoming) match, moved
   so the ego stands on a lane heading +x (memories are chunks centred anywhere); a procedural road
   of the asked kind when none matches; a crosswalk added when the prompt needs one;
3. objects: the ones the prompt asks for (count, colour, state, position, relations; sizes at the
   midpoints of semantics.SIZES) placed on slots consistent with the lanes (moving and stopped
   vehicles on lanes along their flow, parked ones beside the outermost lane at the curb, pedestrians
   on the sidewalk band beyond it or on crosswalks, cones and barriers on the road edge), then
   background traffic drawn from the retrieved graphs of the same environment unless the prompt says
   the street is empty; background never adds to a group the prompt counted ("three pedestrians"
   stays three);
4. background elements merged from the retrieved descriptions of the same environment.

Everything is decided by one numpy Generator seeded from `seed`, so the same inputs give the same
scene. The parts live beside this module: road_geometry (roads in the ego frame), placement (where
objects may stand), scene_text (`Scene`: graph + the facts only text holds, written to and read back
from a SceneDescription).

    compose(parse_prompt(text), bank.search(text, k), seed) -> (SceneDescription, SceneGraph)
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from typing import Iterable, Sequence

import numpy as np

from ..data.world.describe import ENV_BACKGROUND
from ..scene_graph_text import parse as parse_graph
from ..types.occupancy import GridSpec
from ..types.scene import SceneDescription, SceneGraph
from .placement import PAINTED, Constraint, Slots, box_of, ego_box, make_node, next_id, paint, place_specs
from .prompt_parser import DEFAULT_STATE, FAMILY, FAMILY_STATES, ObjectSpec, PromptSpec, parse_prompt
from .road_geometry import Road, ego_road, road_kind, template_road, to_ego_lane, with_crosswalk
from .scene_text import Scene, SceneObject, surface_of

MAX_BACKGROUND = 24  # background objects at most (a readable description, a fast layout)
ENV_LANES = {"downtown": 4, "suburban": 2, "residential": 2, "industrial": 2, "rural": 2, "highway": 6}
DEFAULTS = ("afternoon", "sunny", "suburban")  # style when neither the prompt nor any memory says
NIGHT_WEATHER = "cloudy"  # the weather of a stated night when no memory gives one (DEFAULTS' is sunny)
WEATHER_OF_SURFACE = {"wet": "rainy", "snowy": "snowy"}  # a stated surface implies the weather when it is unset


# ----------------------------------------------------------------------------------------------------
# Retrieved memories


@dataclass(frozen=True)
class Memory:
    """One retrieved scene: its description and its scene graph."""

    description: SceneDescription
    graph: SceneGraph


def as_memories(retrieved: Iterable) -> list[Memory]:
    """Normalise what a retriever returns, best first: (description, graph or graph text) pairs,
    (entry, score) pairs or bare entries with `.description` and `.layout` (MemoryBank.search; an
    entry's cached `.graph()` is used when it has one)."""
    out = []
    for item in retrieved:
        if isinstance(item, Memory):
            out.append(item)
            continue
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], (int, float)) and hasattr(item[0], "layout"):
            item = item[0]
        if isinstance(item, tuple) and len(item) == 2:
            desc, layout = item
        elif hasattr(item, "description") and hasattr(item, "layout"):
            desc, layout = item.description, item.graph() if callable(getattr(item, "graph", None)) else item.layout
        else:
            raise TypeError(f"cannot read a retrieved memory from {type(item).__name__}; expected "
                            "(SceneDescription, scene graph) or an entry with .description and .layout")
        graph = layout if isinstance(layout, SceneGraph) else parse_graph(layout)
        out.append(Memory(desc, graph))
    return out


# ----------------------------------------------------------------------------------------------------
# Composition


def compose(spec: PromptSpec, retrieved: Iterable, seed: int = 0, grid: GridSpec | None = None
            ) -> tuple[SceneDescription, SceneGraph]:
    """A new (description, scene graph) for a parsed prompt, grounded in the retrieved memories (best
    first; see `as_memories` for the accepted forms). Deterministic in `seed`. The graph is valid and
    round-trips through scene_graph_text; whatever the spec states appears in the description."""
    scene = compose_scene(spec, retrieved, seed, grid)
    return scene.description(), scene.graph()


def compose_prompt(text: str, retrieved: Iterable, seed: int = 0, grid: GridSpec | None = None
                   ) -> tuple[SceneDescription, SceneGraph]:
    """`compose` of a prompt's text (read with prompt_parser.parse_prompt)."""
    return compose(parse_prompt(text), retrieved, seed, grid)


def compose_scene(spec: PromptSpec, retrieved: Iterable, seed: int = 0, grid: GridSpec | None = None) -> Scene:
    """`compose`, returning the working Scene (for callers that edit it further)."""
    grid = grid or GridSpec()
    rng = np.random.default_rng(seed)
    memories = as_memories(retrieved)
    time_of_day, weather, environment, surface = choose_style(spec, memories)
    road = choose_road(spec, memories, environment, rng, grid)
    needs_crosswalk = spec.road.crosswalk or any(
        (o.state == "crossing" and o.count[1] > 0) or any(r.target.kind == "area" and r.target.name == "crosswalk"
                                                           for r in o.relations) for o in spec.objects)
    if needs_crosswalk:
        road = with_crosswalk(road, rng)
    slots = Slots(road, grid)
    objects = place_specs(spec.objects, road, slots, rng)
    if not spec.empty:
        objects += place_background(spec, memories, environment, slots, objects, rng)
    scene = Scene(time_of_day, weather, environment, surface, road, tuple(objects), choose_background(memories, environment))
    # ids numbered in the order the graph lists the objects (group by group)
    return replace(scene, objects=tuple(_renumber([o for _, group in scene.groups() for o in group])))


def choose_style(spec: PromptSpec, memories: Sequence[Memory]) -> tuple[str, str, str, str]:
    """(time of day, weather, environment, road surface): stated, else the memories' majority (ties to
    the better rank), else DEFAULTS. A stated wet or snowy surface implies the weather when unset. An
    unstated time is not night under a stated sunny weather, nor an unstated weather sunny under a stated
    night (a memory's pair, or a pair the prompt states, is kept as it is)."""
    def majority(values: list[str], default: str) -> str:
        if not values:
            return default
        counts = Counter(values)
        top = max(counts.values())
        return next(v for v in values if counts[v] == top)

    env = spec.environment or majority([m.description.environment for m in memories], DEFAULTS[2])
    same = [m for m in memories if m.description.environment == env] or list(memories)
    # a stated sunny sky asks for daylight, and a stated night for no sun: neither is taken from a memory
    times = [m.description.time_of_day for m in same]
    if spec.weather == "sunny":
        times = [t for t in times if t != "night"]
    time_of_day = spec.time_of_day or majority(times, DEFAULTS[0])
    weathers = [m.description.weather for m in same]
    if spec.time_of_day == "night":
        weathers = [w for w in weathers if w != "sunny"]
    weather = spec.weather or WEATHER_OF_SURFACE.get(spec.road.surface or "") or majority(
        weathers, NIGHT_WEATHER if spec.time_of_day == "night" else DEFAULTS[1])
    surface = spec.road.surface or surface_of(weather)
    return time_of_day, weather, env, surface


def choose_road(spec: PromptSpec, memories: Sequence[Memory], environment: str, rng: np.random.Generator,
                grid: GridSpec) -> Road:
    """The road of the best-ranked memory (same environment first) that has the stated road kind, lane
    count and the lanes the prompt refers to, in the ego frame; else a template road."""
    refs = {r.target.name for o in spec.objects for r in o.relations if r.target.kind == "lane"}
    ranked = sorted(range(len(memories)), key=lambda i: (memories[i].description.environment != environment, i))
    for i in ranked:
        road = to_ego_lane(Road(memories[i].graph.lanes, memories[i].graph.areas), grid)
        ego = ego_road(road)
        if not ego.lanes or len(road.lanes) < 2:
            continue
        if spec.road.kind is not None and road_kind(road) != spec.road.kind:
            continue
        if spec.road.lanes is not None and len(ego.lanes) != spec.road.lanes:
            continue
        if any(ego.ref(r) is None for r in refs):
            continue
        return road
    kind = spec.road.kind or "straight"
    lanes = spec.road.lanes or ENV_LANES.get(environment, 2)
    if "oncoming" in refs:
        lanes = max(lanes, 2)
    return template_road(kind, lanes, rng, grid, highway=environment == "highway")


def choose_background(memories: Sequence[Memory], environment: str, limit: int = 5) -> tuple[tuple[str, str], ...]:
    """Background elements merged from the memories of the environment (most frequent first, then by
    rank), led by the environment's own element."""
    pairs = [p for m in memories if m.description.environment == environment for p in m.description.background]
    first = ENV_BACKGROUND.get(environment)
    counts = Counter(t for t, _ in pairs)
    out: dict[str, str] = {}
    if first:
        out[first[0]] = first[1]
    for t, a in sorted(pairs, key=lambda p: -counts[p[0]]):
        out.setdefault(t, a)
    return tuple(list(out.items())[:limit])


def conflicts(spec_obj: ObjectSpec, cls: str, state: str, colour: str) -> bool:
    """Whether a background object would join what the prompt counted: same class and, where stated,
    colour and state. Where things stand does not set a group apart: "two cones near the crosswalk"
    or "a jogger on the right" count the cones and joggers of the scene, not only the ones there."""
    return (spec_obj.class_name == cls and (spec_obj.colour is None or spec_obj.colour == colour)
            and (spec_obj.state is None or spec_obj.state == state))


def place_background(spec: PromptSpec, memories: Sequence[Memory], environment: str, slots: Slots,
                     placed: list[SceneObject], rng: np.random.Generator) -> list[SceneObject]:
    """Background traffic: (class, state) draws from the objects of the retrieved graphs of the
    environment, as many as their median scene holds (at most MAX_BACKGROUND), placed on the road's
    slots; a draw that would join a group the prompt counted is repainted or dropped."""
    same = [m for m in memories if m.description.environment == environment] or list(memories)
    pool = [(n.class_name, n.state) for m in same for n in m.graph.objects]
    if not pool:
        return []
    target = min(MAX_BACKGROUND, int(np.median([len(m.graph.objects) for m in same])))
    target = max(0, target - len(placed))
    occupied = [ego_box()] + [box_of(o.node) for o in placed]
    has_crosswalk = any(a.kind == "crosswalk" for a in slots.road.areas)
    taken = [o.node_id for o in placed]
    out: list[SceneObject] = []
    for _ in range(target * 3):
        if len(out) >= target:
            break
        cls, state = pool[int(rng.integers(len(pool)))]
        if state not in FAMILY_STATES[FAMILY[cls]]:
            state = DEFAULT_STATE[cls]
        if state == "crossing" and not has_crosswalk:
            state = "walking"
        colour = paint(rng) if cls in PAINTED else ""
        clash = [o for o in spec.objects if conflicts(o, cls, state, colour)]
        if clash and cls in PAINTED and all(o.colour is not None for o in clash):
            colour = paint(rng, avoid={o.colour for o in clash})  # type: ignore[misc]
            clash = [o for o in spec.objects if conflicts(o, cls, state, colour)]
        if clash:
            continue
        box = slots.place(cls, state, Constraint(), occupied, rng)
        if box is None:
            continue
        node = make_node(next_id(cls, taken), cls, state, box)
        taken.append(node.node_id)
        occupied.append(box)
        out.append(SceneObject(node, colour))
    return out


def _renumber(objects: list[SceneObject]) -> list[SceneObject]:
    """Ids class_k numbered in list order, stated relations following their targets."""
    counts: Counter = Counter()
    new_id = {}
    for o in objects:
        new_id[o.node_id] = f"{o.class_name}_{counts[o.class_name]}"
        counts[o.class_name] += 1
    out = []
    for o in objects:
        stated = tuple(replace(s, target=new_id.get(s.target, s.target)) for s in o.stated)
        out.append(replace(o, node=replace(o.node, node_id=new_id[o.node_id]), stated=stated))
    return out
