"""Behaviour of the dataclasses in xscene_core.types and of the class table in xscene_core.semantics."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from xscene_core import semantics
from xscene_core.ops.geometry import invert_rigid, pose_matrix
from xscene_core.types import (
    CAMERA_NAMES, AreaNode, Box, Camera, CameraRig, Chunk, ChunkIndex, GaussianScene, GridSpec, Lane, LaneNode,
    Layout, MapLine, MapPolygon, MultiViewImages, ObjectNode, Occupancy, Relation, RenderedViews,
    SceneDescription, SceneGraph, Triplane, WorldMap,
)
from xscene_core.types.scene import DESCRIPTION_KEYS

NAN = float("nan")
CAR, PED = semantics.ID["car"], semantics.ID["pedestrian"]


# Small valid building blocks ---------------------------------------------------------------------------

def small_rig(views: int = 2, height: int = 4, width: int = 6) -> CameraRig:
    K = [[5.0, 0, width / 2], [0, 5.0, height / 2], [0, 0, 1]]
    return CameraRig(tuple(Camera(f"cam{i}", K, pose_matrix(0, 0, i * math.pi / 2), height, width) for i in range(views)))


def gaussians(n: int = 5, **override) -> GaussianScene:
    fields = dict(means=torch.zeros(n, 3), scales=torch.full((n, 3), 0.1), quats=torch.tensor([[1.0, 0, 0, 0]] * n),
                  opacities=torch.full((n,), 0.5), colors=torch.rand(n, 3, generator=torch.Generator().manual_seed(0)),
                  labels=torch.full((n,), CAR, dtype=torch.uint8))
    fields.update(override)
    return GaussianScene(**fields)


def triplane(c: int = 2, x: int = 5, y: int = 4, z: int = 3) -> Triplane:
    g = torch.Generator().manual_seed(0)
    return Triplane(torch.randn(c, x, y, generator=g), torch.randn(c, x, z, generator=g), torch.randn(c, y, z, generator=g))


def example_layout() -> Layout:
    return Layout(
        boxes=(Box((10.0, -3.5, 0.8), (4.5, 1.9, 1.6), 0.3, CAR, "parked", "car_0", "white"),
               Box((-4.25, 6.0, 0.9), (0.7, 0.6, 1.8), -2.0, PED, "walking", "ped_1")),
        lanes=(Lane(np.array([[-40.0, -1.75], [0.0, -1.75], [40.0, -1.5]]), "straight", "lane_0"),
               Lane(np.array([[0.0, 1.75], [10.0, 5.0], [12.0, 20.0]]), "left", "lane_1", connector=True)),
        lines=(MapLine(np.array([[-40.0, 0.0], [40.0, 0.0]]), "lane_divider"),),
        polygons=(MapPolygon(np.array([[-40.0, -5.0], [40.0, -5.0], [40.0, 5.0], [-40.0, 5.0]]), "drivable"),),
    )


def assert_layouts_close(a: Layout, b: Layout, atol: float = 1e-9) -> None:
    """Layout holds arrays, so compare it field by field (Layout == Layout is not usable, see the report)."""
    assert len(a.boxes) == len(b.boxes)
    for x, y in zip(a.boxes, b.boxes):
        assert np.allclose(x.center, y.center, atol=atol) and np.allclose(x.size, y.size, atol=atol)
        assert abs(math.remainder(x.yaw - y.yaw, 2 * math.pi)) < atol
        assert (x.label, x.state, x.track_id, x.color) == (y.label, y.state, y.track_id, y.color)
    for name in ("lanes", "lines", "polygons"):
        xs, ys = getattr(a, name), getattr(b, name)
        assert len(xs) == len(ys), name
        for x, y in zip(xs, ys):
            assert np.allclose(x.points, y.points, atol=atol), name
            assert {k: v for k, v in x.to_dict().items() if k != "points"} == \
                   {k: v for k, v in y.to_dict().items() if k != "points"}, name


# GridSpec --------------------------------------------------------------------------------------------------

def test_gridspec_defaults_are_occ3d():
    g = GridSpec()
    assert g.shape == (200, 200, 16) and g.voxel_size == 0.4
    assert g.lower == (-40.0, -40.0, -1.0)
    assert np.allclose(g.upper, (40.0, 40.0, 5.4)) and np.allclose(g.extent, (80.0, 80.0, 6.4))
    assert g.centers().shape == (200, 200, 16, 3)
    assert np.allclose(g.axis_centers(0)[[0, -1]], (-39.8, 39.8)) and np.allclose(g.axis_centers(2)[[0, -1]], (-0.8, 5.2))
    assert GridSpec.from_dict(json.loads(json.dumps(g.to_dict()))) == g


def test_gridspec_centers_and_index_of_round_trip():
    g = GridSpec()
    idx, inside = g.index_of(g.centers())
    assert inside.all()
    assert np.array_equal(idx, np.stack(np.meshgrid(*(np.arange(n) for n in g.shape), indexing="ij"), axis=-1))
    # Any point inside a voxel maps to it; points outside are clipped and flagged.
    rng = np.random.default_rng(0)
    jitter = rng.uniform(-0.19, 0.19, size=(1000, 3))
    picks = rng.integers(0, g.shape, size=(1000, 3))
    idx, inside = g.index_of(g.centers()[tuple(picks.T)] + jitter)
    assert inside.all() and np.array_equal(idx, picks)
    idx, inside = g.index_of(np.array([[40.0, 0, 0], [-40.01, 0, 0], [0, 0, 5.5], [-40.0, -40.0, -1.0]]))
    assert inside.tolist() == [False, False, False, True]
    assert (idx >= 0).all() and (idx < np.asarray(g.shape)).all()


def test_gridspec_other_grid():
    g = GridSpec((10, 20, 4), 0.5, (0.0, -5.0, 0.0))
    assert np.allclose(g.upper, (5.0, 5.0, 2.0))
    idx, inside = g.index_of(np.array([0.3, -4.9, 1.9]))
    assert inside and idx.tolist() == [0, 0, 3]


# Validation: every type rejects bad shapes, dtypes and non-finite values, naming the field -------------

V, H, W = 2, 4, 6


def case(name, make, field, bug=None, marks=()):
    """One invalid construction; `bug` marks a known defect of the type (strict xfail, see the report)."""
    marks = [*marks, pytest.mark.xfail(strict=True, reason=f"bug: {bug}")] if bug else list(marks)
    return pytest.param(make, field, id=name, marks=marks)


BAD = [
    ("grid-shape", lambda: GridSpec((200, 200)), r"GridSpec\.shape"),
    ("grid-shape-zero", lambda: GridSpec((200, 0, 16)), r"GridSpec\.shape"),
    ("grid-voxel", lambda: GridSpec(voxel_size=0.0), r"GridSpec\.voxel_size"),
    ("grid-voxel-nan", lambda: GridSpec(voxel_size=NAN), r"GridSpec\.voxel_size"),
    ("grid-lower", lambda: GridSpec(lower=(0.0, 0.0)), r"GridSpec\.lower"),
    case("grid-lower-nan", lambda: GridSpec(lower=(NAN, 0.0, 0.0)), r"GridSpec\.lower"),
    ("occ-shape", lambda: Occupancy(np.zeros((200, 200, 8), np.uint8)), r"Occupancy\.labels"),
    ("occ-dtype", lambda: Occupancy(np.zeros((200, 200, 16), np.float32)), r"Occupancy\.labels"),
    ("occ-nan", lambda: Occupancy(np.full((200, 200, 16), NAN)), r"Occupancy\.labels"),
    ("occ-id", lambda: Occupancy(np.full((200, 200, 16), 18, np.uint8)), r"Occupancy\.labels"),
    ("occ-negative", lambda: Occupancy(np.full((200, 200, 16), -1, np.int64)), r"Occupancy\.labels"),
    case("occ-id-wraps", lambda: Occupancy(np.full((200, 200, 16), 256, np.int64)), r"Occupancy\.labels"),
    ("occ-mask", lambda: Occupancy(np.zeros((200, 200, 16), np.uint8), mask_camera=np.ones((200, 200), bool)),
     r"Occupancy\.mask_camera"),
    case("occ-mask-nan", lambda: Occupancy(np.zeros((200, 200, 16), np.uint8), mask_lidar=np.full((200, 200, 16), NAN)),
         r"Occupancy\.mask_lidar"),
    ("tri-ndim", lambda: Triplane(torch.zeros(2, 4), torch.zeros(2, 4, 3), torch.zeros(2, 4, 3)), r"Triplane\.xy"),
    ("tri-nan", lambda: Triplane(torch.zeros(2, 4, 4), torch.full((2, 4, 3), NAN), torch.zeros(2, 4, 3)), r"Triplane\.xz"),
    ("tri-planes", lambda: Triplane(torch.zeros(2, 4, 4), torch.zeros(2, 4, 3), torch.zeros(2, 5, 3)),
     r"Triplane: plane shapes"),
    ("tri-channels", lambda: Triplane(torch.zeros(2, 4, 4), torch.zeros(3, 4, 3), torch.zeros(2, 4, 3)),
     r"Triplane: plane shapes"),
    ("cam-K", lambda: Camera("c", np.eye(4), np.eye(4), H, W), r"Camera c\.K"),
    ("cam-K-nan", lambda: Camera("c", np.full((3, 3), NAN), np.eye(4), H, W), r"Camera c\.K"),
    ("cam-K-text", lambda: Camera("c", [["a"] * 3] * 3, np.eye(4), H, W), r"Camera c\.K"),
    ("cam-T", lambda: Camera("c", np.eye(3), np.eye(3), H, W), r"Camera c\.T_ego_cam"),
    ("cam-T-rigid", lambda: Camera("c", np.eye(3), 2 * np.eye(4), H, W), r"Camera c\.T_ego_cam"),
    ("cam-size", lambda: Camera("c", np.eye(3), np.eye(4), 0, W), r"Camera c image size"),
    ("rig-empty", lambda: CameraRig(()), r"CameraRig"),
    ("rig-T", lambda: CameraRig(small_rig().cameras, np.eye(3)), r"CameraRig\.T_world_ego"),
    ("box-center", lambda: Box((0.0, 0.0), (1, 1, 1), 0, CAR), r"Box"),
    ("box-center-nan", lambda: Box((0.0, NAN, 0.0), (1, 1, 1), 0, CAR), r"Box\.center"),
    ("box-size", lambda: Box((0, 0, 0), (4.0, 0.0, 1.5), 0, CAR), r"Box\.size"),
    ("box-yaw", lambda: Box((0, 0, 0), (1, 1, 1), math.inf, CAR), r"Box\.yaw"),
    ("box-label", lambda: Box((0, 0, 0), (1, 1, 1), 0, semantics.ID["vegetation"]), r"Box\.label"),
    ("box-state", lambda: Box((0, 0, 0), (1, 1, 1), 0, CAR, "flying"), r"Box\.state"),
    ("lane-shape", lambda: Lane(np.zeros((3, 3))), r"Lane\.points"),
    ("lane-short", lambda: Lane(np.zeros((1, 2))), r"Lane\.points"),
    ("lane-nan", lambda: Lane(np.array([[0.0, 0.0], [NAN, 1.0]])), r"Lane\.points"),
    ("lane-turn", lambda: Lane(np.zeros((2, 2)), "u-turn"), r"Lane\.turn"),
    ("line-nan", lambda: MapLine(np.array([[0.0, 0.0], [1.0, math.inf]]), "road_edge"), r"MapLine\.points"),
    ("line-kind", lambda: MapLine(np.zeros((2, 2)), "zebra"), r"MapLine\.kind"),
    ("poly-short", lambda: MapPolygon(np.zeros((2, 2)), "drivable"), r"MapPolygon\.points"),
    ("poly-kind", lambda: MapPolygon(np.zeros((3, 2)), "lake"), r"MapPolygon\.kind"),
    ("layout-item", lambda: Layout(boxes=(Lane(np.zeros((2, 2))),)), r"Layout\.boxes\[0\]"),
    ("desc-empty", lambda: SceneDescription("", "rainy", "downtown"), r"SceneDescription\.time_of_day"),
    ("desc-pair", lambda: SceneDescription("night", "rainy", "downtown", foreground=(("car",),)),
     r"SceneDescription\.foreground"),
    ("lanenode-nan", lambda: LaneNode("l0", ((0, 0), (NAN, 1)), "forward"), r"LaneNode l0\.points"),
    ("lanenode-flow", lambda: LaneNode("l0", ((0, 0), (1, 1)), "up"), r"LaneNode l0\.flow"),
    ("objnode-label", lambda: ObjectNode("o", 15, "static", "front", 0, (1, 1), (1, 1, 1)), r"ObjectNode o"),
    ("objnode-nan", lambda: ObjectNode("o", CAR, "parked", "front", 0, (NAN, 1), (4, 2, 1.5)), r"ObjectNode o\.location"),
    ("objnode-size", lambda: ObjectNode("o", CAR, "parked", "front", 0, (1, 1), (4, -2, 1.5)), r"ObjectNode o\.size"),
    ("area-kind", lambda: AreaNode("a", "lake", (0, 0)), r"AreaNode a\.kind"),
    ("relation", lambda: Relation("a", "inside", "b"), r"Relation\.predicate"),
    ("rv-shape", lambda: RenderedViews(np.zeros((V, H, W + 1)), np.zeros((V, H, W)), np.zeros((V, H, W)), small_rig()),
     r"RenderedViews\.semantic"),
    ("rv-depth-nan", lambda: RenderedViews(np.zeros((V, H, W)), np.full((V, H, W), NAN), np.zeros((V, H, W)), small_rig()),
     r"RenderedViews\.depth"),
    ("rv-alpha-shape", lambda: RenderedViews(np.zeros((V, H, W)), np.zeros((V, H, W)), np.zeros((V + 1, H, W)), small_rig()),
     r"RenderedViews\.alpha"),
    ("rv-id", lambda: RenderedViews(np.full((V, H, W), 18), np.zeros((V, H, W)), np.zeros((V, H, W)), small_rig()),
     r"RenderedViews\.semantic"),
    case("rv-semantic-nan", lambda: RenderedViews(np.full((V, H, W), NAN), np.zeros((V, H, W)), np.zeros((V, H, W)),
                                                  small_rig()), r"RenderedViews\.semantic",
         marks=[pytest.mark.filterwarnings("ignore:invalid value encountered in cast")]),
    ("mv-shape", lambda: MultiViewImages(np.zeros((V, H, W), np.uint8), small_rig()), r"MultiViewImages\.images"),
    ("mv-dtype", lambda: MultiViewImages(np.zeros((V, H, W, 3), np.float32), small_rig()), r"MultiViewImages\.images"),
    ("gs-shape", lambda: gaussians(means=torch.zeros(5, 2)), r"GaussianScene\.means"),
    ("gs-count", lambda: gaussians(colors=torch.zeros(4, 3)), r"GaussianScene\.colors"),
    ("gs-nan", lambda: gaussians(quats=torch.full((5, 4), NAN)), r"GaussianScene\.quats"),
    ("gs-scales", lambda: gaussians(scales=torch.zeros(5, 3)), r"GaussianScene\.scales"),
    ("gs-opacity", lambda: gaussians(opacities=torch.full((5,), 1.5)), r"GaussianScene\.opacities"),
    ("chunk-T", lambda: Chunk(np.eye(3)), r"Chunk\.T_world_chunk"),
    ("chunk-T-nan", lambda: Chunk(np.full((4, 4), NAN)), r"Chunk\.T_world_chunk"),
    ("chunkindex", lambda: ChunkIndex(0.5, 1), r"ChunkIndex"),
    ("worldmap-stride", lambda: WorldMap(stride=-1.0), r"WorldMap\.stride"),
]


@pytest.mark.parametrize("make, field", [case(*c) if type(c) is tuple else c for c in BAD])
def test_bad_values_raise_value_error_naming_the_field(make, field):
    with pytest.raises(ValueError, match=field):
        make()


def test_valid_building_blocks_are_accepted():
    rig = small_rig()
    RenderedViews(np.full((V, H, W), semantics.FREE), np.zeros((V, H, W)), np.ones((V, H, W)), rig)
    MultiViewImages(np.zeros((V, H, W, 3), np.uint8), rig)
    example_layout()
    gaussians()
    triplane()
    Occupancy(np.full(GridSpec().shape, semantics.FREE, np.int64))  # integer labels in range are fine


# Layout ----------------------------------------------------------------------------------------------------

def test_layout_json_round_trip(tmp_path):
    layout = example_layout()
    layout.save(tmp_path / "layout.json")
    data = json.loads((tmp_path / "layout.json").read_text())
    assert data["format"] == "xscene.layout/1" and data["boxes"][0]["class"] == "car"
    back = Layout.load(tmp_path / "layout.json")
    assert back.boxes == layout.boxes  # boxes are plain values: exact equality
    assert_layouts_close(back, layout)
    assert back.to_dict() == layout.to_dict()


def test_layout_load_rejects_other_json(tmp_path):
    (tmp_path / "a.json").write_text('{"boxes": []}')
    with pytest.raises(ValueError, match="xscene.layout/1"):
        Layout.load(tmp_path / "a.json")
    (tmp_path / "b.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        Layout.load(tmp_path / "b.json")


def test_layout_transform_then_inverse_is_identity():
    layout = example_layout()
    T = pose_matrix(123.0, -45.0, 2.5)
    moved = layout.transformed(T)
    assert np.allclose(moved.boxes[0].center[:2], (T @ [10.0, -3.5, 0.8, 1.0])[:2])
    assert moved.boxes[0].yaw == pytest.approx(math.remainder(0.3 + 2.5, 2 * math.pi))
    assert all(-math.pi <= b.yaw < math.pi for b in moved.boxes)
    assert np.allclose(moved.lanes[0].points[0], (T @ [-40.0, -1.75, 0.0, 1.0])[:2])
    assert_layouts_close(moved.transformed(invert_rigid(T)), layout)
    # Box footprints move rigidly with the layout.
    assert np.allclose(moved.boxes[1].corners_bev(), (layout.boxes[1].corners_bev() @ T[:2, :2].T) + T[:2, 3])


def test_box_contains_and_corners():
    box = Box((1.0, 2.0, 0.5), (4.0, 2.0, 1.0), math.pi / 2, CAR)
    assert box.contains(np.array([[1.0, 3.9, 0.5], [1.0, 4.1, 0.5], [1.9, 2.0, 0.5], [2.1, 2.0, 0.5]])).tolist() == \
        [True, False, True, False]
    assert np.allclose(box.corners_bev()[0], (0.0, 4.0))  # front-left of a box heading +y
    assert box.as_vector().tolist() == [1.0, 2.0, 0.5, 4.0, 2.0, 1.0, math.pi / 2]


# Scene description and graph -------------------------------------------------------------------------------

def test_scene_description_json_round_trip_with_paper_keys(tmp_path):
    desc = SceneDescription(
        "night", "rainy", "downtown", foreground=(("white sedan", "parked on the right curb"), ("bus", "moving ahead")),
        background=(("tall buildings", "on both sides"),), road_condition="wet asphalt with puddles",
        layout="a four-way crossroad", abstract="A rainy night on a downtown crossroad with parked cars.",
    )
    desc.save(tmp_path / "desc.json")
    data = json.loads((tmp_path / "desc.json").read_text())
    assert tuple(data) == DESCRIPTION_KEYS
    assert data["Foreground objects"] == [{"white sedan": "parked on the right curb"}, {"bus": "moving ahead"}]
    assert SceneDescription.load(tmp_path / "desc.json") == desc
    minimal = SceneDescription.from_json_dict(
        {"Time of the day": "dawn", "Weather": "foggy", "Surrounding environment": "rural"})
    assert minimal.foreground == () and minimal.abstract == ""
    with pytest.raises(ValueError, match="Weather"):
        SceneDescription.from_json_dict({"Time of the day": "dawn"})
    (tmp_path / "bad.json").write_text("[1, 2")
    with pytest.raises(ValueError, match="not valid JSON"):
        SceneDescription.load(tmp_path / "bad.json")


def _graph_parts():
    lanes = (LaneNode("lane_0", ((0, -1.75), (40, -1.75)), "forward"),)
    objects = (ObjectNode("car_0", CAR, "parked", "front-right", 0.0, (12.0, -4.0), (4.5, 1.9, 1.6)),
               ObjectNode("ped_0", PED, "walking", "left", 90.0, (3.0, 6.0), (0.7, 0.6, 1.8)))
    areas = (AreaNode("cross_0", "crosswalk", (15.0, 0.0)),)
    return lanes, objects, areas


def test_scene_graph_resolves_relations():
    lanes, objects, areas = _graph_parts()
    rel = (Relation("car_0", "on top of", "lane_0"), Relation("ped_0", "near", "cross_0"),
           Relation("car_0", "front of", "ego"))
    g = SceneGraph(lanes, objects, areas, rel)
    assert g.node_ids() == ["lane_0", "car_0", "ped_0", "cross_0"]
    assert [r.object for r in g.relations_of("car_0")] == ["lane_0", "ego"]


def test_scene_graph_rejects_unknown_nodes_and_duplicates():
    lanes, objects, areas = _graph_parts()
    with pytest.raises(ValueError, match="unknown node 'truck_9'"):
        SceneGraph(lanes, objects, areas, (Relation("truck_9", "behind", "car_0"),))
    with pytest.raises(ValueError, match="unknown node 'lane_7'"):
        SceneGraph(lanes, objects, areas, (Relation("car_0", "on top of", "lane_7"),))
    dup = ObjectNode("lane_0", CAR, "moving", "front", 0.0, (5.0, 0.0), (4.5, 1.9, 1.6))
    with pytest.raises(ValueError, match=r"duplicate node ids \['lane_0'\]"):
        SceneGraph(lanes, objects + (dup,), areas)


# Tensors: Triplane and GaussianScene -----------------------------------------------------------------------

def test_triplane_properties_to_and_safetensors_round_trip(tmp_path):
    tp = triplane()
    assert tp.channels == 2 and tp.resolution == (5, 4, 3)
    moved = tp.to("cpu")
    assert isinstance(moved, Triplane) and all(torch.equal(getattr(moved, k), getattr(tp, k)) for k in ("xy", "xz", "yz"))
    tp.save(tmp_path / "tri.safetensors")
    back = Triplane.load(tmp_path / "tri.safetensors")
    for k in ("xy", "xz", "yz"):
        assert torch.equal(getattr(back, k), getattr(tp, k)) and getattr(back, k).dtype == getattr(tp, k).dtype
    assert Triplane(np.zeros((1, 2, 2)), np.zeros((1, 2, 3)), np.zeros((1, 2, 3))).xy.dtype == torch.float32


def test_triplane_load_rejects_other_safetensors(tmp_path):
    from safetensors.torch import save_file

    save_file({"xy": torch.zeros(1, 2, 2)}, str(tmp_path / "x.safetensors"))
    with pytest.raises(ValueError, match=r"missing \['xz', 'yz'\]"):
        Triplane.load(tmp_path / "x.safetensors")


def test_gaussian_scene_to_and_len():
    gs = gaussians()
    assert len(gs) == 5
    moved = gs.to("cpu")
    assert isinstance(moved, GaussianScene)
    for k in ("means", "scales", "quats", "opacities", "colors", "labels"):
        assert torch.equal(getattr(moved, k), getattr(gs, k)) and getattr(moved, k).device.type == "cpu"
    from_numpy = GaussianScene(np.zeros((2, 3), np.float32), np.ones((2, 3), np.float32), np.tile([1.0, 0, 0, 0], (2, 1)),
                               np.ones(2), np.zeros((2, 3)), np.array([CAR, PED], np.uint8))
    assert isinstance(from_numpy.means, torch.Tensor) and len(from_numpy) == 2


# Cameras ---------------------------------------------------------------------------------------------------

def test_camera_rig_from_real_nuscenes_json(cameras_json):
    raw = json.loads(cameras_json.read_text())
    rig = CameraRig.from_nuscenes_json(cameras_json)
    assert rig.names == CAMERA_NAMES and len(rig) == 6
    for cam in rig.cameras:
        src = np.asarray(raw[cam.name]["intrinsics"])
        w, h = raw[cam.name]["image_size_wh"]
        assert (cam.height, cam.width) == (224, 400)
        assert np.allclose(cam.K[0], src[0] * 400 / w) and np.allclose(cam.K[1], src[1] * 224 / h)
        assert np.allclose(cam.K[2], (0, 0, 1))
        R = cam.T_ego_cam[:3, :3]
        assert np.allclose(R @ R.T, np.eye(3), atol=1e-6) and np.linalg.det(R) == pytest.approx(1.0, abs=1e-6)
        assert np.allclose(cam.T_ego_cam[3], (0, 0, 0, 1))
        assert np.allclose(cam.T_ego_cam[:3, 3], raw[cam.name]["sensor2ego_translation"])
        assert cam.T_ego_cam[:3, 1] @ (0, 0, -1) > 0.99  # image y (down) points down in the ego frame
    front = rig.cameras[CAMERA_NAMES.index("CAM_FRONT")]
    assert np.allclose(front.T_ego_cam[:3, 2], (1, 0, 0), atol=0.02)  # the front camera looks along +x
    # Ring order: optical axes turn clockwise (seen from above) from front-left round to back-left.
    headings = [math.degrees(math.atan2(c.T_ego_cam[1, 2], c.T_ego_cam[0, 2])) for c in rig.cameras]
    for want, got in zip([55, 0, -55, -110, 180, 110], headings):
        assert abs(math.remainder(math.radians(got - want), 2 * math.pi)) < math.radians(5)


def test_camera_rig_resize_place_and_json_round_trip(cameras_json, tmp_path):
    rig = CameraRig.from_nuscenes_json(cameras_json, image_size=(900, 1600))
    raw = json.loads(cameras_json.read_text())
    assert np.allclose(rig.cameras[0].K, raw["CAM_FRONT_LEFT"]["intrinsics"])
    small = rig.resized(224, 400)
    assert np.allclose(small.cameras[0].K, CameraRig.from_nuscenes_json(cameras_json).cameras[0].K)
    assert np.allclose(small.resized(900, 1600).cameras[3].K, rig.cameras[3].K)
    T = pose_matrix(5.0, 6.0, 0.7)
    placed = rig.at(T)
    assert np.allclose(placed.T_world_cam(1), T @ rig.cameras[1].T_ego_cam)
    placed.save(tmp_path / "rig.json")
    back = CameraRig.load(tmp_path / "rig.json")
    assert back.names == placed.names and np.allclose(back.T_world_ego, T)
    assert all(np.allclose(a.K, b.K) and np.allclose(a.T_ego_cam, b.T_ego_cam) for a, b in zip(back.cameras, placed.cameras))


def test_camera_rig_json_missing_camera(tmp_path, cameras_json):
    raw = json.loads(cameras_json.read_text())
    del raw["CAM_BACK"]
    (tmp_path / "cams.json").write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="CAM_BACK"):
        CameraRig.from_nuscenes_json(tmp_path / "cams.json")


def test_multiview_images_save_load(tmp_path):
    rig = small_rig()
    imgs = np.random.default_rng(0).integers(0, 256, size=(V, H, W, 3), dtype=np.uint8)
    MultiViewImages(imgs, rig).save(tmp_path / "views")
    back = MultiViewImages.load(tmp_path / "views")
    assert np.array_equal(back.images, imgs) and back.rig.names == rig.names


# World -----------------------------------------------------------------------------------------------------

def test_world_map_grid_and_neighbours():
    world = WorldMap(stride=40.0)
    origin = ChunkIndex(0, 0)
    world.add(origin, Chunk(world.pose_of(origin)))
    east = origin.neighbour("east")
    world.add(east, Chunk(world.pose_of(east)))
    assert str(east) == "chunk_1_0" and np.allclose(world.pose_of(east)[:2, 3], (40.0, 0.0))
    assert world.neighbours(origin) == {"east": east}
    with pytest.raises(ValueError, match="does not match grid cell"):
        world.add(ChunkIndex(2, 0), Chunk(np.eye(4)))
    with pytest.raises(ValueError, match="unknown direction"):
        origin.neighbour("up")


# Semantics -------------------------------------------------------------------------------------------------

def test_semantics_class_table():
    assert semantics.NUM_CLASSES == len(semantics.CLASSES) == 18
    assert [c.id for c in semantics.CLASSES] == list(range(18))
    assert semantics.NAMES[0] == "others" and semantics.NAMES[semantics.FREE] == "free" and semantics.FREE == 17
    assert semantics.OBJECT_IDS == tuple(range(1, 11))
    assert semantics.COLORS.shape == (18, 3) and semantics.COLORS.dtype == np.uint8
    assert len({tuple(c) for c in semantics.COLORS.tolist()}) == 18  # every class has its own colour
    assert all(semantics.class_id(n) == i for i, n in enumerate(semantics.NAMES))
    with pytest.raises(ValueError, match="unknown class 'dragon'"):
        semantics.class_id("dragon")


def test_semantics_coarse_mapping():
    assert len(semantics.COARSE_NAMES) == 12  # free + the paper's 11 classes
    coarse = semantics.to_coarse(np.arange(18, dtype=np.uint8))
    assert coarse.min() >= 0 and coarse.max() <= 11
    assert set(coarse.tolist()) == set(range(12))  # every coarse class is used
    assert coarse[semantics.FREE] == 0 and (coarse[:semantics.FREE] != 0).all()
    assert all(semantics.COARSE_NAMES[coarse[i]] == "vehicle" for i in (3, 4, 5, 9, 10))
    assert semantics.COARSE_NAMES[coarse[semantics.ID["driveable_surface"]]] == "road"
    assert semantics.to_coarse(np.full((2, 3), 4, np.uint8)).shape == (2, 3)
    with pytest.raises(ValueError, match="0..17"):
        semantics.to_coarse(np.array([18]))


def test_semantics_sizes_for_every_object_class():
    assert set(semantics.SIZES) == set(semantics.OBJECT_IDS)
    rng = np.random.default_rng(0)
    for cid, rng_ in semantics.SIZES.items():
        for lo, hi in (rng_.length, rng_.width, rng_.height):
            assert 0 < lo <= hi
        assert min(rng_.length[0], rng_.width[0]) >= 0.4  # at least one Occ3D voxel wide
        size = rng_.sample(rng)
        assert rng_.contains(size)
        Box((0, 0, 0), size, 0, cid)  # sampled sizes make valid boxes
    car = semantics.SIZES[CAR]
    assert car.length[0] > car.width[1]  # cars are longer than wide
    assert semantics.STATES and all(isinstance(s, str) for s in semantics.STATES)


def test_save_load_of_graph_views_gaussians_and_world(tmp_path):
    import torch

    from xscene_core.data.world import SyntheticWorld
    from xscene_core.types import ChunkIndex, GaussianScene, RenderedViews, SceneGraph, WorldMap
    from xscene_core.types.cameras import Camera, CameraRig

    w = SyntheticWorld(5)
    chunk = w.chunk(*w.find_location("residential"))
    chunk.graph.save(tmp_path / "g.txt")
    assert SceneGraph.load(tmp_path / "g.txt") == chunk.graph

    rig = CameraRig((Camera("CAM_FRONT", np.diag([100.0, 100.0, 1.0]), np.eye(4), 8, 12),))
    views = RenderedViews(np.full((1, 8, 12), 11, np.uint8), np.ones((1, 8, 12), np.float32),
                          np.ones((1, 8, 12), np.float32), rig)
    views.save(tmp_path / "v.npz")
    back = RenderedViews.load(tmp_path / "v.npz")
    assert np.array_equal(back.semantic, views.semantic) and back.rig.to_dict() == rig.to_dict()

    g = GaussianScene(torch.zeros(3, 3), torch.ones(3, 3) * 0.2, torch.tensor([[1.0, 0, 0, 0]] * 3),
                      torch.full((3,), 0.5), torch.rand(3, 3), torch.tensor([4, 11, 15]))
    g.save(tmp_path / "g.safetensors")
    g2 = GaussianScene.load(tmp_path / "g.safetensors")
    assert all(torch.equal(getattr(g, k), getattr(g2, k)) for k in GaussianScene.FIELDS)

    wm = WorldMap(stride=80.0)
    chunk.T_world_chunk = wm.pose_of(ChunkIndex(0, 0))
    wm.add(ChunkIndex(0, 0), chunk)
    wm.save(tmp_path / "world")
    loaded = WorldMap.load(tmp_path / "world")
    c2 = loaded[ChunkIndex(0, 0)]
    assert np.array_equal(c2.occupancy.labels, chunk.occupancy.labels) and c2.graph == chunk.graph
    assert c2.layout == chunk.layout and c2.description == chunk.description
