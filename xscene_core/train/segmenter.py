"""Train the alignment judge (models.segmenter) on preview renders of held-out worlds:

    python -m xscene_core.train.segmenter --out runs/segmenter [--max-minutes M] [--resume]

Data: the image cache's `val` split (xscene_core.data.image_dataset): preview looks with their semantic
renders. The diffusion model never trains on these worlds, and the metric runs on `test` worlds, so the
judge has seen neither the generator's training images nor the test scenes, and never a generated image.
The first --holdout-worlds val worlds are kept for the segmenter's own validation mIoU.

Each step: a batch of random views with random horizontal flips, cross-entropy (classes weighted by
inverse sqrt frequency so thin classes count). AdamW, warm-up + cosine over --steps or --max-minutes.
OUT/checkpoint/ (weights, optimizer, step) every --ckpt-every steps and on SIGINT / SIGTERM; OUT/best/ the
weights of the best validation mIoU.
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

import numpy as np
import torch
import torch.nn.functional as F

from .. import semantics
from ..data.image_dataset import add_styles_arg, cache_dir, cache_files, load_sample
from ..models.image_diffusion import PRESETS
from ..models.segmenter import Segmenter, confusion, miou
from .common import RunLog, add_config_args, apply_config_args, learning_rate, optimizer_state, optimizer_tensors, swap_in


@dataclass
class TrainConfig:
    steps: int = 1500
    batch: int = 16
    """views per step"""
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup: int = 50
    min_lr_ratio: float = 0.05
    seed: int = 0
    log_every: int = 20
    eval_every: int = 250
    ckpt_every: int = 100


def load_views(paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [N, h, w, 3], ids uint8 [N, h, w]): every look of every view of the files."""
    imgs, ids = [], []
    for p in paths:
        s = load_sample(p)
        for look in s.preview:
            imgs.append(look)
            ids.append(s.arrays.semantic)
    return np.concatenate(imgs), np.concatenate(ids)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, default=Path("runs/image_cache"))
    add_styles_arg(ap)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--holdout-worlds", type=int, default=2)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--max-minutes", type=float, default=None)
    add_config_args(ap, TrainConfig)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    log = RunLog(args.out)
    cfg = apply_config_args(TrainConfig(), args)
    size = tuple(PRESETS["tiny"]["sample_size"])
    paths = cache_files(cache_dir(args.cache, size, "val", styles=args.styles))
    worlds = sorted({p.name.split("_")[0] for p in paths})
    hold = set(worlds[: args.holdout_worlds])
    if len(worlds) <= len(hold):
        sys.exit(f"need more than {len(hold)} val worlds in {args.cache}")
    x_tr, y_tr = load_views([p for p in paths if p.name.split("_")[0] not in hold])
    x_va, y_va = load_views([p for p in paths if p.name.split("_")[0] in hold])
    freq = np.bincount(y_tr.ravel(), minlength=semantics.NUM_CLASSES).astype(np.float64)
    weight = torch.tensor(np.where(freq > 0, 1 / np.sqrt(np.maximum(freq, 1) / freq.sum()), 0.0), dtype=torch.float32)
    weight = weight / weight[freq > 0].mean()

    if args.resume and (args.out / "checkpoint").exists():
        from safetensors.torch import load_file

        model = Segmenter.from_pretrained(args.out / "checkpoint").train()
        state = json.loads((args.out / "checkpoint" / "train_state.json").read_text())
        opt_state = optimizer_state(load_file(str(args.out / "checkpoint" / "optimizer.safetensors")), state.pop("optimizer"))
        step, best, before = state["step"], state["best_miou"], state["elapsed_s"]
    else:
        torch.manual_seed(cfg.seed)
        model, opt_state, step, best, before = Segmenter(), None, 0, -1.0, 0.0
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    if opt_state is not None:
        opt.load_state_dict(opt_state)
    log({"event": "start", "step": step, "train_views": len(x_tr), "val_views": len(x_va),
         "params": sum(p.numel() for p in model.parameters()), "config": asdict(cfg)})

    def to_x(imgs: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(imgs)).float().permute(0, 3, 1, 2) / 127.5 - 1

    def evaluate() -> float:
        pred = model.predict(x_va)
        model.train()
        return miou(confusion(pred, y_va))

    stop = {"signal": None}
    signal.signal(signal.SIGINT, lambda s, f: stop.update(signal=s))
    signal.signal(signal.SIGTERM, lambda s, f: stop.update(signal=s))
    t0 = time.time()
    budget = 60 * args.max_minutes if args.max_minutes else None
    elapsed = lambda: before + time.time() - t0  # noqa: E731

    def checkpoint() -> None:
        from safetensors.torch import save_file

        tmp = args.out / "checkpoint.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp)
        tensors, meta = optimizer_tensors(opt)
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        (tmp / "train_state.json").write_text(json.dumps({"step": step, "best_miou": best, "elapsed_s": elapsed(),
                                                          "optimizer": meta}))
        swap_in(tmp, args.out / "checkpoint")

    def run_eval() -> None:
        nonlocal best
        m = evaluate()
        log({"step": step, "val_miou": m, "elapsed_s": elapsed()})
        if m > best:
            best = m
            model.save_pretrained(args.out / "best")

    model.train()
    loss_sum, since = 0.0, 0
    while step < cfg.steps:
        lr = learning_rate(step, cfg, elapsed() / budget if budget else 0.0)
        for g in opt.param_groups:
            g["lr"] = lr
        rng = np.random.default_rng([cfg.seed, step])
        idx = rng.integers(len(x_tr), size=cfg.batch)
        x, y = to_x(x_tr[idx]), torch.from_numpy(y_tr[idx].astype(np.int64))
        flip = torch.from_numpy(rng.random(cfg.batch) < 0.5)
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
        y = torch.where(flip.view(-1, 1, 1), y.flip(-1), y)
        loss = F.cross_entropy(model(x), y, weight=weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        loss_sum, since = loss_sum + float(loss.detach()), since + 1
        if step % cfg.log_every == 0:
            log({"step": step, "loss": loss_sum / since, "lr": lr, "elapsed_s": elapsed()})
            loss_sum, since = 0.0, 0
        if step % cfg.eval_every == 0:
            run_eval()
        if budget is not None and elapsed() > budget:
            break
        if step % cfg.ckpt_every == 0 or stop["signal"] is not None:
            checkpoint()
        if stop["signal"] is not None:
            log(f"stopped at step {step}; continue with --resume")
            return
    if step % cfg.eval_every:
        run_eval()
    checkpoint()
    log({"event": "done", "step": step, "best_val_miou": best, "elapsed_s": elapsed()})


if __name__ == "__main__":
    sys.exit(main())
