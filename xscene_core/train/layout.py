"""Train the layout diffusion model on (scene graph, layout) pairs of the synthetic world.

    python -m xscene_core.train.layout --preset tiny --out runs/layout [--steps N] [--resume]

Data: runs/layout_data/{train,val}.jsonl (xscene_core.data.layout_dataset; built here when missing)
from `train` worlds, validation on `val` worlds; held-out `test` worlds are never read. Logs loss and
validation metrics to OUT/log.jsonl; writes OUT/last/ (EMA weights + optimizer state, resumable) every
--ckpt-every steps and OUT/best/ (the EMA weights with the best validation score). --time-budget-min
stops early with a checkpoint.

Augmentation (ours): with probability --jitter-prob a graph's coarse geometry (object locations,
headings, sizes, lane points) is perturbed by up to --jitter-max-m metres while the targets stay
exact, so the model learns to place boxes from the graph's relations and lanes, not only to copy
the written location.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from ..data.layout_dataset import build_cache, load_cache
from ..eval.layout_metrics import DrivableRaster, LayoutScores, perturb_graph
from ..models.layout_diffusion import (GRAPH_LANE_POINTS, LANE, OBJECT, PRESETS, GraphBatch,
                                       LayoutDiffusion, collate, minilm_text_table)
from .common import optimizer_state, optimizer_tensors

VAL_NOISE_M = 1.0  # graph noise of the robustness half of the validation score


def _pad_targets(targets: list[np.ndarray], T: int) -> torch.Tensor:
    return torch.from_numpy(np.stack([np.pad(t, ((0, T - len(t)), (0, 0))) for t in targets]))


def jitter(batch: GraphBatch, model: LayoutDiffusion, prob: float, max_m: float, g: torch.Generator) -> GraphBatch:
    """A copy of the batch whose coarse geometry is perturbed (per graph: sigma ~ U(0, max_m) metres with
    probability `prob`, else none)."""
    B, T = batch.shape
    unit = 2.0 / model.bev_size  # metres -> diffusion units
    sigma = torch.rand(B, generator=g) * max_m * (torch.rand(B, generator=g) < prob).float()  # [B] metres
    s = sigma[:, None, None]
    geom = batch.geom.clone()
    obj = (batch.node_type == OBJECT)[..., None].float()
    lane = (batch.node_type == LANE)[..., None].float()
    # objects: location, log size, heading (about 5 degrees per metre of sigma)
    geom[..., 0:2] += obj * torch.randn(B, T, 2, generator=g) * s * unit
    geom[..., 2:5] += obj * torch.randn(B, T, 3, generator=g) * 0.03 * (s > 0).float()
    dyaw = torch.randn(B, T, 1, generator=g) * s * math.radians(5.0)
    sin, cos = geom[..., 5:6], geom[..., 6:7]
    rot_sin, rot_cos = sin * dyaw.cos() + cos * dyaw.sin(), cos * dyaw.cos() - sin * dyaw.sin()
    geom[..., 5:6] = obj * rot_sin + (1 - obj) * sin
    geom[..., 6:7] = obj * rot_cos + (1 - obj) * cos
    # lanes: a common shift plus per-point noise (smaller: lanes are drawn from the map)
    n = 2 * GRAPH_LANE_POINTS
    shift = torch.randn(B, T, 1, 2, generator=g).expand(B, T, GRAPH_LANE_POINTS, 2).reshape(B, T, n)
    geom[..., :n] += lane * (0.3 * shift + 0.1 * torch.randn(B, T, n, generator=g)) * s * unit
    return GraphBatch(batch.node_type, batch.valid, batch.node_text, batch.pos_text, geom,
                      batch.edge_s, batch.edge_p, batch.edge_o)


def loss_weights(model: LayoutDiffusion) -> torch.Tensor:
    """float [D]: box centres count 4x (placement is what the metrics judge)."""
    w = torch.ones(model.state_dims)
    w[:2] = 4.0
    return w


# -- checkpoints (safetensors + JSON, no pickles) -----------------------------------------------------------

def save_checkpoint(folder: Path, model: LayoutDiffusion, ema: LayoutDiffusion, opt: torch.optim.Optimizer,
                    meta: dict) -> None:
    from safetensors.torch import save_file

    tmp = folder.with_name(folder.name + ".tmp")
    ema.save_pretrained(tmp)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    opt_tensors, opt_meta = optimizer_tensors(opt, prefix="opt.")
    save_file({**tensors, **opt_tensors}, str(tmp / "train_state.safetensors"))
    (tmp / "train_state.json").write_text(json.dumps({**meta, **opt_meta}, indent=1))
    if folder.exists():
        for f in folder.iterdir():
            f.unlink()
        folder.rmdir()
    tmp.rename(folder)


def load_checkpoint(folder: Path, model: LayoutDiffusion, ema: LayoutDiffusion, opt: torch.optim.Optimizer) -> dict:
    from safetensors.torch import load_file

    ema.load_state_dict(LayoutDiffusion.from_pretrained(folder).state_dict())
    tensors = load_file(str(folder / "train_state.safetensors"))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    meta = json.loads((folder / "train_state.json").read_text())
    opt.load_state_dict(optimizer_state(tensors, meta, prefix="opt."))
    meta.pop("param_groups")
    meta.pop("scalars", None)
    return meta


# -- validation --------------------------------------------------------------------------------------------

@torch.no_grad()
def validate(ema: LayoutDiffusion, val, val_enc, val_targets, n_graphs: int, seed: int) -> dict[str, float]:
    """Validation loss and layout metrics (clean graphs and graphs with VAL_NOISE_M of location noise)."""
    ema.eval()
    g = torch.Generator().manual_seed(seed)
    losses = []
    for i in range(0, len(val_enc), 32):
        dev = ema.text_table.device
        b = collate(val_enc[i:i + 32])
        x0 = _pad_targets(val_targets[i:i + 32], b.shape[1]).to(dev)
        losses.append(float(ema.loss(b.to(dev), x0, g)))
    out = {"val_loss": float(np.mean(losses))}
    rng = np.random.default_rng(seed)
    clean, noisy = LayoutScores(), LayoutScores()
    t0 = time.perf_counter()
    for k, s in enumerate(val[:n_graphs]):
        drivable = DrivableRaster.of(s.drivable)
        for graph, scores in ((s.graph, clean), (perturb_graph(s.graph, VAL_NOISE_M, rng), noisy)):
            state = ema.sample(collate([ema.encode_graph(graph)]).to(ema.text_table.device), torch.Generator().manual_seed(k))
            scores.add(s.graph, ema.decode(graph, state[0]), drivable)
    out["val_sample_s"] = (time.perf_counter() - t0) / max(1, 2 * min(n_graphs, len(val)))
    out.update({k.replace("layout_", "val_"): v for k, v in clean.figures().items()})
    out.update({k.replace("layout_", "val_") + "_noisy": v for k, v in noisy.figures("").items()})
    f, fn = clean.figures(), noisy.figures()
    out["val_score"] = float(np.mean([
        d["layout_relations"] + d["layout_cars_on_drivable"] - d["layout_boxes_colliding"] for d in (f, fn)]))
    return out


# -- main ----------------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--resume", action="store_true", help="continue from OUT/last")
    ap.add_argument("--data", type=Path, default=Path("runs/layout_data"), help="folder of train.jsonl / val.jsonl")
    ap.add_argument("--train-worlds", type=int, default=125, help="worlds to build when the data is missing")
    ap.add_argument("--val-worlds", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--ema", type=float, default=0.995)
    ap.add_argument("--jitter-prob", type=float, default=0.5)
    ap.add_argument("--jitter-max-m", type=float, default=1.5)
    ap.add_argument("--val-every", type=int, default=250)
    ap.add_argument("--ckpt-every", type=int, default=250)
    ap.add_argument("--val-graphs", type=int, default=32)
    ap.add_argument("--time-budget-min", type=float, default=None, help="stop (with a checkpoint) after this long")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="torch device (cuda for the paper preset)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-text-model", action="store_true", help="keep the placeholder text table (tests)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)

    # 1. Data (built once, then read from the cache).
    train_path, val_path = args.data / "train.jsonl", args.data / "val.jsonl"
    if not train_path.exists():
        build_cache(val_path, "val", args.val_worlds, starts=2, random_yaws=0, keep_drivable=True)
        build_cache(train_path, "train", args.train_worlds)
    train, val = load_cache(train_path), load_cache(val_path)
    print(f"data: {len(train)} train samples, {len(val)} val samples", flush=True)

    # 2. Model, EMA copy, optimizer.
    model = LayoutDiffusion.from_preset(args.preset).to(args.device)
    ema = LayoutDiffusion.from_preset(args.preset).to(args.device)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    meta = {"step": 0, "elapsed_s": 0.0, "best_score": -math.inf, "preset": args.preset}
    if args.resume and (out / "last").exists():
        meta.update(load_checkpoint(out / "last", model, ema, opt))
        print(f"resumed at step {meta['step']}", flush=True)
    else:
        if not args.no_text_model:
            model.text_table.copy_(minilm_text_table().to(args.device))
        model.fit_ground_table([b for s in train for b in s.target.boxes])
        ema.load_state_dict(model.state_dict())
    enc = [model.encode_graph(s.graph) for s in train]
    targets = [model.encode_target(s.graph, s.target) for s in train]
    val_enc = [model.encode_graph(s.graph) for s in val]
    val_targets = [model.encode_target(s.graph, s.target) for s in val]
    weights = loss_weights(model).to(args.device)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {args.preset}, {n_params / 1e6:.2f} M parameters", flush=True)

    def lr_at(step: int) -> float:
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        p = min(1.0, (step - args.warmup) / max(1, args.steps - args.warmup))
        return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)))

    log = (out / "log.jsonl").open("a")

    def record(entry: dict) -> None:
        log.write(json.dumps(entry) + "\n")
        log.flush()
        print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in entry.items()), flush=True)

    def checkpoint() -> None:
        meta["elapsed_s"] = elapsed()
        save_checkpoint(out / "last", model, ema, opt, meta)

    # 3. Train.
    t_start, elapsed0 = time.time(), meta["elapsed_s"]
    elapsed = lambda: elapsed0 + time.time() - t_start  # noqa: E731
    model.train()
    running = []
    step = meta["step"]
    while step < args.steps:
        g = torch.Generator().manual_seed(args.seed * 1_000_003 + step)  # the step's randomness, so resuming repeats it
        idx = torch.randint(0, len(enc), (args.batch_size,), generator=g).tolist()
        batch = collate([enc[i] for i in idx])
        x0 = _pad_targets([targets[i] for i in idx], batch.shape[1])
        batch = jitter(batch, model, args.jitter_prob, args.jitter_max_m, g).to(args.device)
        x0 = x0.to(args.device)
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        loss = model.loss(batch, x0, g, weights)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            decay = min(args.ema, (1 + step) / (10 + step))
            for pe, pm in zip(ema.parameters(), model.parameters()):
                pe.mul_(decay).add_(pm.detach(), alpha=1 - decay)
            for be, bm in zip(ema.buffers(), model.buffers()):
                be.copy_(bm)
        running.append(loss.item())
        step += 1
        meta["step"] = step
        if step % 50 == 0:
            record({"step": step, "loss": float(np.mean(running)), "lr": lr_at(step), "elapsed_s": round(elapsed(), 1)})
            running = []
        over = args.time_budget_min is not None and elapsed() > 60 * args.time_budget_min
        if step % args.val_every == 0 or step == args.steps or over:
            v = validate(ema, val, val_enc, val_targets, args.val_graphs, args.seed)
            record({"step": step, **v, "elapsed_s": round(elapsed(), 1)})
            if v["val_score"] > meta["best_score"]:
                meta["best_score"] = v["val_score"]
                meta["best_step"] = step
                ema.save_pretrained(out / "best")
                (out / "best" / "val_metrics.json").write_text(json.dumps({"step": step, **v}, indent=1))
            model.train()
        if step % args.ckpt_every == 0 or step == args.steps or over:
            checkpoint()
        if over:
            print(f"time budget reached at step {step}", flush=True)
            break
    log.close()
    print(f"done: step {step}, {elapsed():.0f} s, best step {meta.get('best_step')} (score {meta['best_score']:.4f})")


if __name__ == "__main__":
    main()
