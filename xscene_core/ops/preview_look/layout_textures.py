"""Box lookups from the layout: which box a surface point lies in (vehicle and building textures)."""

from __future__ import annotations

import torch

from ...types.layout import Layout
from ..condition_maps import box_solids


def _box_lookup(layout: Layout | None, P: torch.Tensor, labels: tuple[int, ...], margin: float = 0.3):
    """For points [M, 3], the index of the layout box (of the given classes) containing them (grown by
    margin), -1 where none, and the points in that box's frame normalised to [-0.5, 0.5]^3."""
    M = P.shape[0]
    idx = torch.full((M,), -1, dtype=torch.long)
    local = torch.zeros(M, 3)
    if layout is None or M == 0:
        return idx, local
    sel = [k for k, b in enumerate(layout.boxes) if b.label in labels]
    if not sel:
        return idx, local
    boxes = [layout.boxes[k] for k in sel]
    c, h, rot = box_solids(boxes)
    rel = torch.einsum("bji,mbj->mbi", rot, P[:, None, :] - c[None])  # [M, B, 3] in box frames
    inside = (rel.abs() <= h[None] + margin).all(-1)
    dist = (rel.abs() - h[None]).clamp(min=0).norm(dim=-1) + (~inside) * 1e9
    best = dist.argmin(1)
    got = inside.any(1)
    idx[got] = torch.tensor(sel)[best[got]]
    local[got] = (rel[torch.arange(M), best] / (2 * h[best]))[got]
    return idx, local
