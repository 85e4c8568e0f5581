"""Speed bench: `python -m xscene_core.eval.bench [--json PATH] [--repeats N]`.

Seconds are medians over N runs after one warm-up, on held-out synthetic worlds; keys are stable
(see DESIGN.md). Only stages that exist are measured; the others are absent, never faked."""

from __future__ import annotations

import argparse
import resource
import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch

from ..data.splits import world_seeds
from ..data.world import SyntheticWorld
from .report import Row, publish


def median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def bench_world_chunk(repeats: int) -> float:
    """Seconds to generate one fresh chunk of a world (new positions every run, so no cache helps)."""
    seed = next(world_seeds("test"))
    world = SyntheticWorld(seed)
    spots = iter([world.find_location(env, start=k) for k in range(repeats + 1)
                  for env in ("downtown", "suburban", "highway")][: repeats + 1])
    return median_time(lambda: world.chunk(*next(spots)), repeats)


BENCH_PROMPTS = (
    "a rainy night on a downtown crossroad with parked cars",
    "a sunny suburban street with two cyclists and a bus behind the ego vehicle",
    "an empty highway at dusk in the fog",
)


def bench_describe(repeats: int) -> float:
    """Seconds from a prompt to its description and scene graph (offline path, shipped memory bank;
    the embedding model is loaded in the warm-up)."""
    from ..stages.describe import DescribeStage

    stage = DescribeStage(llm=None)
    prompts = iter(BENCH_PROMPTS * (repeats + 1))
    return median_time(lambda: stage(next(prompts)), repeats)


def bench_render(repeats: int) -> tuple[float, float]:
    """Seconds for six 224x400 semantic + depth views of a full synthetic chunk, and for the preview
    look on top of them (held-out world, downtown rainy night: the busiest look)."""
    from ..data.world import Style
    from ..stages.render import RenderStage

    world = SyntheticWorld(next(world_seeds("test")), style=Style("night", "rainy"))
    chunk = world.chunk(*world.find_location("downtown", junction=True))
    stage = RenderStage(backend="torch")
    views = stage(chunk.occupancy, description=chunk.description)
    render_s = median_time(lambda: stage(chunk.occupancy, description=chunk.description), repeats)
    preview_s = median_time(lambda: stage.preview(views, chunk.description, chunk.layout, occupancy=chunk.occupancy), repeats)
    return render_s, preview_s


