"""Saving and loading models as a folder of config.json (the constructor's kwargs) + model.safetensors.

Only safetensors are read, never pickles. A model mixes in `Pretrained` and keeps its constructor kwargs
in `self.config` (a plain JSON-able dict).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
_CLASS_KEYS = ("_class_name", "model")  # "model" is what early layout checkpoints wrote


def widened_inputs(saved: torch.Tensor, channels: int) -> torch.Tensor:
    """Convolution weights saved with fewer input channels, [O, I, k, k] -> [O, channels, k, k]: the saved
    filters on the first I channels, zeros on the new, so a model that gained inputs starts as it was saved."""
    return torch.cat([saved, saved.new_zeros(saved.shape[0], channels - saved.shape[1], *saved.shape[2:])], 1)


class Pretrained:
    """save_pretrained / from_pretrained for an nn.Module whose kwargs are in `self.config`."""

    config: dict

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write config.json and model.safetensors into `directory` (the weights atomically)."""
        return write_pretrained(directory, {k: v.detach().cpu() for k, v in self.state_dict().items()},
                                {"_class_name": type(self).__name__, **self.config})

    @classmethod
    def from_pretrained(cls, directory: str | Path, map_location: str | torch.device = "cpu"):
        """Load a folder written by save_pretrained; ValueError when it is not one, or holds another class."""
        from safetensors.torch import load_file

        d = Path(directory)
        if not (d / CONFIG_NAME).exists() or not (d / WEIGHTS_NAME).exists():
            raise ValueError(f"{d}: not a {cls.__name__} folder (needs {CONFIG_NAME} and {WEIGHTS_NAME})")
        cfg = json.loads((d / CONFIG_NAME).read_text())
        names = [cfg.pop(k) for k in _CLASS_KEYS if k in cfg]
        if names and names[0] != cls.__name__:
            raise ValueError(f"{d}: holds a {names[0]}, not a {cls.__name__}")
        model = cls(**cfg)
        model.load_state_dict(load_file(str(d / WEIGHTS_NAME), device=str(map_location)), strict=True)
        return model.eval()


def write_pretrained(directory: str | Path, tensors: dict, config: dict) -> Path:
    """Write `tensors` as model.safetensors (beside, then renamed: a crash leaves no half file) and `config`
    as config.json into `directory`; returns it."""
    from safetensors.torch import save_file

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / (WEIGHTS_NAME + ".tmp")
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))
    tmp.replace(d / WEIGHTS_NAME)
    (d / CONFIG_NAME).write_text(json.dumps(config, indent=1))
    return d
