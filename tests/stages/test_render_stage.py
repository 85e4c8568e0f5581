"""RenderStage: the real Occ3D frame with the real calibration (driveable ground below, buildings and
trees above, metric depth), input checks, progress and interruption, and the CLI."""

import numpy as np
import pytest

from xscene_core import semantics
from xscene_core.data.occ3d import read_labels_npz
from xscene_core.ops.rasterize import ViewParams
from xscene_core.stages import RenderStage, default_rig
from xscene_core.stages.render import RenderInterrupted, main, save_views
from xscene_core.types import CAMERA_NAMES, CameraRig, MultiViewImages, Occupancy, RenderedViews, SceneDescription

ID = semantics.ID


@pytest.fixture(scope="module")
def real(real_labels_path, cameras_json):
    occ = read_labels_npz(real_labels_path)
    rig = CameraRig.from_nuscenes_json(cameras_json, (224, 400))
    return occ, rig, RenderStage(rig, backend="torch")(occ)


def test_real_frame_front_camera_sees_road_below_and_buildings_and_trees_above(real, artifacts):
    occ, rig, views = real
    assert isinstance(views, RenderedViews) and views.semantic.shape == (6, 224, 400)
    front = views.semantic[CAMERA_NAMES.index("CAM_FRONT")]
    lower = front[112:, 100:300]
    assert (lower == ID["driveable_surface"]).mean() > 0.6
    upper_hits = front[:100][front[:100] != semantics.FREE]
    assert len(upper_hits) > 2000 and np.isin(upper_hits, semantics.BACKGROUND_IDS).mean() > 0.9
    # Every camera sees the ground in its lower part.
    for v in range(6):
        assert np.isin(views.semantic[v, 180:], semantics.GROUND_IDS).mean() > 0.5
    images = RenderStage(rig).preview(views, SceneDescription("afternoon", "sunny", "suburban"), occupancy=occ)
    paths = save_views(views, images, artifacts / "render_real_frame")
    assert len(paths) == 18 and all(p.exists() for p in paths)


def test_real_frame_road_depth_is_the_flat_ground_distance(real):
    occ, rig, views = real
    v = CAMERA_NAMES.index("CAM_FRONT")
    # The road surface ahead: top of the driveable voxels in the columns 4..20 m ahead of the ego.
    g = occ.grid
    ahead = occ.labels[110:150, 95:105]
    road_top = g.lower[2] + (np.argwhere(ahead == ID["driveable_surface"])[:, 2].max() + 1) * g.voxel_size
    origin, dirs = ViewParams.from_rig(rig).pixel_rays(v)
    dirs = dirs.numpy().reshape(224, 400, 3)
    flat = (road_top - origin[2].item()) / dirs[..., 2]  # camera depth where each pixel ray meets the plane
    road = (views.semantic[v] == ID["driveable_surface"]) & (np.arange(224)[:, None] > 150)
    assert road.sum() > 5000
    rel = np.abs(views.depth[v][road] - flat[road]) / flat[road]
    assert np.median(rel) < 0.01 and np.percentile(rel, 90) < 0.05
    # Metric: the road spans a few metres (bottom rows) to tens of metres (near the horizon).
    all_road = views.depth[v][views.semantic[v] == ID["driveable_surface"]]
    assert all_road.min() < 6 and all_road.max() > 25


def test_check_inputs_names_the_problem():
    stage = RenderStage(backend="torch")
    with pytest.raises(ValueError, match="Occupancy"):
        stage.check_inputs(np.zeros((200, 200, 16), np.uint8))
    occ = Occupancy(np.full((200, 200, 16), semantics.FREE, np.uint8))
    with pytest.raises(ValueError, match="CameraRig"):
        stage.check_inputs(occ, rig="front")
    with pytest.raises(ValueError, match="SceneDescription"):
        stage.check_inputs(occ, None, {"Weather": "sunny"})
    rig = default_rig((32, 56))
    mixed = CameraRig((rig.cameras[0], rig.cameras[1].resized(40, 56)))
    with pytest.raises(ValueError, match="same image size"):
        stage.check_inputs(occ, mixed)
    with pytest.raises(ValueError, match="backend"):
        RenderStage(backend="opengl")
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="needs CUDA"):
            RenderStage(backend="gsplat").check_inputs(occ)
    with pytest.raises(ValueError, match="RenderedViews"):
        stage.preview(np.zeros((6, 32, 56), np.uint8))


def test_stage_reports_progress_can_be_interrupted_and_renders_deterministically(real_labels_path):
    occ = read_labels_npz(real_labels_path)
    stage = RenderStage(default_rig((48, 84)), backend="torch")
    steps = []
    a = stage(occ, callback=lambda done, total: steps.append((done, total)))
    assert steps == [(i, 6) for i in range(1, 7)]
    b = stage(occ)
    assert np.array_equal(a.semantic, b.semantic) and np.array_equal(a.depth, b.depth)

    def stop(done, total):
        stage.interrupt()

    with pytest.raises(RenderInterrupted, match="after 1 of 6"):
        stage(occ, callback=stop)
    images = stage.preview(a, SceneDescription("night", "rainy", "downtown"), seed=1)
    assert isinstance(images, MultiViewImages) and images.images.shape == (6, 48, 84, 3)


def test_default_rig_is_the_six_nuscenes_cameras_at_any_size():
    rig = default_rig((448, 800))
    assert rig.names == CAMERA_NAMES and {(c.height, c.width) for c in rig.cameras} == {(448, 800)}
    small = default_rig((112, 200))
    assert np.allclose(small.cameras[1].K[0, 0] * 4, rig.cameras[1].K[0, 0])


def test_cli_writes_semantic_depth_and_preview_pngs(tmp_path, real_labels_path):
    main(["--out", str(tmp_path / "real"), "--labels", str(real_labels_path), "--size", "40", "72",
          "--time", "dusk", "--weather", "foggy"])
    main(["--out", str(tmp_path / "synthetic"), "--seed", "3", "--environment", "downtown", "--time", "night",
          "--weather", "rainy", "--size", "40", "72"])
    for run in ("real", "synthetic"):
        for kind in ("semantic", "depth", "preview"):
            assert sorted(p.stem for p in (tmp_path / run / kind).glob("*.png")) == sorted(CAMERA_NAMES)
            assert (tmp_path / run / f"{kind}_mosaic.png").exists()
