"""Layout acceptance metrics (issue 4): how well a sampled layout honours its scene graph.

- `layout_relations`: share of the graph's relations that hold in the layout. "on top of" a lane: the
  box centre lies within LANE_HALF_WIDTH of the lane's polyline (graph_of's own threshold); "near" an
  area: within NEAR_M of its centre; front of / behind / left of / right of: the rule graph_of uses
  (the larger of |dx|, |dy| between the two centres picks the axis, its sign the side).
- `layout_collisions`: share of box pairs whose BEV footprints overlap (also `layout_boxes_colliding`:
  share of boxes that overlap any other box, a stricter view of the same thing).
- `layout_cars_on_drivable`: share of motor-vehicle boxes whose footprint (corners, edge midpoints,
  centre; the parts inside the chunk) lies on the chunk's true drivable area (the layout's drivable,
  intersection, crosswalk and parking polygons, rasterised).

Each is reported for the model, for boxes placed at random (uniform centre in the chunk, uniform yaw,
the graph's sizes; the baseline to beat) and for boxes copied from the graph's coarse attributes.
`measure_layout(n_graphs, seed)` runs it all on held-out test worlds; quality.py calls it.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from .. import semantics
from ..data.world.describe import NEAR_M, dist_to_polyline, spatial_predicate
from ..ops.clip import polygons_overlap
from ..ops.geometry import polygon_mask
from ..types.layout import Box, Lane, Layout, MapPolygon
from ..types.occupancy import GridSpec
from ..types.scene import SceneGraph

LANE_HALF_WIDTH = 1.8  # metres; graph_of's "on top of" threshold (half a lane width)
DRIVABLE_RES = 0.2  # metres per cell of the drivable raster
DRIVABLE_TOL = 0.2  # a footprint point may miss the drivable area by this much (raster and curb rounding)
MOTOR_VEHICLE_IDS = tuple(i for i in semantics.VEHICLE_IDS if semantics.NAMES[i] != "bicycle")  # parked bicycles stand on sidewalks


# -- per-relation rule -----------------------------------------------------------------------------------

def _check_pairing(graph: SceneGraph, layout: Layout) -> None:
    if len(layout.boxes) != len(graph.objects) or len(layout.lanes) != len(graph.lanes):
        raise ValueError(f"layout has {len(layout.boxes)} boxes and {len(layout.lanes)} lanes, the graph "
                         f"{len(graph.objects)} objects and {len(graph.lanes)} lanes (need one per node, in order)")


def relation_results(graph: SceneGraph, layout: Layout) -> list[tuple[str, bool]]:
    """(predicate, holds) per relation of the graph that can be judged. The layout holds one box per
    object node and one lane per lane node, in node order (what LayoutStage returns)."""
    _check_pairing(graph, layout)
    points: dict[str, np.ndarray] = {"ego": np.zeros(2)}
    lanes: dict[str, np.ndarray] = {}
    for node, box in zip(graph.objects, layout.boxes):
        points[node.node_id] = np.array(box.center[:2])
    for node, lane in zip(graph.lanes, layout.lanes):
        lanes[node.lane_id] = lane.points
        points[node.lane_id] = lane.points.mean(0)
    for area in graph.areas:
        points[area.area_id] = np.array(area.center)
    out = []
    for r in graph.relations:
        p = points[r.subject]
        if r.predicate == "on top of":
            if r.object not in lanes:
                continue
            out.append((r.predicate, dist_to_polyline(p, lanes[r.object]) < LANE_HALF_WIDTH))
        elif r.predicate == "near":
            out.append((r.predicate, math.dist(p, points[r.object]) < NEAR_M))
        else:
            out.append((r.predicate, spatial_predicate(p, points[r.object]) == r.predicate))
    return out


# -- collisions -----------------------------------------------------------------------------------------

def collision_counts(boxes: tuple[Box, ...] | list[Box]) -> tuple[int, int, int]:
    """(overlapping pairs, pairs, boxes overlapping any other) of BEV footprints (touching is no overlap)."""
    n = len(boxes)
    if n < 2:
        return 0, 0, 0
    centres = np.array([b.center[:2] for b in boxes])
    radii = np.array([math.hypot(b.size[0], b.size[1]) / 2 for b in boxes])
    corners = [b.corners_bev() for b in boxes]
    hit = np.zeros(n, bool)
    overlapping = 0
    close = np.hypot(*(centres[:, None] - centres[None]).transpose(2, 0, 1)) < radii[:, None] + radii[None]
    for i, j in zip(*np.nonzero(np.triu(close, 1))):
        if polygons_overlap(corners[i], corners[j]):
            overlapping += 1
            hit[i] = hit[j] = True
    return overlapping, n * (n - 1) // 2, int(hit.sum())


# -- drivable area ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DrivableRaster:
    """bool [X, Y] drivable cells over the chunk square (cell centres xs, ys in metres)."""

    mask: np.ndarray
    xs: np.ndarray
    ys: np.ndarray

    @classmethod
    def of(cls, polygons: tuple[MapPolygon, ...] | list[MapPolygon], grid: GridSpec | None = None,
           res: float = DRIVABLE_RES, tol: float = DRIVABLE_TOL) -> "DrivableRaster":
        """Rasterise the drivable polygons (types.layout.DRIVABLE_KINDS), grown by `tol` metres."""
        from ..types.layout import DRIVABLE_KINDS

        grid = grid or GridSpec()
        (lx, ly, _), (ux, uy, _) = grid.lower, grid.upper
        xs = np.arange(lx + res / 2, ux, res)
        ys = np.arange(ly + res / 2, uy, res)
        mask = np.zeros((len(xs), len(ys)), bool)
        for p in polygons:
            if p.kind in DRIVABLE_KINDS:
                mask |= polygon_mask(p.points, xs, ys)
        k = int(round(tol / res))
        if k > 0:  # grow by k cells (a square structuring element)
            grown = mask.copy()
            for dx in range(-k, k + 1):
                for dy in range(-k, k + 1):
                    grown[max(dx, 0):len(xs) + min(dx, 0), max(dy, 0):len(ys) + min(dy, 0)] |= \
                        mask[max(-dx, 0):len(xs) + min(-dx, 0), max(-dy, 0):len(ys) + min(-dy, 0)]
            mask = grown
        return cls(mask, xs, ys)

    def covers(self, points: np.ndarray) -> np.ndarray:
        """bool [N] for points float [N, 2]: on the drivable area; points outside the square count True."""
        res = self.xs[1] - self.xs[0]
        i = np.floor((points[:, 0] - self.xs[0] + res / 2) / res).astype(int)
        j = np.floor((points[:, 1] - self.ys[0] + res / 2) / res).astype(int)
        inside = (i >= 0) & (i < len(self.xs)) & (j >= 0) & (j < len(self.ys))
        out = np.ones(len(points), bool)
        out[inside] = self.mask[i[inside], j[inside]]
        return out


def footprint_points(box: Box) -> np.ndarray:
    """float [9, 2]: the BEV corners, edge midpoints and centre of a box."""
    c = box.corners_bev()
    return np.concatenate([c, (c + np.roll(c, -1, 0)) / 2, [box.center[:2]]])


def vehicles_on_drivable(layout: Layout, drivable: DrivableRaster) -> tuple[int, int]:
    """(motor vehicles wholly on the drivable area, motor vehicles)."""
    vehicles = [b for b in layout.boxes if b.label in MOTOR_VEHICLE_IDS]
    return sum(bool(drivable.covers(footprint_points(b)).all()) for b in vehicles), len(vehicles)


# -- baselines ------------------------------------------------------------------------------------------------

def random_layout(graph: SceneGraph, rng: np.random.Generator, grid: GridSpec | None = None) -> Layout:
    """The baseline: every object box at a uniform random centre in the chunk with a uniform random yaw
    (the graph's class and size); lanes are the graph's lane points."""
    grid = grid or GridSpec()
    (lx, ly, _), (ux, uy, _) = grid.lower, grid.upper
    boxes = tuple(Box((rng.uniform(lx, ux), rng.uniform(ly, uy), o.size[2] / 2), o.size, rng.uniform(-math.pi, math.pi),
                      o.label, o.state, o.node_id) for o in graph.objects)
    return Layout(boxes, _graph_lanes(graph))


def graph_copy_layout(graph: SceneGraph) -> Layout:
    """Boxes copied from the graph's coarse attributes (location, size, heading) and its lane points."""
    boxes = tuple(Box((*o.location, o.size[2] / 2), o.size, math.radians(o.heading_deg), o.label, o.state, o.node_id)
                  for o in graph.objects)
    return Layout(boxes, _graph_lanes(graph))


def _graph_lanes(graph: SceneGraph) -> tuple[Lane, ...]:
    return tuple(Lane(np.asarray(l.points), l.turn, l.lane_id) for l in graph.lanes)


# -- aggregation ----------------------------------------------------------------------------------------------

@dataclass
class LayoutScores:
    """Counts summed over scenes (figures are micro-averages)."""

    relations_held: int = 0
    relations: int = 0
    pairs_overlapping: int = 0
    pairs: int = 0
    boxes_colliding: int = 0
    boxes: int = 0
    vehicles_on_drivable: int = 0
    vehicles: int = 0

    def add(self, graph: SceneGraph, layout: Layout, drivable: DrivableRaster | None) -> None:
        res = relation_results(graph, layout)
        self.relations_held += sum(ok for _, ok in res)
        self.relations += len(res)
        ov, pairs, hit = collision_counts(layout.boxes)
        self.pairs_overlapping += ov
        self.pairs += pairs
        self.boxes_colliding += hit
        self.boxes += len(layout.boxes)
        if drivable is not None:
            on, n = vehicles_on_drivable(layout, drivable)
            self.vehicles_on_drivable += on
            self.vehicles += n

    def __iadd__(self, other: "LayoutScores") -> "LayoutScores":
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        return self

    def figures(self, suffix: str = "") -> dict[str, float]:
        div = lambda a, b: float(a / b) if b else float("nan")  # noqa: E731
        return {
            f"layout_relations{suffix}": div(self.relations_held, self.relations),
            f"layout_collisions{suffix}": div(self.pairs_overlapping, self.pairs),
            f"layout_boxes_colliding{suffix}": div(self.boxes_colliding, self.boxes),
            f"layout_cars_on_drivable{suffix}": div(self.vehicles_on_drivable, self.vehicles),
        }


def perturb_graph(graph: SceneGraph, sigma_m: float, rng: np.random.Generator) -> SceneGraph:
    """The graph with object locations moved by Gaussian noise of sigma_m metres (relations, positions
    words and everything else kept): a sloppy, LLM-like graph for robustness checks."""
    from dataclasses import replace

    objs = tuple(replace(o, location=tuple(np.round(np.asarray(o.location) + rng.normal(0, sigma_m, 2), 1)))
                 for o in graph.objects)
    return replace(graph, objects=objs)


def measure_layout(n_graphs: int = 60, seed: int = 0, checkpoint: str | Path | None = None,
                   num_inference_steps: int | None = None, graph_noise_m: float = 0.0,
                   timing_repeats: int = 5) -> dict[str, float]:
    """Layout metrics on `n_graphs` scene graphs of held-out test worlds (xscene_core.data.splits).

    Returns the quality keys `layout_relations`, `layout_collisions`, `layout_cars_on_drivable` for the
    shipped model (sampled with seed = scene index), the same with suffix `_random` (boxes placed at
    random) and `_graph_copy` (boxes copied from the graph's attributes), `layout_boxes_colliding*`,
    `layout_sample_s` (median seconds to sample one graph, after a warm-up) and `layout_graphs`.
    With graph_noise_m > 0 the model and the copy baseline see graphs whose object locations are
    perturbed by that much (relations are still those of the clean graph).
    """
    import torch

    from ..data.layout_dataset import test_samples
    from ..stages.layout import LayoutStage

    stage = LayoutStage.from_pretrained(checkpoint) if checkpoint else LayoutStage.from_pretrained()
    if num_inference_steps:
        stage.num_inference_steps = num_inference_steps
    samples = test_samples(n_graphs, seed)
    rng = np.random.default_rng([seed, 11])
    model, rand, copy, truth = LayoutScores(), LayoutScores(), LayoutScores(), LayoutScores()
    times = []
    with torch.inference_mode():
        for k, s in enumerate(samples):
            graph = perturb_graph(s.graph, graph_noise_m, rng) if graph_noise_m > 0 else s.graph
            drivable = DrivableRaster.of(s.drivable)
            if k < timing_repeats:
                stage(graph, seed=k)  # warm-up and timing on the first graphs
                t0 = time.perf_counter()
            layout = stage(graph, seed=k)
            if k < timing_repeats:
                times.append(time.perf_counter() - t0)
            model.add(s.graph, layout, drivable)
            rand.add(s.graph, random_layout(s.graph, rng), drivable)
            copy.add(s.graph, graph_copy_layout(graph), drivable)
            truth.add(s.graph, s.target, drivable)
    out = {**model.figures(), **rand.figures("_random"), **copy.figures("_graph_copy"),
           **truth.figures("_ground_truth")}
    out["layout_sample_s"] = statistics.median(times) if times else float("nan")
    out["layout_graphs"] = float(len(samples))
    return out


def layout_seconds(repeats: int = 5, seed: int = 0, checkpoint: str | Path | None = None) -> float:
    """Median seconds for LayoutStage to lay out one scene graph of a held-out test world (the graph
    with the most nodes among the first world's six environments), after a warm-up: the bench key
    `layout_s`."""
    import torch

    from ..data.layout_dataset import test_samples
    from ..stages.layout import LayoutStage

    stage = LayoutStage.from_pretrained(checkpoint) if checkpoint else LayoutStage.from_pretrained()
    graph = max((t.graph for t in test_samples(6, seed)), key=lambda g: len(g.objects) + len(g.lanes))
    with torch.inference_mode():
        stage(graph, seed=0)
        times = []
        for k in range(repeats):
            t0 = time.perf_counter()
            stage(graph, seed=k)
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    import argparse
    import json

    import torch

    ap = argparse.ArgumentParser(description="layout metrics on held-out test worlds")
    ap.add_argument("--graphs", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--checkpoint", type=Path, default=None)
    ap.add_argument("--steps", type=int, default=None, help="DDIM steps (default: the checkpoint's)")
    ap.add_argument("--graph-noise-m", type=float, default=0.0)
    args = ap.parse_args(argv)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    print(json.dumps(measure_layout(args.graphs, args.seed, args.checkpoint, args.steps, args.graph_noise_m), indent=1))


if __name__ == "__main__":
    main()
