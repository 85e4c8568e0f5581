"""The shared diffusion training loop: it learns, keeps an EMA, evaluates with the EMA weights, stops on the
time budget, and a resumed run takes the same steps as an uninterrupted one."""

from __future__ import annotations

import json
import math
import os
import signal
from dataclasses import dataclass

import torch

from xscene_core.models.pretrained import Pretrained
from xscene_core.train.common import RunLog
from xscene_core.train.ema_training import EmaTraining


class Line(Pretrained, torch.nn.Module):
    def __init__(self, width: int = 4) -> None:
        super().__init__()
        self.config = dict(width=width)
        self.lin = torch.nn.Linear(width, 1)


@dataclass
class Cfg:
    steps: int = 12
    lr: float = 0.05
    warmup: int = 2
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.0
    grad_clip: float = 10.0
    ema_decay: float = 0.9
    log_every: int = 1
    eval_every: int = 4
    ckpt_every: int = 1


W_TRUE = torch.tensor([[1.0, -2.0, 0.5, 3.0]])


def loss_fn(model, interrupt_at: int | None = None):
    def loss_at(step: int) -> torch.Tensor:
        if step == interrupt_at:
            os.kill(os.getpid(), signal.SIGINT)  # as Ctrl-C would: the loop finishes the step and checkpoints
        x = torch.randn(16, 4, generator=torch.Generator().manual_seed(step))  # deterministic in the step
        return ((model.lin(x) - x @ W_TRUE.T) ** 2).mean()
    return loss_at


def evaluate_fn(model, seen: list):
    def evaluate() -> dict:
        seen.append((model.training, torch.is_grad_enabled()))
        x = torch.randn(64, 4, generator=torch.Generator().manual_seed(999))
        return {"val_loss": float(((model.lin(x) - x @ W_TRUE.T) ** 2).mean())}
    return evaluate


def run_to(out, steps: int, resume: bool, interrupt_at: int | None = None) -> EmaTraining:
    cfg, log = Cfg(steps=steps), RunLog(out)
    if resume:
        run = EmaTraining.resume(out, log, cfg, Line, torch.device("cpu"))
    else:
        torch.manual_seed(0)
        run = EmaTraining(out, log, cfg, Line(), torch.device("cpu"))
    seen: list = []
    run.train(loss_fn(run.model, interrupt_at), evaluate_fn(run.model, seen))
    assert seen and all(s == (False, False) for s in seen)  # evaluated in eval mode, without gradients
    return run


def test_learns_keeps_the_best_ema_and_writes_final(tmp_path):
    run = run_to(tmp_path, 12, resume=False)
    lines = [json.loads(s) for s in (tmp_path / "log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in lines if "loss" in r]
    assert losses[-1] < 0.5 * losses[0]
    vals = [r["val_loss"] for r in lines if "val_loss" in r]
    assert run.best == min(vals) < math.inf
    assert (tmp_path / "best" / "model.safetensors").exists() and (tmp_path / "final" / "model.safetensors").exists()
    final = Line.from_pretrained(tmp_path / "final")
    assert torch.equal(final.lin.weight, run.ema["lin.weight"])           # final/ holds the EMA weights
    assert not torch.equal(run.ema["lin.weight"], run.model.lin.weight)   # which differ from the raw ones


def test_a_resumed_run_matches_an_uninterrupted_one(tmp_path):
    whole = run_to(tmp_path / "whole", 10, resume=False)
    handler = signal.getsignal(signal.SIGINT)
    stopped = run_to(tmp_path / "split", 10, resume=False, interrupt_at=5)
    assert stopped.step == 6 and not (tmp_path / "split" / "final").exists()  # stopped after the step it was in
    assert signal.getsignal(signal.SIGINT) is handler  # Ctrl-C works as before once the loop is over
    resumed = run_to(tmp_path / "split", 10, resume=True)
    assert resumed.step == whole.step == 10
    assert torch.allclose(resumed.model.lin.weight, whole.model.lin.weight, atol=1e-6)
    assert torch.allclose(resumed.ema["lin.weight"], whole.ema["lin.weight"], atol=1e-6)


def test_the_time_budget_ends_the_run_with_a_checkpoint(tmp_path):
    cfg, log = Cfg(steps=10_000), RunLog(tmp_path)
    torch.manual_seed(0)
    run = EmaTraining(tmp_path, log, cfg, Line(), torch.device("cpu"), max_minutes=1e-9)
    run.train(loss_fn(run.model), evaluate_fn(run.model, []))
    assert run.step == 1
    state = json.loads((tmp_path / "checkpoint" / "train_state.json").read_text())
    assert state["step"] == 1 and "time budget" in (tmp_path / "log.jsonl").read_text()


def test_batch_prefetch_gives_each_step_its_own_batch_ahead_or_in_line():
    from xscene_core.train.image_diffusion import BatchPrefetch

    made = []

    def make(step):
        made.append(step)
        return ("batch", step)

    ahead, inline = BatchPrefetch(make, True), BatchPrefetch(make, False)
    assert [ahead(s) for s in (0, 1, 2)] == [("batch", s) for s in (0, 1, 2)]
    assert ahead(7) == ("batch", 7)  # a jump (a resumed run) is built in line, not taken from the queue
    assert ahead(8) == ("batch", 8)
    ahead.pool.shutdown(wait=True)
    assert sorted(made) == [0, 1, 2, 3, 7, 8, 9]  # each step built once: 1, 2 and 8 came from the queue
    made.clear()
    assert inline(3) == ("batch", 3) and made == [3] and inline.pool is None

    fresh = BatchPrefetch(make, True)
    made.clear()
    fresh(0)
    fresh.invalidate()  # the data changed: step 1 is built again, not taken from the queue
    assert fresh(1) == ("batch", 1)
    fresh.pool.shutdown(wait=True)
    assert sorted(made) == [0, 1, 1, 2]
