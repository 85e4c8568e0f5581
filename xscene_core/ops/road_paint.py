"""Road paint from the layout: lane markings and zebra crossings as alpha maps on the world's ground plane.

The preview look paints them on the road (ops.preview_look.surfaces) and the image model's condition draws
them into each camera (ops.condition_maps.ground_areas), from this one canvas.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import maximum_filter

from ..types.layout import Layout
from .geometry import polygon_mask, sample_polyline

PAINT_RES = 0.05  # metres per cell of the road-paint canvas


@dataclass
class PaintCanvas:
    """Road paint in the world plane: alpha float [2, Y, X] (white, yellow) over cells of PAINT_RES
    metres starting at (x0, y0)."""

    alpha: torch.Tensor
    x0: float
    y0: float

    def sample(self, xy: torch.Tensor) -> torch.Tensor:
        """Paint alpha float [N, 2] at world points xy float [N, 2] (bilinear, 0 outside)."""
        Y, X = self.alpha.shape[1:]
        gx = (xy[:, 0] - self.x0) / PAINT_RES / (X - 1) * 2 - 1
        gy = (xy[:, 1] - self.y0) / PAINT_RES / (Y - 1) * 2 - 1
        grid = torch.stack([gx, gy], -1)[None, None]
        out = F.grid_sample(self.alpha[None], grid.float(), align_corners=True, padding_mode="zeros")
        return out[0, :, 0].T


def paint_canvas(layout: Layout) -> PaintCanvas | None:
    """Lane markings of a layout: dashed white lane dividers, double yellow road dividers, solid white
    road edges and stop lines, zebra crosswalks."""
    items = [l.points for l in layout.lines] + [p.points for p in layout.polygons if p.kind == "crosswalk"]
    if not items:
        return None
    pts = np.concatenate(items)
    lo, hi = pts.min(0) - 1.0, pts.max(0) + 1.0
    lo, hi = np.maximum(lo, -90.0), np.minimum(hi, 90.0)  # a layout is a chunk; bounds the canvas size
    if (hi <= lo).any():
        return None
    X, Y = (np.ceil((hi - lo) / PAINT_RES).astype(int) + 1).tolist()
    canvas = np.zeros((2, Y, X), dtype=np.float32)

    # Line centres are marked per (channel, brush width) and widened by one max-pool per group.
    marks: dict[tuple[int, int], np.ndarray] = {}

    def stamp(points: np.ndarray, channel: int, width: float, dash: tuple[float, float] | None = None) -> None:
        s, arc = sample_polyline(points, PAINT_RES / 2)
        if dash is not None:
            s = s[(arc % (dash[0] + dash[1])) < dash[0]]
        ij = np.round((s - lo) / PAINT_RES).astype(np.int64)
        ok = (ij[:, 0] >= 0) & (ij[:, 0] < X) & (ij[:, 1] >= 0) & (ij[:, 1] < Y)
        k = max(1, int(round(width / PAINT_RES))) | 1
        m = marks.setdefault((channel, k), np.zeros((Y, X), dtype=np.float32))
        m[ij[ok, 1], ij[ok, 0]] = 1.0

    def offset(points: np.ndarray, d: float) -> np.ndarray:
        t = np.gradient(points, axis=0)
        t /= np.linalg.norm(t, axis=1, keepdims=True).clip(1e-9)
        return points + d * np.c_[-t[:, 1], t[:, 0]]

    for line in layout.lines:
        if line.kind == "lane_divider":
            stamp(line.points, 0, 0.15, (3.0, 6.0))
        elif line.kind == "road_divider":
            dense, _ = sample_polyline(line.points, 0.5)
            stamp(offset(dense, 0.12), 1, 0.12)
            stamp(offset(dense, -0.12), 1, 0.12)
        elif line.kind == "road_edge":
            stamp(line.points, 0, 0.15)
        elif line.kind == "stop_line":
            stamp(line.points, 0, 0.45)
    for (channel, k), m in marks.items():
        np.maximum(canvas[channel], maximum_filter(m, size=k, mode="constant"), out=canvas[channel])
    for poly in layout.polygons:
        if poly.kind != "crosswalk":
            continue
        # Zebra bars run along the crossing's long side, 0.6 m painted, 0.6 m apart; work in its bbox only.
        p = poly.points
        edges = np.roll(p, -1, 0) - p
        u = edges[np.argmax(np.linalg.norm(edges, axis=1))]
        u = u / np.linalg.norm(u)
        (i0, j0), (i1, j1) = np.clip(np.floor((p.min(0) - lo) / PAINT_RES), 0, None).astype(int), \
            np.minimum(np.ceil((p.max(0) - lo) / PAINT_RES).astype(int) + 1, (X, Y))
        if i1 <= i0 or j1 <= j0:
            continue
        xs = lo[0] + np.arange(i0, i1) * PAINT_RES
        ys = lo[1] + np.arange(j0, j1) * PAINT_RES
        inside = polygon_mask(p, xs, ys).T  # [y, x]
        stripes = ((xs[None, :] * u[0] + ys[:, None] * u[1]) % 1.2) < 0.6
        region = canvas[0, j0:j1, i0:i1]
        np.maximum(region, (inside & stripes).astype(np.float32), out=region)
    return PaintCanvas(torch.from_numpy(canvas), float(lo[0]), float(lo[1]))
