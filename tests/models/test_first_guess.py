"""Sampling from a first guess (Come-closer-diffuse-faster): the first-guess decoder draws views from the
geometry alone, the sampler starts part-way down its schedule from them, and the stage wires the two."""

import json

import numpy as np
import pytest
import torch

from xscene_core.models.geometry_decoder import FIRST_GUESS, GeometryDecoder
from xscene_core.models.image_autoencoder import build_autoencoder
from xscene_core.models.image_diffusion import PRESETS, ImageCodec, ImageDiffusion

from test_geometry_decoder import GEO, GEOMETRY, LATENT, condition
from test_image_autoencoder import SMALL, fake_cache


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """An autoencoder folder with vae/ and a first_guess/ decoder whose geometry injections are not zero."""
    root = tmp_path_factory.mktemp("ae")
    torch.manual_seed(0)
    ae = build_autoencoder("tiny", **SMALL).eval()
    ae.save_pretrained(root / "vae")
    guess = GeometryDecoder.from_autoencoder(ae, **GEO)
    with torch.no_grad():
        for conv in guess.inject:
            conv.weight.normal_(0, 0.5)
    guess.save_pretrained(root / FIRST_GUESS)
    return root


def model(folder, **overrides) -> ImageDiffusion:
    torch.manual_seed(0)
    return ImageDiffusion(**dict(PRESETS["tiny_latent"], sample_size=LATENT, block_out_channels=(8, 16),
                                 attention_levels=(False, True), attention_heads=2, norm_num_groups=4, token_dim=16,
                                 geometry_hidden=8, geometry_features=4, max_boxes=8, vae_path=str(folder),
                                 vae_scale=2.0, num_inference_steps=10, **overrides)).eval()


def test_draw_reads_the_geometry_and_ignores_no_latent(folder):
    from xscene_core.models.geometry_decoder import load_geometry_decoder

    guess = load_geometry_decoder(folder, FIRST_GUESS)
    a, b = condition(0, (11, 13)), condition(1, (15, 18))
    with torch.no_grad():
        ya = guess.draw(a)
        assert ya.shape == (6, 3, 32, 56)
        assert torch.equal(ya, guess(torch.zeros(6, 4, *LATENT), a))
        assert float((ya - guess.draw(b)).abs().mean()) > 1e-3  # other geometry, other views


def test_a_sampler_started_from_a_guess_runs_the_last_steps_only_and_stays_deterministic(folder):
    m = model(folder)
    cond = condition()
    start = torch.randn(1, 6, 4, *LATENT)
    calls = []
    part = m.sample(cond, seed=3, start=start, strength=0.3, callback=lambda i, n: calls.append((i, n)))
    assert calls == [(i, 3) for i in range(1, 4)]  # round(10 x 0.3) of the 10 steps
    assert torch.equal(part, m.sample(cond, seed=3, start=start, strength=0.3))
    assert not torch.equal(part, m.sample(cond, seed=3, start=-start, strength=0.3))  # the guess matters
    full = m.sample(cond, seed=3)
    assert torch.equal(m.sample(cond, seed=3, start=start, strength=1.0), full)  # strength 1: the plain sampler
    calls.clear()  # DDIM starts part-way too (it has no begin index to set)
    ddim = m.sample(cond, seed=3, scheduler="ddim", start=start, strength=0.3, callback=lambda i, n: calls.append((i, n)))
    assert calls == [(i, 3) for i in range(1, 4)] and not torch.equal(ddim, m.sample(cond, seed=3, scheduler="ddim"))
    with pytest.raises(ValueError, match="strength must lie in"):
        m.sample(cond, seed=3, start=start, strength=0.0)
    with pytest.raises(ValueError, match="does not match the samples"):
        m.sample(cond, seed=3, start=start[:, :5], strength=0.5)


