"""MultiViewStage: typed call on a synthetic chunk, determinism, extrapolation, input errors, interrupts."""

import numpy as np
import pytest
import torch

from xscene_core.models.image_diffusion import PRESETS, ImageDiffusion
from xscene_core.stages.multiview import MultiViewInterrupted, MultiViewStage
from xscene_core.types.images import MultiViewImages

TINY = dict(sample_size=(16, 28), block_out_channels=(8, 16), attention_levels=(False, True), attention_heads=2,
            norm_num_groups=4, token_dim=16, geometry_hidden=8, geometry_features=4, max_boxes=8, num_inference_steps=3)


@pytest.fixture(scope="module")
def chunk_views():
    from xscene_core.data.world import SyntheticWorld
    from xscene_core.stages.render import RenderStage, default_rig

    world = SyntheticWorld(5)
    chunk = world.chunk(*world.find_location("downtown"))
    views = RenderStage(default_rig((32, 56)), backend="torch")(chunk.occupancy)
    return chunk, views


@pytest.fixture(scope="module")
def stage(tmp_path_factory):
    torch.manual_seed(0)
    model = ImageDiffusion(**{**PRESETS["tiny"], **TINY})
    folder = tmp_path_factory.mktemp("imgdiff")
    model.save_pretrained(folder)
    return MultiViewStage.from_pretrained(folder)


def test_call_shapes_and_determinism(stage, chunk_views):
    chunk, views = chunk_views
    a = stage(views, chunk.description, chunk.layout, seed=1)
    assert isinstance(a, MultiViewImages) and a.images.shape == (6, 32, 56, 3) and a.rig is views.rig
    assert np.array_equal(a.images, stage(views, chunk.description, chunk.layout, seed=1).images)
    b = stage(views, None, None, seed=1)  # description and layout are optional
    assert b.images.shape == a.images.shape


def test_extrapolate_uses_reference(stage, chunk_views):
    chunk, views = chunk_views
    T = np.eye(4)
    T[0, 3] = 40.0
    rng = np.random.default_rng(0)
    ref1 = MultiViewImages(rng.integers(0, 256, (6, 32, 56, 3), dtype=np.uint8), views.rig)
    ref2 = MultiViewImages(np.zeros((6, 32, 56, 3), np.uint8), views.rig)
    a = stage.extrapolate(views, chunk.description, chunk.layout, ref1, T, seed=0)
    b = stage.extrapolate(views, chunk.description, chunk.layout, ref2, T, seed=0)
    assert a.images.shape == (6, 32, 56, 3) and not np.array_equal(a.images, b.images)


def test_bad_inputs(stage, chunk_views):
    chunk, views = chunk_views
    with pytest.raises(ValueError, match="RenderedViews"):
        stage("not views")
    with pytest.raises(ValueError, match="SceneDescription"):
        stage(views, "a rainy night")
    with pytest.raises(ValueError, match="Layout"):
        stage(views, chunk.description, [1, 2])
    ref = MultiViewImages(np.zeros((6, 32, 56, 3), np.uint8), views.rig)
    with pytest.raises(ValueError, match="T_ref_new"):
        stage.extrapolate(views, chunk.description, chunk.layout, ref, np.eye(3))
    with pytest.raises(ValueError, match="reference"):
        stage.extrapolate(views, chunk.description, chunk.layout, None, np.eye(4))


def test_free_text_time_and_weather_fall_back_to_the_preview_looks_style(stage, chunk_views):
    """A description saying "evening" or "drizzle" (free text, an LLM's) generates like the preview look
    draws it (noon, sunny: ops.preview_look.Style's fallback) instead of failing at the images stage."""
    from dataclasses import replace

    from xscene_core.models.image_condition import style_features

    chunk, views = chunk_views
    free = replace(chunk.description, time_of_day="evening", weather="drizzle")
    cond = stage.condition(views, free, chunk.layout)
    assert torch.equal(cond.style[0], torch.from_numpy(style_features("noon", "sunny")))
    assert stage(views, free, chunk.layout, seed=1).images.shape == (6, 32, 56, 3)


def test_step_callback_interrupts(stage, chunk_views):
    chunk, views = chunk_views
    seen = []
    with pytest.raises(MultiViewInterrupted):
        stage(views, chunk.description, chunk.layout, step_callback=lambda i, n: seen.append(i) or i < 2)
    assert seen == [1, 2]


