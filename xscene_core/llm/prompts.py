"""Our two system prompts (the paper's exact wording is not public) and the message lists built from them.

(a) memory construction: six camera views of one scene (captions or semantic summaries) -> the
    description JSON + scene graph of `schema.py`;
(b) novel description: a user's prompt + the top-k retrieved memories as in-context examples -> a
    new description JSON + scene graph.

The format reference inside both prompts is generated from the vocabularies in `types.scene`,
`semantics` and `GridSpec`, so it never disagrees with what `scene_graph_text.parse` accepts.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from .. import semantics
from ..types.cameras import CAMERA_NAMES
from ..types.occupancy import GridSpec
from ..types.scene import ENVIRONMENTS, FLOWS, POSITIONS, RELATIONS, TIMES_OF_DAY, WEATHERS, SceneGraph
from .schema import ANSWER_KEYS, SCENE_GRAPH_KEY, answer_json

if TYPE_CHECKING:
    from .memory import MemoryEntry

EXAMPLE_MAX_OBJECTS = 12  # objects kept per in-context example: whole downtown graphs run to ~3k tokens each
# nominal heading (degrees, ego frame) of each nuScenes camera, to sort objects into views
CAMERA_HEADING_DEG = {"CAM_FRONT_LEFT": 55.0, "CAM_FRONT": 0.0, "CAM_FRONT_RIGHT": -55.0,
                      "CAM_BACK_RIGHT": -110.0, "CAM_BACK": 180.0, "CAM_BACK_LEFT": 110.0}


def _object_classes() -> str:
    return ", ".join(semantics.NAMES[i] for i in semantics.OBJECT_IDS)


def _typical_sizes() -> str:
    return "; ".join(f"{semantics.NAMES[i]} ({s.length[0]:g}-{s.length[1]:g}, {s.width[0]:g}-{s.width[1]:g}, "
                     f"{s.height[0]:g}-{s.height[1]:g})" for i, s in semantics.SIZES.items())


def format_reference() -> str:
    """The answer format: keys and vocabularies of the JSON object and the scene-graph syntax."""
    grid = GridSpec()
    (lx, ly, _), (ux, uy, _) = grid.lower, grid.upper
    keys = ", ".join(f'"{k}"' for k in ANSWER_KEYS)
    return f"""ANSWER FORMAT
Answer with ONE JSON object and nothing else (no prose, no code fences). Keys: {keys}.
- "Time of the day": one of {", ".join(TIMES_OF_DAY)}.
- "Weather": one of {", ".join(WEATHERS)}.
- "Surrounding environment": one of {", ".join(ENVIRONMENTS)}.
- "Foreground objects": a list of objects {{"<count> <colours> <class>": "<state and where, relative to the ego car>"}},
  e.g. {{"2 white cars": "parked at the curb, mostly to the right"}}.
- "Background elements": a list of objects {{"<thing>": "<description>"}}, e.g. {{"buildings": "tall facades on both sides"}}.
- "Road condition": road surface and road type, e.g. "wet, reflective asphalt, an intersection ahead".
- "Layout": one line, e.g. "4 lanes, 1 intersection, 2 crosswalks, 7 objects: 5 cars, 2 pedestrians".
- "Abstract Description": one sentence summarising the scene.
- "{SCENE_GRAPH_KEY}": the scene graph as ONE string (newlines written as \\n) in the syntax below.

SCENE GRAPH SYNTAX
Metres in the ego frame: x forward, y left; the ego car stands at (0, 0) heading +x. The scene covers
x in [{lx:g}, {ux:g}] and y in [{ly:g}, {uy:g}].
Scene graph:
- ego: vehicle at (0.0, 0.0), heading 0 deg
- lanes:
  - lane_0: points (-40.0, -1.8) (0.0, -1.8) (40.0, -1.8); flow: forward; turn: straight
  - lane_1: points (40.0, 1.8) (0.0, 1.8) (-40.0, 1.8); flow: backward; turn: straight
- areas:
  - crosswalk_0: crosswalk at (12.0, 0.0)
