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


def rigid_from_quaternion(wxyz, translation) -> np.ndarray:
    """float64 [4, 4]: rigid transform of a rotation quaternion (w, x, y, z) and a translation (x, y, z),
    as nuScenes stores poses and calibrations (maps the posed frame into its parent)."""
    T = np.eye(4)
    T[:3, :3] = quaternion_to_matrix(wxyz)
    T[:3, 3] = np.asarray(translation, dtype=np.float64)
    return T


def matrix_to_quaternion(R: np.ndarray) -> np.ndarray:
    """float64 [4] unit quaternion (w, x, y, z) with w >= 0 of a rotation matrix float [3, 3]
    (inverse of quaternion_to_matrix; Shepperd's method, stable for every rotation)."""
    R = np.asarray(R, dtype=np.float64)
    tr = np.trace(R)
    if tr > 0:
        s = 2.0 * math.sqrt(tr + 1.0)
        q = np.array([0.25 * s, (R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s])
    else:
        i = int(np.argmax(np.diag(R)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * math.sqrt(max(1.0 + R[i, i] - R[j, j] - R[k, k], 1e-12))
        q = np.empty(4)
        q[0] = (R[k, j] - R[j, k]) / s
        q[1 + i] = 0.25 * s
        q[1 + j] = (R[j, i] + R[i, j]) / s
        q[1 + k] = (R[k, i] + R[i, k]) / s
    q /= np.linalg.norm(q)
    return -q if q[0] < 0 else q


def polygon_mask(polygon: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """bool [len(xs), len(ys)]: which points of the lattice (xs[i], ys[j]) lie inside a simple polygon
    (float [N, 2], either orientation), by the even-odd rule with scanlines along x.

    xs, ys: increasing, evenly spaced coordinates (metres). Cost is O(len(xs) * N + lattice size), so a
    polygon of hundreds of vertices fills a 1600 x 1600 lattice in a few tens of milliseconds.
    """
    xs, ys = np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)
    p = np.asarray(polygon, dtype=np.float64)
    a, b = p, np.roll(p, -1, axis=0)
    # Scanline i at x = xs[i] crosses edge (a, b) where the edge spans it (half-open, so a vertex on the
    # scanline counts once); record the crossing's y as a column position and take the parity.
    x = xs[:, None]
    spans = (a[None, :, 0] <= x) != (b[None, :, 0] <= x)  # [I, N]
    denom = np.where(b[:, 0] != a[:, 0], b[:, 0] - a[:, 0], 1.0)
    y_cross = a[None, :, 1] + (x - a[None, :, 0]) * ((b[:, 1] - a[:, 1]) / denom)[None]
    dy = ys[1] - ys[0] if len(ys) > 1 else 1.0
    col = np.clip(np.ceil((y_cross - ys[0]) / dy - 1e-9), 0, len(ys)).astype(np.int64)
    rows, edges = np.nonzero(spans)
    diff = np.zeros((len(xs), len(ys) + 1), dtype=np.int32)
    np.add.at(diff, (rows, col[rows, edges]), 1)
    return (np.cumsum(diff[:, :-1], axis=1) % 2).astype(bool)


def points_in_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """bool [M]: which points (float [M, 2]) lie inside a simple polygon (float [N, 2], either
    orientation), by the even-odd rule; polygon_mask's test for scattered points (O(M * N))."""
    p = np.asarray(points, dtype=np.float64)
    a = np.asarray(polygon, dtype=np.float64)
    b = np.roll(a, -1, axis=0)
    x, y = p[:, :1], p[:, 1:2]
    spans = (a[None, :, 0] <= x) != (b[None, :, 0] <= x)  # [M, N], half-open as in polygon_mask
    denom = np.where(b[:, 0] != a[:, 0], b[:, 0] - a[:, 0], 1.0)
    y_cross = a[None, :, 1] + (x - a[None, :, 0]) * ((b[:, 1] - a[:, 1]) / denom)[None]
    return ((spans & (y_cross > y)).sum(1) % 2).astype(bool)


def sample_polyline(points: np.ndarray, spacing: float) -> tuple[np.ndarray, np.ndarray]:
    """Points along a polyline float [N, D] at most `spacing` metres apart, vertices included.

    Returns (samples float64 [M, D], arc length of each sample float64 [M] from the first vertex).
    """
    p = np.asarray(points, dtype=np.float64)
    seg = p[1:] - p[:-1]
    length = np.linalg.norm(seg, axis=1)
    n = np.maximum(np.ceil(length / spacing).astype(np.int64), 1)
    seg_id = np.repeat(np.arange(len(seg)), n)
    t = (np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)) / np.repeat(n, n)
    start_s = np.concatenate([[0.0], np.cumsum(length)])
    samples = np.concatenate([p[seg_id] + t[:, None] * seg[seg_id], p[-1:]])
    arc = np.concatenate([start_s[seg_id] + t * length[seg_id], start_s[-1:]])
    return samples, arc
