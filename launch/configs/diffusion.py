"""Spiking denoising diffusion on mnist5k: a spiking U-Net denoiser, DDIM sampling.

A spiking U-Net (two resolutions, 16 and 32 channels, one residual block per
level, LIF neurons with trainable decay and threshold, T = 4 spike steps per
denoiser call, the step embedded as a current) predicts the noise of a
cosine-schedule process of 1,000 steps (Ho et al. 2020; Nichol & Dhariwal
2021); samples take 50 deterministic DDIM steps (Song et al. 2021) from an
EMA of the weights.

    python -m launch.train --config=launch/configs/diffusion.py --workdir=runs/sdiff

Cost: 0.9-1.2 s per training step of 32 images on 2 CPU cores (1.16 s over a 500-step run), so
4,000 steps take 60-80 minutes; the final evaluation draws 1,000 samples with 50 denoiser calls
each (about 9 minutes). Not yet trained to convergence or scored: results/diffusion.md says
what has been measured.

Variants (``diffusion.py:<variant>``, joined by ``+``): ``analog`` the twin
(the same U-Net with SiLU units), ``smoke`` the tests' tiny run.
"""

from __future__ import annotations

import dataclasses

import ml_collections

from jaxspike.families.diffusion import Diffusion
from jaxspike.train import base_config
from launch import configs
from launch.configs import neuron

VARIANTS = ("smoke", "analog")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The run configuration; ``arg`` picks variants (see the module docstring), joined by ``+``."""
    variants = configs.variants(arg, VARIANTS)

    config = base_config()
    config.batch_size = 32
    config.total_steps = 4000
    config.log_every = 50
    config.checkpoint_every = 500
    config.sample_every = 1000
    config.eval_every = 4000  # one evaluation, at the end
    config.eval_num_samples = 1000

    config.model = ml_collections.ConfigDict()
    config.model.name = "diffusion"  # "diffusion": SpikingUNet; "analog_diffusion": its twin
    config.model.num_steps = 4  # T spike steps per denoiser call
    config.model.channels = (16, 32)  # 28x28, 14x14
    config.model.num_blocks = 1
    config.model.emb_dim = 32
    config.model.current_norm = True
    config.model.readout_beta = 0.0  # readout membrane = the mean input current over T
    # Trainable per-neuron decay and threshold; the arctan surrogate keeps gradients alive through the U-Net.
    config.model.neuron = neuron(beta=0.9, threshold=1.0, surrogate="arctan", alpha=2.0, learn=True)

    config.loss = ml_collections.ConfigDict(dataclasses.asdict(Diffusion(
        schedule="cosine", timesteps=1000, sampler="ddim", sample_steps=50, eta=0.0, ema_decay=0.999,
    )))

    config.optimizer = configs.adam(1e-3, grad_clip=1.0, lr_decay_from=0.8)

    for v in variants:
        if v == "analog":
            config.model.name = "analog_diffusion"
        elif v == "smoke":
            config.model.num_steps = 2
            config.model.channels = (4,)
            config.model.emb_dim = 8
            config.loss.timesteps = 20
            config.loss.sample_steps = 3
            configs.shrink(config)
    return config
