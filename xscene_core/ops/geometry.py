"""Small rigid-geometry helpers in the conventions of DESIGN.md (metres, radians, T_a_b maps b into a)."""

from __future__ import annotations

import math

import numpy as np


def wrap_angle(a):
    """Angle(s) wrapped to [-pi, pi)."""
    return (np.asarray(a) + math.pi) % (2 * math.pi) - math.pi if np.ndim(a) else (a + math.pi) % (2 * math.pi) - math.pi


def pose_matrix(x: float, y: float, yaw: float, z: float = 0.0) -> np.ndarray:
    """float64 [4, 4]: rotation about z by yaw, then translation (x, y, z)."""
    c, s = math.cos(yaw), math.sin(yaw)
    T = np.eye(4)
    T[:2, :2] = [[c, -s], [s, c]]
    T[:3, 3] = (x, y, z)
    return T


def transform_points(T: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 4x4 rigid transform to points float [..., 3] (or [..., 2], treated as z = 0)."""
    p = np.asarray(points, dtype=np.float64)
    if p.shape[-1] == 2:
        return p @ T[:2, :2].T + T[:2, 3]
    return p @ T[:3, :3].T + T[:3, 3]


def invert_rigid(T: np.ndarray) -> np.ndarray:
    """Inverse of a rigid 4x4 transform."""
    Ti = np.eye(4)
    Ti[:3, :3] = T[:3, :3].T
    Ti[:3, 3] = -T[:3, :3].T @ T[:3, 3]
    return Ti


def quaternion_to_matrix(wxyz) -> np.ndarray:
    """float64 [3, 3] rotation matrix of a unit quaternion (w, x, y, z)."""
    w, x, y, z = np.asarray(wxyz, dtype=np.float64) / np.linalg.norm(wxyz)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def yaw_of(T: np.ndarray) -> float:
    """Rotation about z of a rigid transform, radians."""
    return math.atan2(T[1, 0], T[0, 0])
