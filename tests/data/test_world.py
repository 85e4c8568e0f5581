"""The synthetic world: determinism, seamlessness, physical plausibility and its text products."""

import math
from collections import Counter

import numpy as np
import pytest

from xscene_core import semantics
from xscene_core.data.world import Style, SyntheticWorld
from xscene_core.ops.clip import clip_polyline, polygons_overlap, rect_corners
from xscene_core.scene_graph_text import emit, parse
from xscene_core.types.scene import DESCRIPTION_KEYS, ENVIRONMENTS, SceneDescription

GROUND = set(semantics.GROUND_IDS)
VEHICLES = set(semantics.VEHICLE_IDS)


@pytest.fixture(scope="module")
def world():
    return SyntheticWorld(7)


@pytest.fixture(scope="module")
def downtown(world):
    x, y = world.find_location("downtown", junction=True)
    return world.chunk(x, y), (x, y)


def test_same_seed_same_chunk(downtown):
    chunk, (x, y) = downtown
    again = SyntheticWorld(7).chunk(x, y)
    assert np.array_equal(chunk.occupancy.labels, again.occupancy.labels)
    assert chunk.layout.to_dict() == again.layout.to_dict()
    assert emit(chunk.graph) == emit(again.graph)
    assert chunk.description == again.description


def test_other_seed_other_world(downtown):
    chunk, (x, y) = downtown
    other = SyntheticWorld(8).chunk(x, y)
    assert (chunk.occupancy.labels != other.occupancy.labels).mean() > 0.05


@pytest.mark.parametrize("offset", [(40.0, 0.0), (12.4, -27.6), (-20.4, 39.2)])
def test_overlapping_chunks_agree(world, downtown, offset):
    a, (x, y) = downtown
    b = world.chunk(x + offset[0], y + offset[1])
    g = world.grid
    di, dj = (int(round(o / g.voxel_size)) for o in offset)
    nx, ny = g.shape[0] - abs(di), g.shape[1] - abs(dj)
    sa = a.occupancy.labels[max(di, 0):max(di, 0) + nx, max(dj, 0):max(dj, 0) + ny]
    sb = b.occupancy.labels[max(-di, 0):max(-di, 0) + nx, max(-dj, 0):max(-dj, 0) + ny]
    assert sa.shape == sb.shape and np.array_equal(sa, sb)

    # the same objects, at the same world poses, in the shared region
    lo = np.array([x, y]) + np.maximum(0, offset) - 40
    hi = np.array([x, y]) + np.minimum(0, offset) + 40

    def world_boxes(chunk):
        boxes = chunk.layout.transformed(chunk.T_world_chunk).boxes
        inside = lambda b: np.all((rect_corners(b.center, b.size, b.yaw) > lo) & (rect_corners(b.center, b.size, b.yaw) < hi))
        return {b.track_id: b for b in boxes if inside(b)}

    ba, bb = world_boxes(a), world_boxes(b)
    assert ba.keys() == bb.keys() and len(ba) > 0
    for k in ba:
        assert np.allclose(ba[k].as_vector(), bb[k].as_vector(), atol=1e-6)
        assert (ba[k].label, ba[k].state, ba[k].color) == (bb[k].label, bb[k].state, bb[k].color)

    # lanes clipped to the shared region coincide
    def world_lanes(chunk):
        out = {}
        for lane in chunk.layout.transformed(chunk.T_world_chunk).lanes:
            for i, part in enumerate(clip_polyline(lane.points, lo + 1e-3, hi - 1e-3)):
                out[(lane.lane_id.split("#")[0], round(part[0, 0], 2), round(part[0, 1], 2))] = part
        return out

    la, lb = world_lanes(a), world_lanes(b)
    assert la.keys() == lb.keys()
    for k in la:
        assert np.allclose(la[k], lb[k], atol=1e-4)


def test_point_query_matches_rotated_chunk(world, downtown):
    _, (x, y) = downtown
    chunk = world.chunk(x + 3.3, y - 7.1, yaw=0.7)
    g = world.grid
    rng = np.random.default_rng(0)
    idx = rng.integers(0, g.shape, size=(3000, 3))
    local = g.centers()[idx[:, 0], idx[:, 1], idx[:, 2]]
    T = chunk.T_world_chunk
    pts = local @ T[:3, :3].T + T[:3, 3]
    assert np.array_equal(world.labels_at(pts), chunk.occupancy.labels[idx[:, 0], idx[:, 1], idx[:, 2]])


def _inside_grid(box, grid):
    c = rect_corners(box.center, box.size, box.yaw)
    return (c.min(0) > np.array(grid.lower[:2])).all() and (c.max(0) < np.array(grid.upper[:2])).all()


