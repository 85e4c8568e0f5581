"""GaussianScene <-> the standard 3D Gaussian Splatting PLY (the layout of the original 3DGS code, which
splat viewers such as SuperSplat, antimatter15/splat and gsplat's viewer open).

One binary little-endian `vertex` element with float32 properties, per Gaussian:
  x, y, z            position (metres)
  nx, ny, nz         zeros (unused, kept for the layout)
  f_dc_0..2          degree-0 spherical-harmonic coefficients: (rgb - 0.5) / SH_C0
  f_rest_0..         higher SH coefficients, zeros (only with sh_degree > 0, for loaders that expect them)
  opacity            logit of the opacity
  scale_0..2         log of the standard deviations (metres)
  rot_0..3           unit quaternion w, x, y, z
and one extra uchar `label` (Occ3D id; viewers ignore unknown properties).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..types.gaussians import GaussianScene

SH_C0 = 0.28209479177387814  # Y_0^0 = 1 / (2 sqrt(pi))
_OPACITY_EPS = 1e-6  # opacities are clamped to [eps, 1 - eps] so that their logits are finite


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, _OPACITY_EPS, 1 - _OPACITY_EPS)
    return np.log(p / (1 - p))


def write_ply(scene: GaussianScene, path: str | Path, sh_degree: int = 0) -> Path:
    """Write `scene` as a binary 3DGS PLY (module docstring). sh_degree > 0 adds zero f_rest coefficients
    (3 * ((d + 1)^2 - 1) of them) for loaders that insist on them."""
    from plyfile import PlyData, PlyElement

    if sh_degree < 0:
        raise ValueError(f"sh_degree must be >= 0, got {sh_degree}")
    g = scene.to("cpu")
    n = len(g)
    n_rest = 3 * ((sh_degree + 1) ** 2 - 1)
    names = (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"] + [f"f_rest_{i}" for i in range(n_rest)]
             + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])
    dtype = [(name, "<f4") for name in names] + [("label", "u1")]
    data = np.zeros(n, dtype=dtype)
    means = g.means.detach().double().numpy()
    for i, a in enumerate("xyz"):
        data[a] = means[:, i]
    dc = (g.colors.detach().double().numpy() - 0.5) / SH_C0
    for i in range(3):
        data[f"f_dc_{i}"] = dc[:, i]
    data["opacity"] = _logit(g.opacities.detach().double().numpy())
    log_s = np.log(g.scales.detach().double().numpy())
    q = g.quats.detach().double().numpy()
    q = q / np.linalg.norm(q, axis=1, keepdims=True).clip(1e-12)
    for i in range(3):
        data[f"scale_{i}"] = log_s[:, i]
    for i in range(4):
        data[f"rot_{i}"] = q[:, i]
    data["label"] = g.labels.numpy().astype(np.uint8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    PlyData([PlyElement.describe(data, "vertex")], byte_order="<").write(str(path))
    return path


def read_ply(path: str | Path, default_label: int | None = None) -> GaussianScene:
    """Read a 3DGS PLY (ours or another tool's) into a GaussianScene: colours from the SH DC terms (higher
    terms are dropped), opacities through a sigmoid, scales through exp. A file without `label` needs
    default_label (an Occ3D id) for every Gaussian."""
    from plyfile import PlyData

    ply = PlyData.read(str(path))
    if "vertex" not in ply:
        raise ValueError(f"{path}: no vertex element, not a Gaussian splat PLY")
    v = ply["vertex"].data
    names = set(v.dtype.names)
    need = {"x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
            "rot_0", "rot_1", "rot_2", "rot_3"}
    if need - names:
        raise ValueError(f"{path}: not a 3DGS PLY, missing {sorted(need - names)}")
    col = lambda *ks: np.stack([np.asarray(v[k], dtype=np.float64) for k in ks], 1)  # noqa: E731
    means = col("x", "y", "z")
    colors = np.clip(col("f_dc_0", "f_dc_1", "f_dc_2") * SH_C0 + 0.5, 0, 1)
    opac = 1 / (1 + np.exp(-np.asarray(v["opacity"], dtype=np.float64)))
    scales = np.exp(col("scale_0", "scale_1", "scale_2"))
    q = col("rot_0", "rot_1", "rot_2", "rot_3")
    q = q / np.linalg.norm(q, axis=1, keepdims=True).clip(1e-12)
    if "label" in names:
        labels = np.asarray(v["label"], dtype=np.uint8)
    elif default_label is not None:
        labels = np.full(len(means), default_label, dtype=np.uint8)
    else:
        raise ValueError(f"{path}: no per-Gaussian label; pass default_label")
    f32 = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    return GaussianScene(f32(means).reshape(-1, 3), f32(scales).reshape(-1, 3), f32(q).reshape(-1, 4),
                         f32(opac).reshape(-1), f32(colors).reshape(-1, 3), torch.tensor(labels, dtype=torch.uint8))
