"""The area condition: crossings and road paint drawn into each camera, a zero-initialised encoder input."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from xscene_core.models.image_condition import (AREA_CHANNELS, AREA_KINDS, GeometryEncoder, ImageCondition, ViewArrays,
                                                area_coverage, view_condition_arrays)
from xscene_core.models.image_diffusion import PRESETS, ImageDiffusion
from xscene_core.ops.condition_maps import PERSPECTIVE_AREA_KINDS, ground_areas, perspective_maps
from xscene_core.ops.geometry import points_in_polygon, polygon_mask
from xscene_core.stages.render import default_rig
from xscene_core.types.layout import Box, Layout, MapPolygon

from test_adversarial_diffusion import SMALL
from test_first_guess import folder  # noqa: F401  (fixture)
from test_geometry_decoder import GEOMETRY
from test_image_autoencoder import fake_cache

SIZE = (16, 28)
TINY = dict(sample_size=SIZE, block_out_channels=(8, 16), attention_levels=(False, True), attention_heads=2,
            norm_num_groups=4, token_dim=16, geometry_hidden=8, geometry_features=4, max_boxes=8)
TEXT = np.ones(384, np.float32) / 20
# A crossing 6-10 m ahead of the ego, across the road.
CROSSING = MapPolygon(np.array([[6.0, -5.0], [10.0, -5.0], [10.0, 5.0], [6.0, 5.0]]), "crosswalk")


def _layout(*boxes: Box) -> Layout:
    return Layout(boxes=tuple(boxes), polygons=(CROSSING,))


def _arrays(layout: Layout | None, size=SIZE) -> ViewArrays:
    rng = np.random.default_rng(0)
    sem = rng.integers(11, 18, size=(6, 2 * size[0], 2 * size[1])).astype(np.uint8)
    depth = rng.uniform(2, 50, size=sem.shape).astype(np.float32)
    return view_condition_arrays(sem, depth, layout, default_rig((2 * size[0], 2 * size[1])), size)


def test_points_in_polygon_agrees_with_the_lattice_fill():
    poly = np.array([[0.0, 0.0], [4.0, 1.0], [3.0, 5.0], [1.5, 2.5], [0.5, 4.0]])  # not convex
    xs, ys = np.linspace(-1, 5, 37), np.linspace(-1, 6, 41)
    lattice = polygon_mask(poly, xs, ys)
    pts = np.stack(np.meshgrid(xs, ys, indexing="ij"), -1).reshape(-1, 2)
    np.testing.assert_array_equal(points_in_polygon(pts, poly), lattice.reshape(-1))
    np.testing.assert_array_equal(points_in_polygon(pts, poly[::-1]), lattice.reshape(-1))


def test_a_crossing_ahead_shows_in_the_front_camera_and_a_box_hides_it():
    rig = default_rig((56, 100))
    front, back = rig.names.index("CAM_FRONT"), rig.names.index("CAM_BACK")
    areas = perspective_maps(_layout(), rig).areas
    assert areas.shape == (6, len(PERSPECTIVE_AREA_KINDS), 56, 100)
    crossing = areas[front, PERSPECTIVE_AREA_KINDS.index("crosswalk")]
    assert crossing.any() and not areas[back].any()
    rows = np.nonzero(crossing.any(1))[0]
    assert rows.min() > 28, "on the road: below the horizon of a level camera"
    assert not perspective_maps(Layout(), rig).areas.any()
    # a van parked on the crossing hides the part behind it, not the part before it
    van = Box((9.0, 0.0, 1.2), (2.0, 3.0, 2.4), 0.0, 4)
    hidden = perspective_maps(_layout(van), rig).areas[front, 0]
    assert hidden.sum() < crossing.sum() and not (hidden & ~crossing).any()
    assert not ground_areas(_layout(), rig, np.full((6, 56, 100), 1.0, np.float32)).any(), \
        "a box face nearer than the road everywhere hides the whole crossing"


def test_condition_arrays_carry_the_crossing_as_coverage():
    a = _arrays(_layout())
    assert a.areas.shape == (6, AREA_CHANNELS, *SIZE) and a.areas.dtype == np.uint8
    assert a.areas.max() == 255 and ((a.areas > 0) & (a.areas < 255)).any(), "partly covered pixels in between"
    fine = perspective_maps(_layout(), default_rig((32, 56))).areas
    A = len(PERSPECTIVE_AREA_KINDS)  # the ground marks come first, then the lights (test_light_condition)
    np.testing.assert_allclose(a.areas[:, :A] / 255.0, fine.reshape(6, A, 16, 2, 28, 2).mean((3, 5)), atol=0.5 / 255)
    assert not _arrays(None).areas[:, :A].any()
    with pytest.raises(ValueError, match="areas"):
        ViewArrays(**{**a.__dict__, "areas": np.zeros((6, AREA_CHANNELS, 8, 14), np.uint8)})
    c = ImageCondition.collate([a], [TEXT], [None], [None], 3, 8)
    assert c.areas.shape == (1, 6, AREA_CHANNELS, *SIZE) and float(c.areas.max()) == 1.0
    both = ImageCondition.cat([c, ImageCondition.collate([_arrays(None)], [TEXT], [None], [None], 3, 8)])
    assert both.areas.shape[0] == 2 and not both.areas[1, :, :A].any()
    c = ImageCondition.collate([a], [TEXT], [None], [None], 3, 8, geometry_stride=2)
    half = c.coarsened(2)
    assert half.areas.shape == (1, 6, AREA_CHANNELS, 8, 14)
    assert torch.allclose(half.areas.sum((-1, -2)) * 4, c.areas.sum((-1, -2)), atol=1e-5), "averaged, not sampled"


def test_area_coverage_enlarges_by_the_nearest_pixel():
    m = np.zeros((1, 1, 2, 2), bool)
    m[0, 0, 0, 0] = True
    out = area_coverage(m, (4, 4))
    assert out.shape == (1, 1, 4, 4) and out[0, 0, :2, :2].min() == 255 and out.sum() == 4 * 255


def test_area_condition_starts_as_a_no_op_and_then_steers():
    x, t = torch.randn(1, 6, 3, *SIZE), torch.tensor([600])
    with_crossing = ImageCondition.collate([_arrays(_layout())], [TEXT], [None], [None], 3, 8)
    without = ImageCondition.collate([_arrays(Layout())], [TEXT], [None], [None], 3, 8)

    def out(model, cond):
        with torch.no_grad():
            return model(x, t, cond)

    torch.manual_seed(0)
    fresh = ImageDiffusion(**{**PRESETS["tiny"], **TINY, "area_condition": True}).eval()
    assert fresh.config["area_condition"]
    assert torch.equal(out(fresh, with_crossing), out(fresh, without)), "zero-initialised: a no-op"
    torch.manual_seed(0)
    plain = ImageDiffusion(**{**PRESETS["tiny"], **TINY}).eval()
    plain.load_state_dict(fresh.state_dict(), strict=False)
    assert torch.equal(out(plain, with_crossing), out(fresh, with_crossing))
    enc = GeometryEncoder(8, 4, areas=True)
    torch.nn.init.normal_(enc.area_in.weight)
    assert not torch.allclose(enc(with_crossing), enc(without)), "trained (here: random) weights read the crossing"
    assert torch.equal(enc(with_crossing.without_geometry()), enc(without.without_geometry())), \
        "dropped with the geometry"


def test_the_trainer_adds_the_area_input_to_a_start_and_refuses_a_cache_without_areas(folder, tmp_path, monkeypatch):  # noqa: F811
    from xscene_core.data.image_dataset import AREA_VERSION, cache_dir, cache_files
    from xscene_core.models import image_diffusion
    from xscene_core.train.image_diffusion import main

    monkeypatch.setitem(image_diffusion.PRESETS, "tiny_latent", {**image_diffusion.PRESETS["tiny_latent"], **SMALL})
    fake_cache(tmp_path / "cache", size=(32, 56), cond=GEOMETRY)
    common = ["--preset", "tiny_latent", "--cache", str(tmp_path / "cache"), "--vae-path", str(folder),
              "--val-samples", "2", "--log-every", "1", "--threads", "1", "--lr", "0"]
    main(common + ["--out", str(tmp_path / "start"), "--steps", "1"])
    grow = common + ["--out", str(tmp_path / "run"), "--steps", "1", "--area-condition",
                     "--init", str(tmp_path / "start" / "final")]
    with pytest.raises(SystemExit, match="hold no marks or marks drawn before"):
        main(grow)
    rng = np.random.default_rng(0)
    for path in cache_files(cache_dir(tmp_path / "cache", (32, 56), "train", GEOMETRY)):
        with np.load(path) as d:
            data = dict(d)
        np.savez_compressed(path, **data, areas=rng.integers(0, 256, (6, AREA_CHANNELS, *GEOMETRY), dtype=np.uint8),
                            areas_version=np.int64(AREA_VERSION))
    main(grow)
    grown = ImageDiffusion.from_pretrained(tmp_path / "run" / "final")
    assert grown.config["area_condition"] and not grown.geometry.area_in.weight.any()  # lr 0: as it started
    init = next(json.loads(s) for s in (tmp_path / "run" / "log.jsonl").read_text().splitlines()
                if '"init"' in s)
    assert init["kept_initialisation"] == ["geometry.area_in.weight"]


def test_object_weighting_also_weighs_the_crossings():
    from xscene_core.models.image_condition import object_weights

    c = ImageCondition.collate([_arrays(_layout())], [TEXT], [None], [None], 3, 8)
    w = object_weights(c, SIZE, 5.0)
    assert torch.allclose(w, 1 + 4 * c.areas.amax(2, keepdim=True)), "no boxes here: the marks' coverage alone (the crossing, the lattice's lamps)"
    bare = ImageCondition.collate([_arrays(Layout())], [TEXT], [None], [None], 3, 8)
    unmarked = bare.areas.amax(2, keepdim=True) == 0
    assert unmarked.float().mean() > 0.9 and (object_weights(bare, SIZE, 5.0)[unmarked] == 1).all()
    windowed = bare.areas.clone()
    windowed[:, :, AREA_KINDS.index("window")] = 1.0
    assert torch.equal(object_weights(replace(bare, areas=windowed), SIZE, 5.0), object_weights(bare, SIZE, 5.0)), \
        "the facades' windows cover whole walls: they are not foreground"
