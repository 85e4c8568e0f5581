"""Does a produced SceneDescription say what the prompt asked? (`description_attr_recall`, DESIGN.md)

A prompt case is {"prompt": str, "expect": {...}} (tests/llm/prompts_attr.jsonl, one per line). The
expected attributes, each scored once:

    time_of_day, weather, environment   equal to the description's field
    road_surface                        wet | icy | snowy | dry, read from the road condition
    road_type                           intersection | t_junction | straight | curved, read from the road condition
    lanes                               int, the lane count the road condition states
    crosswalk                           true: the road condition names a crosswalk
    empty                               true: every foreground group is of an expected class
    objects                             a list of {"class", "count", "colour"?, "state"?, "position"?,
                                        "relations"?: [{"predicate", "target"}]}

An object's qualifiers (colour, state, position, relations) select the foreground groups it speaks
about: groups of its class whose colours include the colour, whose state is the state, whose position
lies inside the stated one (prompt_parser.POSITION_SETS: "left" holds the three left sectors) and that
state each relation. Its attributes:
- count: the selected groups' counts sum to the count (an int, or [lo, hi] for "a few", "many"); so
  "three pedestrians" fails when the description has five, and "no pedestrians" when it has any;
- colour: some group of the class carries the colour;
- state: some group of the class (and colour) has the state;
- position: some group of the class (and colour, state) is at the position;
- each relation: some group of the class (and colour, state) states it, target matched by kind and name
  (a class, an area "crosswalk" / "intersection", a lane "left lane" / "right lane" / "ego lane" /
  "oncoming lane" / "middle lane").
Groups are read with prompt_parser.read_group, so a description with other wording is scored alike.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

from .. import semantics
from ..llm.prompt_parser import POSITION_SETS, GroupFacts, TargetRef, read_group, read_road
from ..types.scene import SceneDescription

DEFAULT_PROMPT_SET = Path(__file__).resolve().parents[2] / "tests" / "llm" / "prompts_attr.jsonl"
SCALAR_KEYS = ("time_of_day", "weather", "environment", "road_surface", "road_type", "lanes", "crosswalk", "empty")
OBJECT_KEYS = ("class", "count", "colour", "state", "position", "relations")


@dataclass(frozen=True)
class AttrCheck:
    """One expected attribute: its kind (e.g. "weather", "object.count"), what was expected, whether the
    description has it and what was found instead (for messages)."""

    kind: str
    expected: object
    ok: bool
    found: object = None


def load_prompt_set(path: str | Path) -> list[dict]:
    """Prompt cases of a JSON-lines file; raises ValueError naming the line of a malformed case."""
    cases = []
    for no, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            case = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{no}: not JSON ({e})") from None
        try:
            validate_case(case)
        except ValueError as e:
            raise ValueError(f"{path}:{no}: {e}") from None
        cases.append(case)
    return cases


def validate_case(case: dict) -> None:
    """Raise ValueError if a case has unknown keys or malformed values."""
    if not isinstance(case, dict) or not isinstance(case.get("prompt"), str) or not isinstance(case.get("expect"), dict):
        raise ValueError('a case is {"prompt": str, "expect": {...}}')
    expect = case["expect"]
    unknown = set(expect) - set(SCALAR_KEYS) - {"objects"}
    if unknown:
        raise ValueError(f"unknown expect keys {sorted(unknown)}")
    for o in expect.get("objects", []):
        if set(o) - set(OBJECT_KEYS) or "class" not in o or "count" not in o:
            raise ValueError(f"object expectations need class and count and only {OBJECT_KEYS}: {o}")
        for p in [o["position"]] if "position" in o else []:
            if p not in POSITION_SETS:
                raise ValueError(f"unknown position {p!r}")
        for r in o.get("relations", []):
            if set(r) != {"predicate", "target"} or r["predicate"] not in INVERSE and r["predicate"] != "on top of":
                raise ValueError(f"a relation is {{predicate, target}} with a scene-graph predicate, got {r}")
            _target_matches(r["target"], TargetRef("ego", "ego"))  # raises on an unknown target


def _count_range(count) -> tuple[int, int]:
    if isinstance(count, int):
        return count, count
    lo, hi = count
    return int(lo), int(hi)


def _target_matches(expected: str, target) -> bool:
    """Whether a read relation target is the expected one: "bus", "red bus", "traffic cone",
    "crosswalk" / "intersection" (areas) or "<left|right|ego|oncoming|middle> lane"."""
    words = expected.replace("_", " ").split()
    if words[-1] == "lane":
        return target.kind == "lane" and target.name == words[0]
    if expected in ("crosswalk", "intersection"):
        return target.kind == "area" and target.name == expected
    for n in (2, 1):  # the class is the last one or two words, a colour may precede it
        name = "_".join(words[-n:])
        if name in semantics.ID and len(words) >= n:
            colour = " ".join(words[:-n]) or None
            return target.kind == "object" and target.name == name and (colour is None or target.colour == colour)
    raise ValueError(f"unknown relation target {expected!r}")


INVERSE = {"behind": "front of", "front of": "behind", "left of": "right of", "right of": "left of", "near": "near"}


def _has_relation(g: GroupFacts, rel: dict, groups: Sequence[GroupFacts] = ()) -> bool:
    """Whether group g states the relation, or a group of the target states its inverse about g's class
    ("the trucks behind the motorcycle" = "the motorcycle in front of the trucks")."""
    if any(r.predicate == rel["predicate"] and _target_matches(rel["target"], r.target) for r in g.relations):
        return True
    inverse = INVERSE.get(rel["predicate"])
    if inverse is None or g.class_name is None:
        return False
    for t in groups:
        if t is g or t.class_name is None:
            continue
        as_target = TargetRef("object", t.class_name, t.colours[0] if len(t.colours) == 1 else None)
        if _target_matches(rel["target"], as_target) and any(
                r.predicate == inverse and r.target.kind == "object" and r.target.name == g.class_name
                for r in t.relations):
            return True
    return False


def _position_ok(expected: str, found: str | None) -> bool:
    return found is not None and POSITION_SETS.get(found, frozenset()) <= POSITION_SETS[expected]


def check_description(expect: dict, description: SceneDescription) -> list[AttrCheck]:
    """Every expected attribute of one case checked against one description."""
    checks: list[AttrCheck] = []
    for key in ("time_of_day", "weather", "environment"):
        if key in expect:
            found = getattr(description, key)
            checks.append(AttrCheck(key, expect[key], found == expect[key], found))
    road = read_road(description.road_condition)
    for key, found in (("road_surface", road.surface), ("road_type", road.kind), ("lanes", road.lanes),
                       ("crosswalk", road.crosswalk)):
        if key in expect:
            checks.append(AttrCheck(key, expect[key], found == expect[key], found))
    groups = [read_group(t, a) for t, a in description.foreground]
    if expect.get("empty"):
        allowed = {o["class"] for o in expect.get("objects", []) if _count_range(o["count"])[1] > 0}
        extra = sorted({g.class_name or "?" for g in groups} - allowed)
        checks.append(AttrCheck("empty", True, not extra, extra))
    for o in expect.get("objects", []):
        checks += _check_object(o, groups)
    return checks


def _check_object(o: dict, groups: list[GroupFacts]) -> list[AttrCheck]:
    cls = o["class"]
    of_class = [g for g in groups if g.class_name == cls]
    colour = [g for g in of_class if "colour" not in o or o["colour"] in g.colours]
    stated = [g for g in colour if "state" not in o or g.state == o["state"]]
    selected = [g for g in stated if ("position" not in o or _position_ok(o["position"], g.position))
                and all(_has_relation(g, r, groups) for r in o.get("relations", []))]
    lo, hi = _count_range(o["count"])
    n = sum(g.count or 0 for g in selected)
    tag = f"object {cls}"
    out = [AttrCheck(f"{tag}.count", (lo, hi), lo <= n <= hi, n)]
    if "colour" in o:
        out.append(AttrCheck(f"{tag}.colour", o["colour"], bool(colour), sorted({c for g in of_class for c in g.colours})))
    if "state" in o:
        out.append(AttrCheck(f"{tag}.state", o["state"], bool(stated), sorted({str(g.state) for g in colour})))
    if "position" in o:
        ok = any(_position_ok(o["position"], g.position) for g in stated)
        out.append(AttrCheck(f"{tag}.position", o["position"], ok, sorted({str(g.position) for g in stated})))
    for r in o.get("relations", []):
        ok = any(_has_relation(g, r, groups) for g in stated)
        out.append(AttrCheck(f"{tag}.relation", f"{r['predicate']} {r['target']}", ok,
                             [f"{x.predicate} {x.target.name}" for g in stated for x in g.relations]))
    return out


DescribeFn = Callable[[str], "SceneDescription | tuple"]


def describe_all(prompts: Sequence[dict], describe_fn: DescribeFn) -> list[tuple[dict, list[AttrCheck]]]:
    """(case, checks) for each case; describe_fn(prompt) returns a SceneDescription or a tuple whose
    first item is one ((description, graph) as the composer returns)."""
    out = []
    for case in prompts:
        produced = describe_fn(case["prompt"])
        description = produced[0] if isinstance(produced, tuple) else produced
        out.append((case, check_description(case["expect"], description)))
    return out


def description_attr_recall(prompts: Sequence[dict] | str | Path, describe_fn: DescribeFn) -> float:
    """Share of expected attributes (over all cases) that appear in the produced descriptions.

    prompts: cases or the path of a JSON-lines prompt set; describe_fn: prompt -> description (or a
    tuple led by one). Returns a float in [0, 1] (1.0 when no attribute is expected)."""
    cases = load_prompt_set(prompts) if isinstance(prompts, (str, Path)) else list(prompts)
    checks = [c for _, cs in describe_all(cases, describe_fn) for c in cs]
    return sum(c.ok for c in checks) / len(checks) if checks else 1.0


def failures(results: Iterable[tuple[dict, list[AttrCheck]]]) -> list[str]:
    """One line per missed attribute: prompt, kind, expected, found."""
    return [f"{case['prompt']!r}: {c.kind} expected {c.expected!r}, found {c.found!r}"
            for case, checks in results for c in checks if not c.ok]


def offline_recall(search: Callable[[str, int], Sequence], prompts: Sequence[dict] | str | Path = DEFAULT_PROMPT_SET,
                   k: int = 4, seed: int = 0) -> float:
    """description_attr_recall of the offline Describe path: each prompt is parsed, `search(prompt, k)`
    retrieves its memories (e.g. MemoryBank.search: [(entry, score)]) and the composer writes the scene."""
    from ..llm.composer import compose_prompt  # the composer imports nothing from eval; keep it that way

    return description_attr_recall(prompts, lambda p: compose_prompt(p, search(p, k), seed))
