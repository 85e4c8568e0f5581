import numpy as np
import pytest

from xscene_core.ops.lane_edit import arc_length, bend_lane, lane_handles
from xscene_core.types.layout import Lane


def straight(n=41, length=40.0):
    return Lane(np.c_[np.linspace(0.0, length, n), np.zeros(n)], lane_id="a")


def test_the_dragged_point_moves_fully_far_points_stay_and_the_line_stays_smooth():
    lane = straight()
    bent = bend_lane(lane, 20, (0.0, 3.0), reach=10.0)
    assert np.allclose(bent.points[20], [20.0, 3.0])
    assert np.allclose(bent.points[:10], lane.points[:10]) and np.allclose(bent.points[31:], lane.points[31:])
    assert np.allclose(bent.points[:, 0], lane.points[:, 0])      # a sideways drag moves points sideways only
    dy = bent.points[:, 1]
    assert np.all(np.diff(dy[10:21]) >= 0) and np.all(np.diff(dy[20:31]) <= 0)  # rises to the anchor, falls after
    assert np.abs(np.diff(dy)).max() < 0.6                        # no jump between neighbouring points
    assert bent.lane_id == "a" and bent.turn == lane.turn


def test_handles_are_the_ends_and_the_middle():
    assert lane_handles(straight()) == [0, 20, 40]
    assert lane_handles(Lane(np.array([[0.0, 0.0], [1.0, 0.0]]))) == [0, 1]
    assert np.isclose(arc_length(straight().points)[-1], 40.0)


def test_bad_anchor_or_reach_is_refused():
    with pytest.raises(ValueError, match="anchor 41"):
        bend_lane(straight(), 41, (1.0, 0.0))
    with pytest.raises(ValueError, match="reach"):
        bend_lane(straight(), 0, (1.0, 0.0), reach=0.0)
