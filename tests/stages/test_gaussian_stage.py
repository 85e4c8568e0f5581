"""GaussianStage: a world of overlapping chunks -> one GaussianScene; checks, progress, interrupt, render."""

import numpy as np
import pytest
import torch

from xscene_core import semantics
from xscene_core.stages.gaussians import GaussianStage, GaussiansInterrupted, look_camera
from xscene_core.stages.render import default_rig
from xscene_core.types import GridSpec, Occupancy
from xscene_core.types.images import MultiViewImages
from xscene_core.types.world import Chunk, ChunkIndex, WorldMap

GRID = GridSpec((20, 20, 8), 0.4, (-4.0, -4.0, -0.8))


def labels_at(T: np.ndarray) -> np.ndarray:
    """One continuous world sampled in a chunk: ground, a wall along x = 3 m and a car."""
    c = GRID.centers() @ T[:3, :3].T + T[:3, 3]
    x, y, z = c[..., 0], c[..., 1], c[..., 2]
    lab = np.full(GRID.shape, semantics.FREE, np.uint8)
    lab[(z >= -0.4) & (z < 0.0)] = semantics.ID["driveable_surface"]
    lab[(np.abs(x - 3.0) < 0.25) & (z >= 0.0) & (z < 2.0)] = semantics.ID["manmade"]
    lab[(np.abs(x + 1.0) < 0.9) & (np.abs(y - 1.0) < 0.5) & (z >= 0.0) & (z < 1.2)] = semantics.ID["car"]
    return lab


def small_world(n: int = 2, stride: float = 4.0, size=(28, 50)) -> WorldMap:
    rig = default_rig(size)
    rng = np.random.default_rng(0)
    wm = WorldMap(stride=stride)
    for i in range(n):
        index = ChunkIndex(i, 0)
        T = wm.pose_of(index)
        images = MultiViewImages(rng.integers(0, 255, (6, *size, 3), dtype=np.uint8), rig)
        wm.add(index, Chunk(T, occupancy=Occupancy(labels_at(T), GRID), preview=images))
    return wm


def test_world_lifting_is_deterministic_and_has_no_duplicates():
    world = small_world()
    stage = GaussianStage()
    steps = []
    scene = stage(world, step_callback=lambda d, t: steps.append((d, t)))
    assert steps[-1] == (12, 12)  # one step per view of each chunk
    assert len(torch.unique(scene.means, dim=0)) == len(scene)
    assert scene.means[:, 0].min() >= -4.0 and scene.means[:, 0].max() <= 8.0  # world frame: both chunks
    again = stage(world)
    assert torch.equal(scene.colors, again.colors) and torch.equal(scene.means, again.means)
    # One chunk alone is in its own frame and smaller than the world.
    one = stage.chunk(world[ChunkIndex(1, 0)])
    assert len(one) < len(scene) and one.means[:, 0].max() <= 4.0


class SpyImageStage:
    """Stands in for MultiViewStage: records which chunk was generated alone and which extrapolated from what."""

    def __init__(self):
        self.calls = []

    def __call__(self, views, description, layout, seed=0, step_callback=None):
        self.calls.append(("alone", views, None, None))
        return MultiViewImages(np.full((6, 28, 50, 3), len(self.calls), np.uint8), views.rig)

    def extrapolate(self, views, description, layout, reference, T_ref_new, seed=0, step_callback=None):
        self.calls.append(("extrapolated", views, reference, T_ref_new))
        return MultiViewImages(np.full((6, 28, 50, 3), len(self.calls), np.uint8), views.rig)


def test_world_images_continue_from_a_generated_neighbour():
    from xscene_core.stages.gaussians import generate_world_images

    world = small_world(3)
    for c in world.chunks.values():
        c.views = type("Views", (), {"rig": c.preview.rig})()
    spy, messages = SpyImageStage(), []
    generate_world_images(world, seed=3, stage=spy, progress=messages.append)
    first, second, third = (world[ChunkIndex(i, 0)] for i in range(3))
    assert [k for k, *_ in spy.calls] == ["alone", "extrapolated", "extrapolated"]
    assert spy.calls[1][2] is first.images and spy.calls[2][2] is second.images  # the west neighbour's views
    assert np.allclose(spy.calls[1][3][:3, 3], [4.0, 0.0, 0.0])  # the new chunk's pose in the reference's frame
    assert [int(c.images.images[0, 0, 0, 0]) for c in (first, second, third)] == [1, 2, 3]
    assert len(messages) == 3 and "extrapolated" in messages[-1]


