"""Controllability of layout-conditioned occupancy generation (quality keys of DESIGN.md / issue 5).

- box_realised: share of the layout's boxes (centre inside the grid) whose volume, the voxels with
  their centre inside the box, is at least half filled by the box's class in the occupancy.
- drivable_iou: IoU of the occupancy's driveable-surface columns (the column's surface, its topmost
  ground / manmade voxel with objects and vegetation looked through, is driveable_surface) with the
  layout's drivable area (polygons of kinds in types.layout.DRIVABLE_KINDS,
  rasterised on the grid's BEV cells, a cell counts when at least half covered).
- drivable_iou_no_layout: drivable_iou of occupancy sampled with the layout condition zeroed (BEV map
  zero, no boxes; the caption kept), against the same layouts: how much the layout condition matters.

Figures are pooled over chunks (boxes counted over all chunks, IoU from summed intersections and
unions). They are measured on what the diffusion model decodes (sample -> VAE decode, argmax class),
before anything copies the condition into the output. `measure_controllability` also reports the same
figures for the ground truth (`*_gt`) and for the VAE reconstruction of the ground truth (`*_vae`), the
ceiling a latent model can reach through this VAE.

    python -m xscene_core.eval.controllability --model checkpoints/occupancy_diffusion \\
        --vae checkpoints/triplane_vae --chunks 6 [--json PATH]
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from .. import semantics
from ..ops.box_guidance import counted_boxes
from ..types.layout import DRIVABLE_KINDS, Layout
from ..types.occupancy import GridSpec

DRIVEABLE = semantics.ID["driveable_surface"]
_SURFACE = np.zeros(semantics.NUM_CLASSES, bool)  # classes that can be a column's surface
_SURFACE[list(semantics.GROUND_IDS) + [semantics.ID["manmade"], semantics.OTHERS]] = True


def box_realised_by_class(labels: np.ndarray, layout: Layout, grid: GridSpec,
                          threshold: float = 0.5) -> dict[int, tuple[int, int]]:
    """{class id: (realised boxes, counted boxes)} of one occupancy labels uint8 [X, Y, Z] against its
    layout (boxes with their centre inside the grid and at least one voxel centre inside them)."""
    out: dict[int, tuple[int, int]] = {}
    for box, vox in counted_boxes(layout, grid):
        d, t = out.get(box.label, (0, 0))
        out[box.label] = (d + int(np.mean(labels[vox] == box.label) >= threshold), t + 1)
    return out


def box_realised_counts(labels: np.ndarray, layout: Layout, grid: GridSpec, threshold: float = 0.5) -> tuple[int, int]:
    """(realised boxes, counted boxes) of one occupancy labels uint8 [X, Y, Z] against its layout."""
    per = box_realised_by_class(labels, layout, grid, threshold).values()
    return sum(d for d, _ in per), sum(t for _, t in per)


def layout_drivable(layout: Layout, grid: GridSpec) -> np.ndarray:
    """bool [X, Y]: BEV cells at least half covered by the layout's drivable polygons (DRIVABLE_KINDS)."""
    from ..ops.condition_maps import bev_layout_map

    return bev_layout_map(Layout(polygons=tuple(p for p in layout.polygons if p.kind in DRIVABLE_KINDS)), grid).channel("drivable") >= 0.5


def drivable_columns(labels: np.ndarray) -> np.ndarray:
    """bool [X, Y]: columns whose surface is driveable_surface. The surface of a column is its topmost
    voxel of a ground class (semantics.GROUND_IDS), manmade or others; objects and vegetation are looked
    through (a car stands on the road, a canopy hangs over it), a building's roof is not a road, and
    stray driveable voxels below another surface do not count."""
    labels = np.asarray(labels)
    solid = _SURFACE[labels]                                              # [X, Y, Z]
    top = labels.shape[-1] - 1 - np.argmax(solid[..., ::-1], axis=-1)     # index of the topmost surface voxel
    cls = np.take_along_axis(labels, top[..., None], axis=-1)[..., 0]
    return solid.any(axis=-1) & (cls == DRIVEABLE)


def drivable_counts(labels: np.ndarray, layout_area: np.ndarray) -> tuple[int, int]:
    """(intersection, union) of the driveable-surface columns of labels with a layout's drivable cells."""
    pred = drivable_columns(labels)
    return int((pred & layout_area).sum()), int((pred | layout_area).sum())


@dataclass
class ControlTally:
    """Pooled counts of one kind of occupancy (generated, ground truth, ...)."""

    boxes_done: int = 0
    boxes_total: int = 0
    inter: int = 0
    union: int = 0
    by_class: dict[int, tuple[int, int]] = field(default_factory=dict)

    def add(self, labels: np.ndarray, layout: Layout, area: np.ndarray, grid: GridSpec) -> "ControlTally":
        for label, (d, t) in box_realised_by_class(labels, layout, grid).items():
            d0, t0 = self.by_class.get(label, (0, 0))
            self.by_class[label] = (d0 + d, t0 + t)
            self.boxes_done, self.boxes_total = self.boxes_done + d, self.boxes_total + t
        i, u = drivable_counts(labels, area)
        self.inter, self.union = self.inter + i, self.union + u
        return self

    def by_class_text(self) -> str:
        """'car 122/128, pedestrian 62/93, ...' (most boxes first)."""
        rows = sorted(self.by_class.items(), key=lambda kv: -kv[1][1])
        return ", ".join(f"{semantics.NAMES[k]} {d}/{t}" for k, (d, t) in rows)

    @property
    def box_realised(self) -> float:
        return self.boxes_done / self.boxes_total if self.boxes_total else float("nan")

    @property
    def drivable_iou(self) -> float:
        return self.inter / self.union if self.union else float("nan")


