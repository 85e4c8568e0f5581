"""Road paint in the area condition: the preview's lane marks drawn into each camera from the same canvas,
and models saved when the condition held the crossings only load and run unchanged."""

import json
from dataclasses import replace

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from xscene_core.models.geometry_decoder import load_geometry_decoder
from xscene_core.models.image_condition import AREA_CHANNELS, GeometryEncoder
from xscene_core.ops.condition_maps import PERSPECTIVE_AREA_KINDS, ground_areas
from xscene_core.ops.road_paint import paint_canvas
from xscene_core.stages.render import default_rig
from xscene_core.types.layout import Layout, MapLine
from xscene_core.types.occupancy import ROAD_SURFACE_Z

from test_area_condition import CROSSING, TEXT, _arrays
from test_first_guess import folder  # noqa: F401  (fixture)
from test_geometry_decoder import GEOMETRY, LATENT, _extended, _laid_out, autoencoder  # noqa: F401
from test_image_autoencoder import fake_cache

WHITE, YELLOW = (PERSPECTIVE_AREA_KINDS.index(k) for k in ("paint_white", "paint_yellow"))
# A dashed lane divider straight ahead from 2 m: 3 m painted, 6 m apart (11-14 m, 20-23 m, ... painted)
DIVIDER = MapLine(np.array([[2.0, 0.0], [60.0, 0.0]]), "lane_divider")
STOP = MapLine(np.array([[5.0, -6.0], [5.0, 6.0]]), "stop_line")  # 0.45 m wide: seen even at a small size


def _pixel(rig, v: int, x: float, y: float) -> tuple[int, int]:
    """(row, column) of the road point (x, y) in camera v."""
    c = np.linalg.inv(rig.T_world_cam(v)) @ np.array([x, y, ROAD_SURFACE_Z, 1.0])
    K = rig.cameras[v].K
    return int(K[1, 1] * c[1] / c[2] + K[1, 2]), int(K[0, 0] * c[0] / c[2] + K[0, 2])


def test_a_dashed_divider_is_painted_on_its_dashes_and_not_between_them():
    rig = default_rig((112, 200))
    front = rig.names.index("CAM_FRONT")
    areas = ground_areas(Layout(lines=(DIVIDER,)), rig)
    white = areas[front, WHITE]
    for x in (12.5, 21.5):
        assert white[_pixel(rig, front, x, 0.0)], f"on the dash at {x} m"
    for x in (17.0, 26.0):
        assert not white[_pixel(rig, front, x, 0.0)], f"in the gap at {x} m"
    assert not areas[:, YELLOW].any() and not areas[:, PERSPECTIVE_AREA_KINDS.index("crosswalk")].any()
    double = ground_areas(Layout(lines=(MapLine(DIVIDER.points, "road_divider"),)), rig)
    assert double[front, YELLOW].any() and not double[:, WHITE].any(), "a road divider is the double yellow"


def test_the_condition_draws_the_paint_the_preview_look_paints():
    """Each marked pixel's road point carries paint on the preview's canvas, and the other way round."""
    layout = Layout(lines=(DIVIDER, STOP), polygons=(CROSSING,))
    rig = default_rig((56, 100))
    areas = ground_areas(layout, rig)
    canvas = paint_canvas(layout)
    front = rig.names.index("CAM_FRONT")
    K, T = rig.cameras[front].K, rig.T_world_cam(front)
    v, u = np.meshgrid(np.arange(56) + 0.5, np.arange(100) + 0.5, indexing="ij")
    d = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1) @ T[:3, :3].T
    below = d[..., 2] < -0.05  # rays that reach the road well before the horizon
    z = (ROAD_SURFACE_Z - T[2, 3]) / d[below][:, 2]
    xy = T[:2, 3] + z[:, None] * d[below][:, :2]
    alpha = canvas.sample(torch.from_numpy(xy)).numpy()
    np.testing.assert_array_equal(areas[front, WHITE][below], alpha[:, 0] > 0.5)
    zebra = areas[front, WHITE] & areas[front, PERSPECTIVE_AREA_KINDS.index("crosswalk")]
    assert zebra.any() and zebra.sum() < areas[front, PERSPECTIVE_AREA_KINDS.index("crosswalk")].sum(), \
        "the zebra's bars, not the whole crossing"


def _narrowed(state: dict) -> dict:
    """A state dict as saved when the area input read the crossings only."""
    return {k: (v[:, :1].clone() if k.endswith("area_in.weight") else v) for k, v in state.items()}