def test_generated_images_win_over_the_preview():
    world = small_world(1)
    chunk = world[ChunkIndex(0, 0)]
    stage = GaussianStage()
    before = stage.chunk(chunk)
    chunk.images = MultiViewImages(np.full_like(chunk.preview.images, 200), chunk.preview.rig)
    after = stage.chunk(chunk)
    assert not torch.equal(before.colors, after.colors)
    seen = (after.colors - 200 / 255).abs().max(1).values < 1e-6
    assert seen.float().mean() > 0.2


def test_bad_inputs_are_refused():
    stage = GaussianStage()
    with pytest.raises(ValueError, match="no chunks"):
        stage(WorldMap())
    with pytest.raises(ValueError, match="WorldMap or a Chunk"):
        stage.check_inputs("world")
    world = small_world(1)
    chunk = world[ChunkIndex(0, 0)]
    with pytest.raises(ValueError, match="no occupancy"):
        stage.chunk(Chunk(np.eye(4), preview=chunk.preview))
    with pytest.raises(ValueError, match="no views"):
        stage.chunk(Chunk(np.eye(4), occupancy=chunk.occupancy))
    with pytest.raises(ValueError, match="patches_per_edge"):
        GaussianStage(patches_per_edge=0)
    with pytest.raises(ValueError, match="render mode"):
        stage.render(stage.chunk(chunk), chunk.preview.rig, mode="nerf")


def test_interrupt_and_callback_stop():
    world = small_world(1)
    stage = GaussianStage()
    with pytest.raises(GaussiansInterrupted):
        stage(world, step_callback=lambda d, t: d < 3)

    def stop(d, t):
        stage.interrupt()
    with pytest.raises(GaussiansInterrupted):
        stage.chunk(world[ChunkIndex(0, 0)], step_callback=stop)


def test_novel_view_render_and_refinement():
    world = small_world(1)
    stage = GaussianStage(refine_downscale=2)
    scene = stage(world)
    cam = look_camera(np.array([-3.5, -3.0, 3.0]), np.array([1.0, 1.0]), (30, 40), pitch_deg=-30)
    r = stage.render(scene, cam)
    assert r.rgb.shape == (1, 30, 40, 3) and r.rgb.dtype == np.uint8
    assert r.depth.shape == (1, 30, 40) and r.semantic.shape == (1, 30, 40)
    hit = r.depth > 0
    assert hit.mean() > 0.3 and (r.semantic[hit] != semantics.FREE).all() and (r.semantic[~hit] == semantics.FREE).all()
    s = stage.render(scene, cam, mode="splat")
    assert s.rgb.shape == r.rgb.shape and ((s.semantic == r.semantic).mean() > 0.8)
    refined = stage(world, refine_steps=1)
    assert torch.equal(refined.means, scene.means) and not torch.equal(refined.colors, scene.colors)


@pytest.mark.slow
def test_cli_writes_ply_and_pictures(tmp_path):
    from xscene_core.ops.ply import read_ply
    from xscene_core.stages.gaussians import main

    main(["--out", str(tmp_path), "--size", "2", "--seed", "1", "--novel-size", "180", "320"])
    g = read_ply(tmp_path / "world.ply")
    assert len(g) > 10000
    for name in ("street_rgb.png", "overview_rgb.png", "street_depth.png", "overview_semantic.png"):
        assert (tmp_path / name).exists()
    assert (tmp_path / "views_chunk_0_0.png").exists()


def test_world_images_default_to_the_shipped_image_model():
    from xscene_core.stages.gaussians import generate_world_images, synthetic_world
    from xscene_core.stages.multiview import model_installed

    if not model_installed():
        pytest.skip("no image diffusion checkpoint is installed")
    world = synthetic_world(0, 1, (56, 100))
    chunk = world[ChunkIndex(0, 0)]
    generate_world_images(world, seed=0)
    assert chunk.images is not None and chunk.images.images.shape == (6, 56, 100, 3)
    assert not np.array_equal(chunk.images.images, chunk.preview.images)  # generated, not the preview look
