"""(scene graph, layout) pairs for the layout diffusion model, drawn from the synthetic world.

Each sample is a chunk's `SceneGraph` (what `graph_of` derives, i.e. what the LLM writes) and its
target layout restricted to the graph's nodes: one box per object node and one lane per lane node, in
node order. Samples are cached as JSON lines (no pickles), one file per split:

    python -m xscene_core.data.layout_dataset --out runs/layout_data --train-worlds 125 --val-worlds 8

Worlds come from `xscene_core.data.splits` (train / val / test never share a world). A build that is
interrupted resumes: worlds already in the file are skipped.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ..types.layout import DRIVABLE_KINDS, Box, Lane, Layout, MapPolygon
from ..types.occupancy import GridSpec
from ..types.scene import ENVIRONMENTS, AreaNode, LaneNode, ObjectNode, Relation, SceneGraph
from .splits import world_seeds
from .world import SyntheticWorld
from .world.describe import graph_lane_points

FORMAT = "xscene.layout_pairs/1"
MIN_LANE_M = 4.0  # graph_of drops lanes shorter than this


@dataclass(frozen=True)
class LayoutSample:
    """One training pair.

    graph: the chunk's scene graph; target: boxes (one per graph object, same order) and lanes (one per
    graph lane, same order), chunk frame; drivable: the chunk's drivable map areas (only kept for
    validation / test samples, where metrics need them); world_seed, yaw: where it came from.
    """

    graph: SceneGraph
    target: Layout
    drivable: tuple[MapPolygon, ...] = ()
    world_seed: int = -1
    yaw: float = 0.0


# -- pairing -----------------------------------------------------------------------------------------

def paired_target(layout: Layout, graph: SceneGraph, grid: GridSpec) -> Layout:
    """The boxes and lanes of `layout` that the nodes of `graph = graph_of(layout, grid)` stand for, in
    node order (the same selection rules as graph_of: boxes whose centre lies in the chunk, lanes that
    are not junction connectors and at least MIN_LANE_M long, sorted by lane id)."""
    boxes = tuple(b for b in layout.boxes if grid.contains_xy(*b.center[:2]))
    lanes = tuple(
        l for l in sorted((l for l in layout.lanes if not l.connector), key=lambda l: l.lane_id)
        if np.hypot(*np.diff(l.points, axis=0).T).sum() >= MIN_LANE_M)
    if len(boxes) != len(graph.objects) or len(lanes) != len(graph.lanes):
        raise ValueError(f"layout and graph disagree: {len(boxes)} boxes / {len(graph.objects)} objects, "
                         f"{len(lanes)} lanes / {len(graph.lanes)} lane nodes")
    for lane, node in zip(lanes, graph.lanes):
        pts = graph_lane_points(lane.points)
        if not np.allclose(pts, np.asarray(node.points), atol=0.051):
            raise ValueError(f"lane {lane.lane_id} does not match graph node {node.lane_id}")
    return Layout(boxes, lanes)


# -- JSON (de)serialisation ---------------------------------------------------------------------------

def graph_to_dict(g: SceneGraph) -> dict:
    return {
        "lanes": [[n.lane_id, [list(p) for p in n.points], n.flow, n.turn] for n in g.lanes],
        "objects": [[n.node_id, n.label, n.state, n.position, n.heading_deg, list(n.location), list(n.size)]
                    for n in g.objects],
        "areas": [[a.area_id, a.kind, list(a.center)] for a in g.areas],
        "relations": [[r.subject, r.predicate, r.object] for r in g.relations],
    }


def graph_from_dict(d: dict) -> SceneGraph:
    return SceneGraph(
        tuple(LaneNode(i, tuple(map(tuple, p)), f, t) for i, p, f, t in d["lanes"]),
        tuple(ObjectNode(i, lab, s, pos, h, tuple(loc), tuple(size)) for i, lab, s, pos, h, loc, size in d["objects"]),
        tuple(AreaNode(i, k, tuple(c)) for i, k, c in d["areas"]),
        tuple(Relation(*r) for r in d["relations"]),
    )


def sample_to_dict(s: LayoutSample) -> dict:
    return {
        "world_seed": s.world_seed, "yaw": round(s.yaw, 6), "graph": graph_to_dict(s.graph),
        "boxes": [b.to_dict() for b in s.target.boxes],
        "lanes": [np.round(l.points, 3).tolist() for l in s.target.lanes],
        "drivable": [{"kind": p.kind, "points": np.round(p.points, 3).tolist()} for p in s.drivable],
    }


def sample_from_dict(d: dict) -> LayoutSample:
    graph = graph_from_dict(d["graph"])
    lanes = tuple(Lane(np.asarray(p), n.turn, n.lane_id) for p, n in zip(d["lanes"], graph.lanes))
    target = Layout(tuple(Box.from_dict(b) for b in d["boxes"]), lanes)
    drivable = tuple(MapPolygon(np.asarray(p["points"]), p["kind"]) for p in d.get("drivable", []))
    return LayoutSample(graph, target, drivable, int(d.get("world_seed", -1)), float(d.get("yaw", 0.0)))


# -- drawing samples from worlds ------------------------------------------------------------------------

def chunk_sample(world: SyntheticWorld, x: float, y: float, yaw: float = 0.0, keep_drivable: bool = False) -> LayoutSample:
    """The (graph, target) pair of the chunk of `world` at (x, y, yaw)."""
    chunk = world.chunk(x, y, yaw)
    target = paired_target(chunk.layout, chunk.graph, world.grid)
    drivable = tuple(p for p in chunk.layout.polygons if p.kind in DRIVABLE_KINDS) if keep_drivable else ()
    return LayoutSample(chunk.graph, target, drivable, world.seed, yaw)


def world_samples(world_seed: int, starts: int = 2, random_yaws: int = 1, keep_drivable: bool = False) -> Iterator[LayoutSample]:
    """Samples of one world: for every environment and search start, the chunk at yaw 0 (as the
    dataset builder and the evaluation take them) plus `random_yaws` chunks at random headings."""
    world = SyntheticWorld(world_seed)
    rng = np.random.default_rng([world_seed, 7])
    for k in range(starts):
        for env in ENVIRONMENTS:
            try:
                x, y = world.find_location(env, start=k)
            except ValueError:
                continue
            yaws = [0.0] + [float(rng.uniform(-math.pi, math.pi)) for _ in range(random_yaws)]
            for yaw in yaws:
                s = chunk_sample(world, x, y, yaw, keep_drivable)
                if s.graph.objects or s.graph.lanes:
                    yield s


def build_cache(path: Path, split: str, n_worlds: int, starts: int = 2, random_yaws: int = 1,
                keep_drivable: bool = False, log_every: int = 10) -> Path:
    """Append samples of the first `n_worlds` worlds of `split` to the JSON-lines file `path` (worlds
    already present are skipped, so an interrupted build resumes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    done = set()
    if path.exists():
        with path.open() as f:
            for line in f:
                try:
                    done.add(json.loads(line)["world_seed"])
                except (json.JSONDecodeError, KeyError):
                    break  # a torn last line: rewritten below
    seeds = world_seeds(split)
    todo = [next(seeds) for _ in range(n_worlds)]
    t0, n = time.time(), 0
    for i, seed in enumerate(todo):
        if seed in done:
            continue
        lines = [json.dumps(sample_to_dict(s)) for s in world_samples(seed, starts, random_yaws, keep_drivable)]
        with path.open("a") as f:  # one world per write: a world is in the file whole or not at all
            f.write("".join(line + "\n" for line in lines))
        n += len(lines)
        if log_every and (i + 1) % log_every == 0:
            print(f"{split}: {i + 1}/{n_worlds} worlds, {n} new samples, {time.time() - t0:.0f} s", flush=True)
    return path


def load_cache(path: Path) -> list[LayoutSample]:
    """Samples of a JSON-lines cache (a torn last line is ignored)."""
    out = []
    with Path(path).open() as f:
        for line in f:
            try:
                d = json.loads(line)
            except json.JSONDecodeError:
                break
            out.append(sample_from_dict(d))
    return out


def test_samples(n: int, seed: int = 0) -> list[LayoutSample]:
    """`n` samples from held-out test worlds (yaw 0, with drivable areas), for evaluation only."""
    out: list[LayoutSample] = []
    seeds = world_seeds("test", start=int(seed) * 1000)
    while len(out) < n:
        out.extend(world_samples(next(seeds), starts=1, random_yaws=0, keep_drivable=True))
    return out[:n]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="folder for train.jsonl and val.jsonl")
    ap.add_argument("--train-worlds", type=int, default=125)
    ap.add_argument("--val-worlds", type=int, default=8)
    args = ap.parse_args(argv)
    build_cache(args.out / "val.jsonl", "val", args.val_worlds, starts=2, random_yaws=0, keep_drivable=True)
    build_cache(args.out / "train.jsonl", "train", args.train_worlds)
    print(f"done: {args.out}")


if __name__ == "__main__":
    main()
