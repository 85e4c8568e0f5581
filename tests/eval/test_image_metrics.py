"""Image metrics: the overlap geometry of neighbouring cameras, and measure_images end to end (tiny models)."""

import numpy as np
import torch

from xscene_core import semantics
from xscene_core.eval.image_metrics import cross_view_agreement, measure_images, overlap_pairs
from xscene_core.models.image_diffusion import PRESETS, ImageDiffusion
from xscene_core.models.segmenter import Segmenter, confusion, miou


def _views():
    from xscene_core.data.world import SyntheticWorld
    from xscene_core.stages.render import RenderStage, default_rig

    world = SyntheticWorld(5)
    chunk = world.chunk(*world.find_location("suburban"))
    stage = RenderStage(default_rig((64, 112)), backend="torch")
    views = stage(chunk.occupancy)
    return views, stage.preview(views, chunk.description, chunk.layout, 0, chunk.occupancy)


def test_overlap_pairs_and_agreement():
    views, preview = _views()
    pairs = overlap_pairs(views.depth, views.rig)
    assert len(pairs) == 12 and sum(len(p[1]) for p in pairs) > 100  # neighbouring nuScenes cameras overlap
    for i, pi, j, pj in pairs:
        assert abs(j - i) in (1, 5) and len(pi) == len(pj)
    a, n = cross_view_agreement(preview.images, pairs)
    noise = np.random.default_rng(0).integers(0, 256, preview.images.shape, dtype=np.uint8)
    b, m = cross_view_agreement(noise, pairs)
    assert n == m and a / n > 0.8 > b / m  # the preview look is consistent across cameras, noise is not


def test_miou():
    t = np.array([[0, 0, 1, 1]])
    assert miou(confusion(t, t)) == 1.0
    assert abs(miou(confusion(np.array([[0, 0, 0, 1]]), t)) - (2 / 3 + 1 / 2) / 2) < 1e-9


def test_measure_images_keys(tmp_path):
    torch.manual_seed(0)
    ImageDiffusion(**{**PRESETS["tiny"], "sample_size": (16, 28), "block_out_channels": (8, 16),
                      "attention_levels": (False, True), "attention_heads": 2, "norm_num_groups": 4, "token_dim": 16,
                      "geometry_hidden": 8, "geometry_features": 4, "num_inference_steps": 2}).save_pretrained(tmp_path / "m")
    Segmenter(widths=(4, 8, 8)).save_pretrained(tmp_path / "s")
    out = measure_images(1, 0, tmp_path / "m", tmp_path / "s", log=lambda *_: None)
    for k in ("image_alignment_miou", "image_alignment_miou_preview", "image_alignment_miou_no_geometry",
              "image_cross_view_consistency", "image_extrapolation_psnr", "images_s"):
        assert np.isfinite(out[k]), k
    assert 0 <= out["image_alignment_miou"] <= 1 and 0 <= out["image_cross_view_consistency"] <= 1
    assert out["image_alignment_miou_plain_decoder"] is None  # a pixel model has no decoder to compare
    assert 0 <= out["image_vehicle_error"] <= 1, "the first test chunk has painted vehicles"


