"""The voxel grid (GridSpec), a semantic occupancy volume (Occupancy) and its triplane latent (Triplane)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import semantics
from ._checks import check_finite, check_positive, check_shape


# Height of the road surface in the ego/chunk frame (m): the Occ3D road voxels fill z < 0.2, the first
# voxel layer above is where objects start. The world, the condition maps and the renders share it.
ROAD_SURFACE_Z = 0.2


@dataclass(frozen=True)
class GridSpec:
    """A regular voxel grid in the ego/chunk frame (x forward, y left, z up; metres).

    The defaults are the Occ3D-nuScenes grid: 200 x 200 x 16 voxels of 0.4 m covering x, y in [-40, 40]
    and z in [-1, 5.4]. This object is the one place that holds those numbers.
    """

    shape: tuple[int, int, int] = (200, 200, 16)
    voxel_size: float = 0.4
    lower: tuple[float, float, float] = (-40.0, -40.0, -1.0)

    def __post_init__(self) -> None:
        if len(self.shape) != 3 or any(int(n) != n or n <= 0 for n in self.shape):
            raise ValueError(f"GridSpec.shape must be three positive ints, got {self.shape}")
        check_positive("GridSpec.voxel_size", self.voxel_size)
        if len(self.lower) != 3:
            raise ValueError(f"GridSpec.lower must have three values, got {self.lower}")
        check_finite("GridSpec.lower", *self.lower)

    @property
    def upper(self) -> tuple[float, float, float]:
        """Upper corner of the grid in metres."""
        return tuple(lo + n * self.voxel_size for lo, n in zip(self.lower, self.shape))  # type: ignore[return-value]

    def contains_xy(self, x: float, y: float) -> bool:
        """Whether the point (x, y) metres lies in the grid's footprint (lower bound in, upper bound out):
        the rule for "a box / an area is in this chunk"."""
        return self.lower[0] <= x < self.upper[0] and self.lower[1] <= y < self.upper[1]

    @property
    def extent(self) -> tuple[float, float, float]:
        """Size of the grid in metres along x, y, z."""
        return tuple(n * self.voxel_size for n in self.shape)  # type: ignore[return-value]

    def axis_centers(self, axis: int) -> np.ndarray:
        """Voxel-centre coordinates along one axis: float64 [shape[axis]]."""
        return self.lower[axis] + (np.arange(self.shape[axis]) + 0.5) * self.voxel_size

    def centers(self) -> np.ndarray:
        """All voxel centres: float64 [X, Y, Z, 3] in metres."""
        xs, ys, zs = (self.axis_centers(a) for a in range(3))
        return np.stack(np.meshgrid(xs, ys, zs, indexing="ij"), axis=-1)

    def index_of(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Voxel indices of points.

        points: float [..., 3] metres. Returns (index int64 [..., 3], inside bool [...]); indices of
        points outside the grid are clipped and flagged False in `inside`.
        """
        pts = np.asarray(points, dtype=np.float64)
        idx = np.floor((pts - np.asarray(self.lower)) / self.voxel_size).astype(np.int64)
        shape = np.asarray(self.shape)
        inside = np.all((idx >= 0) & (idx < shape), axis=-1)
        return np.clip(idx, 0, shape - 1), inside

    def to_dict(self) -> dict:
        return {"shape": list(self.shape), "voxel_size": self.voxel_size, "lower": list(self.lower)}

    @classmethod
    def from_dict(cls, d: dict) -> "GridSpec":
        return cls(tuple(int(v) for v in d["shape"]), float(d["voxel_size"]), tuple(float(v) for v in d["lower"]))


