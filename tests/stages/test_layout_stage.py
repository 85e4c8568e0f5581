"""LayoutStage (SceneGraph -> Layout) and the layout metrics."""

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from xscene_core.data.layout_dataset import chunk_sample
from xscene_core.data.splits import world_seeds
from xscene_core.data.world import SyntheticWorld
from xscene_core.eval.layout_metrics import (DrivableRaster, LayoutScores, collision_counts, graph_copy_layout,
                                             random_layout, relation_results)
from xscene_core.models.layout_diffusion import LayoutDiffusion
from xscene_core.stages.layout import DEFAULT_CHECKPOINT, LayoutInterrupted, LayoutStage
from xscene_core.types.layout import Box, Layout
from xscene_core.types.scene import LaneNode, ObjectNode, Relation, SceneGraph

SMALL = dict(d_sem=16, d_geo=16, d_edge=16, gcn_layers=1, layers=1, heads=2, ff_mult=2, num_inference_steps=4)


@pytest.fixture(scope="module")
def stage() -> LayoutStage:
    torch.manual_seed(0)
    m = LayoutDiffusion.from_preset("tiny", **SMALL)
    torch.nn.init.normal_(m.head_box.weight, std=0.05)
    return LayoutStage(m)


@pytest.fixture(scope="module")
def world_sample():
    world = SyntheticWorld(next(world_seeds("test")))
    x, y = world.find_location("downtown")
    return chunk_sample(world, x, y, keep_drivable=True)


def graph() -> SceneGraph:
    lanes = (LaneNode("lane_0", ((-30, -1.8), (0, -1.8), (30, -1.8)), "forward"),)
    objects = (ObjectNode("car_0", 4, "moving", "front", 0, (10.0, -1.8), (4.5, 1.9, 1.6)),
               ObjectNode("truck_0", 10, "parked", "back", 0, (-15.0, -1.8), (8.0, 2.5, 3.0)))
    return SceneGraph(lanes, objects, (), (Relation("car_0", "on top of", "lane_0"), Relation("car_0", "front of", "truck_0")))


def test_stage_returns_one_box_per_object_and_one_lane_per_lane(stage, world_sample):
    g = world_sample.graph
    layout = stage(g, seed=0)
    assert isinstance(layout, Layout)
    assert [b.track_id for b in layout.boxes] == [o.node_id for o in g.objects]
    assert [(b.label, b.state) for b in layout.boxes] == [(o.label, o.state) for o in g.objects]
    assert [l.lane_id for l in layout.lanes] == [l.lane_id for l in g.lanes]
    assert [l.turn for l in layout.lanes] == [l.turn for l in g.lanes]
    assert layout == layout and Layout.from_dict(layout.to_dict()).boxes == layout.boxes


def test_stage_is_deterministic_under_a_seed(stage):
    a, b = stage(graph(), seed=5), stage(graph(), seed=5)
    assert a.boxes == b.boxes and all(np.array_equal(x.points, y.points) for x, y in zip(a.lanes, b.lanes))


@pytest.mark.parametrize("bad, message", [
    (SceneGraph(), "empty"),
    ("car_0: car.parked", "expects a SceneGraph"),
    (replace(graph(), relations=(Relation("car_0", "on top of", "truck_0"),)), "needs a lane"),
    (replace(graph(), objects=(ObjectNode("car_0", 4, "moving", "front", 0, (300.0, 0.0), (4.5, 1.9, 1.6)),),
             relations=()), "outside the chunk"),
])
def test_check_inputs_rejects_bad_graphs(stage, bad, message):
    with pytest.raises(ValueError, match=message):
        stage(bad)


def test_check_inputs_names_an_unknown_class(stage):
    node = ObjectNode("thing_0", 4, "moving", "front", 0, (5.0, 0.0), (4.0, 2.0, 1.5))
    object.__setattr__(node, "label", 11)  # driveable_surface: not an object class
    with pytest.raises(ValueError, match="thing_0.*not an object class"):
        stage.check_inputs(SceneGraph(objects=(node,)))


def test_step_callback_reports_progress_and_interrupts(stage):
    steps = []
    stage(graph(), step_callback=lambda i, n: steps.append((i, n)))
    assert steps == [(i, 4) for i in range(1, 5)]
    with pytest.raises(LayoutInterrupted):
        stage(graph(), step_callback=lambda i, n: i < 2)
    stage.interrupt()  # an interrupt before a call does not leak into it
    assert len(stage(graph()).boxes) == 2


def test_metrics_on_ground_truth_and_random_boxes(world_sample):
    s = world_sample
    drivable = DrivableRaster.of(s.drivable)
    truth, rand, copy = LayoutScores(), LayoutScores(), LayoutScores()
    truth.add(s.graph, s.target, drivable)
    rand.add(s.graph, random_layout(s.graph, np.random.default_rng(0)), drivable)
    copy.add(s.graph, graph_copy_layout(s.graph), drivable)
    t, r, c = truth.figures(), rand.figures(), copy.figures()
    assert t["layout_relations"] == 1.0 and t["layout_collisions"] == 0.0 and t["layout_cars_on_drivable"] == 1.0
    assert r["layout_relations"] < 0.6 and r["layout_cars_on_drivable"] < 0.8
    assert c["layout_relations"] > 0.9


def test_relation_and_collision_rules():
    g = graph()
    boxes = (Box((10, -1.8, 0.8), (4.5, 1.9, 1.6), 0, 4, "moving", "car_0"),
             Box((-15, -1.8, 1.5), (8.0, 2.5, 3.0), 0, 10, "parked", "truck_0"))
    lanes = graph_copy_layout(g).lanes
    ok = relation_results(g, Layout(boxes, lanes))
    assert ok == [("on top of", True), ("front of", True)]
    moved = (replace(boxes[0], center=(-30.0, 5.0, 0.8)), boxes[1])
    assert relation_results(g, Layout(moved, lanes)) == [("on top of", False), ("front of", False)]
    assert collision_counts(boxes) == (0, 1, 0)
    assert collision_counts((boxes[0], replace(boxes[1], center=(12.0, -1.0, 1.5), yaw=math.pi / 4))) == (1, 1, 2)


@pytest.mark.skipif(not (DEFAULT_CHECKPOINT / "model.safetensors").exists(), reason="no shipped layout checkpoint")
def test_shipped_checkpoint_lays_out_a_held_out_graph(world_sample):
    stage = LayoutStage.from_pretrained()
    layout = stage(world_sample.graph, seed=0)
    res = relation_results(world_sample.graph, layout)
    assert sum(ok for _, ok in res) / len(res) > 0.9