def test_measure_images_reports_the_plain_decoder_beside_a_geometry_aware_one(tmp_path):
    from xscene_core.models.geometry_decoder import GeometryDecoder
    from xscene_core.models.image_autoencoder import build_autoencoder

    torch.manual_seed(0)
    ae = build_autoencoder("tiny", block_out_channels=(8, 16, 16), norm_num_groups=4)
    ae.save_pretrained(tmp_path / "ae" / "vae")
    GeometryDecoder.from_autoencoder(ae, geometry_hidden=8, geometry_features=8).save_pretrained(
        tmp_path / "ae" / "geometry_decoder")
    ImageDiffusion(**{**PRESETS["tiny_latent"], "sample_size": (8, 14), "block_out_channels": (8, 16),
                      "attention_levels": (False, True), "attention_heads": 2, "norm_num_groups": 4, "token_dim": 16,
                      "geometry_hidden": 8, "geometry_features": 4, "num_inference_steps": 2,
                      "vae_path": str(tmp_path / "ae"), "geometry_decoder": True}).save_pretrained(tmp_path / "m")
    Segmenter(widths=(4, 8, 8)).save_pretrained(tmp_path / "s")
    out = measure_images(1, 0, tmp_path / "m", tmp_path / "s", log=lambda *_: None)
    for k in ("image_alignment_miou_plain_decoder", "image_cross_view_consistency_plain_decoder",
              "image_psnr_plain_decoder", "image_sharpness", "image_sharpness_plain_decoder", "image_sharpness_rig",
              "image_sharpness_rig_plain_decoder"):
        assert np.isfinite(out[k]), k
    # a fresh geometry decoder decodes as the plain one, so the same latents give the same figures
    assert abs(out["image_psnr_plain_decoder"] - out["image_extrapolation_psnr_no_reference"]) < 0.01
    assert abs(out["image_sharpness_plain_decoder"] - out["image_sharpness"]) < 1e-3
    assert abs(out["image_sharpness_rig_plain_decoder"] - out["image_sharpness_rig"]) < 1e-3
    assert abs(out["image_vehicle_error_plain_decoder"] - out["image_vehicle_error"]) < 1e-3


def test_vehicle_error_counts_the_painted_boxes_only():
    from xscene_core.eval.image_metrics import vehicle_error
    from xscene_core.models.image_condition import paint_map, view_condition_arrays, ImageCondition
    from xscene_core.stages.render import default_rig
    from xscene_core.types.layout import Box, Layout

    rng = np.random.default_rng(0)
    sem = rng.integers(11, 18, size=(6, 32, 56)).astype(np.uint8)
    depth = rng.uniform(2, 50, size=sem.shape).astype(np.float32)
    layout = Layout(boxes=(Box((8.0, 0.0, 0.8), (4.5, 1.9, 1.6), 0.1, 4, color="red"),
                           Box((-6.0, 3.0, 0.9), (0.6, 0.6, 1.8), 0.0, 7)))
    arrays = view_condition_arrays(sem, depth, layout, default_rig((32, 56)), (16, 28))
    car = paint_map(ImageCondition.collate([arrays], [None], [None], [None], 3, 8))[0, :, 3].numpy() > 0
    preview = rng.integers(0, 256, size=(6, 16, 28, 3)).astype(np.uint8)
    assert vehicle_error(preview, preview, arrays) == (0.0, int(car.sum())) and car.any()
    other = preview.copy()
    other[~car] = 255 - other[~car]       # everything but the car changed: no vehicle error
    assert vehicle_error(other, preview, arrays)[0] == 0.0
    other[car] = np.clip(other[car].astype(int) + 51, 0, 255).astype(np.uint8)
    e, n = vehicle_error(other, preview, arrays)
    assert 0 < e / n <= 0.2 + 1e-6


