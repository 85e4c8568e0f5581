"""Train the small image autoencoder (models.image_autoencoder) of the latent image diffusion preset:

    python -m xscene_core.data.image_dataset --split train --worlds 35 --size 128 224 --cond-size 32 56
    python -m xscene_core.data.image_dataset --split val --worlds 2 --size 128 224 --cond-size 32 56
    python -m xscene_core.train.image_autoencoder --out runs/image_ae [--max-minutes M] [--resume]

Data: the preview views (every look) and the reference views of an xscene_core.data.image_dataset cache
at the autoencoder's image size (train worlds, including files a cache still being built finishes while
the run goes on, taken at each evaluation; the validation figure on a few val worlds). Each step: a
batch of random views, randomly mirrored left-right, cropped to --crop-h x --crop-w; the loss is L1 + MSE of the reconstruction from the
mean latent plus kl_weight x KL of the latent distribution (kept small: the diffusion model needs a
latent that decodes sharply, not a Gaussian one). The loop (AdamW, warm-up + cosine, EMA, checkpoints,
--resume, --max-minutes) is train.ema_training's; OUT/best/ and OUT/final/ hold EMA weights as diffusers
folders. Ship one with `cp -r OUT/best checkpoints/image_autoencoder/vae`.

`--init FOLDER --train decoder` fine-tunes the decoder of an existing autoencoder (FOLDER/vae) with its
encoder frozen: the latent space stays the same, so a diffusion model trained on it keeps working while
the decoded views get better.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..data.image_dataset import ImageDataset, add_styles_arg, cache_dir, cache_files
from ..models.image_autoencoder import PRESETS, build_autoencoder, downsample_factor, load_autoencoder
from .common import RunLog, add_config_args, apply_config_args
from .ema_training import EmaTraining


@dataclass
class TrainConfig:
    steps: int = 6000
    batch: int = 8
    """views per step"""
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup: int = 100
    min_lr_ratio: float = 0.05
    grad_clip: float = 1.0
    ema_decay: float = 0.99
    kl_weight: float = 1e-6
    crop_h: int = 64
    crop_w: int = 112
    """training crop (pixels, multiples of the downsampling factor; 0 = whole views): the autoencoder is a
    ConvNet, so crops teach it the same local code at a quarter of the cost of 128 x 224 views"""
    seed: int = 0
    log_every: int = 10
    eval_every: int = 250
    ckpt_every: int = 100
    val_views: int = 24


def all_views(data: ImageDataset) -> np.ndarray:
    """uint8 [N, H, W, 3]: every preview look and reference view of every scene."""
    return np.concatenate([np.concatenate([s.preview.reshape(-1, *s.preview.shape[-3:]),
                                           s.reference.reshape(-1, *s.reference.shape[-3:])]) for s in data.samples])


def to_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).float().permute(0, 3, 1, 2) / 127.5 - 1.0


def reconstruction_loss(ae, x: torch.Tensor, kl_weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, L1) of a batch x float [N, 3, H, W] in [-1, 1], decoded from the mean latent."""
    dist = ae.encode(x).latent_dist
    y = ae.decode(dist.mean).sample
    l1 = (y - x).abs().mean()
    return l1 + F.mse_loss(y, x) + kl_weight * dist.kl().mean() / x[0].numel(), l1


TRAINED_PARTS = ("all", "decoder")


