"""Light fixtures in the condition: street lamps and vehicle lights come from the layout (not a look seed),
the condition marks them where a camera sees them, and the night preview lights them at those marks."""

import math

import numpy as np
import pytest

from xscene_core.models.image_condition import AREA_KINDS, view_condition_arrays
from xscene_core.ops.condition_maps import perspective_maps
from xscene_core.ops.street_lights import (LAMP_OFFSET, LAMP_SPACING, LIGHT_KINDS, LightFixtures, fixture_masks,
                                           street_lamps, vehicle_lights)
from xscene_core.stages.render import default_rig
from xscene_core.types.layout import Box, Layout, MapLine

EDGE = MapLine(np.array([[0.0, 6.0], [60.0, 6.0]]), "road_edge")
ORIGIN = np.zeros((1, 3))
LAMP = LIGHT_KINDS.index("street_lamp")


def _car(x: float, yaw: float, state: str = "moving") -> Box:
    return Box((x, 0.0, 0.9), (4.5, 1.9, 1.6), yaw, 4, state)  # 4: car


def test_lamps_stand_along_the_road_edge_every_spacing_and_do_not_depend_on_a_seed():
    lamps = street_lamps(Layout(lines=(EDGE,)), ORIGIN)
    np.testing.assert_allclose(lamps[:, 0], LAMP_OFFSET + LAMP_SPACING * np.arange(len(lamps)), atol=1.0)
    np.testing.assert_allclose(lamps[:, 1], 6.0)
    assert len(lamps) == 2, "the third lamp (65 m) lies past the edge's end"
    far = street_lamps(Layout(lines=(EDGE,)), np.array([[300.0, 0.0, 0.0]]))
    assert len(far) == 0, "lamps out of every camera's range are left out"
    lanes = Layout(lines=(MapLine(EDGE.points, "lane_divider"),))
    assert len(street_lamps(lanes, ORIGIN)) == 0, "only road edges carry lamps"


def test_moving_vehicles_carry_head_lights_ahead_and_tail_lights_behind_parked_ones_none():
    lights = vehicle_lights(Layout(boxes=(_car(10.0, math.pi / 2), _car(20.0, 0.0, "parked"))))
    head, tail = lights.of_kind("head_light"), lights.of_kind("tail_light")
    assert len(head) == 2 and len(tail) == 2
    np.testing.assert_allclose(head[:, 1], 2.25, atol=1e-5)  # facing +y: the front is at y = +l / 2
    np.testing.assert_allclose(tail[:, 1], -2.25, atol=1e-5)
    np.testing.assert_allclose(sorted(head[:, 0]), [10.0 - 0.38 * 1.9, 10.0 + 0.38 * 1.9], atol=1e-5)


def test_a_lamp_ahead_is_marked_where_it_projects_unless_a_wall_stands_in_front():
    rig = default_rig((56, 100))
    front = rig.names.index("CAM_FRONT")
    lamp = LightFixtures(np.array([[20.0, 0.0, 6.5]], np.float32), np.array([LAMP]))
    c = np.linalg.inv(rig.T_world_cam(front)) @ np.array([20.0, 0.0, 6.5, 1.0])
    K = rig.cameras[front].K
    row, col = int(K[1, 1] * c[1] / c[2] + K[1, 2]), int(K[0, 0] * c[0] / c[2] + K[0, 2])
    open_sky = np.zeros((6, 56, 100), np.float32)
    marks = fixture_masks(lamp, rig, open_sky)
    assert marks[front, LAMP, row, col] and marks[front, LAMP].sum() <= 16, "a small disc at the lamp"
    assert not marks[:, 1:].any() and not np.delete(marks, front, 0).any()
    wall = np.full((6, 56, 100), 8.0, np.float32)  # a surface 8 m away hides a lamp 20 m away
    assert not fixture_masks(lamp, rig, wall).any()
    beyond = np.full((6, 56, 100), 40.0, np.float32)
    assert fixture_masks(lamp, rig, beyond)[front, LAMP].any()
    with pytest.raises(ValueError, match="depth must be"):
        fixture_masks(lamp, rig, open_sky[:, :28])


def test_the_condition_marks_the_tail_lights_of_a_car_ahead_and_its_own_body_hides_the_head_lights():
    rig = default_rig((112, 200))
    layout = Layout(boxes=(_car(15.0, 0.0),))  # driving away from the front camera
    depth = perspective_maps(layout, rig).box_depth  # the car's own faces stand for the render
    arrays = view_condition_arrays(np.zeros((6, 112, 200), np.uint8), depth, layout, rig, (56, 100))
    front = rig.names.index("CAM_FRONT")
    tail, head = (arrays.areas[front, AREA_KINDS.index(k)] for k in ("tail_light", "head_light"))
    assert tail.any() and not head.any()
    facing = Layout(boxes=(_car(15.0, math.pi),))
    arrays = view_condition_arrays(np.zeros((6, 112, 200), np.uint8), perspective_maps(facing, rig).box_depth,
                                   facing, rig, (56, 100))
    assert arrays.areas[front, AREA_KINDS.index("head_light")].any()
    assert not arrays.areas[front, AREA_KINDS.index("tail_light")].any()


def test_the_night_preview_lights_the_lamps_and_vehicle_lights_the_condition_marks():
    """The preview look and the condition read one set of fixtures: the night look is far brighter on the
    marks than around them, whatever its seed."""
    from xscene_core.data.image_dataset import location_chunk, render_looks
    from xscene_core.data.world import Style, SyntheticWorld

    _, chunk = location_chunk(SyntheticWorld(7), 0, Style("night", "sunny"))
    size = (64, 112)
    sem, depth, looks = render_looks(chunk, size, [1, 2])
    arrays = view_condition_arrays(sem, depth, chunk.layout, default_rig((2 * size[0], 2 * size[1])), size)
    lamps = arrays.areas[:, AREA_KINDS.index("street_lamp")] > 100
    assert lamps.sum() >= 2
    for look in looks:
        luma = look.astype(np.float32).mean(-1)
        assert luma[lamps].mean() > 4 * luma[~lamps].mean()


@pytest.mark.parametrize("scale", [2, 4])
def test_a_far_lamp_covers_most_of_a_condition_pixel_whatever_the_render_scale(scale):
    """A lamp 40 m ahead is far smaller than a condition pixel; its mark is widened to about one condition
    pixel (not one render pixel), so after area-averaging it still reads as a light, at any render size."""
    size = (32, 56)
    rig = default_rig((size[0] * scale, size[1] * scale))
    edge = Layout(lines=(MapLine(np.array([[30.0, 4.0], [50.0, 4.0]]), "road_edge"),))  # one lamp, 43 m ahead
    assert len(street_lamps(edge, ORIGIN)) == 1
    H, W = size[0] * scale, size[1] * scale
    arrays = view_condition_arrays(np.zeros((6, H, W), np.uint8), np.zeros((6, H, W), np.float32), edge, rig, size)
    lamp = arrays.areas[rig.names.index("CAM_FRONT"), AREA_KINDS.index("street_lamp")]
    assert lamp.max() >= 0.75 * 255, "the brightest cell of a far lamp's mark is mostly covered"
    assert (lamp > 0).sum() <= 9, "and the mark stays a few cells wide"
