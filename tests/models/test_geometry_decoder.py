"""The geometry-aware latent decoder: starts as the autoencoder's decoder, learns from the geometry, loads
through the image codec, and its trainer runs end to end (with the denoiser's soft latents) and resumes."""

import json

import numpy as np
import pytest
import torch

from xscene_core.models.geometry_decoder import GeometryDecoder, load_geometry_decoder
from xscene_core.models.image_autoencoder import build_autoencoder
from xscene_core.models.image_condition import ImageCondition, view_condition_arrays
from xscene_core.models.image_diffusion import PRESETS, ImageCodec, ImageDiffusion

from test_image_autoencoder import SMALL, fake_cache

LATENT = (8, 14)   # 32 x 56 images, geometry at 16 x 28 (stride 2)
GEOMETRY = (16, 28)
GEO = dict(geometry_hidden=8, geometry_features=8)


def condition(seed: int = 0, classes: tuple[int, int] = (11, 18)) -> ImageCondition:
    from xscene_core.stages.render import default_rig

    rng = np.random.default_rng(seed)
    sem = rng.integers(*classes, size=(6, 32, 56)).astype(np.uint8)
    depth = rng.uniform(2, 50, size=(6, 32, 56)).astype(np.float32)
    arrays = view_condition_arrays(sem, depth, None, default_rig((32, 56)), GEOMETRY)
    return ImageCondition.collate([arrays], [np.zeros(384, np.float32)], [None], [None], 4, 8, None, 2)


@pytest.fixture(scope="module")
def autoencoder():
    torch.manual_seed(0)
    return build_autoencoder("tiny", **SMALL).eval()


def test_a_fresh_decoder_decodes_as_the_autoencoder_and_round_trips(autoencoder, tmp_path):
    dec = GeometryDecoder.from_autoencoder(autoencoder, **GEO).eval()
    z = torch.randn(6, 4, *LATENT)
    with torch.no_grad():
        plain = autoencoder.decode(z).sample
        ours = dec(z, condition())
    assert ours.shape == (6, 3, 32, 56) and torch.allclose(ours, plain, atol=1e-5)
    with pytest.raises(ValueError, match="latents for 1 x 6 views"):
        dec(z[:5], condition())
    dec.save_pretrained(tmp_path / "geometry_decoder")
    again = load_geometry_decoder(tmp_path)
    with torch.no_grad():
        assert torch.equal(again(z, condition()), ours)
    with pytest.raises(ValueError, match="no geometry_decoder/"):
        load_geometry_decoder(tmp_path / "elsewhere")


def test_training_makes_the_geometry_change_the_decoded_views(autoencoder):
    dec = GeometryDecoder.from_autoencoder(autoencoder, **GEO)
    a, b = condition(0, (11, 13)), condition(1, (15, 18))  # road-like against vegetation-like views
    # targets that only the geometry can tell apart: the same latents decode to two different images
    z = torch.randn(6, 4, *LATENT)
    target = {0: torch.full((6, 3, 32, 56), 0.5), 1: torch.full((6, 3, 32, 56), -0.5)}
    opt = torch.optim.Adam(dec.parameters(), 3e-3)
    for step in range(40):
        k = step % 2
        loss = (dec(z, (a, b)[k]) - target[k]).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        ya, yb = dec(z, a), dec(z, b)
    assert float((ya - yb).abs().mean()) > 0.3  # the decoder reads the geometry
    assert float((ya - target[0]).abs().mean()) < float((yb - target[0]).abs().mean())


