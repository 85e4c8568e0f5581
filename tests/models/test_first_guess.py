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