def test_locations(n_chunks: int, seed: int = 0, split: str = "test") -> Iterator[tuple["SyntheticWorld", float, float]]:  # noqa: F821
    """`n_chunks` (world, x, y) chunk centres of held-out worlds of `split`, one per environment in turn
    (the same locations as eval.occupancy_metrics.test_chunks)."""
    from ..data.splits import world_seeds
    from ..data.world import SyntheticWorld
    from ..types.scene import ENVIRONMENTS

    seeds = world_seeds(split, start=seed)
    world = None
    for i in range(n_chunks):
        k = i % len(ENVIRONMENTS)
        if k == 0:
            world = SyntheticWorld(next(seeds))
        x, y = world.find_location(ENVIRONMENTS[k], start=k)
        yield world, x, y


def test_scenes(n_chunks: int, seed: int = 0, split: str = "test") -> Iterator[tuple[int, "Chunk"]]:  # noqa: F821
    """`n_chunks` (world seed, Chunk) at the test_locations."""
    for world, x, y in test_locations(n_chunks, seed, split):
        yield world.seed, world.chunk(x, y)


def measure_controllability(model, vae, n_chunks: int = 6, seed: int = 0, guidance: float | None = None,
                            steps: int | None = None, references: bool = True, log=None, split: str = "test",
                            scheduler: str = "ddim", box_guidance: float | None = None) -> dict:
    """box_realised, drivable_iou, drivable_iou_no_layout of an OccupancyDiffusion + TriplaneVAE on
    `n_chunks` held-out chunks of `split` (test; val to choose settings; sample seed = chunk number), plus
    *_gt and *_vae references and box_realised_by_class ("car 122/128, ..."). box_guidance: strength of
    ops.box_guidance (None = the model config's box_guidance_scale, 0 = off)."""
    import torch

    from ..ops.box_guidance import box_guidance_for, box_guidance_strength

    strength = box_guidance_strength(model, box_guidance)

    tallies = {k: ControlTally() for k in ("gen", "none", "gt", "vae")}
    t_sample, n = 0.0, 0
    for i, (ws, chunk) in enumerate(test_scenes(n_chunks, seed, split)):
        grid, layout = chunk.occupancy.grid, chunk.layout
        caption = chunk.description.caption() if chunk.description is not None else None
        area = layout_drivable(layout, grid)
        t0 = time.time()
        text = model.condition(None, caption).text[0].cpu().numpy() if caption else None  # embed once
        guide = box_guidance_for(model, vae, [layout], strength)
        gen = model.sample(layout, text, seed=i, guidance=guidance, steps=steps, scheduler=scheduler, x0_guide=guide)
        t_sample += time.time() - t0
        n += 1
        none = model.sample(None, text, seed=i, guidance=guidance, steps=steps, scheduler=scheduler)
        with torch.no_grad():
            vols = vae.decode_volume(model.unroll(torch.cat([gen, none]))).cpu().numpy()
        tallies["gen"].add(vols[0], layout, area, grid)
        tallies["none"].add(vols[1], layout, area, grid)
        if references:
            tallies["gt"].add(chunk.occupancy.labels, layout, area, grid)
            rec = vae.reconstruct(torch.as_tensor(chunk.occupancy.labels)[None])[0].cpu().numpy()
            tallies["vae"].add(rec, layout, area, grid)
        if log is not None:
            log(f"chunk {i + 1}/{n_chunks} (world {ws}): box_realised {tallies['gen'].box_realised:.3f} "
                f"drivable_iou {tallies['gen'].drivable_iou:.3f} no_layout {tallies['none'].drivable_iou:.3f}")
    out = {"box_realised": tallies["gen"].box_realised, "drivable_iou": tallies["gen"].drivable_iou,
           "drivable_iou_no_layout": tallies["none"].drivable_iou,
           "box_realised_no_layout": tallies["none"].box_realised,
           "boxes_counted": tallies["gen"].boxes_total, "chunks": n, "sample_s": t_sample / max(n, 1),
           "box_realised_by_class": tallies["gen"].by_class_text(), "box_guidance": strength}
    if references:
        out.update(box_realised_gt=tallies["gt"].box_realised, drivable_iou_gt=tallies["gt"].drivable_iou,
                   box_realised_vae=tallies["vae"].box_realised, drivable_iou_vae=tallies["vae"].drivable_iou)
    return out


def main(argv: list[str] | None = None) -> None:
    import argparse

    import torch

    from ..models.occupancy_diffusion import OccupancyDiffusion
    from ..models.triplane_vae import TriplaneVAE

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True, help="an OccupancyDiffusion save_pretrained folder")
    ap.add_argument("--vae", type=Path, required=True, help="the TriplaneVAE folder it was trained with")
    ap.add_argument("--chunks", type=int, default=6, help="held-out test chunks")
    ap.add_argument("--seed", type=int, default=0, help="first test world seed")
    ap.add_argument("--split", choices=("test", "val"), default="test",
                    help="test: the reported figures; val: for choosing settings such as the guidance")
    ap.add_argument("--guidance", type=float, default=None)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--scheduler", choices=("ddim", "unipc"), default="ddim")
    ap.add_argument("--box-guidance", type=float, default=None,
                    help="box guidance strength (ops.box_guidance; default: the model's, 0 = off)")
    ap.add_argument("--no-references", action="store_true", help="skip the ground-truth and VAE reference figures")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = OccupancyDiffusion.from_pretrained(args.model)
    vae = TriplaneVAE.from_pretrained(args.vae)
    figures = measure_controllability(model, vae, args.chunks, args.seed, args.guidance, args.steps,
                                      not args.no_references, print, args.split, args.scheduler,
                                      args.box_guidance)
    from .report import print_figures

    print_figures(figures, args.json)


if __name__ == "__main__":
    main()
