"""Quality and speed of the multi-view image stage on held-out synthetic `test` worlds.

    measure_images(n_chunks=6, seed=0) -> dict (ImageMetrics.as_dict(): the flat keys below)

- image_alignment_miou: mIoU between the conditioning semantic map (at the model resolution) and the
  segmentation of the generated views by the judge segmenter (checkpoints/segmenter: trained on preview
  renders of `val` worlds, never on generated images), over the classes present in the conditions.
- image_alignment_miou_preview: the same for the preview renders of the same chunks (the ceiling: what
  the judge achieves on the look the model was trained to produce).
- image_alignment_miou_no_geometry: the same for views generated with the geometry condition zeroed
  (the floor: what caption, boxes and cameras alone give).
- image_cross_view_consistency: agreement of neighbouring cameras where they see the same surface:
  pixels of view i are lifted with the rendered depth, projected into its ring neighbour j, kept where j's
  depth agrees (visible in both), and 1 - mean |RGB_i - RGB_j| / 255 is taken over all such pairs
  (1 = identical). image_cross_view_consistency_preview is the same for the preview renders.
- image_extrapolation_psnr / image_extrapolation_psnr_no_reference: PSNR (dB, model resolution) of the
  generated views of a chunk against its preview render, when the views are extrapolated from the preview
  views of the chunk 40 m behind it (same look: sun, facades, weather; MultiViewStage.extrapolate) and
  when generated without a reference: how much of the appearance the reference carries across the seam.
- image_codec_psnr (latent-space models only; None in pixel space): PSNR (dB) of the preview renders
  encoded and decoded by the model's autoencoder, at the autoencoder's image size: the ceiling the latent
  space puts on any generated view.
- image_sharpness: mean absolute Laplacian of the generated views over that of the preview renders of the
  same chunks, both at the model's own image size (1: as much fine detail as the previews; a blurred view
  scores lower, noise higher): the figure that PSNR and alignment, which reward a safe blur, do not show.
  image_sharpness_rig: the same at the cameras' size (224 x 400, what the stage returns and a person
  looks at), against previews rendered at that size: it also counts what a decoder draws above the
  model's image size (an upscaling geometry decoder).
- image_vehicle_error: mean absolute RGB difference (0..1) between the generated views (no reference) and
  the preview renders on the pixels of boxes whose paint the layout states (Box.color: cars, buses,
  trucks, motorcycles), at the judge's size: whether vehicles come out in their colours (windows, wheels
  and lights included) or as the mean paint.
- image_facade_error: the same on the bare walls (man-made pixels fully on a wall whose colour the look
  seed picks, ops.facade_paint, and off the windows), with the preview of the sample's own seed: whether
  the buildings come out in the colours the preview paints them, or as the palette's average.
- image_crossing_contrast: how much brighter the road is on the crossings than beside them (the zebra's
  white bars), in the generated views (no reference): the mean luma (0..1) of driveable-surface pixels
  that a crossing covers (ViewArrays.areas over half the pixel) minus that of the other driveable-surface
  pixels, pooled over the chunks, at the judge's size. image_crossing_contrast_preview is the same for the
  preview renders (the ceiling); a model that cannot know where the crossings are scores about 0.
- image_paint_contrast (and _preview): the same for the layout's white road paint (lane dashes, edge and
  stop lines, the zebra's bars; the "paint_white" channel of ViewArrays.areas) against the road beside it:
  whether the marks come out where the layout paints them, not only as a brighter crossing.
- image_light_contrast (and _preview): over the chunks at night, the mean luma of the pixels that a light
  fixture's mark covers over half (street lamp heads, head and tail lights: ops.street_lights) minus that
  of the pixels no light touches: whether the lights shine where the layout puts them (None without a
  night chunk).
- image_window_contrast (and _preview): the mean absolute luma difference between the windows (and shop
  fronts: ops.facade_windows, pixels a mark covers over half) and the bare wall beside them (man-made pixels
  no window touches), in tiles of WINDOW_TILE pixels that hold some of both, over all tiles of the chunks:
  whether the facades show their glazing where the preview draws it, or an averaged wall (near 0). Local
  and unsigned, because the glass is darker than a pale wall, brighter than a dark one and lit at night.
- *_plain_decoder (models whose config decodes with the geometry-aware decoder only; None otherwise):
  image_alignment_miou, image_cross_view_consistency, image_sharpness and the no-reference PSNR of the same samples (the
  same latents) decoded by the autoencoder's own decoder instead: how much of each
  figure the denoiser gives and how much the decoder's reading of the geometry adds.
- images_s: median seconds of one MultiViewStage call (six views, 224 x 400 renders in, same size out)
  over the chunks after a warm-up call.

Everything is computed on what the model decodes (the stage's output box-downsampled to 64 x 112, the
judge's resolution, whatever the model's own resolution or space); nothing of the condition is pasted into
the images.

    python -m xscene_core.eval.image_metrics --chunks 6
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from .. import semantics
from ..types.cameras import CameraRig

_REPO = Path(__file__).resolve().parents[2]
SEGMENTER = _REPO / "checkpoints" / "segmenter"
EXTENSION_STEP = 40.0  # metres: the WorldMap stride, the editor's extension step
WINDOW_TILE = 8  # pixels at the judge's size: a tile spans a few windows of a near facade
WINDOW_TILE_MIN = 3  # pixels of windows and of bare wall a tile needs to be compared
DEPTH_AGREE = 0.05  # relative depth difference under which a pixel of view i is seen by view j too


@dataclass
class ImageMetrics:
    image_alignment_miou: float
    image_alignment_miou_preview: float
    image_alignment_miou_no_geometry: float
    image_cross_view_consistency: float
    image_cross_view_consistency_preview: float
    image_extrapolation_psnr: float
    image_extrapolation_psnr_no_reference: float
    images_s: float
    chunks: int
    image_codec_psnr: float | None = None
    image_alignment_miou_plain_decoder: float | None = None
    image_cross_view_consistency_plain_decoder: float | None = None
    image_psnr_plain_decoder: float | None = None
    image_sharpness: float | None = None
    image_sharpness_plain_decoder: float | None = None
    image_sharpness_rig: float | None = None
    image_sharpness_rig_plain_decoder: float | None = None
    image_vehicle_error: float | None = None
    image_vehicle_error_plain_decoder: float | None = None
    image_facade_error: float | None = None
    image_facade_error_plain_decoder: float | None = None
    image_crossing_contrast: float | None = None
    image_crossing_contrast_preview: float | None = None
    image_paint_contrast: float | None = None
    image_paint_contrast_preview: float | None = None
    image_light_contrast: float | None = None
    image_light_contrast_preview: float | None = None
    image_window_contrast: float | None = None
    image_window_contrast_preview: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def overlap_pairs(depth: np.ndarray, rig: CameraRig) -> list[tuple[int, np.ndarray, int, np.ndarray]]:
    """Pixels seen by two ring-neighbouring cameras: a list of (i, flat pixel indices in view i, j, flat
    indices in view j). depth: float [V, h, w] metres (camera z, 0 = miss) at the rig's size."""
    V, h, w = depth.shape
    v_, u_ = np.meshgrid(np.arange(h) + 0.5, np.arange(w) + 0.5, indexing="ij")
    out = []
    for i in range(V):
        for j in ((i + 1) % V, (i - 1) % V):
            if j == i:
                continue
            ok = depth[i] > 0
            z = depth[i][ok]
            Ki, Kj = rig.cameras[i].K, rig.cameras[j].K
            pc = np.stack([(u_[ok] - Ki[0, 2]) / Ki[0, 0] * z, (v_[ok] - Ki[1, 2]) / Ki[1, 1] * z, z], -1)
            T = np.linalg.inv(rig.T_world_cam(j)) @ rig.T_world_cam(i)
            q = pc @ T[:3, :3].T + T[:3, 3]
            front = q[:, 2] > 0.1
            uj = Kj[0, 0] * q[:, 0] / np.where(front, q[:, 2], 1) + Kj[0, 2]
            vj = Kj[1, 1] * q[:, 1] / np.where(front, q[:, 2], 1) + Kj[1, 2]
            inside = front & (uj >= 0) & (uj < w) & (vj >= 0) & (vj < h)
            ci, ri = np.floor(uj[inside]).astype(int), np.floor(vj[inside]).astype(int)
            dj = depth[j][ri, ci]
            vis = np.abs(dj - q[inside, 2]) < DEPTH_AGREE * q[inside, 2]
            src = np.flatnonzero(ok)[inside][vis]
            out.append((i, src, j, ri[vis] * w + ci[vis]))
    return out


