"""The viewer's lane handles (a real viser server, no browser): selecting a lane shows handles on its ends
and middle, and dragging one reports the lane point and its new world position."""

from __future__ import annotations

import numpy as np

from app.viewer import Selection, Viewer, ViewerCallbacks
from xscene_core.types.layout import Lane, Layout
from xscene_core.types.world import Chunk, ChunkIndex, WorldMap


def test_lane_handles_follow_the_selection_and_report_drags():
    bent = []
    cb = ViewerCallbacks(lambda *a: None, lambda *a: None, lambda *a: None, lambda *a: bent.append(a))
    viewer = Viewer(cb, port=8400)
    try:
        world = WorldMap(40.0)
        index = ChunkIndex(1, 0)
        lane = Lane(np.c_[np.linspace(-20.0, 20.0, 9), np.full(9, 2.0)])
        world.add(index, Chunk(world.pose_of(index), layout=Layout(lanes=(lane,))))
        viewer.show(world, {}, Selection(index))
        assert viewer._lane_handles == {}
        viewer.show(world, {}, Selection(index, None, 0))
        assert sorted(viewer._lane_handles) == [0, 4, 8]
        assert np.allclose(viewer._lane_handles[4].position, [40.0, 2.0, 0.3])  # chunk (1, 0) sits at x = 40 m
        viewer._lane_handles[8].position = (62.0, 5.0, 0.3)
        viewer._lane_handle_moved(8)
        assert bent == [(index, 0, 8, (62.0, 5.0, 0.3))]
        viewer.show(world, {}, Selection(index, 0))  # a box selected instead: the handles go
        assert viewer._lane_handles == {}
    finally:
        viewer.close()


def test_the_viewer_address_falls_back_to_the_local_port_without_a_share_link():
    viewer = Viewer(ViewerCallbacks(lambda *a: None, lambda *a: None, lambda *a: None), port=8420, share=False)
    try:
        assert viewer.share_url is None
        assert viewer.url("example.org") == f"http://example.org:{viewer.port}/"
        viewer.share_url = "https://abc.share.viser.studio"  # what the relay answers when it can be reached
        assert viewer.url("example.org") == "https://abc.share.viser.studio"
    finally:
        viewer.close()
