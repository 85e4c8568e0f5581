"""Overview pictures: BEV image and raised oblique view of one occupancy or a world of chunks."""

import numpy as np

from xscene_core import semantics
from xscene_core.ops.geometry import pose_matrix
from xscene_core.ops.overview import BACKGROUND, bev_image, oblique_view
from xscene_core.types import Chunk, ChunkIndex, GridSpec, Occupancy, WorldMap

ID = semantics.ID
GRID = GridSpec((40, 40, 8), 0.5, (-10.0, -10.0, -1.0))


def block_scene() -> Occupancy:
    labels = np.full(GRID.shape, semantics.FREE, np.uint8)
    labels[:, :, 0:2] = ID["driveable_surface"]
    labels[25:35, 5:15, 2:8] = ID["manmade"]  # a building in the +x, -y corner
    return Occupancy(labels, GRID)


def test_bev_image_is_north_up_in_class_colours():
    img = bev_image(block_scene(), pixels_per_metre=2.0)
    assert img.shape == (40, 40, 3) and img.dtype == np.uint8
    # Rows run from +y to -y and columns from -x to +x: the building is in the lower right.
    building = img[25:35, 25:35].reshape(-1, 3).mean(0)
    road = img[5:15, 5:15].reshape(-1, 3).mean(0)
    assert np.allclose(building / building.max(), semantics.COLORS[ID["manmade"]] / 250.0, atol=0.1)
    assert road[0] > road[1] and road[2] > road[1]  # magenta driveable surface
    # Higher voxels are drawn brighter.
    assert building.mean() > road.mean() * 0.9


def test_bev_of_a_world_places_chunks_by_their_pose():
    world = WorldMap(stride=20.0)
    for i in (0, 1):
        world.add(ChunkIndex(i, 0), Chunk(world.pose_of(ChunkIndex(i, 0)), block_scene()))
    img = bev_image(world, pixels_per_metre=2.0)
    assert img.shape == (40, 80, 3)
    # Both copies of the building appear, 20 m = 40 px apart.
    assert np.array_equal(img[25:35, 25:35], img[25:35, 65:75])
    one = bev_image(Chunk(pose_matrix(100.0, 0.0, np.pi / 2), block_scene()), pixels_per_metre=2.0)
    assert one.shape == (40, 40, 3) and not np.array_equal(one, bev_image(block_scene(), 2.0))


def test_oblique_view_shows_the_scene_on_a_background():
    img = oblique_view(block_scene(), image_size=(60, 100))
    assert img.shape == (60, 100, 3) and img.dtype == np.uint8
    background = (np.abs(img.astype(int) - np.array(BACKGROUND)).sum(-1) < 60)
    assert 0.05 < background.mean() < 0.9  # the scene fills the middle of the picture
    assert np.array_equal(img, oblique_view(block_scene(), image_size=(60, 100)))