def test_an_encoder_saved_with_the_crossings_only_loads_blind_to_the_paint():
    from xscene_core.models.image_condition import ImageCondition

    torch.manual_seed(0)
    old = GeometryEncoder(8, 4, areas=True)
    torch.nn.init.normal_(old.area_in.weight)
    new = GeometryEncoder(8, 4, areas=True)
    new.load_state_dict(_narrowed(old.state_dict()))
    w = new.area_in.weight
    assert w.shape[1] == AREA_CHANNELS and torch.equal(w[:, :1], old.area_in.weight[:, :1]) and not w[:, 1:].any()
    painted = ImageCondition.collate([_arrays(Layout(lines=(STOP,), polygons=(CROSSING,)))], [TEXT], [None],
                                     [None], 3, 8)
    unpainted = replace(painted, areas=painted.areas * (torch.arange(AREA_CHANNELS) == 0).float().view(1, 1, -1, 1, 1))
    assert painted.areas[:, :, 1].any()
    with torch.no_grad():
        assert torch.equal(new(painted), new(unpainted)), "the paint's columns load at zero"
        assert not torch.equal(new(replace(painted, areas=painted.areas * 0)), new(unpainted)), \
            "while the crossings' column still reads them"


def test_a_geometry_decoder_saved_with_the_crossings_only_loads_and_decodes_as_saved(autoencoder, tmp_path):  # noqa: F811
    _, dec = _extended(autoencoder, area_condition=True)
    with torch.no_grad():
        dec.geometry.area_in.weight.normal_(0, 0.5)
    dec.save_pretrained(tmp_path / "geometry_decoder")
    weights = next((tmp_path / "geometry_decoder").glob("*.safetensors"))
    save_file(_narrowed(load_file(str(weights))), str(weights))
    again = load_geometry_decoder(tmp_path)
    with torch.no_grad():
        dec.geometry.area_in.weight[:, 1:] = 0
        z, cond = torch.randn(6, 4, *LATENT), _laid_out(Layout(lines=(STOP,), polygons=(CROSSING,)))
        assert torch.allclose(again(z, cond), dec(z, cond), atol=1e-6)


def test_the_trainer_widens_a_start_that_read_the_crossings_only(folder, tmp_path, monkeypatch):  # noqa: F811
    from xscene_core.data.image_dataset import AREA_VERSION, cache_dir, cache_files
    from xscene_core.models import image_diffusion
    from xscene_core.models.image_diffusion import ImageDiffusion
    from xscene_core.models.pretrained import write_pretrained
    from xscene_core.train.image_diffusion import main

    from test_adversarial_diffusion import SMALL

    monkeypatch.setitem(image_diffusion.PRESETS, "tiny_latent", {**image_diffusion.PRESETS["tiny_latent"], **SMALL})
    fake_cache(tmp_path / "cache", size=(32, 56), cond=GEOMETRY)
    rng = np.random.default_rng(0)
    for path in cache_files(cache_dir(tmp_path / "cache", (32, 56), "train", GEOMETRY)):
        with np.load(path) as d:
            data = dict(d)
        np.savez_compressed(path, **data, areas=rng.integers(0, 256, (6, AREA_CHANNELS, *GEOMETRY), dtype=np.uint8),
                            areas_version=np.int64(AREA_VERSION))
    common = ["--preset", "tiny_latent", "--cache", str(tmp_path / "cache"), "--vae-path", str(folder),
              "--val-samples", "2", "--log-every", "1", "--threads", "1", "--lr", "0", "--steps", "1"]
    main(common + ["--out", str(tmp_path / "start"), "--area-condition"])
    start = ImageDiffusion.from_pretrained(tmp_path / "start" / "final")
    crossings = torch.randn_like(start.geometry.area_in.weight[:, :1])
    state = _narrowed(start.state_dict())
    state["geometry.area_in.weight"] = crossings
    write_pretrained(tmp_path / "old", state, {"_class_name": "ImageDiffusion", **start.config})
    main(common + ["--out", str(tmp_path / "run"), "--init", str(tmp_path / "old")])
    grown = ImageDiffusion.from_pretrained(tmp_path / "run" / "final").geometry.area_in.weight
    assert torch.equal(grown[:, :1], crossings) and not grown[:, 1:].any()  # lr 0: as it started
    init = next(json.loads(s) for s in (tmp_path / "run" / "log.jsonl").read_text().splitlines() if '"init"' in s)
    assert init["kept_initialisation"] == []
