"""Condition encoders of the triplane latent diffusion model (X-Scene Sec. 3.2, appendix A.2).

- `OccupancyCondition`: one batch of conditions as tensors: the BEV layout map, the layout's boxes and
  the caption's sentence embedding, each with a per-sample "present" flag so that condition dropout
  and classifier-free guidance can remove any of them.
- `BevEncoder`: the BEV layout map (ops.condition_maps, [Cb, X, Y]) through a small ConvNet down to the
  triplane's xy resolution. It is zero-preserving (convolutions without bias, SiLU, no affine norms), so
  an all-zero map gives all-zero features: "no layout" and "layout zeroed" are the same input and the
  same unconditional branch.
- `BoxEmbedder`: class embedding + Fourier features of the box geometry through an MLP, one token per
  box.
- `ConditionTokens`: the cross-attention tokens [null, boxes..., text] and their attention mask. The
  learned null token is always visible, so a sample with every token dropped still attends to
  something (the unconditional branch).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import semantics
from ..types.layout import Layout
from ..types.occupancy import GridSpec

BOX_DIMS = 7  # (x, y, z, l, w, h, yaw) in metres / radians, chunk frame
BOX_FEATURES = 8  # normalised (x, y, z, log l, log w, log h, sin yaw, cos yaw)


@dataclass
class OccupancyCondition:
    """A batch of B conditions.

    bev: float [B, Cb, X, Y] BEV layout map (ops.condition_maps.BEV_CHANNELS, values in [0, 1]);
    box_labels: long [B, N] Occ3D ids (0 in padding); box_geometry: float [B, N, 7] (x, y, z, l, w, h,
    yaw) in metres / radians (padding: a unit box at the origin); box_mask: bool [B, N] real boxes;
    text: float [B, E] caption sentence embedding; text_mask: bool [B] whether the caption is given.
    A dropped BEV map is all zeros; dropped boxes / text are masked out.
    """

    bev: torch.Tensor
    box_labels: torch.Tensor
    box_geometry: torch.Tensor
    box_mask: torch.Tensor
    text: torch.Tensor
    text_mask: torch.Tensor

    def __post_init__(self) -> None:
        b = self.bev.shape[0]
        if self.bev.ndim != 4:
            raise ValueError(f"OccupancyCondition.bev: expected [B, C, X, Y], got {list(self.bev.shape)}")
        n = self.box_labels.shape[1] if self.box_labels.ndim == 2 else -1
        if (tuple(self.box_labels.shape) != (b, n) or tuple(self.box_geometry.shape) != (b, n, BOX_DIMS)
                or tuple(self.box_mask.shape) != (b, n)):
            raise ValueError("OccupancyCondition: box tensors must be labels [B, N], geometry [B, N, 7], mask [B, N]; got "
                             f"{list(self.box_labels.shape)}, {list(self.box_geometry.shape)}, {list(self.box_mask.shape)}")
        if self.text.ndim != 2 or self.text.shape[0] != b or tuple(self.text_mask.shape) != (b,):
            raise ValueError(f"OccupancyCondition: text must be [B, E] and text_mask [B] with B = {b}; got "
                             f"{list(self.text.shape)}, {list(self.text_mask.shape)}")

    @property
    def batch_size(self) -> int:
        return int(self.bev.shape[0])

    def to(self, device) -> "OccupancyCondition":
        return OccupancyCondition(*(getattr(self, f.name).to(device) for f in fields(self)))

    def drop(self, keep_bev: torch.Tensor | None = None, keep_boxes: torch.Tensor | None = None,
             keep_text: torch.Tensor | None = None) -> "OccupancyCondition":
        """The batch with conditions removed where a keep flag (bool [B]) is False; None keeps all."""
        out = self
        if keep_bev is not None:
            out = replace(out, bev=out.bev * keep_bev.to(out.bev.dtype).view(-1, 1, 1, 1))
        if keep_boxes is not None:
            out = replace(out, box_mask=out.box_mask & keep_boxes.view(-1, 1))
        if keep_text is not None:
            out = replace(out, text_mask=out.text_mask & keep_text.view(-1))
        return out

    def without_layout(self) -> "OccupancyCondition":
        """BEV map zeroed and boxes removed; the caption is kept."""
        none = torch.zeros(self.batch_size, dtype=torch.bool, device=self.bev.device)
        return self.drop(keep_bev=none, keep_boxes=none)

    def unconditional(self) -> "OccupancyCondition":
        """Every condition removed (the classifier-free guidance branch)."""
        none = torch.zeros(self.batch_size, dtype=torch.bool, device=self.bev.device)
        return self.drop(none, none, none)

    @staticmethod
    def cat(items: Sequence["OccupancyCondition"]) -> "OccupancyCondition":
        """Concatenate batches (box lists padded to the longest)."""
        n = max(c.box_labels.shape[1] for c in items)

        def pad(t: torch.Tensor, value: float) -> torch.Tensor:
            extra = n - t.shape[1]
            if extra == 0:
                return t
            shape = list(t.shape)
            shape[1] = extra
            return torch.cat([t, t.new_full(shape, value)], 1)

        return OccupancyCondition(
            torch.cat([c.bev for c in items]),
            torch.cat([pad(c.box_labels, 0) for c in items]),
            torch.cat([pad(c.box_geometry, 1.0) for c in items]),
            torch.cat([pad(c.box_mask, False) for c in items]),
            torch.cat([c.text for c in items]),
            torch.cat([c.text_mask for c in items]),
        )

    @classmethod
    def from_arrays(cls, bev: Sequence[np.ndarray], boxes: Sequence[np.ndarray], labels: Sequence[np.ndarray],
                    text: Sequence[np.ndarray | None], text_dim: int, max_boxes: int | None = None) -> "OccupancyCondition":
        """Collate per-sample arrays: bev float [Cb, X, Y] (or uint8 coverage x 255), boxes float [N_i, 7],
        labels int [N_i], text float [E] or None. Boxes beyond max_boxes are dropped (nearest to the chunk
        centre kept)."""
        b = len(bev)
        if not (len(boxes) == len(labels) == len(text) == b):
            raise ValueError("OccupancyCondition.from_arrays: bev, boxes, labels and text need one entry per sample")
        sel = []
        for bx in boxes:
            bx = np.asarray(bx, dtype=np.float32).reshape(-1, BOX_DIMS)
            order = np.argsort(np.hypot(bx[:, 0], bx[:, 1]), kind="stable")
            sel.append(order[:max_boxes] if max_boxes is not None else order)
        n = max([len(s) for s in sel] + [1])
        geo = np.zeros((b, n, BOX_DIMS), np.float32)
        geo[..., 3:6] = 1.0
        lab = np.zeros((b, n), np.int64)
        mask = np.zeros((b, n), bool)
        for i, (bx, lb, s) in enumerate(zip(boxes, labels, sel)):
            k = len(s)
            geo[i, :k] = np.asarray(bx, np.float32).reshape(-1, BOX_DIMS)[s]
            lab[i, :k] = np.asarray(lb, np.int64).reshape(-1)[s]
            mask[i, :k] = True
        txt = np.zeros((b, text_dim), np.float32)
        tmask = np.zeros(b, bool)
        for i, t in enumerate(text):
            if t is not None:
                txt[i] = np.asarray(t, np.float32).reshape(text_dim)
                tmask[i] = True
        bev_t = torch.stack([torch.as_tensor(np.asarray(m)) for m in bev])
        bev_t = bev_t.float() / 255.0 if bev_t.dtype == torch.uint8 else bev_t.float()
        return cls(bev_t, torch.from_numpy(lab), torch.from_numpy(geo), torch.from_numpy(mask),
                   torch.from_numpy(txt), torch.from_numpy(tmask))

    @classmethod
    def from_layouts(cls, layouts: Sequence[Layout | None], text: Sequence[np.ndarray | None], grid: GridSpec,
                     text_dim: int, max_boxes: int | None = None) -> "OccupancyCondition":
        """Conditions of layouts (chunk frame; None = no layout: zero BEV map, no boxes) and caption
        embeddings (None = no caption)."""
        from ..ops.condition_maps import BEV_CHANNELS, bev_layout_map

        bev, boxes, labels = [], [], []
        for lay in layouts:
            if lay is None:
                bev.append(np.zeros((len(BEV_CHANNELS), *grid.shape[:2]), np.float32))
                boxes.append(np.zeros((0, BOX_DIMS), np.float32))
                labels.append(np.zeros(0, np.int64))
            else:
                bev.append(bev_layout_map(lay, grid).channels)
                boxes.append(lay.box_array())
                labels.append(lay.box_labels())
        return cls.from_arrays(bev, boxes, labels, text, text_dim, max_boxes)


def flip_boxes(boxes: np.ndarray, flip_x: bool, flip_y: bool, grid: GridSpec) -> np.ndarray:
    """Mirror boxes float [N, 7] like the volume: x -> lower+upper - x (yaw -> pi - yaw), and / or
    y -> lower+upper - y (yaw -> -yaw)."""
    out = np.array(boxes, dtype=np.float32, copy=True).reshape(-1, BOX_DIMS)
    if flip_x:
        out[:, 0] = grid.lower[0] + grid.upper[0] - out[:, 0]
        out[:, 6] = math.pi - out[:, 6]
    if flip_y:
        out[:, 1] = grid.lower[1] + grid.upper[1] - out[:, 1]
        out[:, 6] = -out[:, 6]
    return out


def fourier_features(x: torch.Tensor, bands: int) -> torch.Tensor:
    """[..., F] -> [..., F (1 + 2 bands)]: x with sin / cos at frequencies pi 2^k, k < bands."""
    freqs = math.pi * 2.0 ** torch.arange(bands, dtype=x.dtype, device=x.device)
    xf = x[..., None] * freqs
    return torch.cat([x, xf.sin().flatten(-2), xf.cos().flatten(-2)], -1)


class BevEncoder(nn.Module):
    """BEV layout map float [B, Cb, X, Y] -> features float [B, out_channels, X', Y'].

    `downsample` stride-2 steps take the grid to the plane resolution (an area resize follows if it is
    still off). Zero-preserving: bias-free convolutions and SiLU, so encoder(0) == 0 exactly.
    """

    def __init__(self, in_channels: int, hidden: Sequence[int], out_channels: int, downsample: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        widths = list(hidden) or [out_channels]
        for i, w in enumerate(widths):
            stride = 2 if i < downsample else 1
            layers += [nn.Conv2d(c, w, 3, stride=stride, padding=1, bias=False), nn.SiLU()]
            c = w
        for _ in range(max(0, downsample - len(widths))):  # more downsampling than layers
            layers += [nn.Conv2d(c, c, 3, stride=2, padding=1, bias=False), nn.SiLU()]
        layers.append(nn.Conv2d(c, out_channels, 3, padding=1, bias=False))
        self.net = nn.Sequential(*layers)

    def forward(self, bev: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        h = self.net(bev)
        if tuple(h.shape[-2:]) != tuple(size):
            h = F.interpolate(h, size=size, mode="area" if h.shape[-1] >= size[-1] else "bilinear")
        return h


class BoxEmbedder(nn.Module):
    """Boxes -> tokens: class embedding [D] + Fourier features of the normalised geometry (centre over
    the grid's half extents, log size, sin / cos yaw) through an MLP to [D]."""

    def __init__(self, dim: int, bands: int, grid: GridSpec, num_classes: int = semantics.NUM_CLASSES) -> None:
        super().__init__()
        self.bands = bands
        self.class_embed = nn.Embedding(num_classes, dim)
        geo = BOX_FEATURES * (1 + 2 * bands)
        self.mlp = nn.Sequential(nn.Linear(dim + geo, dim), nn.SiLU(), nn.Linear(dim, dim))
        lo, hi = np.asarray(grid.lower, np.float32), np.asarray(grid.upper, np.float32)
        self.register_buffer("grid_centre", torch.from_numpy((lo + hi) / 2), persistent=False)
        self.register_buffer("grid_half", torch.from_numpy((hi - lo) / 2), persistent=False)

    def features(self, geometry: torch.Tensor) -> torch.Tensor:
        """float [..., 7] metres -> normalised float [..., 8]."""
        c = (geometry[..., :3] - self.grid_centre) / self.grid_half
        size = geometry[..., 3:6].clamp(min=1e-3).log()
        yaw = geometry[..., 6:7]
        return torch.cat([c, size, yaw.sin(), yaw.cos()], -1)

    def forward(self, labels: torch.Tensor, geometry: torch.Tensor) -> torch.Tensor:
        g = fourier_features(self.features(geometry), self.bands)
        return self.mlp(torch.cat([self.class_embed(labels), g], -1))


class ConditionTokens(nn.Module):
    """Cross-attention tokens of a condition batch: [null token, one per box, one for the caption].

    Returns (tokens float [B, 1 + N + 1, D], mask bool [B, 1 + N + 1]); masked tokens are ignored by the
    attention, the null token never is.
    """

    def __init__(self, dim: int, text_dim: int, bands: int, grid: GridSpec) -> None:
        super().__init__()
        self.null = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.boxes = BoxEmbedder(dim, bands, grid)
        self.text = nn.Sequential(nn.Linear(text_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, cond: OccupancyCondition) -> tuple[torch.Tensor, torch.Tensor]:
        b = cond.batch_size
        box = self.boxes(cond.box_labels, cond.box_geometry) * cond.box_mask[..., None]
        txt = self.text(cond.text)[:, None] * cond.text_mask.view(b, 1, 1)
        tokens = torch.cat([self.null.expand(b, -1, -1), box, txt], 1)
        mask = torch.cat([torch.ones(b, 1, dtype=torch.bool, device=box.device), cond.box_mask,
                          cond.text_mask.view(b, 1)], 1)
        return tokens, mask
