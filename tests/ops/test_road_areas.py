"""Road areas derived from lanes: drivable surface, dividers, kerbs and sidewalks."""

import numpy as np

from xscene_core.data.world import SyntheticWorld
from xscene_core.ops.condition_maps import bev_layout_map
from xscene_core.ops.road_areas import complete_road_map, road_map_from_lanes
from xscene_core.types.layout import Lane, Layout, MapPolygon


def two_way_road(lanes_per_side=2):
    out = []
    for k in range(lanes_per_side):
        y = 1.75 + 3.5 * k
        out.append(Lane(np.array([[-40.0, -y], [40.0, -y]]), lane_id=f"e{k}"))   # eastbound, right-hand traffic
        out.append(Lane(np.array([[40.0, y], [-40.0, y]]), lane_id=f"w{k}"))
    return out


def test_straight_two_way_road():
    polygons, lines = road_map_from_lanes(two_way_road())
    layout = Layout(lanes=tuple(two_way_road()), polygons=tuple(polygons), lines=tuple(lines))
    bev = bev_layout_map(layout)
    ys = bev.grid.axis_centers(1)
    drivable = bev.channel("drivable")[100] >= 0.5
    assert drivable[np.abs(ys) < 6.8].all() and not drivable[np.abs(ys) > 7.3].any()
    sidewalk = bev.channel("sidewalk")[100] >= 0.5
    assert sidewalk[(np.abs(ys) > 7.4) & (np.abs(ys) < 10.2)].all() and not sidewalk[np.abs(ys) < 7.0].any()
    kinds = [l.kind for l in lines]
    assert kinds.count("road_divider") >= 1 and kinds.count("lane_divider") == 2 and kinds.count("road_edge") == 2
    divider = [l for l in lines if l.kind == "road_divider"][0]
    assert np.allclose(divider.points[:, 1], 0.0, atol=1e-6)


def test_no_sidewalks_and_connectors():
    polygons, lines = road_map_from_lanes(two_way_road(1), sidewalks=False)
    assert {p.kind for p in polygons} == {"drivable"} and any(l.kind == "road_edge" for l in lines)
    connector = Lane(np.array([[0.0, 0.0], [5.0, 5.0], [5.0, 20.0]]), "left", "c", connector=True)
    polygons, lines = road_map_from_lanes([connector])
    assert [p.kind for p in polygons] == ["drivable"] and lines == []


def test_complete_keeps_real_areas_and_matches_the_world():
    w = SyntheticWorld(5)
    chunk = w.chunk(*w.find_location("suburban"))
    assert complete_road_map(chunk.layout) is chunk.layout  # already has areas
    derived = complete_road_map(Layout(lanes=chunk.layout.lanes))
    real = bev_layout_map(chunk.layout).channel("drivable") >= 0.5
    ours = bev_layout_map(derived).channel("drivable") >= 0.5
    assert (real & ours).sum() / (real | ours).sum() > 0.7  # parking areas and junction corners are not lanes
    forced = complete_road_map(chunk.layout, force=True)
    assert not any(p.kind == "parking" for p in forced.polygons) and forced.boxes == chunk.layout.boxes
    empty = Layout(polygons=(MapPolygon(np.array([[0.0, 0], [1, 0], [1, 1]]), "drivable"),))
    assert complete_road_map(empty) is empty