- objects:
  - car_0: car.parked; position: front-left; heading: 180 deg; location: (12.3, 5.5); size: (4.5, 1.9, 1.6)
    - near crosswalk_0
    - left of pedestrian_0
  - car_1: car.moving; position: front; heading: 0 deg; location: (24.0, -1.8); size: (4.6, 1.9, 1.5)
    - on top of lane_0
  - pedestrian_0: pedestrian.crossing; position: front; heading: 90 deg; location: (12.0, 0.5); size: (0.7, 0.7, 1.7)
    - near crosswalk_0
Rules:
- A lane has 2 or more points (x, y) in its direction of travel; flow is one of {", ".join(FLOWS)}
  (relative to the ego heading); turn is one of straight, left, right.
- An area is a crosswalk or an intersection at its centre (x, y).
- An object is "<id>: <class>.<state>; position: <p>; heading: <degrees> deg; location: (x, y); size: (l, w, h)".
  id: <class>_<n>, unique. class: one of {_object_classes()}. state: one of {", ".join(semantics.STATES)}
  (vehicles: moving, stopped, parked; pedestrians: walking, standing, crossing; barriers and cones: static).
  position: where the object is seen from the ego car, one of {", ".join(POSITIONS)}.
  heading: degrees counter-clockwise from the ego's forward axis (0 = same direction as the ego, 180 = oncoming).
  size: length, width, height in metres; typical: {_typical_sizes()}.
- Relations are indented under their subject object as "<predicate> <node id>", predicate one of
  {", ".join(RELATIONS)}; every node named must exist ("ego" is the ego car). Vehicles in a lane are
  "on top of" that lane; objects within about 6 m of an area are "near" it; "front of", "behind",
  "left of" and "right of" place an object relative to a nearby object or the ego car.
- Keep objects apart (no two boxes overlap), vehicles on lanes or at the curb, pedestrians off the
  driving lanes except when crossing."""


MEMORY_SYSTEM_PROMPT = f"""You build the memory bank of a driving-scene generator.
You receive what the six surround-view cameras of a car show at one moment, in ring order ({", ".join(CAMERA_NAMES)}),
each as an image caption or a semantic summary. Describe the whole scene they show together:
its time of day, weather and environment; every foreground object (vehicles, pedestrians, cyclists,
barriers, cones) with count, colour, state and where it is; the background; the road; a one-sentence
abstract; and a scene graph with one node per object, placed in metres from the camera it appears in
(front cameras: positive x; left cameras: positive y). Use only what the views show; when a view
gives no clue, choose the most plausible value.

