"""nuScenes loader on a tiny dataset written in the nuScenes table format: one scene, two samples,
LIDAR_TOP + six cameras, annotations of every mapped class and a few that are skipped."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pyquaternion import Quaternion

from xscene_core import semantics
from xscene_core.data.nuscenes import TABLES, NuScenesSource, class_of_category, state_of_attributes
from xscene_core.ops.geometry import pose_matrix, transform_points
from xscene_core.types import CAMERA_NAMES, GridSpec

VERSION = "v1.0-mini"

# Ego poses of the LIDAR_TOP keyframes in the global frame: rotated by 90 degrees (facing global +y), then
# 5 m further forward in the second sample.
EGO_YAW = math.pi / 2
EGO_XYZ = [(100.0, 200.0, 0.5), (100.0, 205.0, 0.5)]
CAMERA_LAG_M = 0.3  # the camera keyframes of sample 0 are taken 0.3 m further forward than the lidar's

# Camera heading in the ego frame (degrees) and stored image size (w, h); CAM_BACK is stored at half size.
CAMERA_SETUP = {
    "CAM_FRONT_LEFT": (55.0, (1600, 900)), "CAM_FRONT": (0.0, (1600, 900)), "CAM_FRONT_RIGHT": (-55.0, (1600, 900)),
    "CAM_BACK_RIGHT": (-110.0, (1600, 900)), "CAM_BACK": (180.0, (800, 450)), "CAM_BACK_LEFT": (110.0, (1600, 900)),
}

# Annotations of sample 0: category, attribute, centre (x, y, z) and yaw in the ego frame, nuScenes size
# (w, l, h), and what the layout should hold (class name or None for skipped, state).
ANNOTATIONS = [
    ("vehicle.car", "vehicle.parked", (10.0, 0.0, 1.0), 0.5, (1.9, 4.5, 1.6), "car", "parked"),
    ("human.pedestrian.adult", "pedestrian.standing", (0.0, 5.0, 0.9), math.pi / 2, (0.7, 0.8, 1.8), "pedestrian",
     "standing"),
    ("human.pedestrian.child", "pedestrian.moving", (3.0, 6.0, 0.6), -1.0, (0.5, 0.6, 1.2), "pedestrian", "walking"),
    ("human.pedestrian.construction_worker", "pedestrian.sitting_lying_down", (4.0, 7.0, 0.6), 0.0, (0.7, 0.9, 1.3),
     "pedestrian", "standing"),
    ("movable_object.barrier", None, (8.0, -6.0, 0.5), 0.2, (0.5, 2.0, 1.0), "barrier", "static"),
    ("movable_object.trafficcone", None, (9.0, -5.0, 0.4), 0.0, (0.4, 0.4, 0.8), "traffic_cone", "static"),
    ("vehicle.bus.rigid", "vehicle.moving", (-15.0, 3.0, 1.8), math.pi, (2.9, 11.0, 3.5), "bus", "moving"),
    ("vehicle.bus.bendy", "vehicle.stopped", (-30.0, 3.0, 1.8), 3.0, (2.9, 17.0, 3.5), "bus", "stopped"),
    ("vehicle.trailer", "vehicle.parked", (20.0, -10.0, 2.0), 1.5, (2.8, 12.0, 3.8), "trailer", "parked"),
    ("vehicle.truck", "vehicle.stopped", (25.0, 3.5, 1.6), 0.1, (2.5, 8.0, 3.0), "truck", "stopped"),
    ("vehicle.construction", "vehicle.parked", (-20.0, -12.0, 1.7), -2.0, (2.8, 6.5, 3.2), "construction_vehicle", "parked"),
    ("vehicle.motorcycle", "cycle.with_rider", (12.0, 3.0, 0.7), 0.05, (0.8, 2.1, 1.4), "motorcycle", "moving"),
    ("vehicle.bicycle", "cycle.without_rider", (6.0, -8.0, 0.6), 2.5, (0.7, 1.7, 1.2), "bicycle", "parked"),
    ("vehicle.car", "vehicle.moving", (60.0, 1.0, 1.0), 0.0, (1.9, 4.5, 1.6), "car", "moving"),  # outside the grid
    ("animal", None, (5.0, 10.0, 0.3), 0.0, (0.3, 0.8, 0.5), None, ""),
    ("static_object.bicycle_rack", None, (7.0, 10.0, 0.5), 0.0, (0.5, 3.0, 1.0), None, ""),
    ("human.pedestrian.stroller", None, (1.0, 9.0, 0.5), 0.0, (0.5, 0.9, 1.0), None, ""),
    ("vehicle.emergency.police", "vehicle.moving", (-5.0, -3.0, 1.0), 0.0, (2.0, 5.0, 1.7), None, ""),
]
KEPT = [a for a in ANNOTATIONS if a[5] is not None]


def _yaw_quat(yaw: float) -> list[float]:
    return [math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)]


def _to_global(xyz, yaw, ego_xyz=EGO_XYZ[0]):
    T = pose_matrix(ego_xyz[0], ego_xyz[1], EGO_YAW, ego_xyz[2])
    return transform_points(T, np.asarray(xyz)).tolist(), EGO_YAW + yaw


def _camera_rotation(heading_deg: float) -> list[float]:
    """Quaternion (w, x, y, z) of an OpenCV camera (x right, y down, z forward) looking along heading."""
    a = math.radians(heading_deg)
    R = np.array([[math.sin(a), 0.0, math.cos(a)], [-math.cos(a), 0.0, math.sin(a)], [0.0, -1.0, 0.0]])
    return list(Quaternion(matrix=R).elements)


def _intrinsics(i: int, w: int, h: int) -> list[list[float]]:
    scale = w / 1600
    return [[(1200.0 + 10 * i) * scale, 0.0, 800.0 * scale], [0.0, (1200.0 + 10 * i) * scale, 450.0 * scale], [0, 0, 1]]


def write_tiny_nuscenes(root: Path) -> Path:
    """Write a complete nuScenes-format dataset (13 tables + the map mask file the devkit asserts on)."""
    t: dict[str, list[dict]] = {name: [] for name in TABLES}
    t["log"].append({"token": "log-0", "logfile": "tiny-log", "vehicle": "n000", "date_captured": "2026-11-24",
                     "location": "boston-seaport"})
    t["map"].append({"token": "map-0", "log_tokens": ["log-0"], "category": "semantic_prior",
                     "filename": "maps/map-0.png"})
    t["visibility"].append({"token": "4", "level": "v80-100", "description": "visibility of whole object is 80-100%"})
    attributes = sorted({a[1] for a in ANNOTATIONS if a[1]} | {"pedestrian.moving", "cycle.with_rider"})
    t["attribute"] = [{"token": f"attr-{n}", "name": n, "description": ""} for n in attributes]
    categories = sorted({a[0] for a in ANNOTATIONS})
    t["category"] = [{"token": f"cat-{n}", "name": n, "description": ""} for n in categories]

    # Sensors in alphabetical order (not the ring order) so the loader must reorder the cameras.
    channels = sorted([*CAMERA_SETUP, "LIDAR_TOP"])
    for ch in channels:
        t["sensor"].append({"token": f"sensor-{ch}", "channel": ch, "modality": "lidar" if ch == "LIDAR_TOP" else "camera"})
        if ch == "LIDAR_TOP":
            t["calibrated_sensor"].append({"token": f"calib-{ch}", "sensor_token": f"sensor-{ch}",
                                           "translation": [0.94, 0.0, 1.84], "rotation": _yaw_quat(-math.pi / 2),
                                           "camera_intrinsic": []})
        else:
            i = CAMERA_NAMES.index(ch)
            heading, (w, h) = CAMERA_SETUP[ch]
            t["calibrated_sensor"].append({"token": f"calib-{ch}", "sensor_token": f"sensor-{ch}",
                                           "translation": [1.5 - 0.1 * i, 0.01 * i, 1.5],
                                           "rotation": _camera_rotation(heading),
                                           "camera_intrinsic": _intrinsics(i, w, h)})

    scene = {"token": "scene-0", "log_token": "log-0", "nbr_samples": 2, "first_sample_token": "sample-0",
             "last_sample_token": "sample-1", "name": "scene-0001", "description": "tiny test scene"}
    t["scene"].append(scene)
    for s, ego in enumerate(EGO_XYZ):
        ts = 1_500_000_000_000_000 + s * 500_000
        t["sample"].append({"token": f"sample-{s}", "timestamp": ts, "scene_token": "scene-0",
                            "prev": f"sample-{s - 1}" if s else "", "next": "sample-1" if s == 0 else ""})
        for ch in reversed(channels):
            lag = CAMERA_LAG_M if (ch != "LIDAR_TOP" and s == 0) else 0.0
            pose_xyz = (ego[0], ego[1] + lag, ego[2])  # forward is global +y
            t["ego_pose"].append({"token": f"pose-{s}-{ch}", "timestamp": ts, "rotation": _yaw_quat(EGO_YAW),
                                  "translation": list(pose_xyz)})
            w, h = (1600, 900) if ch == "LIDAR_TOP" else CAMERA_SETUP[ch][1]
            ext = "pcd.bin" if ch == "LIDAR_TOP" else "jpg"
            t["sample_data"].append({
                "token": f"sd-{s}-{ch}", "sample_token": f"sample-{s}", "ego_pose_token": f"pose-{s}-{ch}",
                "calibrated_sensor_token": f"calib-{ch}", "timestamp": ts, "fileformat": ext.split(".")[0],
                "is_key_frame": True, "height": 0 if ch == "LIDAR_TOP" else h, "width": 0 if ch == "LIDAR_TOP" else w,
                "filename": f"samples/{ch}/tiny__{ch}__{ts}.{ext}", "prev": "", "next": "",
            })

    def annotate(token, sample, instance, cat, attr, xyz, yaw, size, ego):
        g_xyz, g_yaw = _to_global(xyz, yaw, ego)
        t["sample_annotation"].append({
            "token": token, "sample_token": sample, "instance_token": instance, "visibility_token": "4",
            "attribute_tokens": [f"attr-{attr}"] if attr else [], "translation": g_xyz, "size": list(size),
            "rotation": _yaw_quat(g_yaw), "prev": "", "next": "", "num_lidar_pts": 10, "num_radar_pts": 0,
        })

    for k, (cat, attr, xyz, yaw, size, _, _) in enumerate(ANNOTATIONS):
        n = 2 if k == 0 else 1
        t["instance"].append({"token": f"inst-{k}", "category_token": f"cat-{cat}", "nbr_annotations": n,
                              "first_annotation_token": f"ann-0-{k}", "last_annotation_token": f"ann-{n - 1}-{k}"})
        annotate(f"ann-0-{k}", "sample-0", f"inst-{k}", cat, attr, xyz, yaw, size, EGO_XYZ[0])
    # Sample 1: the parked car again (same place in the world, now 5 m closer), seen from the moved ego.
    car = ANNOTATIONS[0]
    annotate("ann-1-0", "sample-1", "inst-0", car[0], car[1], (car[2][0] - 5.0, *car[2][1:]), car[3], car[4], EGO_XYZ[1])

    table_dir = root / VERSION
    table_dir.mkdir(parents=True)
    for name, rows in t.items():
        (table_dir / f"{name}.json").write_text(json.dumps(rows, indent=1))
    (root / "maps").mkdir()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(root / "maps" / "map-0.png")
    return root


@pytest.fixture(scope="module")
def dataroot(tmp_path_factory) -> Path:
    return write_tiny_nuscenes(tmp_path_factory.mktemp("nuscenes"))


@pytest.fixture(scope="module")
def source(dataroot) -> NuScenesSource:
    return NuScenesSource(dataroot, VERSION)


def _angle_diff(a: float, b: float) -> float:
    return abs((a - b + math.pi) % (2 * math.pi) - math.pi)


# Opening -------------------------------------------------------------------------------------------------

def test_opens_quietly_and_lists_samples_in_time_order(dataroot, capsys):
    src = NuScenesSource(dataroot, VERSION)
    assert capsys.readouterr().out == ""
    assert src.sample_tokens() == ["sample-0", "sample-1"]
    assert len(src) == 2


def test_missing_dataroot_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        NuScenesSource(tmp_path / "nowhere")


def test_missing_version_names_it(dataroot):
    with pytest.raises(ValueError, match=r"v1\.0-trainval.*versions found: \['v1\.0-mini'\]"):
        NuScenesSource(dataroot, "v1.0-trainval")


def test_missing_table_is_named(tmp_path):
    root = write_tiny_nuscenes(tmp_path)
    (root / VERSION / "sample_annotation.json").unlink()
    with pytest.raises(ValueError, match="sample_annotation.json"):
        NuScenesSource(root, VERSION)


def test_devkit_load_failure_becomes_value_error(tmp_path):
    root = write_tiny_nuscenes(tmp_path)
    (root / "maps" / "map-0.png").unlink()  # the devkit asserts every map record's mask file exists
    with pytest.raises(ValueError, match="cannot load nuScenes"):
        NuScenesSource(root, VERSION)


def test_unknown_sample_token(source):
    with pytest.raises(ValueError, match="unknown nuScenes sample token 'nope'"):
        source.layout("nope")


# Layout --------------------------------------------------------------------------------------------------

def test_annotation_ahead_of_rotated_ego_lands_on_plus_x(source, dataroot):
    ann = json.loads((dataroot / VERSION / "sample_annotation.json").read_text())[0]
    # The ego faces global +y from (100, 200, 0.5): 10 m ahead is global (100, 210).
    assert np.allclose(ann["translation"], [100.0, 210.0, 1.5])
    car = source.layout("sample-0").boxes[0]
    assert np.allclose(car.center, (10.0, 0.0, 1.0), atol=1e-9)
    assert car.yaw == pytest.approx(0.5)  # global yaw pi/2 + 0.5 minus the ego's pi/2
    assert car.size == (4.5, 1.9, 1.6)  # nuScenes (w, l, h) -> (l, w, h)


def test_boxes_in_ego_frame_with_classes_states_and_track_ids(source):
    layout = source.layout("sample-0")
    assert len(layout.boxes) == len(KEPT)  # animal, bicycle rack, stroller, police car skipped
    for k, (box, (cat, attr, xyz, yaw, (w, l, h), name, state)) in enumerate(zip(layout.boxes, KEPT)):
        assert box.class_name == name, cat
        assert box.state == state, attr
        assert np.allclose(box.center, xyz, atol=1e-9)
        assert _angle_diff(box.yaw, yaw) < 1e-9
        assert -math.pi <= box.yaw < math.pi
        assert np.allclose(box.size, (l, w, h))
        assert box.track_id == f"inst-{ANNOTATIONS.index(KEPT[k])}"


def test_within_grid_drops_far_boxes(source):
    everything = source.layout("sample-0")
    near = source.layout("sample-0", within=GridSpec())
    assert len(near.boxes) == len(everything.boxes) - 1
    assert all(abs(b.center[0]) < 40 and abs(b.center[1]) < 40 for b in near.boxes)


def test_same_object_same_track_and_world_pose_across_samples(source):
    first = source.layout("sample-0").transformed(source.T_world_ego("sample-0")).boxes[0]
    again = source.layout("sample-1")
    assert len(again.boxes) == 1
    assert again.boxes[0].center == pytest.approx((5.0, 0.0, 1.0))
    world = again.transformed(source.T_world_ego("sample-1")).boxes[0]
    assert world.track_id == first.track_id == "inst-0"
    assert np.allclose(world.center[:2], first.center[:2]) and _angle_diff(world.yaw, first.yaw) < 1e-9


def test_category_and_attribute_mappings():
    assert class_of_category("vehicle.car") == semantics.ID["car"]
    assert class_of_category("human.pedestrian.police_officer") == semantics.ID["pedestrian"]
    assert class_of_category("vehicle.bus.bendy") == semantics.ID["bus"]
    assert class_of_category("flat.driveable_surface") is None
    assert {class_of_category(a[0]) for a in KEPT} == set(semantics.OBJECT_IDS)  # every object class reachable
    assert state_of_attributes([]) == "static"
    assert state_of_attributes(["unknown.thing", "vehicle.stopped"]) == "stopped"


# Cameras -------------------------------------------------------------------------------------------------

def test_camera_rig_order_intrinsics_and_pose(source):
    rig = source.camera_rig("sample-0")
    assert rig.names == CAMERA_NAMES
    sx, sy = 400 / 1600, 224 / 900
    for i, cam in enumerate(rig.cameras):
        assert (cam.height, cam.width) == (224, 400)
        f = 1200.0 + 10 * i  # stored at 1600x900 (CAM_BACK at 800x450 with halved intrinsics)
        assert np.allclose(cam.K, [[f * sx, 0, 800 * sx], [0, f * sy, 450 * sy], [0, 0, 1]])
        heading = math.radians(CAMERA_SETUP[cam.name][0])
        assert np.allclose(cam.T_ego_cam[:3, 2], (math.cos(heading), math.sin(heading), 0.0), atol=1e-9)
        assert np.allclose(cam.T_ego_cam[:3, 3], (1.5 - 0.1 * i, 0.01 * i, 1.5))
    assert np.allclose(rig.T_world_ego, pose_matrix(100.0, 200.0, EGO_YAW, 0.5))
    assert rig.resized(900, 1600).cameras[1].K[0, 0] == pytest.approx(1210.0)


def test_camera_rig_other_size(source):
    rig = source.camera_rig("sample-0", image_size=(450, 800))
    assert rig.cameras[0].K[0, 0] == pytest.approx(600.0) and rig.cameras[0].K[1, 2] == pytest.approx(225.0)


def test_motion_compensated_rig_folds_in_ego_motion(source):
    plain, moved = source.camera_rig("sample-0"), source.camera_rig("sample-0", motion_compensated=True)
    for a, b in zip(plain.cameras, moved.cameras):
        assert np.allclose(b.T_ego_cam[:3, 3] - a.T_ego_cam[:3, 3], (CAMERA_LAG_M, 0.0, 0.0))
        assert np.allclose(b.T_ego_cam[:3, :3], a.T_ego_cam[:3, :3])
    # Sample 1 has no lag between lidar and cameras: both rigs agree.
    p1, m1 = source.camera_rig("sample-1"), source.camera_rig("sample-1", motion_compensated=True)
    assert all(np.allclose(a.T_ego_cam, b.T_ego_cam) for a, b in zip(p1.cameras, m1.cameras))


def test_image_paths_in_ring_order(source, dataroot):
    paths = source.image_paths("sample-1")
    assert [p.parent.name for p in paths] == list(CAMERA_NAMES)
    assert all(p.is_relative_to(dataroot) and p.suffix == ".jpg" for p in paths)
