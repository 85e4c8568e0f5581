"""The textual scene graph: a tree of lanes, areas and objects with their relations nested under them.

Our format (the X-Scene paper describes a textual tree with lanes (points, flow) and objects (class.state,
relative position, heading, location, size) but its exact syntax is not public):

    Scene graph:
    - ego: vehicle at (0.0, 0.0), heading 0 deg
    - lanes:
      - lane_0: points (-40.0, -1.8) (-20.0, -1.8) (0.0, -1.8); flow: forward; turn: straight
    - areas:
      - crosswalk_0: crosswalk at (12.0, 0.0)
    - objects:
      - car_0: car.parked; position: front-left; heading: 90 deg; location: (12.3, 4.5); size: (4.5, 1.9, 1.6)
        - on top of lane_0
        - behind car_1

`emit` writes it; `parse` reads it back (`parse(emit(g)) == g`) and tolerates the drift an LLM adds:
any indentation and bullet (-, *, •), case, extra spaces, "°" or "degrees", brackets or none around
coordinates, commas or semicolons between fields. A line it cannot read raises ValueError naming it.
"""

from __future__ import annotations

import re

from . import semantics
from .types.scene import AreaNode, LaneNode, ObjectNode, Relation, SceneGraph, RELATIONS

HEADER = "Scene graph:"
_NUM = r"-?\d+(?:\.\d+)?"
_PAIR = rf"\(?\s*({_NUM})\s*,\s*({_NUM})\s*\)?"


def _f(v: float) -> str:
    return f"{v:.1f}"


def emit(graph: SceneGraph) -> str:
    """The text form of a scene graph (coordinates to 0.1 m, headings to 1 degree)."""
    lines = [HEADER, "- ego: vehicle at (0.0, 0.0), heading 0 deg", "- lanes:"]
    for n in graph.lanes:
        pts = " ".join(f"({_f(x)}, {_f(y)})" for x, y in n.points)
        lines.append(f"  - {n.lane_id}: points {pts}; flow: {n.flow}; turn: {n.turn}")
    lines.append("- areas:")
    for a in graph.areas:
        lines.append(f"  - {a.area_id}: {a.kind} at ({_f(a.center[0])}, {_f(a.center[1])})")
    lines.append("- objects:")
    for o in graph.objects:
        lx, ly = o.location
        l, w, h = o.size
        lines.append(
            f"  - {o.node_id}: {o.class_name}.{o.state}; position: {o.position}; heading: {o.heading_deg:.0f} deg; "
            f"location: ({_f(lx)}, {_f(ly)}); size: ({_f(l)}, {_f(w)}, {_f(h)})")
        for r in graph.relations_of(o.node_id):
            lines.append(f"    - {r.predicate} {r.object}")
    # relations whose subject is not an object (lanes, areas) go under a section of their own
    other = [r for r in graph.relations if r.subject not in {o.node_id for o in graph.objects}]
    if other:
        lines.append("- relations:")
        lines += [f"  - {r.subject} {r.predicate} {r.object}" for r in other]
    return "\n".join(lines) + "\n"


_ITEM = re.compile(r"^(\s*)(?:[-*•]\s*)?(.*?)\s*$")
_LANE = re.compile(rf"^([\w.#-]+)\s*:\s*points?\s*[:=]?\s*(.*?)\s*[;,]\s*flow\s*[:=]?\s*(\w+)(?:\s*[;,]\s*turn\s*[:=]?\s*(\w+))?\s*[;,.]?$", re.I)
_AREA = re.compile(rf"^([\w.#-]+)\s*:\s*(crosswalk|intersection)\s+at\s*{_PAIR}\s*[;,.]?$", re.I)
_OBJ = re.compile(
    rf"^([\w.#-]+)\s*:\s*([a-z_ ]+)\.([a-z]+)\s*[;,]\s*position\s*[:=]?\s*([a-z-]+)\s*[;,]\s*heading\s*[:=]?\s*({_NUM})\s*(?:deg(?:rees?)?|°)?\s*[;,]"
    rf"\s*location\s*[:=]?\s*{_PAIR}\s*[;,]\s*size\s*[:=]?\s*\(?\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*\)?\s*[;,.]?$", re.I)
_REL = re.compile(rf"^(?:([\w.#-]+)\s+)?({'|'.join(RELATIONS)})\s+(?:the\s+)?([\w.#-]+)\s*[;,.]?$", re.I)


def parse(text: str) -> SceneGraph:
    """Read the text form; raises ValueError("line N: ...") for a line it cannot read."""
    lanes, areas, objects, relations = [], [], [], []
    section = None
    current_obj: str | None = None
    for no, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        m = _ITEM.match(raw.replace("\t", "    "))
        body = m.group(2)
        low = body.lower().rstrip(":").strip()
        if low in ("scene graph", "scenegraph"):
            continue
        if low in ("lanes", "areas", "objects", "relations"):
            section, current_obj = low, None
            continue
        if low.startswith("ego"):
            continue
        try:
            if section == "lanes":
                lm = _LANE.match(body)
                if not lm:
                    raise ValueError("expected '<lane_id>: points (x, y) ...; flow: <flow>; turn: <turn>'")
                pts = [(float(a), float(b)) for a, b in re.findall(_PAIR, lm.group(2))]
                lanes.append(LaneNode(lm.group(1), tuple(pts), lm.group(3).lower(), (lm.group(4) or "straight").lower()))
            elif section == "areas":
                am = _AREA.match(body)
                if not am:
                    raise ValueError("expected '<area_id>: crosswalk|intersection at (x, y)'")
                areas.append(AreaNode(am.group(1), am.group(2).lower(), (float(am.group(3)), float(am.group(4)))))
            elif section == "objects":
                om = _OBJ.match(body)
                if om:
                    name = om.group(2).strip().lower().replace(" ", "_")
                    objects.append(ObjectNode(
                        om.group(1), semantics.class_id(name), om.group(3).lower(), om.group(4).lower(),
                        float(om.group(5)), (float(om.group(6)), float(om.group(7))),
                        (float(om.group(8)), float(om.group(9)), float(om.group(10)))))
                    current_obj = om.group(1)
                    continue
                rm = _REL.match(body)
                if rm and current_obj is not None:
                    relations.append(Relation(rm.group(1) or current_obj, rm.group(2).lower(), rm.group(3)))
                    continue
                raise ValueError("expected an object '<id>: <class>.<state>; position: ...; heading: ... deg; "
                                 "location: (x, y); size: (l, w, h)' or a relation '<predicate> <node>'")
            elif section == "relations":
                rm = _REL.match(body)
                if not rm or not rm.group(1):
                    raise ValueError("expected '<subject> <predicate> <object>'")
                relations.append(Relation(rm.group(1), rm.group(2).lower(), rm.group(3)))
            else:
                raise ValueError("text before any section (lanes, areas, objects, relations)")
        except ValueError as e:
            raise ValueError(f"line {no}: {e}: {raw.strip()!r}") from None
    try:
        return SceneGraph(tuple(lanes), tuple(objects), tuple(areas), tuple(relations))
    except ValueError as e:
        raise ValueError(f"scene graph: {e}") from None