def test_the_stage_starts_from_the_codec_first_guess_where_the_config_says(folder):
    from xscene_core.stages.multiview import MultiViewStage

    cond = condition()
    codec = ImageCodec(model(folder))
    guess = codec.first_guess(cond)
    assert guess.shape == (1, 6, 4, *LATENT)
    off = MultiViewStage(model(folder), threads=None).sample(cond, seed=1)
    on_model = model(folder, first_guess_strength=0.4)
    on = MultiViewStage(on_model, threads=None).sample(cond, seed=1)
    direct = on_model.sample(cond, seed=1, start=guess, strength=0.4)
    assert torch.equal(on, direct) and not torch.equal(on, off)
    assert torch.equal(MultiViewStage(on_model, threads=None, first_guess_strength=1.0).sample(cond, seed=1), off)
    with pytest.raises(ValueError, match="first_guess_strength must lie in"):
        MultiViewStage(on_model, first_guess_strength=1.5)
    with pytest.raises(ValueError, match="first_guess_strength must lie in"):
        model(folder, first_guess_strength=0.0)
    elsewhere = model(folder.parent / "nowhere", first_guess_strength=0.4)
    with pytest.raises(ValueError, match="no first_guess/ subfolder"):
        MultiViewStage(elsewhere, threads=None).sample(cond, seed=1)


def test_a_guess_with_injected_noise_follows_the_sampling_seed(folder, tmp_path):
    """A first-guess decoder trained as a conditional GAN (--noise-injection) draws other views for
    another seed; the stage draws the guess with its sampling seed, so a seed still fixes the sample."""
    import shutil

    from xscene_core.models.geometry_decoder import load_geometry_decoder
    from xscene_core.stages.multiview import MultiViewStage

    shutil.copytree(folder / "vae", tmp_path / "vae")
    noisy = GeometryDecoder.extended(load_geometry_decoder(folder, FIRST_GUESS), noise_injection=True)
    with torch.no_grad():
        for scale in noisy.noise_scale:
            scale.fill_(0.5)
    noisy.save_pretrained(tmp_path / FIRST_GUESS)
    guess = load_geometry_decoder(tmp_path, FIRST_GUESS)
    cond = condition()
    with torch.no_grad():
        assert torch.equal(guess.draw(cond, 3), guess.draw(cond, 3))
        assert float((guess.draw(cond, 3) - guess.draw(cond, 4)).abs().mean()) > 1e-3
    m = model(tmp_path, first_guess_strength=0.4)
    stage = MultiViewStage(m, threads=None)
    for seed in (3, 4):
        assert torch.equal(stage.sample(cond, seed=seed),
                           m.sample(cond, seed=seed, start=stage.codec.first_guess(cond, seed), strength=0.4))


def test_the_trainer_with_blank_latents_trains_and_validates_the_regression_only(tmp_path):
    from xscene_core.train.geometry_decoder import main

    torch.manual_seed(0)
    build_autoencoder("tiny", **SMALL).save_pretrained(tmp_path / "ae" / "vae")
    fake_cache(tmp_path / "cache", size=(32, 56), cond=GEOMETRY)
    main(["--autoencoder", str(tmp_path / "ae"), "--cache", str(tmp_path / "cache"), "--size", "32", "56",
          "--cond-size", *map(str, GEOMETRY), "--out", str(tmp_path / "run"), "--threads", "1", "--crop-h", "16",
          "--crop-w", "28", "--log-every", "1", "--eval-every", "2", "--ckpt-every", "1", "--p-blank", "1",
          "--style-condition", "--steps", "3"])
    lines = [json.loads(s) for s in (tmp_path / "run" / "log.jsonl").read_text().splitlines() if s.startswith("{")]
    evals = [x for x in lines if "val_loss" in x]
    assert evals and all({k for k in x if k.startswith("val_loss_")} == {"val_loss_blank"} for x in evals)
    assert all(x["val_loss"] == x["val_loss_blank"] for x in evals)
    trained = GeometryDecoder.from_pretrained(tmp_path / "run" / "final")
    assert trained.config.style_condition
    with torch.no_grad():
        assert np.isfinite(trained.draw(condition()).numpy()).all()


