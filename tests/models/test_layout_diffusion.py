"""LayoutDiffusion: shapes, determinism, save/load, conditioning, presets, the (graph, layout) data."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from xscene_core.data.layout_dataset import chunk_sample, sample_from_dict, sample_to_dict
from xscene_core.data.splits import world_seeds
from xscene_core.data.world import SyntheticWorld
from xscene_core.models.layout_diffusion import (PRESETS, LayoutDiffusion, SamplingStopped, collate, vocabulary)
from xscene_core.types.layout import Layout
from xscene_core.types.scene import AreaNode, LaneNode, ObjectNode, Relation, SceneGraph

SMALL = dict(d_sem=16, d_geo=16, d_edge=16, gcn_layers=1, layers=1, heads=2, ff_mult=2, num_inference_steps=4)


def small_model(seed: int = 0) -> LayoutDiffusion:
    """A tiny model whose output heads are random (a fresh model starts from the graph's geometry, so
    random heads make the network's part of the output visible)."""
    torch.manual_seed(seed)
    m = LayoutDiffusion.from_preset("tiny", **SMALL)
    for head in (m.head_box, m.head_lane):
        torch.nn.init.normal_(head.weight, std=0.05)
    return m.eval()


def make_graph(car_x: float = 10.0) -> SceneGraph:
    lanes = (LaneNode("lane_0", ((-40, -1.8), (-20, -1.8), (0, -1.8), (20, -1.8), (40, -1.8)), "forward"),
             LaneNode("lane_1", ((40, 1.8), (20, 1.8), (0, 1.8), (-20, 1.8), (-40, 1.8)), "backward"))
    objects = (ObjectNode("car_0", 4, "moving", "front", 0, (car_x, -1.8), (4.5, 1.9, 1.6)),
               ObjectNode("car_1", 4, "moving", "back", 180, (-12.0, 1.8), (4.4, 1.8, 1.5)),
               ObjectNode("pedestrian_0", 7, "walking", "front-left", 90, (15.0, 6.0), (0.7, 0.7, 1.7)))
    areas = (AreaNode("crosswalk_0", "crosswalk", (14.0, 0.0)),)
    relations = (Relation("car_0", "on top of", "lane_0"), Relation("car_1", "on top of", "lane_1"),
                 Relation("car_0", "front of", "car_1"), Relation("pedestrian_0", "near", "crosswalk_0"))
    return SceneGraph(lanes, objects, areas, relations)


def sample(m: LayoutDiffusion, graph: SceneGraph, seed: int = 0) -> torch.Tensor:
    return m.sample(collate([m.encode_graph(graph)]), torch.Generator().manual_seed(seed))


def test_shapes_and_decode():
    m, g = small_model(), make_graph()
    enc = m.encode_graph(g)
    assert enc.num_nodes == 1 + 3 + 2 + 1 and enc.edges.shape == (4, 3)
    x = sample(m, g)
    assert x.shape == (1, enc.num_nodes, max(7, 2 * m.lane_points)) and torch.isfinite(x).all()
    layout = m.decode(g, x[0])
    assert isinstance(layout, Layout)
    assert [b.track_id for b in layout.boxes] == ["car_0", "car_1", "pedestrian_0"]
    assert [b.label for b in layout.boxes] == [4, 4, 7]
    assert [l.lane_id for l in layout.lanes] == ["lane_0", "lane_1"]
    assert all(l.points.shape == (m.lane_points, 2) for l in layout.lanes)


def test_loss_is_finite_and_reaches_the_graph_convolution():
    m, g = small_model(), make_graph()
    batch = collate([m.encode_graph(g)] * 2)
    target = Layout(tuple(m.decode(g, sample(m, g)[0]).boxes), m.decode(g, sample(m, g)[0]).lanes)
    x0 = torch.from_numpy(np.stack([m.encode_target(g, target)] * 2))
    m.train()
    loss = m.loss(batch, x0, torch.Generator().manual_seed(0))
    loss.backward()
    assert torch.isfinite(loss)
    assert m.edge.weight.grad is not None and m.edge.weight.grad.abs().sum() > 0  # relations are used
    assert m.gcn[0].triple[0].weight.grad.abs().sum() > 0


def test_deterministic_under_a_seed():
    m, g = small_model(), make_graph()
    assert torch.equal(sample(m, g, 3), sample(m, g, 3))
    assert not torch.equal(sample(m, g, 3), sample(m, g, 4))


def test_save_load_round_trip(tmp_path):
    m, g = small_model(), make_graph()
    m.ground_z.fill_(0.2)
    m.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["_class_name"] == "LayoutDiffusion" and cfg["layers"] == 1
    m2 = LayoutDiffusion.from_pretrained(tmp_path)
    assert torch.equal(sample(m, g, 1), sample(m2, g, 1))
    assert m2.decode(g, sample(m2, g)[0]).boxes[0].center[2] == pytest.approx(0.2 + m2.decode(g, sample(m2, g)[0]).boxes[0].size[2] / 2)


def test_from_pretrained_names_what_is_missing(tmp_path):
    with pytest.raises(ValueError, match="config.json"):
        LayoutDiffusion.from_pretrained(tmp_path)


def test_the_condition_changes_the_output():
    m = small_model()
    a, b = m.decode(make_graph(10.0), sample(m, make_graph(10.0))[0]), m.decode(make_graph(25.0), sample(m, make_graph(25.0))[0])
    assert abs(a.boxes[0].center[0] - b.boxes[0].center[0]) > 5
    # the relations alone change the node context
    g = make_graph()
    g2 = replace(g, relations=(Relation("car_0", "behind", "car_1"),))
    ctx = lambda graph: m.context(collate([m.encode_graph(graph)]))  # noqa: E731
    assert not torch.allclose(ctx(g), ctx(g2))


def test_step_callback_can_stop_sampling():
    m, g = small_model(), make_graph()
    seen = []
    with pytest.raises(SamplingStopped):
        m.sample(collate([m.encode_graph(g)]), torch.Generator().manual_seed(0),
                 step_callback=lambda i, n: seen.append((i, n)) or i < 2)
    assert seen == [(1, 4), (2, 4)]


def test_presets():
    tiny, paper = LayoutDiffusion.from_preset("tiny"), LayoutDiffusion.from_preset("paper")
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert set(PRESETS) == {"tiny", "paper"} and n(paper) > 4 * n(tiny)
    assert tiny.config["num_inference_steps"] == PRESETS["tiny"]["num_inference_steps"]
    assert tiny.text_table.shape == (len(vocabulary()) + 1, 384)
    with pytest.raises(ValueError, match="unknown preset"):
        LayoutDiffusion.from_preset("huge")


@pytest.fixture(scope="module")
def world_pair():
    world = SyntheticWorld(next(world_seeds("train")))
    x, y = world.find_location("suburban")
    return chunk_sample(world, x, y, keep_drivable=True)


def test_training_entry_point_runs_and_resumes(tmp_path, world_pair):
    from xscene_core.train.layout import main

    for split in ("train", "val"):
        (tmp_path / f"{split}.jsonl").write_text(json.dumps(sample_to_dict(world_pair)) + "\n")
    args = ["--out", str(tmp_path / "run"), "--data", str(tmp_path), "--val-every", "2", "--ckpt-every", "2",
            "--val-graphs", "1", "--batch-size", "2", "--threads", "1", "--no-text-model"]
    main(args + ["--steps", "2"])
    main(args + ["--steps", "4", "--resume"])
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log if "val_loss" in e] == [2, 4]
    assert json.loads((tmp_path / "run" / "last" / "train_state.json").read_text())["step"] == 4
    assert LayoutDiffusion.from_pretrained(tmp_path / "run" / "best").config["layers"] == PRESETS["tiny"]["layers"]


def test_world_pairs_round_trip_and_match_the_graph(world_pair):
    s = world_pair
    assert len(s.target.boxes) == len(s.graph.objects) and len(s.target.lanes) == len(s.graph.lanes)
    for node, box in zip(s.graph.objects, s.target.boxes):
        assert node.label == box.label and np.allclose(node.location, box.center[:2], atol=0.051)
    s2 = sample_from_dict(json.loads(json.dumps(sample_to_dict(s))))
    assert s2.graph == s.graph and len(s2.drivable) == len(s.drivable)
    m = small_model()
    x0 = m.encode_target(s.graph, s.target)
    assert x0.shape == (m.encode_graph(s.graph).num_nodes, m.state_dims)
    # decoding the encoded target gives the target back (up to float32)
    back = m.decode(s.graph, x0)
    for b, t in zip(back.boxes, s.target.boxes):
        assert np.allclose(b.center[:2], t.center[:2], atol=1e-3) and np.allclose(b.size, t.size, rtol=1e-4)
