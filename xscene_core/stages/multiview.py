"""MultiView stage: RenderedViews x SceneDescription (x Layout) -> MultiViewImages by multi-view image
diffusion with geometry guidance, and reference-view extrapolation for extending the world.

    stage = MultiViewStage.from_pretrained()             # checkpoints/image_diffusion
    images = stage(views, chunk.description, chunk.layout, seed=0)
    new = stage.extrapolate(new_views, desc, new_layout, reference=images, T_ref_new=T, seed=0)

The model runs at its own resolution (shipped `tiny_latent` model: geometry at 64 x 112, 32 x 56 latents
decoded to 128 x 224 views): the renders are resized to its condition size (nearest ids and depths; map
lines and box edges kept by max-pooling), the latents are decoded by the geometry-aware decoder, which
also reads those maps (models.geometry_decoder; where the model's config says so, or the autoencoder's
own decoder), and the views are upsampled (bicubic) to the rig's size, so the output has the same rig
and size as `views`. Layout and reference are in the rig's world frame (the chunk frame). CLI:

    python -m xscene_core.stages.multiview --out DIR --environment downtown --time night --weather rainy

writes the six generated views, their mosaic, the same sample through the plain decoder (when the
geometry-aware one is in use) and the preview-look mosaic of the same chunk.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..models.image_condition import ImageCondition, resize_images, style_features, view_condition_arrays
from ..models.image_diffusion import ImageCodec, ImageDiffusion, SamplingInterrupted, check_strength
from ..types.cameras import CameraRig
from ..types.images import MultiViewImages, RenderedViews
from ..types.layout import Layout
from ..types.scene import SceneDescription
from ..types.world import Chunk

_REPO = Path(__file__).resolve().parents[2]
DEFAULT_CHECKPOINT = _REPO / "checkpoints" / "image_diffusion"


def model_installed(folder: Path = DEFAULT_CHECKPOINT) -> bool:
    """Whether an image diffusion checkpoint is installed in `folder` (the evals skip or fall back without)."""
    return (Path(folder) / "model.safetensors").exists()


class MultiViewInterrupted(RuntimeError):
    """Raised by MultiViewStage when interrupt() was called or the step callback returned False."""


class MultiViewStage:
    """Renders -> generated camera images.

    model: an ImageDiffusion; num_inference_steps / guidance_scale / guidance_rescale: sampling settings
    (None: the model's defaults, UniPC 20 steps, its guidance scale and rescale); threads: torch CPU
    threads while sampling, restored afterwards (None leaves the setting alone); geometry_decoder: decode
    the latents with the geometry-aware decoder (None: as the model's config says; False: the
    autoencoder's own decoder); first_guess_strength: start sampling from the first-guess decoder's views
    noised to this share of the schedule (None: the model's config; 1: from pure noise).
    """

    def __init__(self, model: ImageDiffusion, num_inference_steps: int | None = None,
                 guidance_scale: float | None = None, threads: int | None = 2,
                 guidance_rescale: float | None = None, geometry_decoder: bool | None = None,
                 first_guess_strength: float | None = None) -> None:
        self.model = model.eval()
        self.codec = ImageCodec(model, geometry_decoder)
        self.first_guess_strength = check_strength(
            model.config.get("first_guess_strength", 1.0) if first_guess_strength is None else first_guess_strength,
            "MultiViewStage: first_guess_strength")
        self.num_inference_steps = num_inference_steps
        self.guidance_scale = guidance_scale
        self.guidance_rescale = guidance_rescale
        self.threads = threads
        self._interrupt = False

    @classmethod
    def from_pretrained(cls, folder: str | Path = DEFAULT_CHECKPOINT, **kwargs) -> "MultiViewStage":
        return cls(ImageDiffusion.from_pretrained(folder), **kwargs)

    def interrupt(self) -> None:
        """Ask a running call to stop after the current denoising step (it raises MultiViewInterrupted)."""
        self._interrupt = True

    def check_inputs(self, views: RenderedViews, description: SceneDescription | None = None,
                     layout: Layout | None = None, reference: MultiViewImages | None = None,
                     T_ref_new: np.ndarray | None = None) -> None:
        """Raise ValueError with a clear message when the inputs cannot be generated from."""
        if not isinstance(views, RenderedViews):
            raise ValueError(f"MultiViewStage: views must be RenderedViews, got {type(views).__name__}")
        if description is not None and not isinstance(description, SceneDescription):
            raise ValueError(f"MultiViewStage: description must be a SceneDescription or None, got {type(description).__name__}")
        if layout is not None and not isinstance(layout, Layout):
            raise ValueError(f"MultiViewStage: layout must be a Layout or None, got {type(layout).__name__}")
        sizes = {(c.height, c.width) for c in views.rig.cameras}
        if len(sizes) != 1:
            raise ValueError(f"MultiViewStage: every camera must have the same image size, got {sorted(sizes)}")
        if reference is not None:
            if not isinstance(reference, MultiViewImages):
                raise ValueError(f"MultiViewStage: reference must be MultiViewImages, got {type(reference).__name__}")
            if reference.rig.names != views.rig.names:
                raise ValueError(f"MultiViewStage: the reference has cameras {reference.rig.names}, the views "
                                 f"{views.rig.names}; extrapolation pairs views camera by camera")
            T = np.asarray(T_ref_new, dtype=np.float64) if T_ref_new is not None else None
            if T is None or T.shape != (4, 4) or not np.isfinite(T).all() or not np.allclose(T[3], [0, 0, 0, 1]):
                raise ValueError("MultiViewStage: T_ref_new must be a finite rigid transform float [4, 4] (the new "
                                 "chunk's pose in the reference chunk's frame)")
            R = T[:3, :3]
            if not np.allclose(R @ R.T, np.eye(3), atol=1e-4):
                raise ValueError("MultiViewStage: T_ref_new has no rotation part (R R^T != I)")

    def condition(self, views: RenderedViews, description: SceneDescription | None = None,
                  layout: Layout | None = None, reference: MultiViewImages | None = None,
                  T_ref_new: np.ndarray | None = None, seed: int = 0) -> ImageCondition:
        """The model's condition batch (one scene) of the inputs: geometry at model.condition_size, the
        reference view in the model's image space and, for a model with first_guess_condition, the
        first-guess views (ImageCodec.first_guess); for a model with facade_condition the walls' colours
        that `seed` picks (the preview look of the same seed paints its walls alike)."""
        from ..llm.embedder import embed
        from ..ops.preview_look.style import Style

        # the style the preview look draws (unknown words fall back alike)
        look = Style.from_description(description) if description is not None else None
        arrays = view_condition_arrays(views.semantic, views.depth, layout, views.rig, self.model.condition_size,
                                       look.environment if look is not None else None, self._facade_seed(seed))
        text = embed([description.caption()])[0] if description is not None else None
        style = style_features(look.time_of_day, look.weather) if look is not None else None
        ref = self.codec.encode(reference.images).numpy() if reference is not None else None
        return self.with_guide(ImageCondition.collate(
            [arrays], [text], [ref], [T_ref_new if reference is not None else None], self.model.image_channels,
            self.model.config["max_boxes"], [style], self.model.config["geometry_stride"]))

    def _facade_seed(self, seed: int) -> int | None:
        """The seed of the walls' colours where the denoiser or the decoder reads them (facade_condition),
        else None (not drawn: it costs a pass over the pixels)."""
        return int(seed) if self.codec.reads_facades else None

    def decoder_condition(self, views: RenderedViews, layout: Layout | None, cond: ImageCondition,
                          description: SceneDescription | None = None, seed: int = 0) -> ImageCondition:
        """The condition the codec's decoder reads: `cond` (from `condition`, of the same description), or
        for a decoder trained on finer geometry (an upscaling GeometryDecoder: ImageCodec.decoder_condition_size)
        `cond` with the views' geometry maps at that size."""
        from ..ops.preview_look.style import Style

        size = self.codec.decoder_condition_size
        if size is None:
            return cond
        environment = Style.from_description(description).environment if description is not None else None
        arrays = view_condition_arrays(views.semantic, views.depth, layout, views.rig, size, environment,
                                       self._facade_seed(seed))
        fine = ImageCondition.collate([arrays], [None], [None], [None], self.model.image_channels,
                                      self.model.config["max_boxes"], [None], size[0] // cond.image_size[0])
        return replace(cond, semantic=fine.semantic, depth=fine.depth, persp=fine.persp, points=fine.points,
                       areas=fine.areas, facade_paint=fine.facade_paint)

    def with_guide(self, cond: ImageCondition) -> ImageCondition:
        """cond with the first-guess views of its own geometry (ImageCodec.first_guess) for a model with
        first_guess_condition (a guide it held is drawn again: after without_geometry, say); as it is
        for any other model."""
        if not self.model.config["first_guess_condition"]:
            return cond
        return replace(cond, guide=self.codec.first_guess(cond).cpu())

    def sample(self, cond: ImageCondition, seed: int = 0,
               step_callback: Callable[[int, int], object] | None = None) -> torch.Tensor:
        """float [1, V, C, h, w]: a sample in the model's image space (latents of a latent-space model) for a
        prepared condition (one scene); deterministic in seed. With a first-guess strength below 1 the
        sampler starts from the first-guess decoder's views of `cond` (ImageCodec.first_guess)."""
        def on_step(step: int, total: int) -> bool:
            if step_callback is not None and step_callback(step, total) is False:
                return False
            return not self._interrupt

        threads = torch.get_num_threads()
        if self.threads is not None and self.model.device.type == "cpu":
            torch.set_num_threads(self.threads)
        try:
            strength = self.first_guess_strength
            start = None
            if strength < 1:  # a guided model's condition holds the guess already
                start = (cond.guide if cond.guide is not None else
                         self.codec.first_guess(cond.to(self.model.device), noise_seed=seed))
            return self.model.sample(cond, seed, self.guidance_scale, self.num_inference_steps, callback=on_step,
                                     guidance_rescale=self.guidance_rescale, start=start, strength=strength)
        except SamplingInterrupted as stop:
            raise MultiViewInterrupted(f"image sampling interrupted ({stop})") from None
        finally:
            torch.set_num_threads(threads)

    def generate(self, cond: ImageCondition, seed: int = 0,
                 step_callback: Callable[[int, int], object] | None = None) -> np.ndarray:
        """uint8 [V, h, w, 3] views at the decoder's size (the model's image size, twice it through an
        upscaling geometry decoder) for a prepared condition (one scene)."""
        return self.codec.decode(self.sample(cond, seed, step_callback)[0], cond, noise_seed=seed)

    def finish(self, cond: ImageCondition, sample: torch.Tensor, rig: CameraRig, seed: int = 0) -> MultiViewImages:
        """The camera images of a `sample` (float [1, V, C, h, w] from `sample`) of condition `cond` (best:
        decoder_condition's): decoded by this stage's codec (its injected noise seeded by `seed`) and
        resized to the rig's size. A second stage with another decoder can finish the same sample."""
        small = self.codec.decode(sample[0], cond, noise_seed=seed)
        cam = rig.cameras[0]
        return MultiViewImages(resize_images(small, (cam.height, cam.width), smooth=True), rig)

    def generate_views(self, views: RenderedViews, description: SceneDescription | None = None,
                       layout: Layout | None = None, reference: MultiViewImages | None = None,
                       T_ref_new: np.ndarray | None = None, seed: int = 0,
                       step_callback: Callable[[int, int], object] | None = None
                       ) -> tuple[MultiViewImages, ImageCondition, torch.Tensor]:
        """(images, condition, sample): what __call__ / extrapolate return, with the condition and the
        sample it was decoded from (for `finish` by another decoder)."""
        # 1. Validate.
        self.check_inputs(views, description, layout, reference, T_ref_new)
        self._interrupt = False
        # 2. Conditions at the model resolution (geometry maps, tokens, reference view).
        cond = self.condition(views, description, layout, reference, T_ref_new, seed)
        # 3. Denoise all views together (UniPC, classifier-free guidance).
        x = self.sample(cond, seed, step_callback)
        # 4. Decode (with the geometry at the decoder's size) and return to the rig's size.
        return self.finish(self.decoder_condition(views, layout, cond, description, seed), x, views.rig, seed), cond, x

    def __call__(self, views: RenderedViews, description: SceneDescription | None = None, layout: Layout | None = None,
                 seed: int = 0, step_callback: Callable[[int, int], object] | None = None) -> MultiViewImages:
        """Camera images of the rendered views (same rig and size). description gives the caption (style:
        time of day, weather, environment); layout (rig's world frame) the perspective box / map-line maps
        and the box tokens; both optional. step_callback(step, total) after each denoising step; returning
        False (or interrupt()) raises MultiViewInterrupted. Deterministic in seed."""
        return self.generate_views(views, description, layout, seed=seed, step_callback=step_callback)[0]

    def extrapolate(self, views: RenderedViews, description: SceneDescription | None, layout: Layout | None,
                    reference: MultiViewImages, T_ref_new: np.ndarray, seed: int = 0,
                    step_callback: Callable[[int, int], object] | None = None) -> MultiViewImages:
        """Camera images of a new chunk that continue the appearance of `reference` (the views of the chunk
        it extends, same cameras): each view is conditioned on the reference view of its camera and on
        T_ref_new float [4, 4], the new chunk's pose in the reference chunk's frame."""
        if reference is None:
            raise ValueError("MultiViewStage.extrapolate: a reference MultiViewImages is required")
        return self.generate_views(views, description, layout, reference, T_ref_new, seed, step_callback)[0]


def chunk_images(stage: MultiViewStage, chunk: Chunk, reference: Chunk | None = None, seed: int = 0,
                 step_callback: Callable[[int, int], object] | None = None) -> MultiViewImages:
    """The generated views of a rendered chunk (chunk.views); with a `reference` chunk that has images (the
    neighbour it extends), extrapolated from them at the chunk's pose in the reference's frame."""
    if reference is not None and reference.images is not None:
        T_ref_new = np.linalg.inv(reference.T_world_chunk) @ chunk.T_world_chunk
        return stage.extrapolate(chunk.views, chunk.description, chunk.layout, reference.images, T_ref_new,
                                 seed=seed, step_callback=step_callback)
    return stage(chunk.views, chunk.description, chunk.layout, seed=seed, step_callback=step_callback)


def main(argv: list[str] | None = None) -> None:
    from PIL import Image

    from ..data.world import Style, SyntheticWorld
    from ..types.cameras import DEFAULT_IMAGE_SIZE
    from .render import RenderStage, _mosaic, default_rig

    p = argparse.ArgumentParser(description="Generate the six camera images of a synthetic chunk by image diffusion.")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--seed", type=int, default=0, help="synthetic world seed (and the sampling seed)")
    p.add_argument("--environment", default=None, help="environment of the chunk (e.g. downtown)")
    p.add_argument("--time", default=None, help="time of day (dawn, morning, noon, afternoon, dusk, night)")
    p.add_argument("--weather", default=None, help="weather (sunny, cloudy, overcast, rainy, foggy, snowy)")
    p.add_argument("--size", type=int, nargs=2, default=DEFAULT_IMAGE_SIZE, metavar=("H", "W"), help="image size")
    p.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT), help="ImageDiffusion folder")
    p.add_argument("--guidance", type=float, default=None, help="classifier-free guidance (default: the model's)")
    p.add_argument("--guidance-rescale", type=float, default=None, help="guidance rescale in [0, 1] (default: the model's)")
    p.add_argument("--decoder", choices=("geometry", "plain"), default=None,
                   help="decode the latents with the geometry-aware decoder or the autoencoder's own (default: the "
                        "model's config)")
    p.add_argument("--first-guess-strength", type=float, default=None,
                   help="start sampling from the first-guess decoder's views noised to this share of the schedule "
                        "(1: from pure noise; default: the model's config)")
    args = p.parse_args(argv)
    if (args.time is None) != (args.weather is None):
        p.error("--time and --weather go together")
    world = SyntheticWorld(args.seed, Style(args.time, args.weather) if args.time else None)
    x, y = world.find_location(args.environment) if args.environment else (0.0, 0.0)
    chunk = world.chunk(x, y)
    render = RenderStage(default_rig(tuple(args.size)), backend="torch")
    views = render(chunk.occupancy)
    stage = MultiViewStage.from_pretrained(args.checkpoint, guidance_scale=args.guidance,
                                           guidance_rescale=args.guidance_rescale,
                                           geometry_decoder=None if args.decoder is None else args.decoder == "geometry",
                                           first_guess_strength=args.first_guess_strength)
    images, cond, sample = stage.generate_views(views, chunk.description, chunk.layout, seed=args.seed)
    preview = render.preview(views, chunk.description, chunk.layout, seed=args.seed, occupancy=chunk.occupancy)
    out = Path(args.out)
    paths = images.save(out)
    Image.fromarray(_mosaic(images.images, views.rig.names)).save(out / "mosaic.png")
    Image.fromarray(_mosaic(preview.images, views.rig.names)).save(out / "preview_mosaic.png")
    written = ["mosaic.png", "preview_mosaic.png"]
    plain = MultiViewStage(stage.model, geometry_decoder=False)
    if stage.codec.use_geometry_decoder:  # the same sample through the plain decoder, to compare
        plain_images = plain.finish(cond, sample, views.rig, args.seed).images
        Image.fromarray(_mosaic(plain_images, views.rig.names)).save(out / "plain_decoder_mosaic.png")
        written = ["mosaic.png (geometry-aware decoder)", "plain_decoder_mosaic.png", "preview_mosaic.png"]
    if stage.first_guess_strength < 1:  # where the sampler started (the guess as its latents decode)
        guess = plain.finish(cond, stage.codec.first_guess(cond.to(stage.model.device), args.seed), views.rig)
        Image.fromarray(_mosaic(guess.images, views.rig.names)).save(out / "first_guess_mosaic.png")
        written.append("first_guess_mosaic.png")
    d = chunk.description
    print(f"{d.time_of_day} {d.weather} {d.environment}: wrote {len(paths)} views, "
          f"{', '.join(written)} under {out}")


if __name__ == "__main__":
    main()
