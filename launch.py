"""xscene entry point.

    python launch.py generate-world --seed 0 --size 3 --out out/world
        a size x size block of 80 m chunks from the synthetic world: Occ3D labels.npz, layout.json,
        scene_graph.txt and description.json per chunk, world.json, and a top-down overview.png

The editor (python launch.py with no sub-command) arrives with the editor issue; until then the
sub-commands above are what the entry point does.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

for _key, _value in {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
                     "GRADIO_ANALYTICS_ENABLED": "False", "OMP_WAIT_POLICY": "PASSIVE"}.items():
    os.environ.setdefault(_key, _value)


def generate_world(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from xscene_core.data.chunk_io import save_world
    from xscene_core.ops.overview import bev_image
    from xscene_core.data.world import Style, SyntheticWorld
    from xscene_core.types.world import ChunkIndex, WorldMap

    style = Style(args.time, args.weather) if args.time and args.weather else None
    if bool(args.time) != bool(args.weather):
        raise SystemExit("give both --time and --weather, or neither")
    world = SyntheticWorld(args.seed, style=style)
    x0, y0 = world.find_location(args.environment, junction=True) if args.environment else (0.0, 0.0)
    stride = world.grid.extent[0]
    wm = WorldMap(stride=stride)
    half = args.size // 2
    t0 = time.time()
    for i in tqdm(range(-half, args.size - half), desc="world columns"):
        for j in range(-half, args.size - half):
            index = ChunkIndex(i, j)
            chunk = world.chunk(x0 + i * stride, y0 + j * stride)
            chunk.T_world_chunk = wm.pose_of(index)  # world map frame: the first chunk at the origin
            wm.add(index, chunk)
    out = save_world(args.out, wm, {"source": "synthetic", "seed": args.seed, "origin": [x0, y0],
                                    "style": {"time_of_day": world.style.time_of_day, "weather": world.style.weather}})
    from PIL import Image

    Image.fromarray(bev_image(wm)).save(out / "overview.png")
    print(f"{len(wm.chunks)} chunks ({world.environment_at(x0, y0)} at the centre, {world.style.weather} "
          f"{world.style.time_of_day}) in {time.time() - t0:.1f} s -> {out} (overview.png shows it from above)")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command")
    g = sub.add_parser("generate-world", help="write a block of chunks of the synthetic world")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--size", type=int, default=3, help="chunks per side")
    g.add_argument("--environment", default="downtown", help="environment at the centre chunk ('' for the origin)")
    g.add_argument("--time", default=None, help="time of day override (dawn, morning, noon, afternoon, dusk, night)")
    g.add_argument("--weather", default=None, help="weather override (sunny, cloudy, overcast, rainy, foggy, snowy)")
    g.add_argument("--out", type=Path, default=Path("out/world"))
    args = ap.parse_args(argv)
    if args.command == "generate-world":
        if args.size < 1:
            raise SystemExit("--size must be at least 1")
        generate_world(args)
    else:
        ap.print_help()
        sys.exit(0)


if __name__ == "__main__":
    main()
