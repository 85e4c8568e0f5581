"""A chunk's scene graph brought in line with a layout edited by hand (boxes moved, resized, relabelled,
added or deleted in the editor; lanes moved, bent or deleted), so the graph a later edit in words starts
from, the text the page shows and the exported scene.json describe the chunk as it now is.

    graph = graph_following(chunk.graph, edited_layout)
"""

from __future__ import annotations

import math
from dataclasses import replace

from .. import semantics
from ..data.world.describe import flow_word, graph_lane_points, position_word
from ..types.layout import Box, Layout
from ..types.occupancy import GridSpec
from ..types.scene import ObjectNode, SceneGraph


def graph_following(graph: SceneGraph, layout: Layout, grid: GridSpec | None = None) -> SceneGraph:
    """`graph` after its layout became `layout`. Object nodes follow the box with their id as track id
    (class, state, position word, heading, location, size); a node whose box is gone goes, with every
    relation naming it; a box inside the chunk with no node (added in the editor) gets one, named by its
    track id. Lane nodes follow the layout lane with their id likewise (points resampled, flow, turn) or
    go. Relations between the nodes that stay are kept as they were. Values are rounded as graphs are
    (0.1 m, 1 degree) so the text form round-trips."""
    grid = grid or GridSpec()
    boxes = {b.track_id: b for b in layout.boxes if b.track_id}
    objects = [_node(n.node_id, boxes[n.node_id], n.state) for n in graph.objects if n.node_id in boxes]
    taken = {n.node_id for n in objects} | {n.lane_id for n in graph.lanes} | {a.area_id for a in graph.areas}
    (lx, ly, _), (ux, uy, _) = grid.lower, grid.upper
    for b in layout.boxes:
        if b.track_id in taken or not (lx <= b.center[0] < ux and ly <= b.center[1] < uy):
            continue
        node_id, k = b.track_id, 0
        while not node_id or node_id in taken:
            node_id, k = f"{b.class_name}_{k}", k + 1
        taken.add(node_id)
        objects.append(_node(node_id, b, b.state))
    lanes_by_id = {l.lane_id: l for l in layout.lanes if l.lane_id}
    lanes = []
    for node in graph.lanes:
        lane = lanes_by_id.get(node.lane_id)
        if lane is None:
            continue
        points = tuple(map(tuple, graph_lane_points(lane.points)))
        lanes.append(replace(node, points=points, flow=flow_word(lane.heading), turn=lane.turn))
    kept = {n.node_id for n in objects} | {n.lane_id for n in lanes} | {a.area_id for a in graph.areas} | {"ego"}
    relations = tuple(r for r in graph.relations if r.subject in kept and r.object in kept)
    return SceneGraph(tuple(lanes), tuple(objects), graph.areas, relations)


def _node(node_id: str, box: Box, old_state: str) -> ObjectNode:
    x, y = box.center[:2]
    state = box.state if box.state in semantics.STATES else old_state
    return ObjectNode(node_id, box.label, state, position_word(x, y), round(math.degrees(box.yaw)),
                      (round(x, 1), round(y, 1)), tuple(round(max(v, 0.1), 1) for v in box.size))