def test_the_codec_decodes_with_the_geometry_decoder_only_where_asked(autoencoder, tmp_path):
    autoencoder.save_pretrained(tmp_path / "vae")
    dec = GeometryDecoder.from_autoencoder(autoencoder, **GEO)
    with torch.no_grad():
        for conv in dec.inject:  # a decoder that visibly differs from the plain one
            conv.weight.normal_(0, 0.5)
    dec.save_pretrained(tmp_path / "geometry_decoder")
    kw = dict(PRESETS["tiny_latent"], sample_size=LATENT, block_out_channels=(8, 16), attention_levels=(False, True),
              attention_heads=2, norm_num_groups=4, token_dim=16, geometry_hidden=8, geometry_features=4, max_boxes=8,
              vae_path=str(tmp_path), vae_scale=2.0)
    z = torch.randn(6, 4, *LATENT)
    plain = ImageCodec(ImageDiffusion(**kw)).decode(z, condition())           # config off: the autoencoder
    on = ImageCodec(ImageDiffusion(**kw, geometry_decoder=True))
    assert not np.array_equal(on.decode(z, condition()), plain)
    assert np.array_equal(on.decode(z), plain)                                 # no condition: the autoencoder
    off = ImageCodec(ImageDiffusion(**kw, geometry_decoder=True), geometry_decoder=False)
    assert np.array_equal(off.decode(z, condition()), plain)
    with pytest.raises(ValueError, match="pixel-space"):
        ImageCodec(ImageDiffusion(**{**PRESETS["tiny"], "sample_size": LATENT}), geometry_decoder=True)


def save_autoencoder_and_denoiser(autoencoder, folder) -> None:
    """FOLDER/ae/vae (the autoencoder) and FOLDER/denoiser (a tiny latent image model on it, latents LATENT,
    geometry GEOMETRY), as the decoder trainer reads them."""
    autoencoder.save_pretrained(folder / "ae" / "vae")
    torch.manual_seed(0)
    ImageDiffusion(**dict(PRESETS["tiny_latent"], sample_size=LATENT, block_out_channels=(8, 16),
                          attention_levels=(False, True), attention_heads=2, norm_num_groups=4, token_dim=16,
                          geometry_hidden=8, geometry_features=4, max_boxes=8, vae_path=str(folder / "ae"),
                          vae_scale=2.0)).save_pretrained(folder / "denoiser")


def test_the_training_entry_point_runs_with_the_denoiser_and_resumes(autoencoder, tmp_path):
    from xscene_core.train.geometry_decoder import main

    save_autoencoder_and_denoiser(autoencoder, tmp_path)
    fake_cache(tmp_path / "cache", size=(32, 56), cond=GEOMETRY)
    common = ["--autoencoder", str(tmp_path / "ae"), "--cache", str(tmp_path / "cache"), "--size", "32", "56",
              "--cond-size", *map(str, GEOMETRY), "--out", str(tmp_path / "run"), "--threads", "1", "--crop-h", "16",
              "--crop-w", "28", "--log-every", "1", "--eval-every", "2", "--ckpt-every", "1", "--p-denoised", "1.0",
              "--p-resampled", "0.5", "--resample-steps", "2", "--denoiser", str(tmp_path / "denoiser")]
    main(common + ["--steps", "2"])
    main(common + ["--steps", "3", "--resume"])
    lines = [json.loads(s) for s in (tmp_path / "run" / "log.jsonl").read_text().splitlines() if s.startswith("{")]
    init = next(x for x in lines if x.get("event") == "init_val")
    assert {"val_loss_clean", "val_loss_degraded", "val_loss_denoised", "val_loss_resampled"} <= set(init)
    dec = GeometryDecoder.from_pretrained(tmp_path / "run" / "final")
    with torch.no_grad():
        assert dec(torch.randn(6, 4, *LATENT), condition()).shape == (6, 3, 32, 56)
    # a new run from a trained decoder starts from it: a fresh decoder would repeat run 1's step-0 figure exactly
    main([a if a != str(tmp_path / "run") else str(tmp_path / "run2") for a in common] +
         ["--steps", "1", "--init", str(tmp_path / "run" / "final")])
    lines = [json.loads(s) for s in (tmp_path / "run2" / "log.jsonl").read_text().splitlines() if s.startswith("{")]
    again = next(x for x in lines if x.get("event") == "init_val")
    assert again["val_loss_clean"] != init["val_loss_clean"]
    with pytest.raises(SystemExit, match="no cached samples"):
        main(["--autoencoder", str(tmp_path / "ae"), "--cache", str(tmp_path / "nothing"), "--out", str(tmp_path / "r2")])


