"""nuScenes loader through nuscenes-devkit: per keyframe sample, the annotated objects as a Layout in the
ego frame and the six-camera rig.

The reference frame of a sample is the ego frame at its LIDAR_TOP keyframe (x forward, y left, z up), the
frame Occ3D-nuScenes voxelises in, so a sample's Layout lines up with its Occ3D `labels.npz`.
Map elements (lanes, lines, areas) need the nuScenes map expansion and are not read here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np

from .. import semantics
from ..ops.geometry import invert_rigid, rigid_from_quaternion, wrap_angle, yaw_of
from ..types.cameras import CAMERA_NAMES, DEFAULT_IMAGE_SIZE, Camera, CameraRig
from ..types.layout import Box, Layout
from ..types.occupancy import GridSpec

# The tables nuscenes-devkit loads; each is <dataroot>/<version>/<table>.json.
TABLES = (
    "attribute", "calibrated_sensor", "category", "ego_pose", "instance", "log", "map", "sample",
    "sample_annotation", "sample_data", "scene", "sensor", "visibility",
)
REFERENCE_CHANNEL = "LIDAR_TOP"

# nuScenes attribute name -> box state (semantics.STATES). An annotation without a known attribute (barriers,
# cones, ...) is "static".
ATTRIBUTE_STATES: dict[str, str] = {
    "vehicle.moving": "moving",
    "vehicle.parked": "parked",
    "vehicle.stopped": "stopped",
    "pedestrian.moving": "walking",
    "pedestrian.standing": "standing",
    "pedestrian.sitting_lying_down": "standing",
    "cycle.with_rider": "moving",
    "cycle.without_rider": "parked",
}


def class_of_category(category_name: str) -> int | None:
    """Occ3D object id of a nuScenes category name, or None for categories the layout does not carry.

    Uses the devkit's official detection mapping (vehicle.car -> car, vehicle.bus.* -> bus,
    human.pedestrian.{adult, child, construction_worker, police_officer} -> pedestrian, ...). Its ten
    detection names are exactly the Occ3D object class names. Strollers, wheelchairs and personal mobility
    devices, emergency vehicles, animals and static objects are skipped, as in nuScenes detection and in
    the lidarseg labels Occ3D is built from.
    """
    from nuscenes.eval.detection.utils import category_to_detection_name

    name = category_to_detection_name(category_name)
    return None if name is None else semantics.class_id(name)


def state_of_attributes(attribute_names: Iterable[str]) -> str:
    """Box state of an annotation from its nuScenes attribute names (the first known one wins)."""
    for name in attribute_names:
        if name in ATTRIBUTE_STATES:
            return ATTRIBUTE_STATES[name]
    return "static"


class NuScenesSource:
    """A nuScenes release on disk (e.g. v1.0-mini) read through nuscenes-devkit.

    dataroot: the folder holding `<version>/*.json` and `maps/`; version: the table folder name.
    Raises ValueError when the folder, the version's tables or the files they name cannot be found.
    """

    def __init__(self, dataroot: str | Path, version: str = "v1.0-mini") -> None:
        root = Path(dataroot)
        if not root.is_dir():
            raise ValueError(f"nuScenes dataroot {str(root)!r} does not exist or is not a folder")
        table_dir = root / version
        if not table_dir.is_dir():
            found = sorted(p.name for p in root.iterdir() if p.is_dir() and (p / "sample.json").is_file())
            raise ValueError(
                f"nuScenes dataroot {str(root)!r} has no tables for version {version!r} "
                f"(expected the folder {str(table_dir)!r}; versions found: {found or 'none'})"
            )
        missing = [t for t in TABLES if not (table_dir / f"{t}.json").is_file()]
        if missing:
            names = ", ".join(f"{t}.json" for t in missing)
            raise ValueError(f"nuScenes tables missing in {str(table_dir)!r}: {names}")

        from nuscenes.nuscenes import NuScenes

        try:
            self.nusc = NuScenes(version=version, dataroot=str(root), verbose=False)
        except Exception as e:  # the devkit reports broken tables with assert/KeyError/IndexError
            raise ValueError(f"cannot load nuScenes {version} from {str(root)!r}: {type(e).__name__}: {e}") from e
        self.dataroot = root
        self.version = version

    # Samples -----------------------------------------------------------------------------------------

    def sample_tokens(self) -> list[str]:
        """Every keyframe sample token, scene by scene in table order, in time order within a scene."""
        tokens = []
        for scene in self.nusc.scene:
            token = scene["first_sample_token"]
            while token:
                tokens.append(token)
                token = self._sample(token)["next"]
        return tokens

    def __len__(self) -> int:
        return len(self.nusc.sample)

    def _sample(self, sample_token: str) -> dict:
        try:
            return self.nusc.get("sample", sample_token)
        except KeyError:
            raise ValueError(f"unknown nuScenes sample token {sample_token!r}") from None

    def _keyframe(self, sample: dict, channel: str) -> dict:
        token = sample["data"].get(channel)
        if token is None:
            raise ValueError(f"nuScenes sample {sample['token']!r} has no {channel} keyframe "
                             f"(channels: {', '.join(sorted(sample['data']))})")
        return self.nusc.get("sample_data", token)

    def _ego_pose(self, sample_data: dict) -> np.ndarray:
        pose = self.nusc.get("ego_pose", sample_data["ego_pose_token"])
        return rigid_from_quaternion(pose["rotation"], pose["translation"])

    def T_world_ego(self, sample_token: str) -> np.ndarray:
        """float64 [4, 4]: the ego pose of the sample's LIDAR_TOP keyframe (maps ego into global)."""
        return self._ego_pose(self._keyframe(self._sample(sample_token), REFERENCE_CHANNEL))

    # Layout ------------------------------------------------------------------------------------------

    def layout(self, sample_token: str, within: GridSpec | None = None) -> Layout:
        """The sample's annotation boxes in its ego frame (see the module docstring).

        Boxes keep the annotation order; classes come from class_of_category (others are skipped), states
        from state_of_attributes, track_id is the nuScenes instance token. nuScenes stores sizes as
        (w, l, h); boxes carry (l, w, h). within: keep only boxes whose centre lies inside the grid's x-y
        extent.
        """
        sample = self._sample(sample_token)
        T_ego_world = invert_rigid(self.T_world_ego(sample_token))
        boxes = []
        for ann_token in sample["anns"]:
            ann = self.nusc.get("sample_annotation", ann_token)
            label = class_of_category(ann["category_name"])
            if label is None:
                continue
            T_ego_box = T_ego_world @ rigid_from_quaternion(ann["rotation"], ann["translation"])
            w, l, h = ann["size"]
            state = state_of_attributes(self.nusc.get("attribute", a)["name"] for a in ann["attribute_tokens"])
            try:
                box = Box(tuple(T_ego_box[:3, 3]), (l, w, h), float(wrap_angle(yaw_of(T_ego_box))), label, state,
                          track_id=ann["instance_token"])
            except ValueError as e:
                raise ValueError(f"nuScenes sample_annotation {ann_token!r}: {e}") from None
            if within is not None and not _inside_xy(box.center, within):
                continue
            boxes.append(box)
        return Layout(tuple(boxes))

    # Cameras -----------------------------------------------------------------------------------------

    def camera_rig(self, sample_token: str, image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE,
                   motion_compensated: bool = False) -> CameraRig:
        """The six cameras of a sample in CAMERA_NAMES order, placed at the LIDAR_TOP ego pose.

        Intrinsics are rescaled from the stored image size to image_size = (height, width). By default
        T_ego_cam is the fixed calibration (calibrated_sensor). Cameras fire up to ~40 ms apart from the
        lidar; motion_compensated=True folds the ego motion in between into T_ego_cam (T_ego_cam =
        T_ego_world(lidar) @ T_world_ego(camera) @ T_ego_cam), so the sample's Layout projects exactly
        onto the recorded images of a moving vehicle.
        """
        sample = self._sample(sample_token)
        T_world_ego = self.T_world_ego(sample_token)
        T_ego_world = invert_rigid(T_world_ego)
        cameras = []
        for name in CAMERA_NAMES:
            sd = self._keyframe(sample, name)
            calib = self.nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
            K = np.asarray(calib["camera_intrinsic"], dtype=np.float64)
            if K.shape != (3, 3):
                raise ValueError(f"nuScenes calibrated_sensor {calib['token']!r} of {name}: "
                                 f"camera_intrinsic must be 3x3, got shape {list(K.shape)}")
            T_ego_cam = rigid_from_quaternion(calib["rotation"], calib["translation"])
            if motion_compensated:
                T_ego_cam = T_ego_world @ self._ego_pose(sd) @ T_ego_cam
            cameras.append(Camera(name, K, T_ego_cam, int(sd["height"]), int(sd["width"])).resized(*image_size))
        return CameraRig(tuple(cameras), T_world_ego)

    def image_paths(self, sample_token: str) -> list[Path]:
        """The sample's keyframe image files in CAMERA_NAMES order (they need not exist)."""
        sample = self._sample(sample_token)
        return [self.dataroot / self._keyframe(sample, name)["filename"] for name in CAMERA_NAMES]


def _inside_xy(center: tuple[float, float, float], grid: GridSpec) -> bool:
    lower, upper = grid.lower, grid.upper
    return all(lower[a] <= center[a] < upper[a] for a in (0, 1))
