"""Layout -> BEV layout map and perspective maps."""

import numpy as np
import pytest

from xscene_core import semantics
from xscene_core.ops.condition_maps import (
    BEV_CHANNELS, PERSPECTIVE_LINE_KINDS, ROAD_SURFACE_Z, bev_layout_map, perspective_maps,
)
from xscene_core.types import Box, Camera, CameraRig, GridSpec, Lane, Layout, MapLine, MapPolygon

R_EGO_CAM = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


def street_layout() -> Layout:
    car = Box((10.0, -1.75, ROAD_SURFACE_Z + 0.75), (4.5, 1.9, 1.5), 0.0, semantics.ID["car"], "parked", "car0", "red")
    cone = Box((5.1, 3.3, ROAD_SURFACE_Z + 0.35), (0.45, 0.45, 0.7), 0.0, semantics.ID["traffic_cone"])
    return Layout(
        boxes=(car, cone),
        lanes=(Lane(np.array([[-40.0, -1.75], [40.0, -1.75]])),),
        lines=(MapLine(np.array([[-40.0, 0.0], [40.0, 0.0]]), "road_divider"),
               MapLine(np.array([[-40.0, 3.5], [40.0, 3.5]]), "lane_divider")),
        polygons=(MapPolygon(np.array([[-40, -7], [40, -7], [40, 7], [-40, 7]]), "drivable"),
                  MapPolygon(np.array([[15, -7], [19, -7], [19, 7], [15, 7]]), "crosswalk"),
                  MapPolygon(np.array([[-40, 7], [40, 7], [40, 10], [-40, 10]]), "sidewalk")),
    )


def test_bev_map_channels_land_on_the_right_cells():
    grid = GridSpec()
    m = bev_layout_map(street_layout(), grid)
    assert m.channels.shape == (len(BEV_CHANNELS), 200, 200) and m.channels.dtype == np.float32
    assert 0 <= m.channels.min() and m.channels.max() <= 1
    cell = lambda x, y: tuple(grid.index_of(np.array([x, y, 0.0]))[0][:2])  # noqa: E731
    drivable = m.channel("drivable")
    assert drivable[cell(0.0, 0.0)] == 1 and drivable[cell(0.0, 8.5)] == 0
    # The road spans |y| < 7 m = 35 cells on each side of the centre line, 200 cells long.
    assert drivable.sum() == pytest.approx(200 * 35, abs=1)
    assert m.channel("sidewalk")[cell(0.0, 8.5)] == 1
    assert m.channel("crosswalk")[cell(17.0, 0.0)] == 1 and m.channel("crosswalk")[cell(10.0, 0.0)] == 0
    assert m.channel("road_divider")[cell(3.0, 0.1)] == 1 and m.channel("lane_divider")[cell(3.0, 3.5)] == 1
    car = m.channel("car")
    # 4.5 x 1.9 m car = 11.25 x 4.75 cells of 0.4 m.
    assert car.sum() == pytest.approx(4.5 * 1.9 / 0.16, rel=0.05)
    assert car[cell(10.0, -1.75)] == 1 and car[cell(13.0, -1.75)] == 0
    # A cone narrower than a cell still marks its cell.
    assert m.channel("traffic_cone")[cell(5.1, 3.3)] == 1
    assert m.channel("bus").sum() == 0
    with pytest.raises(ValueError, match="no channel"):
        m.channel("lamp_post")
    assert m.to_rgb().shape == (200, 200, 3)


def forward_rig(height=60, width=100, f=60.0):
    T = np.eye(4)
    T[:3, :3] = R_EGO_CAM
    T[:3, 3] = (0.0, 0.0, 1.5)
    K = np.array([[f, 0, width / 2 - 0.3], [0, f, height / 2 + 0.2], [0, 0, 1]])
    return CameraRig((Camera("CAM_FRONT", K, T, height, width),))


def test_perspective_maps_project_boxes_and_lines_where_the_camera_sees_them():
    rig = forward_rig()
    maps = perspective_maps(street_layout(), rig)
    H, W = 60, 100
    assert maps.box_class.shape == (1, H, W) and maps.lines.shape == (1, len(PERSPECTIVE_LINE_KINDS), H, W)
    # The car's centre (10, -1.75, 0.95) projects to u = 50 - 0.3 + 60 * 1.75 / 10 = 60.2, v = 30.2 + 60 * 0.55 / 10 = 33.5.
    assert maps.box_class[0, 33, 60] == semantics.ID["car"]
    # Its rear face is at x = 7.75 m: that is the depth the camera sees there.
    assert maps.box_depth[0, 33, 60] == pytest.approx(7.75, abs=1e-4)
    assert (maps.box_edges[0] == semantics.ID["car"]).sum() > 20
    # The road divider runs straight ahead on the road at y = 0: column ~50 below the horizon.
    divider = maps.lines[0, PERSPECTIVE_LINE_KINDS.index("road_divider")]
    rows = np.nonzero(divider.any(1))[0]
    assert rows.min() >= 30 and divider[45:, 48:52].any(1).all()
    assert not maps.lines[0, PERSPECTIVE_LINE_KINDS.index("stop_line")].any()
    stack, names = maps.channels()
    assert stack.shape == (1, len(names), H, W) and stack.dtype == np.float32
    assert maps.to_rgb().shape == (1, H, W, 3)


def test_perspective_maps_of_an_empty_layout_are_empty_and_behind_camera_items_are_dropped():
    rig = forward_rig()
    empty = perspective_maps(Layout(), rig)
    assert (empty.box_class == semantics.FREE).all() and not empty.lines.any()
    behind = Layout(boxes=(Box((-10.0, 0.0, 1.0), (4.0, 2.0, 1.5), 0.0, semantics.ID["car"]),),
                    lines=(MapLine(np.array([[-30.0, 1.0], [-5.0, 1.0]]), "lane_divider"),))
    m = perspective_maps(behind, rig)
    assert (m.box_class == semantics.FREE).all() and (m.box_edges == semantics.FREE).all() and not m.lines.any()
