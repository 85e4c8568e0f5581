"""Occupancy stage: sampling, masked resampling (outpainting / local regeneration) and decoding with tiny
random models on a small grid (seconds), plus the shipped models' contract."""

import numpy as np
import pytest
import torch

from xscene_core import semantics
from xscene_core.models.occupancy_diffusion import OccupancyDiffusion
from xscene_core.models.triplane_vae import TriplaneVAE
from xscene_core.stages.occupancy import OccupancyInterrupted, OccupancyOutput, OccupancyStage, TriplaneMask
from xscene_core.types.layout import Box, Lane, Layout
from xscene_core.types.occupancy import GridSpec, Occupancy, Triplane

GRID = GridSpec((32, 32, 8), 2.5, (-40.0, -40.0, -1.0))
PLANES = (16, 16, 4)


def tiny_stage(**kw) -> OccupancyStage:
    torch.manual_seed(0)
    diffusion = OccupancyDiffusion(latent_channels=4, plane_shape=PLANES, grid=GRID.to_dict(), patch_size=2,
                                   block_out_channels=(8, 16), attention_levels=(False, True), attention_heads=2,
                                   norm_num_groups=4, token_dim=16, bev_hidden=(8,), bev_features=4, max_boxes=8,
                                   num_inference_steps=4, latent_scale=2.0, text_dim=384)
    vae = TriplaneVAE(grid_shape=GRID.shape, plane_shape=PLANES, embed_dim=4, encoder_channels=(8,), latent_channels=4,
                      decoder_channels=8, num_offsets=2, mlp_width=16, mlp_depth=2, pe_freqs=2)
    return OccupancyStage(diffusion, vae, **kw)


def road_layout() -> Layout:
    lanes = (Lane(np.array([[-40.0, -1.75], [40.0, -1.75]])), Lane(np.array([[40.0, 1.75], [-40.0, 1.75]])))
    return Layout(boxes=(Box((10.0, -1.75, 0.9), (4.5, 1.9, 1.6), 0.0, semantics.ID["car"]),), lanes=lanes)


@pytest.fixture(scope="module")
def stage():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield tiny_stage()
    torch.set_num_threads(n)


def test_sample_shapes_and_determinism(stage):
    a = stage(road_layout(), None, seed=3)
    b = stage(road_layout(), None, seed=3)
    c = stage(road_layout(), None, seed=4)
    assert isinstance(a, OccupancyOutput)
    assert a.occupancy.labels.shape == GRID.shape and a.occupancy.labels.dtype == np.uint8
    assert a.triplane.resolution == PLANES and a.triplane.channels == 4
    assert torch.equal(a.triplane.xy, b.triplane.xy) and np.array_equal(a.occupancy.labels, b.occupancy.labels)
    assert not torch.equal(a.triplane.xy, c.triplane.xy)


def test_layout_without_areas_gets_a_road_map(stage):
    cond = stage.condition_layout(road_layout())
    assert {p.kind for p in cond.polygons} >= {"drivable", "sidewalk"}
    assert not any(p.kind == "sidewalk" for p in stage.condition_layout(road_layout(), "highway").polygons)


def test_inpaint_keeps_the_known_cells_exactly(stage):
    known = stage(road_layout(), None, seed=0).triplane
    xy = np.zeros(PLANES[:2], bool)
    xy[:8] = True
    mask = TriplaneMask(xy, np.zeros((16, 4), bool), np.ones((16, 4), bool))
    out = stage.inpaint(known, mask, road_layout(), None, seed=1, steps=6, resample=2, jump=3)
    assert torch.equal(out.triplane.xy[:, :8], known.xy[:, :8])
    assert torch.equal(out.triplane.yz, known.yz)
    assert not torch.equal(out.triplane.xy[:, 8:], known.xy[:, 8:])
    assert not torch.equal(out.triplane.xz, known.xz)


def test_regenerate_changes_only_the_region_with_paste(stage):
    base = stage(road_layout(), None, seed=0)
    region = np.zeros(GRID.shape[:2], bool)
    region[20:28, 10:20] = True
    out = stage.regenerate(base.triplane, base.occupancy, region, road_layout(), None, seed=5)
    outside = ~region
    assert np.array_equal(out.occupancy.labels[outside], base.occupancy.labels[outside])
    # the latent is kept outside the touched cells (cells of 2 x 2 voxels here)
    assert torch.equal(out.triplane.xy[:, :10], base.triplane.xy[:, :10])
    assert torch.equal(out.triplane.xz, base.triplane.xz) and torch.equal(out.triplane.yz, base.triplane.yz)
    assert not torch.equal(out.triplane.xy[:, 10:14, 5:10], base.triplane.xy[:, 10:14, 5:10])
    with pytest.raises(ValueError, match="region must be bool"):
        stage.regenerate(base.triplane, base.occupancy, region[:5], road_layout())


def test_step_callback_and_interrupt(stage):
    steps = []
    stage(road_layout(), None, seed=0, step_callback=lambda i, n: steps.append((i, n)))
    assert steps == [(i, 4) for i in range(1, 5)]
    with pytest.raises(OccupancyInterrupted):
        stage(road_layout(), None, seed=0, step_callback=lambda i, n: i < 2)


def test_bad_inputs(stage):
    with pytest.raises(ValueError, match="layout must be a Layout"):
        stage({"boxes": []})
    with pytest.raises(ValueError, match="caption must be text"):
        stage(road_layout(), 5)
    far = Layout(boxes=(Box((300.0, 0.0, 0.9), (4.5, 1.9, 1.6), 0.0, semantics.ID["car"]),))
    with pytest.raises(ValueError, match="inside the chunk"):
        stage(far)
    known = stage(road_layout(), None, seed=0).triplane
    with pytest.raises(ValueError, match="TriplaneMask"):
        stage.inpaint(known, np.ones((16, 16), bool), road_layout())


def test_encode_decode_round_trip_types(stage):
    occ = Occupancy(np.full(GRID.shape, semantics.FREE, np.uint8), GRID)
    tri = stage.encode(occ)
    assert isinstance(tri, Triplane) and tri.resolution == PLANES
    assert stage.decode(tri).labels.shape == GRID.shape


def test_shipped_models_belong_together(tmp_path):
    import shutil

    from xscene_core.stages.occupancy import DEFAULT_DIFFUSION, DEFAULT_VAE

    from safetensors.torch import load_file, save_file

    def vae_with(tensor: str):
        """A copy of the shipped VAE with one tensor nudged."""
        d = tmp_path / tensor
        shutil.copytree(DEFAULT_VAE, d)
        w = load_file(str(d / "model.safetensors"))
        w[tensor] = w[tensor] + 1e-3
        save_file(w, str(d / "model.safetensors"))
        return d

    # another encoder means another latent space: refused; a retrained decoder keeps the latents: accepted
    with pytest.raises(ValueError, match="not the VAE"):
        OccupancyStage.from_pretrained(DEFAULT_DIFFUSION, vae_with("stem.weight"))
    OccupancyStage.from_pretrained(DEFAULT_DIFFUSION, vae_with("head.weight"))
