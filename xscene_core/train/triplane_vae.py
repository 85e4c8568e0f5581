"""Train the triplane VAE:

    python -m xscene_core.train.triplane_vae --preset tiny --worlds 24 --out runs/vae [--steps N] [--resume]
    python -m xscene_core.train.triplane_vae --preset tiny --data DATASET_DIR --out runs/vae
    python -m xscene_core.train.triplane_vae --init checkpoints/triplane_vae --freeze-encoder --worlds 24 --out runs/vae_dec

Training chunks come from a dataset folder written by `python -m xscene_core.data.build` (its train/ and
val/ chunk folders) or are generated from the first N `train` worlds of the synthetic world (one chunk
per environment per world; cached as .npz under --cache). Validation uses `val` worlds; held-out `test`
worlds are left for `xscene_core.eval`. Each step encodes a batch of volumes (random x/y flips) and
decodes query points (all occupied voxels up to a cap, free voxels next to them, random free voxels);
the loss is class-weighted cross-entropy (weights (max f / f)^(1/3) of the training class frequencies)
+ Lovasz-softmax (+ KL for the variational model). AdamW, linear warm-up then cosine decay.

Every --log-every steps a line goes to OUT/log.jsonl and stdout; every --eval-every steps the val mIoU/IoU
too. OUT/checkpoint/ (model + optimizer + step) is written every --ckpt-every steps and on SIGINT/SIGTERM;
--resume continues from it (a different --steps on resume reshapes the rest of the cosine schedule).
--init starts from a trained VAE; with --freeze-encoder only the decoder learns, so the latent space (and
data.latent_dataset.vae_hash, which digests the encoder alone) is unchanged and a diffusion model trained on
it keeps working with the better decoder. --max-minutes sets a wall-time budget over all resumed runs: the schedule then also decays with the time spent
and training ends when it is spent. OUT/best/ holds the weights with the best val mIoU, OUT/final/ the last
ones (both save_pretrained folders). --device cuda (the default when CUDA is present) trains on a GPU.

Paper scale on a GPU (Occ3D-nuScenes `gts` tree, or a large synthetic dataset from xscene_core.data.build,
placed so that DIR/train/**/labels.npz and DIR/val/**/labels.npz exist):

    python -m xscene_core.train.triplane_vae --preset paper --data DIR --out runs/vae_paper --resume
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .. import semantics
from ..data.splits import world_seeds
from ..eval.occupancy_metrics import evaluate_reconstruction
from ..models.lovasz import lovasz_softmax
from ..models.triplane_vae import PRESETS, TriplaneVAE, index_to_points
from ..types.scene import ENVIRONMENTS
from .common import (RunLog, add_config_args, apply_config_args, learning_rate, optimizer_state, optimizer_tensors,
                     swap_in)
from .ema_training import adamw


@dataclass
class TrainConfig:
    """Training settings (the model's own settings are its preset)."""

    steps: int = 2000
    """optimiser steps in all (the cosine schedule spans them)"""
    batch: int = 1
    """volumes per step"""
    points: int = 40000
    """query points per volume"""
    occupied_share: float = 0.6
    """share of the query points given to occupied voxels (all of them when fewer)"""
    near_share: float = 0.25
    """share given to free voxels next to an occupied one; the rest are random free voxels"""
    lr: float = 1e-3
    """peak learning rate"""
    weight_decay: float = 0.01
    warmup: int = 100
    """linear warm-up steps"""
    min_lr_ratio: float = 0.02
    """final learning rate as a share of the peak"""
    grad_clip: float = 1.0
    lovasz_weight: float = 1.0
    freeze_encoder: bool = False
    """train the decoder only (start from --init): the latents, and the diffusion models trained on them, stay valid"""
    seed: int = 0
    log_every: int = 10
    eval_every: int = 200
    ckpt_every: int = 100
    val_chunks: int = 4
    """validation chunks (from val worlds) per evaluation"""


TRAIN_PRESETS: dict[str, dict] = {
    "tiny": dict(steps=2000, batch=1, points=40000, eval_every=200, val_chunks=4),
    "paper": dict(steps=100000, batch=8, points=120000, eval_every=2000, val_chunks=24, ckpt_every=1000),
}


# -- data ------------------------------------------------------------------------------------------------
def _chunk_path(cache: Path, split: str, seed: int, k: int) -> Path:
    from ..data.world import WORLD_VERSION

    return cache / f"world-v{WORLD_VERSION}" / split / f"w{seed:06d}_{k}.npz"


def synthetic_volumes(split: str, n_worlds: int, cache: Path | None, log=print) -> list[np.ndarray]:
    """Label volumes of the first `n_worlds` worlds of `split`, one chunk per environment, cached."""
    from ..data.world import SyntheticWorld

    out = []
    seeds = world_seeds(split)
    t0 = time.time()
    for w in range(n_worlds):
        s, world = next(seeds), None
        for k, env in enumerate(ENVIRONMENTS):
            p = _chunk_path(cache, split, s, k) if cache else None
            if p is not None and p.exists():
                with np.load(p) as d:
                    out.append(d["labels"])
                continue
            world = world or SyntheticWorld(s)
            x, y = world.find_location(env, start=k)
            lab = world.chunk(x, y).occupancy.labels
            if p is not None:
                p.parent.mkdir(parents=True, exist_ok=True)
                tmp = p.with_suffix(".tmp.npz")
                np.savez_compressed(tmp, labels=lab)
                tmp.replace(p)
            out.append(lab)
        if world is not None:
            log(f"{split}: world {s} generated ({w + 1}/{n_worlds}, {time.time() - t0:.0f} s)")
    return out


class DatasetVolumes(Sequence):
    """Label volumes of a dataset folder's split, read on access: every labels.npz under DIR/<split>/
    (the builder's <split>/<chunk>/labels.npz; Occ3D's gts/<scene>/<token>/labels.npz also fits)."""

    def __init__(self, root: Path, split: str) -> None:
        self.paths = sorted((Path(root) / split).rglob("labels.npz"))

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> np.ndarray:
        from ..data.occ3d import read_labels_npz

        return read_labels_npz(self.paths[i]).labels


def class_weights(volumes: Sequence[np.ndarray], max_volumes: int = 500) -> torch.Tensor:
    """(max f / f)^(1/3) of the class frequencies (over up to max_volumes evenly spread volumes); absent
    classes get the largest weight."""
    picks = np.unique(np.linspace(0, len(volumes) - 1, min(len(volumes), max_volumes)).round().astype(int))
    counts = sum(np.bincount(volumes[int(i)].ravel(), minlength=semantics.NUM_CLASSES) for i in picks).astype(np.float64)
    w = np.zeros_like(counts)
    present = counts > 0
    w[present] = (counts.max() / counts[present]) ** (1 / 3)
    w[~present] = w[present].max() if present.any() else 1.0
    return torch.tensor(w, dtype=torch.float32)


def sample_queries(labels: torch.Tensor, n: int, gen: torch.Generator, occupied_share: float = 0.6,
                   near_share: float = 0.25) -> torch.Tensor:
    """Query voxel indices int64 [n, 3] of one volume labels [X, Y, Z]: occupied voxels (all of them, or a
    random subset of occupied_share * n), free voxels next to an occupied one (near_share * n) and random
    free voxels for the rest."""
    occ = labels != semantics.FREE
    near = F.max_pool3d(occ[None, None].float(), 3, stride=1, padding=1)[0, 0].bool() & ~occ
    far = ~occ & ~near

    def pick(mask: torch.Tensor, k: int) -> torch.Tensor:
        idx = mask.flatten().nonzero().flatten()
        if k <= 0 or idx.numel() == 0:
            return idx[:0]
        if idx.numel() > k:
            idx = idx[torch.randperm(idx.numel(), generator=gen)[:k]]
        return idx

    a = pick(occ, int(occupied_share * n))
    b = pick(near, int(near_share * n) + int(occupied_share * n) - a.numel())
    c = pick(far, n - a.numel() - b.numel())
    if a.numel() + b.numel() + c.numel() < n:  # a tiny or odd volume: top up with any voxels
        c = torch.cat([c, torch.randint(0, labels.numel(), (n - a.numel() - b.numel() - c.numel(),), generator=gen)])
    flat = torch.cat([a, b, c])
    X, Y, Z = labels.shape
    return torch.stack([flat // (Y * Z), (flat // Z) % Y, flat % Z], dim=-1)


def make_batch(volumes: Sequence[np.ndarray], step: int, cfg: TrainConfig, grid_shape) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(labels long [B, X, Y, Z], points [B, N, 3], targets long [B, N]) for one step; deterministic in
    (seed, step), so a resumed run sees the same batches."""
    rng = np.random.default_rng([cfg.seed, step])
    gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
    labs, pts, tgts = [], [], []
    for _ in range(cfg.batch):
        lab = volumes[int(rng.integers(len(volumes)))]
        if rng.random() < 0.5:
            lab = lab[::-1]
        if rng.random() < 0.5:
            lab = lab[:, ::-1]
        lab = torch.from_numpy(np.ascontiguousarray(lab)).long()
        idx = sample_queries(lab, cfg.points, gen, cfg.occupied_share, cfg.near_share)
        labs.append(lab)
        pts.append(index_to_points(idx, grid_shape))
        tgts.append(lab[idx[:, 0], idx[:, 1], idx[:, 2]])
    return torch.stack(labs), torch.stack(pts), torch.stack(tgts)


# -- loss and schedule -------------------------------------------------------------------------------------
def vae_loss(model: TriplaneVAE, labels: torch.Tensor, points: torch.Tensor, targets: torch.Tensor,
             weights: torch.Tensor | None, lovasz_weight: float = 1.0) -> dict[str, torch.Tensor]:
    """{"loss", "ce", "lovasz", "kl"} of one batch."""
    logits, mean, logvar = model(labels, points)
    flat, tgt = logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)
    ce = F.cross_entropy(flat, tgt, weight=weights)
    lov = torch.stack([lovasz_softmax(lg.softmax(-1), t) for lg, t in zip(logits, targets)]).mean()
    kl = model.kl_loss(mean, logvar)
    return {"loss": ce + lovasz_weight * lov + model.kl_weight * kl, "ce": ce, "lovasz": lov, "kl": kl}


# -- checkpoints -------------------------------------------------------------------------------------------
def save_checkpoint(out: Path, model: TriplaneVAE, opt: torch.optim.Optimizer, step: int, extra: dict) -> None:
    """OUT/checkpoint/: config.json + model.safetensors + optimizer.safetensors + train_state.json (step,
    settings, the optimizer's non-tensor state); written beside and swapped in, so a crash leaves the
    previous checkpoint intact. Safetensors and JSON only: nothing is unpickled on resume."""
    from safetensors.torch import save_file

    tmp = out / "checkpoint.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tensors, meta = optimizer_tensors(opt)
    save_file(tensors, str(tmp / "optimizer.safetensors"))
    (tmp / "train_state.json").write_text(json.dumps({"step": step, "optimizer": meta, **extra}, indent=1))
    swap_in(tmp, out / "checkpoint")


def load_checkpoint(out: Path) -> tuple[TriplaneVAE, dict]:
    """(model, train state with "optimizer" as a state dict) from OUT/checkpoint."""
    from safetensors.torch import load_file

    d = out / "checkpoint"
    model = TriplaneVAE.from_pretrained(d)
    state = json.loads((d / "train_state.json").read_text())
    state["optimizer"] = optimizer_state(load_file(str(d / "optimizer.safetensors")), state["optimizer"])
    return model, state


# -- main ----------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=sorted(PRESETS), default="tiny", help="model (and training) preset")
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--data", type=Path, help="dataset folder written by xscene_core.data.build")
    src.add_argument("--worlds", type=int, default=None, help="train on chunks of the first N train worlds (default 24)")
    ap.add_argument("--val-worlds", type=int, default=1, help="val worlds to draw validation chunks from (with --worlds)")
    ap.add_argument("--cache", type=Path, default=Path("runs/vae_cache"), help="cache of generated chunks")
    ap.add_argument("--out", type=Path, required=True, help="run folder (log, checkpoints)")
    ap.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint")
    ap.add_argument("--init", type=Path, default=None,
                    help="start a new run from the weights of this VAE folder (its config replaces the preset's)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (1 is fastest on a busy 2-core machine)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu or cuda (default: cuda when present)")
    ap.add_argument("--max-minutes", type=float, default=None,
                    help="wall-time budget of the run (resumed runs included): the cosine schedule ends and training "
                         "stops (with a checkpoint) when it is spent, if that comes before --steps")
    add_config_args(ap, TrainConfig)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    log = RunLog(args.out)
    cfg = apply_config_args(TrainConfig(**TRAIN_PRESETS.get(args.preset, {})), args)

    # model, optimiser, state
    if args.resume and (args.out / "checkpoint").exists():
        model, state = load_checkpoint(args.out)
        step = int(state["step"])
        best = float(state.get("best_val_miou", -1.0))
        elapsed_before = float(state.get("elapsed_s", 0.0))
        # a decoder-only run stays one: its optimizer holds the decoder's parameters alone
        cfg.freeze_encoder = cfg.freeze_encoder or json.loads(state.get("train_config", "{}")).get("freeze_encoder", False)
        log(f"resumed from {args.out / 'checkpoint'} at step {step}")
    else:
        if args.resume:
            log(f"no checkpoint in {args.out}; starting fresh")
        torch.manual_seed(cfg.seed)
        model = TriplaneVAE.from_pretrained(args.init) if args.init else TriplaneVAE.from_preset(args.preset)
        state, step, best, elapsed_before = None, 0, -1.0, 0.0
    if cfg.freeze_encoder:
        if not (args.init or args.resume):
            sys.exit("--freeze-encoder needs --init VAE_DIR (a trained encoder to keep)")
        model.freeze_encoder()
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    model.to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = adamw(model, cfg)
    if state is not None:
        opt.load_state_dict(state["optimizer"])

    # data
    if args.data is not None:
        train, val = DatasetVolumes(args.data, "train"), DatasetVolumes(args.data, "val")
        source = f"dataset {args.data}"
    else:
        n = args.worlds or 24
        train = synthetic_volumes("train", n, args.cache, log)
        val = synthetic_volumes("val", args.val_worlds, args.cache, log)
        source = f"synthetic world: {n} train worlds x {len(ENVIRONMENTS)} chunks"
    if not train:
        sys.exit("no training chunks found")
    val = [val[i] for i in range(min(len(val), cfg.val_chunks))]
    weights = class_weights(train).to(device)
    log({"event": "start", "step": step, "preset": args.preset, "init": str(args.init or ""), "source": source, "train_chunks": len(train),
         "val_chunks": len(val), "params": sum(p.numel() for p in model.parameters()), "threads": torch.get_num_threads(),
         "config": asdict(cfg), "model": model.config})

    stop = {"signal": None}

    def on_signal(signum, frame):
        stop["signal"] = signum

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    def checkpoint() -> None:
        save_checkpoint(args.out, model, opt, step, {"best_val_miou": best, "train_config": json.dumps(asdict(cfg)),
                                                      "class_weights": weights.cpu().tolist(), "elapsed_s": elapsed()})

    last_eval = {"step": -1}

    def finish() -> None:
        nonlocal best
        if val and last_eval["step"] != step:
            m = evaluate()
            log({"step": step, **m})
            if m["val_miou"] > best:
                best = m["val_miou"]
                model.save_pretrained(args.out / "best")
        checkpoint()
        model.save_pretrained(args.out / "final")
        log({"event": "done", "step": step, "best_val_miou": best, "elapsed_s": elapsed()})

    def evaluate() -> dict:
        model.eval()
        t = time.time()
        last_eval["step"] = step
        conf = evaluate_reconstruction(model, val)
        model.train()
        return {"val_miou": 100 * conf.miou(), "val_iou": 100 * conf.iou(), "eval_s": time.time() - t}

    t_start, t_last, steps_since, sums = time.time(), time.time(), 0, {}
    budget = 60 * args.max_minutes if args.max_minutes else None

    def elapsed() -> float:
        return elapsed_before + time.time() - t_start

    while step < cfg.steps:
        lr = learning_rate(step, cfg, elapsed() / budget if budget else 0.0)
        for g in opt.param_groups:
            g["lr"] = lr
        labels, points, targets = (t.to(device) for t in make_batch(train, step, cfg, model.grid_shape))
        losses = vae_loss(model, labels, points, targets, weights, cfg.lovasz_weight)
        opt.zero_grad(set_to_none=True)
        losses["loss"].backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        step += 1
        steps_since += 1
        for k, v in losses.items():
            sums[k] = sums.get(k, 0.0) + float(v.detach())
        if step % cfg.log_every == 0 or step == cfg.steps:
            now = time.time()
            log({"step": step, **{k: v / steps_since for k, v in sums.items()}, "lr": lr,
                 "steps_per_s": steps_since / (now - t_last), "elapsed_s": elapsed()})
            t_last, steps_since, sums = now, 0, {}
        if val and (step % cfg.eval_every == 0 or step == cfg.steps):
            m = evaluate()
            log({"step": step, **m})
            if m["val_miou"] > best:
                best = m["val_miou"]
                model.save_pretrained(args.out / "best")
            t_last = time.time()
        if budget is not None and elapsed() > budget:
            log(f"time budget of {args.max_minutes} min spent at step {step}")
            finish()
            return
        if step % cfg.ckpt_every == 0 or stop["signal"] is not None:
            checkpoint()
        if stop["signal"] is not None:
            log(f"stopped at step {step} (signal {stop['signal']}); "
                f"checkpoint in {args.out / 'checkpoint'}, continue with --resume")
            return
    finish()


if __name__ == "__main__":
    main()
