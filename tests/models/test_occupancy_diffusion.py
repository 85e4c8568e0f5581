"""Triplane latent diffusion: denoiser I/O, conditions, determinism, save/load (tiny configs, seconds)."""

import numpy as np
import pytest
import torch

from xscene_core import semantics
from xscene_core.models.condition_encoders import BevEncoder, OccupancyCondition, flip_boxes
from xscene_core.models.occupancy_diffusion import PRESETS, OccupancyDiffusion
from xscene_core.ops.triplane import corner_mask
from xscene_core.types.layout import Box, Layout, MapPolygon
from xscene_core.types.occupancy import GridSpec

GRID = GridSpec((32, 32, 8), 2.5, (-40.0, -40.0, -1.0))
TEXT = np.random.default_rng(0).standard_normal(384).astype(np.float32)


def tiny_model(**overrides) -> OccupancyDiffusion:
    torch.manual_seed(0)
    cfg = dict(latent_channels=4, plane_shape=(16, 16, 4), grid=GRID.to_dict(), patch_size=2, block_out_channels=(8, 16),
               attention_levels=(False, True), attention_heads=2, norm_num_groups=4, token_dim=16, bev_hidden=(8,),
               bev_features=4, max_boxes=8, num_inference_steps=4, latent_scale=2.0)
    return OccupancyDiffusion(**{**cfg, **overrides}).eval()


def layout() -> Layout:
    road = MapPolygon(np.array([[-40.0, -6], [40, -6], [40, 6], [-40, 6]]), "drivable")
    boxes = (Box((10.0, 2.0, 0.9), (4.5, 1.9, 1.6), 0.1, semantics.ID["car"]),
             Box((-15.0, -3.0, 1.5), (10.0, 2.8, 3.4), 0.0, semantics.ID["bus"]))
    return Layout(boxes=boxes, polygons=(road,))


@pytest.fixture(scope="module")
def model() -> OccupancyDiffusion:
    return tiny_model()


def test_presets_build_and_shapes():
    assert set(PRESETS) == {"tiny", "paper"}
    m = OccupancyDiffusion.from_preset("tiny")
    assert m.latent_shape == (8, 116, 116) and m.padded_hw == (120, 120)
    assert m.unet.config.cross_attention_dim == m.config["token_dim"]
    # attention only at the lowest resolution in the tiny preset
    assert m.unet.config.down_block_types[-1] == "CrossAttnDownBlock2D"
    assert all(t == "DownBlock2D" for t in m.unet.config.down_block_types[:-1])
    with pytest.raises(ValueError, match="unknown preset"):
        OccupancyDiffusion.from_preset("huge")


def test_denoiser_io_shapes(model):
    cond = model.condition([layout(), None], [TEXT, None])
    assert cond.bev.shape == (2, 15, 32, 32) and cond.box_mask.tolist() == [[True, True], [False, False]]
    assert cond.text_mask.tolist() == [True, False]
    x = torch.randn(2, *model.latent_shape)
    out = model(x, torch.tensor([10, 900]), cond)
    assert out.shape == x.shape == (2, 4, 20, 20)
    with pytest.raises(ValueError, match="sample: expected"):
        model(torch.randn(2, 4, 16, 16), 10, cond)
    with pytest.raises(ValueError, match="batch"):
        model(x[:1], 10, cond)


def test_sample_deterministic_under_seed(model):
    a = model.sample(layout(), TEXT, seed=3, steps=3)
    b = model.sample(layout(), TEXT, seed=3, steps=3)
    c = model.sample(layout(), TEXT, seed=4, steps=3)
    assert a.shape == (1, *model.latent_shape)
    assert torch.equal(a, b) and not torch.allclose(a, c)
    assert torch.all(a[..., 16:, 16:] == 0)  # the padded corner of the rolled-out map
    planes = model.unroll(a)
    assert planes.xy.shape == (1, 4, 16, 16) and planes.xz.shape == (1, 4, 16, 4) and planes.yz.shape == (1, 4, 16, 4)


