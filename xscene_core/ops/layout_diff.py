"""What an edit changed in a layout, and where: the BEV region local regeneration resamples.

    change = layout_change(old, new)            # boxes removed / added (a moved box is both), lanes, areas
    dist = change_distance(change, grid)        # float [X, Y] metres from each BEV cell to the change
    region = dist <= margin                     # the cells to regenerate
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..types.layout import Box, Lane, Layout, MapPolygon
from ..types.occupancy import GridSpec
from .geometry import polygon_mask
from .road_areas import LANE_WIDTH


@dataclass(frozen=True)
class LayoutChange:
    """The parts of two layouts that differ: boxes only in the old one (removed or moved away), boxes only
    in the new one (added or moved there), lanes and areas only in one of them."""

    removed: tuple[Box, ...] = ()
    added: tuple[Box, ...] = ()
    lanes: tuple[Lane, ...] = ()
    polygons: tuple[MapPolygon, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.removed or self.added or self.lanes or self.polygons)

    @property
    def boxes(self) -> tuple[Box, ...]:
        return self.removed + self.added


def _only_in(a, b) -> tuple:
    return tuple(x for x in a if not any(x == y for y in b))


def layout_change(old: Layout, new: Layout) -> LayoutChange:
    """The difference of two layouts of one chunk (element equality; a box whose class, pose, size or state
    changed counts as removed and added). A box's paint (Box.color) is no part of the occupancy, so a box
    repainted and nothing else is no change here; the images, which read it, are made again anyway."""
    before, after = (tuple(replace(b, color="") for b in boxes) for boxes in (old.boxes, new.boxes))
    return LayoutChange(_only_in(before, after), _only_in(after, before),
                        _only_in(old.lanes, new.lanes) + _only_in(new.lanes, old.lanes),
                        _only_in(old.polygons, new.polygons) + _only_in(new.polygons, old.polygons))


def change_mask(change: LayoutChange, grid: GridSpec, lane_width: float = LANE_WIDTH) -> np.ndarray:
    """bool [X, Y]: BEV cells whose centre lies on a changed box footprint, lane (its width) or area."""
    xs, ys = grid.axis_centers(0), grid.axis_centers(1)
    mask = np.zeros(grid.shape[:2], bool)
    for box in change.boxes:
        mask |= polygon_mask(box.corners_bev(), xs, ys)
        (i, j, _), inside = grid.index_of(np.array([box.center[0], box.center[1], grid.lower[2]]))
        if inside:  # a box thinner than a cell still marks its cell
            mask[i, j] = True
    for poly in change.polygons:
        mask |= polygon_mask(poly.points, xs, ys)
    if change.lanes:
        from .road_areas import road_map_from_lanes

        for poly in road_map_from_lanes(change.lanes, lane_width, sidewalks=False)[0]:
            mask |= polygon_mask(poly.points, xs, ys)
    return mask


def change_distance(change: LayoutChange, grid: GridSpec) -> np.ndarray:
    """float [X, Y]: metres from each BEV cell centre to the nearest changed cell (0 on the change; inf
    everywhere when nothing changed)."""
    from scipy.ndimage import distance_transform_edt

    mask = change_mask(change, grid)
    if not mask.any():
        return np.full(grid.shape[:2], np.inf)
    return distance_transform_edt(~mask) * grid.voxel_size
