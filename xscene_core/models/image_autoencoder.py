"""A small image autoencoder (diffusers' AutoencoderKL) trained here, for a latent-space image diffusion
model that a CPU can train: 4x downsampling, 4 latent channels (the Stable Diffusion autoencoder the paper
preset uses downsamples 8x and has 83 M parameters).

It is saved as a diffusers folder inside a `vae/` subfolder, the layout ImageCodec reads for any latent
model (`vae_path` = the parent folder):

    ae = build_autoencoder("tiny")
    ae.save_pretrained("checkpoints/image_autoencoder/vae")
    z = ae.encode(x).latent_dist.mean          # x float [N, 3, H, W] in [-1, 1] -> [N, 4, H/4, W/4]
    y = ae.decode(z).sample                    # -> [N, 3, H, W]
"""

from __future__ import annotations

from pathlib import Path

# The one place that holds each preset's numbers.
PRESETS: dict[str, dict] = {
    # 3 levels (2 downsamplings: 128 x 224 images -> 32 x 56 latents), one ResNet layer per level
    "tiny": dict(block_out_channels=(32, 64, 64), layers_per_block=1, latent_channels=4, norm_num_groups=16),
}


def build_autoencoder(preset: str = "tiny", **overrides):
    """A fresh AutoencoderKL of a preset (RGB in and out)."""
    from diffusers import AutoencoderKL

    if preset not in PRESETS:
        raise ValueError(f"unknown autoencoder preset {preset!r}; use one of {', '.join(PRESETS)}")
    cfg = {**PRESETS[preset], **overrides}
    n = len(cfg["block_out_channels"])
    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * n,
                         up_block_types=("UpDecoderBlock2D",) * n, **cfg)


def downsample_factor(autoencoder) -> int:
    """Image size / latent size of an AutoencoderKL (each level after the first halves the image)."""
    return 2 ** (len(autoencoder.config.block_out_channels) - 1)


def load_autoencoder(path: str | Path):
    """The AutoencoderKL in PATH/vae (local files only), in eval mode; ValueError when there is none."""
    from diffusers import AutoencoderKL

    if not (Path(path) / "vae").is_dir():
        raise ValueError(f"{path}: no vae/ subfolder with an AutoencoderKL (a Stable Diffusion folder, or one "
                         f"written by xscene_core.train.image_autoencoder)")
    return AutoencoderKL.from_pretrained(path, subfolder="vae", local_files_only=True).eval()