def test_a_latent_model_with_finer_geometry_generates_and_extrapolates(chunk_views, tmp_path):
    """The tiny_latent layout: 8 x 14 latents of a 4x autoencoder (32 x 56 images), geometry at 16 x 28."""
    from xscene_core.models.image_autoencoder import build_autoencoder

    chunk, views = chunk_views
    torch.manual_seed(0)
    build_autoencoder("tiny", block_out_channels=(8, 16, 16), norm_num_groups=4).save_pretrained(tmp_path / "ae" / "vae")
    model = ImageDiffusion(**{**PRESETS["tiny_latent"], **TINY, "sample_size": (8, 14), "vae_path": str(tmp_path / "ae")})
    assert model.condition_size == (16, 28)
    model.save_pretrained(tmp_path / "model")
    stage = MultiViewStage.from_pretrained(tmp_path / "model")
    a = stage(views, chunk.description, chunk.layout, seed=1)
    assert a.images.shape == (6, 32, 56, 3)
    assert np.array_equal(a.images, stage(views, chunk.description, chunk.layout, seed=1).images)
    T = np.eye(4)
    T[0, 3] = 40.0
    b = stage.extrapolate(views, chunk.description, chunk.layout, a, T, seed=1)
    assert b.images.shape == a.images.shape and not np.array_equal(a.images, b.images)



@pytest.fixture
def geometry_decoded(tmp_path) -> ImageDiffusion:
    """A tiny latent model whose config decodes with a geometry-aware decoder that visibly differs from the
    autoencoder's own (saved under tmp_path/model)."""
    from xscene_core.models.geometry_decoder import GeometryDecoder
    from xscene_core.models.image_autoencoder import build_autoencoder

    torch.manual_seed(0)
    ae = build_autoencoder("tiny", block_out_channels=(8, 16, 16), norm_num_groups=4)
    ae.save_pretrained(tmp_path / "ae" / "vae")
    dec = GeometryDecoder.from_autoencoder(ae, geometry_hidden=8, geometry_features=4)
    with torch.no_grad():
        for conv in dec.inject:
            conv.weight.normal_(0, 0.5)
    dec.save_pretrained(tmp_path / "ae" / "geometry_decoder")
    model = ImageDiffusion(**{**PRESETS["tiny_latent"], **TINY, "sample_size": (8, 14), "vae_path": str(tmp_path / "ae"),
                              "geometry_decoder": True})
    model.save_pretrained(tmp_path / "model")
    return model


def test_a_sample_finished_by_another_decoder_is_that_decoders_call(chunk_views, geometry_decoded):
    """generate_views returns the sample its images were decoded from; a stage with the plain decoder
    finishes the same sample exactly as its own call at that seed would (the eval's and CLI's comparison)."""
    chunk, views = chunk_views
    geo, plain = MultiViewStage(geometry_decoded), MultiViewStage(geometry_decoded, geometry_decoder=False)
    images, cond, sample = geo.generate_views(views, chunk.description, chunk.layout, seed=3)
    assert sample.shape == (1, 6, 4, 8, 14)
    assert np.array_equal(images.images, geo(views, chunk.description, chunk.layout, seed=3).images)
    finished = plain.finish(cond, sample, views.rig, seed=3)
    assert finished.rig is views.rig and finished.images.shape == images.images.shape
    assert np.array_equal(finished.images, plain(views, chunk.description, chunk.layout, seed=3).images)
    assert not np.array_equal(finished.images, images.images)


def test_the_cli_writes_the_views_and_the_mosaics(geometry_decoded, tmp_path):
    from PIL import Image

    from xscene_core.stages.multiview import main

    out = tmp_path / "out"
    main(["--out", str(out), "--checkpoint", str(tmp_path / "model"), "--size", "32", "56", "--environment",
          "downtown", "--time", "night", "--weather", "rainy"])
    for name in ("mosaic", "plain_decoder_mosaic", "preview_mosaic"):
        assert Image.open(out / f"{name}.png").size[0] > 56
    assert len(list(out.glob("CAM_*.png"))) == 6
    assert not np.array_equal(np.asarray(Image.open(out / "mosaic.png")), np.asarray(Image.open(out / "plain_decoder_mosaic.png")))
    assert not (out / "first_guess_mosaic.png").exists()  # sampled from noise: no guess to show
    import shutil

    shutil.copytree(tmp_path / "ae" / "geometry_decoder", tmp_path / "ae" / "first_guess")
    main(["--out", str(tmp_path / "guessed"), "--checkpoint", str(tmp_path / "model"), "--size", "32", "56",
          "--environment", "downtown", "--time", "night", "--weather", "rainy", "--first-guess-strength", "0.5"])
    assert Image.open(tmp_path / "guessed" / "first_guess_mosaic.png").size == Image.open(out / "mosaic.png").size
    with pytest.raises(SystemExit):
        main(["--out", str(out), "--time", "night"])  # --time without --weather


