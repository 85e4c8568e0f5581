"""The generator API on the shipped checkpoints: prompt -> chunk, layout -> chunk, local edits, extension,
stitching, progress and cancel (about half a minute on 2 cores)."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from xscene_core import semantics
from xscene_core.generator import GenerationCancelled, Generator, Progress
from xscene_core.types.layout import Layout
from xscene_core.types.world import ChunkIndex

PROMPT = "a sunny afternoon on a suburban street with two parked cars"


@pytest.fixture(scope="module")
def gen():
    n = torch.get_num_threads()
    torch.set_num_threads(2)
    yield Generator()
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def chunk(gen):
    events, stages = [], []
    c = gen.generate(PROMPT, seed=0, images="preview", progress=events.append,
                     on_stage=lambda name, partial: stages.append((name, partial)))
    c.events, c.stages = events, stages  # for the progress test
    return c


def test_generate_fills_every_part_of_a_chunk(chunk):
    assert chunk.description.environment == "suburban" and chunk.graph.objects
    assert chunk.layout.boxes and any(p.kind == "drivable" for p in chunk.layout.polygons)  # roads derived from lanes
    assert chunk.occupancy.labels.shape == (200, 200, 16) and chunk.triplane.resolution == (100, 100, 16)
    assert (chunk.occupancy.labels == semantics.ID["driveable_surface"]).sum() > 1000
    assert chunk.views.semantic.shape[0] == 6 and chunk.preview.images.shape[0] == 6 and chunk.images is None
    stages = [e.stage for e in chunk.events]
    assert stages[0] == "describe" and {"layout", "occupancy", "render"} <= set(stages)
    assert all(isinstance(e, Progress) and 0 < e.step <= e.total for e in chunk.events)
    names = [name for name, _ in chunk.stages]
    assert names == ["describe", "layout", "occupancy", "render"]
    partial = dict(chunk.stages)
    assert partial["describe"].layout is None and partial["layout"].occupancy is None
    assert partial["occupancy"].views is None and partial["render"].preview is not None


def test_the_colours_the_description_states_paint_the_boxes(chunk):
    from xscene_core.llm.scene_text import Scene

    stated = {o.node_id: o.colour for o in Scene.from_description(chunk.description, chunk.graph).objects if o.colour}
    assert stated, f"the composer states colours for the cars: {chunk.description.foreground}"
    for b in chunk.layout.boxes:
        assert (b.color in stated[b.track_id].split(" and ")) if b.track_id in stated else b.color == ""


def test_from_layout_is_deterministic_and_the_layout_matters(gen, chunk):
    a = gen.from_layout(chunk.layout, chunk.description, seed=1, images="none")
    b = gen.from_layout(chunk.layout, chunk.description, seed=1, images="none")
    assert np.array_equal(a.occupancy.labels, b.occupancy.labels) and a.preview is None
    from xscene_core.eval.controllability import drivable_counts, layout_drivable

    area = layout_drivable(chunk.layout, gen.occupancy_stage.grid)
    empty = gen.from_layout(Layout(), chunk.description, seed=1, images="none")
    iou = lambda labels: np.divide(*drivable_counts(labels, area))  # noqa: E731
    assert iou(a.occupancy.labels) > 0.6 and iou(a.occupancy.labels) > iou(empty.occupancy.labels) + 0.2
    with pytest.raises(ValueError, match="expected a Layout"):
        gen.from_layout({"boxes": []})


def test_edit_moves_a_box_and_keeps_everything_else(gen, chunk):
    from xscene_core.ops.layout_diff import change_distance, layout_change

    box = chunk.layout.boxes[0]
    moved = replace(box, center=(box.center[0] + 5 * np.cos(box.yaw), box.center[1] + 5 * np.sin(box.yaw), box.center[2]))
    new_layout = replace(chunk.layout, boxes=(moved,) + chunk.layout.boxes[1:])
    before = chunk.occupancy.labels.copy()
    result = gen.edit(chunk, new_layout, seed=3, images="none")
    assert np.array_equal(chunk.occupancy.labels, before)  # the input chunk is not modified
    far = change_distance(layout_change(chunk.layout, new_layout), gen.occupancy_stage.grid) > 4.0
    assert np.array_equal(result.chunk.occupancy.labels[far], before[far])
    assert 0 < result.region.mean() < 0.1 and result.chunk.layout.boxes[0] == moved
    assert not np.array_equal(result.chunk.occupancy.labels, before)
    node = next(n for n in result.chunk.graph.objects if n.node_id == box.track_id)  # the graph followed
    assert np.allclose(node.location, moved.center[:2], atol=0.051)


def test_a_deleted_box_leaves_the_description_too(gen, chunk):
    """The description follows the hand edit, so the captions the models read name no deleted car."""
    def cars(description) -> int:
        return sum(int(thing.split()[0]) for thing, _ in description.foreground if thing.endswith(("car", "cars")))

    i = next(k for k, b in enumerate(chunk.layout.boxes) if b.class_name == "car")
    fewer = replace(chunk.layout, boxes=chunk.layout.boxes[:i] + chunk.layout.boxes[i + 1:])
    result = gen.edit(chunk, fewer, seed=3, images="none")
    assert cars(chunk.description) >= 1 and cars(result.chunk.description) == cars(chunk.description) - 1
    assert result.chunk.description.caption() != chunk.description.caption()
    assert result.chunk.description.time_of_day == chunk.description.time_of_day
    kept = gen.edit(chunk, fewer, seed=3, images="none", description=chunk.description)  # a given one is used as is
    assert kept.chunk.description == chunk.description


def test_extend_twice_stitch_and_lift(gen, chunk):
    world = gen.new_world(replace(chunk))
    east = gen.extend(world, ChunkIndex(0, 0), "east", seed=1, images="preview")
    assert east == ChunkIndex(1, 0) and east in world
    new = world[east]
    # the overlap (the origin's eastern half) agrees with the origin almost everywhere
    agree = (new.occupancy.labels[:100] == world[ChunkIndex(0, 0)].occupancy.labels[100:]).mean()
    assert agree > 0.95
    north = gen.extend(world, east, "north", seed=2, images="preview")
    assert north == ChunkIndex(1, 1) and world[north].preview is not None
    occ = gen.stitch(world)
    assert occ.labels.shape == (300, 300, 16)
    scene = gen.gaussians(world)  # one scene in the world frame, over all three chunks
    means = scene.means.numpy()
    assert len(means) > 10000 and means[:, 0].max() - means[:, 0].min() > 110 and means[:, 1].max() > 70
    with pytest.raises(ValueError, match="already a chunk"):
        gen.extend(world, ChunkIndex(0, 0), "east")
    with pytest.raises(ValueError, match="unknown direction"):
        gen.extend(world, ChunkIndex(0, 0), "up")


def test_cancel_from_progress_stops_and_changes_nothing(gen, chunk):
    world = gen.new_world(replace(chunk))
    with pytest.raises(GenerationCancelled):
        gen.extend(world, ChunkIndex(0, 0), "west", images="none", progress=lambda p: p.step < 3)
    assert list(world.chunks) == [ChunkIndex(0, 0)]
    # the next call runs normally
    assert gen.describe(PROMPT).description.environment == "suburban"


class _SpyImageStage:
    """Records how Generator.images calls the multi-view stage (views generated alone or extrapolated)."""

    def __init__(self):
        self.calls = []

    def _images(self, views, value):
        from xscene_core.types.images import MultiViewImages

        h, w = views.semantic.shape[1:3]
        return MultiViewImages(np.full((6, h, w, 3), value, np.uint8), views.rig)

    def __call__(self, views, description=None, layout=None, seed=0, step_callback=None):
        self.calls.append(("alone", None, None, seed))
        return self._images(views, 1)

    def extrapolate(self, views, description, layout, reference, T_ref_new, seed=0, step_callback=None):
        self.calls.append(("extrapolated", reference, T_ref_new, seed))
        return self._images(views, 2)


def test_images_of_an_extension_continue_the_reference_chunk_at_its_pose(gen, chunk):
    spy = _SpyImageStage()
    g = Generator(describe=gen.describe_stage, layout=gen.layout_stage, occupancy=gen.occupancy_stage,
                  render=gen.render_stage, multiview=spy)
    world = g.new_world(replace(chunk))
    east = g.extend(world, ChunkIndex(0, 0), "east", seed=1, images="preview")
    origin = world[ChunkIndex(0, 0)]
    assert g.images(world[east], seed=4, reference=origin).images[0, 0, 0, 0] == 1  # the origin has no views yet
    assert spy.calls[-1] == ("alone", None, None, 4)
    origin.images = g.images(origin, seed=4)
    out = g.images(world[east], seed=5, reference=origin)
    kind, reference, T, seed = spy.calls[-1]
    assert kind == "extrapolated" and reference is origin.images and seed == 5 and out.images[0, 0, 0, 0] == 2
    # the new chunk's pose in the reference chunk's frame: one stride east
    np.testing.assert_allclose(T, np.linalg.inv(origin.T_world_chunk) @ world[east].T_world_chunk)
    np.testing.assert_allclose(T[:3, 3], [g.stride, 0, 0], atol=1e-9)
    with pytest.raises(ValueError, match="render the chunk first"):
        g.images(replace(world[east], views=None), reference=origin)
