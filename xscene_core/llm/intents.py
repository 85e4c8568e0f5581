"""Edit intents: one sentence -> an edited SceneDescription and SceneGraph.

    apply_intent("remove the parked car", description, graph) -> IntentResult

Understood (verbs and their synonyms; steps may be chained with "then" or "; "):
- remove / delete / get rid of <objects>: "the parked car", "all pedestrians", "two cones", "car_3",
  "everything"; also "the crosswalk";
- add / put / place <objects> [where]: "a bus behind the ego vehicle", "two cones near the crosswalk"
  (a crosswalk is added when the road has none), "a car behind the truck" (the truck already there);
  also "a crosswalk", "an intersection";
- move <object> [to] <where>: "move the truck to the left lane", "move the red car behind the bus";
- make / change / set / turn / paint:
  style: "make it a rainy night", "change the weather to snow", "set the time to dawn", "make it rural";
  road: "make the road an intersection" (an intersection area + cross lanes), "... a T-junction",
  "... straight / curved", "... four lanes", "make the road icy";
  objects: "make the red car blue", "paint the truck white", "change the colour of the bus to
  yellow", "make the parked car drive".

An object reference is read with the prompt parser (class, colour, state, position, relations,
"the nearest", "all", node ids). A singular "the <thing>" must pick exactly one object; an intent that
names no known verb, no object that exists, or an ambiguous one raises IntentError saying what was
not understood or not found: never a silent no-op. The result lists which node ids were added,
removed or modified (for regenerating only what changed) and whether the style or the road changed.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np

from ..data.world.describe import NEAR_M, RELATIVE_PHRASE
from ..types.occupancy import GridSpec
from ..types.scene import SceneDescription, SceneGraph
from .placement import Constraint, Slots, box_of, ego_box, make_node, place_groups, stated_holds
from .prompt_parser import (
    FAMILY, POSITION_SETS, ObjectSpec, PromptSpec, RelationSpec, colour_word, parse_prompt, state_word,
)
from .road_geometry import Road, dist_to_lines, ego_road, lane_array, resample, road_kind, template_road, \
    with_crosswalk, with_junction
from ..data.world.describe import plural
from .scene_text import ON_LANE_M, Scene, SceneObject, StatedRelation, surface_of

VERBS: tuple[tuple[str, str], ...] = tuple(  # (phrase, action), longest phrases first
    sorted([(v, "remove") for v in ("remove", "delete", "erase", "get rid of", "take away", "take out", "drop",
                                   "eliminate", "clear away", "clear")]
           + [(v, "add") for v in ("add", "put", "place", "insert", "spawn", "include", "bring in", "introduce",
                                   "there should be")]
           + [(v, "move") for v in ("move", "shift", "relocate", "reposition")]
           + [(v, "make") for v in ("make", "change", "set", "turn", "switch", "convert", "paint", "colour",
                                    "color", "recolour", "recolor")],
           key=lambda va: -len(va[0])))
ROAD_WORDS = ("the road", "the street", "the junction", "the intersection", "the crossing", "the roads")
STYLE_PREFIXES = ("the time of day", "the time of the day", "the time", "the weather", "the lighting", "the sky",
                  "the environment", "the surroundings", "the area", "the setting", "the scene", "everything", "it")
ALL_WORDS = re.compile(r"\b(everything|all objects|all the objects|all traffic|all the traffic|all vehicles|"
                       r"all the vehicles|every object|every vehicle)\b")
VEHICLE_CLASSES = ("car", "truck", "bus", "trailer", "construction_vehicle", "motorcycle", "bicycle")
KIND_NAMES = {"intersection": "a four-way intersection", "t_junction": "a T-junction", "straight": "a straight road",
              "curved": "a curved road"}


class IntentError(ValueError):
    """An edit that cannot be applied; the message says what was not understood or not found."""


@dataclass(frozen=True)
class IntentResult:
    """The edited scene and what changed.

    added / removed / modified: object node ids (modified = moved, re-coloured or re-stated);
    style_changed: time of day, weather, environment or road surface; road_changed: lanes or areas
    (their ids may all be new); summary: one line per change, for a user."""

    description: SceneDescription
    graph: SceneGraph
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    modified: tuple[str, ...] = ()
    style_changed: bool = False
    road_changed: bool = False
    summary: tuple[str, ...] = ()

    @property
    def changed(self) -> tuple[str, ...]:
        """Every node id whose content changed: objects added, removed or modified, and every lane and
        area of the new graph when the road changed."""
        ids = list(self.added) + list(self.removed) + list(self.modified)
        if self.road_changed:
            ids += [l.lane_id for l in self.graph.lanes] + [a.area_id for a in self.graph.areas]
        return tuple(dict.fromkeys(ids))


@dataclass
class _Edit:
    """The scene while one intent is applied, and what changed so far."""

    scene: Scene
    rng: np.random.Generator
    grid: GridSpec
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    modified: list[str] = field(default_factory=list)
    style_changed: bool = False
    road_changed: bool = False
    summary: list[str] = field(default_factory=list)


def apply_intent(text: str, description: SceneDescription, graph: SceneGraph, seed: int = 0,
                 grid: GridSpec | None = None) -> IntentResult:
    """Apply an edit sentence to a scene (description + graph, ours or the synthetic world's).

    Returns the edited description and graph and what changed; deterministic in `seed`. Raises
    IntentError naming what was not understood (no verb, nothing to change) or not found (no such
    object, an ambiguous one, no free place)."""
    if not isinstance(text, str) or not text.strip():
        raise IntentError("empty edit: say what to change, e.g. 'remove the parked car' or 'make it a rainy night'")
    edit = _Edit(Scene.from_description(description, graph), np.random.default_rng(seed), grid or GridSpec())
    for step in _steps(text):
        _apply_step(step, edit)
    scene = edit.scene
    removed = tuple(i for i in dict.fromkeys(edit.removed) if i not in edit.added)
    return IntentResult(scene.description(), scene.graph(), tuple(dict.fromkeys(edit.added)), removed,
                        tuple(i for i in dict.fromkeys(edit.modified) if i not in edit.added and i not in removed),
                        edit.style_changed, edit.road_changed, tuple(edit.summary))


# ----------------------------------------------------------------------------------------------------
# Sentence -> steps -> (verb, rest)

def _normalise(text: str) -> str:
    t = text.strip().lower().replace("’", "'")
    t = re.sub(r"^(please|can you|could you|would you|now|also|and)\s+", "", t)
    t = re.sub(r"^(please|can you|could you|would you|now|also|and)\s+", "", t)
    return re.sub(r"\s+", " ", t.rstrip(" .!?")).strip()


def _steps(text: str) -> list[str]:
    """Chained edits: "remove the truck, then add a bus" / "...; ..." / "... and then ..." / "... and <verb> ..."."""
    verbs = "|".join(re.escape(v) for v, _ in VERBS)
    parts = re.split(rf"\s*;\s*|,?\s+(?:and\s+)?then\s+|,?\s+and\s+(?=(?:{verbs})\b)", _normalise(text))
    return [p for p in (_normalise(p) for p in parts) if p]


def _split_verb(step: str) -> tuple[str, str, str]:
    for phrase, action in VERBS:
        if step == phrase or step.startswith(phrase + " "):
            return action, phrase, step[len(phrase):].strip()
    known = ", ".join(dict.fromkeys(a for _, a in VERBS))
    raise IntentError(f"could not understand the edit {step!r}: it does not start with an edit verb ({known}, "
                      "or synonyms such as delete, put, change, paint)")


def _apply_step(step: str, edit: _Edit) -> None:
    action, verb, rest = _split_verb(step)
    if not rest:
        raise IntentError(f"{step!r}: say what to {verb}")
    {"remove": _remove, "add": _add, "move": _move, "make": _make}[action](rest, verb, edit)


# ----------------------------------------------------------------------------------------------------
# Object references


def _explicit(spec: PromptSpec) -> list[ObjectSpec]:
    return [o for o in spec.objects if not o.implicit]


def _node_ids(text: str, scene: Scene) -> list[SceneObject]:
    """Objects named by id ("car_3")."""
    ids = set(re.findall(r"\b[a-z][a-z_]*_\d+\b", text))
    return [o for o in scene.objects if o.node_id in ids]


def _phrase(ref: ObjectSpec) -> str:
    """Words for a reference, for messages: "parked red car ahead on the left behind the bus"."""
    words = [w for w in (ref.state, ref.colour, ref.class_name.replace("_", " ")) if w]
    if ref.position:
        words.append({"front": "ahead", "back": "behind", "left": "on the left", "right": "on the right"}.get(
            ref.position, RELATIVE_PHRASE.get(ref.position, ref.position)))
    for r in ref.relations:
        target = r.target.name.replace("_", " ")
        words.append(f"in the {target} lane" if r.target.kind == "lane" else f"{r.predicate} the {target}")
    return " ".join(words)


def _describe_object(scene: Scene, o: SceneObject) -> str:
    x, y = o.node.location
    bits = [b for b in (o.colour, o.node.state) if b]
    return f"{o.node_id} ({', '.join(bits + [RELATIVE_PHRASE[o.node.position], f'{math.hypot(x, y):.0f} m'])})"


def _inventory(scene: Scene) -> str:
    counts = Counter(o.class_name for o in scene.objects)
    return ", ".join(f"{n} {plural(c, n)}" for c, n in sorted(counts.items())) or "no objects"


def _ids(ids) -> list[str]:
    """Node ids in natural order (car_2 before car_10)."""
    def key(node_id: str) -> tuple[str, int]:
        name, _, k = node_id.rpartition("_")
        return (name, int(k)) if k.isdigit() else (node_id, 0)

    return sorted(ids, key=key)


def _colours(colour: str) -> set[str]:
    return {c.strip() for c in re.split(r",| and ", colour) if c.strip()}


def _satisfies(scene: Scene, o: SceneObject, r: RelationSpec) -> bool:
    """Whether an object is in a relation a reference states (judged on the geometry)."""
    p = o.node.location
    if r.target.kind == "lane":
        lane_id = ego_road(scene.road).ref(r.target.name)
        lane = next((l for l in scene.road.lanes if l.lane_id == lane_id), None)
        return lane is not None and float(dist_to_lines(np.asarray([p]), [lane_array(lane)])[0, 0]) < ON_LANE_M
    if r.target.kind == "area":
        return any(a.kind == r.target.name and math.dist(a.center, p) < NEAR_M for a in scene.road.areas)
    if r.target.kind == "object":
        for t in scene.objects:
            if t is o or t.class_name != r.target.name or (r.target.colour and r.target.colour not in _colours(t.colour)):
                continue
            hold = StatedRelation(r.predicate, t.node_id)
            if stated_holds(hold, o.node, scene.road, scene.objects):
                return True
    return False


def _candidates(scene: Scene, ref: ObjectSpec, exclude: Sequence[str] = ()) -> list[SceneObject]:
    out = [o for o in scene.objects if o.class_name == ref.class_name and o.node_id not in exclude]
    if ref.colour:
        out = [o for o in out if ref.colour in _colours(o.colour)]
    if ref.state:
        out = [o for o in out if o.node.state == ref.state]
    if ref.position:
        out = [o for o in out if o.node.position in POSITION_SETS[ref.position]]
    for r in ref.relations:
        out = [o for o in out if _satisfies(scene, o, r)]
    return out


def _distance(o: SceneObject) -> float:
    return math.hypot(*o.node.location)


def _select(scene: Scene, ref: ObjectSpec, text: str, exclude: Sequence[str] = ()) -> list[SceneObject]:
    """The objects a reference picks; IntentError when none matches, too few do, or a singular "the"
    matches several."""
    named = _node_ids(text, scene)
    if named:
        return named
    cands = sorted(_candidates(scene, ref, exclude), key=_distance)
    what = _phrase(ref)
    if not cands:
        raise IntentError(f"there is no {what} in the scene (it has {_inventory(scene)})")
    if ref.determiner == "all" or (ref.plural and not ref.count_stated):
        return cands
    n = ref.count[0] if ref.count_stated and ref.count[0] == ref.count[1] else 1
    if n > 1:
        if len(cands) < n:
            raise IntentError(f"there are only {len(cands)} matching '{what}', not {n}")
        return cands[:n]
    if ref.ordinal:
        return [cands[0] if ref.ordinal == "nearest" else cands[-1]]
    if len(cands) == 1 or ref.determiner == "a" or (ref.count_stated and ref.determiner != "the"):
        return cands[:1]
    listing = "; ".join(_describe_object(scene, o) for o in cands[:8])
    raise IntentError(f"'the {what}' is ambiguous: {len(cands)} objects match ({listing}). Say which one, e.g. by "
                      f"colour, position ('the {what} ahead on the left'), 'the nearest {what}' or its id")


def _reference(text: str, scene: Scene) -> ObjectSpec | None:
    named = _node_ids(text, scene)
    if named:
        return ObjectSpec(named[0].class_name)
    objs = _explicit(parse_prompt(text))
    return objs[0] if objs else None


# ----------------------------------------------------------------------------------------------------
# Scene surgery


def _without(scene: Scene, ids: set[str]) -> Scene:
    """The scene without some objects; stated relations that pointed at them are dropped."""
    keep = []
    for o in scene.objects:
        if o.node_id in ids:
            continue
        stated = tuple(s for s in o.stated if s.target not in ids)
        keep.append(replace(o, stated=stated))
    return replace(scene, objects=tuple(keep))


def _recheck_stated(scene: Scene, edit: _Edit, moved: set[str]) -> Scene:
    """Drop stated relations of other objects that a move made false (the text must stay true)."""
    out = []
    for o in scene.objects:
        if o.node_id in moved:
            out.append(o)
            continue
        keep = tuple(s for s in o.stated if s.target not in moved or stated_holds(s, o.node, scene.road, scene.objects))
        if len(keep) != len(o.stated):
            dropped = ", ".join(f"{s.predicate} {s.target}" for s in o.stated if s not in keep)
            edit.summary.append(f"{o.node_id} is no longer said to be {dropped}")
        out.append(replace(o, stated=keep))
    return replace(scene, objects=tuple(out))


def _needs_areas(specs: Sequence[ObjectSpec], edit: _Edit) -> None:
    """Add the crosswalk an added object is to stand near or cross at; refuse a missing intersection."""
    road = edit.scene.road
    wants = {r.target.name for o in specs for r in o.relations if r.target.kind == "area"}
    if any(o.state == "crossing" for o in specs):
        wants.add("crosswalk")
    if "crosswalk" in wants and not any(a.kind == "crosswalk" for a in road.areas):
        edit.scene = replace(edit.scene, road=with_crosswalk(road, edit.rng))
        edit.road_changed = True
        edit.summary.append("added a crosswalk")
    if "intersection" in wants and not any(a.kind == "intersection" for a in road.areas):
        raise IntentError("there is no intersection in this scene; say 'make the road an intersection' first")


def _bind_targets(spec: PromptSpec, edit: _Edit, exclude: Sequence[str] = ()) -> dict[int, SceneObject]:
    """Relation targets an edit names but does not add ("behind the truck") -> the objects already there."""
    bound = {}
    for i, o in enumerate(spec.objects):
        if o.implicit:
            ref = replace(o, determiner="the", count=(1, 1), count_stated=False, plural=False, implicit=False)
            try:
                bound[i] = _select(edit.scene, ref, "", exclude)[0]
            except IntentError as e:
                raise IntentError(f"cannot place relative to the {o.class_name.replace('_', ' ')}: {e}") from None
    return bound


# ----------------------------------------------------------------------------------------------------
# Verbs


def _remove(rest: str, verb: str, edit: _Edit) -> None:
    scene = edit.scene
    if ALL_WORDS.search(rest):
        classes = VEHICLE_CLASSES if "vehicle" in rest else None
        targets = [o for o in scene.objects if classes is None or o.class_name in classes]
        if not targets:
            raise IntentError(f"there is nothing to {verb}: the scene has {_inventory(scene)}")
    else:
        ref = _reference(rest, scene)
        if ref is None:
            spec = parse_prompt(rest)
            if spec.road.crosswalk or "crosswalk" in rest:
                return _remove_crosswalk(rest, edit)
            raise IntentError(f"could not tell what to {verb} in {rest!r}: name an object (car, truck, bus, pedestrian, "
                              f"cone, ...) or its id; the scene has {_inventory(scene)}")
        targets = _select(scene, ref, rest)
    ids = {o.node_id for o in targets}
    edit.scene = _without(scene, ids)
    edit.removed += _ids(ids)
    edit.summary.append(f"removed {', '.join(_ids(ids))}")


def _remove_crosswalk(rest: str, edit: _Edit) -> None:
    areas = [a for a in edit.scene.road.areas if a.kind == "crosswalk"]
    if not areas:
        raise IntentError("there is no crosswalk to remove")
    plural = bool(re.search(r"\b(all|crosswalks)\b", rest))
    if len(areas) > 1 and not plural:
        near = sorted(areas, key=lambda a: math.hypot(*a.center))
        if not re.search(r"\b(nearest|closest)\b", rest):
            raise IntentError(f"'the crosswalk' is ambiguous: {len(areas)} crosswalks "
                              f"({', '.join(a.area_id for a in near)}); say 'the nearest crosswalk' or 'all crosswalks'")
        areas = near[:1]
    gone = {a.area_id for a in areas}
    road = Road(edit.scene.road.lanes, tuple(a for a in edit.scene.road.areas if a.area_id not in gone))
    edit.scene = _without(replace(edit.scene, road=road), gone)
    edit.road_changed = True
    edit.summary.append(f"removed {', '.join(sorted(gone))}")
    _refit(edit)


def _add(rest: str, verb: str, edit: _Edit) -> None:
    spec = parse_prompt(rest)
    explicit = [i for i, o in enumerate(spec.objects) if not o.implicit and o.count[1] > 0]
    if not explicit:
        if re.search(r"\b(crosswalk|zebra|pedestrian crossing)\b", rest):
            if any(a.kind == "crosswalk" for a in edit.scene.road.areas):
                raise IntentError("the road already has a crosswalk")
            edit.scene = replace(edit.scene, road=with_crosswalk(edit.scene.road, edit.rng))
            edit.road_changed = True
            edit.summary.append("added a crosswalk")
            return
        if spec.road.kind in ("intersection", "t_junction"):
            return _change_road(spec, edit)
        raise IntentError(f"could not tell what to {verb} in {rest!r}: name an object (car, truck, bus, trailer, "
                          "construction vehicle, motorcycle, bicycle, pedestrian, traffic cone, barrier)")
    _needs_areas([spec.objects[i] for i in explicit], edit)
    bound = _bind_targets(spec, edit)
    road = edit.scene.road
    groups = place_groups(spec.objects, road, Slots(road, edit.grid), edit.rng, edit.scene.objects, bound)
    new = []
    for i in explicit:
        o, got = spec.objects[i], groups.get(i, [])
        if not got:
            raise IntentError(f"no free place for the {_phrase(o)} in this scene")
        for obj in got:
            missing = [r for r in o.relations if not _relation_kept(obj, r)]
            if missing:
                raise IntentError(f"no free place for the {_phrase(o)}: could not put it "
                                  f"{', '.join(r.predicate + ' the ' + r.target.name for r in missing)}")
        new += got
    edit.scene = replace(edit.scene, objects=edit.scene.objects + tuple(new))
    edit.added += [o.node_id for o in new]
    edit.summary.append(f"added {', '.join(o.node_id for o in new)}")


def _relation_kept(obj: SceneObject, r: RelationSpec) -> bool:
    """Whether a placed object really stands in a relation the edit asked for (placement relaxes
    relations when the road has no room; an edit must not claim what it did not do)."""
    if r.target.kind == "ego":
        return True
    return any(s.predicate == r.predicate for s in obj.stated)


def _move(rest: str, verb: str, edit: _Edit) -> None:
    scene = edit.scene
    m = re.search(r"\s(to|into|onto|towards)\s", " " + rest + " ")
    if m:
        ref_text, dest_text = rest[:m.start()].strip(), rest[m.start():].strip()
    else:
        ref_text, dest_text = rest, ""
    ref = _reference(ref_text, scene)
    if ref is None:
        raise IntentError(f"could not tell what to {verb} in {rest!r}: name an object or its id")
    if dest_text:
        dest = _explicit(parse_prompt(f"{ref.class_name.replace('_', ' ')} {dest_text}"))[0]
    else:  # "move the car behind the bus": the reference is the noun phrase, the destination what follows
        dest, ref = ref, ObjectSpec(ref.class_name, ref.count, ref.count_stated, ref.colour, ref.state, None, (),
                                    ref.determiner, ref.plural, ref.ordinal)
    if dest.position is None and not dest.relations:
        raise IntentError(f"could not tell where to {verb} the {_phrase(ref)}: say e.g. 'to the left lane', "
                          "'behind the bus', 'near the crosswalk' or 'ahead on the right'")
    movers = _select(scene, ref, ref_text)
    _needs_areas([dest], edit)
    for o in movers:
        _place_again(edit, o, dest)
    edit.scene = _recheck_stated(edit.scene, edit, {o.node_id for o in movers})


def _place_again(edit: _Edit, o: SceneObject, dest: ObjectSpec) -> None:
    """Move one object to where `dest` says (its position and relations), keeping id and colour."""
    scene = edit.scene
    others = [x for x in scene.objects if x.node_id != o.node_id]
    state = o.node.state
    if FAMILY[o.class_name] == "vehicle" and state == "parked" and any(r.target.kind == "lane" for r in dest.relations):
        state = "stopped"  # a vehicle put in a lane is in traffic
    if state == "crossing" and not any(r.target.kind == "area" and r.target.name == "crosswalk" for r in dest.relations):
        state = "walking"
    spec = ObjectSpec(o.class_name, (1, 1), True, o.colour if " and " not in o.colour and o.colour else None, state,
                      dest.position, dest.relations)
    lead = PromptSpec(objects=(spec,) + tuple(x for x in _implicit_targets(dest)))
    bound = _bind_targets(lead, replace(edit, scene=replace(scene, objects=tuple(others))), exclude=(o.node_id,))
    road = scene.road
    groups = place_groups(lead.objects, road, Slots(road, edit.grid), edit.rng, others, bound)
    got = groups.get(0, [])
    if not got or any(not _relation_kept(got[0], r) for r in dest.relations):
        where = _phrase(replace(dest, class_name=o.class_name))[len(o.class_name):].strip()
        raise IntentError(f"no free place to move {o.node_id} {where}")
    moved = replace(got[0], node=replace(got[0].node, node_id=o.node_id), colour=o.colour)
    edit.scene = replace(scene, objects=tuple(moved if x.node_id == o.node_id else x for x in scene.objects))
    edit.modified.append(o.node_id)
    where = _phrase(replace(dest, class_name=o.class_name, colour=None, state=None))[len(o.class_name):].strip()
    edit.summary.append(f"moved {o.node_id} {where}")


def _implicit_targets(dest: ObjectSpec) -> list[ObjectSpec]:
    """Object targets of a destination as implicit specs (they refer to objects already there)."""
    return [ObjectSpec(r.target.name, colour=r.target.colour, implicit=True) for r in dest.relations
            if r.target.kind == "object"]


def _make(rest: str, verb: str, edit: _Edit) -> None:
    rest = re.sub(r"^(the )?(colou?r|paint) of ", "", rest)
    low = rest
    for prefix in STYLE_PREFIXES:  # "make it ...", "change the weather to ..."
        if low == prefix or low.startswith(prefix + " "):
            low = low[len(prefix):].strip()
            low = re.sub(r"^(to|into|be|look like|a|an)\s+", "", low)
            return _change_style_or_road(low, rest, verb, edit)
    for prefix in ROAD_WORDS:
        if low.startswith(prefix + " "):
            return _change_style_or_road(re.sub(r"^(to|into|be)\s+", "", low[len(prefix):].strip()), rest, verb, edit)
    if _reference(rest, edit.scene) is not None:
        return _change_object(rest, verb, edit)
    return _change_style_or_road(re.sub(r"^(to|into)\s+", "", rest), rest, verb, edit)


def _change_style_or_road(words: str, original: str, verb: str, edit: _Edit) -> None:
    spec = parse_prompt(words)
    scene = edit.scene
    changes = []
    new = {}
    for key in ("time_of_day", "weather", "environment"):
        value = getattr(spec, key)
        if value is not None and value != getattr(scene, key):
            new[key] = value
            changes.append(f"{key.replace('_', ' ')} {getattr(scene, key)} -> {value}")
    surface = spec.road.surface
    if surface is None and "weather" in new and scene.surface == surface_of(scene.weather):
        surface = surface_of(new["weather"])  # the surface followed the weather; keep it following
    if surface is not None and surface != scene.surface:
        new["surface"] = surface
        changes.append(f"road surface {scene.surface} -> {surface}")
    road_asked = spec.road.kind is not None or spec.road.lanes is not None
    if not changes and not road_asked:
        stated = [getattr(spec, k) for k in ("time_of_day", "weather", "environment")] + [spec.road.surface]
        if any(v is not None for v in stated):
            raise IntentError(f"nothing to change: the scene is already {', '.join(v for v in stated if v)}")
        raise IntentError(f"could not tell what to {verb} in {original!r}: give a time of day (dawn ... night), a "
                          "weather (sunny, cloudy, overcast, rainy, foggy, snowy), an environment, a road kind "
                          "(intersection, T-junction, straight, curved), a lane count, a road surface, or an "
                          "object and its new colour or state")
    if new:
        edit.scene = replace(scene, **new)
        edit.style_changed = True
        edit.summary += changes
    if road_asked:
        _change_road(spec, edit)


def _change_road(spec: PromptSpec, edit: _Edit) -> None:
    scene = edit.scene
    current = road_kind(scene.road) if scene.road.lanes else None
    lanes_now = len(ego_road(scene.road).lanes) or 2
    kind = spec.road.kind or current or "straight"
    lanes = spec.road.lanes or lanes_now
    if kind == current and lanes == lanes_now:
        raise IntentError(f"the road is already {KIND_NAMES[kind]} with {lanes} lane{'s' if lanes != 1 else ''}")
    if kind in ("intersection", "t_junction") and current in ("straight", "curved") and lanes == lanes_now:
        road = with_junction(scene.road, kind, float(edit.rng.uniform(16, 22)), edit.rng, edit.grid)
    else:
        road = template_road(kind, lanes, edit.rng, edit.grid, highway=scene.environment == "highway")
        if any(a.kind == "crosswalk" for a in scene.road.areas) and not any(a.kind == "crosswalk" for a in road.areas):
            road = with_crosswalk(road, edit.rng)
    edit.scene = replace(scene, road=road)
    edit.road_changed = True
    edit.summary.append(f"road -> {KIND_NAMES[kind]} with {lanes} lane{'s' if lanes != 1 else ''}")
    _refit(edit)


def _change_object(rest: str, verb: str, edit: _Edit) -> None:
    """ "make the red car blue", "paint the truck white", "make the parked car drive"."""
    words = rest.split()
    for k in (2, 1):  # the new value is the last word or two: "navy blue", "blue"
        if len(words) <= k:
            continue
        value = " ".join(words[-k:])
        ref_text = re.sub(r"\s+(to|into|be|look|appear)$", "", " ".join(words[:-k]))
        ref = _reference(ref_text, edit.scene)
        if ref is None:
            continue
        colour, state = colour_word(value), state_word(value, ref.class_name)
        if colour is None and state is None:
            continue
        targets = _select(edit.scene, ref, ref_text)
        for o in targets:
            if colour is not None:
                if o.colour == colour:
                    raise IntentError(f"{o.node_id} is already {colour}")
                _replace_object(edit, replace(o, colour=colour))
                edit.summary.append(f"{o.node_id} colour {o.colour or 'unknown'} -> {colour}")
            else:
                if o.node.state == state:
                    raise IntentError(f"{o.node_id} is already {state}")
                _restate(edit, o, state)
        return
    ref = _reference(rest, edit.scene)
    raise IntentError(f"could not tell what to {verb} about the {_phrase(ref) if ref else 'object'} in {rest!r}: "
                      "end with a colour ('... blue') or a state (parked, moving, stopped, walking, standing, crossing)")


def _replace_object(edit: _Edit, new: SceneObject) -> None:
    edit.scene = replace(edit.scene, objects=tuple(new if o.node_id == new.node_id else o for o in edit.scene.objects))
    edit.modified.append(new.node_id)


def _restate(edit: _Edit, o: SceneObject, state: str) -> None:
    """A new state; the object moves when the new state stands elsewhere (parked at the curb, moving
    on a lane, crossing on a crosswalk)."""
    before = o.node.state
    _replace_object(edit, replace(o, node=replace(o.node, state=state)))
    obj = next(x for x in edit.scene.objects if x.node_id == o.node_id)
    if not _fits(edit.scene, obj):
        _needs_areas([ObjectSpec(o.class_name, state=state)], edit)
        _refit(edit, only={o.node_id})
    edit.summary.append(f"{o.node_id} {before} -> {state}")


# ----------------------------------------------------------------------------------------------------
# Keeping objects consistent with a changed road


def _lane_fit(road: Road, node) -> tuple[float, float]:
    """(distance to the nearest lane, heading difference to it in degrees) of an object."""
    if not road.lanes:
        return math.inf, 180.0
    p = np.asarray([node.location])
    d = dist_to_lines(p, [lane_array(l) for l in road.lanes])[0]
    k = int(d.argmin())
    dense = resample(lane_array(road.lanes[k]), step=1.0)
    i = int(np.hypot(*(dense - p).T).argmin())
    t = dense[min(i + 1, len(dense) - 1)] - dense[max(i - 1, 0)]
    diff = abs((math.degrees(math.atan2(t[1], t[0])) - node.heading_deg + 180) % 360 - 180)
    return float(d[k]), diff


def _fits(scene: Scene, o: SceneObject) -> bool:
    """Whether an object still stands where its state says on this road."""
    family, state = FAMILY[o.class_name], o.node.state
    d, diff = _lane_fit(scene.road, o.node)
    if family == "vehicle" and state in ("moving", "stopped"):
        return d < ON_LANE_M and diff < 45
    if family == "vehicle":  # parked: beside a lane, not in one
        return ON_LANE_M <= d <= 4.5
    if state == "crossing":
        return any(a.kind == "crosswalk" and math.dist(a.center, o.node.location) < NEAR_M for a in scene.road.areas)
    if family == "person":
        return d >= 3.0
    return True


def _refit(edit: _Edit, only: set[str] | None = None) -> None:
    """After a road change (or a new state): lane relations follow their lane words onto the new lanes;
    objects that no longer stand where their state says, or whose stated relations broke, are placed
    again under their stated position and relations (removed, and reported, when there is no room).
    only: refit just these ids, whatever their fit."""
    scene = _follow_lanes(edit.scene)
    slots = Slots(scene.road, edit.grid)
    for o in list(scene.objects):
        if only is not None and o.node_id not in only:
            continue
        if only is None and _fits(scene, o) and all(stated_holds(s, o.node, scene.road, scene.objects) for s in o.stated):
            continue
        others = [x for x in scene.objects if x.node_id != o.node_id]
        box, state = _pose_for(scene, o, slots, others, edit.rng)
        if box is None:
            scene = _without(scene, {o.node_id})
            edit.removed.append(o.node_id)
            edit.summary.append(f"removed {o.node_id}: no room for it on the new road")
            continue
        node = make_node(o.node_id, o.class_name, state, box)
        kept = tuple(s for s in o.stated if stated_holds(s, node, scene.road, others))
        position = o.stated_position if o.stated_position and node.position in POSITION_SETS[o.stated_position] else None
        moved = replace(o, node=node, stated=kept, stated_position=position)
        scene = replace(scene, objects=tuple(moved if x.node_id == o.node_id else x for x in scene.objects))
        edit.modified.append(o.node_id)
    edit.scene = scene


def _follow_lanes(scene: Scene) -> Scene:
    """Stated lane relations re-pointed at the lane their words name on the current road ("in the left
    lane" stays the left lane); relations to lanes that no longer exist are dropped."""
    ego = ego_road(scene.road)
    lane_ids = {l.lane_id for l in scene.road.lanes}
    objects = []
    for o in scene.objects:
        stated = []
        for s in o.stated:
            if s.lane_ref:
                lane = ego.ref(s.lane_ref)
                if lane is not None:
                    stated.append(replace(s, target=lane))
            elif s.predicate != "on top of" or s.target in lane_ids:
                stated.append(s)
        objects.append(replace(o, stated=tuple(stated)))
    return replace(scene, objects=tuple(objects))


def _pose_for(scene: Scene, o: SceneObject, slots: Slots, others: Sequence[SceneObject],
              rng: np.random.Generator) -> tuple:
    """(a free pose or None, the state it stands in) for an object under its stated position, lane and
    relations, relaxed to the position alone when the road has no room for all of them."""
    occupied = [ego_box()] + [box_of(x.node) for x in others]
    targets = [(s.predicate, *scene.position_of(s.target)) for s in o.stated
               if s.target != "ego" and s.predicate != "on top of" and scene.position_of(s.target) is not None]
    lane = next((s.target for s in o.stated if s.predicate == "on top of"), None)
    state = o.node.state
    if state == "crossing" and not any(a.kind == "crosswalk" for a in scene.road.areas):
        state = "walking"
    c = Constraint(o.stated_position, lane, tuple(targets))
    for constraint, kinds in ((c, None), (replace(c, relations=(), lane=None), None),
                              (Constraint(o.stated_position), ("free",))):
        box = slots.place(o.class_name, state, constraint, occupied, rng, kinds=kinds)
        if box is not None:
            return box, state
    return None, state
