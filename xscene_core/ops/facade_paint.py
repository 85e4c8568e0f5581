"""Wall colours of building facades: which colour of its environment's palette each building block takes.

The preview look paints its walls from this choice (ops.preview_look.surfaces, before grime and windows)
and the image model's condition carries it (facade_paint, image_condition.ViewArrays.facade_paint): the
colour of a wall is a scene attribute drawn by a seed, as a car's paint is the layout's (Box.color), so a
generated facade can take the colour the preview gives it instead of the palette's average.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from .facade_windows import wall_pixels

# Wall colours (linear RGB) per environment (types.scene.ENVIRONMENTS).
FACADE_PALETTES = {
    "downtown": ((0.35, 0.34, 0.33), (0.42, 0.36, 0.28), (0.22, 0.23, 0.25), (0.50, 0.47, 0.42),
                 (0.30, 0.16, 0.11), (0.15, 0.18, 0.22)),
    "suburban": ((0.62, 0.60, 0.55), (0.55, 0.42, 0.30), (0.40, 0.17, 0.11), (0.58, 0.56, 0.48),
                 (0.45, 0.50, 0.52)),
    "residential": ((0.60, 0.55, 0.45), (0.42, 0.20, 0.13), (0.62, 0.61, 0.58), (0.50, 0.44, 0.36),
                    (0.35, 0.40, 0.45)),
    "industrial": ((0.36, 0.38, 0.40), (0.28, 0.32, 0.36), (0.45, 0.44, 0.40), (0.30, 0.28, 0.25)),
    "rural": ((0.38, 0.12, 0.08), (0.40, 0.33, 0.24), (0.55, 0.53, 0.48)),
    "highway": ((0.42, 0.41, 0.38), (0.35, 0.35, 0.33)),
}
FACADE_BLOCK = 9.0  # metres: one colour per block of this size (about one building front)
FACADE_FEATURES = 4  # per pixel: the wall colour (linear RGB ** 1/2.2, as box_paint_features) and a known flag
_SEED_OFFSET = 50  # the look's hash stream of the colour pick (ops.preview_look.noise._hash)


def facade_blocks(inner: torch.Tensor) -> torch.Tensor:
    """long [N, 3]: the block of each point inner float [N, 3] (metres): what one colour covers (and what
    the look keys its lit windows on)."""
    return torch.floor(inner / torch.tensor([FACADE_BLOCK, FACADE_BLOCK, 1000.0])).long()


def facade_colors(inner: torch.Tensor, environment: str, seed: int) -> torch.Tensor:
    """Linear RGB wall colours float [N, 3] at points inner float [N, 3] (metres, just inside the wall's
    voxel: a stable block on faces that sit on a block edge) of a scene in `environment`, drawn by `seed`
    (the look seed)."""
    from .preview_look.noise import _hash  # the look imports this module

    if environment not in FACADE_PALETTES:
        raise ValueError(f"facade_colors: environment must be one of {', '.join(FACADE_PALETTES)}, got {environment!r}")
    palette = FACADE_PALETTES[environment]
    pick = (_hash(seed + _SEED_OFFSET, *facade_blocks(inner).T) * len(palette)).long().clamp(max=len(palette) - 1)
    return torch.tensor(palette, dtype=torch.float32)[pick]


def facade_paint(views, environment: str, seeds: Sequence[int], px=None) -> np.ndarray:
    """float32 [L, V, FACADE_FEATURES, H, W]: for each of L look seeds, per pixel of RenderedViews `views`
    the colour (linear RGB ** 1/2.2) and 1 on the man-made walls (vertical faces, as the look finds them;
    roofs are not painted by the pick), zeros elsewhere; px: the views' preview_look.pixels._pixels when the
    caller has them (None: computed here)."""
    from .preview_look.pixels import _pixels  # the look imports this module

    px = _pixels(views) if px is None else px
    k = wall_pixels(px)
    inner = px.P[k] - 0.2 * px.normal[k]
    V, H, W = px.shape
    out = np.zeros((len(seeds), V * H * W, FACADE_FEATURES), np.float32)
    out[:, k.numpy(), 3] = 1.0
    for i, seed in enumerate(seeds):
        out[i, k.numpy(), :3] = facade_colors(inner, environment, int(seed)).numpy() ** (1 / 2.2)
    return out.reshape(len(seeds), V, H, W, FACADE_FEATURES).transpose(0, 1, 4, 2, 3).copy()
