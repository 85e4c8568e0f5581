"""A chunk's scene graph brought in line with a layout edited by hand (boxes moved, resized, relabelled,
added or deleted in the editor; lanes moved, bent or deleted), so the graph a later edit in words starts
from, the text the page shows and the exported scene.json describe the chunk as it now is.

    graph = graph_following(chunk.graph, edited_layout, chunk.layout)
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .. import semantics
from ..data.world.describe import flow_word, graph_lane_points, object_node, object_relations
from ..types.layout import Box, Layout
from ..types.occupancy import GridSpec
from ..types.scene import ObjectNode, SceneGraph


def graph_following(graph: SceneGraph, layout: Layout, before: Layout, grid: GridSpec | None = None) -> SceneGraph:
    """`graph` after its layout `before` became `layout`.

    When before's track and lane ids do not name the graph's nodes (a synthetic world's chunk, whose graph
    numbers its objects itself) there is no telling which node is which box: the graph is returned as it
    is. Otherwise object nodes follow the box whose track id is their id (class, state, position word,
    heading, location, size); a node whose box is gone goes; a box inside the chunk without a node (added in
    the editor) gets one, named by its track id. Lane nodes follow the layout lane of their id (points,
    flow, turn) or go. Relations naming a node that went, an object that moved or changed class, or a lane
    that moved are dropped, and the moved, relabelled and added objects get the relations a graph gives
    them where they now are (data.world.describe.object_relations); the others are kept as they were.
    Values are rounded as graphs are (0.1 m, 1 degree) so the text form round-trips."""
    if not ({n.node_id for n in graph.objects} <= {b.track_id for b in before.boxes}
            and {n.lane_id for n in graph.lanes} <= {l.lane_id for l in before.lanes}):
        return graph
    grid = grid or GridSpec()
    boxes = {b.track_id: b for b in layout.boxes if b.track_id}
    objects = [_node(n.node_id, boxes[n.node_id], n.state) for n in graph.objects if n.node_id in boxes]
    taken = {n.node_id for n in objects} | {n.lane_id for n in graph.lanes} | {a.area_id for a in graph.areas}
    for b in layout.boxes:
        if b.track_id in taken or not grid.contains_xy(*b.center[:2]):
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

    # what the edit moved: compared box to box and lane to lane (a graph's own locations are where it
    # asked for its objects, not where the layout put them)
    was = {b.track_id: b for b in before.boxes if b.track_id}
    was_lanes = {l.lane_id: l for l in before.lanes if l.lane_id}
    moved = {n.node_id for n in objects if n.node_id not in was or was[n.node_id].label != boxes[n.node_id].label
             or not np.allclose(was[n.node_id].center[:2], boxes[n.node_id].center[:2], atol=0.05)}
    moved |= {n.lane_id for n in lanes if was_lanes[n.lane_id].points.shape != lanes_by_id[n.lane_id].points.shape
              or not np.allclose(was_lanes[n.lane_id].points, lanes_by_id[n.lane_id].points, atol=0.05)}
    kept = {n.node_id for n in objects} | {n.lane_id for n in lanes} | {a.area_id for a in graph.areas} | {"ego"}
    relations = [r for r in graph.relations if {r.subject, r.object} <= kept and not {r.subject, r.object} & moved]
    lane_lines = [(lanes_by_id[n.lane_id].points, n.lane_id) for n in lanes]
    for n in objects:
        if n.node_id in moved:
            others = [(o.location, o.node_id) for o in objects if o is not n]
            relations += object_relations(n.node_id, n.label, n.location, lane_lines, graph.areas, others)
    # in the order the text form lists them (each object's under it, then the rest) so it round-trips
    order = {n.node_id: i for i, n in enumerate(objects)}
    relations.sort(key=lambda r: order.get(r.subject, len(order)))
    return SceneGraph(tuple(lanes), tuple(objects), graph.areas, tuple(relations))


def _node(node_id: str, box: Box, old_state: str) -> ObjectNode:
    """The node of an edited box, keeping the node's state where the box's is not a graph state."""
    return object_node(node_id, box, box.state if box.state in semantics.STATES else old_state)