def test_save_load_round_trip(model, tmp_path):
    for p in model.parameters():  # make the weights non-trivial
        p.data.add_(0.01 * torch.randn_like(p))
    model.save_pretrained(tmp_path / "m")
    assert sorted(f.name for f in (tmp_path / "m").iterdir()) == ["config.json", "model.safetensors"]
    loaded = OccupancyDiffusion.from_pretrained(tmp_path / "m")
    assert loaded.config == model.config
    cond = model.condition(layout(), TEXT)
    x = torch.randn(1, *model.latent_shape)
    with torch.no_grad():
        assert torch.equal(model(x, 500, cond), loaded(x, 500, cond))
    assert torch.equal(model.sample(layout(), TEXT, seed=1, steps=2), loaded.sample(layout(), TEXT, seed=1, steps=2))
    with pytest.raises(ValueError, match="not a.? OccupancyDiffusion folder"):
        OccupancyDiffusion.from_pretrained(tmp_path)


def test_bev_condition_changes_output_and_zero_is_unconditional(model):
    x = torch.randn(1, *model.latent_shape)
    cond = model.condition(layout(), None)
    with torch.no_grad():
        with_layout = model(x, 500, cond)
        no_bev = model(x, 500, cond.drop(keep_bev=torch.tensor([False])))
        zero_bev = model(x, 500, OccupancyCondition(torch.zeros_like(cond.bev), *[getattr(cond, f) for f in
                                                   ("box_labels", "box_geometry", "box_mask", "text", "text_mask")]))
        uncond = model(x, 500, cond.unconditional())
        nothing = model(x, 500, model.condition(None, None))
    assert not torch.allclose(with_layout, no_bev)          # the BEV map matters
    assert torch.equal(no_bev, zero_bev)                    # dropping = zeroing the map
    assert torch.allclose(uncond, nothing, atol=1e-6)       # all removed = no layout, no caption
    # the BEV encoder maps a zero map to zero features exactly
    enc = BevEncoder(15, (8, 8), 4, downsample=1)
    assert torch.equal(enc(torch.zeros(1, 15, 32, 32), (16, 16)), torch.zeros(1, 4, 16, 16))


def test_masked_tokens_are_ignored_and_boxes_matter(model):
    x = torch.randn(1, *model.latent_shape)
    cond = model.condition(layout(), TEXT).drop(keep_bev=torch.tensor([False]))
    moved = OccupancyCondition(cond.bev, cond.box_labels, cond.box_geometry + 3.0, cond.box_mask, cond.text, cond.text_mask)
    with torch.no_grad():
        base, base_moved = model(x, 500, cond), model(x, 500, moved)
        hidden = cond.drop(keep_boxes=torch.tensor([False]))
        hidden_moved = moved.drop(keep_boxes=torch.tensor([False]))
        assert not torch.allclose(base, base_moved)         # box geometry reaches the output
        assert torch.equal(model(x, 500, hidden), model(x, 500, hidden_moved))  # masked boxes do not


def test_guidance_and_condition_batching(model):
    cond = model.condition([layout(), layout()], TEXT)
    assert cond.batch_size == 2
    x = torch.randn(2, *model.latent_shape)
    t = torch.tensor([300, 300])
    with torch.no_grad():
        plain = model(x, t, cond)
        g1 = model.guided(cond, 1.0)(x, t)
        g0 = model.guided(cond, 0.0)(x, t)
        uncond = model(x, t, cond.unconditional())
    assert torch.equal(plain, g1)
    assert torch.allclose(g0, uncond, atol=1e-5)
    both = OccupancyCondition.cat([cond, model.condition(None, None)])
    assert both.batch_size == 3 and both.box_mask.shape == (3, 2)


