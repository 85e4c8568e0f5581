"""Pictures of a chunk for the page: 2 x 3 mosaics of its six camera views (semantic, depth, preview,
generated), front cameras on top, back cameras below, as nuScenes tools show them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xscene_core.stages.render import depth_rgb, semantic_rgb
from xscene_core.types.world import Chunk

# Ring order is FRONT_LEFT, FRONT, FRONT_RIGHT, BACK_RIGHT, BACK, BACK_LEFT; the bottom row is mirrored so
# that each back camera sits under the side it looks to.
MOSAIC_ORDER = ((0, 1, 2), (5, 4, 3))


@dataclass(frozen=True)
class Picture:
    """One image for the gallery: uint8 [H, W, 3] and its caption."""

    image: np.ndarray
    caption: str


def mosaic(views: np.ndarray) -> np.ndarray:
    """uint8 [6, H, W, 3] -> uint8 [2H + 2, 3W + 4, 3] with thin black gaps."""
    v, h, w, _ = views.shape
    if v != 6:
        raise ValueError(f"mosaic: expected 6 views, got {v}")
    out = np.zeros((2 * h + 2, 3 * w + 4, 3), np.uint8)
    for r, row in enumerate(MOSAIC_ORDER):
        for c, i in enumerate(row):
            out[r * (h + 2):r * (h + 2) + h, c * (w + 2):c * (w + 2) + w] = views[i]
    return out


def chunk_pictures(chunk: Chunk) -> list[Picture]:
    """The mosaics a chunk has so far: semantic and depth renders, the preview look, the generated images."""
    out = []
    if chunk.views is not None and len(chunk.views.rig) == 6:
        out.append(Picture(mosaic(semantic_rgb(chunk.views.semantic)), "semantic render"))
        out.append(Picture(mosaic(depth_rgb(chunk.views.depth)), "depth render"))
    if chunk.preview is not None and len(chunk.preview.rig) == 6:
        out.append(Picture(mosaic(chunk.preview.images), "preview look"))
    if chunk.images is not None and len(chunk.images.rig) == 6:
        out.append(Picture(mosaic(chunk.images.images), "generated images (diffusion)"))
    return out
