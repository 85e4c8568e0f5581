"""Train the geometry-aware decoder (models.geometry_decoder) of a trained image autoencoder:

    python -m xscene_core.train.geometry_decoder --autoencoder checkpoints/image_autoencoder \
        --denoiser checkpoints/image_diffusion --out runs/geodec [--max-minutes M] [--resume]
    cp -r runs/geodec/best checkpoints/image_autoencoder/geometry_decoder   (ship; then set "geometry_decoder": true
        in the image diffusion model's config.json)

Data: the same xscene_core.data.image_dataset cache as the latent diffusion model (images at --size, their
conditions at --cond-size): targets are the preview looks, inputs their latents under the frozen encoder
(encoded once) and the views' geometry. The decoder starts as the autoencoder's (its geometry injections
at zero) and learns to draw edges and materials from the geometry where the latents are unsure. Most
latents are degraded before decoding: with --denoiser, a share --p-denoised of the steps decodes the
image diffusion model's one-step clean-latent estimate of the scene's latents noised to a random
timestep up to --t-max of its schedule (the soft, off-colour latents a sampler hands the decoder), or,
for a share --p-resampled of those steps, what --resample-steps DDIM steps of the guided model sample
back from that noise (SDEdit: sharp like a sampler's output, wrong in places, with the target known); the
other steps add Gaussian noise of a random strength up to --noise-max latent standard deviations (half
of those views also blurred 2x). A --p-clean share of the views stays clean, so that the autoencoder's
own reconstructions keep their quality. Each step: --batch scenes, one look each, all six views, one
random --crop-h x --crop-w window on the latent grid (a ConvNet learns from crops at a fraction of the
cost). Loss: L1 + MSE. The loop (AdamW, warm-up + cosine, EMA, checkpoints, --resume, --max-minutes) is
train.ema_training's. Validation: fixed val views decoded from clean latents, from latents noised at a
fixed strength and (with --denoiser) from the denoiser's estimates and resamples at --val-t; val_loss is
the mean of those losses (it picks OUT/best), and the step-0 line is the starting decoder's figure on
the same views (the plain decoder's, unless --init).
--p-blank P decodes all-zero latents in a share P of the steps; with P = 1 the decoder becomes a
geometry-to-image regression (GeometryDecoder.draw; with --style-condition it also reads the time of day
and weather), the first guess a sampler can start from (ImageDiffusion.sample start / strength; its
validation then measures only that).
--init FOLDER starts a new run from a trained GeometryDecoder. The shipped decoder's commands are in
checkpoints/image_autoencoder/MODEL_CARD.md.
--upscale 2 gives the decoder a detail head (models.geometry_decoder.DetailHead) that draws the views at
twice the autoencoder's size, for a cache built at that size: --size is then twice the autoencoder's
image size (the latents encode the views box-filtered to half, as the cache makes its views), --cond-size
the geometry the decoder reads, and the denoiser reads that geometry halved (ImageCondition.coarsened).
--crop-h / --crop-w stay in view pixels (multiples of 8 then).

Adversarial training (--adv-weight W > 0): an L1 / MSE loss rewards the mean of what the latents leave
open, which is a blur; a conditional PatchGAN (models.patch_discriminator: RGB + the view's semantic map
and style) learns to tell preview renders from decoded views, and the decoder is also trained to fool it
(hinge loss), the adversarial gradient balanced against the reconstruction's at the decoder's last layer
(as latent-diffusion autoencoders are trained) and scaled by W; --fm-weight adds discriminator feature
matching. For the first --disc-start steps of the run the discriminator learns while the decoder keeps
its L1 / MSE loss only. --style-condition and --noise-injection give the decoder (new, or extended from
--init) the style and per-pixel noise inputs (models.geometry_decoder), zero-initialised, and
--paint-condition the boxes' paint map (--facade-condition: with the walls' colours), --area-condition the crossings,
road paint, light fixtures and windows; --object-weight
weighs the pixels of object boxes, crossings, paint and lights more. The discriminator and its optimizer are saved in each checkpoint
(OUT/checkpoint/discriminator.safetensors, the same step as the decoder) and come back with --resume. An
adversarial run's val_loss rises as it trades PSNR for detail, so pick its weights by the image metrics,
not by OUT/best; the validation also logs val_sharpness_* (mean absolute Laplacian of the decoded views
over the targets': 1 = as sharp as the previews).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..data.image_dataset import LOOKS, ImageDataset, add_styles_arg, cache_dir, cache_files, latent_store
from ..eval.image_metrics import laplacian_energy
from ..models.geometry_decoder import GeometryDecoder
from ..models.image_autoencoder import downsample_factor, load_autoencoder
from ..models.image_condition import ImageCondition, object_weights
from .adversarial import AdversarialTraining
from .common import RunLog, add_config_args, apply_config_args
from .image_autoencoder import psnr


@dataclass
class TrainConfig:
    steps: int = 20000
    batch: int = 1
    """scenes per step (six views each)"""
    lr: float = 5e-4
    weight_decay: float = 0.0
    warmup: int = 100
    min_lr_ratio: float = 0.05
    grad_clip: float = 1.0
    ema_decay: float = 0.995
    crop_h: int = 64
    crop_w: int = 112
    """training window in image pixels (multiples of the downsampling factor; 0 = whole views)"""
    object_weight: float = 1.0
    """loss weight of pixels covered by object boxes, crossings or road paint over the rest
    (image_condition.object_weights; the validation figures stay unweighted)"""
    noise_max: float = 0.5
    """strongest latent noise, in standard deviations of the training latents"""
    p_clean: float = 0.2
    """share of views decoded from their clean latents"""
    p_denoised: float = 0.5
    """share of steps whose scene is decoded from the denoiser's estimate of its latents (needs --denoiser)"""
    t_max: float = 0.7
    """the denoiser sees the latents noised at a random timestep up to this share of its schedule"""
    p_resampled: float = 0.0
    """share of the denoiser's steps that decode a few-step sample from the noised latents (resampled)
    instead of the one-step estimate"""
    resample_steps: int = 4
    p_blank: float = 0.0
    """share of steps whose latents are all zero: the decoder draws the view from its geometry and style
    alone (1: a geometry-to-image regression, GeometryDecoder.draw: the image model's first guess)"""
    p_blur: float = 0.5
    """share of the noised (not denoised) views whose latents are also blurred (2x average-pooled and upsampled)"""
    val_noise: float = 0.3
    val_t: float = 0.5
    seed: int = 0
    log_every: int = 10
    eval_every: int = 250
    ckpt_every: int = 100
    val_scenes: int = 4
    adv_weight: float = 0.0
    """scale of the balanced adversarial loss (0: no discriminator)"""
    fm_weight: float = 0.0
    """weight of the discriminator feature-matching loss (L1)"""
    disc_lr: float = 2e-4
    disc_start: int = 200
    """steps of the run in which only the discriminator trains"""
    disc_width: int = 32


