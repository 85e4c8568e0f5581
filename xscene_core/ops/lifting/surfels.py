"""Surface patches of an occupancy: flat Gaussians on the voxel faces that can be seen.

A face of an occupied voxel can be seen when the voxel across it is open air (or outside the grid, except
below the grid's floor: the ground continues there, as in ops.voxel_gaussians.visible_voxels). Free voxels
under the lowest occupied voxel of their column count as solid: Occ3D-style ground is one voxel thick
with free voxels under it, and the faces looking into that pocket are never seen from above ground (they
would be a third of a chunk's Gaussians, and splat renders would show them through the gaps between
surface splats). Each such
face is split into k x k square patches; a patch becomes one flat Gaussian lying in the face: standard
deviations of half a patch along the two face axes (so the box renderers' solid is exactly the patch)
and THIN_FRACTION of a voxel across it.

Why faces rather than one Gaussian per voxel: the views see a voxel's top and sides under different
light (sun-lit road top against a shaded kerb side), and one colour per voxel blends them; per face the
colours stay apart. Measured on held-out chunks (eval.splat_metrics): see the report in the module
gaussian stage docstring.

Face ids: 0 -x, 1 +x, 2 -y, 3 +y, 4 -z, 5 +z (axis = face // 2, outward sign = +1 when face is odd).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ... import semantics
from ...types.gaussians import GaussianScene
from ...types.occupancy import GridSpec, Occupancy
from ..geometry import matrix_to_quaternion
from ..rasterize import BOX_SIGMAS

# Thickness of a patch Gaussian (standard deviation across its face) as a share of the voxel size: thin
# enough to read as a surface in splat viewers, thick enough for float32 box tests.
THIN_FRACTION = 0.01
NUM_FACES = 6
FACE_OPACITY = 1.0  # surfaces are solid


def face_axis_sign(face: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(axis int64 [...], outward sign int64 [...] in {-1, +1}) of face ids int [...]."""
    face = np.asarray(face, dtype=np.int64)
    return face // 2, 2 * (face % 2) - 1


