"""The adversarial term of the image diffusion trainer (--adv-weight): a PatchGAN judges the denoiser's
decoded clean estimates against the decoded targets, only for scenes that keep their geometry and lie in
the judged part of the schedule; the discriminator is checkpointed and resumed with the model."""

import json

import numpy as np
import pytest
import torch

from xscene_core.models.image_diffusion import ImageCodec, ImageDiffusion, diffusion_loss

from test_first_guess import folder, model  # noqa: F401  (fixture)
from test_geometry_decoder import GEOMETRY, LATENT, condition
from test_image_autoencoder import fake_cache

SMALL = dict(sample_size=LATENT, block_out_channels=(8, 16), attention_levels=(False, True), attention_heads=2,
             norm_num_groups=4, token_dim=16, geometry_hidden=8, geometry_features=4, max_boxes=8)


def test_the_estimate_is_the_clean_views_the_prediction_implies(folder):  # noqa: F811
    m = model(folder)
    x0, noise = torch.randn(1, 6, 4, *LATENT), torch.randn(1, 6, 4, *LATENT)
    sched = m.scheduler("ddpm")
    loss, est = diffusion_loss(m, sched, x0, condition(), torch.tensor([0]), noise, estimate=True)
    assert est.shape == x0.shape and est.requires_grad
    assert torch.equal(loss, diffusion_loss(m, sched, x0, condition(), torch.tensor([0]), noise))
    # the estimate is clean_estimate of the model's own output for the noised input
    from xscene_core.models.image_diffusion import clean_estimate

    acp = sched.alphas_cumprod[0]
    xt = acp.sqrt() * x0 + (1 - acp).sqrt() * noise
    with torch.no_grad():
        want = clean_estimate(m(xt, torch.tensor([0]), condition()), xt, acp, "v_prediction")
    assert torch.allclose(est.detach(), want, atol=1e-5)


def test_judged_views_crop_the_same_window_of_targets_estimates_and_semantic(folder):  # noqa: F811
    from xscene_core.train.image_diffusion import TrainConfig, judged_views

    m = model(folder)
    codec = ImageCodec(m)
    cond = condition()
    x0 = torch.randn(1, 6, 4, *LATENT)
    est = (x0 + 0.1 * torch.randn_like(x0)).requires_grad_(True)
    f = codec.image_size[0] // LATENT[0]
    cfg = TrainConfig(adv_crop_h=4 * f, adv_crop_w=6 * f)
    real, fake, semantic, style = judged_views(codec, x0, est, cond, torch.tensor([True]), cfg,
                                               np.random.default_rng(0))
    assert real.shape == fake.shape == (6, 3, 4 * f, 6 * f) and not real.requires_grad and fake.requires_grad
    s = cond.semantic.shape[-2] // LATENT[0]
    assert semantic.shape == (6, 4 * s, 6 * s) and style.shape[0] == 6
    fake.sum().backward()  # the adversary's gradient reaches the estimate through the frozen decoder
    assert est.grad is not None and est.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in codec._autoencoder().parameters())
    # both sides pass the same window of the same decoder: a perfect estimate looks exactly real
    perfect = judged_views(codec, x0, x0.clone(), cond, torch.tensor([True]), cfg, np.random.default_rng(0))
    assert torch.allclose(perfect[0], perfect[1].detach()) and not torch.allclose(real, fake.detach())


def test_an_adversarial_run_trains_the_discriminator_saves_it_and_resumes_it(folder, tmp_path, monkeypatch,  # noqa: F811
                                                                              capsys):
    from xscene_core.models import image_diffusion
    from xscene_core.train.adversarial import DISCRIMINATOR
    from xscene_core.train.image_diffusion import main

    monkeypatch.setitem(image_diffusion.PRESETS, "tiny_latent", {**image_diffusion.PRESETS["tiny_latent"], **SMALL})
    fake_cache(tmp_path / "cache", size=(32, 56), cond=GEOMETRY)
    common = ["--preset", "tiny_latent", "--cache", str(tmp_path / "cache"), "--vae-path", str(folder),
              "--val-samples", "2", "--log-every", "1", "--eval-every", "2", "--ckpt-every", "1", "--threads", "1"]
    main(common + ["--out", str(tmp_path / "start"), "--steps", "1"])  # a start, as a fine-tuning run has
    args = common + ["--out", str(tmp_path / "run"), "--adv-weight", "0.5", "--adv-t-max", "1", "--disc-start", "1",
                     "--drop-all", "0", "--drop-geometry", "0", "--adv-crop-h", "16", "--adv-crop-w", "28",
                     "--init", str(tmp_path / "start" / "final")]
    main(args + ["--steps", "3"])
    saved = tmp_path / "run" / "checkpoint" / DISCRIMINATOR
    assert saved.exists()
    main(args + ["--steps", "5", "--resume"])
    assert "discriminator resumed" in capsys.readouterr().out
    lines = [json.loads(s) for s in (tmp_path / "run" / "log.jsonl").read_text().splitlines() if s.startswith("{")]
    evals = [r for r in lines if "disc_loss" in r]
    assert evals and all(np.isfinite(r["disc_loss"]) and r["adv_balance"] >= 0 for r in evals)
    assert max(r["adv_balance"] for r in evals) > 0  # the denoiser was trained against the discriminator
    trained = ImageDiffusion.from_pretrained(tmp_path / "run" / "final")
    assert all(torch.isfinite(p).all() for p in trained.parameters())

    # a new run starts its adversary from that discriminator (no solo steps), and gains the paint inputs
    again = common + ["--out", str(tmp_path / "again"), "--adv-weight", "0.5", "--adv-t-max", "1", "--drop-all", "0",
                      "--drop-geometry", "0", "--adv-crop-h", "16", "--adv-crop-w", "28", "--disc-start", "100",
                      "--init", str(tmp_path / "run" / "final"), "--paint-condition", "--object-weight", "4",
                      "--discriminator-init", str(saved), "--steps", "2"]
    main(again)
    assert "discriminator initialised from" in capsys.readouterr().out
    lines = [json.loads(s) for s in (tmp_path / "again" / "log.jsonl").read_text().splitlines() if s.startswith("{")]
    assert max(r["adv_balance"] for r in lines if "disc_loss" in r) > 0  # it joined at once, not after 100 steps
    assert ImageDiffusion.from_pretrained(tmp_path / "again" / "final").config["paint_condition"]
    with pytest.raises(FileNotFoundError, match="no such file"):
        main(again[:-4] + ["--out", str(tmp_path / "gone"), "--discriminator-init", str(tmp_path / "nothing"),
                           "--steps", "1"])


def test_scenes_without_geometry_are_not_judged(folder, tmp_path, monkeypatch):  # noqa: F811
    from xscene_core.models import image_diffusion
    from xscene_core.train.image_diffusion import main

    monkeypatch.setitem(image_diffusion.PRESETS, "tiny_latent", {**image_diffusion.PRESETS["tiny_latent"], **SMALL})
    fake_cache(tmp_path / "cache", size=(32, 56), cond=GEOMETRY)
    main(["--preset", "tiny_latent", "--cache", str(tmp_path / "cache"), "--vae-path", str(folder),
          "--val-samples", "2", "--log-every", "1", "--eval-every", "2", "--threads", "1", "--steps", "2",
          "--out", str(tmp_path / "run"), "--adv-weight", "0.5", "--adv-t-max", "1", "--drop-all", "1"])
    lines = [json.loads(s) for s in (tmp_path / "run" / "log.jsonl").read_text().splitlines() if s.startswith("{")]
    assert lines and not any("disc_loss" in r for r in lines)  # the adversary never ran
