"""RePaint masked sampling over diffusers schedulers (ops.masked_sampling)."""

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, UniPCMultistepScheduler

from xscene_core.ops.masked_sampling import JUMP, MASKED_STEPS, RESAMPLE, SamplingInterrupted, masked_sample, repaint_levels


def scheduler(kind=DDIMScheduler, **kw):
    return kind(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                prediction_type="epsilon", timestep_spacing="trailing", clip_sample=False, **kw)


def model_fn(x, t):
    """A fixed smooth 'denoiser': predicts a blurred copy of the input as the noise."""
    return 0.5 * torch.nn.functional.avg_pool2d(x, 3, 1, 1) + 0.01 * t.view(-1, 1, 1, 1) / 1000


def inputs():
    g = torch.Generator().manual_seed(0)
    known = torch.randn(2, 3, 12, 12, generator=g)
    mask = torch.zeros(12, 12)
    mask[:, :5] = 1
    return known, mask


def test_defaults_follow_the_paper():
    assert (RESAMPLE, JUMP) == (5, 20) and MASKED_STEPS > JUMP


@pytest.mark.parametrize("kind", [DDIMScheduler, DDPMScheduler])
def test_known_region_exact_and_unknown_generated(kind):
    known, mask = inputs()
    sched = scheduler(kind)
    out = masked_sample(model_fn, sched, known, mask, torch.Generator().manual_seed(1), steps=6, resample=3, jump=2)
    assert out.shape == known.shape
    assert torch.equal(out[..., :5], known[..., :5])              # mask = 1: exactly the known latent
    assert not torch.allclose(out[..., 5:], known[..., 5:], atol=1e-2)
    assert torch.isfinite(out).all()
    assert sched.num_inference_steps is None                      # the scheduler passed in is untouched


def test_deterministic_under_generator():
    known, mask = inputs()
    run = lambda s: masked_sample(model_fn, scheduler(), known, mask, torch.Generator().manual_seed(s), steps=6,  # noqa: E731
                                  resample=2, jump=3)
    assert torch.equal(run(5), run(5))
    assert not torch.allclose(run(5), run(6))


def test_masks_broadcast_and_soft():
    known, _ = inputs()
    full = masked_sample(model_fn, scheduler(), known, torch.ones(2, 1, 12, 12), torch.Generator().manual_seed(0),
                         steps=4, resample=1)
    assert torch.equal(full, known)
    soft = torch.full((12, 12), 0.5)
    out = masked_sample(model_fn, scheduler(), known, soft, torch.Generator().manual_seed(0), steps=4, resample=1)
    assert torch.isfinite(out).all() and not torch.equal(out, known)
    with pytest.raises(ValueError, match="broadcast"):
        masked_sample(model_fn, scheduler(), known, torch.ones(5, 5), steps=4, resample=1)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        masked_sample(model_fn, scheduler(), known, torch.full((12, 12), 2.0), steps=4, resample=1)


def test_repaint_schedule():
    levels = repaint_levels(10, resample=3, jump=3)
    assert levels[0] == 0 and levels[-1] == 10
    assert all(abs(b - a) == 1 for a, b in zip(levels, levels[1:]))
    # jump points at 1, 4 and 7 remaining steps (r + jump <= steps), each revisited resample - 1 times
    denoise = sum(b > a for a, b in zip(levels, levels[1:]))
    assert denoise == 10 + (3 - 1) * 3 * 3
    assert repaint_levels(10, resample=1, jump=50) == list(range(11))
    d = repaint_levels(MASKED_STEPS, RESAMPLE, JUMP)
    assert sum(b > a for a, b in zip(d, d[1:])) == MASKED_STEPS + (RESAMPLE - 1) * JUMP


@pytest.mark.parametrize("kwargs, message", [
    (dict(resample=0), "resample must be an integer >= 1"),
    (dict(resample=2.5), "resample must be an integer >= 1"),
    (dict(jump=0), "jump must be an integer >= 1"),
    (dict(jump=True), "jump must be an integer >= 1"),
    (dict(steps=0), "steps must be an integer >= 1"),
    (dict(steps=20, resample=5, jump=20), "needs steps > jump"),
])
def test_parameters_validated(kwargs, message):
    known, mask = inputs()
    args = dict(steps=8, resample=2, jump=3)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        masked_sample(model_fn, scheduler(), known, mask, torch.Generator().manual_seed(0), **args)
    with pytest.raises(ValueError, match=message):
        repaint_levels(args["steps"], args["resample"], args["jump"])


def test_multistep_scheduler_rejected_and_callback_interrupts():
    known, mask = inputs()
    uni = UniPCMultistepScheduler(num_train_timesteps=1000)
    with pytest.raises(ValueError, match="memoryless"):
        masked_sample(model_fn, uni, known, mask, steps=4, resample=1)
    seen = []
    with pytest.raises(SamplingInterrupted):
        masked_sample(model_fn, scheduler(), known, mask, torch.Generator().manual_seed(0), steps=6, resample=1,
                      callback=lambda i, n: seen.append((i, n)) or i < 3)
    assert seen == [(1, 6), (2, 6), (3, 6)]