def test_an_extended_decoder_starts_as_its_source_then_reads_style_and_seeded_noise(autoencoder):
    from xscene_core.models.image_condition import style_features

    dec = GeometryDecoder.from_autoencoder(autoencoder, **GEO).eval()
    with torch.no_grad():
        for conv in dec.inject:
            conv.weight.normal_(0, 0.3)
    ext = GeometryDecoder.extended(dec, style_condition=True, noise_injection=True).eval()
    z = torch.randn(6, 4, *LATENT)
    sunny, rainy = condition(), condition()
    sunny.style[:] = torch.from_numpy(style_features("noon", "sunny"))
    rainy.style[:] = torch.from_numpy(style_features("night", "rainy"))
    with torch.no_grad():
        assert torch.allclose(ext(z, sunny), dec(z, sunny), atol=1e-6)  # new parts at zero: the same decoder
        ext.style.weight.normal_(0, 0.5)
        for scale in ext.noise_scale:
            scale.fill_(0.5)
        assert float((ext(z, sunny) - ext(z, rainy)).abs().mean()) > 1e-3  # the style changes the views
        assert torch.equal(ext(z, sunny, noise_seed=3), ext(z, sunny, noise_seed=3))
        assert not torch.equal(ext(z, sunny, noise_seed=3), ext(z, sunny, noise_seed=4))
        dropped = condition()
        dropped.style[:] = sunny.style
        dropped.text_mask[:] = False  # a dropped caption drops its style, as in the diffusion model
        unstyled = condition()
        assert torch.equal(ext(z, dropped), ext(z, unstyled))
    with pytest.raises(TypeError):
        GeometryDecoder.extended(dec, colour=True)


def test_the_patch_discriminator_scores_patches_given_semantic_and_style():
    from xscene_core.models.image_condition import STYLE_FEATURES
    from xscene_core.models.patch_discriminator import PatchDiscriminator

    torch.manual_seed(0)
    disc = PatchDiscriminator(width=8)
    rgb = torch.rand(2, 3, 32, 56) * 2 - 1
    semantic = torch.randint(0, 18, (2, 16, 28))
    style = torch.zeros(2, STYLE_FEATURES)
    logits, features = disc(rgb, semantic, style)
    assert logits.shape == (2, 1, 4, 7) and len(features) == 3
    with torch.no_grad():
        assert float((disc(rgb, semantic, style + 1)[0] - logits).abs().mean()) > 0.01        # reads the style
        assert float((disc(rgb, (semantic + 1) % 18, style)[0] - logits).abs().mean()) > 0.01  # and the layout
    with pytest.raises(ValueError, match="2 images, 1 semantic maps"):
        disc(rgb, semantic[:1], style)


def test_an_adversarial_run_trains_the_discriminator_saves_it_and_resumes_it(autoencoder, tmp_path, capsys):
    from safetensors.torch import load_file

    from xscene_core.train.geometry_decoder import main

    autoencoder.save_pretrained(tmp_path / "ae" / "vae")
    fake_cache(tmp_path / "cache", size=(32, 56), cond=GEOMETRY)
    args = ["--autoencoder", str(tmp_path / "ae"), "--cache", str(tmp_path / "cache"), "--size", "32", "56",
            "--cond-size", *map(str, GEOMETRY), "--out", str(tmp_path / "run"), "--threads", "1", "--crop-h", "16",
            "--crop-w", "28", "--log-every", "1", "--eval-every", "2", "--ckpt-every", "1", "--adv-weight", "0.5",
            "--fm-weight", "1", "--disc-start", "1", "--disc-width", "8", "--style-condition", "--noise-injection"]
    main(args + ["--steps", "3"])
    saved = load_file(str(tmp_path / "run" / "checkpoint" / "discriminator.safetensors"))
    assert any(k.startswith("opt.") for k in saved) and any(k.startswith("disc.") for k in saved)
    main(args + ["--steps", "5", "--resume"])
    assert "discriminator resumed" in capsys.readouterr().out
    log = (tmp_path / "run" / "log.jsonl").read_text()
    lines = [json.loads(s) for s in log.splitlines() if s.startswith("{")]
    evals = [x for x in lines if "disc_loss" in x]
    assert evals and all(np.isfinite(x["disc_loss"]) and x["adv_balance"] >= 0 for x in evals)
    assert max(x["adv_balance"] for x in evals) > 0  # the decoder was trained against the discriminator
    assert all("val_sharpness_clean" in x for x in lines if "val_loss" in x)
    later = load_file(str(tmp_path / "run" / "checkpoint" / "discriminator.safetensors"))
    assert any(not torch.equal(saved[k], later[k]) for k in saved if k.startswith("disc."))
    dec = GeometryDecoder.from_pretrained(tmp_path / "run" / "final")
    assert dec.config.style_condition and dec.config.noise_injection


