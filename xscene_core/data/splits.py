"""Train / validation / test split of synthetic worlds, by world seed: no two splits share a world.

`test` worlds are held out for `xscene_core.eval.quality`; training never reads them."""

from __future__ import annotations

import zlib
from typing import Iterator

SPLITS = ("train", "val", "test")
_SHARES = (80, 90)  # split_of hashes a seed to 0..99: < 80 train, < 90 val, else test


def split_of(world_seed: int) -> str:
    """The split a world seed belongs to (a fixed hash, so the answer never changes)."""
    h = zlib.crc32(f"xscene-split:{int(world_seed)}".encode()) % 100
    return "train" if h < _SHARES[0] else "val" if h < _SHARES[1] else "test"


def world_seeds(split: str, start: int = 0) -> Iterator[int]:
    """World seeds of one split, in increasing order from `start`."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; use one of {SPLITS}")
    seed = int(start)
    while True:
        if split_of(seed) == split:
            yield seed
        seed += 1