def tangent_axes(axis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The two grid axes spanning a face of normal `axis` (int [...]), in increasing order."""
    axis = np.asarray(axis, dtype=np.int64)
    t1 = np.where(axis == 0, 1, 0)
    t2 = np.where(axis == 2, 1, 2)
    return t1, t2


@dataclass
class SurfacePatches:
    """Visible face patches of one grid, in its grid (chunk) frame.

    voxel: int64 [N, 3] voxel index (x, y, z); face: int64 [N] face id (module docstring); sub: int64
    [N, 2] patch index along the face's two tangent axes (0..k-1); labels: uint8 [N] Occ3D ids of the
    voxels; grid: the GridSpec; k: patches per face edge. Patches are sorted by (voxel flat index, face,
    sub), so the same occupancy always gives the same order.
    """

    voxel: np.ndarray
    face: np.ndarray
    sub: np.ndarray
    labels: np.ndarray
    grid: GridSpec
    k: int = 1

    def __len__(self) -> int:
        return int(self.face.shape[0])

    def normals(self) -> np.ndarray:
        """float64 [N, 3] outward unit normals (grid frame)."""
        axis, sign = face_axis_sign(self.face)
        n = np.zeros((len(self), 3))
        n[np.arange(len(self)), axis] = sign
        return n

    def centers(self) -> np.ndarray:
        """float64 [N, 3] patch centres in metres (grid frame)."""
        vs, k = self.grid.voxel_size, self.k
        axis, sign = face_axis_sign(self.face)
        t1, t2 = tangent_axes(axis)
        rows = np.arange(len(self))
        c = np.asarray(self.grid.lower) + (self.voxel + 0.5) * vs
        c[rows, axis] += 0.5 * vs * sign
        c[rows, t1] += ((self.sub[:, 0] + 0.5) / k - 0.5) * vs
        c[rows, t2] += ((self.sub[:, 1] + 0.5) / k - 0.5) * vs
        return c

    def fine_cells(self) -> np.ndarray:
        """int64 [N, 3] index of each patch on the grid refined k times (the fine cell just inside the
        face that the patch covers); with the face id it names a patch uniquely."""
        k = self.k
        axis, sign = face_axis_sign(self.face)
        t1, t2 = tangent_axes(axis)
        rows = np.arange(len(self))
        f = self.voxel * k
        f[rows, axis] += np.where(sign > 0, k - 1, 0)
        f[rows, t1] += self.sub[:, 0]
        f[rows, t2] += self.sub[:, 1]
        return f

    def std_devs(self) -> np.ndarray:
        """float64 [N, 3] Gaussian standard deviations along the grid axes (metres)."""
        vs = self.grid.voxel_size
        s = np.full((len(self), 3), vs / (2 * self.k) / BOX_SIGMAS)
        axis, _ = face_axis_sign(self.face)
        s[np.arange(len(self)), axis] = THIN_FRACTION * vs
        return s


def solid(labels: np.ndarray) -> np.ndarray:
    """bool [X, Y, Z]: occupied voxels and the free voxels under the lowest occupied voxel of their column
    (under the ground: closed off from the air in which cameras move)."""
    occ = np.asarray(labels) != semantics.FREE
    lowest = np.where(occ.any(2), occ.argmax(2), 0)  # columns with nothing keep every voxel open
    under = np.arange(occ.shape[2])[None, None, :] < lowest[..., None]
    return occ | under


def padded_occupied(labels: np.ndarray) -> np.ndarray:
    """bool [X+2, Y+2, Z+2]: solid voxels (see solid()) with a one-voxel border that is open on every side
    except the bottom, which repeats the lowest layer (the ground continues below the grid)."""
    pad = np.pad(solid(labels), 1, constant_values=False)
    pad[:, :, 0] = pad[:, :, 1]
    return pad


def exposed_faces(pad_occupied: np.ndarray, own: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Faces of the voxels in `own` (bool [X, Y, Z]) whose neighbour in `pad_occupied` (bool [X+2, Y+2,
    Z+2], index shifted by one) is free. Returns (voxel int64 [M, 3], face int64 [M]), voxel-major."""
    X, Y, Z = own.shape
    vox, faces = [], []
    for f in range(NUM_FACES):
        axis, sign = f // 2, 2 * (f % 2) - 1
        sl = [slice(1, X + 1), slice(1, Y + 1), slice(1, Z + 1)]
        n = own.shape[axis]
        sl[axis] = slice(1 + sign, 1 + sign + n)
        idx = np.argwhere(own & ~pad_occupied[tuple(sl)])
        vox.append(idx)
        faces.append(np.full(len(idx), f, dtype=np.int64))
    vox, faces = np.concatenate(vox).astype(np.int64), np.concatenate(faces)
    flat = np.ravel_multi_index(vox.T, own.shape) if len(vox) else np.zeros(0, np.int64)
    order = np.lexsort((faces, flat))
    return vox[order], faces[order]


def subdivide(voxel: np.ndarray, face: np.ndarray, labels: np.ndarray, grid: GridSpec, k: int) -> SurfacePatches:
    """k x k patches per face (voxel int64 [M, 3], face int64 [M], labels uint8 [M]), in face-major order."""
    if k < 1:
        raise ValueError(f"patches per face edge must be >= 1, got {k}")
    a, b = np.meshgrid(np.arange(k), np.arange(k), indexing="ij")
    sub = np.stack([a.ravel(), b.ravel()], 1)  # [k*k, 2]
    m = len(face)
    return SurfacePatches(np.repeat(voxel, k * k, 0), np.repeat(face, k * k), np.tile(sub, (m, 1)),
                          np.repeat(labels, k * k), grid, k)


def surface_patches(occupancy: Occupancy, k: int = 1) -> SurfacePatches:
    """The visible face patches of an occupancy on its own (out-of-grid counts free, floor solid)."""
    labels = occupancy.labels
    vox, face = exposed_faces(padded_occupied(labels), labels != semantics.FREE)
    return subdivide(vox, face, labels[vox[:, 0], vox[:, 1], vox[:, 2]], occupancy.grid, k)


def patches_to_gaussians(patches: SurfacePatches, colors: torch.Tensor | np.ndarray | None = None,
                         T_world_grid: np.ndarray | None = None, opacities: torch.Tensor | None = None) -> GaussianScene:
    """GaussianScene of patches placed by T_world_grid (float64 [4, 4], identity by default).

    colors: float [N, 3] RGB in [0, 1] (class colours when None); opacities: float [N] (FACE_OPACITY when
    None). Quaternions carry the grid's rotation, the scales the patch's flatness along the grid axes.
    """
    T = np.eye(4) if T_world_grid is None else np.asarray(T_world_grid, dtype=np.float64)
    n = len(patches)
    means = patches.centers() @ T[:3, :3].T + T[:3, 3]
    quat = matrix_to_quaternion(T[:3, :3])
    if colors is None:
        colors = semantics.COLORS[patches.labels] / 255.0
    colors = torch.as_tensor(np.asarray(colors) if not isinstance(colors, torch.Tensor) else colors).float()
    op = torch.full((n,), FACE_OPACITY) if opacities is None else torch.as_tensor(opacities).float()
    return GaussianScene(
        means=torch.tensor(means, dtype=torch.float32).reshape(n, 3),
        scales=torch.tensor(patches.std_devs(), dtype=torch.float32).reshape(n, 3),
        quats=torch.tensor(np.tile(quat, (n, 1)), dtype=torch.float32).reshape(n, 4),
        opacities=op.reshape(n),
        colors=colors.reshape(n, 3).clamp(0, 1),
        labels=torch.as_tensor(patches.labels, dtype=torch.uint8).reshape(n),
    )
