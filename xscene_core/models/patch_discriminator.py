"""A conditional PatchGAN discriminator for training image decoders with an adversarial loss
(train.geometry_decoder --adv-weight): it scores every ~40-pixel patch of an RGB view as a preview render
or a decoded one, given the view's semantic map and style, so it asks for detail that matches the layout
and the weather (sharp edges, rain streaks, lit windows) rather than any detail.

    disc = PatchDiscriminator()
    logits, features = disc(rgb, semantic, style)
    # rgb float [N, 3, H, W] in [-1, 1]; semantic long [N, h, w] Occ3D ids (any size, resized nearest);
    # style float [N, STYLE_FEATURES] -> logits float [N, 1, H / 8, W / 8], features: one map per layer

The pix2pix / latent-diffusion-autoencoder layout: 4 x 4 convolutions of stride 2, batch norm after all
but the first, leaky ReLU. (Spectral-normalised convolutions were tried first: their logits barely moved,
real and 4x-blurred views scored within 0.02 of each other after 500 steps, so the decoder learned nothing.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .image_condition import NUM_IDS, STYLE_FEATURES


class PatchDiscriminator(nn.Module):
    """width: channels of the first layer (doubled at each of the `layers` stride-2 convolutions, at most 8x)."""

    def __init__(self, width: int = 32, layers: int = 3) -> None:
        super().__init__()
        c_in = 3 + NUM_IDS + STYLE_FEATURES
        blocks, c = [], c_in
        for i in range(layers):
            out = width * min(2 ** i, 8)
            norm = nn.BatchNorm2d(out) if i > 0 else nn.Identity()
            blocks.append(nn.Sequential(nn.Conv2d(c, out, 4, stride=2, padding=1, bias=i == 0), norm))
            c = out
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Conv2d(c, 1, 3, padding=1)

    def forward(self, rgb: torch.Tensor, semantic: torch.Tensor, style: torch.Tensor
                ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """See the module docstring; features: each layer's activations, for feature matching."""
        n, _, h, w = rgb.shape
        if semantic.shape[0] != n or style.shape[0] != n:
            raise ValueError(f"PatchDiscriminator: {n} images, {semantic.shape[0]} semantic maps, {style.shape[0]} styles")
        sem = F.interpolate(semantic[:, None].float(), size=(h, w), mode="nearest")[:, 0].long()
        onehot = F.one_hot(sem.clamp(0, NUM_IDS - 1), NUM_IDS).permute(0, 3, 1, 2).to(rgb.dtype)
        x = torch.cat([rgb, onehot, style.to(rgb.dtype)[:, :, None, None].expand(-1, -1, h, w)], 1)
        features = []
        for conv in self.blocks:
            x = F.leaky_relu(conv(x), 0.2)
            features.append(x)
        return self.head(x), features
