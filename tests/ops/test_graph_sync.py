"""The scene graph follows a layout edited by hand: moved, deleted and added boxes, deleted lanes."""

from dataclasses import replace

import numpy as np
import pytest

from xscene_core.ops.graph_sync import graph_following
from xscene_core.types.layout import Box
from xscene_core.types.scene import SceneGraph


@pytest.fixture(scope="module")
def graph_and_layout():
    from xscene_core.data.world import SyntheticWorld
    from xscene_core.stages.layout import LayoutStage

    world = SyntheticWorld(5)
    chunk = world.chunk(*world.find_location("downtown"))
    stage = LayoutStage.from_pretrained()
    return chunk.graph, stage(chunk.graph, seed=0), stage


def test_an_unedited_layout_keeps_every_node_and_relation(graph_and_layout):
    graph, layout, _ = graph_and_layout
    synced = graph_following(graph, layout, layout)
    assert [n.node_id for n in synced.objects] == [n.node_id for n in graph.objects]
    assert [n.lane_id for n in synced.lanes] == [n.lane_id for n in graph.lanes]
    assert synced.relations == graph.relations and synced.areas == graph.areas
    by_id = {b.track_id: b for b in layout.boxes}
    for node in synced.objects:
        assert np.allclose(node.location, by_id[node.node_id].center[:2], atol=0.051)


def test_moved_deleted_and_added_boxes_and_a_deleted_lane(graph_and_layout):
    graph, layout, stage = graph_and_layout
    moved, gone = layout.boxes[0], layout.boxes[1]
    lane_gone = next(r.object for r in graph.relations if r.predicate == "on top of")
    near = layout.boxes[2].center  # beside a box that stays, so the new one gets a relation to it
    added = Box((near[0] + 3.0, near[1], 0.8), (4.5, 1.9, 1.6), 0.5, moved.label, "parked", "user_0")
    edited = replace(layout,
                     boxes=(replace(moved, center=(moved.center[0] + 5.0, *moved.center[1:])),) + layout.boxes[2:] + (added,),
                     lanes=tuple(l for l in layout.lanes if l.lane_id != lane_gone))
    synced = graph_following(graph, edited, layout)
    nodes = {n.node_id: n for n in synced.objects}
    assert gone.track_id not in nodes and "user_0" in nodes
    assert nodes[moved.track_id].location[0] == pytest.approx(round(moved.center[0] + 5.0, 1))
    assert nodes["user_0"].state == "parked" and nodes["user_0"].heading_deg == 29
    assert lane_gone not in {n.lane_id for n in synced.lanes}
    assert all({r.subject, r.object}.isdisjoint({gone.track_id, lane_gone}) for r in synced.relations)
    assert len(synced.relations) < len(graph.relations)
    at = {(r.subject, r.predicate) for r in synced.relations}
    assert any(s == "user_0" for s, _ in at)                      # the added box is placed among the others
    unmoved = {b.track_id for b in layout.boxes[2:]}
    kept = [r for r in graph.relations if {r.subject, r.object} <= unmoved and lane_gone not in (r.subject, r.object)]
    assert set(kept) <= set(synced.relations)                     # untouched objects keep their relations
    assert SceneGraph.from_text(synced.to_text()) == synced       # the text form round-trips
    stage.check_inputs(synced)                                    # and the layout stage takes it


def test_a_graph_whose_ids_are_not_the_layouts_is_left_as_it_is():
    """A synthetic world's chunk numbers its graph's objects itself (car_0, ...), while its layout keeps
    the world's ids: which node is which box is unknown, so the graph is not touched."""
    from xscene_core.data.world import SyntheticWorld

    world = SyntheticWorld(5)
    chunk = world.chunk(*world.find_location("downtown"))
    moved = replace(chunk.layout, boxes=chunk.layout.boxes[1:])
    assert graph_following(chunk.graph, moved, chunk.layout) is chunk.graph