def test_an_upscaling_decoder_reads_the_views_geometry_at_its_own_size(chunk_views, tmp_path):
    """A decoder that draws at twice the autoencoder's size and was trained on geometry twice the
    denoiser's gets that geometry from the stage; the denoiser keeps its own."""
    from xscene_core.models.geometry_decoder import GeometryDecoder
    from xscene_core.models.image_autoencoder import build_autoencoder

    chunk, views = chunk_views
    torch.manual_seed(0)
    ae = build_autoencoder("tiny", block_out_channels=(8, 16, 16), norm_num_groups=4)
    ae.save_pretrained(tmp_path / "ae" / "vae")
    dec = GeometryDecoder.extended(GeometryDecoder.from_autoencoder(ae, geometry_hidden=8, geometry_features=4),
                                   upscale=2, condition_size=(32, 56))
    with torch.no_grad():
        for p in list(dec.inject.parameters()) + list(dec.detail.parameters()) + list(dec.geometry.parameters()):
            p.add_(0.3 * torch.randn_like(p))
    dec.save_pretrained(tmp_path / "ae" / "geometry_decoder")
    model = ImageDiffusion(**{**PRESETS["tiny_latent"], **TINY, "sample_size": (8, 14), "vae_path": str(tmp_path / "ae"),
                              "geometry_decoder": True})
    stage = MultiViewStage(model)
    images, cond, sample = stage.generate_views(views, chunk.description, chunk.layout, seed=3)
    assert cond.semantic.shape[-2:] == model.condition_size == (16, 28)  # what the denoiser read
    fine = stage.decoder_condition(views, chunk.layout, cond)
    assert fine.semantic.shape[-2:] == (32, 56) and fine.persp.shape[-2:] == (32, 56)
    assert torch.equal(fine.box_labels, cond.box_labels) and torch.equal(fine.text, cond.text)
    assert images.images.shape == (6, 32, 56, 3)  # drawn at 64 x 112, resized to the rig
    assert np.array_equal(images.images, stage.finish(fine, sample, views.rig, seed=3).images)
    assert not np.array_equal(images.images, stage.finish(cond, sample, views.rig, seed=3).images)
    plain = MultiViewStage(model, geometry_decoder=False)
    assert plain.decoder_condition(views, chunk.layout, cond) is cond


def test_a_model_that_reads_the_walls_colours_gets_those_of_its_seed(stage, chunk_views, tmp_path):
    """facade_condition: the stage draws the walls' colours the sampling seed picks (the preview of that
    seed paints its walls so) into the condition, and they reach the output; a model without it is
    spared the pass over the pixels."""
    chunk, views = chunk_views
    torch.manual_seed(0)
    model = ImageDiffusion(**{**PRESETS["tiny"], **TINY, "paint_condition": True, "facade_condition": True})
    torch.nn.init.normal_(model.geometry.paint_in.weight)  # as if trained: the colours change the features
    model.save_pretrained(tmp_path / "facades")
    facades = MultiViewStage.from_pretrained(tmp_path / "facades")
    one = facades.condition(views, chunk.description, chunk.layout, seed=1)
    two = facades.condition(views, chunk.description, chunk.layout, seed=2)
    assert one.facade_paint[:, :, 3].any() and torch.equal(one.facade_paint[:, :, 3], two.facade_paint[:, :, 3])
    assert not torch.equal(one.facade_paint, two.facade_paint)
    assert not facades.condition(views, None, chunk.layout, seed=1).facade_paint.any(), "no scene: no colours"
    torch.manual_seed(1)
    with torch.no_grad():
        x = torch.randn(1, 6, 3, *one.image_size)
        a = facades.model(x, torch.tensor([500]), one)
        b = facades.model(x, torch.tensor([500]), two)
    assert not torch.allclose(a, b), "the walls' colours reach the denoiser"
    assert not stage.condition(views, chunk.description, chunk.layout, seed=1).facade_paint.any()
