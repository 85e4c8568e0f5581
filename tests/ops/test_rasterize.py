"""The voxel renderer: exact agreement with its brute-force twin, hand-computed pixels and depths,
metric depth under rig motion, determinism, and the gsplat path against the torch path (GPU only)."""

import math

import numpy as np
import pytest
import torch

from xscene_core import semantics
from xscene_core.ops.geometry import pose_matrix, quaternion_to_matrix
from xscene_core.ops.rasterize import (
    Raster, ViewParams, rasterize_boxes, rasterize_boxes_reference, rasterize_reference, rasterize_torch,
)
from xscene_core.ops.voxel_gaussians import occupancy_to_gaussians
from xscene_core.types import Camera, CameraRig, GaussianScene, GridSpec, Occupancy

# OpenCV camera axes (x right, y down, z forward) expressed in the ego frame (x forward, y left, z up).
R_EGO_CAM = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


def forward_camera(height=80, width=100, f=100.0, cx=49.3, cy=39.6, pos=(0.0, 0.0, 1.5), yaw=0.0, pitch=0.0):
    """A pinhole looking along ego +x (rotated by yaw about z, then pitched down by `pitch`)."""
    T = np.eye(4)
    c, s = math.cos(pitch), math.sin(pitch)
    R_pitch = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])  # rotates +x down towards -z for pitch > 0
    T[:3, :3] = pose_matrix(0, 0, yaw)[:3, :3] @ R_pitch @ R_EGO_CAM
    T[:3, 3] = pos
    K = np.array([[f, 0, cx], [0, f, cy], [0, 0, 1]])
    return Camera("CAM_TEST", K, T, height, width)


def one_voxel_occupancy(index, label=4):
    grid = GridSpec((40, 20, 10), 0.4, (0.0, -4.0, 0.0))
    labels = np.full(grid.shape, semantics.FREE, np.uint8)
    labels[index] = label
    return Occupancy(labels, grid)


def test_single_voxel_lands_on_the_hand_computed_pixel_and_depth():
    # Voxel (25, 7, 5): x in [10.0, 10.4], y in [-1.2, -0.8], z in [2.0, 2.4] (centre (10.2, -1.0, 2.2)).
    occ = one_voxel_occupancy((25, 7, 5))
    rig = CameraRig((forward_camera(),))
    r = rasterize_torch(occupancy_to_gaussians(occ), rig)
    # Centre in the camera: X = 1.0 (1 m right), Y = -0.7 (0.7 m up), Z = 10.2.
    # u = 100 * 1.0 / 10.2 + 49.3 = 59.1 -> column 59; v = 100 * -0.7 / 10.2 + 39.6 = 32.7 -> row 33.
    assert r.semantic[0, 33, 59] == 4
    assert r.depth[0, 33, 59].item() == pytest.approx(10.0, abs=1e-5)
    # The front face (x = 10.0, camera depth exactly 10) spans u = 49.3 + [8, 12] -> columns 58..61 and
    # v = 39.6 + [-9, -5] -> rows 31..34.
    face = r.depth[0, 31:35, 58:62]
    assert torch.allclose(face, torch.full_like(face, 10.0), atol=1e-5)
    assert r.alpha[0, 33, 59] == 1.0
    hit_rows, hit_cols = torch.nonzero(r.semantic[0] != semantics.FREE, as_tuple=True)
    assert hit_rows.min() >= 31 and hit_rows.max() <= 34 and hit_cols.min() >= 57 and hit_cols.max() <= 61
    assert (r.depth[0][r.semantic[0] == semantics.FREE] == 0).all()


def test_moving_the_rig_one_metre_forward_reduces_depth_by_one_metre():
    grid = GridSpec((60, 60, 30), 0.4, (0.0, -12.0, -4.0))
    labels = np.full(grid.shape, semantics.FREE, np.uint8)
    labels[50] = 15  # a wall of manmade voxels at x in [20.0, 20.4] covering the whole view
    g = occupancy_to_gaussians(Occupancy(labels, grid))
    rig = CameraRig((forward_camera(f=200.0, pos=(0.0, 0.0, 2.4)),))
    a = rasterize_torch(g, rig)
    b = rasterize_torch(g, rig.at(pose_matrix(1.0, 0.0, 0.0)))
    wall = (a.semantic[0] == 15) & (b.semantic[0] == 15)
    assert wall.all()
    assert torch.allclose(a.depth[0][wall], torch.full_like(a.depth[0][wall], 20.0), atol=1e-4)
    assert torch.allclose(a.depth[0][wall] - b.depth[0][wall], torch.ones_like(a.depth[0][wall]), atol=1e-4)


def random_occupancy(seed, shape=(14, 12, 6)):
    rng = np.random.default_rng(seed)
    grid = GridSpec(shape, 0.4, (2.0, -2.4, -0.8))
    labels = rng.integers(0, 17, size=shape).astype(np.uint8)
    labels[rng.random(shape) < 0.75] = semantics.FREE
    return Occupancy(labels, grid)


