"""Clipping of polylines, polygons and boxes to an axis-aligned rectangle (2D, metres)."""

from __future__ import annotations

import math

import numpy as np


def clip_polyline(points: np.ndarray, lo: tuple[float, float], hi: tuple[float, float]) -> list[np.ndarray]:
    """Parts of a polyline float [N, 2] inside the rectangle [lo, hi]; each part float [K>=2, 2]."""
    parts: list[list[np.ndarray]] = []
    current: list[np.ndarray] = []
    for p0, p1 in zip(points[:-1], points[1:]):
        d = p1 - p0
        t0, t1 = 0.0, 1.0
        ok = True
        for pk, qk in ((-d[0], p0[0] - lo[0]), (d[0], hi[0] - p0[0]), (-d[1], p0[1] - lo[1]), (d[1], hi[1] - p0[1])):
            if pk == 0:
                if qk < 0:
                    ok = False
                    break
            else:
                t = qk / pk
                if pk < 0:
                    t0 = max(t0, t)
                else:
                    t1 = min(t1, t)
        if not ok or t0 > t1:
            if current:
                parts.append(current)
                current = []
            continue
        a, b = p0 + t0 * d, p0 + t1 * d
        if not current:
            current = [a]
        current.append(b)
        if t1 < 1.0:
            parts.append(current)
            current = []
    if current:
        parts.append(current)
    out = []
    for part in parts:
        arr = np.array(part)
        keep = np.concatenate([[True], np.hypot(*np.diff(arr, axis=0).T) > 1e-9])
        arr = arr[keep]
        if len(arr) >= 2:
            out.append(arr)
    return out


def clip_polygon(points: np.ndarray, lo: tuple[float, float], hi: tuple[float, float]) -> np.ndarray:
    """Sutherland-Hodgman clip of a polygon float [N, 2] to the rectangle; float [K, 2] (K may be 0)."""
    poly = [np.asarray(p, dtype=np.float64) for p in points]
    for axis, bound, keep_greater in ((0, lo[0], True), (0, hi[0], False), (1, lo[1], True), (1, hi[1], False)):
        if not poly:
            break
        inside = lambda p: p[axis] >= bound if keep_greater else p[axis] <= bound  # noqa: E731
        out = []
        for i, cur in enumerate(poly):
            prev = poly[i - 1]
            if inside(cur):
                if not inside(prev):
                    out.append(_cross(prev, cur, axis, bound))
                out.append(cur)
            elif inside(prev):
                out.append(_cross(prev, cur, axis, bound))
        poly = out
    return np.array(poly).reshape(-1, 2)


def _cross(p: np.ndarray, q: np.ndarray, axis: int, bound: float) -> np.ndarray:
    t = (bound - p[axis]) / (q[axis] - p[axis])
    return p + t * (q - p)


def rect_corners(center, size, yaw) -> np.ndarray:
    """float [4, 2] corners of a rectangle with centre (x, y), size (l, w) and heading yaw."""
    c, s = math.cos(yaw), math.sin(yaw)
    hl, hw = size[0] / 2, size[1] / 2
    local = np.array([[hl, hw], [hl, -hw], [-hl, -hw], [-hl, hw]])
    return local @ np.array([[c, s], [-s, c]]) + np.asarray(center[:2])


def polygons_overlap(a: np.ndarray, b: np.ndarray, margin: float = 0.0) -> bool:
    """Separating-axis test for two convex polygons float [N, 2]; True if they overlap by more than
    `margin` metres along every axis (touching edges do not count)."""
    for poly in (a, b):
        edges = np.roll(poly, -1, axis=0) - poly
        for e in edges:
            n = np.array([-e[1], e[0]])
            n /= np.linalg.norm(n) + 1e-12
            pa, pb = a @ n, b @ n
            if pa.max() <= pb.min() + margin or pb.max() <= pa.min() + margin:
                return False
    return True
