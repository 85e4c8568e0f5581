"""Pinhole cameras (OpenCV frame: x right, y down, z forward) and the six-camera rig."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..ops.geometry import quaternion_to_matrix
from ._checks import as_array, check_positive

# nuScenes ring order used everywhere (views are stacked in this order).
CAMERA_NAMES = ("CAM_FRONT_LEFT", "CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_BACK_RIGHT", "CAM_BACK", "CAM_BACK_LEFT")
DEFAULT_IMAGE_SIZE = (224, 400)  # (height, width) of the tiny preset's views


@dataclass(frozen=True)
class Camera:
    """One pinhole camera.

    K: float64 [3, 3] intrinsics in pixels for an image of (height, width); T_ego_cam: float64 [4, 4]
    camera-to-ego transform (maps OpenCV camera points into the ego frame).
    """

    name: str
    K: np.ndarray
    T_ego_cam: np.ndarray
    height: int
    width: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "K", as_array(f"Camera {self.name}.K", self.K, np.float64, (3, 3)))
        object.__setattr__(self, "T_ego_cam", as_array(f"Camera {self.name}.T_ego_cam", self.T_ego_cam, np.float64, (4, 4)))
        if int(self.height) != self.height or int(self.width) != self.width:
            raise ValueError(f"Camera {self.name}: image size must be whole pixels, got {self.height} x {self.width}")
        object.__setattr__(self, "height", int(self.height))
        object.__setattr__(self, "width", int(self.width))
        check_positive(f"Camera {self.name} image size", self.height, self.width)
        if self.K[0, 0] <= 0 or self.K[1, 1] <= 0:
            raise ValueError(f"Camera {self.name}.K: focal lengths must be > 0")
        R = self.T_ego_cam[:3, :3]
        if not np.allclose(R @ R.T, np.eye(3), atol=1e-5) or not np.allclose(self.T_ego_cam[3], [0, 0, 0, 1]):
            raise ValueError(f"Camera {self.name}.T_ego_cam: not a rigid transform")

    def resized(self, height: int, width: int) -> "Camera":
        """The same camera for an image of another size (fx, cx scale with width; fy, cy with height)."""
        K = self.K.copy()
        K[0] *= width / self.width
        K[1] *= height / self.height
        K[2] = (0, 0, 1)
        return replace(self, K=K, height=int(height), width=int(width))

    def to_dict(self) -> dict:
        return {"name": self.name, "K": self.K.tolist(), "T_ego_cam": self.T_ego_cam.tolist(),
                "height": self.height, "width": self.width}

    @classmethod
    def from_dict(cls, d: dict) -> "Camera":
        return cls(d["name"], np.asarray(d["K"]), np.asarray(d["T_ego_cam"]), int(d["height"]), int(d["width"]))


@dataclass(frozen=True)
class CameraRig:
    """Cameras mounted on the ego vehicle, placed in the world at T_world_ego (float64 [4, 4])."""

    cameras: tuple[Camera, ...]
    T_world_ego: np.ndarray = field(default_factory=lambda: np.eye(4))

    def __post_init__(self) -> None:
        object.__setattr__(self, "cameras", tuple(self.cameras))
        if not self.cameras:
            raise ValueError("CameraRig: needs at least one camera")
        T = as_array("CameraRig.T_world_ego", self.T_world_ego, np.float64, (4, 4))
        if not np.allclose(T[:3, :3] @ T[:3, :3].T, np.eye(3), atol=1e-5) or not np.allclose(T[3], [0, 0, 0, 1]):
            raise ValueError("CameraRig.T_world_ego: not a rigid transform")
        object.__setattr__(self, "T_world_ego", T)

    def __len__(self) -> int:
        return len(self.cameras)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.cameras)

    def resized(self, height: int, width: int) -> "CameraRig":
        return replace(self, cameras=tuple(c.resized(height, width) for c in self.cameras))

    def at(self, T_world_ego: np.ndarray) -> "CameraRig":
        """The same rig placed at another ego pose."""
        return replace(self, T_world_ego=np.asarray(T_world_ego, dtype=np.float64))

    def T_world_cam(self, i: int) -> np.ndarray:
        return self.T_world_ego @ self.cameras[i].T_ego_cam

    @classmethod
    def from_nuscenes_json(cls, path: str | Path, image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE) -> "CameraRig":
        """Rig from a calibration JSON of the form of ../shared/data/nuscenes_cameras.json (per camera:
        sensor2ego_rotation_wxyz, sensor2ego_translation, intrinsics at image_size_wh), rescaled to
        image_size = (height, width)."""
        data = json.loads(Path(path).read_text())
        missing = [n for n in CAMERA_NAMES if n not in data]
        if missing:
            raise ValueError(f"{path}: calibration lacks cameras {missing}")
        cams = []
        for name in CAMERA_NAMES:
            c = data[name]
            T = np.eye(4)
            T[:3, :3] = quaternion_to_matrix(c["sensor2ego_rotation_wxyz"])
            T[:3, 3] = c["sensor2ego_translation"]
            w, h = c["image_size_wh"]
            cams.append(Camera(name, np.asarray(c["intrinsics"]), T, int(h), int(w)).resized(*image_size))
        return cls(tuple(cams))

    def to_dict(self) -> dict:
        return {"cameras": [c.to_dict() for c in self.cameras], "T_world_ego": self.T_world_ego.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "CameraRig":
        return cls(tuple(Camera.from_dict(c) for c in d["cameras"]), np.asarray(d.get("T_world_ego", np.eye(4))))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> "CameraRig":
        return cls.from_dict(json.loads(Path(path).read_text()))
