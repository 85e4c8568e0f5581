"""The paint condition: box colours as box-token features and a per-pixel paint map, zero-initialised."""

import numpy as np
import pytest
import torch

from xscene_core import semantics
from xscene_core.models.image_condition import (PAINT_FEATURES, GeometryEncoder, ImageCondition, box_paint_features,
                                                paint_map, view_condition_arrays)
from xscene_core.models.image_diffusion import PRESETS, ImageDiffusion
from xscene_core.ops.preview_look import PAINTS
from xscene_core.stages.render import default_rig
from xscene_core.types.layout import Box, Layout

SIZE = (16, 28)
TINY = dict(sample_size=SIZE, block_out_channels=(8, 16), attention_levels=(False, True), attention_heads=2,
            norm_num_groups=4, token_dim=16, geometry_hidden=8, geometry_features=4, max_boxes=8)
TEXT = np.ones(384, np.float32) / 20


def _raw(size=SIZE):
    """Random semantic / depth renders at twice `size`."""
    rng = np.random.default_rng(0)
    sem = rng.integers(11, 18, size=(6, 2 * size[0], 2 * size[1])).astype(np.uint8)
    return sem, rng.uniform(2, 50, size=sem.shape).astype(np.float32)


def _arrays(car_color: str, size=SIZE):
    """A car 8 m ahead (paint car_color) and a pedestrian (no paint) seen by the default rig."""
    rig = default_rig((2 * size[0], 2 * size[1]))
    sem, depth = _raw(size)
    layout = Layout(boxes=(Box((8.0, 0.0, 0.8), (4.5, 1.9, 1.6), 0.1, 4, color=car_color),
                           Box((-6.0, 3.0, 0.9), (0.6, 0.6, 1.8), 0.0, 7)))
    return view_condition_arrays(sem, depth, layout, rig, size)


def _cond(arrays) -> ImageCondition:
    return ImageCondition.collate([arrays], [TEXT], [None], [None], 3, 8)


def test_box_paint_features_of_known_and_unknown_names():
    f = box_paint_features(["red", "Dark Blue", "", "plaid"])
    assert f.shape == (4, PAINT_FEATURES)
    np.testing.assert_allclose(f[0, :3], np.asarray(PAINTS["red"]) ** (1 / 2.2), rtol=1e-6)
    assert f[0, 3] == f[1, 3] == 1 and f[1, 2] > f[1, 0]
    assert not f[2:].any(), "an empty or unknown colour is unknown, not black"


def test_condition_arrays_and_batches_carry_the_paints():
    red, none = _arrays("red"), _arrays("")
    assert red.box_paints.shape == (2, PAINT_FEATURES)
    np.testing.assert_allclose(red.box_paints[0], box_paint_features(["red"])[0])
    assert not red.box_paints[1].any() and not none.box_paints.any()
    c = _cond(red)
    assert c.box_paint.shape == (1, 2, PAINT_FEATURES)
    assert c.box_paint[0, c.box_labels[0] == 4, 3].tolist() == [1.0]  # collate orders boxes by distance
    # batches of different box counts pad the paints with "unknown"
    empty = view_condition_arrays(*_raw(), None, default_rig((32, 56)), SIZE)
    both = ImageCondition.cat([_cond(empty), c])
    assert both.box_paint.shape == (2, 2, PAINT_FEATURES) and not both.box_paint[0].any()
    # a condition built without paints (older callers) has them all unknown
    assert not ImageCondition.collate([empty], [TEXT], [None], [None], 3, 8).box_paint.any()
    with pytest.raises(ValueError, match="box_paints"):
        type(red)(**{**red.__dict__, "box_paints": np.zeros((3, PAINT_FEATURES), np.float32)})