def _sample_chunks(n, seed0=100):
    out = []
    k = 0
    while len(out) < n:
        world = SyntheticWorld(seed0 + k // len(ENVIRONMENTS))
        env = ENVIRONMENTS[k % len(ENVIRONMENTS)]
        x, y = world.find_location(env, start=k)
        out.append((env, world.chunk(x, y)))
        k += 1
    return out


@pytest.fixture(scope="module")
def many_chunks():
    return _sample_chunks(50)


def test_boxes_are_filled_with_their_class_and_do_not_overlap(many_chunks):
    checked = 0
    for _, chunk in many_chunks[:18]:
        occ, layout = chunk.occupancy, chunk.layout
        centres = occ.grid.centers()
        boxes = layout.boxes
        for i, b in enumerate(boxes):
            ci = rect_corners(b.center, b.size, b.yaw)
            for o in boxes[i + 1:]:
                assert not polygons_overlap(ci, rect_corners(o.center, o.size, o.yaw)), (b.track_id, o.track_id)
            if not _inside_grid(b, occ.grid):
                continue
            (x0, y0, z0), _ = occ.grid.index_of(np.array(b.center) - max(b.size))
            (x1, y1, z1), _ = occ.grid.index_of(np.array(b.center) + max(b.size))
            sub = centres[x0:x1 + 1, y0:y1 + 1, z0:z1 + 1]
            inside = b.contains(sub)
            assert inside.any(), f"{b.track_id} holds no voxel"
            assert (occ.labels[x0:x1 + 1, y0:y1 + 1, z0:z1 + 1][inside] == b.label).all(), b.track_id
            checked += 1
    assert checked > 100


def _ground_under(occ, x, y):
    (i, j, _), ok = occ.grid.index_of(np.array([x, y, 0.0]))
    col = occ.labels[i, j]
    ground = [l for l in col if l in GROUND]
    return ground[-1] if ground else None


def test_vehicles_on_road_and_pedestrians_on_sidewalks_or_crosswalks(many_chunks):
    n_veh = n_ped = 0
    for _, chunk in many_chunks:
        occ = chunk.occupancy
        for b in chunk.layout.boxes:
            if not _inside_grid(b, occ.grid):
                continue
            under = [_ground_under(occ, *p) for p in rect_corners(b.center, b.size, b.yaw) * 0.8 + np.array(b.center[:2]) * 0.2]
            if b.label in VEHICLES and b.state != "parked" or b.label == semantics.ID["car"]:
                assert all(u == semantics.ID["driveable_surface"] for u in under), (b.track_id, under)
                n_veh += 1
            if b.label == semantics.ID["pedestrian"]:
                u = _ground_under(occ, *b.center[:2])
                want = semantics.ID["driveable_surface"] if b.state == "crossing" else semantics.ID["sidewalk"]
                assert u == want, (b.track_id, b.state, u)
                n_ped += 1
    assert n_veh > 100 and n_ped > 20


def test_moving_vehicles_follow_their_lanes(many_chunks):
    aligned = total = 0
    for _, chunk in many_chunks[:20]:
        lanes = [l for l in chunk.layout.lanes if not l.connector]
        for b in chunk.layout.boxes:
            if b.state != "moving" or b.label not in VEHICLES or not lanes:
                continue
            p = np.array(b.center[:2])
            best = None
            for lane in lanes:
                d = np.hypot(*(lane.points - p).T)
                k = int(d.argmin())
                if best is None or d[k] < best[0]:
                    seg = lane.points[min(k + 1, len(d) - 1)] - lane.points[max(k - 1, 0)]
                    best = (d[k], math.atan2(seg[1], seg[0]))
            if best[0] < 2.5:
                total += 1
                diff = abs((b.yaw - best[1] + math.pi) % (2 * math.pi) - math.pi)
                aligned += diff < math.radians(25)
    assert total > 50 and aligned / total > 0.97


def test_sizes_are_nuscenes_like(many_chunks):
    for _, chunk in many_chunks:
        for b in chunk.layout.boxes:
            assert semantics.SIZES[b.label].contains(b.size), (b.class_name, b.size)


def test_class_frequencies_and_environments(many_chunks):
    counts = sum(c.occupancy.class_counts() for _, c in many_chunks)
    free = counts[semantics.FREE]
    ground = counts[list(semantics.GROUND_IDS)].sum()
    objects = counts[list(semantics.OBJECT_IDS)].sum()
    assert free > 3 * ground > 3 * objects > 0
    assert {env for env, _ in many_chunks} == set(ENVIRONMENTS)
    assert {c.description.environment for _, c in many_chunks} >= {"downtown", "suburban", "rural", "industrial", "residential"}
    present = {b.label for _, c in many_chunks for b in c.layout.boxes}
    assert present == set(semantics.OBJECT_IDS), sorted(set(semantics.OBJECT_IDS) - present)


def test_layout_has_map_elements(downtown):
    chunk, _ = downtown
    kinds = Counter(p.kind for p in chunk.layout.polygons)
    assert kinds["crosswalk"] > 0 and kinds["sidewalk"] > 0 and kinds["intersection"] > 0
    assert {l.kind for l in chunk.layout.lines} >= {"lane_divider", "road_divider", "road_edge", "stop_line"}
    assert {l.turn for l in chunk.layout.lanes} == {"straight", "left", "right"}
    for lane in chunk.layout.lanes:  # clipped to the chunk
        assert (np.abs(lane.points) <= 40 + 1e-6).all()


def test_graph_and_description_round_trip(many_chunks):
    for _, chunk in many_chunks[:12]:
        assert parse(emit(chunk.graph)) == chunk.graph
        d = chunk.description.to_json_dict()
        assert list(d) == list(DESCRIPTION_KEYS)
        assert SceneDescription.from_json_dict(d) == chunk.description
        assert chunk.description.environment in ENVIRONMENTS


def test_style_override_and_bad_input():
    w = SyntheticWorld(3, style=Style("night", "rainy"))
    x, y = w.find_location("suburban")
    d = w.chunk(x, y).description
    assert (d.time_of_day, d.weather) == ("night", "rainy")
    with pytest.raises(ValueError, match="time_of_day"):
        Style("midnight", "rainy")
    with pytest.raises(ValueError, match="finite"):
        w.chunk(float("nan"), 0.0)
    with pytest.raises(ValueError, match="unknown environment"):
        w.find_location("moon")