def test_crossing_and_paint_contrast_read_the_road_under_them_only():
    from xscene_core.eval.image_metrics import _contrast, area_luma
    from xscene_core.models.image_condition import view_condition_arrays
    from xscene_core.stages.render import default_rig
    from xscene_core.types.layout import Layout, MapPolygon

    sem = np.full((6, 32, 56), semantics.ID["driveable_surface"], np.uint8)
    depth = np.full(sem.shape, 10.0, np.float32)
    crossing = MapPolygon(np.array([[6.0, -5.0], [10.0, -5.0], [10.0, 5.0], [6.0, 5.0]]), "crosswalk")
    arrays = view_condition_arrays(sem, depth, Layout(polygons=(crossing,)), default_rig((32, 56)), (16, 28))
    on = arrays.areas[:, 0] > 127
    grey = np.full((6, 16, 28, 3), 100, np.uint8)
    assert on.any() and _contrast(area_luma(grey, arrays)) == 0.0
    zebra = grey.copy()
    zebra[on] = 200
    assert abs(_contrast(area_luma(zebra, arrays)) - 100 / 255) < 1e-9
    sem[:, 16:] = semantics.ID["manmade"]  # a wall over the lower half: not road, not counted
    walled = view_condition_arrays(sem, depth, Layout(polygons=(crossing,)), default_rig((32, 56)), (16, 28))
    assert area_luma(zebra, walled)[3] < area_luma(zebra, arrays)[3]
    assert _contrast(area_luma(grey, view_condition_arrays(sem, depth, Layout(), default_rig((32, 56)),
                                                               (16, 28)))) is None
    # the zebra's bars are white paint: the paint figure reads them, and not the road between the bars
    bars = arrays.areas[:, 1] > 127
    assert bars.any() and (bars & on).sum() < on.sum()
    striped = grey.copy()
    striped[bars] = 220
    assert abs(_contrast(area_luma(striped, arrays, "paint_white")) - 120 / 255) < 1e-9
    assert _contrast(area_luma(striped, arrays)) < 120 / 255, "a crossing's mean: bars and the gaps between"


def test_laplacian_energy_falls_with_blur_and_agrees_across_image_types():
    from xscene_core.models.image_condition import resize_images
    from xscene_core.eval.image_metrics import laplacian_energy

    _, preview = _views()
    sharp = preview.images
    soft = resize_images(resize_images(sharp, (16, 28), smooth=False), (64, 112), smooth=True)
    assert laplacian_energy(soft) < 0.7 * laplacian_energy(sharp)
    as_float = torch.from_numpy(sharp).float().permute(0, 3, 1, 2) / 127.5 - 1
    assert abs(laplacian_energy(as_float) - laplacian_energy(sharp)) < 1e-4


def test_the_floor_of_a_guided_model_redraws_its_first_guess_without_the_geometry(tmp_path, monkeypatch):
    """A first guess is drawn from the geometry: the "geometry zeroed" floor must not keep the one drawn
    with it."""
    from xscene_core.models.geometry_decoder import FIRST_GUESS, GeometryDecoder
    from xscene_core.models.image_autoencoder import build_autoencoder
    from xscene_core.models.image_diffusion import ImageCodec

    torch.manual_seed(0)
    ae = build_autoencoder("tiny", block_out_channels=(8, 16, 16), norm_num_groups=4)
    ae.save_pretrained(tmp_path / "ae" / "vae")
    GeometryDecoder.from_autoencoder(ae, geometry_hidden=8, geometry_features=8).save_pretrained(
        tmp_path / "ae" / FIRST_GUESS)
    ImageDiffusion(**{**PRESETS["tiny_latent"], "sample_size": (8, 14), "block_out_channels": (8, 16),
                      "attention_levels": (False, True), "attention_heads": 2, "norm_num_groups": 4, "token_dim": 16,
                      "geometry_hidden": 8, "geometry_features": 4, "num_inference_steps": 2,
                      "vae_path": str(tmp_path / "ae"), "first_guess_condition": True,
                      "first_guess_residual": True}).save_pretrained(tmp_path / "m")
    Segmenter(widths=(4, 8, 8)).save_pretrained(tmp_path / "s")
    drawn = []
    original = ImageCodec.first_guess

    def spy(self, cond):
        drawn.append(bool(cond.geometry_mask.all()))
        return original(self, cond)

    monkeypatch.setattr(ImageCodec, "first_guess", spy)
    out = measure_images(1, 0, tmp_path / "m", tmp_path / "s", log=lambda *_: None)
    assert np.isfinite(out["image_alignment_miou_no_geometry"])
    assert True in drawn and False in drawn  # drawn with the geometry for the samples, without it for the floor
