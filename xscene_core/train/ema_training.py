"""The training loop the diffusion trainers share: AdamW with warm-up + cosine learning rate, gradient
clipping, an EMA of the weights, a validation figure of the EMA weights every few steps (the best kept in
OUT/best/), crash-safe checkpoints (OUT/checkpoint/: model, EMA, optimizer, step; safetensors + JSON) every
few steps and on SIGINT / SIGTERM, a wall-time budget over all resumed runs, and OUT/final/ at the end.

A trainer builds its model (new, or `EmaTraining.resume` from OUT/checkpoint), then hands the loop two
functions: the loss of step `i` (deterministic in i, so a resumed run sees the same batches) and the
validation figures (called with the EMA weights in place, in eval mode; "val_loss" decides the best).
"""

from __future__ import annotations

import json
import math
import shutil
import signal
import time
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import torch

from .common import RunLog, learning_rate, optimizer_state, optimizer_tensors, swap_in


def adamw(model: torch.nn.Module, cfg) -> torch.optim.AdamW:
    """AdamW over the trainable parameters: weight decay cfg.weight_decay on matrices (embeddings excepted),
    none on biases, norms and embeddings."""
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decay = [p for n, p in params if p.ndim > 1 and "embed" not in n]
    no_decay = [p for n, p in params if not (p.ndim > 1 and "embed" not in n)]
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)


def save_checkpoint(out: Path, model, ema: dict[str, torch.Tensor], opt: torch.optim.Optimizer, step: int,
                    extra: dict, also: Callable[[Path], None] | None = None) -> None:
    """OUT/checkpoint/: the raw model (save_pretrained), ema.safetensors, optimizer.safetensors,
    train_state.json and whatever also(folder) writes there; written beside and swapped in, so a crash
    leaves the previous checkpoint intact."""
    from safetensors.torch import save_file

    tmp = out / "checkpoint.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    save_file({k: v.contiguous() for k, v in ema.items()}, str(tmp / "ema.safetensors"))
    tensors, meta = optimizer_tensors(opt)
    save_file(tensors, str(tmp / "optimizer.safetensors"))
    (tmp / "train_state.json").write_text(json.dumps({"step": step, "optimizer": meta, **extra}, indent=1))
    if also is not None:
        also(tmp)
    swap_in(tmp, out / "checkpoint")


def load_checkpoint(out: Path, model_cls) -> tuple[torch.nn.Module, dict[str, torch.Tensor], dict, dict]:
    """(model, EMA weights, optimizer state dict, train state) from OUT/checkpoint; nothing is unpickled."""
    from safetensors.torch import load_file

    d = out / "checkpoint"
    model = model_cls.from_pretrained(d)
    ema = load_file(str(d / "ema.safetensors"))
    state = json.loads((d / "train_state.json").read_text())
    opt_state = optimizer_state(load_file(str(d / "optimizer.safetensors")), state.pop("optimizer"))
    return model, ema, opt_state, state


def save_ema(model, ema: dict[str, torch.Tensor], directory: Path) -> None:
    """save_pretrained of the model with its EMA weights (the training weights are restored after)."""
    raw = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.load_state_dict(ema)
    model.save_pretrained(directory)
    model.load_state_dict(raw)


