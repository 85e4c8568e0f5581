"""Outpainting and local-edit figures (quality keys of DESIGN.md / issue 5), on held-out test worlds.

Outpainting: a held-out world chunk (its ground-truth voxels and triplane) sits at ChunkIndex(0, 0) of a
WorldMap with stride 40 m; its neighbour on the side where the most road leaves the chunk (east, north,
west or south) is outpainted for the synthetic world's ground-truth layout there (the world is continuous, so it is the truth for the new
chunk too).
- outpaint_overlap_agreement: share of the voxels in the overlap (the half the neighbour covers) where the
  new chunk's decoded labels equal the neighbour's; `_occupied` counts only voxels occupied in either;
  `_vae` is the same agreement of the neighbour's own VAE reconstruction (the ceiling through this VAE).
- outpaint_seam_drivable_iou: IoU of the new chunk's driveable-surface columns with the ground truth's in
  a band of 8 m on both sides of the seam (roads continue across it).
Both are measured on what the model decodes; nothing is pasted (stitching would keep the neighbour's
voxels in the overlap, making the agreement 1 by construction).

Edits: an occupancy is sampled for a held-out chunk's layout; then one object is removed and one car is
moved 6 m along its heading, each regenerated locally (OccupancyStage.regenerate, 4 m margin).
- edit_far_unchanged: share of voxels more than 8 m from every changed box that are unchanged, measured on
  the decoder's output before the shipped pipeline pastes the old voxels outside the region (after the
  paste it is 1 by construction).
- edit_box_realised: of the moved boxes, the share realised at their new place (box_realised rule);
  edit_removed_cleared: of the removed / moved-away boxes, the share no longer realised at the old place.

    python -m xscene_core.eval.world_metrics --chunks 6 [--json PATH]
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from .. import semantics
from ..types.layout import Layout
from .controllability import box_realised_counts, drivable_columns, test_locations, test_scenes

SEAM_BAND = 8.0  # metres on each side of the seam
FAR = 8.0  # metres from every changed box
EDIT_MOVE = 6.0  # metres a car is moved


def measure_outpainting(stage, n_chunks: int = 6, seed: int = 0, log=None) -> dict:
    """outpaint_* figures of an OccupancyStage on `n_chunks` held-out test chunks."""
    from ..types.world import ChunkIndex, WorldMap
    from ..world import WorldExtender, overlap_agreement

    extender = WorldExtender(stage)
    agree = [0, 0]
    agree_occ = [0, 0]
    agree_vae = [0, 0]
    inter = union = 0
    seconds = []
    band = int(round(SEAM_BAND / stage.grid.voxel_size))
    for k, (synthetic, wx, wy) in enumerate(test_locations(n_chunks, seed)):
        ws, chunk = synthetic.seed, synthetic.chunk(wx, wy)
        world = WorldMap(40.0)
        origin = ChunkIndex(0, 0)
        chunk.T_world_chunk = world.pose_of(origin)
        world.add(origin, chunk)
        direction = _road_side(chunk.occupancy.labels, band)
        index = origin.neighbour(direction)
        di, dj = index.i, index.j
        truth = synthetic.chunk(wx + di * world.stride, wy + dj * world.stride)
        t0 = time.time()
        ext = extender(world, index, truth.layout, truth.description, seed=k)
        seconds.append(time.time() - t0)
        labels = ext.chunk.occupancy.labels
        for acc, occ in ((agree, False), (agree_occ, True)):
            a, n = overlap_agreement(labels, ext.overlap, occ)
            acc[0] += a
            acc[1] += n
        rec = stage.decode(chunk.triplane).labels
        s = int(round(world.stride / stage.grid.voxel_size))
        shifted = np.roll(rec, (-di * s, -dj * s), axis=(0, 1))  # the neighbour's reconstruction in the new frame
        a, n = overlap_agreement(shifted, ext.overlap)
        agree_vae[0] += a
        agree_vae[1] += n
        pred, gt = drivable_columns(labels), drivable_columns(truth.occupancy.labels)
        if dj:
            pred, gt = pred.T, gt.T
        if di < 0 or dj < 0:  # put the neighbour on the low side of the axis
            pred, gt = pred[::-1], gt[::-1]
        seam = stage.grid.shape[0] - s  # first voxel index past the neighbour's edge, along the extension axis
        sl = slice(seam - band, seam + band)
        inter += int((pred[sl] & gt[sl]).sum())
        union += int((pred[sl] | gt[sl]).sum())
        if log is not None:
            log(f"outpaint {k + 1}/{n_chunks} (world {ws}, {direction}): agreement {agree[0] / agree[1]:.4f} "
                f"seam drivable IoU {inter / max(union, 1):.3f} ({seconds[-1]:.1f} s)")
    return {"outpaint_overlap_agreement": agree[0] / agree[1],
            "outpaint_overlap_agreement_occupied": agree_occ[0] / agree_occ[1],
            "outpaint_overlap_agreement_vae": agree_vae[0] / agree_vae[1],
            "outpaint_seam_drivable_iou": inter / union if union else float("nan"),
            "outpaint_chunks": len(seconds), "outpaint_s": float(np.median(seconds))}


def _road_side(labels: np.ndarray, band: int) -> str:
    """The side (east, north, west, south) whose outermost `band` columns of the ground truth hold the most
    road: the seam figure needs a seam that roads cross."""
    road = drivable_columns(labels)
    counts = {"east": road[-band:].sum(), "west": road[:band].sum(), "north": road[:, -band:].sum(),
              "south": road[:, :band].sum()}
    return max(counts, key=counts.get)


def _edits(layout: Layout, rng: np.random.Generator) -> list[tuple[str, Layout]]:
    """Two edits of a layout: remove one object, move one car 6 m along its heading."""
    boxes = list(layout.boxes)
    (lx, ly), (ux, uy) = (-34.0, -34.0), (34.0, 34.0)  # keep the edits inside the chunk with room for the margin
    inside = [i for i, b in enumerate(boxes) if lx < b.center[0] < ux and ly < b.center[1] < uy]
    cars = [i for i in inside if boxes[i].label == semantics.ID["car"]]
    out = []
    if inside:
        r = inside[int(rng.integers(len(inside)))]
        out.append(("remove", replace(layout, boxes=tuple(b for i, b in enumerate(boxes) if i != r))))
    if cars:
        m = cars[int(rng.integers(len(cars)))]
        b = boxes[m]
        c = (b.center[0] + EDIT_MOVE * np.cos(b.yaw), b.center[1] + EDIT_MOVE * np.sin(b.yaw), b.center[2])
        out.append(("move", replace(layout, boxes=tuple(replace(b, center=c) if i == m else x for i, x in enumerate(boxes)))))
    return out


def measure_edits(stage, n_chunks: int = 6, seed: int = 0, margin: float = 4.0, log=None) -> dict:
    """edit_* figures of an OccupancyStage on `n_chunks` held-out test chunks."""
    from ..ops.layout_diff import change_distance, layout_change

    same = total = 0
    done = [0, 0]
    cleared = [0, 0]
    seconds = []
    rng = np.random.default_rng(seed)
    for k, (ws, chunk) in enumerate(test_scenes(n_chunks, seed)):
        caption = chunk.description.caption()
        env = chunk.description.environment
        base = stage(chunk.layout, caption, seed=k, environment=env)
        for name, new in _edits(chunk.layout, rng):
            change = layout_change(chunk.layout, new)
            dist = change_distance(change, stage.grid)
            t0 = time.time()
            out = stage.regenerate(base.triplane, base.occupancy, dist <= margin, new, caption, seed=k, environment=env,
                                   paste=False)
            seconds.append(time.time() - t0)
            far = dist > FAR
            same += int((out.occupancy.labels[far] == base.occupancy.labels[far]).sum())
            total += int(far.sum() * stage.grid.shape[2])
            if change.added:
                d, t = box_realised_counts(out.occupancy.labels, Layout(change.added), stage.grid)
                done[0] += d
                done[1] += t
            was, t = box_realised_counts(base.occupancy.labels, Layout(change.removed), stage.grid)
            still, _ = box_realised_counts(out.occupancy.labels, Layout(change.removed), stage.grid)
            cleared[0] += max(was - still, 0)
            cleared[1] += was
        if log is not None:
            log(f"edits {k + 1}/{n_chunks} (world {ws}): far unchanged {same / max(total, 1):.5f}")
    return {"edit_far_unchanged": same / total if total else float("nan"),
            "edit_box_realised": done[0] / done[1] if done[1] else float("nan"),
            "edit_removed_cleared": cleared[0] / cleared[1] if cleared[1] else float("nan"),
            "edit_s": float(np.median(seconds)) if seconds else float("nan")}


def main(argv: list[str] | None = None) -> None:
    import argparse
    from pathlib import Path

    import torch

    from ..stages.occupancy import OccupancyStage

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chunks", type=int, default=6, help="held-out test chunks")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    stage = OccupancyStage.from_pretrained()
    figures = {**measure_outpainting(stage, args.chunks, args.seed, log=print),
               **measure_edits(stage, args.chunks, args.seed, log=print)}
    from .report import print_figures

    print_figures(figures, args.json)


if __name__ == "__main__":
    main()
