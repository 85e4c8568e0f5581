"""The small image autoencoder, its trainer's pieces, and a latent-space ImageDiffusion reading it."""

import numpy as np
import pytest
import torch

from xscene_core.models.image_autoencoder import build_autoencoder, downsample_factor, load_autoencoder
from xscene_core.models.image_diffusion import ImageCodec, ImageDiffusion

SMALL = dict(block_out_channels=(8, 16, 16), norm_num_groups=4)


def test_shapes_factor_and_save_load(tmp_path):
    torch.manual_seed(0)
    ae = build_autoencoder("tiny", **SMALL).eval()
    assert downsample_factor(ae) == 4
    x = torch.rand(2, 3, 32, 56) * 2 - 1
    with torch.no_grad():
        z = ae.encode(x).latent_dist.mean
        y = ae.decode(z).sample
    assert z.shape == (2, 4, 8, 14) and y.shape == x.shape
    ae.save_pretrained(tmp_path / "vae")
    again = load_autoencoder(tmp_path)
    with torch.no_grad():
        assert torch.equal(again.encode(x).latent_dist.mean, z)
    with pytest.raises(ValueError, match="no vae/"):
        load_autoencoder(tmp_path / "vae")
    with pytest.raises(ValueError, match="unknown autoencoder preset"):
        build_autoencoder("huge")


def test_a_few_steps_reduce_the_reconstruction_loss():
    from xscene_core.train.image_autoencoder import psnr, reconstruction_loss

    torch.manual_seed(0)
    ae = build_autoencoder("tiny", **SMALL)
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(4, 3, 1, 1, generator=g) * 2 - 1).expand(4, 3, 32, 56).contiguous()  # flat colours
    opt = torch.optim.Adam(ae.parameters(), 3e-3)
    first = None
    for _ in range(30):
        loss, _ = reconstruction_loss(ae, x, 1e-6)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = float(loss.detach()) if first is None else first
    loss, l1 = reconstruction_loss(ae, x, 1e-6)
    assert float(loss.detach()) < 0.5 * first
    assert psnr(x, x) > 100 and psnr(-x, x) < psnr(x * 0.9, x)


def test_a_latent_model_codes_images_through_its_autoencoder(tmp_path):
    torch.manual_seed(0)
    build_autoencoder("tiny", **SMALL).save_pretrained(tmp_path / "vae")
    kw = dict(space="latent", image_channels=4, sample_size=(8, 14), block_out_channels=(8, 16),
              attention_levels=(False, True), attention_heads=2, norm_num_groups=4, token_dim=16, geometry_hidden=8,
              geometry_features=4, max_boxes=8, vae_path=str(tmp_path), vae_scale=2.0, vae_factor=4)
    codec = ImageCodec(ImageDiffusion(**kw))
    assert codec.image_size == (32, 56)
    images = np.random.default_rng(0).integers(0, 255, (6, 64, 112, 3), dtype=np.uint8)  # any size: resized
    z = codec.encode(images)
    assert z.shape == (6, 4, 8, 14)
    assert codec.decode(z).shape == (6, 32, 56, 3)
    wrong = ImageCodec(ImageDiffusion(**{**kw, "vae_factor": 8, "sample_size": (4, 7)}))
    with pytest.raises(ValueError, match="downsamples 4x"):
        wrong.encode(images)


def fake_cache(root, size=(32, 56), cond=(8, 14), worlds=2):
    """Cache files in xscene_core.data.image_dataset's format with random arrays (the trainer reads the views)."""
    from xscene_core.data.image_dataset import cache_dir
    from xscene_core.models.image_condition import CAMERA_FEATURES, PERSP_CHANNELS

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        d = cache_dir(root, size, split, cond)
        d.mkdir(parents=True)
        for w in range(worlds):
            np.savez_compressed(
                d / f"w{w:06d}_00.npz", semantic=np.zeros((6, *cond), np.uint8), depth=np.zeros((6, *cond), np.float16),
                persp=np.zeros((6, PERSP_CHANNELS, *cond), np.uint8), points=np.zeros((6, 3, *cond), np.float16),
                camera=np.zeros((6, CAMERA_FEATURES), np.float32), boxes=np.zeros((0, 7), np.float32),
                box_labels=np.zeros(0, np.int64), caption=np.array("a street"), text=np.zeros(384, np.float32),
                preview=rng.integers(0, 255, (2, 6, *size, 3), dtype=np.uint8),
                reference=rng.integers(0, 255, (2, 6, *size, 3), dtype=np.uint8), T_ref_new=np.eye(4, dtype=np.float32))


