"""Train the multi-view image diffusion model on the synthetic world with the preview look as target:

    python -m xscene_core.train.image_diffusion --preset tiny --out runs/imgdiff [--max-minutes M] [--resume]
    python -m xscene_core.train.image_diffusion --preset tiny_latent --out runs/imgdiff_latent   (after
        xscene_core.train.image_autoencoder has written checkpoints/image_autoencoder)
    python -m xscene_core.train.image_diffusion --preset paper --unet-path /models/sd21 --vae-path /models/sd21 ...

Data: xscene_core.data.image_dataset caches (train worlds for training, a few val worlds for the
validation loss; test worlds are left to xscene_core.eval.image_metrics). Every cached file found under
the cache's train folder is used, so a cache built in shards trains as one (files finished while training
runs are added at each evaluation; the batches of a resumed run then differ from an uninterrupted one).

Each step: --batch scenes (all their views at once, so the ring cross-view attention sees a whole rig),
one of the cached looks per scene, the preceding chunk's same look as the reference view with
probability --p-reference; DDPM forward noise at one uniform timestep per scene; the geometry, the boxes
and the caption are dropped per scene (--drop-*) and all three together with --drop-all so the
unconditional branch of classifier-free guidance is learned; the loss is the MSE to the v target.
AdamW, linear warm-up then cosine decay (over --steps or the --max-minutes wall time), an EMA of the
weights. OUT/log.jsonl gets a line every --log-every steps; the EMA validation loss on fixed (scene,
timestep, noise) triples every --eval-every steps; OUT/checkpoint/ (weights, EMA, optimizer state, step;
safetensors + JSON) every --ckpt-every steps and on SIGINT / SIGTERM; --resume continues from it.
OUT/best/ and OUT/final/ hold EMA weights (save_pretrained folders). A latent model's encoded looks are
kept beside the cache (ImageDataset.in_model_space), so the next run with the same autoencoder and scale
starts without encoding.

Adversarial term (--adv-weight W > 0; Denoising Diffusion GANs / adversarial diffusion distillation in
spirit): the MSE on v rewards the mean of what the noisy input leaves open, which the sampler's later steps
turn into smudges. For scenes that keep their geometry and are noised within --adv-t-min .. --adv-t-max
of the schedule, the model's clean estimate and the target are decoded by the frozen autoencoder (one
--adv-crop-h x --adv-crop-w window of all views) and a conditional PatchGAN (train.adversarial; RGB +
semantic map + style) learns to tell them apart; the denoiser is also trained to fool it (hinge loss), the
adversarial gradient balanced against the diffusion loss's at the UNet's last convolution and scaled by
W. The discriminator learns alone for its first --disc-start steps and is checkpointed with the model.
val_loss stays the diffusion loss (it rises as the model trades the mean for detail: pick such a run's
weights by the image metrics and the pictures, not by OUT/best).
"""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..data.image_dataset import LOOKS, ImageDataset, add_styles_arg, cache_dir, cache_files
from ..models.image_condition import ImageCondition
from ..models.image_diffusion import PRESETS, ImageCodec, ImageDiffusion, diffusion_loss
from ..models.pretrained import widened_inputs
from .adversarial import AdversarialTraining
from .common import RunLog, add_config_args, apply_config_args


@dataclass
class TrainConfig:
    """Training settings (the model's own settings are its preset)."""

    steps: int = 4000
    """optimiser steps in all (the cosine schedule spans them)"""
    batch: int = 1
    """scenes per step (each with all its views)"""
    lr: float = 6e-4
    weight_decay: float = 0.01
    warmup: int = 100
    min_lr_ratio: float = 0.05
    grad_clip: float = 1.0
    ema_decay: float = 0.995
    """EMA decay (warmed up as min(decay, (1 + step) / (10 + step)))"""
    p_reference: float = 0.5
    """probability that a scene gets its reference view (extrapolation)"""
    drop_geometry: float = 0.1
    drop_boxes: float = 0.1
    drop_text: float = 0.1
    drop_all: float = 0.1
    """probability of dropping geometry, boxes and caption together"""
    snr_gamma: float = 0.0
    """min-SNR weighting (0 = plain v loss, which keeps weight on the high-noise steps)"""
    high_noise_share: float = 0.0
    """share of scenes whose timestep is drawn from the upper half of the schedule only (a fine-tuning knob:
    the global brightness and colour of a view are decided there)"""
    object_weight: float = 1.0
    """training loss weight of latent cells covered by object boxes, crossings or road paint over the rest
    (image_condition.object_weights, GeoDiffusion's foreground re-weighting; the validation loss stays
    unweighted)"""
    adv_weight: float = 0.0
    """scale of the balanced adversarial loss on the decoded clean estimates (0: no discriminator)"""
    adv_t_min: float = 0.0
    adv_t_max: float = 0.6
    """the adversarial loss judges the estimates of scenes noised within this share of the schedule (below
    the range the estimates are nearly the targets, above it they are a guess at the whole view)"""
    adv_crop_h: int = 64
    adv_crop_w: int = 112
    """window of the views (image pixels, multiples of the autoencoder's factor) decoded and judged"""
    disc_lr: float = 2e-4
    disc_start: int = 200
    """steps of the run in which only the discriminator trains"""
    disc_width: int = 32
    seed: int = 0
    log_every: int = 10
    eval_every: int = 200
    ckpt_every: int = 50
    val_samples: int = 8


