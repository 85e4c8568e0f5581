"""Occ3D `labels.npz` reading and writing (keys semantics, mask_lidar, mask_camera; uint8 [200, 200, 16])."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from ..types.occupancy import GridSpec, Occupancy

KEYS = ("semantics", "mask_lidar", "mask_camera")


def read_labels_npz(path: str | Path, grid: GridSpec | None = None) -> Occupancy:
    """Read an Occ3D labels.npz into an Occupancy; missing masks stay None.

    Raises ValueError with the file name when the file is not an npz or lacks `semantics`.
    """
    path = Path(path)
    try:
        d = np.load(path, allow_pickle=False)
        if not isinstance(d, np.lib.npyio.NpzFile):
            raise ValueError(f"{path}: not an .npz archive (a single array was found)")
        with d:
            if "semantics" not in d.files:
                raise ValueError(f"{path}: not an Occ3D labels file (keys {d.files}, need 'semantics')")
            arrays = {k: d[k] for k in KEYS if k in d.files}
    except (zipfile.BadZipFile, OSError) as e:
        raise ValueError(f"{path}: cannot read as .npz ({e})") from None
    except ValueError as e:
        raise ValueError(str(e) if str(path) in str(e) else f"{path}: cannot read as .npz ({e})") from None
    grid = grid or GridSpec(tuple(arrays["semantics"].shape))
    return Occupancy(arrays["semantics"], grid, arrays.get("mask_lidar"), arrays.get("mask_camera"))


def write_labels_npz(path: str | Path, occ: Occupancy, compressed: bool = True) -> None:
    """Write an Occupancy as Occ3D labels.npz; masks default to all-visible (1) as uint8 like Occ3D."""
    ones = np.ones(occ.grid.shape, dtype=np.uint8)
    arrays = {
        "semantics": occ.labels.astype(np.uint8),
        "mask_lidar": ones if occ.mask_lidar is None else occ.mask_lidar.astype(np.uint8),
        "mask_camera": ones if occ.mask_camera is None else occ.mask_camera.astype(np.uint8),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    (np.savez_compressed if compressed else np.savez)(path, **arrays)
