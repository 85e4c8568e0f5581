"""Window grids of building facades: where the preview look puts the windows and shop fronts of a wall.

The look draws them (ops.preview_look.surfaces) and the image model's condition marks them (window_masks)
from this one grid: the floors and columns follow from where the wall stands and the environment, not
from a look seed (the seed picks only the wall colours and which windows are lit), so a generated facade
can have its windows where the preview has them instead of an averaged grey wall.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .. import semantics

WINDOW_KINDS = ("window",)  # the condition's mark of the glazing (image_condition.AREA_KINDS)
# Per environment: floor height (m), column spacing (m), window share of a floor's height.
WINDOW_GRIDS = {
    "downtown": (3.4, 2.2, 0.55), "suburban": (3.0, 3.4, 0.45), "residential": (3.0, 3.0, 0.45),
    "industrial": (5.0, 6.0, 0.25), "rural": (3.0, 4.0, 0.35), "highway": (3.0, 6.0, 0.0),
}
SHOP_FRONTS = ("downtown",)  # environments whose ground floor is shop glazing instead of windows
WINDOW_MIN_HEIGHT = 0.8  # metres above the ground: no window starts lower


@dataclass
class WindowGrid:
    """Facade coordinates of N wall points: window bool [N] (glazing), floor float [N] and column float [N]
    (the floor and column indices, whole numbers; the look keys its lit windows on them)."""

    window: torch.Tensor
    floor: torch.Tensor
    column: torch.Tensor


def window_grid(P: torch.Tensor, normal: torch.Tensor, ground_z: float, environment: str) -> WindowGrid:
    """The window grid at world points P float [N, 3] (metres) of walls whose (smoothed, horizontal) normals
    are normal float [N, 3], over a ground at height ground_z (metres), in an environment of
    types.scene.ENVIRONMENTS."""
    if environment not in WINDOW_GRIDS:
        raise ValueError(f"window_grid: environment must be one of {', '.join(WINDOW_GRIDS)}, got {environment!r}")
    floor_h, col_w, win_frac = WINDOW_GRIDS[environment]
    s = P[:, 0] * -normal[:, 1] + P[:, 1] * normal[:, 0]  # along the wall
    zr = P[:, 2] - ground_z
    floor_i = torch.floor(zr / floor_h)
    fz = zr / floor_h - floor_i
    col_i = torch.floor(s / col_w)
    fs = s / col_w - col_i
    lo_z = 0.5 - win_frac / 2 + 0.05
    win = (fz > lo_z) & (fz < lo_z + win_frac) & (fs > 0.18) & (fs < 0.82) & (zr > WINDOW_MIN_HEIGHT)
    if environment in SHOP_FRONTS:
        # Shop fronts: tall glazing split by mullions every half column.
        shop = (fz > 0.12) & (fz < 0.8) & ((fs * 2) % 1 > 0.08)
        win = torch.where(floor_i == 0, shop, win)
    return WindowGrid(win, floor_i, col_i)


def wall_pixels(px) -> torch.Tensor:
    """long [K]: the flat indices of the man-made walls among preview_look.pixels._pixels px (vertical by
    their smoothed normals, as the look finds them; roofs and undersides left out)."""
    return torch.nonzero((px.sem == semantics.ID["manmade"]) & (px.smooth[:, 2].abs() < 0.5))[:, 0]


def window_masks(views, environment: str, px=None) -> np.ndarray:
    """bool [V, 1, H, W]: the pixels of RenderedViews `views` that show a window or shop front of a man-made
    wall, as the preview look of a scene in `environment` draws them (same normals, same ground height);
    px: the views' preview_look.pixels._pixels when the caller has them (None: computed here)."""
    from .preview_look.pixels import _ground_height, _pixels  # the look imports this module

    px = _pixels(views) if px is None else px
    k = wall_pixels(px)
    out = torch.zeros(px.P.shape[0], dtype=torch.bool)
    if len(k):
        out[k] = window_grid(px.P[k], px.smooth[k], _ground_height(px), environment).window
    return out.reshape(px.shape)[:, None].numpy()
