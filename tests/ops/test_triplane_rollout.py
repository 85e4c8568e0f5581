"""Triplane rollout into one (X+Z) x (Y+Z) map and back (appendix A.2)."""

import pytest
import torch

from xscene_core.ops.triplane import corner_mask, rollout, unroll


def _planes(b=2, c=3, x=10, y=7, z=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, c, x, y, generator=g), torch.randn(b, c, x, z, generator=g), torch.randn(b, c, y, z, generator=g))


def test_round_trip_is_exact():
    xy, xz, yz = _planes()
    rolled = rollout(xy, xz, yz)
    assert rolled.shape == (2, 3, 14, 11)
    back = unroll(rolled, (10, 7, 4))
    for a, b in zip((xy, xz, yz), back):
        assert torch.equal(a, b)
    # and the map is fully determined by the planes: rolling the unrolled planes gives it back
    assert torch.equal(rollout(*back), rolled)


def test_layout_and_zero_corner():
    xy, xz, yz = _planes(b=1, c=1, x=5, y=6, z=3)
    rolled = rollout(xy, xz, yz)[0, 0]
    assert torch.equal(rolled[:5, :6], xy[0, 0])
    assert torch.equal(rolled[:5, 6:], xz[0, 0])          # rows share x with the xy block
    assert torch.equal(rolled[5:, :6], yz[0, 0].T)        # columns share y with the xy block
    assert torch.count_nonzero(rolled[5:, 6:]) == 0
    m = corner_mask((5, 6, 3))
    assert m.shape == (8, 9) and not m[5:, 6:].any() and m.sum() == 8 * 9 - 9


def test_unbatched_and_gradients():
    xy, xz, yz = (p[0].requires_grad_() for p in _planes())
    rolled = rollout(xy, xz, yz)
    rolled.sum().backward()
    assert all(torch.equal(p.grad, torch.ones_like(p)) for p in (xy, xz, yz))


def test_shape_errors():
    xy, xz, yz = _planes()
    with pytest.raises(ValueError):
        rollout(xy, xz[..., :3, :], yz)
    with pytest.raises(ValueError):
        unroll(rollout(xy, xz, yz), (10, 7, 5))