def random_rig(seed, height=36, width=52):
    """Three cameras around the small random scene, with irrational-looking poses (no exact ties)."""
    rng = np.random.default_rng(seed)
    cams = []
    for k, yaw in enumerate((0.0, 0.45, -0.5)):
        cam = forward_camera(height, width, f=40 + 10 * rng.random(), cx=width / 2 + rng.random(),
                             cy=height / 2 + rng.random(), pos=(rng.uniform(-1, 0.5), rng.uniform(-1, 1), 1.0 + rng.random()),
                             yaw=yaw + 0.05 * rng.random(), pitch=0.15 + 0.1 * rng.random())
        cams.append(Camera(f"CAM_{k}", cam.K, cam.T_ego_cam, height, width))
    return CameraRig(tuple(cams))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_voxel_render_matches_brute_force_at_every_pixel(seed):
    g = occupancy_to_gaussians(random_occupancy(seed))
    rig = random_rig(seed)
    fast, ref = rasterize_torch(g, rig), rasterize_reference(g, rig)
    assert (fast.semantic != semantics.FREE).float().mean() > 0.3  # the scene fills the views
    assert torch.equal(fast.semantic, ref.semantic)
    assert torch.allclose(fast.depth, ref.depth, rtol=1e-5, atol=1e-5)
    assert torch.equal(fast.alpha, ref.alpha)


def test_rotated_boxes_match_brute_force_including_normals():
    rng = np.random.default_rng(5)
    n = 40
    quats = rng.normal(size=(n, 4))
    centers = np.c_[rng.uniform(3, 9, n), rng.uniform(-3, 3, n), rng.uniform(0, 3, n)]
    rot = torch.tensor(np.stack([quaternion_to_matrix(q) for q in quats]), dtype=torch.float32)
    half = torch.tensor(rng.uniform(0.1, 0.6, (n, 3)), dtype=torch.float32)
    c = torch.tensor(centers, dtype=torch.float32)
    views = ViewParams.from_rig(random_rig(3))
    fast, ref = rasterize_boxes(c, half, rot, views), rasterize_boxes_reference(c, half, rot, views)
    assert fast.hit.float().mean() > 0.1
    assert torch.equal(fast.index, ref.index)
    assert torch.allclose(fast.depth, ref.depth, rtol=1e-5, atol=1e-5)
    assert torch.allclose(fast.normal, ref.normal, atol=1e-4)
    # Normals are unit vectors facing the camera.
    n_hit = fast.normal[fast.hit]
    assert torch.allclose(n_hit.norm(dim=-1), torch.ones(len(n_hit)), atol=1e-4)


def test_boxes_crossing_the_near_plane_are_clipped_like_the_reference():
    # Boxes around and behind the camera: only surfaces beyond NEAR count.
    c = torch.tensor([[0.2, 0.0, 1.5], [-1.0, 0.0, 1.5], [0.6, 0.3, 1.2], [3.0, 0.0, 0.0]])
    half = torch.tensor([[0.3, 0.3, 0.3], [0.5, 0.5, 0.5], [0.5, 0.2, 0.2], [5.0, 5.0, 0.2]])
    views = ViewParams.from_rig(CameraRig((forward_camera(40, 50, f=30, cx=25.2, cy=19.7),)))
    fast, ref = rasterize_boxes(c, half, None, views), rasterize_boxes_reference(c, half, None, views)
    assert torch.equal(fast.index, ref.index)
    assert torch.allclose(fast.depth, ref.depth, rtol=1e-5, atol=1e-5)


def test_render_is_deterministic_and_empty_scenes_render_free():
    g = occupancy_to_gaussians(random_occupancy(7))
    rig = random_rig(7)
    a, b = rasterize_torch(g, rig), rasterize_torch(g, rig)
    for name in ("semantic", "depth", "alpha"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    empty = GaussianScene(torch.zeros(0, 3), torch.ones(0, 3), torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, 3),
                          torch.zeros(0, dtype=torch.uint8))
    e = rasterize_torch(empty, rig)
    assert isinstance(e, Raster) and (e.semantic == semantics.FREE).all() and (e.depth == 0).all()


def test_chunk_pose_moves_the_render_like_the_rig():
    """Rendering a chunk placed at T_world_chunk from a rig at T_world_chunk @ T equals rendering the
    chunk at the origin from a rig at T (the world frame is only a change of coordinates)."""
    occ = random_occupancy(11)
    rig = random_rig(11)
    T_world_chunk = pose_matrix(100.0, -40.0, 0.7)
    a = rasterize_torch(occupancy_to_gaussians(occ), rig)
    b = rasterize_torch(occupancy_to_gaussians(occ, T_world_chunk), rig.at(T_world_chunk))
    assert (a.semantic == b.semantic).float().mean() > 0.995  # float32 world coordinates round differently
    both = (a.semantic == b.semantic) & (a.semantic != semantics.FREE)
    assert torch.allclose(a.depth[both], b.depth[both], atol=1e-3)


@pytest.mark.gpu
def test_gsplat_path_agrees_with_torch_path(real_labels_path, cameras_json):
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    from xscene_core.data.occ3d import read_labels_npz
    from xscene_core.ops.rasterize import rasterize_gsplat

    g = occupancy_to_gaussians(read_labels_npz(real_labels_path))
    rig = CameraRig.from_nuscenes_json(cameras_json)
    ref = rasterize_torch(g, rig)
    gs = rasterize_gsplat(g, rig)
    both = (ref.semantic != semantics.FREE) & (gs.semantic.cpu() != semantics.FREE)
    assert (gs.semantic.cpu() == ref.semantic)[both].float().mean() > 0.85
    rel = ((gs.depth.cpu() - ref.depth).abs() / ref.depth.clamp(min=1e-3))[both]
    assert rel.median() < 0.05
