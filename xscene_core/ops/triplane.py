"""Roll the three planes of a triplane out into one 2D map and back (X-Scene appendix A.2).

The rolled-out map is (X+Z) x (Y+Z): the xy plane in the top-left X x Y block, the xz plane to its right
(rows 0..X, columns Y..Y+Z), the yz plane transposed below it (rows X..X+Z, columns 0..Y) and a
zero-padded Z x Z corner. Rows of xy and xz share x; columns of xy and the transposed yz share y, so a 2D
convolution over the map sees aligned neighbours across the block borders. The triplane diffusion model
denoises this map.

    rolled = rollout(xy, xz, yz)            # [..., C, X+Z, Y+Z]
    xy, xz, yz = unroll(rolled, (X, Y, Z))  # exact inverse
"""

from __future__ import annotations

import torch


def rollout(xy: torch.Tensor, xz: torch.Tensor, yz: torch.Tensor) -> torch.Tensor:
    """Three planes into one map.

    xy: [..., C, X, Y], xz: [..., C, X, Z], yz: [..., C, Y, Z] (same leading dims, dtype, device).
    Returns [..., C, X+Z, Y+Z] with zeros in the bottom-right Z x Z corner.
    """
    if xy.ndim < 3 or xz.ndim != xy.ndim or yz.ndim != xy.ndim:
        raise ValueError(f"rollout: expected [..., C, H, W] planes of equal rank, got {list(xy.shape)}, "
                         f"{list(xz.shape)}, {list(yz.shape)}")
    *lead, c, x, y = xy.shape
    z = xz.shape[-1]
    if list(xz.shape) != [*lead, c, x, z] or list(yz.shape) != [*lead, c, y, z]:
        raise ValueError(f"rollout: plane shapes disagree: xy {list(xy.shape)}, xz {list(xz.shape)}, yz {list(yz.shape)}")
    out = xy.new_zeros(*lead, c, x + z, y + z)
    out[..., :x, :y] = xy
    out[..., :x, y:] = xz
    out[..., x:, :y] = yz.transpose(-1, -2)
    return out


def unroll(rolled: torch.Tensor, resolution: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The inverse of `rollout`: rolled [..., C, X+Z, Y+Z] and (X, Y, Z) -> (xy, xz, yz).

    The corner block is dropped. The returned planes are views of `rolled` (yz a transposed view); call
    .contiguous() where a copy is needed.
    """
    x, y, z = (int(v) for v in resolution)
    if rolled.ndim < 3 or tuple(rolled.shape[-2:]) != (x + z, y + z):
        raise ValueError(f"unroll: expected [..., C, {x + z}, {y + z}] for resolution {(x, y, z)}, got {list(rolled.shape)}")
    return rolled[..., :x, :y], rolled[..., :x, y:], rolled[..., x:, :y].transpose(-1, -2)


def corner_mask(resolution: tuple[int, int, int], device=None) -> torch.Tensor:
    """bool [X+Z, Y+Z]: True where the rolled-out map holds plane features, False in the padded corner."""
    x, y, z = (int(v) for v in resolution)
    m = torch.ones(x + z, y + z, dtype=torch.bool, device=device)
    m[x:, y:] = False
    return m