def cross_view_agreement(images: np.ndarray, pairs) -> tuple[float, int]:
    """(sum of per-pixel agreements 1 - mean|RGB_i - RGB_j| / 255, pixel count) over overlap pairs;
    images uint8 [V, h, w, 3]."""
    flat = images.reshape(images.shape[0], -1, 3).astype(np.float64)
    total, n = 0.0, 0
    for i, pi, j, pj in pairs:
        if len(pi):
            total += float((1 - np.abs(flat[i, pi] - flat[j, pj]).mean(-1) / 255).sum())
            n += len(pi)
    return total, n


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 images of one shape."""
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return 10 * np.log10(255.0 ** 2 / max(mse, 1e-10))


def laplacian_energy(images: np.ndarray | torch.Tensor) -> float:
    """Mean absolute 4-neighbour Laplacian of uint8 images [N, H, W, 3] (on 0..1) or float images
    [N, 3, H, W] (on [-1, 1], halved to the same scale); a ratio of two of them is scale-free."""
    if isinstance(images, np.ndarray):
        x = torch.from_numpy(images).float().permute(0, 3, 1, 2) / 255.0
    else:
        x = images.float() / 2
    k = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]], device=x.device)
    return float(torch.nn.functional.conv2d(x.flatten(0, 1)[:, None], k[None, None]).abs().mean())


def vehicle_error(images: np.ndarray, preview: np.ndarray, arrays) -> tuple[float, int]:
    """(sum of mean-over-channels |images - preview| / 255, pixel count) over the pixels of painted boxes:
    images / preview uint8 [V, h, w, 3] and arrays (ViewArrays) at that size."""
    from ..models.image_condition import ImageCondition, paint_map

    cond = ImageCondition.collate([arrays], [None], [None], [None], 3, max(len(arrays.box_labels), 1))
    on = (paint_map(cond)[0, :, 3] > 0).numpy()
    diff = np.abs(images.astype(np.float32) - preview.astype(np.float32)).mean(-1) / 255.0
    return float(diff[on].sum()), int(on.sum())


def facade_error(images: np.ndarray, preview: np.ndarray, arrays) -> tuple[float, int]:
    """(sum of mean-over-channels |images - preview| / 255, pixel count) over the bare walls: pixels a
    painted wall (ViewArrays.facade_paint, drawn with the preview's seed) covers whole and no window mark
    touches; images / preview uint8 [V, h, w, 3] and arrays (ViewArrays) at that size."""
    from ..models.image_condition import AREA_KINDS
    from ..ops.facade_windows import WINDOW_KINDS

    glass = arrays.areas[:, [AREA_KINDS.index(k) for k in WINDOW_KINDS]].max(1)
    on = (arrays.facade_paint[:, 3] == 255) & (glass == 0)
    diff = np.abs(images.astype(np.float32) - preview.astype(np.float32)).mean(-1) / 255.0
    return float(diff[on].sum()), int(on.sum())


def _luma(images: np.ndarray) -> np.ndarray:
    """float64 [..., h, w] luma in [0, 1] (Rec. 601 weights) of images uint8 [..., h, w, 3]."""
    return images.astype(np.float64) @ np.array([0.299, 0.587, 0.114]) / 255.0


def _luma_sums(images: np.ndarray, on: np.ndarray, off: np.ndarray) -> np.ndarray:
    """float64 [4]: (luma sum, pixel count) of images uint8 [V, h, w, 3] on the pixels `on`, then on `off`
    (bool [V, h, w])."""
    luma = _luma(images)
    return np.array([luma[on].sum(), on.sum(), luma[off].sum(), off.sum()], np.float64)


def area_luma(images: np.ndarray, arrays, kind: str = "crosswalk") -> np.ndarray:
    """float64 [4]: (luma sum, pixel count) on the driveable-surface pixels that more than half covers an
    area of `kind` (a kind of ops.condition_maps.PERSPECTIVE_AREA_KINDS: crossings or road paint), then the
    same on the driveable-surface pixels it does not touch; images uint8 [V, h, w, 3] and arrays
    (ViewArrays) at that size."""
    from ..models.image_condition import AREA_KINDS

    road = arrays.semantic == semantics.ID["driveable_surface"]
    cover = arrays.areas[:, AREA_KINDS.index(kind)]
    return _luma_sums(images, road & (cover > 127), road & (cover == 0))


def light_luma(images: np.ndarray, arrays) -> np.ndarray:
    """float64 [4]: (luma sum, pixel count) on the pixels more than half covered by a light fixture's mark
    (ops.street_lights.LIGHT_KINDS: lamp heads, head and tail lights), then on the pixels no light touches;
    images uint8 [V, h, w, 3] and arrays (ViewArrays) at that size."""
    from ..models.image_condition import AREA_KINDS
    from ..ops.street_lights import LIGHT_KINDS

    cover = arrays.areas[:, [AREA_KINDS.index(k) for k in LIGHT_KINDS]].max(1)
    return _luma_sums(images, cover > 127, cover == 0)


def window_tile_contrast(images: np.ndarray, arrays, tile: int = WINDOW_TILE) -> np.ndarray:
    """float64 [2]: (sum over tiles of |mean luma on the windows - mean luma on the bare wall|, tiles) over
    the tile x tile pixel tiles of images uint8 [V, h, w, 3] that hold at least WINDOW_TILE_MIN pixels of
    each: windows are man-made pixels a window mark (ops.facade_windows) covers over half, bare wall the
    man-made pixels no window touches; arrays (ViewArrays) at the images' size."""
    from ..models.image_condition import AREA_KINDS
    from ..ops.facade_windows import WINDOW_KINDS

    luma = _luma(images)
    built = arrays.semantic == semantics.ID["manmade"]
    cover = arrays.areas[:, [AREA_KINDS.index(k) for k in WINDOW_KINDS]].max(1)
    V, h, w = luma.shape
    th, tw = h // tile, w // tile

    def tiled(a: np.ndarray) -> np.ndarray:
        return a[:, : th * tile, : tw * tile].reshape(V, th, tile, tw, tile).sum((2, 4))

    glass, wall = (built & (cover > 127)).astype(np.float64), (built & (cover == 0)).astype(np.float64)
    n_glass, n_wall = tiled(glass), tiled(wall)
    keep = (n_glass >= WINDOW_TILE_MIN) & (n_wall >= WINDOW_TILE_MIN)
    diff = tiled(luma * glass)[keep] / n_glass[keep] - tiled(luma * wall)[keep] / n_wall[keep]
    return np.array([np.abs(diff).sum(), keep.sum()], np.float64)


def _contrast(sums: np.ndarray) -> float | None:
    """Mean luma on an area minus beside it from pooled area_luma sums (None without such areas)."""
    return float(sums[0] / sums[1] - sums[2] / sums[3]) if sums[1] and sums[3] else None


def judge_size() -> tuple[int, int]:
    """(h, w) at which every figure is measured: the judge segmenter's training resolution (train.segmenter
    reads the preview renders of the tiny preset's cache)."""
    from ..models.image_diffusion import PRESETS

    return tuple(PRESETS["tiny"]["sample_size"])


def measure_images(n_chunks: int = 6, seed: int = 0, checkpoint: str | Path | None = None,
                   segmenter: str | Path = SEGMENTER, log=print, split: str = "test",
                   guidance: float | None = None, guidance_rescale: float | None = None,
                   first_guess_strength: float | None = None) -> dict:
    """Figures of the module docstring over n_chunks chunks of `split` worlds (environments cycled): `test`
    for the reported figures; `val` to choose sampling settings, by the PSNR figures (the judge segmenter
    was trained on `val` preview renders, so its val alignment figures are optimistic). guidance: the
    classifier-free guidance scale and guidance_rescale its rescale, first_guess_strength where sampling
    starts (MultiViewStage; None: the model's)."""
    from ..data.splits import world_seeds
    from ..data.world import SyntheticWorld
    from ..models.segmenter import Segmenter, confusion
    from ..models.segmenter import miou as miou_of
    from ..models.image_condition import resize_images, view_condition_arrays
    from ..stages.multiview import DEFAULT_CHECKPOINT, MultiViewStage
    from ..stages.render import RenderStage, default_rig
    from ..types.scene import ENVIRONMENTS

    torch.set_num_threads(2)
    stage = MultiViewStage.from_pretrained(checkpoint or DEFAULT_CHECKPOINT, guidance_scale=guidance,
                                           guidance_rescale=guidance_rescale, first_guess_strength=first_guess_strength)
    # the same samples through the autoencoder's own decoder, beside a geometry-aware one
    plain = MultiViewStage(stage.model, geometry_decoder=False) if stage.codec.use_geometry_decoder else None
    judge = Segmenter.from_pretrained(segmenter)
    size = judge_size()
    rig = default_rig()
    render = RenderStage(rig, backend="torch")
    small_rig = rig.resized(*size)
    conf = {k: np.zeros((semantics.NUM_CLASSES,) * 2, np.int64) for k in ("gen", "preview", "nogeo", "plain")}
    agree = {k: [0.0, 0] for k in ("gen", "preview", "plain")}
    ext = {k: [] for k in ("ref", "noref", "plain")}
    codec_psnr = []
    detail = {k: [] for k in ("gen", "preview", "plain")}  # Laplacian energies at the model's image size
    detail_rig = {k: [] for k in ("gen", "preview", "plain")}  # and at the cameras' size
    paint = {k: [0.0, 0] for k in ("gen", "plain")}
    walls = {k: [0.0, 0] for k in ("gen", "plain")}  # bare walls against the preview's colours
    crossing = {k: np.zeros(4) for k in ("gen", "preview")}
    marks = {k: np.zeros(4) for k in ("gen", "preview")}  # white road paint
    lights = {k: np.zeros(4) for k in ("gen", "preview")}  # light fixtures, at night
    windows = {k: np.zeros(2) for k in ("gen", "preview")}  # windows against the wall beside them
    times = []
    seeds = world_seeds(split)
    for k in range(n_chunks):
        world = SyntheticWorld(next(seeds))
        try:
            x, y = world.find_location(ENVIRONMENTS[k % len(ENVIRONMENTS)])
        except ValueError:
            x, y = 0.0, 0.0
        chunk = world.chunk(x, y)
        views = render(chunk.occupancy)
        s = seed + k
        if k == 0:  # warm-up: first-call costs (embedder load, allocations) are not the stage's speed
            stage(views, chunk.description, chunk.layout, seed=s)
        t0 = time.perf_counter()
        generated, cond, sample = stage.generate_views(views, chunk.description, chunk.layout, seed=s)
        times.append(time.perf_counter() - t0)
        preview = render.preview(views, chunk.description, chunk.layout, seed=s, occupancy=chunk.occupancy)
        at_size = view_condition_arrays(views.semantic, views.depth, chunk.layout, views.rig, size,
                                        chunk.description.environment, facade_seed=s)
        target = at_size.semantic                                          # [V, h, w] at the judge's size
        gen = resize_images(generated.images, size, smooth=False)
        # a first guess is drawn from the geometry: redrawn without it for the floor
        nogeo = resize_images(stage.generate(stage.with_guide(cond.without_geometry()), seed=s), size, smooth=False)
        prev = resize_images(preview.images, size, smooth=False)
        compared = [("gen", gen), ("preview", prev)]
        native = stage.codec.image_size
        prev_native = resize_images(preview.images, native, smooth=False)
        detail["gen"].append(laplacian_energy(resize_images(generated.images, native, smooth=False)))
        detail["preview"].append(laplacian_energy(prev_native))
        detail_rig["gen"].append(laplacian_energy(generated.images))
        detail_rig["preview"].append(laplacian_energy(preview.images))
        if plain is not None:
            plain_images = plain.finish(cond, sample, views.rig, s).images
            compared.append(("plain", resize_images(plain_images, size, smooth=False)))
            ext["plain"].append(psnr(compared[-1][1], prev))
            detail["plain"].append(laplacian_energy(resize_images(plain_images, native, smooth=False)))
            detail_rig["plain"].append(laplacian_energy(plain_images))
        if stage.model.config["space"] == "latent":
            codec_psnr.append(psnr(stage.codec.decode(stage.codec.encode(prev_native)), prev_native))
        for key, imgs in compared + [("nogeo", nogeo)]:
            conf[key] += confusion(judge.predict(imgs), target)
        pairs = overlap_pairs(at_size.depth, small_rig)
        for key, imgs in compared:
            a, n = cross_view_agreement(imgs, pairs)
            agree[key][0] += a
            agree[key][1] += n
            if key in crossing:
                crossing[key] += area_luma(imgs, at_size)
                marks[key] += area_luma(imgs, at_size, "paint_white")
                if chunk.description.time_of_day == "night":
                    lights[key] += light_luma(imgs, at_size)
                windows[key] += window_tile_contrast(imgs, at_size)
            if key in paint:
                e, n = vehicle_error(imgs, prev, at_size)
                paint[key][0] += e
                paint[key][1] += n
                e, n = facade_error(imgs, prev, at_size)
                walls[key][0] += e
                walls[key][1] += n
        before = world.chunk(x - EXTENSION_STEP, y)
        before_views = render(before.occupancy)
        reference = render.preview(before_views, before.description, before.layout, seed=s, occupancy=before.occupancy)
        T = np.eye(4)
        T[0, 3] = EXTENSION_STEP
        extended = stage.extrapolate(views, chunk.description, chunk.layout, reference, T, seed=s)
        ext["ref"].append(psnr(resize_images(extended.images, size, smooth=False), prev))
        ext["noref"].append(psnr(gen, prev))
        log(f"chunk {k + 1}/{n_chunks} ({chunk.description.environment}, {chunk.description.time_of_day} "
            f"{chunk.description.weather}): {times[-1]:.1f} s")
    return ImageMetrics(
        image_alignment_miou=miou_of(conf["gen"]), image_alignment_miou_preview=miou_of(conf["preview"]),
        image_alignment_miou_no_geometry=miou_of(conf["nogeo"]),
        image_cross_view_consistency=agree["gen"][0] / max(agree["gen"][1], 1),
        image_cross_view_consistency_preview=agree["preview"][0] / max(agree["preview"][1], 1),
        image_extrapolation_psnr=float(np.mean(ext["ref"])), image_extrapolation_psnr_no_reference=float(np.mean(ext["noref"])),
        images_s=float(np.median(times)), chunks=n_chunks,
        image_codec_psnr=float(np.mean(codec_psnr)) if codec_psnr else None,
        image_alignment_miou_plain_decoder=miou_of(conf["plain"]) if plain is not None else None,
        image_cross_view_consistency_plain_decoder=agree["plain"][0] / max(agree["plain"][1], 1) if plain is not None else None,
        image_psnr_plain_decoder=float(np.mean(ext["plain"])) if plain is not None else None,
        image_sharpness=float(np.mean(detail["gen"]) / np.mean(detail["preview"])),
        image_sharpness_plain_decoder=(float(np.mean(detail["plain"]) / np.mean(detail["preview"]))
                                       if plain is not None else None),
        image_sharpness_rig=float(np.mean(detail_rig["gen"]) / np.mean(detail_rig["preview"])),
        image_sharpness_rig_plain_decoder=(float(np.mean(detail_rig["plain"]) / np.mean(detail_rig["preview"]))
                                           if plain is not None else None),
        image_vehicle_error=paint["gen"][0] / paint["gen"][1] if paint["gen"][1] else None,
        image_vehicle_error_plain_decoder=(paint["plain"][0] / paint["plain"][1]
                                           if plain is not None and paint["plain"][1] else None),
        image_facade_error=walls["gen"][0] / walls["gen"][1] if walls["gen"][1] else None,
        image_facade_error_plain_decoder=(walls["plain"][0] / walls["plain"][1]
                                          if plain is not None and walls["plain"][1] else None),
        image_crossing_contrast=_contrast(crossing["gen"]),
        image_crossing_contrast_preview=_contrast(crossing["preview"]),
        image_paint_contrast=_contrast(marks["gen"]),
        image_paint_contrast_preview=_contrast(marks["preview"]),
        image_light_contrast=_contrast(lights["gen"]),
        image_light_contrast_preview=_contrast(lights["preview"]),
        image_window_contrast=float(windows["gen"][0] / windows["gen"][1]) if windows["gen"][1] else None,
        image_window_contrast_preview=(float(windows["preview"][0] / windows["preview"][1])
                                       if windows["preview"][1] else None)).as_dict()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chunks", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--segmenter", default=str(SEGMENTER))
    ap.add_argument("--json", default=None, help="write the figures as one flat JSON object")
    ap.add_argument("--split", choices=("test", "val"), default="test",
                    help="test: the reported figures; val: for choosing settings such as the guidance")
    ap.add_argument("--guidance", type=float, default=None, help="classifier-free guidance (default: the model's)")
    ap.add_argument("--guidance-rescale", type=float, default=None, help="guidance rescale in [0, 1] (default: the model's)")
    ap.add_argument("--first-guess-strength", type=float, default=None,
                    help="start sampling from the first-guess decoder's views noised to this share of the schedule "
                         "(1: from pure noise; default: the model's)")
    args = ap.parse_args(argv)
    m = measure_images(args.chunks, args.seed, args.checkpoint, args.segmenter, split=args.split,
                       guidance=args.guidance, guidance_rescale=args.guidance_rescale,
                       first_guess_strength=args.first_guess_strength)
    for k, v in m.items():
        print(f"{k:40s} {v:.4f}" if isinstance(v, float) else f"{k:40s} {v}")
    if args.json:
        Path(args.json).write_text(json.dumps(m, indent=1))


if __name__ == "__main__":
    main()
