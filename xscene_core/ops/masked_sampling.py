"""Masked (RePaint) sampling over a diffusers scheduler: outpainting and local regeneration.

The known region (mask = 1) is held to its forward-diffused latents at every noise level; the rest is
denoised by the model. RePaint's resampling (Lugmayr et al. 2022; X-Scene eq. 3 and appendix A.2, 5
resamplings and jump 20) harmonises the two: every `jump` steps the sample is re-noised back up `jump`
levels and that stretch is denoised again, `resample` times in all.

    x = masked_sample(model_fn, scheduler, known, mask, generator, steps=25, resample=5, jump=20)

Levels: level k is the noise level of the sample after k denoising steps (0 = pure noise at the first
timestep, `steps` = clean). As in RePaint's reference schedule (get_schedule_jump), the jump points are the
levels with r = steps - level remaining steps in {1, 1 + jump, 1 + 2 jump, ...} and r + jump <= steps,
so resampling needs steps > jump (the lowest jump starts one step before the clean level). The number of
model evaluations is steps + (resample - 1) * jump * (number of jump points).

The scheduler must have a memoryless step (DDIMScheduler with eta = 0 or DDPMScheduler): a multistep
solver (UniPC, DPM-Solver) keeps a history that a jump back up would invalidate. The scheduler passed in
is not modified (a copy is built from its config).
"""

from __future__ import annotations

from typing import Callable

import torch

RESAMPLE = 5  # RePaint resamplings (X-Scene appendix A.2)
JUMP = 20  # RePaint jump length in denoising steps (X-Scene appendix A.2)
MASKED_STEPS = 25  # default denoising steps of masked sampling: the smallest round count with room for a jump of 20

ModelFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class SamplingInterrupted(Exception):
    """Raised when a sampling callback returns False."""


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def repaint_levels(steps: int, resample: int = RESAMPLE, jump: int = JUMP) -> list[int]:
    """The noise levels masked sampling visits, in order: starts at 0 (pure noise), ends at `steps`
    (clean); consecutive entries differ by +1 (a denoising step) or -1 (a re-noising step).

    Raises ValueError for steps, resample or jump below 1, and when resampling is asked for
    (resample > 1) but no jump fits (jump >= steps).
    """
    _check_int("steps", steps, 1)
    _check_int("resample", resample, 1)
    _check_int("jump", jump, 1)
    if resample > 1 and jump >= steps:
        raise ValueError(f"jump={jump} leaves no room to resample in {steps} steps: a jump goes back `jump` steps "
                         f"from one step before the end, so it needs steps > jump; use more steps, a shorter jump, "
                         f"or resample=1")
    todo = {r: resample - 1 for r in range(1, steps - jump + 1, jump)} if resample > 1 else {}
    level, levels = 0, [0]
    while level < steps:
        level += 1
        levels.append(level)
        r = steps - level
        if todo.get(r, 0) > 0:
            todo[r] -= 1
            for _ in range(jump):
                level -= 1
                levels.append(level)
    return levels


def _copy_scheduler(scheduler):
    from diffusers import DDIMScheduler, DDPMScheduler

    if not isinstance(scheduler, (DDIMScheduler, DDPMScheduler)):
        raise ValueError(f"masked sampling needs a scheduler with a memoryless step (DDIMScheduler or DDPMScheduler), "
                         f"got {type(scheduler).__name__}")
    return type(scheduler).from_config(scheduler.config)


def _randn(like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    from diffusers.utils.torch_utils import randn_tensor

    return randn_tensor(like.shape, generator=generator, device=like.device, dtype=like.dtype)


@torch.no_grad()
def masked_sample(model_fn: ModelFn, scheduler, known: torch.Tensor, mask: torch.Tensor,
                  generator: torch.Generator | None = None, steps: int = MASKED_STEPS, resample: int = RESAMPLE,
                  jump: int = JUMP, callback: Callable[[int, int], bool | None] | None = None) -> torch.Tensor:
    """RePaint sampling of latents that agree with `known` where `mask` is 1.

    model_fn(x [B, C, H, W], t long [B]) -> the scheduler's model output (epsilon / v / sample, as the
    scheduler's prediction_type says; guidance is the caller's business); scheduler: a DDIMScheduler or
    DDPMScheduler (copied, not modified); known: float [B, C, H, W] latents of the known region (any
    values elsewhere); mask: float or bool, broadcastable to known ([H, W], [B, 1, H, W], ...), 1 = keep,
    0 = generate, values between blend; generator: the only source of randomness (same generator state,
    same result); steps / resample / jump: see `repaint_levels`; callback(i, n) after each of the n model
    evaluations, returning False interrupts (SamplingInterrupted).

    Returns float [B, C, H, W]: exactly `known` where mask == 1, generated elsewhere.
    """
    if known.ndim != 4:
        raise ValueError(f"known: expected [B, C, H, W], got {list(known.shape)}")
    mask = torch.as_tensor(mask, device=known.device).to(known.dtype)
    try:
        mask = mask.expand_as(known) if mask.ndim == 4 else mask.view(*([1] * (4 - mask.ndim)), *mask.shape).expand_as(known)
    except RuntimeError:
        raise ValueError(f"mask of shape {list(mask.shape)} does not broadcast to known {list(known.shape)}") from None
    if not torch.isfinite(known).all() or mask.min() < 0 or mask.max() > 1:
        raise ValueError("known must be finite and mask must lie in [0, 1]")
    levels = repaint_levels(steps, resample, jump)
    sched = _copy_scheduler(scheduler)
    sched.set_timesteps(steps, device=known.device)
    timesteps = sched.timesteps
    if len(timesteps) != steps:
        raise ValueError(f"scheduler gave {len(timesteps)} timesteps for {steps} steps")
    acp = sched.alphas_cumprod.to(device=known.device, dtype=torch.float64)
    final = 1.0 if getattr(sched.config, "set_alpha_to_one", True) else float(acp[0])
    alpha = [float(acp[int(t)]) for t in timesteps] + [final]  # alpha-bar of each level

    def merge(x: torch.Tensor, level: int) -> torch.Tensor:
        a = alpha[level]
        known_t = known if a >= 1.0 else a ** 0.5 * known + (1 - a) ** 0.5 * _randn(known, generator)
        return known_t * mask + x * (1 - mask)

    x = _randn(known, generator) * getattr(sched, "init_noise_sigma", 1.0)
    x = merge(x, 0)
    n_eval, done = sum(1 for a, b in zip(levels, levels[1:]) if b > a), 0
    from diffusers import DDIMScheduler

    is_ddim = isinstance(sched, DDIMScheduler)  # DDPMScheduler.step has no eta argument
    for cur, nxt in zip(levels, levels[1:]):
        if nxt == cur + 1:  # denoise one step
            t = timesteps[cur]
            out = model_fn(x, t.expand(x.shape[0]))
            kwargs = {"eta": 0.0} if is_ddim else {"generator": generator}
            x = sched.step(out, t, x, **kwargs).prev_sample
            x = merge(x, nxt)
            done += 1
            if callback is not None and callback(done, n_eval) is False:
                raise SamplingInterrupted(f"masked sampling interrupted after {done} of {n_eval} steps")
        else:  # re-noise one level: q(x_nxt | x_cur)
            a = alpha[nxt] / alpha[cur]
            x = a ** 0.5 * x + (1 - a) ** 0.5 * _randn(x, generator)
    return torch.where(mask >= 1, known, x)
