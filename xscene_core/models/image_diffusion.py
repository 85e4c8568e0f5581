"""Multi-view image diffusion with geometry guidance and reference-view extrapolation (X-Scene Sec. 3.3).

A diffusers `UNet2DConditionModel` denoises the V views of a scene as one batch of B*V images:

    noisy views [B, V, C, h, w] ─┐
    geometry (semantic one-hot, depth, perspective boxes / map lines, object positional embedding)
        ──GeometryEncoder (ConvNet)──▶ [B*V, F, h, w] ─┤
    reference view of the preceding chunk [B, V, C, h, w] + "present" flag ─┤
                                  concat ─▶ UNet (ring cross-view self-attention) ─▶ [B, V, C, h, w]
    tokens [null, camera, relative pose, caption, boxes in the camera frame] ──cross-attention──▲

1. Geometry guidance: the encoder's features enter the UNet's first convolution beside the noisy input.
   A convolution over a concatenation is the sum of one convolution per part, so this is the paper's
   "geometry features added to the noisy input"; the encoder is zero-preserving, so a dropped geometry
   is an exact zero input.
2. Cross-view consistency: every self-attention of the UNet (tiny: the lowest level and the mid block,
   where tokens are few) lets each view's tokens also attend to its two ring neighbours' tokens (the six
   cameras are in ring order FRONT_LEFT, FRONT, FRONT_RIGHT, BACK_RIGHT, BACK, BACK_LEFT). It reuses the
   attention's own projections, so it adds no weights; but it is not a no-op on a pretrained UNet: from
   the first step a view's own tokens get about a third of the attention mass (no mask, no bias telling
   own from neighbour tokens), so a Stable Diffusion initialisation has to re-learn its self-attention.
   (A separate zero-initialised cross-view attention would start as the identity: an open alternative.)
3. Extrapolation: the reference chunk's view of the same camera is concatenated with the noisy input
   (plus a 0/1 channel saying whether it is given) and the new chunk's pose in the reference frame is a
   cross-attention token; without a reference both are zero / masked, so one model serves both uses.
4. Global condition (global_condition=True): the caption embedding, the camera's features and the
   reference flag go through an MLP into the UNet's timestep embedding (diffusers' "projection" class
   embedding), so the style (time of day, weather) modulates every ResNet block at every resolution, not
   only the lowest-resolution cross-attention. Its last layer starts at zero. (Our addition: with
   attention only at the lowest level, the tiny model learned night / day brightness too slowly without it.)
5. Style condition (style_condition=True): the time of day and weather one-hot (image_condition.
   style_features) through a bias-free linear map into the caption embedding's space, added to the
   caption embedding before both the caption token and the global condition read it. It starts at zero,
   so a model trained without it loads unchanged. (Our addition: the sentence embedding of a caption is
   dominated by its object lists; a rainy night and a sunny morning downtown have cosine 0.88.)
6. Condition dropout in training (geometry, boxes, caption, reference) and classifier-free guidance at
   sampling (ImageCondition.unconditional: geometry, boxes and caption removed); UniPC with 20 steps.

Image space: `space="pixel"` denoises RGB in [-1, 1] at the model resolution (tiny preset: 64 x 112);
`space="latent"` denoises the latents of an AutoencoderKL loaded from a local folder (`vae_path`): the
small one trained here (tiny_latent preset, 32 x 56 latents of 128 x 224 views, geometry at 64 x 112 by
`geometry_stride` 2: the shipped model, chosen by measurement in checkpoints/image_diffusion/MODEL_CARD.md)
or Stable Diffusion's (paper preset).

    model = ImageDiffusion.from_preset("tiny_latent")  # vae_path: checkpoints/image_autoencoder
    model = ImageDiffusion.from_preset("paper", unet_path="/models/sd21", vae_path="/models/sd21")  # local only
    x = model.sample(cond, seed=0)               # [B, V, C, h, w] in the model's image space
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

import torch
import torch.nn as nn
import torch.nn.functional as F

from .image_condition import (CAMERA_FEATURES, STYLE_FEATURES, GeometryEncoder, ImageCondition, ImageTokens,
                              object_weights,
                              resize_images)
from .pretrained import Pretrained

TEXT_DIM = 384  # all-MiniLM-L6-v2
PROJECT_ROOT = Path(__file__).resolve().parents[2]  # shipped relative vae_paths are relative to it
GLOBAL_FEATURES = TEXT_DIM + CAMERA_FEATURES + 1  # caption, camera, reference flag

_SCHEDULE_TINY = dict(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02,
                      prediction_type="v_prediction", rescale_betas_zero_snr=True)
# The one place that holds each preset's numbers. `tiny`: pixel space at 64 x 112 on a 2-core CPU, attention
# only at the lowest level (DESIGN.md timings). `paper`: the Stable Diffusion 2.1 UNet (latents of 224 x 400
# images, 28 x 50; 336 x 600 / 448 x 800 by sample_size) with its noise schedule.
PRESETS: dict[str, dict] = {
    "tiny": dict(space="pixel", image_channels=3, sample_size=(64, 112), block_out_channels=(32, 64, 96),
                 layers_per_block=1, attention_levels=(False, False, True), attention_heads=4, norm_num_groups=16,
                 token_dim=64, use_linear_projection=False, geometry_hidden=32, geometry_features=16, max_boxes=48,
                 cross_view=True, global_condition=True, style_condition=True, num_inference_steps=20, guidance_scale=1.2, vae_path="",
                 vae_scale=1.0, **_SCHEDULE_TINY),
    # the tiny UNet on the latents of the small autoencoder trained here (models.image_autoencoder): 128 x 224
    # images as 32 x 56 x 4 latents, geometry at 64 x 112; vae_scale is set from the training latents when a
    # run starts
    "tiny_latent": dict(space="latent", image_channels=4, sample_size=(32, 56), block_out_channels=(32, 64, 96),
                        layers_per_block=1, attention_levels=(False, False, True), attention_heads=4,
                        norm_num_groups=16, token_dim=64, use_linear_projection=False, geometry_hidden=32,
                        geometry_features=16, geometry_stride=2, max_boxes=48, cross_view=True, global_condition=True, style_condition=True,
                        num_inference_steps=20, guidance_scale=1.2, vae_path="checkpoints/image_autoencoder",
                        vae_scale=1.0, vae_factor=4, **_SCHEDULE_TINY),
    # tiny_latent twice as wide (5.2 M parameters, 1.8x a training step on the CPU): the tiny UNet underfits
    # (its training and validation losses are equal), and the bench leaves room for a costlier sampler
    "small_latent": dict(space="latent", image_channels=4, sample_size=(32, 56), block_out_channels=(64, 96, 128),
                         layers_per_block=1, attention_levels=(False, False, True), attention_heads=4,
                         norm_num_groups=16, token_dim=64, use_linear_projection=False, geometry_hidden=32,
                         geometry_features=16, geometry_stride=2, max_boxes=48, cross_view=True, global_condition=True,
                         style_condition=True, num_inference_steps=20, guidance_scale=1.5,
                         vae_path="checkpoints/image_autoencoder", vae_scale=1.0, vae_factor=4, **_SCHEDULE_TINY),
    "paper": dict(space="latent", image_channels=4, sample_size=(28, 50), block_out_channels=(320, 640, 1280, 1280),
                  layers_per_block=2, attention_levels=(True, True, True, False), attention_heads=(5, 10, 20, 20),
                  norm_num_groups=32, token_dim=1024, use_linear_projection=True, geometry_hidden=64,
                  geometry_features=320, max_boxes=64, cross_view=True, global_condition=True, style_condition=True, num_inference_steps=20,
                  guidance_scale=1.2,
                  vae_path="", vae_scale=0.18215, vae_factor=8, num_train_timesteps=1000, beta_schedule="scaled_linear",
                  beta_start=0.00085, beta_end=0.012, prediction_type="v_prediction", rescale_betas_zero_snr=False),
}


class _Views:
    """The number of views of the batch in flight, shared with the ring attention processors."""

    num_views = 1


class RingAttnProcessor:
    """Self-attention over a view's own tokens and its two ring neighbours' tokens.

    hidden_states: [B*V, N, C] with views contiguous per scene; keys / values are [B*V, 3N, C] (previous
    view, own, next view, ring order wrapping around). Uses the attention's own to_q / to_k / to_v / to_out.
    """

    def __init__(self, views: _Views) -> None:
        self.views = views

    def __call__(self, attn, hidden_states: torch.Tensor, encoder_hidden_states=None, attention_mask=None,
                 temb=None, *args, **kwargs) -> torch.Tensor:
        if encoder_hidden_states is not None or hidden_states.ndim != 3:
            raise ValueError("RingAttnProcessor is for the self-attention (attn1) of transformer blocks")
        bv, n, c = hidden_states.shape
        v = self.views.num_views
        x = hidden_states.view(bv // v, v, n, c)
        ctx = torch.cat([x.roll(1, dims=1), x, x.roll(-1, dims=1)], 2).flatten(0, 1)   # [B*V, 3N, C]
        q, k, val = attn.to_q(hidden_states), attn.to_k(ctx), attn.to_v(ctx)
        h = attn.heads
        split = lambda t: t.view(bv, -1, h, t.shape[-1] // h).transpose(1, 2)  # noqa: E731
        out = F.scaled_dot_product_attention(split(q), split(k), split(val))
        out = out.transpose(1, 2).reshape(bv, n, -1)
        out = attn.to_out[1](attn.to_out[0](out))
        if attn.residual_connection:
            out = out + hidden_states
        return out / attn.rescale_output_factor


class ImageDiffusion(Pretrained, nn.Module):
    """Multi-view image denoiser conditioned on geometry, tokens and an optional reference view.

    space: "pixel" (RGB in [-1, 1]) or "latent" (AutoencoderKL latents x vae_scale from vae_path);
    image_channels: C of the denoised image; sample_size: (h, w) of the model resolution; UNet:
    block_out_channels, layers_per_block, attention_levels (per level: self + cross attention; the mid
    block always has them), attention_heads (an int or one per level), norm_num_groups,
    use_linear_projection; token_dim: width of the cross-attention tokens; geometry_hidden /
    geometry_features: the GeometryEncoder's width and output channels; geometry_stride: the geometry maps
    are this many times finer than sample_size (see condition_size); max_boxes: box tokens kept per
    scene (nearest to the ego); cross_view: ring neighbour attention in every self-attention;
    global_condition: caption + camera + reference flag added to the timestep embedding; style_condition:
    the time / weather one-hot added to the caption embedding (see the module docstring); the noise
    schedule (num_train_timesteps, beta_schedule, beta_start, beta_end, prediction_type,
    rescale_betas_zero_snr) shared by all samplers; num_inference_steps, guidance_scale, guidance_rescale
    (see `guided`): sampling defaults; vae_path: local folder whose "vae" subfolder holds the AutoencoderKL of the latent space (a
    Stable Diffusion checkpoint, or models.image_autoencoder's; a relative path is also looked up from the
    project root; "" for pixel space); vae_scale: latent multiplier; vae_factor: its image / latent size;
    geometry_decoder: decode latents with the geometry-aware decoder in vae_path/geometry_decoder
    (models.geometry_decoder) instead of the autoencoder's own, wherever the views' condition is known;
    first_guess_strength: where sampling starts (see `sample`; 1: from pure noise, below 1: from the
    first-guess decoder's views in vae_path/first_guess noised to that share of the schedule);
    first_guess_condition: the first-guess views (ImageCondition.guide, ImageCodec.first_guess) are
    concatenated with the noisy input beside the geometry features (cascaded conditioning: a regression of the
    image from the geometry gives the structure, the denoiser what it cannot predict); first_guess_residual:
    the denoiser generates the residual (views - first guess) x residual_scale instead of the views
    (CorrDiff's split of a regression for the mean and diffusion for the rest; needs first_guess_condition;
    `sample` returns views, `residual` maps views to what is denoised); paint_condition: the boxes' paint
    colours (Box.color) as box-token features and a per-pixel paint map in the geometry encoder (both
    zero-initialised, see image_condition.paint_map); area_condition: the marks of the layout (crossings, road paint, light
    fixtures: ImageCondition.areas) in the geometry encoder (zero-initialised); facade_condition (needs
    paint_condition): the paint map also holds the walls' colours (ImageCondition.facade_paint, drawn by the
    sample's seed at inference: MultiViewStage.condition).
    """

    def __init__(self, space: str = "pixel", image_channels: int = 3, sample_size: Sequence[int] = (64, 112),
                 block_out_channels: Sequence[int] = (32, 64, 96), layers_per_block: int = 1,
                 attention_levels: Sequence[bool] = (False, False, True), attention_heads: int | Sequence[int] = 4,
                 norm_num_groups: int = 16, token_dim: int = 64, use_linear_projection: bool = False,
                 geometry_hidden: int = 32, geometry_features: int = 16, geometry_stride: int = 1, max_boxes: int = 48,
                 cross_view: bool = True,
                 global_condition: bool = False, style_condition: bool = False, num_inference_steps: int = 20, guidance_scale: float = 1.2,
                 guidance_rescale: float = 0.0, vae_path: str = "", vae_scale: float = 1.0,
                 vae_factor: int = 8, geometry_decoder: bool = False, first_guess_strength: float = 1.0,
                 first_guess_condition: bool = False, first_guess_residual: bool = False, residual_scale: float = 1.0,
                 paint_condition: bool = False, area_condition: bool = False, facade_condition: bool = False,
                 num_train_timesteps: int = 1000, beta_schedule: str = "linear", beta_start: float = 1e-4,
                 beta_end: float = 0.02, prediction_type: str = "v_prediction", rescale_betas_zero_snr: bool = True) -> None:
        super().__init__()
        from diffusers import UNet2DConditionModel

        if first_guess_condition and space != "latent":
            raise ValueError("first_guess_condition needs a latent-space model (the guess lives in vae_path)")
        if first_guess_residual and not first_guess_condition:
            raise ValueError("first_guess_residual needs first_guess_condition (the guess it is the residual of)")
        if space not in ("pixel", "latent"):
            raise ValueError(f"space must be 'pixel' or 'latent', got {space!r}")
        if len(attention_levels) != len(block_out_channels):
            raise ValueError("attention_levels needs one flag per entry of block_out_channels")
        check_strength(first_guess_strength, "first_guess_strength")
        if prediction_type not in ("epsilon", "v_prediction", "sample"):
            raise ValueError("prediction_type must be epsilon, v_prediction or sample")
        heads = attention_heads if isinstance(attention_heads, int) else [int(v) for v in attention_heads]
        self.config = dict(
            space=space, image_channels=int(image_channels), sample_size=[int(v) for v in sample_size],
            block_out_channels=[int(v) for v in block_out_channels], layers_per_block=int(layers_per_block),
            attention_levels=[bool(v) for v in attention_levels], attention_heads=heads,
            norm_num_groups=int(norm_num_groups), token_dim=int(token_dim), use_linear_projection=bool(use_linear_projection),
            geometry_hidden=int(geometry_hidden), geometry_features=int(geometry_features),
            geometry_stride=int(geometry_stride), max_boxes=int(max_boxes),
            cross_view=bool(cross_view), global_condition=bool(global_condition), style_condition=bool(style_condition),
            num_inference_steps=int(num_inference_steps), guidance_scale=float(guidance_scale),
            guidance_rescale=float(guidance_rescale),
            vae_path=str(vae_path), vae_scale=float(vae_scale), vae_factor=int(vae_factor),
            geometry_decoder=bool(geometry_decoder), first_guess_strength=float(first_guess_strength),
            first_guess_condition=bool(first_guess_condition), first_guess_residual=bool(first_guess_residual),
            residual_scale=float(residual_scale), paint_condition=bool(paint_condition),
            area_condition=bool(area_condition), facade_condition=bool(facade_condition),
            num_train_timesteps=int(num_train_timesteps),
            beta_schedule=str(beta_schedule), beta_start=float(beta_start), beta_end=float(beta_end),
            prediction_type=str(prediction_type), rescale_betas_zero_snr=bool(rescale_betas_zero_snr))
        self.image_channels = int(image_channels)
        self.sample_size = tuple(self.config["sample_size"])
        self.stride = 2 ** (len(block_out_channels) - 1)
        self.geometry = GeometryEncoder(geometry_hidden, geometry_features, stride=int(geometry_stride),
                                        paint=bool(paint_condition), areas=bool(area_condition),
                                        facades=bool(facade_condition))
        self.tokens = ImageTokens(token_dim, TEXT_DIM, paint=bool(paint_condition))
        down = tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attention_levels)
        up = tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attention_levels))
        self.unet = UNet2DConditionModel(
            sample_size=self.sample_size, in_channels=self.extra_in_channels + self.image_channels,
            out_channels=self.image_channels, down_block_types=down, up_block_types=up,
            mid_block_type="UNetMidBlock2DCrossAttn", block_out_channels=tuple(block_out_channels),
            layers_per_block=layers_per_block, norm_num_groups=norm_num_groups, cross_attention_dim=token_dim,
            attention_head_dim=heads,  # diffusers' name for the number of heads (as Stable Diffusion 2.x uses it)
            use_linear_projection=use_linear_projection,
            **(dict(class_embed_type="projection", projection_class_embeddings_input_dim=GLOBAL_FEATURES)
               if global_condition else {}))
        if global_condition:  # starts as a no-op, so a pretrained UNet keeps its behaviour at initialisation
            nn.init.zeros_(self.unet.class_embedding.linear_2.weight)
            nn.init.zeros_(self.unet.class_embedding.linear_2.bias)
        if style_condition:  # zero: starts as a no-op, like the global condition
            self.style = nn.Linear(STYLE_FEATURES, TEXT_DIM, bias=False)
            nn.init.zeros_(self.style.weight)
        self._views = _Views()
        self._set_cross_view()

    @property
    def condition_size(self) -> tuple[int, int]:
        """(h, w) of the geometry maps the model reads: sample_size x geometry_stride."""
        s = self.config["geometry_stride"]
        return self.sample_size[0] * s, self.sample_size[1] * s

    @property
    def extra_in_channels(self) -> int:
        """Channels concatenated after the noisy input: geometry features, reference view, reference flag and,
        with first_guess_condition, the first-guess views."""
        guide = self.image_channels if self.config.get("first_guess_condition") else 0
        return self.config["geometry_features"] + self.image_channels + 1 + guide

    def _set_cross_view(self) -> None:
        if not self.config["cross_view"]:
            return
        procs = self.unet.attn_processors
        ring = RingAttnProcessor(self._views)
        self.unet.set_attn_processor({k: (ring if k.endswith("attn1.processor") else p) for k, p in procs.items()})

    # -- construction -----------------------------------------------------------------------------------
    @classmethod
    def from_preset(cls, name: str, unet_path: str | None = None, **overrides) -> "ImageDiffusion":
        """A preset's model; unet_path (paper preset) initialises the UNet from a local Stable Diffusion
        folder's "unet" subfolder (never downloaded)."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; use one of {', '.join(PRESETS)}")
        model = cls(**{**PRESETS[name], **overrides})
        if unet_path:
            model.load_stable_diffusion_unet(unet_path)
        return model

    def load_stable_diffusion_unet(self, path: str) -> None:
        """Copy a local Stable Diffusion UNet's weights (path/unet) into this UNet. Its first convolution
        keeps the pretrained filters on the noisy latent; the filters on the concatenated condition
        channels start at zero (as does the global-condition MLP), so at initialisation the model is the
        pretrained UNet except that its self-attention also sees the ring neighbours' tokens."""
        from diffusers import UNet2DConditionModel

        if not (Path(path) / "unet").is_dir():
            raise ValueError(f"{path}: no 'unet' subfolder (a local Stable Diffusion 2.1 folder is expected)")
        sd = UNet2DConditionModel.from_pretrained(path, subfolder="unet", local_files_only=True).state_dict()
        own = self.unet.state_dict()
        w = sd["conv_in.weight"]
        conv = torch.zeros_like(own["conv_in.weight"])
        conv[:, : w.shape[1]] = w
        sd["conv_in.weight"] = conv
        sd.update({k: v for k, v in own.items() if k.startswith("class_embedding.")})  # ours, zero-initialised
        mismatch = [k for k, v in sd.items() if k in own and own[k].shape != v.shape]
        if mismatch:
            raise ValueError(f"{path}: the UNet does not match the paper preset ({mismatch[:3]} ...)")
        self.unet.load_state_dict(sd, strict=True)

    @property
    def device(self) -> torch.device:
        return self.tokens.null.device

    def scheduler(self, kind: str = "unipc"):
        """A diffusers scheduler over this model's noise schedule: "ddpm" (training), "ddim" or "unipc"."""
        from .schedulers import make_scheduler

        return make_scheduler(kind, self.config)

    # -- the network ----------------------------------------------------------------------------------
    def forward(self, sample: torch.Tensor, timestep: torch.Tensor | int, cond: ImageCondition) -> torch.Tensor:
        """sample: noisy views float [B, V, C, h, w]; timestep: long [B] or a scalar; cond: B scenes of V
        views at (h, w). Returns the model output [B, V, C, h, w] (v, epsilon or x0 per prediction_type)."""
        b, v, c, h, w = sample.shape
        s = self.config["geometry_stride"]
        if (c != self.image_channels or (cond.batch_size, cond.num_views) != (b, v)
                or tuple(cond.semantic.shape[-2:]) != (h * s, w * s) or cond.image_size != (h, w)):
            raise ValueError(f"sample {list(sample.shape)} does not match the model ({self.image_channels} channels, "
                             f"geometry stride {s}) or the condition ({cond.batch_size} x {cond.num_views} views, "
                             f"geometry at {tuple(cond.semantic.shape[-2:])}, images at {cond.image_size})")
        if self.config["style_condition"]:
            cond = replace(cond, text=cond.text + self.style(cond.style.to(cond.text.dtype)))
        ref_on = cond.reference_mask.to(sample.dtype).view(b, 1, 1, 1, 1)
        ref = torch.cat([cond.reference * ref_on, ref_on.expand(b, v, 1, h, w)], 2)
        parts = [sample.flatten(0, 1), self.geometry(cond), ref.flatten(0, 1)]
        if self.config["first_guess_condition"]:
            geo_on = cond.geometry_mask.to(sample.dtype).view(b, 1, 1, 1, 1)
            parts.append((self._guide(cond, sample) * geo_on).flatten(0, 1))
        x = torch.cat(parts, 1)
        ph, pw = (-h) % self.stride, (-w) % self.stride
        if ph or pw:  # pad to a multiple of the UNet's total stride (cropped off after)
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        tokens, mask = self.tokens(cond)
        t = torch.as_tensor(timestep, device=sample.device).reshape(-1)
        t = t.expand(b) if t.numel() == 1 else t
        self._views.num_views = v
        glob = None
        if self.config["global_condition"]:
            text = (cond.text * cond.text_mask.to(cond.text.dtype)[:, None])[:, None].expand(-1, v, -1)
            glob = torch.cat([text, cond.camera, ref_on.view(b, 1, 1).expand(-1, v, 1)], -1).flatten(0, 1)
        out = self.unet(x, t.repeat_interleave(v), encoder_hidden_states=tokens, encoder_attention_mask=mask,
                        class_labels=glob).sample
        return out[..., :h, :w].reshape(b, v, c, h, w)

    def guided(self, cond: ImageCondition, guidance: float,
               rescale: float = 0.0) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """fn(x, t) -> model output with classifier-free guidance (one batched pass for both branches).
        rescale in [0, 1]: guidance rescale (Lin et al. 2024, Sec. 3.4, diffusers' rescale_noise_cfg) per
        view: the guided output is scaled to the conditional output's standard deviation and mixed in by
        this share, which undoes the over-exposure strong guidance gives under a zero-terminal-SNR schedule
        (days too bright, nights too dark)."""
        if not 0.0 <= rescale <= 1.0:
            raise ValueError(f"guidance rescale must lie in [0, 1], got {rescale}")
        if guidance == 1.0:
            return lambda x, t: self(x, t, cond)
        both = ImageCondition.cat([cond, cond.unconditional()])
        if rescale > 0:
            from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import rescale_noise_cfg

        def fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            out_c, out_u = self(torch.cat([x, x]), torch.cat([t, t]), both).chunk(2)
            out = out_u + guidance * (out_c - out_u)
            if rescale > 0:
                out = rescale_noise_cfg(out.flatten(0, 1), out_c.flatten(0, 1), rescale).view_as(out)
            return out

        return fn

    def residual(self, x: torch.Tensor, cond: ImageCondition) -> torch.Tensor:
        """Views float [B, V, C, h, w] in the model's image space -> what the UNet denoises: the views
        themselves, or with first_guess_residual (views - cond.guide) x residual_scale."""
        if not self.config["first_guess_residual"]:
            return x
        return (x - self._guide(cond, x)) * self.config["residual_scale"]

    def views(self, r: torch.Tensor, cond: ImageCondition) -> torch.Tensor:
        """The inverse of `residual`."""
        if not self.config["first_guess_residual"]:
            return r
        return r / self.config["residual_scale"] + self._guide(cond, r)

    def _guide(self, cond: ImageCondition, like: torch.Tensor) -> torch.Tensor:
        if cond.guide is None:
            raise ValueError("this model reads the first-guess views: give ImageCondition.guide "
                             "(ImageCodec.first_guess; MultiViewStage.condition adds it)")
        return cond.guide.to(like)

    @torch.no_grad()
    def sample(self, cond: ImageCondition, seed: int | torch.Generator = 0, guidance: float | None = None,
               steps: int | None = None, scheduler: str = "unipc",
               callback: Callable[[int, int], bool | None] | None = None,
               guidance_rescale: float | None = None, start: torch.Tensor | None = None,
               strength: float = 1.0) -> torch.Tensor:
        """Views float [B, V, C, h, w] in the model's image space for a condition batch. Deterministic in
        `seed`. guidance / steps / guidance_rescale (see `guided`) default to the config. callback(i, n)
        after each of the n steps run; returning False raises SamplingInterrupted.
        start float [B, V, C, h, w] (model space) and strength in (0, 1]: begin the reverse process at
        the share `strength` of the schedule from `start` noised to that level instead of from pure noise,
        and run only the remaining round(steps x strength) steps (Chung et al. 2022, "Come-closer-diffuse-
        faster": a good first estimate needs only the last part of the reverse process). strength 1 (or no
        start) is the plain sampler."""
        from diffusers.utils.torch_utils import randn_tensor

        check_strength(strength, "strength")
        cond = cond.to(self.device)
        was_training = self.training
        self.eval()
        try:
            gen = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(int(seed))
            guidance = self.config["guidance_scale"] if guidance is None else float(guidance)
            steps = self.config["num_inference_steps"] if steps is None else int(steps)
            sched = self.scheduler(scheduler)
            sched.set_timesteps(steps, device=self.device)
            rescale = self.config["guidance_rescale"] if guidance_rescale is None else float(guidance_rescale)
            fn = self.guided(cond, guidance, rescale)
            shape = (cond.batch_size, cond.num_views, self.image_channels, *cond.image_size)
            x = randn_tensor(shape, generator=gen, device=self.device) * sched.init_noise_sigma
            timesteps = sched.timesteps
            if start is not None and strength < 1.0:
                if tuple(start.shape) != shape:
                    raise ValueError(f"start {list(start.shape)} does not match the samples {list(shape)}")
                first = steps - max(1, round(steps * strength))
                timesteps = timesteps[first:]
                if hasattr(sched, "set_begin_index"):  # multistep solvers count their steps from here
                    sched.set_begin_index(first)
                start = self.residual(start.to(self.device, x.dtype), cond)
                x = sched.add_noise(start, x, timesteps[:1])
            n = len(timesteps)
            for i, t in enumerate(timesteps):
                out = fn(sched.scale_model_input(x, t), t.expand(x.shape[0]))
                x = sched.step(out, t, x).prev_sample
                if callback is not None and callback(i + 1, n) is False:
                    raise SamplingInterrupted(f"sampling interrupted after {i + 1} of {n} steps")
            return self.views(x, cond)
        finally:
            self.train(was_training)


class ImageCodec:
    """The model's image space: pixels in [-1, 1] (space "pixel"), or latents of a local AutoencoderKL x
    vae_scale (space "latent", loaded from config vae_path on first use). geometry_decoder: decode with
    the geometry-aware decoder (vae_path/geometry_decoder) when a condition is given; None: the model's
    config says; False: always the autoencoder's own decoder (the figure without it)."""

    def __init__(self, model: ImageDiffusion, geometry_decoder: bool | None = None) -> None:
        self.config = model.config
        self.size = model.sample_size
        self.condition_size = model.condition_size  # the denoiser's geometry size
        self.use_geometry_decoder = (self.config.get("geometry_decoder", False) if geometry_decoder is None
                                     else bool(geometry_decoder))
        if self.use_geometry_decoder and self.config["space"] != "latent":
            raise ValueError("geometry_decoder: a pixel-space model has no decoder")
        self._vae = None
        self._geometry_decoder = None
        self._first_guess = None

    @property
    def image_size(self) -> tuple[int, int]:
        """(h, w) of the RGB images the model space corresponds to."""
        f = 1 if self.config["space"] == "pixel" else self.config.get("vae_factor", 8)
        return self.size[0] * f, self.size[1] * f

    def vae_folder(self) -> Path:
        """The folder with vae/ (and the decoders beside it) of a latent model: config vae_path."""
        path = self.config["vae_path"]
        if not path:
            raise ValueError("latent-space model without a vae_path (a local folder with vae/)")
        if not Path(path).is_absolute() and not Path(path).exists() and (PROJECT_ROOT / path).exists():
            return PROJECT_ROOT / path
        return Path(path)

    def _autoencoder(self):
        if self._vae is None:
            from .image_autoencoder import downsample_factor, load_autoencoder

            path = self.vae_folder()
            self._vae = load_autoencoder(path).requires_grad_(False)  # frozen: decode_tensor passes gradients through
            if downsample_factor(self._vae) != self.image_size[0] // self.size[0]:
                raise ValueError(f"{path}/vae downsamples {downsample_factor(self._vae)}x, the model expects "
                                 f"vae_factor {self.config.get('vae_factor', 8)}")
        return self._vae

    @property
    def decoder_condition_size(self) -> tuple[int, int] | None:
        """(h, w) of the geometry the decoder in use was trained to read, where it differs from the
        denoiser's (an upscaling geometry decoder's); None otherwise."""
        if not self.use_geometry_decoder:
            return None
        size = self._decoder().config.get("condition_size")
        return tuple(size) if size is not None and tuple(size) != tuple(self.condition_size) else None

    @property
    def reads_facades(self) -> bool:
        """Whether the denoiser or the decoder in use reads the walls' colours (facade_condition)."""
        return bool(self.config.get("facade_condition")) or (
            self.use_geometry_decoder and bool(self._decoder().config.get("facade_condition")))

    def _decoder(self):
        if self._geometry_decoder is None:
            from .geometry_decoder import load_geometry_decoder

            self._geometry_decoder = load_geometry_decoder(self.vae_folder())
        return self._geometry_decoder

    @torch.no_grad()
    def first_guess(self, cond: ImageCondition, noise_seed: int = 0) -> torch.Tensor:
        """float [B, V, C, h, w] in the model space: the views of `cond` drawn from their geometry and
        style by the first-guess decoder (vae_path/first_guess, models.geometry_decoder.GeometryDecoder.draw;
        noise_seed seeds its injected noise, if it has any), encoded; where a sampler with a start strength
        below 1 begins (ImageDiffusion.sample)."""
        if self.config["space"] != "latent":
            raise ValueError("first_guess: a pixel-space model has no autoencoder folder to hold it")
        if self._first_guess is None:
            from .geometry_decoder import FIRST_GUESS, load_geometry_decoder

            self._first_guess = load_geometry_decoder(self.vae_folder(), FIRST_GUESS)
        device = cond.semantic.device
        rgb = self._first_guess.to(device).draw(cond, noise_seed).clamp(-1, 1)
        return self.encode_tensor(rgb).view(cond.batch_size, cond.num_views, -1, *cond.image_size)

    @torch.no_grad()
    def encode(self, images: np.ndarray) -> torch.Tensor:
        """uint8 [V, H, W, 3] (any size) -> float [V, C, h, w] in the model space."""
        x = torch.from_numpy(resize_images(images, self.image_size, smooth=False)).float().permute(0, 3, 1, 2) / 127.5 - 1
        return self.encode_tensor(x)

    @torch.no_grad()
    def encode_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """float [N, 3, H, W] in [-1, 1] at image_size -> float [N, C, h, w] in the model space."""
        if self.config["space"] == "pixel":
            return x
        vae = self._autoencoder().to(x.device)
        return vae.encode(x).latent_dist.mean * self.config["vae_scale"]

    def decode_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """float [N, C, h, w] in the model space -> float [N, 3, h * f, w * f] in [-1, 1]-ish (unclamped),
        through the autoencoder's own (frozen) decoder, differentiable in x: what a pixel-space loss on
        the model's estimates (train.image_diffusion --adv-weight) back-propagates through."""
        if self.config["space"] == "pixel":
            return x
        vae = self._autoencoder().to(x.device)
        return vae.decode(x / self.config["vae_scale"]).sample

    @torch.no_grad()
    def decode(self, x: torch.Tensor, cond: ImageCondition | None = None, noise_seed: int = 0) -> np.ndarray:
        """float [V, C, h, w] in the model space -> uint8 [V, H, W, 3] at image_size (twice it through an
        upscaling geometry decoder). cond: the views' condition (one scene of V views), read by the
        geometry-aware decoder when it is in use (its geometry best at decoder_condition_size); noise_seed:
        the seed of that decoder's injected noise (if it has any)."""
        if self.config["space"] == "latent":
            z = x / self.config["vae_scale"]
            if self.use_geometry_decoder and cond is not None:
                x = self._decoder().to(x.device)(z, cond.to(x.device), noise_seed=noise_seed)
            else:
                x = self._autoencoder().to(x.device).decode(z).sample
        return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def check_strength(value: float, name: str) -> float:
    """`value` as a float; ValueError naming `name` unless it is a share of the schedule in (0, 1] (where a
    sampler starts: 1 = from pure noise)."""
    if not 0.0 < value <= 1.0:
        raise ValueError(f"{name} must lie in (0, 1], got {value}")
    return float(value)


class SamplingInterrupted(RuntimeError):
    """Raised by ImageDiffusion.sample when the step callback returns False."""


def clean_estimate(out: torch.Tensor, xt: torch.Tensor, acp: torch.Tensor, prediction_type: str) -> torch.Tensor:
    """The clean sample x0 implied by a model output `out` for the noisy `xt` (same shapes) at cumulative
    alpha `acp` (a scalar or broadcastable tensor)."""
    if prediction_type == "sample":
        return out
    if prediction_type == "epsilon":
        return (xt - (1 - acp).sqrt() * out) / acp.sqrt().clamp(min=1e-8)
    return acp.sqrt() * xt - (1 - acp).sqrt() * out  # v-prediction


def diffusion_loss(model: ImageDiffusion, scheduler, x0: torch.Tensor, cond: ImageCondition, timesteps: torch.Tensor,
                   noise: torch.Tensor, snr_gamma: float = 0.0, estimate: bool = False, object_weight: float = 1.0
                   ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Min-SNR-weighted MSE of one batch: x0 float [B, V, C, h, w] in the model's image space, timesteps
    long [B] (one per scene: its views share the noise level), noise like x0. A first_guess_residual model
    learns the residual of x0 (ImageDiffusion.residual). estimate: also return the clean views the
    prediction implies (like x0, with its graph; what an adversarial loss judges). object_weight: cells
    covered by object boxes weigh this much more (image_condition.object_weights; a weighted mean, so the
    loss keeps its scale)."""
    b = x0.shape[0]
    x0 = model.residual(x0, cond)
    acp = scheduler.alphas_cumprod.to(x0.device)[timesteps].view(b, 1, 1, 1, 1)
    xt = acp.sqrt() * x0 + (1 - acp).sqrt() * noise
    pt = model.config["prediction_type"]
    target = noise if pt == "epsilon" else x0 if pt == "sample" else acp.sqrt() * noise - (1 - acp).sqrt() * x0
    pred = model(xt, timesteps, cond)
    err = (pred - target) ** 2
    if object_weight != 1.0:
        w = object_weights(cond, tuple(err.shape[-2:]), object_weight)
        per = (err * w).mean(dim=(1, 2, 3, 4)) / w.mean(dim=(1, 2, 3, 4))
    else:
        per = err.mean(dim=(1, 2, 3, 4))
    if snr_gamma > 0:
        a = acp.view(b)
        snr = a / (1 - a).clamp(min=1e-8)
        clipped = snr.clamp(max=snr_gamma)
        w = clipped / (snr + 1) if pt == "v_prediction" else clipped / snr.clamp(min=1e-8) if pt == "epsilon" else clipped
        # a zero-terminal-SNR schedule has snr = 0 at its last step, which Min-SNR would weight 0 (v) or
        # clamp to garbage (epsilon); that step decides the global brightness, so it keeps weight 1
        w = torch.where(snr > 0, w, torch.ones_like(w))
        per = per * w
    if estimate:
        return per.mean(), model.views(clean_estimate(pred, xt, acp, pt), cond)
    return per.mean()