def freeze(ae, trained: str) -> None:
    """Leave only the `trained` part of the AutoencoderKL trainable ("decoder": the decoder and the
    post-quantisation conv; the encoder and quant_conv, which define the latents, are frozen)."""
    if trained not in TRAINED_PARTS:
        raise ValueError(f"trained must be one of {TRAINED_PARTS}, got {trained!r}")
    for name, p in ae.named_parameters():
        p.requires_grad_(trained == "all" or name.startswith(("decoder.", "post_quant_conv.")))


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of images in [-1, 1]."""
    mse = float(((a.clamp(-1, 1) - b) ** 2).mean()) / 4.0  # to the [0, 1] range
    return 10 * math.log10(1.0 / max(mse, 1e-12))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    ap.add_argument("--cache", type=Path, default=Path("runs/image_cache"), help="xscene_core.data.image_dataset cache")
    add_styles_arg(ap)
    ap.add_argument("--size", type=int, nargs=2, default=(128, 224), metavar=("H", "W"), help="image size")
    ap.add_argument("--cond-size", type=int, nargs=2, default=None, metavar=("H", "W"),
                    help="condition size of the cache to read (default: the latent size; the images are the same)")
    ap.add_argument("--val-worlds", type=int, default=2)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--max-minutes", type=float, default=None, help="wall-time budget over all resumed runs")
    ap.add_argument("--init", type=Path, default=None, help="start from the autoencoder in INIT/vae")
    ap.add_argument("--train", choices=TRAINED_PARTS, default="all",
                    help="what is trained: everything, or the decoder only (the encoder, hence the latent space, "
                         "stays as it is; needs --init)")
    add_config_args(ap, TrainConfig)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    log = RunLog(args.out)
    cfg = apply_config_args(TrainConfig(), args)
    from diffusers import AutoencoderKL

    if args.train == "decoder" and args.init is None and not args.resume:
        sys.exit("--train decoder fine-tunes an existing autoencoder: give --init FOLDER (with vae/)")
    device = torch.device(args.device)

    def prepare(ae) -> None:
        freeze(ae, args.train)

    if args.resume and (args.out / "checkpoint").exists():
        run = EmaTraining.resume(args.out, log, cfg, AutoencoderKL, device, args.max_minutes, prepare)
    else:
        torch.manual_seed(cfg.seed)
        ae = load_autoencoder(args.init).train() if args.init is not None else build_autoencoder(args.preset)
        prepare(ae)
        run = EmaTraining(args.out, log, cfg, ae, device, args.max_minutes)
    ae = run.model
    f = downsample_factor(ae)
    size = tuple(args.size)
    # the cache of the latent diffusion preset that this autoencoder serves (its conditions are not read)
    cond = tuple(args.cond_size) if args.cond_size else (size[0] // f, size[1] // f)
    paths = {split: cache_files(cache_dir(args.cache, size, split, cond, args.styles)) for split in ("train", "val")}
    val_worlds = sorted({p.name.split("_")[0] for p in paths["val"]})[: args.val_worlds]
    paths["val"] = [p for p in paths["val"] if p.name.split("_")[0] in val_worlds]
    if not paths["train"] or not paths["val"]:
        sys.exit(f"no cached samples under {args.cache} for images {size}, conditions {cond}: run "
                 f"xscene_core.data.image_dataset --size {size[0]} {size[1]} --cond-size {cond[0]} {cond[1]} --styles {args.styles} first")
    train_dir = cache_dir(args.cache, size, "train", cond, args.styles)
    views = {"train": all_views(ImageDataset.load(paths["train"]))}
    val = all_views(ImageDataset.load(paths["val"]))
    vpick = np.random.default_rng(12345).choice(len(val), size=min(cfg.val_views, len(val)), replace=False)
    val_x = to_tensor(val[np.sort(vpick)]).to(device)
    log({"event": "start", "step": run.step, "train_views": len(views["train"]), "val_views": len(val_x), "factor": f,
         "params": sum(p.numel() for p in ae.parameters()), "threads": torch.get_num_threads(), "init": str(args.init),
         "trained": args.train, "trained_params": sum(p.numel() for p in ae.parameters() if p.requires_grad),
         "config": asdict(cfg), "model": {k: v for k, v in ae.config.items() if not k.startswith("_")}})

    def loss_at(step: int) -> torch.Tensor:
        rng = np.random.default_rng([cfg.seed, step])
        train = views["train"]
        x = to_tensor(train[rng.integers(len(train), size=cfg.batch)])
        flip = torch.from_numpy(rng.random(cfg.batch) < 0.5)
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        if cfg.crop_h and cfg.crop_w:  # one random crop per batch, on the latent grid
            ch, cw = min(cfg.crop_h, x.shape[-2]), min(cfg.crop_w, x.shape[-1])
            i = int(rng.integers((x.shape[-2] - ch) // f + 1)) * f
            j = int(rng.integers((x.shape[-1] - cw) // f + 1)) * f
            x = x[..., i:i + ch, j:j + cw]
        x = x.to(device)
        return reconstruction_loss(ae, x, cfg.kl_weight)[0]

    def evaluate() -> dict:
        total, l1, out = 0.0, 0.0, []
        for s in range(0, len(val_x), cfg.batch):
            x = val_x[s:s + cfg.batch]
            loss, err = reconstruction_loss(ae, x, cfg.kl_weight)
            total, l1 = total + float(loss) * len(x), l1 + float(err) * len(x)
            out.append(ae.decode(ae.encode(x).latent_dist.mean).sample)
        return {"val_loss": total / len(val_x), "val_l1": l1 / len(val_x), "val_psnr": psnr(torch.cat(out), val_x)}

    def take_new_samples(step: int) -> None:
        new = sorted(set(cache_files(train_dir)) - set(paths["train"]))
        if new:  # a cache still being built in the background: take what is finished
            views["train"] = np.concatenate([views["train"], all_views(ImageDataset.load(new))])
            paths["train"].extend(new)
            log({"step": step, "train_views": len(views["train"])})

    run.train(loss_at, evaluate, take_new_samples)


if __name__ == "__main__":
    sys.exit(main())
