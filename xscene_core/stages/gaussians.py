"""Gaussian stage: Occupancy x MultiViewImages -> GaussianScene (3DGS lifting), one scene per world.

    stage = GaussianStage()
    scene = stage(world)                          # world frame, every chunk, no duplicate in overlaps
    scene = stage(world, refine_steps=5)          # + Adam steps on colours/opacities against the views
    one = stage.chunk(chunk)                      # one chunk on its own, in the chunk frame
    out = stage.render(scene, camera_or_rig)      # GaussianRender: rgb uint8, depth, semantic
    write_ply(scene, "world.ply")                 # xscene_core.ops.ply: standard 3DGS PLY

A chunk is lifted from its occupancy and its views: `chunk.images` (the generated views) when present,
else `chunk.preview` (the preview look). Gaussians are flat patches on the visible voxel faces
(ops.lifting.surfels), coloured by the mean of the view pixels that see them first (the box renderer's
z-buffer is the depth test), unseen ones filled from same-class neighbours (ops.lifting.colour). In a
world, each voxel belongs to the earliest chunk of `world.chunks` holding it (ops.lifting.lift).

Choice of patches (measured on one rural chunk, 224 x 400 preview views, box re-render, PSNR over geometry
pixels): one Gaussian per visible voxel (59k) 29.69 dB, one flat Gaussian per visible face (62k) 29.72 dB,
2 x 2 patches per face (248k) 30.90 dB. Faces are kept (k = 1): the fidelity of voxels in the lifted views
at about the same count, 2.4x fewer box fragments to render than whole voxels, and in a novel view a side
of a voxel keeps its own colour instead of its top's.

CLI: `python -m xscene_core.stages.gaussians --out DIR [--seed S --size 2]` lifts a synthetic world of
size x size chunks (stride 40 m) and writes world.ply, gaussians.safetensors and novel-view PNGs.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..ops.lifting import (GaussianRender, PlacedGrid, RefineView, lift_chunk, lift_world, owners, refine_gaussians,
                           render_gaussians)
from ..ops.lifting.lift import DEFAULT_PATCHES_PER_EDGE
from ..ops.lifting.render import MODES
from ..types.cameras import Camera, CameraRig
from ..types.gaussians import GaussianScene
from ..types.images import MultiViewImages
from ..types.world import Chunk, WorldMap


class GaussiansInterrupted(RuntimeError):
    """Raised by GaussianStage when interrupt() was called or the step callback returned False."""


def chunk_views(chunk: Chunk) -> MultiViewImages | None:
    """The views a chunk is lifted from: the generated images when present, else the preview."""
    return chunk.images if chunk.images is not None else chunk.preview


class GaussianStage:
    """Occupancy + views -> 3D Gaussians.

    patches_per_edge: flat patches per voxel face edge (1: one Gaussian per visible face); render_mode:
    default of render() ("box": opaque patches, "splat": alpha-blended Gaussians); refine_lr, refine_downscale:
    Adam learning rate (on logits) and the view downscale factor of the optional refinement; threads: torch
    CPU threads during a call, restored afterwards (None leaves the setting alone).
    """

    def __init__(self, patches_per_edge: int = DEFAULT_PATCHES_PER_EDGE, render_mode: str = "box",
                 refine_lr: float = 0.05, refine_downscale: int = 2, threads: int | None = 2) -> None:
        if patches_per_edge < 1:
            raise ValueError(f"GaussianStage: patches_per_edge must be >= 1, got {patches_per_edge}")
        if render_mode not in MODES:
            raise ValueError(f"GaussianStage: render_mode {render_mode!r} is not one of {', '.join(MODES)}")
        if refine_downscale < 1:
            raise ValueError(f"GaussianStage: refine_downscale must be >= 1, got {refine_downscale}")
        self.patches_per_edge = patches_per_edge
        self.render_mode = render_mode
        self.refine_lr = refine_lr
        self.refine_downscale = refine_downscale
        self.threads = threads
        self._interrupt = False

    def interrupt(self) -> None:
        """Ask a running call to stop after the current view or refinement step (it raises GaussiansInterrupted)."""
        self._interrupt = True

    # Checks -------------------------------------------------------------------------------------------------

    def _check_chunk(self, chunk: Chunk, name: str) -> None:
        if not isinstance(chunk, Chunk):
            raise ValueError(f"GaussianStage: {name} must be a Chunk, got {type(chunk).__name__}")
        if chunk.occupancy is None:
            raise ValueError(f"GaussianStage: {name} has no occupancy; run the occupancy stage first")
        views = chunk_views(chunk)
        if views is None:
            raise ValueError(f"GaussianStage: {name} has no views (neither images nor preview); "
                             "render its views and their images first")
        if not isinstance(views, MultiViewImages):
            raise ValueError(f"GaussianStage: {name} views must be MultiViewImages, got {type(views).__name__}")
        sizes = {(c.height, c.width) for c in views.rig.cameras}
        if len(sizes) != 1:
            raise ValueError(f"GaussianStage: {name} views must all have one image size, got {sorted(sizes)}")

    def check_inputs(self, world: WorldMap | Chunk) -> None:
        """Raise ValueError with a clear message when a world (or a chunk) cannot be lifted."""
        if isinstance(world, Chunk):
            self._check_chunk(world, "chunk")
            return
        if not isinstance(world, WorldMap):
            raise ValueError(f"GaussianStage expects a WorldMap or a Chunk, got {type(world).__name__}")
        if not world.chunks:
            raise ValueError("GaussianStage: the world has no chunks")
        for index, chunk in world.chunks.items():
            self._check_chunk(chunk, str(index))
        specs = {c.occupancy.grid for c in world.chunks.values()}
        if len(specs) > 1:
            raise ValueError("GaussianStage: every chunk of a world must share one voxel grid")

    # Calls --------------------------------------------------------------------------------------------------

    def _progress(self, step_callback: Callable[[int, int], object] | None, total: int):
        done = [0]

        def tick(*_) -> None:
            done[0] += 1
            if self._interrupt or (step_callback is not None and step_callback(done[0], total) is False):
                raise GaussiansInterrupted(f"Gaussian lifting interrupted after {done[0]} of {total} steps")
        return tick

    def _run(self, fn):
        threads = torch.get_num_threads()
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        try:
            return fn()
        finally:
            torch.set_num_threads(threads)

    def chunk(self, chunk: Chunk, refine_steps: int = 0,
              step_callback: Callable[[int, int], object] | None = None) -> GaussianScene:
        """The Gaussians of one chunk on its own, in the chunk frame (the frame of its occupancy and of its
        views' rig). step_callback(done, total) after each view and each refinement step; returning False
        (or interrupt()) raises GaussiansInterrupted."""
        # 1. Validate.
        self.check_inputs(chunk)
        self._interrupt = False
        views = chunk_views(chunk)
        tick = self._progress(step_callback, len(views.rig) + max(refine_steps, 0))

        def work() -> GaussianScene:
            # 2. Surface patches coloured from the views.
            scene = lift_chunk(chunk.occupancy, views, self.patches_per_edge, on_view=tick).gaussians
            # 3. Optional refinement against the same views.
            return refine_gaussians(scene, [RefineView(views)], refine_steps, self.refine_lr, self.refine_downscale,
                                    callback=tick)
        return self._run(work)

    def __call__(self, world: WorldMap, refine_steps: int = 0,
                 step_callback: Callable[[int, int], object] | None = None) -> GaussianScene:
        """One GaussianScene (world frame) of every chunk of `world`, one Gaussian per visible surface patch
        (overlaps stitched by the earliest chunk in world.chunks), coloured from every chunk's views that see
        it; then `refine_steps` Adam steps on colours and opacities against all views. step_callback as in
        chunk()."""
        # 1. Validate.
        self.check_inputs(world)
        self._interrupt = False
        chunks = list(world.chunks.values())
        grids = [PlacedGrid(c.occupancy, c.T_world_chunk) for c in chunks]
        images = [chunk_views(c) for c in chunks]
        tick = self._progress(step_callback, sum(len(im.rig) for im in images) + max(refine_steps, 0))

        def work() -> GaussianScene:
            # 2. Lift every chunk, stitch the overlaps, pool the colours.
            scene = lift_world(grids, images, self.patches_per_edge, on_view=tick).gaussians
            if refine_steps <= 0:
                return scene
            # 3. Refinement: each chunk's views (placed in the world) see the Gaussians inside its grid.
            centres = scene.means.double().numpy()
            targets = []
            for ci, (g, im) in enumerate(zip(grids, images)):
                inside = owners(centres, [g]) == 0
                rig = im.rig.at(g.T_world_grid @ im.rig.T_world_ego)
                targets.append(RefineView(MultiViewImages(im.images, rig), torch.from_numpy(np.nonzero(inside)[0])))
            return refine_gaussians(scene, targets, refine_steps, self.refine_lr, self.refine_downscale, callback=tick)
        return self._run(work)

    def render(self, scene: GaussianScene, cameras: Camera | CameraRig, mode: str | None = None) -> GaussianRender:
        """Novel views of `scene`: rgb uint8 [V, H, W, 3], depth float32 [V, H, W] metres, semantic uint8
        [V, H, W]. A Camera is placed by its T_ego_cam (read as its world pose); a rig by T_world_ego."""
        if not isinstance(scene, GaussianScene):
            raise ValueError(f"GaussianStage.render: scene must be a GaussianScene, got {type(scene).__name__}")
        return self._run(lambda: render_gaussians(scene, cameras, mode or self.render_mode))


# Pictures for people --------------------------------------------------------------------------------------

def look_camera(eye: np.ndarray, forward: np.ndarray, image_size: tuple[int, int], fov_deg: float = 70.0,
                pitch_deg: float = -15.0, name: str = "NOVEL") -> Camera:
    """A pinhole at `eye` (world, metres) looking along the horizontal direction `forward` (float [2] or
    [3]), pitched by pitch_deg (negative: down), horizontal field of view fov_deg."""
    h, w = image_size
    f2 = np.asarray(forward, dtype=np.float64)[:2]
    f2 = f2 / np.linalg.norm(f2)
    p = math.radians(pitch_deg)
    fwd = np.array([f2[0] * math.cos(p), f2[1] * math.cos(p), math.sin(p)])
    right = np.cross(fwd, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(fwd, right)
    T = np.eye(4)
    T[:3, :3] = np.stack([right, down, fwd], 1)
    T[:3, 3] = eye
    f = (w / 2) / math.tan(math.radians(fov_deg) / 2)
    K = np.array([[f, 0, (w - 1) / 2], [0, f, (h - 1) / 2], [0, 0, 1]])
    return Camera(name, K, T, h, w)


def street_camera(chunk: Chunk, image_size: tuple[int, int], back: float = 14.0, up: float = 6.0) -> Camera:
    """A camera raised `up` metres and `back` metres behind the lane point nearest the chunk centre, looking
    along that lane (along +x of the chunk when it has no lanes), in the world frame."""
    point, direction = np.zeros(2), np.array([1.0, 0.0])
    lanes = [l for l in (chunk.layout.lanes if chunk.layout is not None else ()) if not l.connector and len(l.points) > 1]
    if lanes:
        best = None
        for lane in lanes:
            pts = np.asarray(lane.points, dtype=np.float64)[:, :2]
            i = int(np.argmin(np.linalg.norm(pts, axis=1)))
            d = np.linalg.norm(pts[i])
            if best is None or d < best[0]:
                j = min(i + 1, len(pts) - 1)
                seg = pts[j] - pts[j - 1]
                best = (d, pts[i], seg / max(np.linalg.norm(seg), 1e-9))
        _, point, direction = best
    T = chunk.T_world_chunk
    eye_c = np.array([*(point - back * direction), up])
    eye = T[:3, :3] @ eye_c + T[:3, 3]
    fwd = T[:3, :3] @ np.array([*direction, 0.0])
    return look_camera(eye, fwd, image_size, name="STREET")


def synthetic_world(seed: int, size: int, image_size: tuple[int, int], stride: float = 40.0,
                    environment: str | None = "downtown") -> WorldMap:
    """size x size chunks of SyntheticWorld(seed) on a grid of `stride` metres, with rendered views and
    preview images (rig at each chunk's centre)."""
    from ..data.world import SyntheticWorld
    from ..types.world import ChunkIndex
    from .render import RenderStage, default_rig

    world = SyntheticWorld(seed)
    x0, y0 = world.find_location(environment) if environment else (0.0, 0.0)
    render = RenderStage(default_rig(image_size))
    wm = WorldMap(stride=stride)
    for i in range(size):
        for j in range(size):
            index = ChunkIndex(i, j)
            chunk = world.chunk(x0 + i * stride, y0 + j * stride)
            chunk.T_world_chunk = wm.pose_of(index)
            chunk.views = render(chunk.occupancy)
            chunk.preview = render.preview(chunk.views, chunk.description, chunk.layout, seed=seed,
                                           occupancy=chunk.occupancy)
            wm.add(index, chunk)
    return wm


def main(argv: list[str] | None = None) -> None:
    from PIL import Image

    from ..ops.overview import oblique_camera
    from ..ops.ply import write_ply
    from .render import depth_rgb, semantic_rgb

    p = argparse.ArgumentParser(description="Lift a synthetic world to 3D Gaussians; write PLY, safetensors and novel views.")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--seed", type=int, default=0, help="synthetic world seed")
    p.add_argument("--size", type=int, default=2, help="chunks per side of the world")
    p.add_argument("--environment", default="downtown", help="environment at the first chunk")
    p.add_argument("--refine", type=int, default=0, help="refinement steps (Adam on colours/opacities)")
    p.add_argument("--image-size", type=int, nargs=2, default=(224, 400), metavar=("H", "W"), help="view size")
    p.add_argument("--novel-size", type=int, nargs=2, default=(360, 640), metavar=("H", "W"), help="novel view size")
    p.add_argument("--splat", action="store_true", help="also render the novel views as blended splats")
    args = p.parse_args(argv)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    t0 = time.time()
    world = synthetic_world(args.seed, args.size, tuple(args.image_size), environment=args.environment)
    t1 = time.time()
    stage = GaussianStage()
    scene = stage(world, refine_steps=args.refine,
                  step_callback=lambda d, t: print(f"\r  lifting {d}/{t}", end="", flush=True))
    t2 = time.time()
    print()
    write_ply(scene, out / "world.ply")
    scene.save(out / "gaussians.safetensors")
    first = world.chunks[sorted(world.chunks)[0]]
    size = tuple(args.novel_size)
    centre = np.mean([c.T_world_chunk[:3, 3] for c in world.chunks.values()], 0)
    radius = 0.5 * world.stride * (args.size - 1) + 40.0
    cameras = {"street": street_camera(first, size),
               "overview": oblique_camera(centre, radius, size, elevation_deg=35.0, azimuth_deg=-60.0, fov_deg=50.0)}
    modes = ("box", "splat") if args.splat else ("box",)
    for name, cam in cameras.items():
        for mode in modes:
            r = stage.render(scene, cam, mode)
            tag = "" if mode == "box" else "_splat"
            Image.fromarray(r.rgb[0]).save(out / f"{name}{tag}_rgb.png")
            Image.fromarray(depth_rgb(r.depth[0])).save(out / f"{name}{tag}_depth.png")
            Image.fromarray(semantic_rgb(r.semantic[0])).save(out / f"{name}{tag}_semantic.png")
    print(f"{len(world.chunks)} chunks (views {t1 - t0:.1f} s), {len(scene)} Gaussians lifted in {t2 - t1:.1f} s; "
          f"wrote {out}/world.ply, gaussians.safetensors and novel views")


if __name__ == "__main__":
    main()