{format_reference()}"""


NOVEL_SYSTEM_PROMPT = f"""You write new driving scenes for a scene generator.
You receive a user's request in free words and a few example scenes retrieved from a memory bank of
recorded and synthetic scenes, each written in the answer format. Write ONE NEW scene that:
1. contains everything the user asked for: time of day, weather, environment, road type, and every
   object with its count, colour, state, position and relations ("behind", "left of", "near the
   crosswalk", ...); never drop or change a requested detail;
2. fills in what the user left open with plausible details taken from the examples (lane geometry,
   object sizes, spacing, typical traffic of that environment), combined into a new scene rather
   than a copy of one example;
3. keeps the description and the scene graph consistent: the objects listed in "Foreground objects"
   are the objects of the scene graph, with matching counts, states and positions.

{format_reference()}"""


@dataclass(frozen=True)
class ChatPrompt:
    """A system prompt and a user message (what `client.LLMClient.complete_json` sends)."""

    system: str
    user: str

    def messages(self) -> list[dict[str, str]]:
        """The OpenAI chat message list."""
        return [{"role": "system", "content": self.system}, {"role": "user", "content": self.user}]


def trim_graph(graph: SceneGraph, max_objects: int = EXAMPLE_MAX_OBJECTS) -> SceneGraph:
    """The graph with at most max_objects objects (those nearest the ego), relations among kept nodes
    only; lanes and areas are kept. Keeps in-context examples short."""
    if len(graph.objects) <= max_objects:
        return graph
    kept = sorted(graph.objects, key=lambda o: math.hypot(*o.location))[:max_objects]
    kept_ids = {o.node_id for o in kept}
    known = kept_ids | {n.lane_id for n in graph.lanes} | {a.area_id for a in graph.areas} | {"ego"}
    objects = tuple(o for o in graph.objects if o.node_id in kept_ids)  # original order
    relations = tuple(r for r in graph.relations if r.subject in known and r.object in known)
    return SceneGraph(graph.lanes, objects, graph.areas, relations)


def view_summaries(graph: SceneGraph) -> list[str]:
    """Semantic summaries of the six views of a scene graph, in CAMERA_NAMES order: each object goes to
    the camera whose nominal heading is nearest its bearing (a stand-in for image captions when a
    scene has no images, e.g. a synthetic chunk or a nuScenes sample read without its images)."""
    seen: dict[str, list[str]] = {name: [] for name in CAMERA_NAMES}
    for o in graph.objects:
        bearing = math.degrees(math.atan2(o.location[1], o.location[0]))
        cam = min(CAMERA_NAMES, key=lambda c: abs((bearing - CAMERA_HEADING_DEG[c] + 180) % 360 - 180))
        dist = math.hypot(*o.location)
        seen[cam].append(f"a {o.state} {o.class_name.replace('_', ' ')} {dist:.0f} m away, "
                         f"heading {o.heading_deg:.0f} deg, size {o.size[0]:.1f} x {o.size[1]:.1f} x {o.size[2]:.1f} m")
    lanes = f"{len(graph.lanes)} lanes around the car" if graph.lanes else "no lane markings read"
    out = []
    for cam in CAMERA_NAMES:
        things = "; ".join(seen[cam]) if seen[cam] else "no objects"
        out.append(f"{things}. ({lanes})")
    return out


def memory_prompt(views: Sequence[str], notes: str = "") -> ChatPrompt:
    """Prompt (a): six view captions/summaries in CAMERA_NAMES order -> description + scene graph.

    notes: what else is known about the scene (e.g. a dataset's scene text "Night, rain"), or "".
    """
    views = list(views)
    if len(views) != len(CAMERA_NAMES) or not all(isinstance(v, str) for v in views):
        raise ValueError(f"memory_prompt needs {len(CAMERA_NAMES)} view texts in the order {', '.join(CAMERA_NAMES)}, "
                         f"got {len(views)}")
    lines = [f"{name}: {text.strip() or 'nothing visible'}" for name, text in zip(CAMERA_NAMES, views)]
    user = "The six views:\n" + "\n".join(lines)
    if notes.strip():
        user += f"\n\nAlso known about this scene: {notes.strip()}"
    return ChatPrompt(MEMORY_SYSTEM_PROMPT, user + "\n\nWrite the JSON object.")


def example_json(entry: "MemoryEntry", max_objects: int = EXAMPLE_MAX_OBJECTS) -> str:
    """An in-context example: the entry's answer object (scene graph trimmed) as one JSON line."""
    return json.dumps(answer_json(entry.description, trim_graph(entry.graph(), max_objects)), ensure_ascii=False)


def novel_prompt(request: str, memories: Sequence["MemoryEntry"], max_objects: int = EXAMPLE_MAX_OBJECTS) -> ChatPrompt:
    """Prompt (b): the user's request + retrieved memories (best first) -> a new description + scene graph."""
    if not isinstance(request, str) or not request.strip():
        raise ValueError("novel_prompt needs a non-empty request")
    parts = []
    for i, entry in enumerate(memories, 1):
        parts.append(f"Example {i} ({entry.source} scene {entry.entry_id}):\n{example_json(entry, max_objects)}")
    examples = "\n\n".join(parts) if parts else "(no examples retrieved)"
    user = (f"Retrieved example scenes:\n\n{examples}\n\nUser request: {request.strip()}\n\n"
            "Write the JSON object of the new scene.")
    return ChatPrompt(NOVEL_SYSTEM_PROMPT, user)


def repair_message(error: str) -> str:
    """The user turn of the repair round: what was wrong with the previous answer and what to send."""
    return (f"Your answer could not be used: {error}\n"
            "Send the corrected answer: ONE JSON object with all the keys, the values from the allowed lists and "
            "the scene graph in the syntax given, and nothing else.")
