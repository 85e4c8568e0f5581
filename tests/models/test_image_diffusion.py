"""ImageDiffusion: shapes, determinism, save/load, geometry and reference conditions, cross-view attention."""

import numpy as np
import pytest
import torch

from xscene_core.models.image_condition import ImageCondition, ViewArrays, view_condition_arrays
from xscene_core.models.image_diffusion import PRESETS, ImageDiffusion, diffusion_loss
from xscene_core.types.layout import Box, Layout

SIZE = (16, 28)
TINY = dict(sample_size=SIZE, block_out_channels=(8, 16), attention_levels=(False, True), attention_heads=2,
            norm_num_groups=4, token_dim=16, geometry_hidden=8, geometry_features=4, max_boxes=8)


@pytest.fixture(scope="module")
def scene():
    from xscene_core.stages.render import default_rig

    rig = default_rig((32, 56))
    rng = np.random.default_rng(0)
    sem = rng.integers(11, 18, size=(6, 32, 56)).astype(np.uint8)
    depth = rng.uniform(2, 50, size=(6, 32, 56)).astype(np.float32)
    layout = Layout(boxes=(Box((8.0, 0.0, 0.8), (4.5, 1.9, 1.6), 0.1, 4), Box((-6.0, 3.0, 0.9), (0.6, 0.6, 1.8), 0.0, 7)))
    return view_condition_arrays(sem, depth, layout, rig, SIZE)


def _cond(arrays: ViewArrays, reference=None, pose=None) -> ImageCondition:
    return ImageCondition.collate([arrays], [np.ones(384, np.float32) / 20], [reference], [pose], 3, 8)


def _model(**kw) -> ImageDiffusion:
    torch.manual_seed(0)
    m = ImageDiffusion(**{**PRESETS["tiny"], **TINY, **kw})
    with torch.no_grad():  # the zero-initialised-by-nothing UNet output layer is random already; make the
        for p in m.parameters():  # condition paths clearly non-trivial for the tests
            p.add_(torch.randn_like(p) * 0.02)
    return m.eval()


def test_condition_arrays_shapes(scene):
    assert scene.semantic.shape == (6, *SIZE) and scene.persp.shape[:2] == (6, 25)
    assert scene.points.shape == (6, 3, *SIZE) and scene.camera.shape == (6, 10)
    assert scene.persp[:, :10].any(), "the car in front should appear in some view"


def test_forward_shape_and_loss(scene):
    m = _model()
    c = _cond(scene)
    x = torch.randn(1, 6, 3, *SIZE)
    assert m(x, torch.tensor([10]), c).shape == x.shape
    loss = diffusion_loss(m, m.scheduler("ddpm"), x, c, torch.tensor([500]), torch.randn_like(x))
    loss.backward()
    assert torch.isfinite(loss) and m.geometry.maps_in.weight.grad.abs().sum() > 0


def test_sample_deterministic_and_conditions_matter(scene):
    m = _model()
    c = _cond(scene)
    a = m.sample(c, seed=3, steps=3)
    assert a.shape == (1, 6, 3, *SIZE)
    assert torch.equal(a, m.sample(c, seed=3, steps=3))
    assert not torch.allclose(a, m.sample(c, seed=4, steps=3))
    assert (a - m.sample(c.without_geometry(), seed=3, steps=3)).abs().max() > 1e-3, "geometry must change the output"
    ref = np.random.default_rng(1).uniform(-1, 1, (6, 3, *SIZE)).astype(np.float32)
    T = np.eye(4)
    T[0, 3] = 40.0
    b = m.sample(_cond(scene, ref, T), seed=3, steps=3)
    assert (a - b).abs().max() > 1e-3, "the reference view must change the output"


