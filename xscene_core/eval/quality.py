"""Quality report: `python -m xscene_core.eval.quality [--json PATH]`.

Figures are measured on held-out `test` worlds (xscene_core.data.splits), never on training worlds.
Keys are stable (see DESIGN.md); figures of stages that do not exist yet are absent."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ..data.splits import world_seeds
from ..data.world import SyntheticWorld
from ..types.scene import ENVIRONMENTS
from .report import Row, publish

# chunk offsets (metres) of overlapping pairs: grid-aligned and arbitrary multiples of the voxel size
OVERLAP_OFFSETS = ((40.0, 0.0), (0.0, -40.0), (12.4, 27.6), (-31.2, -8.8))


def overlap_agreement(world: SyntheticWorld, x: float, y: float, offset: tuple[float, float]) -> float:
    """Share of voxels two overlapping chunks (at (x, y) and shifted by `offset`, a multiple of the
    voxel size) label identically in their shared region."""
    g = world.grid
    a = world.chunk(x, y).occupancy.labels
    b = world.chunk(x + offset[0], y + offset[1]).occupancy.labels
    di, dj = (int(round(o / g.voxel_size)) for o in offset)
    nx, ny = g.shape[0] - abs(di), g.shape[1] - abs(dj)
    sa = a[max(di, 0):max(di, 0) + nx, max(dj, 0):max(dj, 0) + ny]
    sb = b[max(-di, 0):max(-di, 0) + nx, max(-dj, 0):max(-dj, 0) + ny]
    return float((sa == sb).mean())


def world_overlap_agreement(n_worlds: int = 2) -> float:
    scores = []
    seeds = world_seeds("test")
    for _ in range(n_worlds):
        world = SyntheticWorld(next(seeds))
        for k, env in enumerate(ENVIRONMENTS[:3]):
            x, y = world.find_location(env, start=k)
            scores.append(overlap_agreement(world, x, y, OVERLAP_OFFSETS[k % len(OVERLAP_OFFSETS)]))
    return float(np.mean(scores))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--json", type=Path, default=None, help="also write {key: value} here")
    ap.add_argument("--no-markdown", action="store_true", help="do not update BENCHMARKS.md")
    ap.add_argument("--worlds", type=int, default=3, help="held-out worlds per figure")
    args = ap.parse_args(argv)
    rows = [Row("world_overlap_agreement", world_overlap_agreement(args.worlds), "", "= 1.0",
                "share of shared voxels two overlapping synthetic chunks label alike (held-out worlds)")]
    publish("Quality", rows, args.json, not args.no_markdown)


if __name__ == "__main__":
    main()
