"""Train the layout-conditioned triplane latent diffusion model:

    python -m xscene_core.train.occupancy_diffusion --preset tiny --vae checkpoints/triplane_vae --worlds 60 \\
        --out runs/occdiff [--steps N] [--resume] [--max-minutes M]
    python -m xscene_core.train.occupancy_diffusion --preset paper --vae VAE_DIR --data DATASET_DIR --out runs/occdiff_paper

Data: chunks of the first N `train` worlds of the synthetic world (--per-world locations each, cycling
through the environments) or a dataset folder (--data, xscene_core.data.build layout), encoded once by
the frozen VAE into rolled-out latents (with x / y mirrored copies) and cached with their BEV maps, boxes
and caption embeddings (xscene_core.data.latent_dataset; keyed by the VAE's hash and WORLD_VERSION).
Validation uses `val` worlds; held-out `test` worlds are left to xscene_core.eval.controllability.

Each step: a batch of random chunks and mirrors; latents are scaled by the model's latent_scale (1 / std
of the training latents, set at the start and stored in the model config); DDPM forward noise at uniform
timesteps; the BEV map, the boxes and the caption are each dropped per sample (--drop-bev / --drop-boxes /
--drop-text) so the model also learns the unconditional branch of classifier-free guidance; the loss is
the MSE to the prediction target (v by default) over the plane cells (the rolled-out map's padded
corner excluded), min-SNR-gamma weighted, and --box-weight raises it under object footprints (by more for
rare classes with --class-balance). --init DIR starts a new phase from a trained model. The loop
(AdamW, warm-up then cosine decay, EMA, checkpoints) is train.ema_training's.

Every --log-every steps a line goes to OUT/log.jsonl and stdout; every --eval-every steps the validation
loss of the EMA weights on fixed (chunk, timestep, noise) triples. OUT/checkpoint/ (weights, EMA,
optimizer state, step; safetensors + JSON) is written every --ckpt-every steps and on SIGINT / SIGTERM;
--resume continues from it. --max-minutes is a wall-time budget over all resumed runs (the cosine schedule
then follows the time spent). OUT/best/ holds the EMA weights with the best validation loss, OUT/final/
the last EMA weights (save_pretrained folders).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..data.latent_dataset import FLIPS, LatentDataset, load_split, vae_hash
from ..models.condition_encoders import OccupancyCondition
from ..models.occupancy_diffusion import PRESETS, OccupancyDiffusion
from ..ops.condition_maps import AREA_CHANNELS, BEV_CHANNELS
from ..types.scene import ENVIRONMENTS
from .common import RunLog, add_config_args, apply_config_args
from .ema_training import EmaTraining


@dataclass
class TrainConfig:
    """Training settings (the model's own settings are its preset)."""

    steps: int = 3000
    """optimiser steps in all (the cosine schedule spans them)"""
    batch: int = 8
    """chunks per step"""
    lr: float = 5e-4
    """peak learning rate"""
    weight_decay: float = 0.01
    warmup: int = 100
    """linear warm-up steps"""
    min_lr_ratio: float = 0.05
    """final learning rate as a share of the peak"""
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    """EMA decay (warmed up as min(decay, (1 + step) / (10 + step)))"""
    drop_bev: float = 0.15
    """probability of dropping the BEV map of a sample"""
    drop_boxes: float = 0.15
    """probability of dropping the boxes of a sample"""
    drop_text: float = 0.15
    """probability of dropping the caption of a sample"""
    snr_gamma: float = 5.0
    """min-SNR loss weighting (0 disables)"""
    box_weight: float = 0.0
    """extra loss weight on the xy-plane cells under an object's footprint (1 + box_weight there): objects
    cover a few per cent of the map, and thin ones are otherwise the last thing the model learns"""
    class_balance: float = 0.0
    """exponent of the per-class factor on box_weight, (footprint cells of the commonest object class /
    those of the class) ** class_balance over the training set: rare classes (bicycles cover 1 % of the
    cells cars do) get more of the extra weight; 0 gives every class the same"""
    class_weight_max: float = 10.0
    """cap of that per-class factor (a class seen a handful of times should not dominate the loss)"""
    flips: bool = True
    """train on the x / y mirrored copies too"""
    seed: int = 0
    log_every: int = 10
    eval_every: int = 250
    ckpt_every: int = 100
    val_samples: int = 24
    """(chunk, timestep, noise) triples of the validation loss"""


TRAIN_PRESETS: dict[str, dict] = {
    "tiny": dict(steps=3000, batch=8, lr=5e-4, eval_every=250, ema_decay=0.995),
    "paper": dict(steps=200000, batch=32, lr=1e-4, warmup=1000, eval_every=5000, ckpt_every=2000, val_samples=256),
}


# -- loss ----------------------------------------------------------------------------------------------
def footprint_class_factors(bev: np.ndarray, exponent: float, cap: float) -> torch.Tensor:
    """Per-object-class factor float [K] (K object channels of the BEV maps bev [M, Cb, X, Y] of a training
    set): (cells the commonest class's footprints touch / cells this class's touch) ** exponent, capped at
    cap; a class absent from the set gets the cap. exponent 0 gives ones."""
    counts = np.zeros(bev.shape[1] - len(AREA_CHANNELS))
    if exponent <= 0:                                      # no need to read the whole set
        return torch.ones(len(counts))
    for m in bev:                                          # one map at a time: the set is large
        counts += (m[len(AREA_CHANNELS):] > 0).sum(axis=(1, 2))
    ratio = np.where(counts > 0, counts.max() / np.maximum(counts, 1), np.inf)
    return torch.tensor(np.minimum(ratio ** exponent, cap), dtype=torch.float32)


def footprint_weight(model: OccupancyDiffusion, bev: torch.Tensor, box_weight: float,
                     class_factors: torch.Tensor | None = None) -> torch.Tensor:
    """Per-cell loss weight float [B, 1, H, W] of the rolled-out map: 1 + box_weight * factor on the xy-plane
    cells that an object footprint of the BEV map bev [B, Cb, X, Y] touches (factor: the largest
    class_factors [K] entry of the classes there, 1 without class_factors), 1 elsewhere."""
    X, Y, _ = model.plane_shape
    H, W = model.latent_shape[1:]
    objects = bev[:, len(AREA_CHANNELS):]
    touched = (F.adaptive_max_pool2d(objects, (X, Y)) > 0).to(bev.dtype)    # [B, K, X, Y]
    factors = torch.ones(objects.shape[1]) if class_factors is None else class_factors
    cell = (touched * factors.to(bev)[None, :, None, None]).amax(dim=1, keepdim=True)
    return 1.0 + box_weight * F.pad(cell, (0, W - Y, 0, H - X))


def diffusion_loss(model: OccupancyDiffusion, scheduler, latents: torch.Tensor, cond: OccupancyCondition,
                   timesteps: torch.Tensor, noise: torch.Tensor, snr_gamma: float = 0.0,
                   cell_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Weighted MSE of one batch: latents float [B, C, H, W] in VAE units, timesteps long [B], noise like
    latents, cell_weight float [B, 1, H, W] or None (footprint_weight; the mean is taken under it). The
    padded corner of the rolled-out map is left out."""
    x0 = model.normalize(latents)
    xt = scheduler.add_noise(x0, noise, timesteps)
    pt = model.config["prediction_type"]
    target = noise if pt == "epsilon" else x0 if pt == "sample" else scheduler.get_velocity(x0, noise, timesteps)
    pred = model(xt, timesteps, cond)
    cells = model._corner.to(pred.dtype).expand(pred.shape[0], 1, *pred.shape[2:])
    if cell_weight is not None:
        cells = cells * cell_weight
    per = ((pred - target) ** 2 * cells).sum(dim=(1, 2, 3)) / (cells.sum(dim=(1, 2, 3)) * pred.shape[1])
    if snr_gamma > 0:
        acp = scheduler.alphas_cumprod.to(pred.device)[timesteps]
        snr = acp / (1 - acp)
        clipped = snr.clamp(max=snr_gamma)
        w = clipped / (snr + 1) if pt == "v_prediction" else clipped / snr if pt == "epsilon" else clipped
        per = per * w
    return per.mean()


def make_batch(data: LatentDataset, step: int, cfg: TrainConfig, model: OccupancyDiffusion, num_timesteps: int,
               class_factors: torch.Tensor | None = None):
    """(latents, conditions with dropout, timesteps, noise, per-cell loss weight or None) of one step;
    deterministic in (seed, step), so a resumed run sees the same batches. The weight follows the footprints
    of the full layout, also where dropout hides it from the model (class_factors: footprint_class_factors
    of the training set)."""
    rng = np.random.default_rng([cfg.seed, step])
    idx = rng.integers(len(data), size=cfg.batch)
    flip = rng.integers(len(FLIPS), size=cfg.batch) if cfg.flips else np.zeros(cfg.batch, np.int64)
    lat, cond = data.batch(idx, flip, model.config["max_boxes"])
    weight = footprint_weight(model, cond.bev, cfg.box_weight, class_factors) if cfg.box_weight > 0 else None
    keep = [torch.from_numpy(rng.random(cfg.batch) >= p) for p in (cfg.drop_bev, cfg.drop_boxes, cfg.drop_text)]
    cond = cond.drop(*keep)
    gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
    t = torch.randint(0, num_timesteps, (cfg.batch,), generator=gen)
    noise = torch.randn(lat.shape, generator=gen)
    return lat, cond, t, noise, weight


# -- main ----------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=sorted(PRESETS), default="tiny", help="model (and training) preset")
    ap.add_argument("--vae", type=Path, required=True, help="the frozen TriplaneVAE folder the latents come from")
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--data", type=Path, help="dataset folder written by xscene_core.data.build")
    src.add_argument("--worlds", type=int, default=None, help="train on chunks of the first N train worlds (default 60)")
    ap.add_argument("--per-world", type=int, default=len(ENVIRONMENTS), help="chunks per world (with --worlds)")
    ap.add_argument("--val-worlds", type=int, default=2, help="val worlds of the validation loss (with --worlds)")
    ap.add_argument("--cache", type=Path, default=Path("runs/occdiff_cache"), help="chunk and latent cache")
    ap.add_argument("--out", type=Path, required=True, help="run folder (log, checkpoints)")
    ap.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint")
    ap.add_argument("--init", type=Path, default=None,
                    help="start from a trained model folder (its weights, a fresh optimiser and schedule): "
                         "a new training phase of a shipped model, e.g. with another loss weighting")
    ap.add_argument("--threads", type=int, default=None, help="torch threads")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--max-minutes", type=float, default=None,
                    help="wall-time budget (resumed runs included): the cosine schedule follows the time spent and "
                         "training stops (with a checkpoint) when it is spent, if that comes before --steps")
    add_config_args(ap, TrainConfig)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    log = RunLog(args.out)
    cfg = apply_config_args(TrainConfig(**TRAIN_PRESETS.get(args.preset, {})), args)

    # data
    train = load_split(args.cache, "train", args.vae, args.worlds or 60, args.data, args.per_world, log)
    val = load_split(args.cache, "val", args.vae, args.val_worlds, args.data, args.per_world, log)
    source = f"dataset {args.data}" if args.data else f"synthetic world: {args.worlds or 60} train worlds x {args.per_world}"

    # model and its training state
    device = torch.device(args.device)
    want_hash = vae_hash(args.vae)

    def require_vae(model: OccupancyDiffusion, source: Path, hint: str = "") -> None:
        if model.config["vae_hash"] not in ("", want_hash):
            sys.exit(f"{source} was trained on latents of another VAE (hash {model.config['vae_hash']}, "
                     f"{args.vae} is {want_hash}){hint}")

    if args.resume and (args.out / "checkpoint").exists():
        run = EmaTraining.resume(args.out, log, cfg, OccupancyDiffusion, device, args.max_minutes)
        require_vae(run.model, args.out / "checkpoint", "; start a new run folder")
    else:
        if args.resume:
            log(f"no checkpoint in {args.out}; starting fresh")
        torch.manual_seed(cfg.seed)
        if args.init:
            model = OccupancyDiffusion.from_pretrained(args.init)
            require_vae(model, args.init)
        else:
            model = OccupancyDiffusion.from_preset(args.preset)
            model.config["latent_scale"] = 1.0 / train.latent_std()
        model.config["vae_hash"] = want_hash
        run = EmaTraining(args.out, log, cfg, model, device, args.max_minutes)
    model = run.model
    sched = model.scheduler("ddpm")
    T = sched.config.num_train_timesteps
    factors = footprint_class_factors(train.bev, cfg.class_balance, cfg.class_weight_max)
    log({"event": "start", "step": run.step, "preset": args.preset, "init": str(args.init or ""), "source": source, "vae": str(args.vae),
         "train_chunks": len(train), "val_chunks": len(val), "params": sum(p.numel() for p in model.parameters()),
         "threads": torch.get_num_threads(), "latent_scale": model.config["latent_scale"], "config": asdict(cfg),
         "model": model.config, "class_factors": dict(zip(BEV_CHANNELS[len(AREA_CHANNELS):], factors.tolist()))})

    # fixed validation triples
    vrng = np.random.default_rng(12345)
    vidx = vrng.integers(len(val), size=cfg.val_samples)
    vgen = torch.Generator().manual_seed(12345)
    vt = torch.linspace(0, T - 1, cfg.val_samples).long()
    vnoise = torch.randn((cfg.val_samples, *model.latent_shape), generator=vgen)

    def evaluate() -> dict:
        total = 0.0
        for s in range(0, cfg.val_samples, cfg.batch):
            sl = slice(s, s + cfg.batch)
            lat, cond = val.batch(vidx[sl], None, model.config["max_boxes"])
            total += float(diffusion_loss(model, sched, lat.to(device), cond.to(device), vt[sl].to(device),
                                          vnoise[sl].to(device))) * len(vidx[sl])
        return {"val_loss": total / cfg.val_samples}

    def loss_at(step: int) -> torch.Tensor:
        lat, cond, t, noise, weight = make_batch(train, step, cfg, model, T, factors)
        return diffusion_loss(model, sched, lat.to(device), cond.to(device), t.to(device), noise.to(device),
                              cfg.snr_gamma, None if weight is None else weight.to(device))

    run.train(loss_at, evaluate)


if __name__ == "__main__":
    sys.exit(main())