def test_the_description_follows_the_graph_so_no_entry_names_a_deleted_box(graph_and_layout):
    """After a hand edit the description's foreground is written again from the followed graph: a deleted
    car leaves its group one smaller, an added box is counted, colours and style are kept."""
    import re

    from xscene_core.data.world import SyntheticWorld
    from xscene_core.llm.scene_text import description_following

    graph, layout, _ = graph_and_layout
    world = SyntheticWorld(5)
    description = world.chunk(*world.find_location("downtown")).description
    assert description_following(description, graph, graph) is description  # a graph that did not follow

    def count(d, cls: str) -> int:
        return sum(int(thing.split()[0]) for thing, _ in d.foreground if re.search(rf"\b{cls}s?$", thing))

    gone = next(b for b in layout.boxes if b.class_name == "car")
    edited = replace(layout, boxes=tuple(b for b in layout.boxes if b is not gone) + (
        Box((5.0, 2.0, 0.8), (4.5, 1.9, 1.6), 0.0, gone.label, "parked", "user_0"),
        Box((8.0, 2.0, 0.8), (4.5, 1.9, 1.6), 0.0, gone.label, "parked", "user_1")))
    after = description_following(description, graph, graph_following(graph, edited, layout))
    assert count(after, "car") == count(description, "car") + 1
    assert count(after, "pedestrian") == count(description, "pedestrian")
    n = len(graph.objects) + 1
    assert f"{n} objects" in after.layout and f"{n} objects" not in description.layout
    assert (after.time_of_day, after.weather, after.environment, after.background) == \
           (description.time_of_day, description.weather, description.environment, description.background)
    colours = {thing.split(" ", 1)[1] for thing, _ in description.foreground}
    assert {thing.split(" ", 1)[1] for thing, _ in after.foreground if "car" in thing} - {"cars", "car"} <= colours


def test_the_stated_colours_paint_the_boxes_that_have_none(graph_and_layout):
    """A layout laid out for a graph has no paints; painted_layout gives each box the colour its object's
    foreground entry states (one of the two for a "black and red" group), and keeps a box's own."""
    from xscene_core.data.world import SyntheticWorld
    from xscene_core.llm.scene_text import Scene, painted_layout

    graph, layout, _ = graph_and_layout
    world = SyntheticWorld(5)
    description = world.chunk(*world.find_location("downtown")).description
    stated = {o.node_id: o.colour for o in Scene.from_description(description, graph).objects if o.colour}
    assert stated and not any(b.color for b in layout.boxes)
    painted = painted_layout(layout, description, graph)
    for b in painted.boxes:
        if b.track_id in stated:
            assert b.color and b.color in stated[b.track_id].split(" and ")
        else:
            assert b.color == ""
    two = [n for n, c in stated.items() if " and " in c]
    if two:  # a two-colour group uses both
        group = [b.color for b in painted.boxes if stated.get(b.track_id) == stated[two[0]]]
        assert len(set(group)) == 2 or len(group) == 1
    first = next(i for i, b in enumerate(layout.boxes) if b.track_id in stated)
    own = replace(layout, boxes=tuple(replace(b, color="green") if i == first else b for i, b in enumerate(layout.boxes)))
    assert painted_layout(own, description, graph).boxes[first].color == "green"
    assert painted_layout(layout, replace(description, foreground=()), graph) is layout  # nothing stated


def test_a_box_painted_in_the_editor_gives_its_colour_to_the_description(graph_and_layout):
    from xscene_core.data.world import SyntheticWorld
    from xscene_core.llm.scene_text import description_following

    graph, layout, _ = graph_and_layout
    world = SyntheticWorld(5)
    description = world.chunk(*world.find_location("downtown")).description
    assert not any("green" in thing for thing, _ in description.foreground)
    car = next(i for i, b in enumerate(layout.boxes) if b.class_name == "car")
    painted = replace(layout, boxes=tuple(replace(b, color="green") if i == car else b for i, b in enumerate(layout.boxes)))
    followed = graph_following(graph, painted, layout)
    after = description_following(description, graph, followed, painted)
    assert any(thing.startswith("1 green car") for thing, _ in after.foreground), after.foreground
    # without the layout the colour stays the text's
    assert not any("green" in thing for thing, _ in description_following(description, graph, followed).foreground)


def test_following_gives_the_followed_graph_and_description_of_a_chunk(graph_and_layout):
    """generator.following, which Generator.edit and the editor's Regenerate of a chunk without voxels share."""
    import numpy as np

    from xscene_core.data.world import SyntheticWorld
    from xscene_core.generator import following
    from xscene_core.llm.scene_text import description_following
    from xscene_core.types.world import Chunk

    graph, layout, _ = graph_and_layout
    world = SyntheticWorld(5)
    description = world.chunk(*world.find_location("downtown")).description
    gone = next(b for b in layout.boxes if b.class_name == "car")
    edited = replace(layout, boxes=tuple(b for b in layout.boxes if b is not gone))
    chunk = Chunk(np.eye(4), layout=layout, graph=graph, description=description)
    g, d = following(chunk, edited)
    assert g == graph_following(graph, edited, layout)
    assert d == description_following(description, graph, g, edited) and d != description
    assert following(replace(chunk, graph=None), edited) == (None, description)
    assert following(replace(chunk, description=None), edited) == (g, None)
