"""Deterministic procedural noise: integer hashing, value noise and fractal (fbm) noise."""

from __future__ import annotations

import torch


# Noise ---------------------------------------------------------------------------------------------------

_M32 = 0xFFFFFFFF
# Odd multipliers per lattice axis (x, y, z, then extra keys) for the integer hash.
_PRIMES = (0x8DA6B343, 0xD8163841, 0xCB1AB31F, 0x9E3779B1, 0x85EBCA77, 0xC2B2AE3D)


def _avalanche(h: torch.Tensor) -> torch.Tensor:
    """Avalanche a 32-bit hash held in int64 (every product stays below 2**63, so nothing overflows)."""
    h = h & _M32
    h = ((h ^ (h >> 15)) * 0x2C1B3C6D) & _M32
    h = ((h ^ (h >> 12)) * 0x297A2D39) & _M32
    return h ^ (h >> 15)


def _hash(seed: int, *ints: torch.Tensor) -> torch.Tensor:
    """Deterministic hash of integer tensors (same shape, any sign) to floats in [0, 1)."""
    h = torch.full_like(ints[0], (seed * 0x27D4EB2F) & _M32)
    for k, v in enumerate(ints):
        h = h + (v & _M32) * _PRIMES[k]
    return (_avalanche(h) & 0xFFFFFF).float() * (1.0 / 16777216)


def value_noise(p: torch.Tensor, seed: int) -> torch.Tensor:
    """Smooth value noise in [0, 1] of points float [N, D] (D = 2 or 3, lattice spacing 1)."""
    i = torch.floor(p)
    f = p - i
    s = f * f * (3 - 2 * f)
    i = i.long()
    D = p.shape[1]
    base = torch.full_like(i[:, 0], (seed * 0x27D4EB2F) & _M32)
    for d in range(D):
        base = base + (i[:, d] & _M32) * _PRIMES[d]

    def corner(bits: tuple[int, ...]) -> torch.Tensor:
        off = sum(_PRIMES[d] for d in range(D) if bits[d])
        return (_avalanche(base + off) & 0xFFFFFF).float() * (1.0 / 16777216)

    # Multilinear interpolation of the 2**D corner values along x, then y (then z).
    def lerp(a, b, t):
        return a + (b - a) * t

    if D == 2:
        return lerp(lerp(corner((0, 0)), corner((1, 0)), s[:, 0]), lerp(corner((0, 1)), corner((1, 1)), s[:, 0]), s[:, 1])
    lo = lerp(lerp(corner((0, 0, 0)), corner((1, 0, 0)), s[:, 0]), lerp(corner((0, 1, 0)), corner((1, 1, 0)), s[:, 0]), s[:, 1])
    hi = lerp(lerp(corner((0, 0, 1)), corner((1, 0, 1)), s[:, 0]), lerp(corner((0, 1, 1)), corner((1, 1, 1)), s[:, 0]), s[:, 1])
    return lerp(lo, hi, s[:, 2])


def fbm(p: torch.Tensor, seed: int, octaves: int = 3) -> torch.Tensor:
    """Fractal value noise in [0, 1] (octaves at doubling frequency, halving amplitude)."""
    total, amp, norm = torch.zeros(p.shape[0], dtype=p.dtype, device=p.device), 1.0, 0.0
    for o in range(octaves):
        total = total + amp * value_noise(p * (2.0 ** o), seed + 101 * o)
        norm += amp
        amp *= 0.5
    return total / norm


def _detail(feature_m: float, footprint: torch.Tensor) -> torch.Tensor:
    """How much of a texture feature of size feature_m (metres) to show at a pixel footprint (metres per
    pixel): 1 when it spans several pixels, fading to 0 before it aliases."""
    return (1.5 - footprint / feature_m).clamp(0, 1)