def test_cross_view_attention_couples_views(scene):
    x = torch.randn(1, 6, 3, *SIZE)
    c = _cond(scene)
    for cross, coupled in ((True, True), (False, False)):
        m = _model(cross_view=cross)
        out = m(x, torch.tensor([500]), c)
        x2 = x.clone()
        x2[0, 1] += 1.0  # change only the front camera
        out2 = m(x2, torch.tensor([500]), c)
        moved = (out - out2).abs().amax(dim=(2, 3, 4))[0]
        # FRONT_LEFT and FRONT_RIGHT are the front camera's ring neighbours; without cross-view attention
        # the views are independent images
        assert bool(moved[0] > 1e-6) == coupled and bool(moved[2] > 1e-6) == coupled
        assert moved[1] > 1e-6


def test_save_load_round_trip(scene, tmp_path):
    m = _model()
    m.save_pretrained(tmp_path)
    n = ImageDiffusion.from_pretrained(tmp_path)
    c = _cond(scene)
    assert torch.equal(m.sample(c, seed=0, steps=2), n.sample(c, seed=0, steps=2))
    assert n.config == m.config


def test_export_halves_the_weights_sets_config_keys_and_loads_back(scene, tmp_path):
    from xscene_core.train.export import export_half, main, parse_setting

    m = _model()
    m.save_pretrained(tmp_path / "run")
    n = export_half(tmp_path / "run", tmp_path / "ship", {"guidance_scale": 2.5})
    assert n == sum(t.numel() for t in m.state_dict().values())
    assert (tmp_path / "ship" / "model.safetensors").stat().st_size < 0.6 * (tmp_path / "run" / "model.safetensors").stat().st_size
    shipped = ImageDiffusion.from_pretrained(tmp_path / "ship")
    assert shipped.config["guidance_scale"] == 2.5 and next(shipped.parameters()).dtype == torch.float32
    for (k, a), b in zip(m.state_dict().items(), shipped.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-3, rtol=1e-3), k  # float16 rounding only
    assert parse_setting("vae_path=checkpoints/x") == ("vae_path", "checkpoints/x")
    assert parse_setting("geometry_decoder=true") == ("geometry_decoder", True)
    with pytest.raises(ValueError, match="has no key guidance_scal"):
        export_half(tmp_path / "run", tmp_path / "bad", {"guidance_scal": 1.0})
    assert not (tmp_path / "bad").exists()
    with pytest.raises(ValueError, match="not a save_pretrained folder"):
        export_half(tmp_path / "nothing", tmp_path / "bad")
    main([str(tmp_path / "ship"), str(tmp_path / "again"), "--set", "guidance_scale=1.5"])
    assert ImageDiffusion.from_pretrained(tmp_path / "again").config["guidance_scale"] == 1.5


def test_bad_inputs(scene):
    m = _model()
    with pytest.raises(ValueError):
        m(torch.randn(1, 5, 3, *SIZE), torch.tensor([1]), _cond(scene))
    with pytest.raises(ValueError):
        ImageDiffusion.from_preset("huge")
    with pytest.raises(ValueError):
        ImageDiffusion(**{**PRESETS["tiny"], **TINY, "space": "voxel"})
    with pytest.raises(ValueError):
        m.load_stable_diffusion_unet("/nonexistent/sd21")


