"""The answer an LLM must give: the paper's description JSON plus our textual scene graph, and its check.

An answer is one JSON object with the keys of `types.scene.DESCRIPTION_KEYS` and "Scene graph":

    {"Time of the day": "night", "Weather": "rainy", "Surrounding environment": "downtown",
     "Foreground objects": [{"2 parked cars": "at the right curb"}], "Background elements": [...],
     "Road condition": "...", "Layout": "...", "Abstract Description": "...",
     "Scene graph": "Scene graph:\n- lanes:\n  - lane_0: points ...\n- objects:\n  ..."}

`check_answer` turns it into typed objects or raises `SchemaError` listing every problem at once, in
words an LLM can act on (the repair round sends the message back verbatim).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..scene_graph_text import emit, parse
from ..types.scene import DescribedScene, DESCRIPTION_KEYS, ENVIRONMENTS, TIMES_OF_DAY, WEATHERS, SceneDescription, SceneGraph

SCENE_GRAPH_KEY = "Scene graph"
ANSWER_KEYS: tuple[str, ...] = (*DESCRIPTION_KEYS, SCENE_GRAPH_KEY)
# keys whose value must come from a closed vocabulary (the generators are conditioned on these words)
VOCABULARY: dict[str, tuple[str, ...]] = {
    "Time of the day": TIMES_OF_DAY, "Weather": WEATHERS, "Surrounding environment": ENVIRONMENTS,
}
PAIR_KEYS = ("Foreground objects", "Background elements")
TEXT_KEYS = ("Road condition", "Layout", "Abstract Description")


class SchemaError(ValueError):
    """An answer that is not a valid description object; the message lists every problem."""


def answer_json(description: SceneDescription, graph: SceneGraph) -> dict:
    """The answer object for a description and graph (what `check_answer` reads back; used to show the
    model in-context examples in exactly the format it must write)."""
    return {**description.to_json_dict(), SCENE_GRAPH_KEY: emit(graph)}


def _pairs(key: str, value: Any, problems: list[str]) -> list[tuple[str, str]]:
    if not isinstance(value, list):
        problems.append(f'"{key}" must be a list of {{"thing": "attribute"}} objects, got {type(value).__name__}')
        return []
    out = []
    for i, item in enumerate(value):
        if isinstance(item, dict) and item and all(isinstance(k, str) and isinstance(v, str) for k, v in item.items()):
            out.extend(item.items())
        elif isinstance(item, (list, tuple)) and len(item) == 2 and all(isinstance(s, str) for s in item):
            out.append((item[0], item[1]))  # ["thing", "attribute"] is a harmless variant
        else:
            problems.append(f'"{key}"[{i}] must be an object {{"thing": "attribute"}} with string values, got {item!r}')
    return [(k.strip(), v.strip()) for k, v in out if k.strip()]


def check_answer(obj: Any) -> DescribedScene:
    """Check a parsed JSON answer and build its typed form.

    obj: what json.loads gave. Returns DescribedScene. Raises SchemaError naming each missing key, wrong
    type, value outside its vocabulary and the scene-graph line that does not parse. Keys match
    case-insensitively and extra keys are ignored (harmless drift of chat models).
    """
    if not isinstance(obj, dict):
        raise SchemaError(f"the answer must be one JSON object with the keys {list(ANSWER_KEYS)}, "
                          f"got a JSON {type(obj).__name__}")
    by_lower = {str(k).strip().lower(): v for k, v in obj.items()}
    problems: list[str] = []
    missing = [k for k in ANSWER_KEYS if k.lower() not in by_lower]
    if missing:
        problems.append("missing keys: " + ", ".join(f'"{k}"' for k in missing))
    get = lambda key: by_lower.get(key.lower())  # noqa: E731

    words = {}
    for key, allowed in VOCABULARY.items():
        v = get(key)
        if v is None:
            continue
        word = v.strip().lower() if isinstance(v, str) else v
        if word not in allowed:
            problems.append(f'"{key}" must be one of {", ".join(allowed)}; got {v!r}')
        words[key] = word
    pairs = {key: _pairs(key, get(key), problems) for key in PAIR_KEYS if get(key) is not None}
    texts = {}
    for key in TEXT_KEYS:
        v = get(key)
        if v is not None and not isinstance(v, str):
            problems.append(f'"{key}" must be a string, got {type(v).__name__}')
        texts[key] = v.strip() if isinstance(v, str) else ""
    if get("Abstract Description") is not None and not texts["Abstract Description"]:
        problems.append('"Abstract Description" must not be empty')

    graph = None
    g = get(SCENE_GRAPH_KEY)
    if isinstance(g, list) and all(isinstance(s, str) for s in g):
        g = "\n".join(g)  # some models split a long text into a list of lines
    if g is not None and not isinstance(g, str):
        problems.append(f'"{SCENE_GRAPH_KEY}" must be the scene-graph text (one string), got {type(g).__name__}')
    elif isinstance(g, str):
        if not g.strip():
            problems.append(f'"{SCENE_GRAPH_KEY}" must not be empty')
        else:
            try:
                graph = parse(g.replace("\\n", "\n"))  # a model that double-escapes newlines still parses
            except ValueError as e:
                problems.append(f'"{SCENE_GRAPH_KEY}" does not parse: {e}')

    if problems:
        raise SchemaError("invalid description: " + "; ".join(problems))
    description = SceneDescription(
        words["Time of the day"], words["Weather"], words["Surrounding environment"],
        tuple(pairs.get("Foreground objects", ())), tuple(pairs.get("Background elements", ())),
        texts["Road condition"], texts["Layout"], texts["Abstract Description"])
    return DescribedScene(description, graph)