def _laid_out(layout) -> ImageCondition:
    """A condition of random renders at 32 x 56 with a layout's boxes and map areas (geometry stride 2)."""
    from xscene_core.stages.render import default_rig

    rng = np.random.default_rng(0)
    sem = rng.integers(11, 18, size=(6, 32, 56)).astype(np.uint8)
    depth = rng.uniform(2, 50, size=(6, 32, 56)).astype(np.float32)
    arrays = view_condition_arrays(sem, depth, layout, default_rig((32, 56)), GEOMETRY)
    return ImageCondition.collate([arrays], [np.zeros(384, np.float32)], [None], [None], 4, 8, None, 2)


def _extended(autoencoder, **options) -> tuple[GeometryDecoder, GeometryDecoder]:
    """(a decoder whose geometry injections are not zero, its extension with `options`)."""
    dec = GeometryDecoder.from_autoencoder(autoencoder, **GEO).eval()
    with torch.no_grad():
        for conv in dec.inject:
            conv.weight.normal_(0, 0.3)
    return dec, GeometryDecoder.extended(dec, **options).eval()


def test_an_extended_decoder_reads_the_paint_of_the_boxes(autoencoder):
    from xscene_core.types.layout import Box, Layout

    def painted(colour: str) -> ImageCondition:
        return _laid_out(Layout(boxes=(Box((8.0, 0.0, 0.8), (4.5, 1.9, 1.6), 0.1, 4, color=colour),)))

    dec, ext = _extended(autoencoder, paint_condition=True)
    z = torch.randn(6, 4, *LATENT)
    red, white = painted("red"), painted("white")
    with torch.no_grad():
        assert torch.equal(ext(z, red), ext(z, white))      # new parts at zero: blind to the paint
        assert torch.allclose(ext(z, red), dec(z, red), atol=1e-6)
        ext.geometry.paint_in.weight.normal_(0, 0.5)
        diff = (ext(z, red) - ext(z, white)).abs().mean(1)  # [V, H, W]
    assert float(diff.amax()) > 1e-3, "the paint changes the decoded car"


def test_an_extended_decoder_reads_the_crossings(autoencoder):
    from xscene_core.types.layout import Layout, MapPolygon

    crossing = MapPolygon(np.array([[6.0, -5.0], [10.0, -5.0], [10.0, 5.0], [6.0, 5.0]]), "crosswalk")
    dec, ext = _extended(autoencoder, area_condition=True)
    z = torch.randn(6, 4, *LATENT)
    with_crossing, without = _laid_out(Layout(polygons=(crossing,))), _laid_out(Layout())
    with torch.no_grad():
        assert torch.equal(ext(z, with_crossing), ext(z, without))  # new parts at zero: blind to the crossing
        assert torch.allclose(ext(z, with_crossing), dec(z, with_crossing), atol=1e-6)
        ext.geometry.area_in.weight.normal_(0, 0.5)
        diff = (ext(z, with_crossing) - ext(z, without)).abs().mean(1)  # [V, H, W]
    assert float(diff.amax()) > 1e-3, "the crossing changes the decoded road"


