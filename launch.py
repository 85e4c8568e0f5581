"""xscene entry point.

    python launch.py [--host 127.0.0.1] [--port 7860] [--share] [--data ~/.xscene]
        the editor: a Gradio page with the 3D viewer (viser) embedded, on the shipped checkpoints
    python launch.py generate --prompt "a rainy night downtown" --out DIR [--seed 0] [--images preview]
        one chunk from a prompt, written as a world folder (world.json + chunk_0_0/)
    python launch.py extend --world DIR --direction east [--from 0,0] [--seed S]
        outpaint the neighbour chunk and add it to the world folder (by default from the chunk furthest
        that way along the row or column through the origin, so repeated calls keep growing the world)
    python launch.py generate-world --seed 0 --size 3 --out out/world
        a size x size block of 80 m chunks from the synthetic world: Occ3D labels.npz, layout.json,
        scene_graph.txt and description.json per chunk, world.json, and a top-down overview.png
"""

from __future__ import annotations

import argparse
import os
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


def _progress_printer():
    """A progress callback printing one line per finished stage."""
    start = time.time()

    def show(p) -> None:
        if p.step == p.total:
            print(f"  {p.stage:<10} done ({time.time() - start:.1f} s)", flush=True)
    return show


def _generator(images: str):
    from xscene_core.generator import Generator

    if images == "diffusion" and not (Path(__file__).parent / "checkpoints" / "image_diffusion").is_dir():
        raise SystemExit("--images diffusion needs checkpoints/image_diffusion; use --images preview")
    return Generator()


def generate(args: argparse.Namespace) -> None:
    """prompt -> one chunk -> a world folder (and an export with --export)."""
    if not args.prompt.strip():
        raise SystemExit("--prompt must not be empty")
    if (args.out / "world.json").exists() and not args.overwrite:
        raise SystemExit(f"{args.out} already holds a world; pass --overwrite or another --out")
    gen = _generator(args.images)
    t0 = time.time()
    chunk = gen.generate(args.prompt, seed=args.seed, images=args.images, progress=_progress_printer())
    world = gen.new_world(chunk)
    world.save(args.out, {"prompt": args.prompt, "seed": args.seed, "images": args.images})
    print(f"{len(chunk.layout.boxes)} boxes, {len(chunk.layout.lanes)} lanes in {time.time() - t0:.1f} s -> {args.out}")
    if args.export:
        _export(gen, world, args.export)


def _export(gen, world, folder: Path) -> None:
    """Occ3D npz per chunk, images + calibration, scene.json and (when the Gaussian stage is there) PLY."""
    import tempfile

    from xscene_core.session import Session

    scene = None
    try:
        scene = gen.gaussians(world)
    except ImportError:
        print("  (no Gaussian stage installed: the export has no PLY)")
    session = Session.create(tempfile.mkdtemp(prefix="xscene-cli-"), autosave=False)
    session.set_world(world)
    report = session.export(folder, scene)
    print(f"exported {len(report.files)} files -> {folder}")


def extend_origin(world, direction: str):
    """The chunk a headless `extend` grows from: walk from (0, 0) in `direction` to the last chunk there."""
    from xscene_core.types.world import ChunkIndex

    index = ChunkIndex(0, 0) if ChunkIndex(0, 0) in world else min(world.chunks)
    while index.neighbour(direction) in world:
        index = index.neighbour(direction)
    return index


