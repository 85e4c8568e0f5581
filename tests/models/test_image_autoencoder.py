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
    assert float(loss) < 0.5 * first
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
