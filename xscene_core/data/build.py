"""Build a dataset from the synthetic world:

    python -m xscene_core.data.build --out DIR --chunks N --seed S

writes DIR/{train,val}/<world>_<k>/ chunk folders (Occ3D labels.npz, layout.json, scene_graph.txt,
description.json, meta.json) and DIR/manifest.json. Worlds are split by seed (xscene_core.data.splits),
so no validation chunk shares a world with a training chunk; held-out `test` worlds are never written.
Chunks already complete are skipped, so an interrupted build resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from tqdm import tqdm

from ..types.scene import ENVIRONMENTS
from .chunk_io import is_complete, save_chunk
from .splits import world_seeds
from .world import SyntheticWorld

CHUNKS_PER_WORLD = 6  # one per environment, so every world shows all of them


def plan(chunks: int, seed: int, val_fraction: float, per_world: int = CHUNKS_PER_WORLD) -> list[tuple[str, int, int]]:
    """(split, world seed, chunk number) for every chunk to build."""
    if chunks <= 0:
        raise ValueError(f"--chunks must be positive, got {chunks}")
    if not 0 <= val_fraction < 1:
        raise ValueError(f"--val-fraction must lie in [0, 1), got {val_fraction}")
    n_val = round(chunks * val_fraction) if chunks > 1 else 0
    out = []
    for split, n in (("train", chunks - n_val), ("val", n_val)):
        seeds = world_seeds(split, start=seed * 1000)
        for i in range(n):
            if i % per_world == 0:
                world = next(seeds)
            out.append((split, world, i % per_world))
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="dataset folder (created; resumed if it exists)")
    ap.add_argument("--chunks", type=int, required=True, help="number of chunks in all")
    ap.add_argument("--seed", type=int, default=0, help="dataset seed (picks the worlds)")
    ap.add_argument("--val-fraction", type=float, default=0.1, help="share of chunks from validation worlds")
    args = ap.parse_args(argv)
    jobs = plan(args.chunks, args.seed, args.val_fraction)
    args.out.mkdir(parents=True, exist_ok=True)
    worlds: dict[int, SyntheticWorld] = {}
    t0 = time.time()
    done = 0
    for split, world_seed, k in tqdm(jobs, desc="chunks", unit="chunk"):
        folder = args.out / split / f"w{world_seed:06d}_{k}"
        if is_complete(folder):
            continue
        if world_seed not in worlds:
            worlds.clear()  # one world at a time keeps memory flat
            worlds[world_seed] = SyntheticWorld(world_seed)
        world = worlds[world_seed]
        env = ENVIRONMENTS[k % len(ENVIRONMENTS)]
        x, y = world.find_location(env, start=k)
        chunk = world.chunk(x, y)
        save_chunk(folder, chunk, {"world_seed": world_seed, "split": split, "environment": env,
                                   "style": {"time_of_day": world.style.time_of_day, "weather": world.style.weather}})
        done += 1
    manifest = {
        "format": "xscene.dataset/1", "seed": args.seed, "chunks": len(jobs),
        "splits": {s: sum(1 for j in jobs if j[0] == s) for s in ("train", "val")},
        "worlds": {s: sorted({j[1] for j in jobs if j[0] == s}) for s in ("train", "val")},
    }
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    print(f"wrote {done} new chunks ({len(jobs)} in all) to {args.out} in {time.time() - t0:.1f} s")


if __name__ == "__main__":
    main()