# -- the first guess as a condition (cascaded conditioning) ------------------------------------------------
def test_a_guided_denoiser_reads_the_guess_only_where_the_geometry_is_kept(folder):
    from dataclasses import replace

    m = model(folder, first_guess_condition=True)
    assert m.unet.conv_in.in_channels == model(folder).unet.conv_in.in_channels + 4
    cond = condition()
    x = torch.randn(1, 6, 4, *LATENT)
    t = torch.tensor([500])
    with pytest.raises(ValueError, match="reads the first-guess views"):
        m(x, t, cond)
    with pytest.raises(ValueError, match="guide: expected the reference's shape"):
        replace(cond, guide=torch.zeros(1, 6, 4, 3, 3))
    g = torch.randn(1, 6, 4, *LATENT)
    with torch.no_grad():
        a, b = m(x, t, replace(cond, guide=g)), m(x, t, replace(cond, guide=-g))
        assert float((a - b).abs().mean()) > 1e-4  # the guess steers the output
        blind = replace(cond, guide=g).without_geometry()  # the guess is the geometry's: dropped with it
        assert torch.equal(m(x, t, blind), m(x, t, replace(blind, guide=-g)))
    s1 = m.sample(replace(cond, guide=g), seed=2)
    assert torch.equal(s1, m.sample(replace(cond, guide=g), seed=2))
    with pytest.raises(ValueError, match="needs a latent-space model"):
        ImageDiffusion(**dict(PRESETS["tiny"], first_guess_condition=True))


def test_conditions_with_guides_concatenate_move_and_refuse_a_mix(folder):
    from dataclasses import replace

    from xscene_core.models.image_condition import ImageCondition

    a, b = condition(0), condition(1)
    ga, gb = replace(a, guide=torch.ones(1, 6, 4, *LATENT)), replace(b, guide=torch.zeros(1, 6, 4, *LATENT))
    both = ImageCondition.cat([ga, gb])
    assert both.guide.shape == (2, 6, 4, *LATENT) and float(both.guide[0].min()) == 1 and float(both.guide[1].max()) == 0
    assert ImageCondition.cat([a, b]).guide is None and a.to("cpu").guide is None
    assert torch.equal(ga.to("cpu").guide, ga.guide)
    with pytest.raises(ValueError, match="some batches have a first-guess guide"):
        ImageCondition.cat([ga, b])


@pytest.fixture(scope="module")
def chunk_views():
    from xscene_core.data.world import SyntheticWorld
    from xscene_core.stages.render import RenderStage, default_rig

    world = SyntheticWorld(5)
    chunk = world.chunk(*world.find_location("suburban"))
    return chunk, RenderStage(default_rig((32, 56)), backend="torch")(chunk.occupancy)


def test_the_stage_puts_the_codec_guess_into_a_guided_models_condition(folder, chunk_views):
    from xscene_core.stages.multiview import MultiViewStage

    chunk, views = chunk_views
    plain = MultiViewStage(model(folder), threads=None).condition(views, chunk.description, chunk.layout)
    assert plain.guide is None  # a model without the condition computes no guess
    stage = MultiViewStage(model(folder, first_guess_condition=True), threads=None)
    cond = stage.condition(views, chunk.description, chunk.layout)
    assert torch.allclose(cond.guide, stage.codec.first_guess(cond))
    images = stage(views, chunk.description, chunk.layout, seed=4)
    assert images.images.shape == (6, 32, 56, 3)
    assert np.array_equal(images.images, stage(views, chunk.description, chunk.layout, seed=4).images)