class EmaTraining:
    """One run of the loop. cfg needs steps, lr, warmup, min_lr_ratio, weight_decay, grad_clip, ema_decay,
    log_every, eval_every and ckpt_every; max_minutes is the wall-time budget (None: steps decide)."""

    def __init__(self, out: Path, log: RunLog, cfg, model, device: torch.device,
                 max_minutes: float | None = None, ema: dict[str, torch.Tensor] | None = None,
                 opt_state: dict | None = None, step: int = 0, best: float = math.inf, elapsed_s: float = 0.0) -> None:
        self.out, self.log, self.cfg, self.device = Path(out), log, cfg, device
        self.model = model.to(device).train()
        self.ema = {k: v.detach().clone().float().to(device) for k, v in (ema or model.state_dict()).items()}
        self.opt = adamw(self.model, cfg)
        if opt_state is not None:
            self.opt.load_state_dict(opt_state)
        self.step, self.best, self._elapsed_before = int(step), float(best), float(elapsed_s)
        self.budget = 60 * max_minutes if max_minutes else None
        self.max_minutes = max_minutes
        self._t_start = time.time()

    @classmethod
    def resume(cls, out: Path, log: RunLog, cfg, model_cls, device: torch.device,
               max_minutes: float | None = None, prepare: Callable[[torch.nn.Module], None] | None = None
               ) -> "EmaTraining":
        """The run saved in OUT/checkpoint, ready to go on; prepare(model), if given, runs before the
        optimizer is built (a run that froze parameters freezes them again)."""
        model, ema, opt_state, state = load_checkpoint(Path(out), model_cls)
        if prepare is not None:
            prepare(model)
        run = cls(out, log, cfg, model, device, max_minutes, ema, opt_state, int(state["step"]),
                  float(state.get("best_val_loss", math.inf)), float(state.get("elapsed_s", 0.0)))
        log(f"resumed from {Path(out) / 'checkpoint'} at step {run.step}")
        return run

    def elapsed(self) -> float:
        """Seconds of training over all resumed runs."""
        return self._elapsed_before + time.time() - self._t_start

    @contextmanager
    def ema_weights(self):
        """The EMA weights in the model, in eval mode, for the duration (the training weights come back)."""
        raw = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.model.load_state_dict(self.ema)
        self.model.eval()
        try:
            with torch.no_grad():
                yield self.model
        finally:
            self.model.load_state_dict(raw)
            self.model.train()

    def checkpoint(self) -> None:
        save_checkpoint(self.out, self.model, self.ema, self.opt, self.step,
                        {"best_val_loss": self.best, "elapsed_s": self.elapsed(), "train_config": asdict(self.cfg)},
                        self.save_more)

    def save_more(self, folder: Path) -> None:
        """Write a subclass's own state (beyond model, EMA and optimizer) into the checkpoint folder being
        written, so it is swapped in with them."""

    def _update_ema(self) -> None:
        d = min(self.cfg.ema_decay, (1 + self.step) / (10 + self.step))
        with torch.no_grad():
            for k, v in self.model.state_dict().items():
                if v.dtype.is_floating_point:
                    self.ema[k].mul_(d).add_(v.detach(), alpha=1 - d)
                else:
                    self.ema[k].copy_(v)

    def _evaluate(self, evaluate: Callable[[], dict]) -> None:
        t0 = time.time()
        with self.ema_weights():
            m = evaluate()
        self.log({"step": self.step, **m, "eval_s": time.time() - t0})
        if m["val_loss"] < self.best:
            self.best = m["val_loss"]
            save_ema(self.model, self.ema, self.out / "best")

    def _finish(self, reason: str, evaluate: Callable[[], dict]) -> None:
        self._evaluate(evaluate)
        self.checkpoint()
        save_ema(self.model, self.ema, self.out / "final")
        self.log({"event": "done", "reason": reason, "step": self.step, "best_val_loss": self.best,
                  "elapsed_s": self.elapsed()})

    def train(self, loss_at: Callable[[int], torch.Tensor], evaluate: Callable[[], dict],
              before_eval: Callable[[int], None] | None = None) -> None:
        """Steps until cfg.steps, the time budget or a signal. loss_at(step) -> scalar loss (with its graph);
        evaluate() -> {"val_loss": float, ...}; before_eval(step), if given, runs before each evaluation."""
        stop = {"signal": None}
        previous = {s: signal.signal(s, lambda n, f: stop.update(signal=n)) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            self._loop(loss_at, evaluate, before_eval, stop)
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    def _loop(self, loss_at, evaluate, before_eval, stop: dict) -> None:
        cfg = self.cfg
        params = [p for p in self.model.parameters() if p.requires_grad]
        t_last, since, loss_sum = time.time(), 0, 0.0
        while self.step < cfg.steps:
            lr = learning_rate(self.step, cfg, self.elapsed() / self.budget if self.budget else 0.0)
            for g in self.opt.param_groups:
                g["lr"] = lr
            loss = loss_at(self.step)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            gnorm = float(torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip))
            self.opt.step()
            self.step += 1
            self._update_ema()
            since += 1
            loss_sum += float(loss.detach())
            if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                now = time.time()
                self.log({"step": self.step, "loss": loss_sum / since, "grad_norm": gnorm, "lr": lr,
                          "steps_per_s": since / (now - t_last), "elapsed_s": self.elapsed()})
                t_last, since, loss_sum = now, 0, 0.0
            if self.step % cfg.eval_every == 0 and self.step < cfg.steps:
                if before_eval is not None:
                    before_eval(self.step)
                self._evaluate(evaluate)
                t_last = time.time()
            if self.budget is not None and self.elapsed() > self.budget:
                self.log(f"time budget of {self.max_minutes} min spent at step {self.step}")
                self._finish("time budget", evaluate)
                return
            if self.step % cfg.ckpt_every == 0 or stop["signal"] is not None:
                self.checkpoint()
            if stop["signal"] is not None:
                self.log(f"stopped at step {self.step} (signal {stop['signal']}); checkpoint in "
                         f"{self.out / 'checkpoint'}, continue with --resume")
                return
        self._finish("steps", evaluate)