def degrade(z: torch.Tensor, strength: torch.Tensor, blur: torch.Tensor, generator: torch.Generator | None = None
            ) -> torch.Tensor:
    """Latents float [N, C, h, w] with Gaussian noise of `strength` float [N] (absolute units) and, where
    `blur` bool [N], a 2x average-pool + bilinear upsample first."""
    soft = F.interpolate(F.avg_pool2d(z, 2, ceil_mode=True), size=z.shape[-2:], mode="bilinear", align_corners=False)
    z = torch.where(blur[:, None, None, None], soft, z)
    return z + strength[:, None, None, None] * torch.randn(z.shape, generator=generator)


def noised(model, z: torch.Tensor, cond: ImageCondition, t: int, generator: torch.Generator | None = None
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """(x_t float [B, V, C, h, w], alphas_cumprod float [T]): unscaled latents z float [B*V, C, h, w] of cond's
    B scenes of V views in the image diffusion model's space, noised to timestep t, and its schedule."""
    acps = model.scheduler("ddpm").alphas_cumprod.to(model.device)
    x0 = (z * model.config["vae_scale"]).view(cond.batch_size, cond.num_views, *z.shape[1:]).to(model.device)
    noise = torch.randn(x0.shape, generator=generator).to(x0.device)
    return acps[t].sqrt() * x0 + (1 - acps[t]).sqrt() * noise, acps


@torch.no_grad()
def denoised(model, z: torch.Tensor, cond: ImageCondition, t: int, generator: torch.Generator | None = None
             ) -> torch.Tensor:
    """The image diffusion model's one-step estimate of clean latents from latents noised to timestep t.
    z: unscaled latents float [B*V, C, h, w] of cond's B scenes of V views -> the same shape. These are the
    soft, slightly off-colour latents a sampler's last steps hand the decoder."""
    from ..models.image_diffusion import clean_estimate

    xt, acps = noised(model, z, cond, t, generator)
    out = model(xt, torch.full((cond.batch_size,), t, device=xt.device), cond.to(xt.device))
    x0 = clean_estimate(out, xt, acps[t], model.config["prediction_type"])
    return (x0 / model.config["vae_scale"]).flatten(0, 1).to(z.device)


@torch.no_grad()
def resampled(model, z: torch.Tensor, cond: ImageCondition, t: int, steps: int,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """Latents the image diffusion model samples back from z noised to timestep t (SDEdit): `steps`
    deterministic DDIM steps of its guided output (its guidance scale), at timesteps evenly spaced from t
    down to 0. z: unscaled latents float [B*V, C, h, w] of cond's B scenes of V views -> the same shape:
    sharp like a sampler's output and close to (not equal to) z, so the decoder learns to mend what
    sampling gets wrong while the target is known."""
    from ..models.image_diffusion import clean_estimate

    x, acps = noised(model, z, cond, t, generator)
    fn = model.guided(cond.to(x.device), model.config["guidance_scale"])
    ts = [round(t * (1 - k / steps)) for k in range(steps)]
    for k, u in enumerate(ts):
        x0 = clean_estimate(fn(x, torch.full((cond.batch_size,), u, device=x.device)), x, acps[u],
                            model.config["prediction_type"])
        if k + 1 == len(ts) or ts[k + 1] <= 0:
            x = x0
            break
        eps = (x - acps[u].sqrt() * x0) / (1 - acps[u]).sqrt()
        w = ts[k + 1]
        x = acps[w].sqrt() * x0 + (1 - acps[w]).sqrt() * eps
    return (x / model.config["vae_scale"]).flatten(0, 1).to(z.device)


def crop_condition(cond: ImageCondition, i: int, j: int, h: int, w: int) -> ImageCondition:
    """The condition's geometry cropped to rows i:i+h, columns j:j+w (geometry pixels) and its reference
    and first-guess views to the matching window (they are `stride` times coarser)."""
    s = cond.semantic.shape[-2] // cond.image_size[0]
    g = lambda t: t[..., i:i + h, j:j + w]  # noqa: E731
    r = lambda t: None if t is None else t[..., i // s:(i + h) // s, j // s:(j + w) // s]  # noqa: E731
    return replace(cond, semantic=g(cond.semantic), depth=g(cond.depth), persp=g(cond.persp), points=g(cond.points),
                   areas=g(cond.areas), facade_paint=g(cond.facade_paint), reference=r(cond.reference), guide=r(cond.guide))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--autoencoder", type=Path, default=Path("checkpoints/image_autoencoder"),
                    help="folder with vae/ (the frozen encoder and the decoder to start from)")
    ap.add_argument("--denoiser", type=Path, default=None,
                    help="image diffusion model (e.g. checkpoints/image_diffusion) whose one-step clean-latent "
                         "estimates train the decoder (--p-denoised of the steps; off without it)")
    ap.add_argument("--init", type=Path, default=None,
                    help="start from this trained GeometryDecoder folder (a new run; default: the autoencoder's decoder)")
    ap.add_argument("--cache", type=Path, default=Path("runs/image_cache"), help="xscene_core.data.image_dataset cache")
    add_styles_arg(ap)
    ap.add_argument("--size", type=int, nargs=2, default=(128, 224), metavar=("H", "W"), help="image size")
    ap.add_argument("--cond-size", type=int, nargs=2, default=(64, 112), metavar=("H", "W"), help="condition size")
    ap.add_argument("--val-worlds", type=int, default=2)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--max-minutes", type=float, default=None, help="wall-time budget over all resumed runs")
    ap.add_argument("--style-condition", action="store_true", help="give the decoder the style input (new parts at zero)")
    ap.add_argument("--noise-injection", action="store_true", help="give the decoder per-pixel noise inputs (new parts at zero)")
    ap.add_argument("--paint-condition", action="store_true",
                    help="give the decoder the boxes' paint map (new parts at zero)")
    ap.add_argument("--area-condition", action="store_true",
                    help="give the decoder the marks of the layout (crossings, road paint, light fixtures, windows; new parts at zero; "
                         "the cache must hold them: image_dataset --add-areas)")
    ap.add_argument("--facade-condition", action="store_true",
                    help="with --paint-condition (or an --init that has it): the paint map also holds the walls' colours "
                         "of each look (no new weights; the cache must hold them: image_dataset --add-facades)")
    ap.add_argument("--upscale", type=int, choices=(1, 2), default=None,
                    help="2: give the decoder a detail head that draws the views at twice the autoencoder's size "
                         "(new parts at zero); --size is then the views' size (the latents encode them halved) and "
                         "--cond-size the decoder's geometry, the denoiser reading it halved (default: --init's, else 1)")
    ap.add_argument("--coarse-base", action="store_true",
                    help="with --upscale 2: the decoder below the detail head reads the geometry halved (as its source "
                         "read it); only the head reads it at --cond-size")
    ap.add_argument("--freeze-base", action="store_true",
                    help="train the detail head only: the decoder below it stays its source's")
    add_config_args(ap, TrainConfig)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    log = RunLog(args.out)
    cfg = apply_config_args(TrainConfig(), args)
    device = torch.device(args.device)
    ae = load_autoencoder(args.autoencoder).to(device)
    resuming = args.resume and (args.out / "checkpoint").exists()
    source = args.out / "checkpoint" if resuming else args.init  # the decoder the run starts from, if any
    source_cfg = GeometryDecoder.load_config(source) if source is not None else {}
    init_up = source_cfg.get("upscale", 1)
    up = args.upscale or init_up
    if up < init_up:
        sys.exit(f"--upscale {up}: {source} is an upscaling decoder (upscale {init_up})")
    f = downsample_factor(ae) * up  # view pixels per latent cell
    size, cond_size = tuple(args.size), tuple(args.cond_size)
    stride = cond_size[0] * f // size[0]  # condition pixels per latent cell
    folders = {split: cache_dir(args.cache, size, split, cond_size, args.styles) for split in ("train", "val")}
    paths = {split: cache_files(folder) for split, folder in folders.items()}
    val_worlds = sorted({p.name.split("_")[0] for p in paths["val"]})[: args.val_worlds]
    paths["val"] = [p for p in paths["val"] if p.name.split("_")[0] in val_worlds][: cfg.val_scenes]
    if not paths["train"] or not paths["val"]:
        sys.exit(f"no cached samples under {args.cache} for images {size}, conditions {cond_size}: run "
                 f"xscene_core.data.image_dataset --size {size[0]} {size[1]} --cond-size {cond_size[0]} {cond_size[1]} "
                 f"--styles {args.styles} first")
    if cfg.crop_h % f or cfg.crop_w % f:
        sys.exit(f"--crop-h / --crop-w must be multiples of the autoencoder's factor {f}")

    def encode(x: torch.Tensor) -> torch.Tensor:
        x = F.avg_pool2d(x, up) if up > 1 else x  # the autoencoder's size (as the cache box-filters)
        return ae.encode(x.to(device)).latent_dist.mean.cpu()

    train, val = ImageDataset.load(paths["train"]), ImageDataset.load(paths["val"])
    if (args.area_condition or source_cfg.get("area_condition")) and (hint := train.missing_areas(size, cond_size)):
        sys.exit(f"--area-condition: {hint}")
    if (args.facade_condition or source_cfg.get("facade_condition")) and (hint := train.missing_facades(size, cond_size)):
        sys.exit(f"--facade-condition: {hint}")
    # the encoder's unscaled means, kept for the next run (ImageDataset.encoded)
    train_z, val_z = (data.encoded(encode, store=latent_store(folders[split], args.autoencoder, "mean"))
                      for split, data in (("train", train), ("val", val)))
    denoiser = None
    if args.denoiser is not None:
        from ..models.image_diffusion import ImageDiffusion

        denoiser = ImageDiffusion.from_pretrained(args.denoiser).to(device).eval().requires_grad_(False)
        if denoiser.config["space"] != "latent" or tuple(s * up for s in denoiser.condition_size) != cond_size:
            sys.exit(f"--denoiser {args.denoiser}: needs a latent model with conditions at "
                     f"{tuple(s // up for s in cond_size)}")
        if denoiser.config["first_guess_residual"]:  # noised / denoised below work on the views themselves
            sys.exit(f"--denoiser {args.denoiser}: a first_guess_residual denoiser is not supported here")
        if denoiser.config["first_guess_condition"] and up > 1:
            sys.exit(f"--denoiser {args.denoiser}: a first_guess_condition denoiser is not supported with --upscale 2")
        if denoiser.config["first_guess_condition"]:  # it reads the first-guess views: computed once per scene
            from ..models.image_diffusion import ImageCodec

            codec = ImageCodec(denoiser)
            train_z, val_z = train_z.guided(codec, device), val_z.guided(codec, device)
    T = denoiser.config["num_train_timesteps"] if denoiser is not None else 0
    z_std = float(torch.from_numpy(np.concatenate([s.preview[0] for s in train_z.samples[:16]]).astype(np.float32)).std())

    options = {k: True for k, on in (("style_condition", args.style_condition),
                                     ("noise_injection", args.noise_injection),
                                     ("paint_condition", args.paint_condition),
                                     ("area_condition", args.area_condition),
                                     ("facade_condition", args.facade_condition)) if on}
    if up != init_up:
        options.update(upscale=up, condition_size=cond_size)
    if args.coarse_base:
        options["coarse_base"] = True

    def prepare(model: GeometryDecoder) -> None:
        """--freeze-base: only the detail head learns."""
        if args.freeze_base:
            if model.detail is None:
                sys.exit("--freeze-base: the decoder has no detail head (give --upscale 2)")
            for name, p in model.named_parameters():
                p.requires_grad_(name.startswith("detail."))
    if resuming:
        run = AdversarialTraining.resume(args.out, log, cfg, GeometryDecoder, device, args.max_minutes, prepare)
    else:
        torch.manual_seed(cfg.seed)
        start = (GeometryDecoder.extended(GeometryDecoder.from_pretrained(args.init), **options).train()
                 if args.init is not None else GeometryDecoder.from_autoencoder(ae, **options))
        prepare(start)
        run = AdversarialTraining(args.out, log, cfg, start, device, args.max_minutes)
    if cfg.adv_weight > 0:
        run.attach_adversary(cfg, device, args.resume)
    dec = run.model
    log({"event": "start", "step": run.step, "train_scenes": len(train), "val_scenes": len(val), "latent_std": z_std,
         "params": sum(p.numel() for p in dec.parameters()), "threads": torch.get_num_threads(),
         "autoencoder": str(args.autoencoder), "denoiser": str(args.denoiser), "init": str(args.init), "config": asdict(cfg),
         "model": {k: v for k, v in dec.config.items() if not k.startswith("_")}})

    def views(data: ImageDataset, data_z: ImageDataset, idx, look):
        """(targets [N, 3, H, W], clean latents [N, C, h, w], condition) of scenes idx with looks look."""
        x, cond = data.batch(idx, look, np.zeros(len(idx), bool), 1, channels=ae.config.latent_channels,
                             geometry_stride=stride)
        z = torch.stack([torch.from_numpy(data_z.samples[i].preview[l].astype(np.float32)) for i, l in zip(idx, look)])
        return x.flatten(0, 1), z.flatten(0, 1), cond

    def loss_of(x, z, cond, step: int, noise_seed: int) -> torch.Tensor:
        cond = cond.to(device)
        y = dec(z.to(device), cond, noise_seed=noise_seed)
        x = x.to(device)
        if cfg.object_weight != 1.0:  # a weighted mean: the loss keeps its scale
            w = object_weights(cond, tuple(y.shape[-2:]), cfg.object_weight).flatten(0, 1)
            rec = (((y - x).abs() + (y - x) ** 2) * w).mean() / w.mean()
        else:
            rec = (y - x).abs().mean() + F.mse_loss(y, x)
        if run.adversary is None:
            return rec
        return run.adversarial_loss(rec, x, y, cond.semantic.flatten(0, 1), cond.view_styles(), step,
                                    dec.decoder.conv_out.weight, cfg, cfg.fm_weight)

    def loss_at(step: int) -> torch.Tensor:
        rng = np.random.default_rng([cfg.seed, step])
        idx, look = rng.integers(len(train), size=cfg.batch), rng.integers(LOOKS, size=cfg.batch)
        x, z, cond = views(train, train_z, idx, look)
        n = len(z)
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        clean = torch.from_numpy(rng.random(n) < cfg.p_clean)
        if cfg.p_blank > 0 and rng.random() < cfg.p_blank:  # (no draw otherwise: earlier runs' streams stay)
            z = torch.zeros_like(z)
        elif denoiser is not None and rng.random() < cfg.p_denoised:  # the whole scene: the UNet sees all views
            t = int(rng.integers(1, max(2, int(cfg.t_max * T))))
            coarse = cond.coarsened(up)  # what the denoiser reads
            soft = (resampled(denoiser, z, coarse, t, cfg.resample_steps, gen) if rng.random() < cfg.p_resampled
                    else denoised(denoiser, z, coarse, t, gen))
            z = torch.where(clean[:, None, None, None], z, soft)
        else:
            strength = torch.from_numpy(rng.random(n)).float() * cfg.noise_max * z_std * (~clean)
            blur = torch.from_numpy(rng.random(n) < cfg.p_blur) & ~clean
            z = degrade(z, strength, blur, gen)
        if cfg.crop_h and cfg.crop_w:  # one window per step, on the latent grid
            ch, cw = min(cfg.crop_h, x.shape[-2]) // f, min(cfg.crop_w, x.shape[-1]) // f
            i, j = int(rng.integers(z.shape[-2] - ch + 1)), int(rng.integers(z.shape[-1] - cw + 1))
            z = z[..., i:i + ch, j:j + cw]
            x = x[..., i * f:(i + ch) * f, j * f:(j + cw) * f]
            cond = crop_condition(cond, i * stride, j * stride, ch * stride, cw * stride)
        return loss_of(x, z, cond, step, int(rng.integers(2**31)))

    def split(cond: ImageCondition) -> list[ImageCondition]:
        """One condition per scene (the validation views are decoded scene by scene)."""
        part = lambda t, b: None if t is None else t[b:b + 1]  # noqa: E731
        return [replace(cond, **{k.name: part(getattr(cond, k.name), b) for k in fields(cond)}).to(device)
                for b in range(cond.batch_size)]

    vidx = np.arange(len(val))
    vlook = np.arange(len(val)) % LOOKS
    vx, vz, vcond = views(val, val_z, vidx, vlook)
    vx = vx.to(device)
    vx_detail = laplacian_energy(vx)  # the targets' fine detail, the sharpness figures' denominator
    vconds = split(vcond)  # decoded scene by scene
    nv = vcond.num_views
    vgen = torch.Generator().manual_seed(12345)
    vlatents = {"clean": vz, "degraded": degrade(vz, torch.full((len(vz),), cfg.val_noise * z_std),
                                                 torch.arange(len(vz)) % 2 == 0, vgen)}
    if cfg.p_blank >= 1:  # a pure regression: only its own task counts
        vlatents = {}
    if cfg.p_blank > 0:
        vlatents["blank"] = torch.zeros_like(vz)
    if denoiser is not None and cfg.p_blank < 1:
        vlatents["denoised"] = torch.cat([denoised(denoiser, vz[k * nv:(k + 1) * nv], c.coarsened(up),
                                                   int(cfg.val_t * T), vgen)
                                          for k, c in enumerate(vconds)])
        if cfg.p_resampled > 0:
            vlatents["resampled"] = torch.cat([resampled(denoiser, vz[k * nv:(k + 1) * nv], c.coarsened(up),
                                                         int(cfg.val_t * T), cfg.resample_steps, vgen)
                                               for k, c in enumerate(vconds)])

    def evaluate() -> dict:
        out = {}
        for name, z in vlatents.items():
            y = torch.cat([dec(z[k * nv:(k + 1) * nv].to(device), c) for k, c in enumerate(vconds)])
            out[f"val_loss_{name}"] = float((y - vx).abs().mean() + F.mse_loss(y, vx))
            out[f"val_psnr_{name}"] = psnr(y.cpu(), vx.cpu())
            out[f"val_sharpness_{name}"] = laplacian_energy(y) / vx_detail
        out["val_loss"] = float(np.mean([out[f"val_loss_{name}"] for name in vlatents]))
        out.update(run.adversarial_figures())
        return out

    if run.step == 0:  # the starting decoder's figures on the same views: the bar to beat
        with torch.no_grad():
            dec.eval()
            log({"step": 0, "event": "init_val", **evaluate()})
            dec.train()
    run.train(loss_at, evaluate)


if __name__ == "__main__":
    sys.exit(main())