def test_paper_path_loads_local_stable_diffusion_folders(tmp_path):
    """The paper preset's code path on a miniature local 'Stable Diffusion' folder (unet/ + vae/)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from xscene_core.models.image_diffusion import ImageCodec

    small = dict(sample_size=(4, 7), block_out_channels=(8, 16), attention_levels=(False, True), attention_heads=2,
                 norm_num_groups=4, token_dim=16, geometry_hidden=8, geometry_features=4)
    UNet2DConditionModel(sample_size=(4, 7), in_channels=4, out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                         up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), block_out_channels=(8, 16), layers_per_block=2,
                         norm_num_groups=4, cross_attention_dim=16, attention_head_dim=2,
                         use_linear_projection=True).save_pretrained(tmp_path / "unet")
    AutoencoderKL(block_out_channels=(8, 8, 8, 8), down_block_types=("DownEncoderBlock2D",) * 4,
                  up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4, norm_num_groups=4,
                  layers_per_block=1).save_pretrained(tmp_path / "vae")
    m = ImageDiffusion.from_preset("paper", unet_path=str(tmp_path), vae_path=str(tmp_path), **small)
    sd = UNet2DConditionModel.from_pretrained(tmp_path / "unet")
    w = m.unet.conv_in.weight
    assert torch.equal(w[:, :4], sd.conv_in.weight) and not w[:, 4:].any()
    codec = ImageCodec(m)
    assert codec.image_size == (32, 56)
    lat = codec.encode(np.zeros((6, 32, 56, 3), np.uint8))
    assert lat.shape == (6, 4, 4, 7)
    assert codec.decode(lat).shape == (6, 32, 56, 3)


def test_style_features_and_captions_round_trip():
    from xscene_core.models.image_condition import STYLE_FEATURES, style_features
    from xscene_core.types.scene import TIMES_OF_DAY, WEATHERS, SceneDescription

    f = style_features("night", "rainy")
    assert f.shape == (STYLE_FEATURES,) and f.sum() == 2
    assert f[TIMES_OF_DAY.index("night")] == 1 and f[len(TIMES_OF_DAY) + WEATHERS.index("rainy")] == 1
    assert style_features(None, None).sum() == 0
    with pytest.raises(ValueError, match="not one of"):
        style_features("midnight", "rainy")
    for time in TIMES_OF_DAY:
        for weather in WEATHERS:
            d = SceneDescription(time_of_day=time, weather=weather, environment="urban")
            assert SceneDescription.caption_style(d.caption()) == (time, weather)
    assert SceneDescription.caption_style("A quiet street at night") is None


def test_style_condition_starts_as_a_no_op_and_then_steers(scene):
    from xscene_core.models.image_condition import style_features

    m = _model()
    assert m.config["style_condition"]
    x = torch.randn(1, 6, 3, *SIZE)
    t = torch.tensor([700])

    def out(model, cond):
        with torch.no_grad():
            return model(x, t, cond)

    night = ImageCondition.collate([scene], [np.ones(384, np.float32) / 20], [None], [None], 3, 8,
                                   [style_features("night", "rainy")])
    noon = ImageCondition.collate([scene], [np.ones(384, np.float32) / 20], [None], [None], 3, 8,
                                  [style_features("noon", "sunny")])
    torch.manual_seed(0)
    fresh = ImageDiffusion(**{**PRESETS["tiny"], **TINY}).eval()
    assert torch.count_nonzero(fresh.style.weight) == 0
    assert torch.equal(out(fresh, night), out(fresh, noon))          # zero-initialised: a no-op
    assert not torch.allclose(out(m, night), out(m, noon))          # trained (here: perturbed) weights steer
    # the style belongs to the caption: the guidance branch without caption ignores it
    assert torch.equal(out(m, night.unconditional()), out(m, noon.unconditional()))
    # a model saved without the style input loads and runs as before
    old = ImageDiffusion(**{**PRESETS["tiny"], **TINY, "style_condition": False}).eval()
    assert not hasattr(old, "style") and out(old, night).shape == x.shape


def test_min_snr_weight_keeps_the_zero_snr_step(scene):
    m = _model()
    sched = m.scheduler("ddpm")
    assert float(sched.alphas_cumprod[-1]) == 0.0  # zero terminal SNR
    x = torch.randn(1, 6, 3, *SIZE)
    noise = torch.randn_like(x)
    last = torch.tensor([sched.config.num_train_timesteps - 1])
    with torch.no_grad():
        plain = diffusion_loss(m, sched, x, _cond(scene), last, noise)
        weighted = diffusion_loss(m, sched, x, _cond(scene), last, noise, snr_gamma=5.0)
    assert weighted > 0 and torch.allclose(weighted, plain)


def test_guidance_rescale_matches_the_conditional_spread_per_view(scene):
    m = _model()
    c = _cond(scene)
    x = torch.randn(1, 6, 3, *SIZE)
    t = torch.tensor([900])
    with torch.no_grad():
        cond_out = m(x, t, c)
        plain = m.guided(c, 5.0)(x, t)
        full = m.guided(c, 5.0, rescale=1.0)(x, t)
        half = m.guided(c, 5.0, rescale=0.5)(x, t)
        assert torch.equal(m.guided(c, 5.0, rescale=0.0)(x, t), plain)
    views = lambda a: a.flatten(2).std(-1)  # noqa: E731  per-view std [1, 6]
    assert torch.allclose(views(full), views(cond_out), rtol=1e-4)
    assert not torch.allclose(full, plain)
    assert torch.allclose(half, 0.5 * (full + plain), atol=1e-5)
    with pytest.raises(ValueError, match="rescale"):
        m.guided(c, 5.0, rescale=1.5)


def test_geometry_at_a_finer_stride_denoises_images_at_the_model_size(scene):
    """geometry_stride 2: 16 x 28 geometry maps condition 8 x 14 images (a latent model's layout)."""
    m = _model(sample_size=(8, 14), geometry_stride=2)
    assert m.condition_size == SIZE
    c = ImageCondition.collate([scene], [np.ones(384, np.float32) / 20], [None], [None], 3, 8, geometry_stride=2)
    assert c.image_size == (8, 14) and c.semantic.shape[-2:] == SIZE
    feats = m.geometry(c)
    assert feats.shape == (6, 4, 8, 14)
    assert torch.equal(m.geometry(c.without_geometry()), torch.zeros_like(feats)), "a dropped geometry is zero"
    a = m.sample(c, seed=3, steps=3)
    assert a.shape == (1, 6, 3, 8, 14)
    assert (a - m.sample(c.without_geometry(), seed=3, steps=3)).abs().max() > 1e-3
    ref = np.zeros((6, 3, 8, 14), np.float32)
    with_ref = ImageCondition.collate([scene], [None], [ref], [np.eye(4)], 3, 8, geometry_stride=2)
    assert with_ref.reference_mask.all()
    with pytest.raises(ValueError, match="geometry stride 2"):
        m(torch.randn(1, 6, 3, *SIZE), torch.tensor([1]), _cond(scene))      # stride-1 condition
    with pytest.raises(ValueError, match="reference"):                       # not an integer fraction
        ImageCondition.collate([scene], [None], [np.zeros((6, 3, 5, 9), np.float32)], [np.eye(4)], 3, 8)
    with pytest.raises(ValueError, match="stride"):
        ImageDiffusion(**{**PRESETS["tiny"], **TINY, "geometry_stride": 3})
    # the weights have the same shapes at every stride: a pixel model's geometry encoder loads
    plain = _model()
    m.geometry.load_state_dict(plain.geometry.state_dict())


@pytest.mark.parametrize("preset", ["tiny_latent", "small_latent"])
def test_the_latent_presets_denoise_their_latents_with_geometry_at_twice_their_size(preset):
    from xscene_core.stages.render import default_rig

    m = ImageDiffusion.from_preset(preset).eval()
    h, w = m.sample_size
    assert m.condition_size == (2 * h, 2 * w) and m.image_channels == 4
    arrays = view_condition_arrays(np.full((6, 64, 112), 11, np.uint8), np.full((6, 64, 112), 10.0, np.float32),
                                   None, default_rig((64, 112)), m.condition_size)
    c = ImageCondition.collate([arrays], [None], [None], [None], 4, m.config["max_boxes"], [None], 2)
    x = torch.randn(1, 6, 4, h, w)
    with torch.no_grad():
        assert m(x, torch.tensor([500]), c).shape == x.shape
