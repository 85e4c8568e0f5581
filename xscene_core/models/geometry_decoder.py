"""A latent-to-RGB decoder that also reads the view's geometry: the decoder of the small image autoencoder
(models.image_autoencoder) with the geometry encoder of the image diffusion model (the semantic one-hot,
depth, perspective maps and object positional embedding of an ImageCondition) added after its input
convolution and after every up block.

Why: a 32 x 56 latent carries colour and light well, but the edges of a building, a car or a lane line
fall between latent cells, and the denoiser's latents are softer than the encoder's. The geometry is
known at the condition's finer size, so the decoder draws the edges from it and takes the appearance
(colours, time of day, weather) from the latent. The injections start at zero, so a fresh
GeometryDecoder decodes exactly as the autoencoder it was made from; the encoder, hence the latent space
that the diffusion model was trained in, is not touched.

    dec = GeometryDecoder.from_autoencoder(load_autoencoder("checkpoints/image_autoencoder"))
    rgb = dec(z, cond)      # z float [B*V, 4, h, w] (unscaled latents), cond: ImageCondition -> [B*V, 3, 4h, 4w]
    dec.save_pretrained("checkpoints/image_autoencoder/geometry_decoder")

Three optional inputs (zero-initialised too, so a decoder gains them without changing its output): the
condition's style (time of day, weather: `style_condition`), which the latents carry only as a tint, and
per-pixel noise after every up block (`noise_injection`, as StyleGAN injects it): the random detail a
deterministic decoder would otherwise average away (rain streaks, texture), drawn from `noise_seed` so a
decode is reproducible; and the boxes' paint colours (`paint_condition`). The first two matter when the
decoder is trained with an adversary (train.geometry_decoder --adv-weight), which rewards detail that an
L1 / MSE loss blurs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from .image_condition import STYLE_FEATURES, GeometryEncoder, ImageCondition

SUBFOLDER = "geometry_decoder"  # inside an autoencoder folder, beside vae/
FIRST_GUESS = "first_guess"  # a GeometryDecoder trained on blank latents (draw), beside it


def resize_features(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Features float [N, C, h, w] -> [N, C, *size]: area-averaged down, bilinear up."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if size[0] <= x.shape[-2] and size[1] <= x.shape[-1]:
        return F.interpolate(x, size=size, mode="area")
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class GeometryDecoder(ModelMixin, ConfigMixin):
    """AutoencoderKL decoder (+ post-quantisation conv) with additive geometry features.

    latent_channels, block_out_channels, layers_per_block, norm_num_groups, mid_block_add_attention: the
    autoencoder's (see from_autoencoder); geometry_hidden / geometry_features: width of the geometry
    encoder (stride 1: its features have the condition's size and are resized to each level);
    style_condition: add a linear map of the condition's style to the geometry features; noise_injection:
    add per-channel scaled unit noise after each up block; paint_condition: the geometry encoder also reads
    the boxes' paint map (image_condition.paint_map), so a car's body takes its colour at the condition's
    size rather than the latents' blur of it; area_condition: it also reads the marks of the layout
    (crossings, road paint, light fixtures and windows, ImageCondition.areas), where the zebra, lane marks, lights and windows are drawn;
    facade_condition (needs paint_condition): the paint map also holds the walls' colours
    (ImageCondition.facade_paint); upscale 2:
    a detail head draws the views at twice the autoencoder's size (DetailHead); condition_size (h, w): the
    geometry size the decoder was trained to read (None: the denoiser's; a decoder with upscale 2 reads
    geometry finer than the denoiser's);
    coarse_base (upscale 2): given geometry at condition_size, the decoder below the head reads it
    coarsened by `upscale` (ImageCondition.coarsened: the size the decoder it was extended from read) and
    only the head reads it at condition_size, so a frozen base decodes as its source did."""

    @register_to_config
    def __init__(self, latent_channels: int = 4, block_out_channels: Sequence[int] = (32, 64, 64),
                 layers_per_block: int = 1, norm_num_groups: int = 16, mid_block_add_attention: bool = True,
                 geometry_hidden: int = 32, geometry_features: int = 32, style_condition: bool = False,
                 noise_injection: bool = False, paint_condition: bool = False, upscale: int = 1,
                 condition_size: Sequence[int] | None = None, coarse_base: bool = False,
                 area_condition: bool = False, facade_condition: bool = False) -> None:
        super().__init__()
        from diffusers.models.autoencoders.vae import Decoder

        n = len(block_out_channels)
        self.post_quant_conv = nn.Conv2d(latent_channels, latent_channels, 1)
        self.decoder = Decoder(in_channels=latent_channels, out_channels=3, up_block_types=("UpDecoderBlock2D",) * n,
                               block_out_channels=tuple(block_out_channels), layers_per_block=layers_per_block,
                               norm_num_groups=norm_num_groups, act_fn="silu",
                               mid_block_add_attention=mid_block_add_attention)
        self.geometry = GeometryEncoder(geometry_hidden, geometry_features, stride=1, paint=paint_condition,
                                        areas=area_condition, facades=facade_condition)
        widths = list(reversed(block_out_channels))
        # after conv_in (the latent size), then after each up block (its output width)
        self.inject = nn.ModuleList(nn.Conv2d(geometry_features, c, 1) for c in [widths[0]] + widths)
        for conv in self.inject:  # start as the plain decoder
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)
        self.style = nn.Linear(STYLE_FEATURES, geometry_features, bias=False) if style_condition else None
        if self.style is not None:
            nn.init.zeros_(self.style.weight)
        self.noise_scale = (nn.ParameterList(nn.Parameter(torch.zeros(c)) for c in widths) if noise_injection
                            else None)
        if upscale not in (1, 2):
            raise ValueError(f"GeometryDecoder: upscale must be 1 or 2, got {upscale}")
        self.detail = DetailHead(widths[-1], geometry_features, norm_num_groups) if upscale == 2 else None

    @classmethod
    def from_autoencoder(cls, autoencoder, **geometry) -> "GeometryDecoder":
        """A GeometryDecoder with the decoder weights of an AutoencoderKL (geometry_hidden / _features as
        keywords); it decodes exactly as the autoencoder until trained."""
        c = autoencoder.config
        if autoencoder.post_quant_conv is None or tuple(c.up_block_types) != ("UpDecoderBlock2D",) * len(c.up_block_types):
            raise ValueError("GeometryDecoder.from_autoencoder: needs an AutoencoderKL with UpDecoderBlock2D blocks and a "
                             "post_quant_conv (as models.image_autoencoder builds them)")
        dec = cls(latent_channels=c.latent_channels, block_out_channels=tuple(c.block_out_channels),
                  layers_per_block=c.layers_per_block, norm_num_groups=c.norm_num_groups,
                  mid_block_add_attention=c.mid_block_add_attention, **geometry)
        dec.decoder.load_state_dict(autoencoder.decoder.state_dict())
        dec.post_quant_conv.load_state_dict(autoencoder.post_quant_conv.state_dict())
        return dec

    @classmethod
    def from_pretrained(cls, *args, **kwargs) -> "GeometryDecoder":
        """diffusers' loader, through load_state_dict (low_cpu_mem_usage off), whose hook widens a geometry
        input saved with fewer channels (GeometryEncoder: the area input from before the road paint)."""
        kwargs.setdefault("low_cpu_mem_usage", False)
        return super().from_pretrained(*args, **kwargs)

    @classmethod
    def extended(cls, decoder: "GeometryDecoder", **options) -> "GeometryDecoder":
        """A copy of a trained decoder with options changed (style_condition, noise_injection,
        paint_condition, area_condition, facade_condition, upscale, condition_size): its weights, and the new parts at zero, so
        it decodes exactly as `decoder` until trained (with upscale 2: as `decoder`, bilinearly enlarged)."""
        out = cls(**{**{k: v for k, v in decoder.config.items() if not k.startswith("_")}, **options})
        missing, unexpected = out.load_state_dict(decoder.state_dict(), strict=False)
        new = ("style.", "noise_scale.", "geometry.paint_in.", "geometry.area_in.", "detail.")
        if unexpected or any(not k.startswith(new) for k in missing):
            raise ValueError(f"GeometryDecoder.extended: weights do not match (missing {missing}, unexpected {unexpected})")
        return out

    def forward(self, z: torch.Tensor, cond: ImageCondition, noise_seed: int = 0) -> torch.Tensor:
        """z float [B*V, C, h, w] (unscaled latents, as AutoencoderKL.decode takes them), cond: B scenes of V
        views with their geometry at any size (best: config condition_size) -> RGB float [B*V, 3, H, W] in
        about [-1, 1], H = h x 4 x upscale for the tiny autoencoder. noise_seed: the injected noise's seed
        (noise_injection only; the same seed, the same output)."""
        if z.shape[0] != cond.batch_size * cond.num_views:
            raise ValueError(f"GeometryDecoder: {z.shape[0]} latents for {cond.batch_size} x {cond.num_views} views")
        g = fine = self.geometry(cond).to(z.dtype)
        size = self.config.condition_size
        if self.config.coarse_base and size is not None and tuple(cond.semantic.shape[-2:]) == tuple(size):
            g = self.geometry(cond.coarsened(self.config.upscale)).to(z.dtype)
        if self.style is not None:
            style = self.style(cond.view_styles().to(z.dtype))[:, :, None, None]
            g, fine = g + style, fine + style
        gen = torch.Generator().manual_seed(int(noise_seed)) if self.noise_scale is not None else None
        d = self.decoder
        x = d.conv_in(self.post_quant_conv(z))
        x = x + self.inject[0](resize_features(g, x.shape[-2:]))
        x = d.mid_block(x, None)
        for k, (block, inject) in enumerate(zip(d.up_blocks, self.inject[1:])):
            x = block(x, None)
            x = x + inject(resize_features(g, x.shape[-2:]))
            if self.noise_scale is not None:
                noise = torch.randn((x.shape[0], 1, *x.shape[-2:]), generator=gen).to(x)
                x = x + self.noise_scale[k].view(1, -1, 1, 1) * noise
        y = d.conv_out(d.conv_act(d.conv_norm_out(x)))
        if self.detail is not None:
            y = self.detail(x, y, fine)
        return y

    def draw(self, cond: ImageCondition, noise_seed: int = 0) -> torch.Tensor:
        """The views of `cond` (B scenes of V views; latent grid cond.image_size) from their geometry and
        style alone: the decoder on all-zero latents -> RGB float [B*V, 3, H, W] in about [-1, 1]. What a
        decoder trained with train.geometry_decoder --p-blank 1 (a geometry-to-image regression, or with
        --noise-injection and --adv-weight a conditional GAN) is for. noise_seed: as in forward."""
        z = torch.zeros(cond.batch_size * cond.num_views, self.config.latent_channels, *cond.image_size,
                        device=cond.semantic.device)
        return self(z, cond, noise_seed=noise_seed)


class DetailHead(nn.Module):
    """Twice the decoder's resolution: the decoder's RGB enlarged bilinearly, plus a residual drawn from its
    last features (nearest-enlarged) and the geometry features at the new size, through one ResNet block.
    The residual's output convolution starts at zero, so a new head gives the bilinear enlargement; trained
    on views rendered at twice the size, it draws the edges and thin lines the geometry knows."""

    def __init__(self, width: int, geometry_features: int, norm_num_groups: int) -> None:
        super().__init__()
        from diffusers.models.resnet import ResnetBlock2D

        self.inject = nn.Conv2d(geometry_features, width, 1)
        self.block = ResnetBlock2D(in_channels=width, out_channels=width, temb_channels=None, groups=norm_num_groups)
        self.norm = nn.GroupNorm(norm_num_groups, width, eps=1e-6)
        self.out = nn.Conv2d(width, 3, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, features: torch.Tensor, rgb: torch.Tensor, geometry: torch.Tensor) -> torch.Tensor:
        """features float [N, width, H, W] (the decoder's last), rgb float [N, 3, H, W] (its output),
        geometry float [N, geometry_features, h, w] (any size) -> RGB float [N, 3, 2H, 2W]."""
        size = (2 * rgb.shape[-2], 2 * rgb.shape[-1])
        x = F.interpolate(features, size=size, mode="nearest") + self.inject(resize_features(geometry, size))
        x = self.block(x, None)
        base = F.interpolate(rgb, size=size, mode="bilinear", align_corners=False)
        return base + self.out(F.silu(self.norm(x)))


def load_geometry_decoder(path: str | Path, subfolder: str = SUBFOLDER) -> GeometryDecoder:
    """The GeometryDecoder in PATH/subfolder (local files only: config.json + safetensors), in eval mode;
    ValueError when there is none."""
    folder = Path(path) / subfolder
    if not (folder / "config.json").is_file():
        raise ValueError(f"{path}: no {subfolder}/ subfolder with a GeometryDecoder (train one with "
                         f"python -m xscene_core.train.geometry_decoder)")
    return GeometryDecoder.from_pretrained(folder, local_files_only=True).eval()
