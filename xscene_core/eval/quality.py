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

CHECKPOINTS = Path(__file__).resolve().parents[2] / "checkpoints"
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


def description_attr_recall() -> float:
    """Share of the attributes the prompt set states that the offline Describe stage's descriptions
    carry (tests/llm/prompts_attr.jsonl, shipped memory bank, no LLM)."""
    from ..stages.describe import DescribeStage
    from .description_metrics import DEFAULT_PROMPT_SET, description_attr_recall as recall

    stage = DescribeStage(llm=None)
    return recall(DEFAULT_PROMPT_SET, lambda prompt: stage(prompt).description)


def graph_roundtrip(n_graphs: int = 500, per_world: int = 25) -> float:
    """Share of scene graphs of held-out synthetic chunks that survive text and back unchanged."""
    from ..data.world.describe import graph_of
    from ..scene_graph_text import emit, parse

    ok = total = 0
    seeds = world_seeds("test")
    while total < n_graphs:
        world = SyntheticWorld(next(seeds))
        x0, y0 = world.find_location(ENVIRONMENTS[total // per_world % len(ENVIRONMENTS)], start=total)
        for k in range(min(per_world, n_graphs - total)):
            g = graph_of(world.layout_at(x0 + 37.2 * (k % 5), y0 + 41.6 * (k // 5)), world.grid)
            ok += parse(emit(g)) == g
            total += 1
    return ok / total


def words_rows(args) -> list[Row]:
    rows = [Row("world_overlap_agreement", world_overlap_agreement(args.worlds), "", "= 1.0",
                "share of shared voxels two overlapping synthetic chunks label alike (held-out worlds)")]
    rows.append(Row("description_attr_recall", description_attr_recall(), "", ">= 0.95",
                    "offline Describe stage over the 210-prompt set of tests/llm (shipped bank, no LLM)"))
    rows.append(Row("graph_roundtrip", graph_roundtrip(args.graphs), "", "= 1.0",
                    f"scene graphs of {args.graphs} held-out synthetic chunks, parse(emit(g)) == g"))
    return rows


def layout_rows(args) -> list[Row]:
    from .layout_metrics import measure_layout

    lay = measure_layout(n_graphs=args.layout_graphs, seed=0)
    rows = []
    for key, target, note in (
            ("layout_relations", ">= 0.90", "scene-graph relations that hold in the sampled layout"),
            ("layout_collisions", "< 0.02", "share of box pairs overlapping in BEV"),
            ("layout_cars_on_drivable", ">= 0.95", "vehicle boxes on the drivable area")):
        rows.append(Row(key, lay[key], "", target,
                        f"{note}; boxes placed at random: {lay[key + '_random']:.3f}, copied from the graph: "
                        f"{lay[key + '_graph_copy']:.3f} ({int(lay['layout_graphs'])} held-out graphs)"))
    rows.append(Row("layout_boxes_colliding", lay["layout_boxes_colliding"], "", "",
                    f"share of boxes overlapping any other (random: {lay['layout_boxes_colliding_random']:.3f})"))
    return rows


def vae_rows(args) -> list[Row]:
    from ..models.triplane_vae import TriplaneVAE
    from .occupancy_metrics import measure_vae

    vae = measure_vae(TriplaneVAE.from_pretrained(CHECKPOINTS / "triplane_vae"), n_chunks=args.vae_chunks, seed=0)
    rows = [
        Row("vae_miou", vae["vae_miou"], "%", ">= 92.4", f"tiny triplane VAE, {args.vae_chunks} held-out synthetic chunks"),
        Row("vae_iou", vae["vae_iou"], "%", ">= 85.6", "geometry IoU, same chunks"),
    ]
    if "vae_real_miou" in vae:
        rows += [
            Row("vae_real_miou", vae["vae_real_miou"], "%", "reported", "the real Occ3D frame (never trained on), whole volume; "
                f"inside its camera mask: {vae['vae_real_miou_camera']:.1f}"),
            Row("vae_real_iou", vae["vae_real_iou"], "%", "reported", f"inside the camera mask: {vae['vae_real_iou_camera']:.1f}"),
        ]
    return rows


def control_rows(args) -> list[Row]:
    from ..models.occupancy_diffusion import OccupancyDiffusion
    from ..models.triplane_vae import TriplaneVAE
    from .controllability import measure_controllability

    model = OccupancyDiffusion.from_pretrained(CHECKPOINTS / "occupancy_diffusion")
    vae = TriplaneVAE.from_pretrained(CHECKPOINTS / "triplane_vae")
    ctl = measure_controllability(model, vae, n_chunks=args.control_chunks)
    raw = measure_controllability(model, vae, n_chunks=args.control_chunks, references=False, box_guidance=0.0)
    n = f"{args.control_chunks} held-out chunks, decoded occupancy before any copy of the layout"
    return [
        Row("box_realised", ctl["box_realised"], "", ">= 0.90", f"layout boxes at least half filled by their class; {n}; "
            f"box guidance {ctl['box_guidance']:g} (the default sampler); per class {ctl['box_realised_by_class']}"),
        Row("box_realised_unguided", raw["box_realised"], "", "", f"same without box guidance (the denoiser alone); "
            f"per class {raw['box_realised_by_class']}"),
        Row("drivable_iou", ctl["drivable_iou"], "", ">= 0.80", f"decoded driveable columns vs the layout's road area; {n}"),
        Row("drivable_iou_no_layout", ctl["drivable_iou_no_layout"], "", "far lower", "same with the layout condition zeroed"),
    ]


def world_rows(args) -> list[Row]:
    from ..stages.occupancy import OccupancyStage
    from .world_metrics import measure_edits, measure_outpainting

    stage = OccupancyStage.from_pretrained()
    out = measure_outpainting(stage, args.world_chunks)
    ed = measure_edits(stage, args.world_chunks)
    m = f"{args.world_chunks} held-out chunks, decoded voxels, nothing pasted"
    return [
        Row("outpaint_overlap_agreement", out["outpaint_overlap_agreement"], "", ">= 0.95",
            f"new chunk vs neighbour in the overlap, all voxels; occupied-only {out['outpaint_overlap_agreement_occupied']:.3f}; "
            f"the neighbour's own VAE reconstruction {out['outpaint_overlap_agreement_vae']:.3f} (ceiling); {m}"),
        Row("outpaint_seam_drivable_iou", out["outpaint_seam_drivable_iou"], "", ">= 0.80",
            f"driveable columns vs ground truth within 8 m of the seam; {m}"),
        Row("edit_far_unchanged", ed["edit_far_unchanged"], "", ">= 0.99",
            f"voxels > 8 m from every changed box unchanged (remove one object, move one car 6 m), before the paste; "
            f"moved boxes realised {ed['edit_box_realised']:.2f}, old places cleared {ed['edit_removed_cleared']:.2f}; {m}"),
    ]


def splat_rows(args) -> list[Row]:
    from .splat_metrics import measure_splat

    sp = measure_splat(args.world_chunks, seed=0)
    return [Row("splat_psnr", sp["splat_psnr"], "dB", ">= 20",
                f"each chunk lifted to Gaussians from its six {sp['splat_views']} views, re-rendered "
                f"(opaque box render) into the same cameras, pooled over pixels showing geometry; {args.world_chunks} "
                f"held-out chunks, {sp['splat_gaussians']:.0f} surface Gaussians per chunk")]


def image_rows(args) -> list[Row]:
    from ..stages.multiview import model_installed
    from .image_metrics import WINDOW_TILE, measure_images

    if not model_installed():
        return []  # no image model installed: the keys are absent
    im = measure_images(args.world_chunks, seed=0, log=lambda *a: None)
    n = f"{args.world_chunks} held-out chunks"
    codec = ("" if im["image_codec_psnr"] is None else
             f"; the latent space's autoencoder reconstructs the preview at {im['image_codec_psnr']:.2f} dB")
    plain = im["image_alignment_miou_plain_decoder"] is not None  # decoded by the geometry-aware decoder

    def without(key: str) -> str:
        return f"; the same samples through the autoencoder's plain decoder {im[key + '_plain_decoder']:.3f}" if plain else ""

    return [
        Row("image_alignment_miou", im["image_alignment_miou"], "", "reported",
            f"segmenter (trained on val preview renders) on the generated views vs the conditioning semantic map; preview "
            f"renders (ceiling) {im['image_alignment_miou_preview']:.3f}, geometry condition zeroed (floor) "
            f"{im['image_alignment_miou_no_geometry']:.3f}{without('image_alignment_miou')}; {n}{codec}"),
        Row("image_cross_view_consistency", im["image_cross_view_consistency"], "", "reported",
            f"1 - mean absolute RGB difference of ring neighbours on pixels both see (depth-checked); preview renders "
            f"{im['image_cross_view_consistency_preview']:.3f}; extrapolated views vs the reference's overlap PSNR "
            f"{im['image_extrapolation_psnr']:.2f} dB (without the reference {im['image_extrapolation_psnr_no_reference']:.2f}"
            + (f", plain decoder {im['image_psnr_plain_decoder']:.2f}" if plain else "")
            + f"){without('image_cross_view_consistency')}; {n}"),
        Row("image_sharpness", im["image_sharpness"], "", "reported",
            f"mean absolute Laplacian of the generated views over the preview renders' at the model's image size "
            f"(1 = as much fine detail as the previews, lower = blurred){without('image_sharpness')}; at the cameras' "
            f"size {im['image_sharpness_rig']:.3f}{without('image_sharpness_rig')}; {n}"),
        Row("image_vehicle_error", im["image_vehicle_error"], "", "reported",
            f"mean absolute RGB difference (0..1) of the generated views to the preview renders on the pixels of "
            f"vehicles whose paint the layout states (lower = in their colours){without('image_vehicle_error')}; {n}"),
    ] + ([] if im.get("image_facade_error") is None else [
        Row("image_facade_error", im["image_facade_error"], "", "reported",
            f"the same on the bare walls of buildings, against the preview of the same seed (lower = in the colours "
            f"the seed picks, not the palette's average){without('image_facade_error')}; {n}")]) + ([] if im["image_crossing_contrast"] is None else [
        Row("image_crossing_contrast", im["image_crossing_contrast"], "", "reported",
            f"mean luma (0..1) of the road on the layout's crossings minus beside them in the generated views (the "
            f"zebra's white bars); preview renders (ceiling) {im['image_crossing_contrast_preview']:.3f}; {n}")]) + (
        [] if im["image_paint_contrast"] is None else [
        Row("image_paint_contrast", im["image_paint_contrast"], "", "reported",
            f"the same on the layout's white road paint (lane dashes, edge and stop lines, zebra bars) against the "
            f"road beside it; preview renders (ceiling) {im['image_paint_contrast_preview']:.3f}; {n}")]) + (
        [] if im.get("image_light_contrast") is None else [
        Row("image_light_contrast", im["image_light_contrast"], "", "reported",
            f"at night: mean luma of the pixels on the layout's light fixtures (street lamps, head and tail lights) "
            f"minus the pixels no light touches; preview renders (ceiling) {im['image_light_contrast_preview']:.3f}; "
            f"the night chunks of {n}")]) + (
        [] if im.get("image_window_contrast") is None else [
        Row("image_window_contrast", im["image_window_contrast"], "", "reported",
            f"mean absolute luma difference between the buildings' windows and shop fronts (ops.facade_windows) and "
            f"the bare wall beside them, per {WINDOW_TILE}-pixel tile, in the generated views; preview renders "
            f"(ceiling) {im['image_window_contrast_preview']:.3f}; {n}")])


GROUPS = {"words": words_rows, "layout": layout_rows, "vae": vae_rows, "control": control_rows, "world": world_rows,
          "splat": splat_rows, "images": image_rows}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--json", type=Path, default=None, help="also write {key: value} here")
    ap.add_argument("--no-markdown", action="store_true", help="do not update BENCHMARKS.md")
    ap.add_argument("--only", default="", help=f"comma-separated groups to measure ({', '.join(GROUPS)}); the other "
                    "rows of BENCHMARKS.md are kept")
    ap.add_argument("--worlds", type=int, default=3, help="held-out worlds per figure")
    ap.add_argument("--graphs", type=int, default=500, help="scene graphs in graph_roundtrip")
    ap.add_argument("--layout-graphs", type=int, default=60, help="held-out scene graphs the layout model lays out")
    ap.add_argument("--vae-chunks", type=int, default=12, help="held-out chunks the VAE reconstructs")
    ap.add_argument("--control-chunks", type=int, default=12, help="held-out chunks for box_realised / drivable_iou")
    ap.add_argument("--world-chunks", type=int, default=6, help="held-out chunks for the outpainting and edit figures")
    args = ap.parse_args(argv)
    only = [g for g in args.only.split(",") if g]
    unknown = set(only) - set(GROUPS)
    if unknown:
        ap.error(f"unknown groups {sorted(unknown)}; use {', '.join(GROUPS)}")
    rows = [r for name, fn in GROUPS.items() if not only or name in only for r in fn(args)]
    publish("Quality", rows, args.json, not args.no_markdown, merge=bool(only))


if __name__ == "__main__":
    main()