def test_paint_map_paints_the_pixels_of_the_box_seen_there():
    c = _cond(_arrays("red"))
    pm = paint_map(c)
    assert pm.shape == (1, 6, PAINT_FEATURES, *SIZE)
    car = c.persp[0, :, semantics.OBJECT_IDS.index(semantics.ID["car"])] > 0  # the car's faces
    assert car.any()
    known = pm[0, :, 3] > 0
    assert known.sum() >= 0.9 * car.sum(), "nearly every car pixel takes the car's paint"
    paint = c.box_paint[0, c.box_labels[0] == 4][0]
    assert torch.allclose(pm[0].permute(0, 2, 3, 1)[known], paint.expand(int(known.sum()), -1))
    on_box = c.persp[0, :, :10].sum(1) > 0
    assert not pm[0].permute(0, 2, 3, 1)[~on_box].any(), "no paint off the boxes"
    # the pedestrian has no paint; a dropped box list takes the paints with it
    assert not (known & ~car).any()
    assert not paint_map(c.drop(keep_boxes=torch.tensor([False]))).any()


def test_paint_condition_starts_as_a_no_op_and_then_steers():
    x = torch.randn(1, 6, 3, *SIZE)
    t = torch.tensor([600])
    red, blue = _cond(_arrays("red")), _cond(_arrays("blue"))

    def out(model, cond):
        with torch.no_grad():
            return model(x, t, cond)

    torch.manual_seed(0)
    fresh = ImageDiffusion(**{**PRESETS["tiny"], **TINY, "paint_condition": True}).eval()
    assert torch.equal(out(fresh, red), out(fresh, blue)), "zero-initialised: a no-op"
    torch.manual_seed(0)
    plain = ImageDiffusion(**{**PRESETS["tiny"], **TINY}).eval()
    plain.load_state_dict(fresh.state_dict(), strict=False)
    assert torch.equal(out(plain, red), out(fresh, red)), "a model gains the paints without changing its output"
    with torch.no_grad():
        for p in fresh.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    assert not torch.allclose(out(fresh, red), out(fresh, blue)), "trained (here: perturbed) weights read the paint"
    # both paths read it: the per-pixel map alone and the box tokens alone
    enc = GeometryEncoder(8, 4, paint=True)
    torch.nn.init.normal_(enc.paint_in.weight)
    assert not torch.allclose(enc(red), enc(blue))
    assert torch.equal(enc(red.without_geometry()), enc(blue.without_geometry()))
    # the guidance branch drops boxes, hence paints
    assert torch.equal(out(fresh, red.unconditional()), out(fresh, blue.unconditional()))


def test_object_weighting_weighs_the_box_cells_and_keeps_the_loss_scale():
    from xscene_core.models.image_condition import object_weights
    from xscene_core.models.image_diffusion import diffusion_loss

    c = _cond(_arrays("red"))
    w = object_weights(c, SIZE, 5.0)
    on_box = (c.persp[:, :, :10].sum(2, keepdim=True) > 0).float()
    marked = torch.maximum(on_box, c.areas.amax(2, keepdim=True))  # the lamps of the lattice (no road edges)
    assert w.shape == (1, 6, 1, *SIZE) and torch.allclose(w, 1 + 4 * marked)  # same size: cover is 0 or 1
    assert (w[on_box.bool()] == 5).all()
    assert float(object_weights(c, SIZE, 1.0).sub(1).abs().max()) == 0
    empty = _cond(view_condition_arrays(*_raw(), None, default_rig((32, 56)), SIZE))
    empty.areas.zero_()  # no lamps either (without a layout they stand on a lattice)
    m = ImageDiffusion(**{**PRESETS["tiny"], **TINY}).eval()
    x, noise, t = torch.randn(1, 6, 3, *SIZE), torch.randn(1, 6, 3, *SIZE), torch.tensor([400])
    with torch.no_grad():
        loss = lambda cond, wt: float(diffusion_loss(m, m.scheduler("ddpm"), x, cond, t, noise, object_weight=wt))  # noqa: E731
        assert loss(c, 1.0) != loss(c, 5.0)                       # the boxes' cells count more
        assert abs(loss(empty, 1.0) - loss(empty, 5.0)) < 1e-7    # no boxes or marks: the plain mean
