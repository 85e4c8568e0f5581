"""Pieces every training entry point shares: command-line overrides of a training-config dataclass, the
run log (JSON lines in OUT/log.jsonl, a readable line on stdout), the learning-rate schedule and
crash-safe checkpoint folders with the optimizer state in safetensors + JSON."""

from __future__ import annotations

import argparse
import json
import math
import shutil
from dataclasses import fields
from pathlib import Path

import torch


def add_config_args(ap: argparse.ArgumentParser, config_cls) -> None:
    """One optional --flag per field of a dataclass (default None = keep the preset's value); a bool field's
    flag alone means true, or takes 1/0, true/false, yes/no."""
    for f in fields(config_cls):
        name = "--" + f.name.replace("_", "-")
        if isinstance(f.default, bool):
            ap.add_argument(name, type=lambda s: s.lower() in ("1", "true", "yes"), nargs="?", const=True, default=None)
        else:
            ap.add_argument(name, type=type(f.default), default=None)


def apply_config_args(cfg, args: argparse.Namespace):
    """Copy the flags given on the command line onto the config; returns it."""
    for f in fields(cfg):
        v = getattr(args, f.name)
        if v is not None:
            setattr(cfg, f.name, v)
    return cfg


class RunLog:
    """log(dict) appends a JSON line to OUT/log.jsonl and prints key=value; log(str) only prints."""

    def __init__(self, out: Path) -> None:
        Path(out).mkdir(parents=True, exist_ok=True)
        self._file = (Path(out) / "log.jsonl").open("a")

    def __call__(self, msg: str | dict) -> None:
        if isinstance(msg, dict):
            self._file.write(json.dumps(msg) + "\n")
            self._file.flush()
            msg = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in msg.items())
        print(msg, flush=True)


def learning_rate(step: int, cfg, time_progress: float = 0.0) -> float:
    """Linear warm-up, then cosine decay to min_lr_ratio * lr over the remaining steps, or over the
    remaining wall time when a time budget is further along (time_progress in [0, 1]). cfg needs lr,
    warmup, steps and min_lr_ratio."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = min(1.0, max((step - cfg.warmup) / max(1, cfg.steps - cfg.warmup), time_progress))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


def optimizer_tensors(opt: torch.optim.Optimizer, prefix: str = "state.") -> tuple[dict[str, torch.Tensor], dict]:
    """An optimizer's state split for safetensors + JSON: (tensors named prefix + "<param>.<key>",
    meta with param_groups and the non-tensor state values)."""
    sd = opt.state_dict()
    tensors = {f"{prefix}{i}.{k}": v.detach().cpu().contiguous().reshape(v.shape)
               for i, st in sd["state"].items() for k, v in st.items() if torch.is_tensor(v)}
    meta = {"param_groups": sd["param_groups"],
            "scalars": {str(i): {k: v for k, v in st.items() if not torch.is_tensor(v)} for i, st in sd["state"].items()}}
    return tensors, meta


def optimizer_state(tensors: dict[str, torch.Tensor], meta: dict, prefix: str = "state.") -> dict:
    """The optimizer state_dict back from optimizer_tensors' two parts (other tensors are ignored)."""
    state: dict[int, dict] = {}
    for key, v in tensors.items():
        if key.startswith(prefix):
            i, k = key[len(prefix):].split(".", 1)
            state.setdefault(int(i), {})[k] = v
    for i, sc in meta.get("scalars", {}).items():
        state.setdefault(int(i), {}).update(sc)
    return {"state": state, "param_groups": meta["param_groups"]}


def swap_in(tmp: Path, final: Path) -> None:
    """Replace the folder `final` by the fully written folder `tmp`, so a crash at any moment leaves one
    complete checkpoint (the old one is moved aside first and removed last)."""
    old = final.with_name(final.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.replace(old)
    tmp.replace(final)
    shutil.rmtree(old, ignore_errors=True)