def test_the_decoder_trainer_refuses_the_crossings_on_a_cache_without_them(autoencoder, tmp_path):
    from xscene_core.train.geometry_decoder import main

    autoencoder.save_pretrained(tmp_path / "ae" / "vae")
    fake_cache(tmp_path / "cache", size=(32, 56), cond=GEOMETRY)  # written without map areas
    with pytest.raises(SystemExit, match="hold no marks or marks drawn before"):
        main(["--autoencoder", str(tmp_path / "ae"), "--cache", str(tmp_path / "cache"), "--size", "32", "56",
              "--cond-size", *map(str, GEOMETRY), "--out", str(tmp_path / "run"), "--threads", "1", "--steps", "1",
              "--area-condition"])
    assert not (tmp_path / "run" / "checkpoint").exists()


def fine_condition(seed: int = 0, classes: tuple[int, int] = (11, 18)) -> ImageCondition:
    """condition()'s views with their geometry at 32 x 56, twice the denoiser's (stride 4 to the latents)."""
    from xscene_core.stages.render import default_rig

    rng = np.random.default_rng(seed)
    sem = rng.integers(*classes, size=(6, 64, 112)).astype(np.uint8)
    depth = rng.uniform(2, 50, size=(6, 64, 112)).astype(np.float32)
    arrays = view_condition_arrays(sem, depth, None, default_rig((64, 112)), (32, 56))
    return ImageCondition.collate([arrays], [np.zeros(384, np.float32)], [None], [None], 4, 8, None, 4)


def test_an_upscaling_decoder_starts_as_the_enlarged_decoder_then_draws_from_finer_geometry(autoencoder, tmp_path):
    import torch.nn.functional as F

    dec = GeometryDecoder.from_autoencoder(autoencoder, **GEO).eval()
    up = GeometryDecoder.extended(dec, upscale=2, condition_size=(32, 56)).eval()
    z, cond = torch.randn(6, 4, *LATENT), fine_condition()
    with torch.no_grad():
        base, out = dec(z, cond), up(z, cond)
    assert out.shape == (6, 3, 64, 112)
    assert torch.allclose(out, F.interpolate(base, size=(64, 112), mode="bilinear", align_corners=False), atol=1e-6)
    torch.nn.init.normal_(up.detail.out.weight, std=0.1)  # as training moves them
    with torch.no_grad():
        for p in up.geometry.parameters():
            p.add_(0.1 * torch.randn_like(p))
    with torch.no_grad():
        a, b = up(z, fine_condition(0, (11, 13))), up(z, fine_condition(1, (15, 18)))
    assert (a - b).abs().mean() > 1e-3  # the head reads the geometry
    up.save_pretrained(tmp_path / "geometry_decoder")
    again = load_geometry_decoder(tmp_path)
    assert again.config.upscale == 2 and tuple(again.config.condition_size) == (32, 56)
    with torch.no_grad():
        assert torch.equal(again(z, fine_condition(0, (11, 13))), a)
    with pytest.raises(ValueError, match="upscale must be 1 or 2"):
        GeometryDecoder(upscale=3, **GEO)


def test_a_condition_coarsened_keeps_ids_by_the_nearest_pixel_and_thin_lines():
    cond = fine_condition()
    cond.persp[..., -1, 5, :] = 1  # a one-pixel map line along row 5
    coarse = cond.coarsened(2)
    assert coarse.semantic.shape[-2:] == (16, 28) and coarse.persp.shape[-2:] == (16, 28)
    assert torch.equal(coarse.semantic, cond.semantic[..., 1::2, 1::2])
    assert torch.equal(coarse.depth, cond.depth[..., 1::2, 1::2])
    assert (coarse.persp[..., -1, 2, :] == 1).all()  # row 5 lies in coarse row 2: the line survives
    assert cond.coarsened(1) is cond and coarse.image_size == cond.image_size


