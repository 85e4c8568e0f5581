"""Bending a lane by dragging one of its points: the dragged point moves by the full offset, the points
along the lane within `reach` metres of it (measured along the lane) follow with a smooth falloff, the
rest stay, so the lane stays a smooth, connected line."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..types.layout import Lane

DEFAULT_REACH = 15.0  # metres along the lane over which a drag fades out


def arc_length(points: np.ndarray) -> np.ndarray:
    """Cumulative length float64 [N] along a polyline points [N, 2] (0 at the first point)."""
    seg = np.linalg.norm(np.diff(points, axis=0), axis=1)
    return np.concatenate([[0.0], np.cumsum(seg)])


def lane_handles(lane: Lane, count: int = 3) -> list[int]:
    """Indices of `count` points to drag a lane by: its ends and points evenly spaced by length between
    them (distinct; fewer for a lane of fewer points)."""
    s = arc_length(lane.points)
    if count < 2:
        raise ValueError(f"lane_handles: count must be at least 2, got {count}")
    targets = np.linspace(0.0, s[-1], count)
    picks = [int(np.argmin(np.abs(s - t))) for t in targets]
    return sorted(set(picks))


def bend_lane(lane: Lane, anchor: int, offset: tuple[float, float], reach: float = DEFAULT_REACH) -> Lane:
    """The lane with point `anchor` moved by offset (dx, dy) metres and its neighbours along the lane
    moved by offset x w(d), w = (1 + cos(pi d / reach)) / 2 for the distance d along the lane from the
    anchor (0 beyond reach). ValueError for an anchor that is not a point of the lane or reach <= 0."""
    n = len(lane.points)
    if not 0 <= anchor < n:
        raise ValueError(f"bend_lane: anchor {anchor} is not a point of a lane of {n} points")
    if reach <= 0:
        raise ValueError(f"bend_lane: reach must be positive, got {reach}")
    s = arc_length(lane.points)
    d = np.abs(s - s[anchor])
    w = np.where(d < reach, 0.5 * (1.0 + np.cos(np.pi * np.minimum(d / reach, 1.0))), 0.0)
    return replace(lane, points=lane.points + w[:, None] * np.asarray(offset, dtype=np.float64)[None])
