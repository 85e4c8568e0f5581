"""Image-space finishing: rain and snow in front of the scene, then tone mapping to sRGB."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .style import Lighting, Style


def _weather_overlay(image: torch.Tensor, light: Lighting, style: Style, seed: int) -> torch.Tensor:
    """Rain streaks or snow flakes in front of the scene (deterministic per seed and view)."""
    V, H, W, _ = image.shape
    if style.weather not in ("rainy", "snowy"):
        return image
    for v in range(V):
        g = torch.Generator().manual_seed(seed * 1009 + v * 7 + 3)
        if style.weather == "rainy":
            n = int(H * W / 180)
            x0 = torch.rand(n, generator=g) * W
            y0 = torch.rand(n, generator=g) * H
            length = 6 + torch.rand(n, generator=g) * 14
            steps = torch.linspace(0, 1, 16)
            xs = (x0[:, None] + steps[None] * length[:, None] * 0.18).round().long().clamp(0, W - 1)
            ys = (y0[:, None] + steps[None] * length[:, None]).round().long().clamp(0, H - 1)
            mask = torch.zeros(H, W)
            mask.index_put_((ys.reshape(-1), xs.reshape(-1)), torch.full((xs.numel(),), 0.12), accumulate=True)
            mask = mask.clamp(max=0.35)
            streak_col = light.horizon * 1.6 + 0.02
            image[v] = image[v] * (1 - mask[..., None]) + streak_col * mask[..., None]
        else:
            n = int(H * W / 90)
            x = torch.rand(n, generator=g) * W
            y = torch.rand(n, generator=g) * H
            size = torch.rand(n, generator=g)
            mask = torch.zeros(H, W)
            mask.index_put_((y.long().clamp(0, H - 1), x.long().clamp(0, W - 1)), 0.5 + 0.5 * size, accumulate=True)
            big = (size > 0.8)
            mask = mask + F.max_pool2d(torch.zeros(H, W).index_put_((y[big].long().clamp(0, H - 1), x[big].long().clamp(0, W - 1)), torch.ones(int(big.sum())))[None, None], 3, 1, 1)[0, 0] * 0.6
            mask = F.avg_pool2d(mask[None, None], 3, 1, 1)[0, 0] * 2.0
            flake = light.horizon * 1.4 + 0.15
            image[v] = image[v] * (1 - mask.clamp(0, 0.9)[..., None]) + flake * mask.clamp(0, 0.9)[..., None]
    return image


def _tonemap(image: torch.Tensor, light: Lighting, seed: int) -> np.ndarray:
    """Linear radiance float [V, H, W, 3] -> uint8 sRGB: exposure, a filmic curve, slight vignette and grain."""
    V, H, W, _ = image.shape
    exposure = 1.3 if light.night else 0.62
    x = image * exposure
    # Filmic (ACES-like fit) keeps highlights from clipping harshly.
    x = (x * (2.51 * x + 0.03)) / (x * (2.43 * x + 0.59) + 0.14)
    ii = torch.linspace(-1, 1, H)[:, None]
    jj = torch.linspace(-1, 1, W)[None, :]
    vign = 1 - 0.18 * (ii ** 2 * 0.8 + jj ** 2 * 0.5)
    x = x * vign[None, ..., None]
    srgb = torch.where(x <= 0.0031308, 12.92 * x, 1.055 * x.clamp(min=0.0031308) ** (1 / 2.4) - 0.055)
    g = torch.Generator().manual_seed(seed * 31 + 5)
    srgb = srgb + (torch.rand(V, H, W, 1, generator=g) - 0.5) * 0.02
    return (srgb.clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy()