def test_sample_masked_keeps_known_region(model):
    known = torch.randn(1, *model.latent_shape) * corner_mask((16, 16, 4))  # a rolled-out latent: zero corner
    mask = torch.zeros(20, 20)
    mask[:, :8] = 1
    out = model.sample_masked(known, mask, layout(), TEXT, seed=0, steps=5, resample=2, jump=2)
    assert torch.equal(out[..., :8], known[..., :8])
    assert not torch.allclose(out[..., 8:16], known[..., 8:16])
    again = model.sample_masked(known, mask, layout(), TEXT, seed=0, steps=5, resample=2, jump=2)
    assert torch.equal(out, again)
    with pytest.raises(ValueError, match="jump"):
        model.sample_masked(known, mask, layout(), TEXT, steps=5, resample=2, jump=5)


def test_flip_boxes_mirrors_like_the_volume():
    b = np.array([[10.0, 2.0, 0.9, 4.5, 1.9, 1.6, 0.3]], np.float32)
    fx = flip_boxes(b, True, False, GRID)[0]
    fy = flip_boxes(b, False, True, GRID)[0]
    assert np.allclose(fx[[0, 1, 6]], [-10.0, 2.0, np.pi - 0.3]) and np.allclose(fy[[0, 1, 6]], [10.0, -2.0, -0.3])
    assert np.allclose(flip_boxes(flip_boxes(b, True, True, GRID), True, True, GRID)[:, :6], b[:, :6])


def test_training_step_and_checkpoint_round_trip(tmp_path):
    from xscene_core.data.latent_dataset import LatentDataset
    from xscene_core.train.ema_training import load_checkpoint, save_checkpoint
    from xscene_core.train.occupancy_diffusion import TrainConfig, diffusion_loss, make_batch

    model = tiny_model().train()
    rng = np.random.default_rng(0)
    data = LatentDataset(torch.randn(3, 4, *model.latent_shape).half(), rng.integers(0, 255, (3, 15, 32, 32), dtype=np.uint8),
                         [np.array([[10.0, 2.0, 0.9, 4.5, 1.9, 1.6, 0.1]], np.float32)] * 3, [np.array([4])] * 3,
                         rng.standard_normal((3, 384)).astype(np.float32), ["a"] * 3, GRID)
    cfg = TrainConfig(batch=2, drop_bev=0.5)
    sched = model.scheduler("ddpm")
    lat, cond, t, noise, weight = make_batch(data, 7, cfg, model, 1000)
    lat2, cond2, t2, _, _ = make_batch(data, 7, cfg, model, 1000)
    assert torch.equal(lat, lat2) and torch.equal(t, t2) and torch.equal(cond.bev, cond2.bev)  # resumable batches
    assert weight is None  # box_weight 0: plain MSE
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    loss = diffusion_loss(model, sched, lat, cond, t, noise, snr_gamma=5.0)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    ema = {k: v.detach().clone() for k, v in model.state_dict().items()}
    save_checkpoint(tmp_path, model, ema, opt, 1, {"best_val_loss": 1.0})
    m2, ema2, opt_state, state = load_checkpoint(tmp_path, OccupancyDiffusion)
    assert state["step"] == 1 and set(ema2) == set(ema)
    opt2 = torch.optim.AdamW(m2.parameters(), 1e-3)
    opt2.load_state_dict(opt_state)
    a, b = opt.state_dict()["state"], opt2.state_dict()["state"]
    assert all(torch.equal(a[i]["exp_avg"], b[i]["exp_avg"]) for i in a)


