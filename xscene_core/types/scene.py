"""What a scene is about: the structured description (the paper's JSON) and the scene graph."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .. import semantics
from ._checks import check_choice, check_finite, check_positive

# The paper's JSON keys, in the order the X-Scene release writes them.
DESCRIPTION_KEYS = (
    "Time of the day", "Weather", "Surrounding environment", "Foreground objects", "Background elements",
    "Road condition", "Layout", "Abstract Description",
)
TIMES_OF_DAY = ("dawn", "morning", "noon", "afternoon", "dusk", "night")
WEATHERS = ("sunny", "cloudy", "overcast", "rainy", "foggy", "snowy")
ENVIRONMENTS = ("downtown", "suburban", "rural", "industrial", "highway", "residential")


@dataclass(frozen=True)
class SceneDescription:
    """The structured text of a scene (the paper's description JSON).

    foreground / background: (thing, attribute) pairs, e.g. ("white sedan", "parked on the right curb").
    """

    time_of_day: str
    weather: str
    environment: str
    foreground: tuple[tuple[str, str], ...] = ()
    background: tuple[tuple[str, str], ...] = ()
    road_condition: str = ""
    layout: str = ""
    abstract: str = ""

    def __post_init__(self) -> None:
        for name in ("time_of_day", "weather", "environment"):
            v = getattr(self, name)
            if not isinstance(v, str) or not v.strip():
                raise ValueError(f"SceneDescription.{name}: must be a non-empty string, got {v!r}")
        for name in ("foreground", "background"):
            pairs = tuple(tuple(p) for p in getattr(self, name))
            for p in pairs:
                if len(p) != 2 or not all(isinstance(s, str) for s in p):
                    raise ValueError(f"SceneDescription.{name}: items must be (thing, attribute) strings, got {p!r}")
            object.__setattr__(self, name, pairs)

    def to_json_dict(self) -> dict:
        """The paper's JSON object (keys of DESCRIPTION_KEYS)."""
        return {
            "Time of the day": self.time_of_day,
            "Weather": self.weather,
            "Surrounding environment": self.environment,
            "Foreground objects": [{k: v} for k, v in self.foreground],
            "Background elements": [{k: v} for k, v in self.background],
            "Road condition": self.road_condition,
            "Layout": self.layout,
            "Abstract Description": self.abstract,
        }

    @classmethod
    def from_json_dict(cls, d: dict) -> "SceneDescription":
        if not isinstance(d, dict):
            raise ValueError(f"a scene description must be a JSON object, got {type(d).__name__}")
        missing = [k for k in DESCRIPTION_KEYS[:3] if k not in d]
        if missing:
            raise ValueError(f"scene description is missing keys: {', '.join(missing)}")

        def pairs(key: str) -> tuple[tuple[str, str], ...]:
            items = d.get(key, [])
            if not isinstance(items, list):
                raise ValueError(f"scene description: {key!r} must be a list of {{thing: attribute}} objects")
            out = []
            for it in items:
                if not isinstance(it, dict):
                    raise ValueError(f"scene description: {key!r} items must be objects, got {it!r}")
                out.extend((str(k), str(v)) for k, v in it.items())
            return tuple(out)

        return cls(
            str(d["Time of the day"]), str(d["Weather"]), str(d["Surrounding environment"]),
            pairs("Foreground objects"), pairs("Background elements"), str(d.get("Road condition", "")),
            str(d.get("Layout", "")), str(d.get("Abstract Description", "")),
        )

    def caption(self) -> str:
        """One text prompt for the generators, composed like the X-Scene release does."""
        article = "an" if self.environment[:1].lower() in "aeiou" else "a"
        text = (f"A {self.weather} {self.time_of_day} scene in {article} {self.environment} area, "
                f"featuring {self.road_condition or 'a road'}. ")
        if self.foreground:
            text += "The scene includes " + "; ".join(f"{k} {v}" for k, v in self.foreground) + ". "
        if self.background:
            text += "In the background: " + "; ".join(f"{k} {v}" for k, v in self.background) + "."
        return text.strip()

    @staticmethod
    def caption_style(caption: str) -> tuple[str, str] | None:
        """(time_of_day, weather) read back from a caption that caption() wrote ("A {weather} {time} scene
        ..."); None for any other text."""
        words = caption.split(" ", 3)
        if len(words) == 4 and words[0] == "A" and words[1] in WEATHERS and words[2] in TIMES_OF_DAY \
                and words[3].startswith("scene "):
            return words[2], words[1]
        return None

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json_dict(), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> "SceneDescription":
        try:
            return cls.from_json_dict(json.loads(Path(path).read_text()))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from None


# Scene graph -------------------------------------------------------------------------------------------

RELATIONS = ("front of", "behind", "left of", "right of", "on top of", "near")
FLOWS = ("forward", "backward", "leftward", "rightward")
POSITIONS = ("front", "front-left", "left", "back-left", "back", "back-right", "right", "front-right")


@dataclass(frozen=True)
class LaneNode:
    """A lane of the scene graph: a few points (x, y) in metres along the direction of travel, its flow
    relative to the ego heading and its turn type."""

    lane_id: str
    points: tuple[tuple[float, float], ...]
    flow: str
    turn: str = "straight"

    def __post_init__(self) -> None:
        object.__setattr__(self, "points", tuple((float(x), float(y)) for x, y in self.points))
        if len(self.points) < 2:
            raise ValueError(f"LaneNode {self.lane_id}: needs at least 2 points")
        check_finite(f"LaneNode {self.lane_id}.points", *(v for p in self.points for v in p))
        check_choice(f"LaneNode {self.lane_id}.flow", self.flow, FLOWS)
        check_choice(f"LaneNode {self.lane_id}.turn", self.turn, ("straight", "left", "right"))


@dataclass(frozen=True)
class ObjectNode:
    """An object of the scene graph: class.state, position relative to the ego, heading (degrees from the
    ego's forward axis, counter-clockwise), location (x, y) metres and size (l, w, h) metres."""

    node_id: str
    label: int
    state: str
    position: str
    heading_deg: float
    location: tuple[float, float]
    size: tuple[float, float, float]

    def __post_init__(self) -> None:
        object.__setattr__(self, "location", tuple(float(v) for v in self.location))
        object.__setattr__(self, "size", tuple(float(v) for v in self.size))
        object.__setattr__(self, "heading_deg", float(self.heading_deg))
        if self.label not in semantics.OBJECT_IDS:
            raise ValueError(f"ObjectNode {self.node_id}: {self.label} is not an object class")
        check_choice(f"ObjectNode {self.node_id}.state", self.state, semantics.STATES)
        check_choice(f"ObjectNode {self.node_id}.position", self.position, POSITIONS)
        check_finite(f"ObjectNode {self.node_id}.location", *self.location, self.heading_deg)
        check_positive(f"ObjectNode {self.node_id}.size", *self.size)

    @property
    def class_name(self) -> str:
        return semantics.NAMES[self.label]


@dataclass(frozen=True)
class AreaNode:
    """A map area the graph can refer to (crosswalk, intersection): kind and centre (x, y) metres."""

    area_id: str
    kind: str
    center: tuple[float, float]

    def __post_init__(self) -> None:
        object.__setattr__(self, "center", tuple(float(v) for v in self.center))
        check_choice(f"AreaNode {self.area_id}.kind", self.kind, ("crosswalk", "intersection"))


@dataclass(frozen=True)
class Relation:
    """A directed edge: `subject predicate object`, e.g. car_1 behind car_0, car_0 on top of lane_2."""

    subject: str
    predicate: str
    object: str

    def __post_init__(self) -> None:
        check_choice("Relation.predicate", self.predicate, RELATIONS)


@dataclass(frozen=True)
class SceneGraph:
    """The scene graph: lane, object and area nodes plus relations between them (ids must resolve;
    "ego" is the implicit ego vehicle at the origin heading +x)."""

    lanes: tuple[LaneNode, ...] = ()
    objects: tuple[ObjectNode, ...] = ()
    areas: tuple[AreaNode, ...] = ()
    relations: tuple[Relation, ...] = ()

    def __post_init__(self) -> None:
        for name in ("lanes", "objects", "areas", "relations"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        ids = [n.lane_id for n in self.lanes] + [n.node_id for n in self.objects] + [a.area_id for a in self.areas]
        dup = {i for i in ids if ids.count(i) > 1}
        if dup:
            raise ValueError(f"SceneGraph: duplicate node ids {sorted(dup)}")
        known = set(ids) | {"ego"}
        for r in self.relations:
            for end in (r.subject, r.object):
                if end not in known:
                    raise ValueError(f"SceneGraph: relation '{r.subject} {r.predicate} {r.object}' names unknown node {end!r}")

    def to_text(self) -> str:
        """The textual tree form (xscene_core.scene_graph_text)."""
        from ..scene_graph_text import emit

        return emit(self)

    @classmethod
    def from_text(cls, text: str) -> "SceneGraph":
        from ..scene_graph_text import parse

        return parse(text)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_text())

    @classmethod
    def load(cls, path: str | Path) -> "SceneGraph":
        return cls.from_text(Path(path).read_text())

    def node_ids(self) -> list[str]:
        return [n.lane_id for n in self.lanes] + [n.node_id for n in self.objects] + [a.area_id for a in self.areas]

    def relations_of(self, node_id: str) -> list[Relation]:
        return [r for r in self.relations if r.subject == node_id]


@dataclass(frozen=True)
class DescribedScene:
    """The words of a scene: its structured description and its scene graph (what Describe returns)."""

    description: SceneDescription
    graph: SceneGraph

    def __post_init__(self) -> None:
        if not isinstance(self.description, SceneDescription) or not isinstance(self.graph, SceneGraph):
            raise ValueError("DescribedScene: needs a SceneDescription and a SceneGraph")