def test_the_trainer_grows_a_start_by_the_guess_channels_and_trains_on_guided_scenes(folder, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from xscene_core.models import image_diffusion
    from xscene_core.train.image_diffusion import main

    small = dict(sample_size=LATENT, block_out_channels=(8, 16), attention_levels=(False, True), attention_heads=2,
                 norm_num_groups=4, token_dim=16, geometry_hidden=8, geometry_features=4, max_boxes=8)
    monkeypatch.setitem(image_diffusion.PRESETS, "tiny_latent", {**image_diffusion.PRESETS["tiny_latent"], **small})
    fake_cache(tmp_path / "cache", size=(32, 56), cond=GEOMETRY)
    common = ["--preset", "tiny_latent", "--cache", str(tmp_path / "cache"), "--vae-path", str(folder),
              "--val-samples", "2", "--log-every", "1", "--threads", "1", "--lr", "0"]
    main(common + ["--out", str(tmp_path / "start"), "--steps", "1"])
    main(common + ["--out", str(tmp_path / "run"), "--steps", "1", "--first-guess-condition",
                   "--init", str(tmp_path / "start" / "final")])
    lines = [json.loads(s) for s in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert any(r.get("event") == "guided" for r in lines)
    init = next(r for r in lines if r.get("event") == "init")
    assert init["kept_initialisation"] == []  # every tensor came from the start, the grown convolution included
    start = load_file(str(tmp_path / "start" / "final" / "model.safetensors"))["unet.conv_in.weight"]
    grown = ImageDiffusion.from_pretrained(tmp_path / "run" / "final")
    w = grown.unet.conv_in.weight.detach()
    assert grown.config["first_guess_condition"] and w.shape[1] == start.shape[1] + 4
    assert torch.equal(w[:, : start.shape[1]], start.float()) and not w[:, start.shape[1]:].any()  # lr 0: as copied


def test_a_residual_denoiser_samples_views_around_the_guess(folder):
    from dataclasses import replace

    from xscene_core.models.image_diffusion import diffusion_loss

    with pytest.raises(ValueError, match="needs first_guess_condition"):
        model(folder, first_guess_residual=True)
    m = model(folder, first_guess_condition=True, first_guess_residual=True, residual_scale=2.0)
    g = torch.randn(1, 6, 4, *LATENT)
    cond = replace(condition(), guide=g)
    r = torch.randn(1, 6, 4, *LATENT)
    assert torch.allclose(m.views(r, cond), r / 2 + g) and torch.allclose(m.residual(m.views(r, cond), cond), r, atol=1e-6)
    x0 = torch.randn(1, 6, 4, *LATENT)
    sched, t, noise = m.scheduler("ddpm"), torch.tensor([300]), torch.randn(1, 6, 4, *LATENT)
    plain = model(folder, first_guess_condition=True)
    plain.load_state_dict(m.state_dict())
    with torch.no_grad():  # the same network learns (x0 - guess) x scale where the plain one learns x0
        assert torch.allclose(diffusion_loss(m, sched, x0, cond, t, noise),
                              diffusion_loss(plain, sched, (x0 - g) * 2, cond, t, noise))
    s = m.sample(cond, seed=5)
    assert torch.equal(s, m.sample(cond, seed=5))
    # with the guess's channels silenced, a shifted guess shifts the sampled views by exactly as much
    with torch.no_grad():
        m.unet.conv_in.weight[:, -4:] = 0
    shifted = m.sample(replace(cond, guide=g + 1), seed=5)
    assert torch.allclose(shifted, m.sample(cond, seed=5) + 1, atol=1e-5)


def test_the_trainer_sets_the_residual_scale_from_the_guided_scenes(folder, tmp_path, monkeypatch):
    from xscene_core.models import image_diffusion
    from xscene_core.train.image_diffusion import main

    small = dict(sample_size=LATENT, block_out_channels=(8, 16), attention_levels=(False, True), attention_heads=2,
                 norm_num_groups=4, token_dim=16, geometry_hidden=8, geometry_features=4, max_boxes=8)
    monkeypatch.setitem(image_diffusion.PRESETS, "tiny_latent", {**image_diffusion.PRESETS["tiny_latent"], **small})
    fake_cache(tmp_path / "cache", size=(32, 56), cond=GEOMETRY)
    main(["--preset", "tiny_latent", "--cache", str(tmp_path / "cache"), "--vae-path", str(folder), "--val-samples",
          "2", "--log-every", "1", "--threads", "1", "--out", str(tmp_path / "run"), "--steps", "2",
          "--first-guess-condition", "--first-guess-residual"])
    lines = [json.loads(s) for s in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    scale = next(r for r in lines if r.get("event") == "residual_scale")["residual_scale"]
    trained = ImageDiffusion.from_pretrained(tmp_path / "run" / "final")
    assert trained.config["first_guess_residual"] and trained.config["residual_scale"] == scale > 0
    assert all(np.isfinite(r["val_loss"]) for r in lines if "val_loss" in r)
    # a continuation without the flags keeps its start's first-guess inputs and residual scale
    main(["--preset", "tiny_latent", "--cache", str(tmp_path / "cache"), "--vae-path", str(folder), "--val-samples",
          "2", "--log-every", "1", "--threads", "1", "--out", str(tmp_path / "again"), "--steps", "1",
          "--init", str(tmp_path / "run" / "final")])
    again = [json.loads(s) for s in (tmp_path / "again" / "log.jsonl").read_text().splitlines()]
    assert next(r for r in again if r.get("event") == "residual_scale") == {
        "event": "residual_scale", "residual_scale": scale, "from_init": True}
    assert next(r for r in again if r.get("event") == "init")["kept_initialisation"] == []
