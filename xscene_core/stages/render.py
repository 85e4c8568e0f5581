"""Render stage: Occupancy x CameraRig -> RenderedViews (semantic, depth, alpha per camera), and the
preview look on top (RenderedViews x SceneDescription -> MultiViewImages).

    stage = RenderStage()                       # the nuScenes rig at 224 x 400 (default_rig)
    views = stage(chunk.occupancy, rig)          # RenderedViews
    images = stage.preview(views, chunk.description, chunk.layout, occupancy=chunk.occupancy)

The occupancy's grid frame is the rig's world frame (rig.T_world_ego places the ego in the chunk; the
identity puts it at the chunk centre). CLI: `python -m xscene_core.stages.render --out DIR` writes the
six semantic, depth and preview PNGs of a synthetic chunk or of an Occ3D labels.npz.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .. import semantics
from ..ops.preview_look import preview_look
from ..ops.rasterize import rasterize_gsplat, rasterize_torch
from ..ops.voxel_gaussians import occupancy_to_gaussians
from ..types.cameras import CAMERA_NAMES, DEFAULT_IMAGE_SIZE, CameraRig
from ..types.images import MultiViewImages, RenderedViews
from ..types.layout import Layout
from ..types.occupancy import Occupancy
from ..types.scene import SceneDescription

_REPO = Path(__file__).resolve().parents[2]
# The shipped default rig: the nuScenes ring layout with idealised mounting, our own numbers (see its
# "_about"), so a fresh install renders without any dataset file.
CALIBRATION_PATHS = (_REPO / "assets" / "camera_rig.json",)
BACKENDS = ("auto", "torch", "gsplat")
DEPTH_VIS_MAX = 80.0  # metres mapped to the far end of the depth PNG's colour ramp


def default_rig(image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE) -> CameraRig:
    """The six default cameras (assets/camera_rig.json) at image_size = (height, width), ego at the origin.

    Raises FileNotFoundError naming the searched paths when no calibration file is found.
    """
    for path in CALIBRATION_PATHS:
        if path.exists():
            return CameraRig.from_nuscenes_json(path, image_size)
    raise FileNotFoundError("no camera calibration found; looked for " + ", ".join(str(p) for p in CALIBRATION_PATHS))


class RenderInterrupted(RuntimeError):
    """Raised by RenderStage when interrupt() was called during a render."""


class RenderStage:
    """Renders an occupancy into every camera of a rig.

    rig: the default rig for calls that pass none (default_rig() when None); backend: "torch" (the
    exact voxel renderer, CPU or GPU), "gsplat" (CUDA Gaussian splatting) or "auto" (gsplat when CUDA is
    available, else torch).
    """

    def __init__(self, rig: CameraRig | None = None, backend: str = "auto") -> None:
        if backend not in BACKENDS:
            raise ValueError(f"RenderStage backend {backend!r} is not one of {', '.join(BACKENDS)}")
        self.rig = rig
        self.backend = backend
        self._interrupt = False

    def interrupt(self) -> None:
        """Ask a running render to stop after the current view (it raises RenderInterrupted)."""
        self._interrupt = True

    def _rig(self, rig: CameraRig | None) -> CameraRig:
        if rig is not None:
            return rig
        if self.rig is None:
            self.rig = default_rig()
        return self.rig

    def check_inputs(self, occupancy: Occupancy, rig: CameraRig | None = None,
                     description: SceneDescription | None = None) -> None:
        """Raise ValueError with a clear message when the inputs cannot be rendered."""
        if not isinstance(occupancy, Occupancy):
            raise ValueError(f"RenderStage: occupancy must be an Occupancy, got {type(occupancy).__name__}")
        if rig is not None and not isinstance(rig, CameraRig):
            raise ValueError(f"RenderStage: rig must be a CameraRig, got {type(rig).__name__}")
        if description is not None and not isinstance(description, SceneDescription):
            raise ValueError(f"RenderStage: description must be a SceneDescription, got {type(description).__name__}")
        sizes = {(c.height, c.width) for c in (rig or self._rig(None)).cameras}
        if len(sizes) != 1:
            raise ValueError(f"RenderStage: every camera of the rig must have the same image size, got {sorted(sizes)}")
        if self.backend == "gsplat" and not torch.cuda.is_available():
            raise ValueError("RenderStage: backend 'gsplat' needs CUDA; use backend='torch' or 'auto' on this machine")

    def __call__(self, occupancy: Occupancy, rig: CameraRig | None = None, description: SceneDescription | None = None,
                 callback: Callable[[int, int], None] | None = None) -> RenderedViews:
        """Render semantic (uint8 [V, H, W] Occ3D ids), depth (float32 [V, H, W] metres of camera z) and
        alpha of every camera. description is not needed by the render (semantic and depth do not depend
        on the style); it is accepted and checked so that every stage takes the scene context alike.
        callback(done, total) is called after each view."""
        self.check_inputs(occupancy, rig, description)
        rig = self._rig(rig)
        self._interrupt = False
        # 1. One Gaussian per visible voxel (grid frame = world frame).
        use_gsplat = self.backend == "gsplat" or (self.backend == "auto" and torch.cuda.is_available())
        gaussians = occupancy_to_gaussians(occupancy, device="cuda" if use_gsplat else "cpu")
        render = rasterize_gsplat if use_gsplat else rasterize_torch
        # 2. Render view by view so progress can be reported and the render interrupted.
        sem, depth, alpha = [], [], []
        for i in range(len(rig)):
            if self._interrupt:
                raise RenderInterrupted(f"render interrupted after {i} of {len(rig)} views")
            r = render(gaussians, CameraRig((rig.cameras[i],), rig.T_world_ego))
            sem.append(r.semantic.cpu())
            depth.append(r.depth.cpu())
            alpha.append(r.alpha.cpu())
            if callback is not None:
                callback(i + 1, len(rig))
        # 3. One typed output.
        return RenderedViews(torch.cat(sem).numpy(), torch.cat(depth).numpy(), torch.cat(alpha).numpy(), rig)

    def preview(self, views: RenderedViews, description: SceneDescription | None = None, layout: Layout | None = None,
                seed: int = 0, occupancy: Occupancy | None = None) -> MultiViewImages:
        """The preview look of rendered views (ops.preview_look): style from the description, lane paint,
        car colours and lights from the layout, cast shadows from the occupancy (both optional, in the
        rig's world frame)."""
        if not isinstance(views, RenderedViews):
            raise ValueError(f"RenderStage.preview: views must be RenderedViews, got {type(views).__name__}")
        if layout is not None and not isinstance(layout, Layout):
            raise ValueError(f"RenderStage.preview: layout must be a Layout, got {type(layout).__name__}")
        return preview_look(views, description, layout, seed, occupancy)


# Pictures for people --------------------------------------------------------------------------------------

def semantic_rgb(semantic: np.ndarray) -> np.ndarray:
    """uint8 [..., 3] class colours (semantics.COLORS) of Occ3D ids uint8 [...]; free is black."""
    rgb = semantics.COLORS[semantic]
    return np.where((semantic == semantics.FREE)[..., None], np.uint8(0), rgb)


def depth_rgb(depth: np.ndarray, max_depth: float = DEPTH_VIS_MAX) -> np.ndarray:
    """uint8 [..., 3] of depths float [...] (metres): near warm, far cool (inverse-depth ramp), misses black."""
    d = np.clip(depth, 1e-3, None)
    t = np.clip(np.log(d) / np.log(max_depth), 0, 1)  # 1 m -> 0, max_depth -> 1
    ramp = np.array([[255, 240, 120], [240, 120, 40], [150, 40, 110], [50, 30, 120], [10, 10, 40]], dtype=np.float64)
    x = t * (len(ramp) - 1)
    i = np.clip(np.floor(x).astype(int), 0, len(ramp) - 2)
    f = (x - i)[..., None]
    rgb = ramp[i] * (1 - f) + ramp[i + 1] * f
    return np.where((depth > 0)[..., None], rgb, 0).astype(np.uint8)


def save_views(views: RenderedViews, images: MultiViewImages | None, out: str | Path) -> list[Path]:
    """Write semantic/, depth/ and preview/ PNGs (one per camera, named by camera) under out."""
    from PIL import Image

    out = Path(out)
    paths = []
    for kind, arrays in (("semantic", semantic_rgb(views.semantic)), ("depth", depth_rgb(views.depth))):
        (out / kind).mkdir(parents=True, exist_ok=True)
        for cam, img in zip(views.rig.cameras, arrays):
            p = out / kind / f"{cam.name}.png"
            Image.fromarray(img).save(p)
            paths.append(p)
    if images is not None:
        paths += images.save(out / "preview")
    return paths


def _mosaic(images: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    """uint8 [2H, 3W, 3]: front cameras on top (FL, F, FR), back cameras below (BL, B, BR)."""
    order = {n: i for i, n in enumerate(names)}
    if set(CAMERA_NAMES) <= set(order):
        top = [images[order[n]] for n in CAMERA_NAMES[:3]]
        bottom = [images[order[n]] for n in (CAMERA_NAMES[5], CAMERA_NAMES[4], CAMERA_NAMES[3])]
        return np.concatenate([np.concatenate(top, 1), np.concatenate(bottom, 1)], 0)
    return np.concatenate(list(images), 1)


def main(argv: list[str] | None = None) -> None:
    from PIL import Image

    p = argparse.ArgumentParser(description="Render the six cameras of a chunk: semantic, depth and preview PNGs.")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--labels", help="an Occ3D labels.npz to render instead of a synthetic chunk")
    p.add_argument("--seed", type=int, default=0, help="synthetic world seed (and the preview's seed)")
    p.add_argument("--environment", default=None, help="environment of the synthetic chunk (e.g. downtown)")
    p.add_argument("--time", default=None, help="time of day (dawn, morning, noon, afternoon, dusk, night)")
    p.add_argument("--weather", default=None, help="weather (sunny, cloudy, overcast, rainy, foggy, snowy)")
    p.add_argument("--size", type=int, nargs=2, default=DEFAULT_IMAGE_SIZE, metavar=("H", "W"), help="image size")
    args = p.parse_args(argv)
    torch.set_num_threads(min(2, torch.get_num_threads()))

    layout = None
    if args.labels:
        occupancy = Occupancy.load(args.labels)
        description = SceneDescription(args.time or "noon", args.weather or "sunny", args.environment or "suburban")
    else:
        from ..data.world import Style, SyntheticWorld

        style = Style(args.time, args.weather) if args.time and args.weather else None
        if (args.time is None) != (args.weather is None):
            p.error("--time and --weather go together for a synthetic chunk")
        world = SyntheticWorld(args.seed, style)
        x, y = world.find_location(args.environment) if args.environment else (0.0, 0.0)
        chunk = world.chunk(x, y)
        occupancy, layout, description = chunk.occupancy, chunk.layout, chunk.description
    stage = RenderStage(default_rig(tuple(args.size)))
    views = stage(occupancy)
    images = stage.preview(views, description, layout, seed=args.seed, occupancy=occupancy)
    paths = save_views(views, images, args.out)
    out = Path(args.out)
    for kind, arr in (("semantic", semantic_rgb(views.semantic)), ("depth", depth_rgb(views.depth)), ("preview", images.images)):
        Image.fromarray(_mosaic(arr, views.rig.names)).save(out / f"{kind}_mosaic.png")
    print(f"{description.time_of_day} {description.weather} {description.environment}: wrote {len(paths)} PNGs under {out}")


if __name__ == "__main__":
    main()
