"""Box guidance (ops.box_guidance): targets are the boxes' voxels, the x0 correction lowers the box loss,
the sampler hook is exact when the guide does nothing, and the stage's output really changes (tiny random
models on a small grid, seconds)."""

import numpy as np
import pytest
import torch

from xscene_core import semantics
from xscene_core.eval.controllability import box_realised_by_class
from xscene_core.ops.box_guidance import BoxGuidance, box_guidance_for, box_loss, box_targets, box_voxels
from xscene_core.types.layout import Box, Layout
from xscene_core.types.occupancy import GridSpec

from test_occupancy_stage import GRID, road_layout, stage, tiny_stage  # noqa: F401  (stage: the shared fixture)

CAR, BIKE = semantics.ID["car"], semantics.ID["bicycle"]


def two_boxes() -> Layout:
    return Layout(boxes=(Box((10.0, -1.75, 0.9), (4.5, 1.9, 1.6), 0.3, CAR),
                         Box((-12.0, 6.0, 0.6), (6.0, 3.0, 1.2), 0.0, BIKE),
                         Box((70.0, 0.0, 0.9), (4.5, 1.9, 1.6), 0.0, CAR)))  # centre outside the grid: not counted


def test_targets_are_the_voxels_the_metric_counts():
    layout = two_boxes()
    tg = box_targets(layout, GRID)
    assert tg.n_boxes == 2
    sizes = [len(box_voxels(b, GRID)[0]) for b in layout.boxes[:2]]
    assert torch.bincount(tg.box).tolist() == sizes
    assert tg.labels[tg.box == 0].eq(CAR).all() and tg.labels[tg.box == 1].eq(BIKE).all()
    assert tg.points.abs().max() < 1  # grid-normalised voxel centres
    # the targets' points, written back as voxels, realise both boxes in the metric
    idx = ((tg.points.numpy() + 1) * np.asarray(GRID.shape) / 2 - 0.5).round().astype(int)
    labels = np.zeros(GRID.shape, np.uint8)
    labels[tuple(idx.T)] = tg.labels.numpy()
    assert box_realised_by_class(labels, layout, GRID) == {CAR: (1, 1), BIKE: (1, 1)}
    assert box_targets(None, GRID) is None and box_targets(Layout(), GRID) is None


def test_box_loss_weighs_every_box_the_same():
    tg = box_targets(two_boxes(), GRID)
    right = torch.full((len(tg.labels), semantics.NUM_CLASSES), -10.0)
    right[torch.arange(len(tg.labels)), tg.labels] = 10.0
    wrong = torch.zeros_like(right)  # uniform: ln(18) per voxel
    assert box_loss(right, tg) < 1e-6
    assert box_loss(wrong, tg).item() == pytest.approx(2 * np.log(semantics.NUM_CLASSES), rel=1e-5)


def test_guidance_step_lowers_the_box_loss(stage):
    d = stage.diffusion
    guide = box_guidance_for(d, stage.vae, [road_layout()], strength=0.5)
    x0 = torch.randn(1, *d.latent_shape, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([500])
    with torch.no_grad():
        before = guide.loss(x0)
        after = guide.loss(guide(x0, t))
    assert after < before
    assert not any(p.grad is not None for p in stage.vae.parameters())  # only the latent is differentiated
    # nothing to guide: no guide at all; below t_min: x0 unchanged
    assert box_guidance_for(d, stage.vae, [None], 1.0) is None
    assert box_guidance_for(d, stage.vae, [road_layout()], 0.0) is None
    late = BoxGuidance(stage.vae, guide.targets, guide.to_planes, 0.5, t_min=600)
    assert torch.equal(late(x0, t), x0)
    with pytest.raises(ValueError, match="targets for 1 samples"):
        guide(torch.cat([x0, x0]), torch.tensor([500, 500]))
    with pytest.raises(ValueError, match="strength"):
        BoxGuidance(stage.vae, guide.targets, guide.to_planes, -1.0)


@pytest.mark.parametrize("prediction", ["v_prediction", "epsilon", "sample"])
def test_identity_guide_leaves_the_model_output_unchanged(stage, prediction):
    d = stage.diffusion
    old = d.config["prediction_type"]
    d.config["prediction_type"] = prediction
    try:
        cond = d.condition(road_layout(), None)
        x = torch.randn(1, *d.latent_shape, generator=torch.Generator().manual_seed(1))
        t = torch.tensor([400])
        with torch.no_grad():
            plain = d.guided(cond, 2.0)(x, t)
            hooked = d.guided(cond, 2.0, lambda x0, t: x0)(x, t)
        assert torch.allclose(plain, hooked, atol=1e-4)
    finally:
        d.config["prediction_type"] = old


def test_stage_box_guidance_changes_the_sample_and_stays_deterministic():
    plain = tiny_stage(box_guidance=0.0)
    guided = tiny_stage(box_guidance=2.0)
    a = guided(road_layout(), None, seed=3)
    b = guided(road_layout(), None, seed=3)
    c = plain(road_layout(), None, seed=3)
    assert torch.equal(a.triplane.xy, b.triplane.xy)
    assert not torch.equal(a.triplane.xy, c.triplane.xy)
    # the unconditional sample has no boxes, so guidance leaves it alone
    assert torch.equal(guided(None, None, seed=3).triplane.xy, plain(None, None, seed=3).triplane.xy)
    with pytest.raises(ValueError, match="box_guidance"):
        tiny_stage(box_guidance=-1.0)


class LinearDecoder(torch.nn.Module):
    """A decoder whose logits at a point are a fixed linear map of the xy-plane latent under it: the box
    loss is convex in the latent, so gradient steps must reach the boxes' classes."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.head = torch.nn.Linear(channels, semantics.NUM_CLASSES)
        with torch.no_grad():  # channel 0 votes car, channel 1 bicycle, a bias favours free space
            self.head.weight.zero_()
            self.head.weight[CAR, 0] = self.head.weight[BIKE, 1] = 1.0
            self.head.bias.zero_()
            self.head.bias[semantics.FREE] = 1.0

    def decoder_features(self, planes):
        return list(planes)

    def decode_features(self, feats, points):
        grid = points[..., [1, 0]][:, :, None]  # xy plane [B, C, X', Y']: grid_sample's x indexes Y'
        f = torch.nn.functional.grid_sample(feats[0], grid, align_corners=False)[..., 0]  # [B, C, N]
        return self.head(f.transpose(1, 2))


def test_guidance_steps_fill_the_boxes(stage):
    """Gradient steps on x0 alone (no denoiser) realise both boxes through a decoder that can express them."""
    d = stage.diffusion
    layout = two_boxes()
    decoder = LinearDecoder(d.config["latent_channels"])
    guide = BoxGuidance(decoder, [box_targets(layout, GRID)], lambda x: d.unroll(d.denormalize(x)), 0.5, iters=100)
    x0 = torch.zeros(1, *d.latent_shape)
    x1 = guide(x0, torch.tensor([999]))
    with torch.no_grad():
        assert guide.loss(x1) < 0.5 * guide.loss(x0)
        tg = guide.targets[0]
        pred = decoder.decode_features(decoder.decoder_features(guide.to_planes(x1)), tg.points[None])[0].argmax(-1)
    assert torch.equal(pred, tg.labels)
