"""Pieces every training entry point shares: command-line overrides of a training-config dataclass and
the run log (JSON lines in OUT/log.jsonl, a readable line on stdout)."""

from __future__ import annotations

import argparse
import json
from dataclasses import fields
from pathlib import Path


def add_config_args(ap: argparse.ArgumentParser, config_cls) -> None:
    """One optional --flag per field of a dataclass (default None = keep the preset's value)."""
    for f in fields(config_cls):
        kind = (lambda s: s.lower() in ("1", "true", "yes")) if isinstance(f.default, bool) else type(f.default)
        ap.add_argument("--" + f.name.replace("_", "-"), type=kind, default=None)


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
