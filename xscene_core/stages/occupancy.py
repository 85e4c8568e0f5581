"""Occupancy stage: Layout (+ caption) -> Occupancy and its Triplane latent, by triplane latent diffusion
and the triplane VAE's decoder; the same models resample part of a known latent (outpainting, local
regeneration after an edit) with RePaint masked sampling.

    stage = OccupancyStage.from_pretrained()               # checkpoints/occupancy_diffusion + triplane_vae
    out = stage(layout, "a rainy night downtown", seed=0)  # OccupancyOutput(occupancy, triplane)
    out = stage.inpaint(known, mask, layout, caption, seed=0)   # keep `known` where mask says so

A layout without road areas (what the layout stage generates: boxes and lanes) gets its drivable area,
sidewalks and dividers derived from its lanes (ops.road_areas) before it conditions the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..models.occupancy_diffusion import OccupancyDiffusion
from ..models.triplane_vae import Planes, TriplaneVAE
from ..ops import masked_sampling
from ..ops.box_guidance import box_guidance_for, box_guidance_strength
from ..ops.road_areas import NO_SIDEWALK_ENVIRONMENTS, complete_road_map
from ..types.layout import Layout
from ..types.occupancy import Occupancy, Triplane

_REPO = Path(__file__).resolve().parents[2]
DEFAULT_DIFFUSION = _REPO / "checkpoints" / "occupancy_diffusion"
DEFAULT_VAE = _REPO / "checkpoints" / "triplane_vae"


class OccupancyInterrupted(RuntimeError):
    """Raised by OccupancyStage when interrupt() was called or the step callback returned False."""


@dataclass
class OccupancyOutput:
    """What the occupancy stage returns: the decoded voxels and the latent they were decoded from."""

    occupancy: Occupancy
    triplane: Triplane


@dataclass
class TriplaneMask:
    """Which latent cells of a triplane are known (kept): xy bool [X', Y'], xz bool [X', Z'], yz bool [Y', Z']."""

    xy: np.ndarray
    xz: np.ndarray
    yz: np.ndarray

    def rolled(self) -> torch.Tensor:
        """float [X'+Z', Y'+Z']: the mask on the rolled-out map (1 = keep); the padded corner is kept (zeros)."""
        from ..ops.triplane import rollout

        planes = [torch.as_tensor(np.asarray(m, dtype=np.float32))[None] for m in (self.xy, self.xz, self.yz)]
        out = rollout(*planes)[0]
        X, Y = self.xy.shape
        out[X:, Y:] = 1.0
        return out

    @property
    def known_fraction(self) -> float:
        return float(self.xy.mean())


class OccupancyStage:
    """Layout -> occupancy.

    diffusion: an OccupancyDiffusion; vae: the TriplaneVAE it was trained with (its latents); guidance,
    steps: sampling defaults (None: the model config's); box_guidance: strength of box guidance
    (ops.box_guidance: the VAE decoder pulls the sample toward filling every box with its class; None: the
    model config's box_guidance_scale, 0 = off); threads: torch CPU threads while running (restored
    afterwards; None leaves the setting alone).
    """

    def __init__(self, diffusion: OccupancyDiffusion, vae: TriplaneVAE, guidance: float | None = None,
                 steps: int | None = None, threads: int | None = None, box_guidance: float | None = None) -> None:
        self.diffusion = diffusion.eval()
        self.vae = vae.eval()
        self.guidance = guidance
        self.steps = steps
        self.box_guidance = box_guidance_strength(diffusion, box_guidance)
        self.threads = threads
        self._interrupt = False
        if tuple(vae.plane_shape) != tuple(diffusion.plane_shape):
            raise ValueError(f"the VAE's planes {tuple(vae.plane_shape)} do not match the diffusion model's "
                             f"{tuple(diffusion.plane_shape)}")

    @classmethod
    def from_pretrained(cls, diffusion: str | Path = DEFAULT_DIFFUSION, vae: str | Path = DEFAULT_VAE,
                        **kwargs) -> "OccupancyStage":
        """Load both models; refuses a VAE other than the one the diffusion model was trained on."""
        from ..data.latent_dataset import vae_hash

        model = OccupancyDiffusion.from_pretrained(diffusion)
        want = model.config.get("vae_hash", "")
        if want and vae_hash(vae) != want:
            raise ValueError(f"{vae} is not the VAE {diffusion} was trained with (hash {vae_hash(vae)} != {want})")
        return cls(model, TriplaneVAE.from_pretrained(vae), **kwargs)

    @property
    def grid(self):
        return self.diffusion.grid

    def interrupt(self) -> None:
        """Ask a running call to stop after the current denoising step (it raises OccupancyInterrupted)."""
        self._interrupt = True

    # -- inputs -------------------------------------------------------------------------------------------
    def check_inputs(self, layout: Layout | None, caption: str | None = None) -> None:
        if layout is not None and not isinstance(layout, Layout):
            raise ValueError(f"OccupancyStage: layout must be a Layout or None, got {type(layout).__name__}")
        if caption is not None and not isinstance(caption, str):
            raise ValueError(f"OccupancyStage: caption must be text or None, got {type(caption).__name__}")
        if layout is not None:
            inside = [b for b in layout.boxes if self.grid.contains_xy(*b.center[:2])]
            if len(layout.boxes) and not inside:
                (lx, ly, _), (ux, uy, _) = self.grid.lower, self.grid.upper
                raise ValueError(f"OccupancyStage: none of the layout's {len(layout.boxes)} boxes lies inside the "
                                 f"chunk ([{lx:g}, {ux:g}) x [{ly:g}, {uy:g}) m in the chunk frame)")

    def condition_layout(self, layout: Layout | None, environment: str | None = None) -> Layout | None:
        """The layout the model is conditioned on: road areas derived from the lanes where it has none."""
        if layout is None:
            return None
        return complete_road_map(layout, sidewalks=environment not in NO_SIDEWALK_ENVIRONMENTS)

    # -- latents --------------------------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, occupancy: Occupancy) -> Triplane:
        """An occupancy's triplane (the VAE's mean latent)."""
        return self.vae.encode_occupancy(occupancy)

    @torch.no_grad()
    def decode(self, triplane: Triplane) -> Occupancy:
        """Voxels of a triplane: the VAE decoder's argmax class at every voxel centre."""
        labels = self.vae.decode_volume(triplane)[0].cpu().numpy()
        return Occupancy(labels, self.grid)

    def box_guide(self, cond_layout: Layout | None):
        """The x0 guide of a conditioning layout (None: nothing to guide)."""
        return box_guidance_for(self.diffusion, self.vae, [cond_layout], self.box_guidance)

    def rolled(self, triplane: Triplane) -> torch.Tensor:
        return self.diffusion.rollout(Planes(triplane.xy[None], triplane.xz[None], triplane.yz[None]))

    def _triplane(self, latent: torch.Tensor) -> Triplane:
        return self.diffusion.unroll(latent).to_triplanes()[0]

    # -- running --------------------------------------------------------------------------------------------
    def _run(self, fn: Callable[[Callable[[int, int], bool]], torch.Tensor],
             step_callback: Callable[[int, int], object] | None) -> OccupancyOutput:
        self._interrupt = False

        def on_step(i: int, n: int) -> bool:
            if step_callback is not None and step_callback(i, n) is False:
                return False
            return not self._interrupt

        threads = torch.get_num_threads()
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        try:
            latent = fn(on_step)
            if self._interrupt:
                raise OccupancyInterrupted("occupancy generation interrupted")
            triplane = self._triplane(latent)
            return OccupancyOutput(self.decode(triplane), triplane)
        except masked_sampling.SamplingInterrupted as stop:
            raise OccupancyInterrupted(f"occupancy generation interrupted ({stop})") from None
        finally:
            torch.set_num_threads(threads)

    def __call__(self, layout: Layout | None, caption: str | None = None, seed: int = 0, environment: str | None = None,
                 step_callback: Callable[[int, int], object] | None = None) -> OccupancyOutput:
        """Sample an occupancy for a layout (chunk frame; None = unconditioned) and caption. Deterministic
        in `seed`. step_callback(step, total) after every denoising step; False (or interrupt()) stops the
        call with OccupancyInterrupted. environment (e.g. "highway") decides whether derived road areas get
        sidewalks."""
        # 1. Validate; 2. complete the road map; 3. sample the latent; 4. decode the voxels.
        self.check_inputs(layout, caption)
        cond_layout = self.condition_layout(layout, environment)
        guide = self.box_guide(cond_layout)
        return self._run(lambda cb: self.diffusion.sample(cond_layout, caption, seed=seed, guidance=self.guidance,
                                                          steps=self.steps, callback=cb, x0_guide=guide), step_callback)

    def inpaint(self, known: Triplane, mask: TriplaneMask, layout: Layout | None, caption: str | None = None,
                seed: int = 0, environment: str | None = None, resample: int = masked_sampling.RESAMPLE,
                jump: int = masked_sampling.JUMP, steps: int = masked_sampling.MASKED_STEPS,
                step_callback: Callable[[int, int], object] | None = None) -> OccupancyOutput:
        """Resample the latent cells where `mask` is False and keep `known`'s exactly where it is True
        (RePaint: `resample` resamplings with jumps of `jump` steps over `steps` denoising steps), for the
        layout and caption; then decode. Deterministic in `seed`."""
        self.check_inputs(layout, caption)
        if not isinstance(known, Triplane) or not isinstance(mask, TriplaneMask):
            raise ValueError("OccupancyStage.inpaint: known must be a Triplane and mask a TriplaneMask")
        if known.resolution != self.diffusion.plane_shape or tuple(mask.xy.shape) != self.diffusion.plane_shape[:2]:
            raise ValueError(f"OccupancyStage.inpaint: latent {known.resolution} / mask {tuple(mask.xy.shape)} do not "
                             f"match the model's planes {self.diffusion.plane_shape}")
        cond_layout = self.condition_layout(layout, environment)
        rolled_known = self.rolled(known.to(self.diffusion.device))
        rolled_mask = mask.rolled().to(self.diffusion.device)
        guide = self.box_guide(cond_layout)
        return self._run(lambda cb: self.diffusion.sample_masked(rolled_known, rolled_mask, cond_layout, caption,
                                                                 seed=seed, guidance=self.guidance, steps=steps,
                                                                 resample=resample, jump=jump, callback=cb,
                                                                 x0_guide=guide),
                         step_callback)

    def regenerate(self, known: Triplane, previous: Occupancy, region: np.ndarray, layout: Layout | None,
                   caption: str | None = None, seed: int = 0, environment: str | None = None, paste: bool = True,
                   step_callback: Callable[[int, int], object] | None = None) -> OccupancyOutput:
        """Local regeneration after a layout edit: resample the xy-plane latent cells that touch `region`
        (bool [X, Y] BEV columns, e.g. ops.layout_diff.change_distance(...) <= margin), keep every other
        latent cell (the xz and yz planes included) exactly, decode. With `paste` the voxels outside the
        region are then copied from `previous`, so nothing away from the edit changes; without, the decoder's
        own output is returned (what eval measures)."""
        region = np.asarray(region, bool)
        if region.shape != tuple(self.grid.shape[:2]):
            raise ValueError(f"OccupancyStage.regenerate: region must be bool {list(self.grid.shape[:2])}, "
                             f"got {list(region.shape)}")
        X, Y, Z = self.diffusion.plane_shape
        r = self.grid.shape[0] // X
        touched = region.reshape(X, r, Y, r).any(axis=(1, 3))
        mask = TriplaneMask(~touched, np.ones((X, Z), bool), np.ones((Y, Z), bool))
        out = self.inpaint(known, mask, layout, caption, seed=seed, environment=environment, step_callback=step_callback)
        if paste:
            labels = np.where(region[..., None], out.occupancy.labels, previous.labels)
            out = OccupancyOutput(Occupancy(labels, self.grid), out.triplane)
        return out