@dataclass
class Occupancy:
    """Semantic occupancy of one chunk.

    labels: uint8 [X, Y, Z] Occ3D ids (0 others ... 16 vegetation, 17 free), indexed [x, y, z].
    mask_lidar, mask_camera: optional bool [X, Y, Z] visibility masks as Occ3D stores them.
    """

    labels: np.ndarray
    grid: GridSpec = field(default_factory=GridSpec)
    mask_lidar: np.ndarray | None = None
    mask_camera: np.ndarray | None = None

    def __post_init__(self) -> None:
        labels = np.asarray(self.labels)
        check_shape("Occupancy.labels", labels.shape, self.grid.shape)
        if not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"Occupancy.labels: expected an integer array, got dtype {labels.dtype}")
        if labels.size and (labels.min() < 0 or labels.max() >= semantics.NUM_CLASSES):
            raise ValueError(f"Occupancy.labels: ids must lie in 0..{semantics.FREE}, got {labels.min()}..{labels.max()}")
        self.labels = labels.astype(np.uint8, copy=False)
        for name in ("mask_lidar", "mask_camera"):
            m = getattr(self, name)
            if m is not None:
                m = np.asarray(m)
                check_shape(f"Occupancy.{name}", m.shape, self.grid.shape)
                if m.dtype != bool and not (np.issubdtype(m.dtype, np.integer) and np.isin(m, (0, 1)).all()):
                    raise ValueError(f"Occupancy.{name}: expected bool or 0/1 integers, got dtype {m.dtype}")
                setattr(self, name, m.astype(bool))

    @property
    def occupied(self) -> np.ndarray:
        """bool [X, Y, Z]: voxels that are not free."""
        return self.labels != semantics.FREE

    def class_counts(self) -> np.ndarray:
        """int64 [18]: voxel count per Occ3D class."""
        return np.bincount(self.labels.ravel(), minlength=semantics.NUM_CLASSES)

    def save(self, path: str | Path) -> None:
        """Write an Occ3D `labels.npz` (see xscene_core.data.occ3d)."""
        from ..data.occ3d import write_labels_npz

        write_labels_npz(path, self)

    @classmethod
    def load(cls, path: str | Path, grid: GridSpec | None = None) -> "Occupancy":
        """Read an Occ3D `labels.npz`."""
        from ..data.occ3d import read_labels_npz

        return read_labels_npz(path, grid)


@dataclass
class Triplane:
    """Triplane latent of an occupancy volume: three feature planes.

    xy: float [C, X', Y'], xz: float [C, X', Z'], yz: float [C, Y', Z'] (torch tensors).
    """

    xy: "torch.Tensor"  # noqa: F821
    xz: "torch.Tensor"  # noqa: F821
    yz: "torch.Tensor"  # noqa: F821

    def __post_init__(self) -> None:
        import torch

        for name in ("xy", "xz", "yz"):
            t = getattr(self, name)
            if not isinstance(t, torch.Tensor):
                t = torch.as_tensor(np.asarray(t, dtype=np.float32))
                setattr(self, name, t)
            if t.ndim != 3:
                raise ValueError(f"Triplane.{name}: expected [C, H, W], got shape {list(t.shape)}")
            if not torch.isfinite(t).all():
                raise ValueError(f"Triplane.{name}: contains NaN or infinite values")
        c = self.xy.shape[0]
        (cx, x1, y1), (_, x2, z1), (_, y2, z2) = self.xy.shape, self.xz.shape, self.yz.shape
        if not (self.xz.shape[0] == self.yz.shape[0] == cx == c and x1 == x2 and y1 == y2 and z1 == z2):
            raise ValueError(
                "Triplane: plane shapes disagree: xy "
                f"{list(self.xy.shape)}, xz {list(self.xz.shape)}, yz {list(self.yz.shape)}"
            )

    @property
    def channels(self) -> int:
        return int(self.xy.shape[0])

    @property
    def resolution(self) -> tuple[int, int, int]:
        """(X', Y', Z') plane resolution."""
        return int(self.xy.shape[1]), int(self.xy.shape[2]), int(self.xz.shape[2])

    def to(self, device) -> "Triplane":
        return Triplane(self.xy.to(device), self.xz.to(device), self.yz.to(device))

    def save(self, path: str | Path) -> None:
        from safetensors.torch import save_file

        save_file({k: getattr(self, k).detach().cpu().contiguous() for k in ("xy", "xz", "yz")}, str(path))

    @classmethod
    def load(cls, path: str | Path) -> "Triplane":
        from safetensors.torch import load_file

        t = load_file(str(path))
        missing = {"xy", "xz", "yz"} - set(t)
        if missing:
            raise ValueError(f"{path}: not a triplane file, missing {sorted(missing)}")
        return cls(t["xy"], t["xz"], t["yz"])