def bench_occupancy(repeats: int) -> tuple[float, float, float]:
    """(occupancy_s, extend_s, chunk_total_preview_s): layout -> voxels of a held-out chunk; outpainting its
    eastern neighbour (RePaint, 5 resamplings, jump 20, decode); prompt -> complete chunk with preview images."""
    from ..generator import Generator
    from ..stages.occupancy import OccupancyStage
    from ..types.world import ChunkIndex, WorldMap
    from ..world import WorldExtender
    from .controllability import test_scenes

    stage = OccupancyStage.from_pretrained()
    _, chunk = next(test_scenes(3))
    caption, env = chunk.description.caption(), chunk.description.environment
    occupancy_s = median_time(lambda: stage(chunk.layout, caption, seed=0, environment=env), repeats)
    world = WorldMap(40.0)
    world.add(ChunkIndex(0, 0), replace(chunk, T_world_chunk=world.pose_of(ChunkIndex(0, 0))))
    extender = WorldExtender(stage)
    extend_s = median_time(lambda: extender(world, ChunkIndex(1, 0), seed=0), max(1, repeats // 2))
    gen = Generator(occupancy=stage)
    total_s = median_time(lambda: gen.generate("a rainy night on a downtown crossroad with parked cars", seed=0),
                          max(1, repeats // 2))
    return occupancy_s, extend_s, total_s


def core_rows(repeats: int) -> list[Row]:
    from .layout_metrics import layout_seconds

    render_s, preview_s = bench_render(repeats)
    return [Row("world_chunk_s", bench_world_chunk(repeats), "s", "< 1 s", "synthetic world, one 80 m chunk with layout, graph, description"),
            Row("describe_s", bench_describe(repeats), "s", "< 0.5 s", "prompt -> description + scene graph, offline"),
            Row("layout_s", layout_seconds(repeats), "s", "< 1 s", "scene graph -> layout, diffusion (DDIM 20 steps)"),
            Row("render_s", render_s, "s", "< 2 s", "six 224x400 semantic + depth views, CPU rasterizer"),
            Row("preview_s", preview_s, "s", "< 2 s", "preview look of the six views (rainy downtown night)")]


def occupancy_rows(repeats: int) -> list[Row]:
    occupancy_s, extend_s, total_s = bench_occupancy(repeats)
    return [Row("occupancy_s", occupancy_s, "s", "< 8 s", "layout -> occupancy: triplane diffusion (DDIM 20, guidance) + VAE decode"),
            Row("extend_s", extend_s, "s", "< 15 s", "outpaint a neighbour: continuation layout, RePaint (105 guided steps), decode"),
            Row("chunk_total_preview_s", total_s, "s", "< 12 s", "prompt -> describe, layout, occupancy, six views, preview images")]


def gaussian_rows(repeats: int) -> list[Row]:
    from ..stages.gaussians import GaussianStage
    from ..stages.render import RenderStage
    from .controllability import test_scenes

    _, chunk = next(test_scenes(1))
    render = RenderStage()
    chunk.views = render(chunk.occupancy)
    chunk.preview = render.preview(chunk.views, chunk.description, chunk.layout, occupancy=chunk.occupancy)
    stage = GaussianStage()
    return [Row("gaussians_s", median_time(lambda: stage.chunk(chunk), repeats), "s", "< 5 s",
                "lift one chunk to Gaussians: surface patches coloured from its six 224x400 views and the sky dome, "
                "no refinement")]


def image_rows(repeats: int) -> list[Row]:
    """images_s and chunk_total_s; absent (no rows) while no image diffusion checkpoint is installed."""
    from ..stages.multiview import MultiViewStage, model_installed

    if not model_installed():
        return []
    from ..generator import Generator
    from ..stages.render import RenderStage
    from .controllability import test_scenes

    _, chunk = next(test_scenes(1))
    views = RenderStage()(chunk.occupancy)
    stage = MultiViewStage.from_pretrained()
    images_s = median_time(lambda: stage(views, chunk.description, chunk.layout, seed=0), repeats)
    gen = Generator(multiview=stage)
    total_s = median_time(lambda: gen.generate("a rainy night on a downtown crossroad with parked cars", seed=0,
                                               images="diffusion"), max(1, repeats // 2))
    return [Row("images_s", images_s, "s", "< 20 s", "six views by multi-view image diffusion (UniPC 20 steps, guidance)"),
            Row("chunk_total_s", total_s, "s", "< 30 s", "prompt -> describe, layout, occupancy, six views, diffusion images")]


GROUPS = {"core": core_rows, "occupancy": occupancy_rows, "gaussians": gaussian_rows, "images": image_rows}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--json", type=Path, default=None, help="also write {key: value} here")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-markdown", action="store_true", help="do not update BENCHMARKS.md")
    ap.add_argument("--only", default="", help=f"comma-separated groups to time ({', '.join(GROUPS)}); the other "
                    "rows of BENCHMARKS.md are kept")
    args = ap.parse_args(argv)
    only = [g for g in args.only.split(",") if g]
    if set(only) - set(GROUPS):
        ap.error(f"unknown groups {sorted(set(only) - set(GROUPS))}; use {', '.join(GROUPS)}")
    torch.set_num_threads(min(2, torch.get_num_threads()))
    rows = [r for name, fn in GROUPS.items() if not only or name in only for r in fn(args.repeats)]
    if not only:  # the whole pipeline's peak; a partial run would replace it with a part's
        rows.append(Row("peak_rss_gb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, "GB", "< 6 GB"))
    publish("Speed (bench)", rows, args.json, not args.no_markdown, merge=bool(only))


if __name__ == "__main__":
    main()
