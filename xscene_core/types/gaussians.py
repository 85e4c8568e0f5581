"""3D Gaussians of a scene (world frame)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class GaussianScene:
    """N 3D Gaussians as torch tensors.

    means: float [N, 3] metres; scales: float [N, 3] metres (standard deviations); quats: float [N, 4]
    (w, x, y, z); opacities: float [N] in [0, 1]; colors: float [N, 3] RGB in [0, 1];
    labels: uint8/int [N] Occ3D ids.
    """

    means: "torch.Tensor"  # noqa: F821
    scales: "torch.Tensor"  # noqa: F821
    quats: "torch.Tensor"  # noqa: F821
    opacities: "torch.Tensor"  # noqa: F821
    colors: "torch.Tensor"  # noqa: F821
    labels: "torch.Tensor"  # noqa: F821

    def __post_init__(self) -> None:
        import torch

        n = None
        for name, width in (("means", 3), ("scales", 3), ("quats", 4), ("opacities", None), ("colors", 3), ("labels", None)):
            t = getattr(self, name)
            if not isinstance(t, torch.Tensor):
                t = torch.as_tensor(np.asarray(t))
                setattr(self, name, t)
            n = t.shape[0] if n is None else n
            want = (n,) if width is None else (n, width)
            if tuple(t.shape) != want:
                raise ValueError(f"GaussianScene.{name}: expected shape {list(want)}, got {list(t.shape)}")
            if t.is_floating_point() and not torch.isfinite(t).all():
                raise ValueError(f"GaussianScene.{name}: contains NaN or infinite values")
        if (self.scales <= 0).any():
            raise ValueError("GaussianScene.scales: must be > 0")
        if ((self.opacities < 0) | (self.opacities > 1)).any():
            raise ValueError("GaussianScene.opacities: must lie in [0, 1]")

    def __len__(self) -> int:
        return int(self.means.shape[0])

    FIELDS = ("means", "scales", "quats", "opacities", "colors", "labels")

    def save(self, path) -> None:
        """safetensors file with the six tensors (a 3DGS PLY export lives with the Gaussian stage)."""
        from safetensors.torch import save_file

        save_file({k: getattr(self, k).detach().cpu().contiguous() for k in self.FIELDS}, str(path))

    @classmethod
    def load(cls, path) -> "GaussianScene":
        from safetensors.torch import load_file

        t = load_file(str(path))
        missing = set(cls.FIELDS) - set(t)
        if missing:
            raise ValueError(f"{path}: not a GaussianScene file, missing {sorted(missing)}")
        return cls(*(t[k] for k in cls.FIELDS))

    def to(self, device) -> "GaussianScene":
        return GaussianScene(*(getattr(self, k).to(device) for k in ("means", "scales", "quats", "opacities", "colors", "labels")))
