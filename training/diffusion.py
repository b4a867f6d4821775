"""DDPM training schedule and DDIM sampling with DiTPipeline's classifier-free guidance.

The sampler follows diffusers' DDIMScheduler for the config exported with the model (linear betas,
"leading" timestep spacing, steps_offset 0, set_alpha_to_one, clip_sample off, eta 0, epsilon
prediction), computed in float32 the way the scheduler does it.
"""

import torch

NUM_TRAIN_TIMESTEPS = 1000
BETA_START = 1e-4
BETA_END = 0.02


def scheduler_config():
    """scheduler_config.json as diffusers' DDIMScheduler.save_config writes it for this schedule."""
    return {
        "_class_name": "DDIMScheduler",
        "_diffusers_version": "0.30.3",
        "beta_end": BETA_END,
        "beta_schedule": "linear",
        "beta_start": BETA_START,
        "clip_sample": False,
        "clip_sample_range": 1.0,
        "dynamic_thresholding_ratio": 0.995,
        "num_train_timesteps": NUM_TRAIN_TIMESTEPS,
        "prediction_type": "epsilon",
        "rescale_betas_zero_snr": False,
        "sample_max_value": 1.0,
        "set_alpha_to_one": True,
        "steps_offset": 0,
        "thresholding": False,
        "timestep_spacing": "leading",
        "trained_betas": None,
    }


def alphas_cumprod():
    betas = torch.linspace(BETA_START, BETA_END, NUM_TRAIN_TIMESTEPS, dtype=torch.float32)
    return torch.cumprod(1.0 - betas, dim=0)


def add_noise(clean, noise, timesteps, cumprod):
    """x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps."""
    abar = cumprod[timesteps].view(-1, 1, 1, 1)
    return abar.sqrt() * clean + (1.0 - abar).sqrt() * noise


def ddim_timesteps(num_steps):
    """'leading' spacing: 0, r, 2r, ... with r = 1000 // num_steps, descending (50 steps: 980 ... 0)."""
    ratio = NUM_TRAIN_TIMESTEPS // num_steps
    return [i * ratio for i in reversed(range(num_steps))]


def ddim_step(eps, t, sample, num_steps, cumprod):
    """One eta=0 DDIM step from timestep t to t - 1000 // num_steps (alpha of 1 past the end)."""
    prev_t = t - NUM_TRAIN_TIMESTEPS // num_steps
    abar_t = cumprod[t]
    abar_prev = cumprod[prev_t] if prev_t >= 0 else torch.tensor(1.0)
    pred_clean = (sample - (1 - abar_t) ** 0.5 * eps) / abar_t ** 0.5
    return abar_prev ** 0.5 * pred_clean + (1 - abar_prev) ** 0.5 * eps


@torch.no_grad()
def sample_cfg(model, labels, noise, num_steps, guidance, null_class):
    """DiTPipeline's loop: the batch is run twice, with the labels and with the null class, and
    eps = uncond + guidance * (cond - uncond) on the first in_channels output channels."""
    cumprod = alphas_cumprod()
    in_channels = noise.shape[1]
    batch = noise.shape[0]
    labels_in = torch.cat([labels, torch.full_like(labels, null_class)])
    sample = noise
    for t in ddim_timesteps(num_steps):
        timesteps = torch.full((2 * batch,), t, dtype=torch.int64)
        prediction = model(torch.cat([sample, sample]), timesteps, labels_in)
        cond, uncond = prediction[:batch, :in_channels], prediction[batch:, :in_channels]
        eps = uncond + guidance * (cond - uncond)
        # Both halves of diffusers' doubled batch get the same guided eps and step identically.
        sample = ddim_step(eps, t, sample, num_steps, cumprod)
    return sample
