"""diffusers schedulers over one noise schedule, for the diffusion models of this package (schedulers hold
no weights; each model builds them from its config)."""

from __future__ import annotations

SCHEDULERS = ("ddpm", "ddim", "unipc")


def make_scheduler(kind: str, config: dict):
    """A scheduler of `kind` ("ddpm" for training, "ddim" or "unipc" for sampling) over the schedule in a
    model config (num_train_timesteps, beta_schedule, beta_start, beta_end, prediction_type and optionally
    rescale_betas_zero_snr); trailing timestep spacing, no sample clipping."""
    from diffusers import DDIMScheduler, DDPMScheduler, UniPCMultistepScheduler

    c = config
    common = dict(num_train_timesteps=c["num_train_timesteps"], beta_schedule=c["beta_schedule"],
                  beta_start=c["beta_start"], beta_end=c["beta_end"], prediction_type=c["prediction_type"],
                  rescale_betas_zero_snr=bool(c.get("rescale_betas_zero_snr", False)), timestep_spacing="trailing")
    if kind == "ddpm":
        return DDPMScheduler(**common, clip_sample=False)
    if kind == "ddim":
        return DDIMScheduler(**common, clip_sample=False, set_alpha_to_one=True)
    if kind == "unipc":
        return UniPCMultistepScheduler(**common)
    raise ValueError(f"unknown scheduler {kind!r}; use {', '.join(SCHEDULERS)}")