TRAIN_PRESETS: dict[str, dict] = {
    "tiny": dict(),
    "paper": dict(steps=100000, batch=8, lr=5e-5, warmup=1000, eval_every=2000, ckpt_every=1000, val_samples=64,
                  ema_decay=0.9999),
}


def make_batch(data: ImageDataset, step: int, cfg: TrainConfig, model: ImageDiffusion, T: int):
    """(targets, conditions with dropout, timesteps, noise) of one step; deterministic in (seed, step). The
    targets are data's images as stored: pixels, or latents for an `encoded` dataset."""
    rng = np.random.default_rng([cfg.seed, step])
    idx = rng.integers(len(data), size=cfg.batch)
    look = rng.integers(LOOKS, size=cfg.batch)
    with_ref = rng.random(cfg.batch) < cfg.p_reference
    x0, cond = data.batch(idx, look, with_ref, model.config["max_boxes"], channels=model.image_channels,
                          geometry_stride=model.config["geometry_stride"])
    every = torch.from_numpy(rng.random(cfg.batch) >= cfg.drop_all)
    keep = [torch.from_numpy(rng.random(cfg.batch) >= p) & every for p in (cfg.drop_geometry, cfg.drop_boxes, cfg.drop_text)]
    cond = cond.drop(*keep)
    gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
    t = torch.randint(0, T, (cfg.batch,), generator=gen)
    high = torch.from_numpy(rng.random(cfg.batch) < cfg.high_noise_share)
    t = torch.where(high, T // 2 + t // 2, t)
    noise = torch.randn(x0.shape, generator=gen)
    return x0, cond, t, noise


class BatchPrefetch:
    """make(step) for consecutive steps, the next one built on a background thread while the current one
    trains (on a GPU the CPU-side batch assembly would otherwise stall it); ahead=False builds in line."""

    def __init__(self, make, ahead: bool) -> None:
        self.make = make
        self.pool = ThreadPoolExecutor(1) if ahead else None
        self.pending: tuple[int, Future] | None = None

    def invalidate(self) -> None:
        """Drop the batch built ahead (the data changed: the next step builds from the new data)."""
        self.pending = None

    def __call__(self, step: int):
        if self.pool is None:
            return self.make(step)
        if self.pending is not None and self.pending[0] == step:
            batch = self.pending[1].result()
        else:
            batch = self.make(step)
        self.pending = (step + 1, self.pool.submit(self.make, step + 1))
        return batch


def judged_views(codec: ImageCodec, x0: torch.Tensor, est: torch.Tensor, cond: ImageCondition,
                 judged: torch.Tensor, cfg: TrainConfig, rng: np.random.Generator
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """What the adversary of an --adv-weight run compares: (real, fake, semantic, style) of the views of the
    `judged` scenes (bool [B]), one random window of cfg.adv_crop_h x cfg.adv_crop_w image pixels: the
    targets x0 and the model's clean estimates est (float [B, V, C, h, w] in the model space) decoded by the
    frozen autoencoder (real without a graph, fake with it: float [N, 3, H', W']), the window's semantic
    map long [N, h', w'] and the views' styles float [N, STYLE_FEATURES]. Both sides pass the same decoder,
    so the adversary can only tell the denoiser's errors, not the autoencoder's."""
    f = codec.image_size[0] // x0.shape[-2]
    ch, cw = min(cfg.adv_crop_h // f, x0.shape[-2]), min(cfg.adv_crop_w // f, x0.shape[-1])
    i, j = int(rng.integers(x0.shape[-2] - ch + 1)), int(rng.integers(x0.shape[-1] - cw + 1))
    window = lambda t: t[judged][..., i:i + ch, j:j + cw].flatten(0, 1)  # noqa: E731
    with torch.no_grad():
        real = codec.decode_tensor(window(x0))
    fake = codec.decode_tensor(window(est))
    s = cond.semantic.shape[-2] // x0.shape[-2]  # geometry pixels per model cell
    semantic = cond.semantic[judged][..., i * s:(i + ch) * s, j * s:(j + cw) * s].flatten(0, 1)
    style = cond.view_styles().view(cond.batch_size, cond.num_views, -1)[judged].flatten(0, 1)
    return real, fake, semantic, style


def grown_input(saved: torch.Tensor, own: torch.Tensor) -> bool:
    """Whether convolution weights `own` [O, I', k, k] extend `saved` [O, I, k, k] by input channels (I' > I)."""
    return (saved.ndim == own.ndim == 4 and saved.shape[0] == own.shape[0] and saved.shape[2:] == own.shape[2:]
            and own.shape[1] > saved.shape[1])


def spread(n: int, k: int) -> list[int]:
    """Up to k indices evenly spread over range(n), first and last included."""
    return [int(i) for i in np.unique(np.linspace(0, n - 1, min(k, n)).round().astype(int))]


def residual_scale(data: ImageDataset, scenes: int = 16) -> float:
    """1 / std of (looks - first guess) in the model space over up to `scenes` evenly spread scenes of a
    `guided`, encoded dataset: the scale of a first_guess_residual model."""
    picks = [data.samples[i] for i in spread(len(data), scenes)]
    r = np.concatenate([np.asarray(s.preview, np.float32) - np.asarray(s.guide, np.float32) for s in picks])
    return float(1.0 / max(float(r.std()), 1e-6))


def latent_scale(codec: ImageCodec, data: ImageDataset, scenes: int = 16) -> float:
    """1 / std of the autoencoder's latents (before any scale) over the preview views of up to `scenes`
    evenly spread training scenes."""
    images = np.concatenate([data.samples[i].preview[0] for i in spread(len(data), scenes)])   # [N, H, W, 3]
    scale = codec.config["vae_scale"]
    z = codec.encode_tensor(torch.from_numpy(images).float().permute(0, 3, 1, 2) / 127.5 - 1) / scale
    return float(1.0 / z.std().clamp(min=1e-6))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    ap.add_argument("--cache", type=Path, default=Path("runs/image_cache"), help="xscene_core.data.image_dataset cache")
    add_styles_arg(ap)
    ap.add_argument("--val-worlds", type=int, default=2, help="val worlds of the validation loss")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--init", type=Path, default=None,
                    help="start a new run from the weights of an ImageDiffusion folder (matching names and shapes; "
                         "parameters the folder lacks keep their initialisation)")
    ap.add_argument("--unet-path", default=None, help="paper preset: local Stable Diffusion 2.1 folder for the UNet")
    ap.add_argument("--vae-path", default=None, help="paper preset: local Stable Diffusion folder whose vae/ encodes")
    ap.add_argument("--first-guess-condition", action="store_true",
                    help="a latent model that also reads the first-guess views (VAE_PATH/first_guess: a "
                         "train.geometry_decoder --p-blank 1 decoder); --init copies the first convolution's "
                         "filters it shares with the model and starts the new ones at zero")
    ap.add_argument("--first-guess-residual", action="store_true",
                    help="with --first-guess-condition: denoise the residual of the views to the first guess "
                         "(its scale set from the training scenes; an --init that has either keeps it)")
    ap.add_argument("--paint-condition", action="store_true",
                    help="also read the boxes' paint colours (box tokens and a per-pixel paint map; new weights "
                         "start at zero, so an --init model starts unchanged)")
    ap.add_argument("--area-condition", action="store_true",
                    help="also read the marks of the layout (crossings, road paint, light fixtures, windows; a 1x1 projection that starts at "
                         "zero, so an --init model starts unchanged); the cache must hold them (image_dataset "
                         "--add-areas)")
    ap.add_argument("--facade-condition", action="store_true",
                    help="with --paint-condition (or an --init that has it): the paint map also holds the walls' "
                         "colours of each look (no new weights); the cache must hold them (image_dataset --add-facades)")
    ap.add_argument("--discriminator-init", type=Path, default=None,
                    help="with --adv-weight: start the adversary from this discriminator.safetensors (an earlier "
                         "run's checkpoint/) instead of a new one that first learns alone for --disc-start steps")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--max-minutes", type=float, default=None, help="wall-time budget over all resumed runs")
    add_config_args(ap, TrainConfig)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    log = RunLog(args.out)
    cfg = apply_config_args(TrainConfig(**TRAIN_PRESETS.get(args.preset, {})), args)
    preset = PRESETS[args.preset]
    latent = preset["space"] == "latent"
    vae_path = str(args.vae_path or preset["vae_path"])
    if latent and not vae_path:
        sys.exit(f"the {args.preset} preset works in a latent space: give --vae-path (a local folder with vae/)")
    # images at the codec's size, conditions at the model's x its geometry stride (the same in pixel space)
    h, w = preset["sample_size"]
    factor, stride = (preset.get("vae_factor", 8) if latent else 1), preset.get("geometry_stride", 1)
    image_size, size = (h * factor, w * factor), (h * stride, w * stride)
    train_dir = cache_dir(args.cache, image_size, "train", size, args.styles)
    train_paths = cache_files(train_dir)
    val_dir = cache_dir(args.cache, image_size, "val", size, args.styles)
    val_paths = cache_files(val_dir)
    val_worlds = sorted({p.name.split("_")[0] for p in val_paths})[: args.val_worlds]
    val_paths = [p for p in val_paths if p.name.split("_")[0] in val_worlds]
    if not train_paths or not val_paths:
        sys.exit(f"no cached samples under {args.cache} for images {image_size}, conditions {size}: run "
                 f"xscene_core.data.image_dataset (--size {image_size[0]} {image_size[1]} --cond-size {size[0]} {size[1]} "
                 f"--styles {args.styles}) first")
    train, val = ImageDataset.load(train_paths), ImageDataset.load(val_paths)

    device = torch.device(args.device)
    if device.type == "cuda":  # TF32 matrix products (attention, projections) as cuDNN's convolutions use already
        torch.backends.cuda.matmul.allow_tf32 = True
    init_cfg = json.loads((args.init / "config.json").read_text()) if args.init else {}
    if (args.area_condition or init_cfg.get("area_condition")) and (hint := train.missing_areas(image_size, size)):
        sys.exit(f"--area-condition: {hint}")
    if (args.facade_condition or init_cfg.get("facade_condition")) and (hint := train.missing_facades(image_size, size)):
        sys.exit(f"--facade-condition: {hint}")
    if args.resume and (args.out / "checkpoint").exists():
        run = AdversarialTraining.resume(args.out, log, cfg, ImageDiffusion, device, args.max_minutes)
    else:
        torch.manual_seed(cfg.seed)
        # a continuation keeps its start's first-guess, paint and area inputs (the flags only add them)
        inputs = {k: True for k in ("first_guess_condition", "first_guess_residual", "paint_condition", "area_condition",
                                    "facade_condition")
                 if getattr(args, k) or init_cfg.get(k)}
        model = ImageDiffusion.from_preset(args.preset, unet_path=args.unet_path,
                                           **({"vae_path": vae_path} if latent else {}), **inputs)
        if latent and args.preset != "paper":  # our own autoencoder: scale its latents to unit variance
            # a continuation keeps the scale its weights were trained with
            init_scale = init_cfg.get("vae_scale") if init_cfg.get("space") == "latent" else None
            model.config["vae_scale"] = init_scale or latent_scale(ImageCodec(model), train)
            log({"event": "vae_scale", "vae_scale": model.config["vae_scale"], "from_init": bool(init_scale)})
        if args.init is not None:
            from safetensors.torch import load_file

            own = model.state_dict()
            saved = load_file(str(args.init / "model.safetensors"))
            weights = {k: v for k, v in saved.items() if k in own and own[k].shape == v.shape}
            for key in sorted((saved.keys() & own.keys()) - weights.keys()):
                if grown_input(saved[key], own[key]):
                    # more input channels than the start (the UNet's condition channels, the road paint beside
                    # the crossings): its filters on the channels it has, zero on the new
                    weights[key] = widened_inputs(saved[key], own[key].shape[1])
            model.load_state_dict(weights, strict=False)
            log({"event": "init", "from": str(args.init), "loaded": len(weights),
                 "kept_initialisation": sorted(set(own) - set(weights))})
        run = AdversarialTraining(args.out, log, cfg, model, device, args.max_minutes)
    model = run.model
    codec = ImageCodec(model)

    def prepared(data: ImageDataset, folder: Path) -> ImageDataset:
        """The cached scenes as the model trains on them."""
        if latent:  # the autoencoder is frozen: encode every look once (or read the last run's), not at every step
            data = data.in_model_space(codec, folder, device)
        if model.config["first_guess_condition"]:  # the first guess depends on no look: drawn once per scene
            data = data.guided(codec, device)
        return data

    train, val = prepared(train, train_dir), prepared(val, val_dir)
    if latent:
        log({"event": "encoded", "train_scenes": len(train), "val_scenes": len(val)})
    if model.config["first_guess_condition"]:
        log({"event": "guided", "train_scenes": len(train), "val_scenes": len(val)})
    if model.config["first_guess_residual"] and run.step == 0:  # a resumed run keeps its scale
        scale = init_cfg.get("residual_scale") if init_cfg.get("first_guess_residual") else None
        model.config["residual_scale"] = scale or residual_scale(train)
        log({"event": "residual_scale", "residual_scale": model.config["residual_scale"], "from_init": bool(scale)})
    sched = model.scheduler("ddpm")
    T = sched.config.num_train_timesteps
    log({"event": "start", "step": run.step, "preset": args.preset, "train_scenes": len(train), "val_scenes": len(val),
         "params": sum(p.numel() for p in model.parameters()), "threads": torch.get_num_threads(),
         "config": asdict(cfg), "model": model.config})

    # fixed validation triples: (scene, look, reference?, timestep, noise)
    vrng = np.random.default_rng(12345)
    vidx = vrng.integers(len(val), size=cfg.val_samples)
    vlook = vrng.integers(LOOKS, size=cfg.val_samples)
    vref = np.arange(cfg.val_samples) % 2 == 0
    vt = torch.linspace(0, T - 1, cfg.val_samples).long()
    vgen = torch.Generator().manual_seed(12345)

    def evaluate() -> dict:
        total = 0.0
        vgen.manual_seed(12345)
        for i in range(cfg.val_samples):
            x0, cond = val.batch(vidx[i:i + 1], vlook[i:i + 1], vref[i:i + 1], model.config["max_boxes"],
                                 channels=model.image_channels, geometry_stride=model.config["geometry_stride"])
            noise = torch.randn(x0.shape, generator=vgen)
            total += float(diffusion_loss(model, sched, x0.to(device), cond.to(device), vt[i:i + 1].to(device),
                                          noise.to(device)))
        return {"val_loss": total / cfg.val_samples, **run.adversarial_figures()}

    if args.init is not None and run.step == 0:  # the bar a continuation has to beat, on the same triples
        with run.ema_weights():  # the EMA equals the weights here; this gives eval mode and no graph
            log({"step": 0, "event": "init_val", **evaluate()})

    batches = BatchPrefetch(lambda step: make_batch(train, step, cfg, model, T), device.type != "cpu")
    if cfg.adv_weight > 0:
        run.attach_adversary(cfg, device, args.resume, args.discriminator_init)

    def loss_at(step: int) -> torch.Tensor:
        x0, cond, t, noise = batches(step)
        x0, cond, t, noise = x0.to(device), cond.to(device), t.to(device), noise.to(device)
        if run.adversary is None:
            return diffusion_loss(model, sched, x0, cond, t, noise, cfg.snr_gamma, object_weight=cfg.object_weight)
        rec, est = diffusion_loss(model, sched, x0, cond, t, noise, cfg.snr_gamma, estimate=True,
                                  object_weight=cfg.object_weight)
        judged = cond.geometry_mask & (t >= cfg.adv_t_min * T) & (t < cfg.adv_t_max * T)  # D reads the semantic map
        if not bool(judged.any()):
            return rec
        rng = np.random.default_rng([cfg.seed, step, 1])
        real, fake, semantic, style = judged_views(codec, x0, est, cond, judged, cfg, rng)
        return run.adversarial_loss(rec, real, fake, semantic, style, step, model.unet.conv_out.weight, cfg)

    def take_new_samples(step: int) -> None:
        new = sorted(set(cache_files(train_dir)) - set(train_paths))
        if new:  # a cache still being built in the background: take what is finished
            train.samples += prepared(ImageDataset.load(new), train_dir).samples
            train_paths.extend(new)
            batches.invalidate()  # as a run without the prefetch (or a resumed one) would draw it
            log({"step": step, "train_scenes": len(train)})

    run.train(loss_at, evaluate, take_new_samples)


if __name__ == "__main__":
    sys.exit(main())
