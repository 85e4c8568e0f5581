"""Layout-conditioned triplane latent diffusion (X-Scene Sec. 3.2, appendix A.2).

The triplane VAE's three planes are rolled out into one (X'+Z') x (Y'+Z') map (ops.triplane) and a
diffusers `UNet2DConditionModel` denoises it:

    noisy rolled latent [B, C, H, W] ─┐
    BEV layout map [B, Cb, X, Y] ──ConvNet──▶ [B, F, X', Y'] placed on the xy block, zeros elsewhere ─┤
                                      concat ─▶ (pad, patchify p x p) ─▶ UNet ─▶ (unpatchify, crop) ─▶ [B, C, H, W]
    tokens [null, box_1..box_N, caption] ──cross-attention──▲

1. Spatial condition: the BEV map (ops.condition_maps.bev_layout_map: areas, dividers, per-class box
   footprints) goes through a zero-preserving ConvNet (models.condition_encoders.BevEncoder) to the xy
   block's resolution. Its features enter the UNet's first convolution beside the noisy latent; a
   convolution over a concatenation is the sum of one convolution per part, so this is the paper's
   additive spatial condition (BEV features added to the noisy input's features) on the xy block only.
2. Token condition: one token per box (class embedding + Fourier features of the box geometry through
   an MLP) and one for the caption (all-MiniLM-L6-v2 sentence embedding through an MLP), after a learned
   null token; the UNet cross-attends to them.
3. Condition dropout (training) removes the BEV map (zeros), the boxes or the caption (masked tokens)
   per sample; classifier-free guidance contrasts the full condition with all three removed.
4. Noise schedules and samplers are diffusers schedulers built from this model's config: DDPM for
   training, DDIM (or UniPC) for sampling, DDIM / DDPM for masked RePaint sampling
   (ops.masked_sampling) that outpainting and local regeneration use.

Latents are normalised as (latent * latent_scale) before diffusion (latent_scale from the training
data, stored in the config). `patch_size` > 1 folds p x p cells into channels before the UNet (and back
after): the tiny preset uses 2 so the UNet runs at 60 x 60 on a CPU; the paper preset uses 1.

    model = OccupancyDiffusion.from_preset("tiny")
    latent = model.sample(layout, "a rainy night ...", seed=0)    # rolled-out latent, VAE units
    planes = model.unroll(latent)                                 # Planes for TriplaneVAE.decode_volume
    latent = model.sample_masked(known, mask, layout, text, seed=0)
    model.save_pretrained(dir); OccupancyDiffusion.from_pretrained(dir)

Where the paper is silent the choices are ours: the ConvNet and token encoders, the null token, the
v-prediction objective, the patch folding of the tiny preset and the padding of the rolled-out map to a
multiple of the UNet's total stride (zeros, cropped off after).
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..ops import masked_sampling
from ..ops.condition_maps import BEV_CHANNELS
from ..ops.triplane import corner_mask, rollout, unroll
from ..types.layout import Layout
from ..types.occupancy import GridSpec
from .condition_encoders import BevEncoder, ConditionTokens, OccupancyCondition
from .pretrained import Pretrained
from .triplane_vae import Planes

TEXT_DIM = 384  # all-MiniLM-L6-v2
X0Guide = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x0 [B, C, H, W], t long [B]) -> x0'

# The one place that holds each preset's numbers. `tiny` trains on a 2-core CPU (attention only at the
# lowest resolution, DESIGN.md timings); `paper` follows the paper's UNet (blocks 64-128-256-512, 2 layers
# per block) with cross-attention width = token width.
_COMMON = dict(latent_channels=8, plane_shape=(100, 100, 16), grid=None, bev_channels=len(BEV_CHANNELS),
               text_dim=TEXT_DIM, box_bands=6, max_boxes=128, num_train_timesteps=1000,
               beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, prediction_type="v_prediction",
               latent_scale=1.0, num_inference_steps=20, guidance_scale=2.0, box_guidance_scale=0.0)
PRESETS: dict[str, dict] = {
    "tiny": dict(_COMMON, patch_size=2, block_out_channels=(32, 64, 64), layers_per_block=1,
                 attention_levels=(False, False, True), attention_heads=4, norm_num_groups=16, token_dim=64,
                 bev_hidden=(32, 32), bev_features=16),
    "paper": dict(_COMMON, latent_channels=16, patch_size=1, block_out_channels=(64, 128, 256, 512), layers_per_block=2,
                  attention_levels=(False, True, True, True), attention_heads=8, norm_num_groups=32, token_dim=512,
                  bev_hidden=(64, 64), bev_features=64),
}


class OccupancyDiffusion(Pretrained, nn.Module):
    """Denoiser of rolled-out triplane latents conditioned on a layout and a caption.

    latent_channels: C of each VAE plane; plane_shape: (X', Y', Z') of the planes (the rolled-out map is
    (X'+Z') x (Y'+Z')); grid: GridSpec.to_dict() of the occupancy grid (None = the Occ3D default), which
    the BEV map and the box geometry live on; bev_channels: channels of the BEV map; text_dim: caption
    embedding width; box_bands: Fourier octaves of the box geometry; max_boxes: boxes kept per layout
    (nearest to the chunk centre); patch_size: p x p folding before the UNet; block_out_channels,
    layers_per_block, norm_num_groups: the UNet; attention_levels: per UNet level, whether it has
    (self + cross) attention (the mid block always has); attention_heads: heads of every attention;
    token_dim: width of the condition tokens (= the UNet's cross-attention dim); bev_hidden, bev_features:
    the BEV ConvNet's widths and output channels; num_train_timesteps, beta_schedule, beta_start,
    beta_end, prediction_type: the noise schedule shared by all samplers; latent_scale: latents are
    multiplied by it before diffusion; num_inference_steps, guidance_scale: sampling defaults;
    box_guidance_scale: default strength of box guidance (ops.box_guidance; applied by the occupancy stage,
    which holds the VAE; 0 = off); vae_hash:
    digest of the VAE folder whose latents the model was trained on (data.latent_dataset.vae_hash; "" when
    unknown), so a pipeline can refuse a VAE the model does not belong to.
    """

    def __init__(self, latent_channels: int = 8, plane_shape: Sequence[int] = (100, 100, 16), grid: dict | None = None,
                 bev_channels: int = len(BEV_CHANNELS), text_dim: int = TEXT_DIM, box_bands: int = 6,
                 max_boxes: int = 128, patch_size: int = 2, block_out_channels: Sequence[int] = (32, 64, 64),
                 layers_per_block: int = 1, attention_levels: Sequence[bool] = (False, False, True),
                 attention_heads: int = 4, norm_num_groups: int = 16, token_dim: int = 64,
                 bev_hidden: Sequence[int] = (32, 32), bev_features: int = 16, num_train_timesteps: int = 1000,
                 beta_schedule: str = "scaled_linear", beta_start: float = 0.00085, beta_end: float = 0.012,
                 prediction_type: str = "v_prediction", latent_scale: float = 1.0, num_inference_steps: int = 20,
                 guidance_scale: float = 2.0, box_guidance_scale: float = 0.0, vae_hash: str = "") -> None:
        super().__init__()
        from diffusers import UNet2DConditionModel

        grid_spec = GridSpec.from_dict(grid) if grid is not None else GridSpec()
        self.config = dict(
            latent_channels=int(latent_channels), plane_shape=[int(v) for v in plane_shape], grid=grid_spec.to_dict(),
            bev_channels=int(bev_channels), text_dim=int(text_dim), box_bands=int(box_bands), max_boxes=int(max_boxes),
            patch_size=int(patch_size), block_out_channels=[int(v) for v in block_out_channels],
            layers_per_block=int(layers_per_block), attention_levels=[bool(v) for v in attention_levels],
            attention_heads=int(attention_heads), norm_num_groups=int(norm_num_groups), token_dim=int(token_dim),
            bev_hidden=[int(v) for v in bev_hidden], bev_features=int(bev_features),
            num_train_timesteps=int(num_train_timesteps), beta_schedule=str(beta_schedule), beta_start=float(beta_start),
            beta_end=float(beta_end), prediction_type=str(prediction_type), latent_scale=float(latent_scale),
            num_inference_steps=int(num_inference_steps), guidance_scale=float(guidance_scale),
            box_guidance_scale=float(box_guidance_scale), vae_hash=str(vae_hash))
        if len(self.config["plane_shape"]) != 3 or len(attention_levels) != len(block_out_channels):
            raise ValueError("plane_shape needs 3 values and attention_levels one flag per block")
        if patch_size < 1 or prediction_type not in ("epsilon", "v_prediction", "sample"):
            raise ValueError(f"patch_size must be >= 1 and prediction_type one of epsilon / v_prediction / sample")
        self.grid = grid_spec
        X, Y, Z = self.config["plane_shape"]
        self.plane_shape = (X, Y, Z)
        self.latent_shape = (int(latent_channels), X + Z, Y + Z)  # [C, H, W] of the rolled-out map
        self.patch_size = int(patch_size)
        stride = self.patch_size * 2 ** (len(block_out_channels) - 1)
        self.padded_hw = tuple(int(math.ceil(n / stride) * stride) for n in self.latent_shape[1:])

        factor = grid_spec.shape[0] / X
        down = int(round(math.log2(factor))) if factor >= 1 else 0
        self.bev_encoder = BevEncoder(bev_channels, bev_hidden, bev_features, down)
        self.tokens = ConditionTokens(token_dim, text_dim, box_bands, grid_spec)
        p2 = self.patch_size ** 2
        down_types = tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attention_levels)
        up_types = tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attention_levels))
        self.unet = UNet2DConditionModel(
            sample_size=self.padded_hw[0] // self.patch_size, in_channels=(latent_channels + bev_features) * p2,
            out_channels=latent_channels * p2, down_block_types=down_types, up_block_types=up_types,
            mid_block_type="UNetMidBlock2DCrossAttn", block_out_channels=tuple(block_out_channels),
            layers_per_block=layers_per_block, norm_num_groups=norm_num_groups, cross_attention_dim=token_dim,
            attention_head_dim=attention_heads,  # diffusers' name for the number of heads of this UNet
        )
        self.register_buffer("_corner", corner_mask((X, Y, Z)), persistent=False)

    # -- construction -----------------------------------------------------------------------------------
    @classmethod
    def from_preset(cls, name: str, **overrides) -> "OccupancyDiffusion":
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; use one of {', '.join(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})

    @property
    def device(self) -> torch.device:
        return self.tokens.null.device

    # -- latents ------------------------------------------------------------------------------------------
    def rollout(self, planes: Planes) -> torch.Tensor:
        """Planes (VAE units) -> rolled-out latent float [B, C, H, W]."""
        return rollout(planes.xy, planes.xz, planes.yz)

    def unroll(self, latent: torch.Tensor) -> Planes:
        """Rolled-out latent float [B, C, H, W] (VAE units) -> Planes (contiguous copies)."""
        return Planes(*(p.contiguous() for p in unroll(latent, self.plane_shape)))

    def normalize(self, latent: torch.Tensor) -> torch.Tensor:
        return latent * self.config["latent_scale"]

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        return x / self.config["latent_scale"] * self._corner.to(x.dtype)

    def scheduler(self, kind: str = "ddim"):
        """A diffusers scheduler over this model's noise schedule: "ddpm" (training), "ddim" or "unipc"."""
        from .schedulers import make_scheduler

        return make_scheduler(kind, self.config)

    # -- the network ----------------------------------------------------------------------------------
    def forward(self, sample: torch.Tensor, timestep: torch.Tensor | int, cond: OccupancyCondition) -> torch.Tensor:
        """sample: normalised noisy rolled-out latents float [B, C, H, W]; timestep: long [B] or a scalar;
        cond: a batch of B conditions. Returns the model output [B, C, H, W] (v, epsilon or x0 as
        prediction_type says)."""
        b, c, h, w = sample.shape
        if (c, h, w) != self.latent_shape:
            raise ValueError(f"sample: expected [B, {', '.join(map(str, self.latent_shape))}], got {list(sample.shape)}")
        if cond.batch_size != b:
            raise ValueError(f"condition batch {cond.batch_size} != sample batch {b}")
        X, Y, _ = self.plane_shape
        feats = self.bev_encoder(cond.bev.to(sample.dtype), (X, Y))             # [B, F, X', Y']
        cmap = F.pad(feats, (0, w - Y, 0, h - X))                               # zeros outside the xy block
        x = torch.cat([sample, cmap], 1)
        ph, pw = self.padded_hw
        x = F.pad(x, (0, pw - w, 0, ph - h))
        if self.patch_size > 1:
            x = F.pixel_unshuffle(x, self.patch_size)
        tokens, mask = self.tokens(cond)
        if not torch.is_tensor(timestep) or timestep.ndim == 0:
            timestep = torch.full((b,), int(timestep), dtype=torch.long, device=sample.device)
        out = self.unet(x, timestep, encoder_hidden_states=tokens, encoder_attention_mask=mask).sample
        if self.patch_size > 1:
            out = F.pixel_shuffle(out, self.patch_size)
        return out[:, :, :h, :w]

    # -- conditions -----------------------------------------------------------------------------------
    def condition(self, layout: Layout | None | Sequence[Layout | None], text=None,
                  batch: int | None = None) -> OccupancyCondition:
        """A condition batch from layouts (chunk frame; None = no layout) and captions (str, a precomputed
        embedding float [text_dim], or None = no caption; one for all or one per layout)."""
        layouts = list(layout) if isinstance(layout, (list, tuple)) else [layout] * (batch or 1)
        texts = list(text) if isinstance(text, (list, tuple)) else [text] * len(layouts)
        if len(texts) != len(layouts):
            raise ValueError(f"{len(texts)} texts for {len(layouts)} layouts")
        strings = [t for t in texts if isinstance(t, str)]
        if strings:
            from ..llm.embedder import embed

            table = dict(zip(strings, embed(strings)))
            texts = [table[t] if isinstance(t, str) else t for t in texts]
        cond = OccupancyCondition.from_layouts(layouts, texts, self.grid, self.config["text_dim"], self.config["max_boxes"])
        return cond.to(self.device)

    def guided(self, cond: OccupancyCondition, guidance: float,
               x0_guide: X0Guide | None = None) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """model_fn(x, t) with classifier-free guidance: out_u + guidance (out_c - out_u), where out_u has
        every condition removed; guidance 1 is the plain conditional model. x0_guide(x0, t) -> x0' (e.g.
        ops.box_guidance.BoxGuidance) corrects the clean-latent estimate the output implies; the output is
        then rewritten to imply x0' from the same x (so any scheduler's step continues from x0')."""
        if guidance == 1.0:
            fn = lambda x, t: self(x, t, cond)  # noqa: E731
        else:
            both = OccupancyCondition.cat([cond, cond.unconditional()])

            def fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
                t = t.expand(x.shape[0])
                out_c, out_u = self(torch.cat([x, x]), torch.cat([t, t]), both).chunk(2)
                return out_u + guidance * (out_c - out_u)

        if x0_guide is None:
            return fn
        alphas = self.scheduler("ddpm").alphas_cumprod.to(self.device)
        kind = self.config["prediction_type"]

        def fn_x0(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            out = fn(x, t)
            t = t.expand(x.shape[0])
            a = alphas[t.long()].view(-1, 1, 1, 1).to(x.dtype)
            sa, sb = a.sqrt(), (1 - a).sqrt()
            x0 = {"v_prediction": sa * x - sb * out, "epsilon": (x - sb * out) / sa, "sample": out}[kind]
            x0 = x0_guide(x0, t)
            if kind == "sample":
                return x0
            eps = (x - sa * x0) / sb
            return sa * eps - sb * x0 if kind == "v_prediction" else eps

        return fn_x0

    # -- sampling -------------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, layout: Layout | None | Sequence[Layout | None] = None, text=None, seed: int | torch.Generator = 0,
               guidance: float | None = None, steps: int | None = None, scheduler: str = "ddim", batch: int | None = None,
               cond: OccupancyCondition | None = None, callback: Callable[[int, int], bool | None] | None = None,
               x0_guide: X0Guide | None = None) -> torch.Tensor:
        """Sample rolled-out latents float [B, C, H, W] in VAE units (zero corner) for layouts and captions
        (see `condition`; or a prepared `cond`). Deterministic in `seed` (an int or a torch.Generator).
        guidance / steps default to the config's guidance_scale / num_inference_steps. callback(i, n)
        after each step; returning False raises ops.masked_sampling.SamplingInterrupted. x0_guide: see
        `guided` (ops.box_guidance)."""
        was_training = self.training
        self.eval()
        try:
            cond = cond if cond is not None else self.condition(layout, text, batch)
            gen = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(int(seed))
            guidance = self.config["guidance_scale"] if guidance is None else float(guidance)
            steps = self.config["num_inference_steps"] if steps is None else int(steps)
            sched = self.scheduler(scheduler)
            sched.set_timesteps(steps, device=self.device)
            fn = self.guided(cond, guidance, x0_guide)
            from diffusers.utils.torch_utils import randn_tensor

            x = randn_tensor((cond.batch_size, *self.latent_shape), generator=gen, device=self.device) * sched.init_noise_sigma
            for i, t in enumerate(sched.timesteps):
                out = fn(sched.scale_model_input(x, t), t.expand(x.shape[0]))
                x = sched.step(out, t, x).prev_sample
                if callback is not None and callback(i + 1, steps) is False:
                    raise masked_sampling.SamplingInterrupted(f"sampling interrupted after {i + 1} of {steps} steps")
            return self.denormalize(x)
        finally:
            self.train(was_training)

    @torch.no_grad()
    def sample_masked(self, known_latent: torch.Tensor, mask: torch.Tensor, layout=None, text=None,
                      seed: int | torch.Generator = 0, guidance: float | None = None,
                      steps: int = masked_sampling.MASKED_STEPS, resample: int = masked_sampling.RESAMPLE,
                      jump: int = masked_sampling.JUMP, scheduler: str = "ddim", cond: OccupancyCondition | None = None,
                      callback: Callable[[int, int], bool | None] | None = None,
                      x0_guide: X0Guide | None = None) -> torch.Tensor:
        """RePaint sampling (ops.masked_sampling): rolled-out latents float [B, C, H, W] in VAE units equal
        to `known_latent` (VAE units, [B, C, H, W] or [C, H, W]) where `mask` (broadcastable, 1 = keep) is 1
        and generated for the layout / caption elsewhere. x0_guide: see `guided`."""
        was_training = self.training
        self.eval()
        try:
            known = known_latent.detach().to(self.device, torch.float32)
            known = known[None] if known.ndim == 3 else known
            cond = cond if cond is not None else self.condition(layout, text, known.shape[0])
            if cond.batch_size != known.shape[0]:
                raise ValueError(f"{cond.batch_size} conditions for {known.shape[0]} known latents")
            gen = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(int(seed))
            guidance = self.config["guidance_scale"] if guidance is None else float(guidance)
            x = masked_sampling.masked_sample(self.guided(cond, guidance, x0_guide), self.scheduler(scheduler), self.normalize(known),
                                              torch.as_tensor(mask, device=self.device), gen, steps, resample, jump, callback)
            keep = torch.as_tensor(mask, device=self.device) >= 1
            return torch.where(keep, known, self.denormalize(x))  # exact in the known region
        finally:
            self.train(was_training)
