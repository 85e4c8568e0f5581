"""How faithfully the Gaussian lifting keeps the views it was lifted from, and how long it takes.

splat_psnr: each test chunk is lifted on its own (GaussianStage.chunk, from its six views: the views the
shipped image diffusion model generates for it, or the preview look when no image model is installed or
`images="preview"`), re-rendered into its six cameras and compared with those views. The
squared error is pooled over every pixel that shows geometry (the occupancy render's depth > 0, or the
re-render hits a surface Gaussian): the sky, and the stage's sky dome (ops.lifting.sky), are left out.
PSNR = 10 log10(1 / MSE) with RGB in [0, 1].

gaussians_s: median seconds of GaussianStage.chunk per chunk (no refinement), after one warm-up.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass

import numpy as np

from ..types.gaussians import GaussianScene
from ..types.images import MultiViewImages, RenderedViews


@dataclass
class SplatTally:
    """Pooled squared error: sq_err (sum over pixels of the mean over RGB of the squared error, [0, 1]
    units) and pixels counted."""

    sq_err: float = 0.0
    pixels: int = 0

    def add(self, rendered_rgb: np.ndarray, target_rgb: np.ndarray, mask: np.ndarray) -> None:
        """rendered_rgb, target_rgb: uint8 [V, H, W, 3]; mask: bool [V, H, W] pixels to count."""
        d = (rendered_rgb.astype(np.float64) - target_rgb.astype(np.float64)) / 255.0
        self.sq_err += float((d[mask] ** 2).mean(-1).sum())
        self.pixels += int(mask.sum())

    def psnr(self) -> float:
        if self.pixels == 0:
            return float("nan")
        mse = self.sq_err / self.pixels
        return float("inf") if mse == 0 else 10.0 * math.log10(1.0 / mse)


def splat_tally(scene: GaussianScene, images: MultiViewImages, views: RenderedViews | None = None,
                mode: str = "box") -> SplatTally:
    """Squared error of `scene` (in the frame of images.rig's world) re-rendered into the cameras of `images`,
    over the pixels with geometry (module docstring)."""
    from ..ops.lifting import render_gaussians

    r = render_gaussians(scene, images.rig, mode)
    mask = r.alpha > 0  # a surface (the sky dome gives no alpha)
    if views is not None and views.depth.shape == mask.shape:
        mask = mask | (views.depth > 0)
    tally = SplatTally()
    tally.add(r.rgb, images.images, mask)
    return tally


def measure_splat(n_chunks: int = 6, seed: int = 0, image_size: tuple[int, int] | None = None,
                  log=None, images: str = "diffusion") -> dict:
    """splat_psnr (pooled over `n_chunks` held-out test chunks, eval.controllability.test_scenes) and
    gaussians_s (median lifting seconds per chunk), plus splat_gaussians (mean surface Gaussians per chunk) and
    splat_views ("diffusion" or "preview": what was lifted). images: "diffusion" (generated views; the
    preview when no image model is installed) or "preview"."""
    from ..ops.lifting.render import split_sky
    from ..stages.gaussians import GaussianStage, chunk_views
    from ..stages.multiview import DEFAULT_CHECKPOINT, MultiViewStage, model_installed
    from ..stages.render import RenderStage, default_rig
    from ..types.cameras import DEFAULT_IMAGE_SIZE
    from .controllability import test_scenes

    if images not in ("diffusion", "preview"):
        raise ValueError(f"images must be 'diffusion' or 'preview', got {images!r}")
    render = RenderStage(default_rig(image_size or DEFAULT_IMAGE_SIZE))
    generate = (MultiViewStage.from_pretrained(DEFAULT_CHECKPOINT)
                if images == "diffusion" and model_installed() else None)
    stage = GaussianStage()
    tally, times, counts = SplatTally(), [], []
    for i, (ws, chunk) in enumerate(test_scenes(n_chunks, seed)):
        chunk.views = render(chunk.occupancy)
        chunk.preview = render.preview(chunk.views, chunk.description, chunk.layout, seed=ws, occupancy=chunk.occupancy)
        if generate is not None:
            chunk.images = generate(chunk.views, chunk.description, chunk.layout, seed=ws)
        if i == 0:
            stage.chunk(chunk)  # warm-up (allocator, first-call costs)
        t0 = time.perf_counter()
        scene = stage.chunk(chunk)
        times.append(time.perf_counter() - t0)
        counts.append(len(split_sky(scene)[0]))  # the surfaces: the sky dome adds the same few thousand to each
        images = chunk_views(chunk)
        t = splat_tally(scene, images, chunk.views)
        tally.sq_err += t.sq_err
        tally.pixels += t.pixels
        if log is not None:
            log(f"splat chunk {i} (world {ws}): {counts[-1]} surface Gaussians (of {len(scene)}), {times[-1]:.2f} s, "
                f"PSNR {t.psnr():.2f} dB")
    return {"splat_psnr": tally.psnr(), "gaussians_s": statistics.median(times),
            "splat_gaussians": float(np.mean(counts)), "splat_views": "diffusion" if generate is not None else "preview"}


if __name__ == "__main__":
    import argparse

    import torch

    p = argparse.ArgumentParser(description="splat_psnr and gaussians_s on held-out test chunks")
    p.add_argument("--chunks", type=int, default=6)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(2)
    print(measure_splat(args.chunks, args.seed, log=print))