def test_the_training_entry_point_runs_resumes_and_writes_a_loadable_autoencoder(tmp_path, monkeypatch):
    import json

    from xscene_core.models import image_autoencoder
    from xscene_core.train.image_autoencoder import main

    monkeypatch.setitem(image_autoencoder.PRESETS, "tiny", {**image_autoencoder.PRESETS["tiny"], **SMALL})
    fake_cache(tmp_path / "cache")
    common = ["--cache", str(tmp_path / "cache"), "--size", "32", "56", "--out", str(tmp_path / "run"), "--batch", "2",
              "--val-views", "4", "--log-every", "1", "--threads", "1"]
    main(common + ["--steps", "2"])
    main(common + ["--steps", "3", "--resume"])
    lines = [json.loads(s) for s in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines if "loss" in r] == [1, 2, 3]
    assert all(np.isfinite(r["val_psnr"]) for r in lines if "val_psnr" in r)
    shipped = tmp_path / "ship"
    shipped.mkdir()
    (tmp_path / "run" / "best").rename(shipped / "vae")  # how a run is shipped: PATH/vae
    assert downsample_factor(load_autoencoder(shipped)) == 4
    with pytest.raises(SystemExit, match="no cached samples"):
        main(["--cache", str(tmp_path / "nothing"), "--out", str(tmp_path / "run2")])


def test_decoder_fine_tuning_keeps_the_latent_space(tmp_path):
    import json

    from safetensors.torch import load_file

    from xscene_core.train.image_autoencoder import main

    torch.manual_seed(0)
    build_autoencoder("tiny", **SMALL).save_pretrained(tmp_path / "ae" / "vae")
    fake_cache(tmp_path / "cache")
    common = ["--cache", str(tmp_path / "cache"), "--size", "32", "56", "--out", str(tmp_path / "run"), "--batch", "2",
              "--val-views", "4", "--log-every", "1", "--threads", "1", "--lr", "1e-2", "--ema-decay", "0"]
    with pytest.raises(SystemExit, match="give --init"):
        main(common + ["--steps", "1", "--train", "decoder"])
    main(common + ["--steps", "2", "--train", "decoder", "--init", str(tmp_path / "ae")])
    main(common + ["--steps", "3", "--train", "decoder", "--resume"])
    before = load_file(str(tmp_path / "ae" / "vae" / "diffusion_pytorch_model.safetensors"))
    after = load_file(str(tmp_path / "run" / "final" / "diffusion_pytorch_model.safetensors"))
    frozen = [k for k in before if k.startswith(("encoder.", "quant_conv."))]
    trained = [k for k in before if k.startswith(("decoder.", "post_quant_conv."))]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)        # the same latents
    assert any(not torch.equal(before[k], after[k]) for k in trained)              # a changed decoder
    start = [json.loads(s) for s in (tmp_path / "run" / "log.jsonl").read_text().splitlines() if '"start"' in s]
    assert start[0]["trained"] == "decoder" and start[0]["trained_params"] < start[0]["params"]


def test_an_encoded_dataset_holds_the_latents_of_every_look(tmp_path):
    from xscene_core.data.image_dataset import ImageDataset, to_model_images

    fake_cache(tmp_path / "cache", worlds=1)
    paths = sorted((tmp_path / "cache").rglob("train/*.npz"))
    data = ImageDataset.load(paths)
    down = lambda x: torch.nn.functional.avg_pool2d(x, 4)  # noqa: E731  (stands in for an encoder)
    enc = data.encoded(down, chunk=5)
    s, e = data.samples[0], enc.samples[0]
    assert e.preview.shape == (2, 6, 3, 8, 14) and e.reference.shape == (2, 6, 3, 8, 14)
    assert np.allclose(e.preview[1].astype(np.float32), down(to_model_images(s.preview[1])).numpy(), atol=1e-2)
    x_enc, cond = enc.batch(np.array([0]), np.array([1]), np.array([True]), 8, channels=3)
    x_raw = down(to_model_images(s.preview[1]))[None]
    assert torch.allclose(x_enc, x_raw, atol=1e-2)   # batches of the encoded copy = encoding on the fly
    assert cond.reference_mask.all()