def extend(args: argparse.Namespace) -> None:
    from xscene_core.data.chunk_io import load_world
    from xscene_core.types.world import DIRECTIONS, ChunkIndex

    if args.direction not in DIRECTIONS:
        raise SystemExit(f"--direction must be one of {', '.join(DIRECTIONS)}")
    try:
        world, info = load_world(args.world)
    except ValueError as err:
        raise SystemExit(str(err)) from None
    if args.origin:
        try:
            i, j = (int(v) for v in args.origin.split(","))
        except ValueError:
            raise SystemExit(f"--from must be I,J (two integers), got {args.origin!r}") from None
        origin = ChunkIndex(i, j)
        if origin not in world:
            raise SystemExit(f"the world has no chunk {origin}")
    else:
        origin = extend_origin(world, args.direction)
    images = args.images or info.get("images", "preview")
    gen = _generator(images)
    seed = args.seed if args.seed is not None else int(info.get("seed", 0)) + len(world.chunks)
    t0 = time.time()
    try:
        index = gen.extend(world, origin, args.direction, seed=seed, images=images, progress=_progress_printer())
    except ValueError as err:
        raise SystemExit(str(err)) from None
    meta = {k: v for k, v in info.items() if k not in ("format", "stride", "chunks")}
    world.save(args.world, meta)
    print(f"{index} added {args.direction} of {origin} in {time.time() - t0:.1f} s: {len(world.chunks)} chunks "
          f"-> {args.world}")
    if args.export:
        _export(gen, world, args.export)


def editor(args: argparse.Namespace) -> None:
    """Start the editor; returns when the server stops (Ctrl+C). On POSIX, `kill -USR1 PID` prints every
    thread's stack to stderr (where a job waits, when one seems stuck) and the editor goes on."""
    import faulthandler
    import signal

    t0 = time.time()
    if hasattr(signal, "SIGUSR1"):
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    from app.page import CSS, build
    from app.server import Editor

    ed = Editor(args.data, host=args.host, viewer_port=args.viewer_port, share=args.share)
    ed.pool.preload()  # the stages load in the background; the page is usable at once
    demo = build(ed)
    demo.queue(default_concurrency_limit=16)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, css=CSS, ssr_mode=False,
                footer_links=[], show_error=True, prevent_thread_lock=True, quiet=True)
    print(f"xscene editor ready in {time.time() - t0:.1f} s: http://{args.host}:{args.port}/ "
          f"(sessions autosave under {ed.sessions_dir})", flush=True)
    try:
        demo.block_thread()
    finally:
        for key in list(ed.sessions):
            ed.close(key)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1", help="address the editor binds (0.0.0.0 for every interface)")
    ap.add_argument("--port", type=int, default=7860, help="port of the page")
    ap.add_argument("--viewer-port", type=int, default=8100, help="first port of the per-session 3D viewers")
    ap.add_argument("--share", action="store_true", help="also serve the page on a public gradio.live link, and "
                    "each 3D viewer on a public viser link (needs the internet; without it the viewer stays on --host)")
    ap.add_argument("--data", type=Path, default=Path.home() / ".xscene",
                    help="folder for autosaves (sessions/) and saved worlds (worlds/)")
    sub = ap.add_subparsers(dest="command")
    gp = sub.add_parser("generate", help="one chunk from a prompt, headless, written as a world folder")
    gp.add_argument("--prompt", required=True)
    gp.add_argument("--out", type=Path, required=True)
    gp.add_argument("--seed", type=int, default=0)
    gp.add_argument("--images", choices=("preview", "diffusion", "none"), default="preview")
    gp.add_argument("--export", type=Path, default=None, help="also export (Occ3D npz, images, scene.json, PLY) here")
    gp.add_argument("--overwrite", action="store_true")
    ep = sub.add_parser("extend", help="outpaint a neighbour chunk of a world folder, headless")
    ep.add_argument("--world", type=Path, required=True)
    ep.add_argument("--direction", required=True, help="east, west, north, south or a diagonal (northeast, ...)")
    ep.add_argument("--from", dest="origin", default=None, help="I,J of the chunk to grow from")
    ep.add_argument("--seed", type=int, default=None, help="default: the world's seed + its chunk count")
    ep.add_argument("--images", choices=("preview", "diffusion", "none"), default=None,
                    help="default: the mode the world was generated with")
    ep.add_argument("--export", type=Path, default=None)
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
    elif args.command == "generate":
        generate(args)
    elif args.command == "extend":
        extend(args)
    else:
        editor(args)


if __name__ == "__main__":
    main()
