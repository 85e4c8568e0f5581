"""What an edit changed, and how far each BEV cell is from it."""

from dataclasses import replace

import numpy as np

from xscene_core import semantics
from xscene_core.ops.layout_diff import change_distance, change_mask, layout_change
from xscene_core.types.layout import Box, Lane, Layout
from xscene_core.types.occupancy import GridSpec

CAR = Box((10.0, 0.0, 0.9), (4.0, 2.0, 1.6), 0.0, semantics.ID["car"], "parked", "car_0")
PED = Box((-20.0, 5.0, 1.0), (0.8, 0.8, 1.7), 0.0, semantics.ID["pedestrian"], "walking", "ped_0")


def test_change_of_moved_added_removed_boxes_and_lanes():
    old = Layout(boxes=(CAR, PED))
    assert layout_change(old, old).empty
    moved = replace(CAR, center=(16.0, 0.0, 0.9))
    ch = layout_change(old, Layout(boxes=(moved, PED)))
    assert ch.removed == (CAR,) and ch.added == (moved,) and not ch.lanes
    ch = layout_change(old, Layout(boxes=(CAR,)))
    assert ch.removed == (PED,) and ch.added == ()
    lane = Lane(np.array([[-40.0, 0.0], [40.0, 0.0]]))
    ch = layout_change(old, Layout(boxes=(CAR, PED), lanes=(lane,)))
    assert ch.lanes == (lane,) and not ch.boxes


def test_distance_is_zero_on_the_change_and_metric_elsewhere():
    grid = GridSpec()
    ch = layout_change(Layout(boxes=(CAR, PED)), Layout(boxes=(PED,)))
    mask = change_mask(ch, grid)
    assert mask.sum() == 10 * 5  # a 4 x 2 m footprint on 0.4 m cells
    d = change_distance(ch, grid)
    (i, j, _), _ = grid.index_of(np.array([10.0, 0.0, 0.0]))
    assert d[i, j] == 0
    (i, j, _), _ = grid.index_of(np.array([10.0, 11.0, 0.0]))
    assert 9.5 < d[i, j] < 10.5
    assert np.isinf(change_distance(layout_change(Layout(), Layout()), grid)).all()


def test_a_repainted_box_is_no_change_of_the_geometry():
    car = Box((5.0, 2.0, 0.8), (4.5, 1.9, 1.6), 0.0, semantics.ID["car"], "parked", "car_0", "white")
    old = Layout(boxes=(car,))
    change = layout_change(old, Layout(boxes=(replace(car, color="red"),)))
    assert not change.removed and not change.added
    moved = layout_change(old, Layout(boxes=(replace(car, center=(6.0, 2.0, 0.8), color="red"),)))
    assert len(moved.removed) == len(moved.added) == 1