def test_footprint_weight_raises_the_loss_under_objects_only():
    from xscene_core.ops.condition_maps import AREA_CHANNELS
    from xscene_core.train.occupancy_diffusion import diffusion_loss, footprint_weight

    model = tiny_model()
    X, Y, _ = model.plane_shape
    bev = torch.zeros(2, 15, 32, 32)
    bev[:, 0] = 1.0                                  # drivable everywhere: not an object
    bev[0, len(AREA_CHANNELS) + 1, 4:6, 10:12] = 0.3  # a small footprint (partial coverage) in sample 0
    w = footprint_weight(model, bev, 4.0)
    assert w.shape == (2, 1, *model.latent_shape[1:])
    assert torch.all(w[1] == 1.0) and w[0].max() == 5.0
    assert torch.all(w[0, 0, 2:3, 5:6] == 5.0) and int((w[0] == 5.0).sum()) == 1  # 32 -> 16 cells: one cell
    # unit weights give the plain loss; the footprint weight changes it (the mean is taken under it)
    sched = model.scheduler("ddpm")
    lat = torch.zeros(2, *model.latent_shape)
    from xscene_core.models.condition_encoders import OccupancyCondition

    cond = OccupancyCondition.from_arrays([b.numpy() for b in bev], [np.zeros((0, 7), np.float32)] * 2,
                                          [np.zeros(0, np.int64)] * 2, [TEXT, TEXT], 384, 8)
    t, noise = torch.tensor([10, 10]), torch.randn(2, *model.latent_shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        plain = diffusion_loss(model, sched, lat, cond, t, noise)
        unit = diffusion_loss(model, sched, lat, cond, t, noise, cell_weight=torch.ones_like(w))
        weighted = diffusion_loss(model, sched, lat, cond, t, noise, cell_weight=w)
    assert torch.allclose(plain, unit) and not torch.allclose(plain, weighted)


def test_controllability_metrics_on_hand_made_volumes():
    from xscene_core.eval.controllability import box_realised_counts, drivable_columns, drivable_counts, layout_drivable

    grid = GridSpec()
    lay = layout()
    labels = np.full(grid.shape, semantics.FREE, np.uint8)
    area = layout_drivable(lay, grid)
    assert area[:, 85:115].all() and not area[:, :80].any()
    labels[..., 2][area] = semantics.ID["driveable_surface"]
    assert box_realised_counts(labels, lay, grid) == (0, 2)
    car = lay.boxes[0]
    from xscene_core.ops.box_guidance import box_voxels

    labels[box_voxels(car, grid)] = car.label
    assert box_realised_counts(labels, lay, grid) == (1, 2)
    from xscene_core.eval.controllability import ControlTally

    tally = ControlTally().add(labels, lay, area, grid).add(labels, lay, area, grid)
    assert tally.box_realised == 0.5 and sum(t for _, t in tally.by_class.values()) == 4
    assert f"car 2/{tally.by_class[car.label][1]}" in tally.by_class_text()
    inter, union = drivable_counts(labels, area)
    assert inter == union == area.sum()                      # the car is looked through
    labels[..., 5][area] = semantics.ID["manmade"]           # a roof over the road is not a road
    labels[..., 0][~area] = semantics.ID["driveable_surface"]  # stray voxels under free columns do count
    cols = drivable_columns(labels)
    assert not cols[area].any() and cols[~area].all()


def test_class_factors_give_rare_classes_more_footprint_weight():
    from xscene_core.ops.condition_maps import AREA_CHANNELS
    from xscene_core.train.occupancy_diffusion import footprint_class_factors, footprint_weight

    A = len(AREA_CHANNELS)
    bev = np.zeros((3, 15, 32, 32), np.uint8)
    bev[:, A + 3, :8, :8] = 255           # a common class: 64 cells in each map
    bev[0, A + 1, 20:22, 20:22] = 255     # a rare one: 4 cells in one map
    f = footprint_class_factors(bev, 0.5, 10.0)
    assert f.shape == (15 - A,)
    assert f[3] == 1.0 and torch.isclose(f[1], torch.tensor((192 / 4) ** 0.5))
    assert f[0] == 10.0                   # absent from the set: the cap
    assert torch.all(footprint_class_factors(bev, 0.0, 10.0) == 1.0)
    model = tiny_model()
    w = footprint_weight(model, torch.from_numpy(bev[:1]).float() / 255, 2.0, f)
    assert w[0, 0, 0, 0] == 1.0 + 2.0 and torch.isclose(w[0, 0, 10, 10], 1.0 + 2.0 * f[1])
    assert w[0, 0, 15, 15] == 1.0