def test_the_latent_diffusion_trainer_runs_on_a_cache_and_an_autoencoder(tmp_path, monkeypatch):
    import json

    from xscene_core.models import image_diffusion
    from xscene_core.train.image_diffusion import main

    torch.manual_seed(0)
    build_autoencoder("tiny", **SMALL).save_pretrained(tmp_path / "ae" / "vae")
    small = dict(sample_size=(8, 14), block_out_channels=(8, 16), attention_levels=(False, True), attention_heads=2,
                 norm_num_groups=4, token_dim=16, geometry_hidden=8, geometry_features=4, max_boxes=8)
    monkeypatch.setitem(image_diffusion.PRESETS, "tiny_latent", {**image_diffusion.PRESETS["tiny_latent"], **small})
    fake_cache(tmp_path / "cache", cond=(16, 28))  # geometry at 2x the 8 x 14 latents (the preset's stride)
    main(["--preset", "tiny_latent", "--cache", str(tmp_path / "cache"), "--vae-path", str(tmp_path / "ae"),
          "--out", str(tmp_path / "run"), "--steps", "2", "--val-samples", "2", "--log-every", "1", "--threads", "1"])
    lines = [json.loads(s) for s in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines if "loss" in r] == [1, 2]
    assert any(r.get("event") == "encoded" for r in lines)
    assert all(np.isfinite(r["val_loss"]) for r in lines if "val_loss" in r)
    model = image_diffusion.ImageDiffusion.from_pretrained(tmp_path / "run" / "final")
    assert model.config["space"] == "latent" and model.config["vae_scale"] > 0
    assert model.condition_size == (16, 28) and model.sample_size == (8, 14)


def test_encoded_latents_are_kept_and_read_back_until_the_cached_images_change(tmp_path):
    from xscene_core.data.image_dataset import ImageDataset, cache_dir, cache_files, latent_store

    fake_cache(tmp_path / "cache")
    folder = cache_dir(tmp_path / "cache", (32, 56), "train", (8, 14))
    torch.manual_seed(0)
    ae = build_autoencoder("tiny", **SMALL).eval()
    ae.save_pretrained(tmp_path / "ae" / "vae")
    store = latent_store(folder, tmp_path / "ae", "mean")
    calls = []

    def encode(x):
        calls.append(len(x))
        return ae.encode(x).latent_dist.mean

    first = ImageDataset.load(cache_files(folder)).encoded(encode, store=store)
    assert calls and sorted(p.name for p in store.iterdir()) == [p.name for p in cache_files(folder)]
    n = len(calls)
    again = ImageDataset.load(cache_files(folder)).encoded(encode, store=store)
    assert len(calls) == n  # read back, not encoded
    for a, b in zip(first.samples, again.samples):
        assert np.array_equal(a.preview, b.preview) and np.array_equal(a.reference, b.reference)
        assert a.preview.dtype == np.float16 and a.preview.shape[:2] == (2, 6)
    assert latent_store(folder, tmp_path / "ae", "x0.5") != store  # another scale: another folder
    assert latent_store(folder, tmp_path / "nothing", "mean") is None
    # other weights: another folder
    with torch.no_grad():
        next(ae.parameters()).add_(1)
    ae.save_pretrained(tmp_path / "ae2" / "vae")
    assert latent_store(folder, tmp_path / "ae2", "mean") != store
    # a cache file whose condition alone was redrawn (as --add-areas does) keeps its latents; one whose
    # looks changed is encoded again, and the others are read back
    redrawn, changed = cache_files(folder)[:2]
    with np.load(redrawn) as d:
        data = {k: d[k] for k in d.files}
    np.savez(redrawn, **dict(data, persp=1 - data["persp"]))
    ImageDataset.load(cache_files(folder)).encoded(encode, store=store)
    assert len(calls) == n
    with np.load(changed) as d:
        data = {k: d[k] for k in d.files}
    np.savez(changed, **dict(data, preview=255 - data["preview"]))
    ImageDataset.load(cache_files(folder)).encoded(encode, store=store)
    assert n < len(calls) < 2 * n
