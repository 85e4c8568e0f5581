"""3DGS PLY export: the standard property layout, and a round trip back to the same GaussianScene."""

import numpy as np
import pytest
import torch

from xscene_core.ops.ply import SH_C0, read_ply, write_ply
from xscene_core.types.gaussians import GaussianScene


def random_scene(n: int = 50, seed: int = 0) -> GaussianScene:
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(n, 4, generator=g)
    return GaussianScene(
        means=torch.randn(n, 3, generator=g) * 30 + torch.tensor([2000.0, -500.0, 1.0]),
        scales=torch.rand(n, 3, generator=g) * 0.3 + 0.001,
        quats=q / q.norm(dim=1, keepdim=True),
        opacities=torch.rand(n, generator=g).clamp(0.01, 1.0),
        colors=torch.rand(n, 3, generator=g),
        labels=torch.randint(0, 17, (n,), generator=g, dtype=torch.uint8),
    )


def test_round_trip(tmp_path):
    scene = random_scene()
    scene.opacities[0] = 1.0  # solid surfaces: the logit is clamped, not infinite
    back = read_ply(write_ply(scene, tmp_path / "s.ply"))
    assert len(back) == len(scene)
    assert torch.allclose(back.means, scene.means, atol=1e-3)  # float32 at kilometres
    assert torch.allclose(back.scales, scene.scales, rtol=1e-5)
    assert torch.allclose(back.quats, scene.quats, atol=1e-6)
    assert torch.allclose(back.colors, scene.colors, atol=1e-6)
    assert torch.allclose(back.opacities, scene.opacities, atol=1e-5)
    assert torch.equal(back.labels, scene.labels)


def test_standard_layout(tmp_path):
    from plyfile import PlyData

    scene = random_scene(5)
    path = write_ply(scene, tmp_path / "s.ply")
    v = PlyData.read(str(path))["vertex"]
    names = [p.name for p in v.properties]
    assert names[:9] == ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    assert names[9:17] == ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    assert all(p.val_dtype in ("float32", "f4", "float") for p in v.properties[:17])
    d = v.data
    assert np.allclose(d["f_dc_0"], (scene.colors[:, 0].numpy() - 0.5) / SH_C0, atol=1e-5)
    assert np.allclose(d["scale_1"], np.log(scene.scales[:, 1].numpy()), atol=1e-5)
    assert np.allclose(1 / (1 + np.exp(-d["opacity"])), scene.opacities.numpy(), atol=1e-5)
    assert np.allclose(d["rot_0"], scene.quats[:, 0].numpy(), atol=1e-6)  # w first
    # Higher SH degrees add zero f_rest coefficients (45 for degree 3) for loaders that want them.
    v3 = PlyData.read(str(write_ply(scene, tmp_path / "s3.ply", sh_degree=3)))["vertex"]
    rest = [p.name for p in v3.properties if p.name.startswith("f_rest_")]
    assert len(rest) == 45 and np.all(v3.data["f_rest_44"] == 0)


def test_foreign_ply_without_labels(tmp_path):
    from plyfile import PlyData, PlyElement

    names = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
             "rot_0", "rot_1", "rot_2", "rot_3"]
    data = np.zeros(3, dtype=[(n, "<f4") for n in names])
    data["rot_0"] = 1.0
    data["scale_0"] = data["scale_1"] = data["scale_2"] = np.log(0.1)
    path = tmp_path / "other.ply"
    PlyData([PlyElement.describe(data, "vertex")]).write(str(path))
    with pytest.raises(ValueError, match="label"):
        read_ply(path)
    g = read_ply(path, default_label=16)
    assert (g.labels == 16).all() and torch.allclose(g.colors, torch.full((3, 3), 0.5))
    with pytest.raises(ValueError, match="missing"):
        PlyData([PlyElement.describe(np.zeros(2, dtype=[("x", "<f4")]), "vertex")]).write(str(tmp_path / "bad.ply"))
        read_ply(tmp_path / "bad.ply")
