"""Deterministic randomness keyed by world coordinates: the world is a pure function of its seed, so
every random choice draws from a generator seeded by (world seed, purpose, integer keys)."""

from __future__ import annotations

import zlib

import numpy as np


def _zigzag(k: int) -> int:
    """Map any int to a non-negative int (SeedSequence needs non-negative entropy words)."""
    k = int(k)
    return 2 * k if k >= 0 else -2 * k - 1


def rng_for(seed: int, purpose: str, *keys: int) -> np.random.Generator:
    """A generator that depends only on (seed, purpose, keys): the same keys give the same draws."""
    words = [_zigzag(seed), zlib.crc32(purpose.encode()), *(_zigzag(k) for k in keys)]
    return np.random.default_rng(np.random.SeedSequence(words))


class ValueNoise2D:
    """Smooth 2D value noise in [0, 1] over the world plane, deterministic from a seed.

    Lattice values come from a seeded table indexed by hashed integer cell coordinates, interpolated
    with a smoothstep; `scale` is the lattice spacing in metres.
    """

    def __init__(self, seed: int, purpose: str, scale: float) -> None:
        rng = rng_for(seed, "noise:" + purpose)
        self.table = rng.random(4096)
        self.perm = rng.permutation(4096).astype(np.int64)
        self.scale = float(scale)

    def _lattice(self, ix: np.ndarray, iy: np.ndarray) -> np.ndarray:
        h = self.perm[(ix * 92821 + self.perm[iy % 4096]) % 4096]
        return self.table[h]

    def __call__(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """x, y: float arrays (metres, same shape) -> float64 noise in [0, 1], same shape."""
        fx, fy = np.asarray(x) / self.scale, np.asarray(y) / self.scale
        ix, iy = np.floor(fx).astype(np.int64), np.floor(fy).astype(np.int64)
        tx, ty = fx - ix, fy - iy
        sx, sy = tx * tx * (3 - 2 * tx), ty * ty * (3 - 2 * ty)
        v00, v10 = self._lattice(ix, iy), self._lattice(ix + 1, iy)
        v01, v11 = self._lattice(ix, iy + 1), self._lattice(ix + 1, iy + 1)
        return (v00 * (1 - sx) + v10 * sx) * (1 - sy) + (v01 * (1 - sx) + v11 * sx) * sy