def test_the_trainer_trains_an_upscaling_decoder_on_views_twice_the_size_and_resumes(autoencoder, tmp_path):
    from xscene_core.train.geometry_decoder import main

    save_autoencoder_and_denoiser(autoencoder, tmp_path)
    fake_cache(tmp_path / "cache", size=(64, 112), cond=(32, 56))  # views twice the autoencoder's 32 x 56
    common = ["--autoencoder", str(tmp_path / "ae"), "--cache", str(tmp_path / "cache"), "--size", "64", "112",
              "--cond-size", "32", "56", "--out", str(tmp_path / "run"), "--threads", "1", "--crop-h", "32",
              "--crop-w", "56", "--log-every", "1", "--eval-every", "2", "--ckpt-every", "1", "--p-denoised", "1.0",
              "--denoiser", str(tmp_path / "denoiser")]
    main(common + ["--steps", "2", "--upscale", "2"])
    main(common + ["--steps", "3", "--resume"])  # the checkpoint says it upscales
    lines = [json.loads(s) for s in (tmp_path / "run" / "log.jsonl").read_text().splitlines() if s.startswith("{")]
    assert [x["step"] for x in lines if "loss" in x] == [1, 2, 3] and any("val_loss_denoised" in x for x in lines)
    dec = GeometryDecoder.from_pretrained(tmp_path / "run" / "final")
    assert dec.config.upscale == 2 and tuple(dec.config.condition_size) == (32, 56)
    with torch.no_grad():
        assert dec(torch.randn(6, 4, *LATENT), fine_condition()).shape == (6, 3, 64, 112)
    with pytest.raises(SystemExit, match=r"conditions at \(32, 56\)"):  # no --upscale: the geometry is too fine
        main([a if a != str(tmp_path / "run") else str(tmp_path / "r3") for a in common] + ["--steps", "1"])


def test_a_coarse_base_reads_the_geometry_as_its_source_did_and_a_frozen_base_stays_its_source(autoencoder,
                                                                                                tmp_path):
    import torch.nn.functional as F
    from safetensors.torch import load_file

    from xscene_core.train.geometry_decoder import main

    dec = GeometryDecoder.from_autoencoder(autoencoder, **GEO).eval()
    with torch.no_grad():
        for p in dec.inject.parameters():  # a source that reads its geometry
            p.add_(0.3 * torch.randn_like(p))
    up = GeometryDecoder.extended(dec, upscale=2, condition_size=(32, 56), coarse_base=True).eval()
    z, cond = torch.randn(6, 4, *LATENT), fine_condition()
    with torch.no_grad():
        expected = F.interpolate(dec(z, cond.coarsened(2)), size=(64, 112), mode="bilinear", align_corners=False)
        assert torch.allclose(up(z, cond), expected, atol=1e-6)
        assert not torch.allclose(dec(z, cond), dec(z, cond.coarsened(2)), atol=1e-3)  # the halving matters
    # --freeze-base: the run changes the head only
    save_autoencoder_and_denoiser(autoencoder, tmp_path)
    dec.save_pretrained(tmp_path / "source")
    fake_cache(tmp_path / "cache", size=(64, 112), cond=(32, 56))
    main(["--autoencoder", str(tmp_path / "ae"), "--cache", str(tmp_path / "cache"), "--size", "64", "112",
          "--cond-size", "32", "56", "--out", str(tmp_path / "run"), "--threads", "1", "--crop-h", "32", "--crop-w", "56",
          "--eval-every", "2", "--ckpt-every", "2", "--denoiser", str(tmp_path / "denoiser"), "--init",
          str(tmp_path / "source"), "--upscale", "2", "--coarse-base", "--freeze-base", "--steps", "2", "--lr", "1e-2"])
    trained = GeometryDecoder.from_pretrained(tmp_path / "run" / "final")
    assert trained.config.coarse_base and trained.config.upscale == 2
    source = load_file(str(tmp_path / "source" / "diffusion_pytorch_model.safetensors"))
    for name, value in trained.state_dict().items():
        if name.startswith("detail."):
            continue
        assert torch.equal(value, source[name]), name
    assert not torch.equal(trained.detail.out.weight, torch.zeros_like(trained.detail.out.weight))
