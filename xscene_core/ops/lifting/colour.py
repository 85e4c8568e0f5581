"""Colours of Gaussians from the views that see them, and a fill for the ones no view sees.

The depth test is exact: each view is rendered with the box renderer (ops.rasterize.rasterize_boxes,
every Gaussian as its opaque box, nearest hit per pixel), so a pixel's colour goes to the one Gaussian
that is the first surface on its ray and never to one hidden behind it. A Gaussian's colour is the mean
of the pixels it wins over all views: views that see it large and face-on weigh more because they give
it more pixels. Under the box renderer that mean is the least-squares colour, so re-rendering into the
lifted views cannot do better with one colour per Gaussian.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ... import semantics
from ...types.gaussians import GaussianScene
from ...types.images import MultiViewImages
from ..rasterize import ViewParams, gaussian_boxes, rasterize_boxes

# Neighbour fill: rounds of spreading colours from seen patches to unseen touching ones (each round
# reaches one patch further).
FILL_ROUNDS = 8


@dataclass
class ColourSums:
    """Pixel colours gathered per Gaussian: rgb_sum float64 [N, 3] (sum of RGB in [0, 1]); weight float64
    [N] (pixels). colors() is the mean where weight > 0."""

    rgb_sum: torch.Tensor
    weight: torch.Tensor

    @classmethod
    def zeros(cls, n: int) -> "ColourSums":
        return cls(torch.zeros(n, 3, dtype=torch.float64), torch.zeros(n, dtype=torch.float64))

    @property
    def seen(self) -> torch.Tensor:
        """bool [N]."""
        return self.weight > 0

    def colors(self) -> torch.Tensor:
        """float32 [N, 3] mean colours (0 where unseen)."""
        return (self.rgb_sum / self.weight.clamp(min=1)[:, None]).float()

    def add(self, other: "ColourSums") -> "ColourSums":
        return ColourSums(self.rgb_sum + other.rgb_sum, self.weight + other.weight)


def colour_sums(gaussians: GaussianScene, images: MultiViewImages,
                on_view: Callable[[int, int], None] | None = None) -> ColourSums:
    """Gather every view's pixels onto the first Gaussian (as its box) on each pixel's ray.

    gaussians: in the frame of images.rig's world; images: uint8 [V, H, W, 3]. on_view(done, total) is
    called after each view (progress, and the place where an interrupt can be raised).
    """
    sums = ColourSums.zeros(len(gaussians))
    if len(gaussians) == 0:
        return sums
    views = ViewParams.from_rig(images.rig)
    centers, half, rot = gaussian_boxes(gaussians)
    rgb = torch.from_numpy(images.images).reshape(len(views), -1, 3).double() / 255.0
    for v in range(len(views)):
        one = ViewParams(views.K[v:v + 1], views.T_cam_world[v:v + 1], views.height, views.width)
        idx = rasterize_boxes(centers, half, rot, one).index.reshape(-1)
        hit = idx >= 0
        sums.rgb_sum.index_add_(0, idx[hit], rgb[v][hit])
        sums.weight.index_add_(0, idx[hit], torch.ones(int(hit.sum()), dtype=torch.float64))
        if on_view is not None:
            on_view(v + 1, len(views))
    return sums


def fill_unseen(cells: np.ndarray, face: np.ndarray, labels: np.ndarray, colors: np.ndarray,
                seen: np.ndarray, rounds: int = FILL_ROUNDS) -> np.ndarray:
    """Colours for patches no view saw: first spread from seen patches of the same class and face
    direction among the 26 neighbouring fine cells (`rounds` times, each filled patch becoming a source),
    then the mean colour of the seen patches of that class and face direction, then of that class, then of
    all seen patches; the class colour only where no patch was seen.

    cells: int64 [N, 3] fine-cell coordinates (patches of different grids must not share coordinates);
    face: int64 [N] face ids; labels: uint8 [N]; colors: float [N, 3]; seen: bool [N]. Returns float32
    [N, 3] (seen colours unchanged).
    """
    n = len(face)
    out = np.asarray(colors, dtype=np.float64).copy()
    known = np.asarray(seen, dtype=bool).copy()
    if n == 0 or known.all():
        return out.astype(np.float32)
    lo = cells.min(0) - 1
    span = cells.max(0) - lo + 2
    code = lambda c, f, lab: ((lab.astype(np.int64) * 6 + f) * span[0] + (c[:, 0] - lo[0])) * span[1] * span[2] \
        + (c[:, 1] - lo[1]) * span[2] + (c[:, 2] - lo[2])  # noqa: E731
    keys = code(cells, face, labels)
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    offsets = np.array([(a, b, c) for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1) if (a, b, c) != (0, 0, 0)])
    todo = np.nonzero(~known)[0]
    # Neighbour lookups are fixed: find them once (index into the patches, -1 where none).
    nb = np.full((len(todo), len(offsets)), -1, dtype=np.int64)
    for j, o in enumerate(offsets):
        q = code(cells[todo] + o, face[todo], labels[todo])
        pos = np.clip(np.searchsorted(sorted_keys, q), 0, n - 1)
        nb[:, j] = np.where(sorted_keys[pos] == q, order[pos], -1)
    for _ in range(rounds):
        ok = (nb >= 0) & known[np.clip(nb, 0, None)]
        got = ok.any(1) & ~known[todo]
        if not got.any():
            break
        w = ok[got].astype(np.float64)
        out[todo[got]] = (out[np.clip(nb[got], 0, None)] * w[..., None]).sum(1) / w.sum(1, keepdims=True)
        known[todo[got]] = True
    s = np.asarray(seen, dtype=bool)
    lab = labels.astype(np.int64)
    # Then the mean of the seen patches of the same class and face direction, of the same class, of all
    # classes (the scene's tone: a class no view saw takes the light of the scene, not a label colour that
    # glows in a night street); the class colour only when no view saw anything.
    for group, groups in ((lab * 6 + face, semantics.NUM_CLASSES * 6), (lab, semantics.NUM_CLASSES),
                          (np.zeros_like(lab), 1)):
        rest = np.nonzero(~known)[0]
        if len(rest) == 0:
            break
        sums = np.zeros((groups, 3))
        cnt = np.zeros(groups)
        np.add.at(sums, group[s], out[s])
        np.add.at(cnt, group[s], 1)
        g = group[rest]
        has = cnt[g] > 0
        out[rest[has]] = sums[g[has]] / cnt[g[has], None]
        known[rest[has]] = True
    out[~known] = semantics.COLORS[labels[~known]] / 255.0
    return out.astype(np.float32)
