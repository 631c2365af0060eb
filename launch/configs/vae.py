"""Spiking VAE with a Bernoulli spike latent on mnist5k (the README's main job).

Latency-coded digits, LIF encoder and decoder (512-256 / 256-512, currents
normalised per step), T = 8, a relaxed Bernoulli spike latent of 128 units
with a learned prior: a mixture of 64 Bernoulli spike processes.

    python -m launch.train --config=launch/configs/vae.py --workdir=runs/svae

Cost: 3,000 steps, about 4-6 minutes on 2 CPU cores, then one evaluation.
The prior trained in the loop stays near where it started (below the free-bits
floor the KL sends it no gradient): as trained, feature FID 66.4 +- 1.5 and
recall 0.43 (seeds 0-2). Refit it to the aggregate posterior after training
(a minute or two) for diverse samples:

    python -m launch.fit_prior --workdir=runs/svae --out=runs/svae_prior512 --num_components=512

Refitted (seeds 0-2): feature FID 32.9 +- 2.5 (space 2: 104.7) against the
N(0, I) twin's 87.2 (260.8), recall 0.60 against 0.90, class entropy 2.29,
test MSE 0.021, 0.26x the twin's energy per sample (results/vae.md).

Sharper samples: add an adversarial term on the reconstructions (a
discriminator used in training only) with
``--config.loss.adversary.weight=100 --config.loss.adversary.start=1500``;
refitted (seeds 0-2), FID 19.1 +- 1.7 (space 2: 77.9), mid-grey share 0.145
against 0.168, the same recall, test MSE 0.023.

Variants (``vae.py:<variant>``): ``analog`` the twin (ReLU, Gaussian latent;
``--config.model.prior=mixture`` for a Gaussian-mixture prior), ``stdp`` a
frozen STDP front end (results/local.md), ``smoke`` the tests' tiny run,
``mnist`` / ``fashion_mnist`` / ``celeb_a`` TFDS data at FSVAE's conv sizes.
"""

from __future__ import annotations

import dataclasses

import ml_collections

from jaxspike.families.vae import ELBO, Adversary
from jaxspike.train import base_config
from launch import configs
from launch.configs import neuron

TFDS_VARIANTS = ("mnist", "fashion_mnist", "celeb_a")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The run configuration; ``arg="smoke"`` gives the tiny test variant."""
    config = base_config()
    config.batch_size = 128
    config.total_steps = 3000
    config.eval_every = 3000  # one evaluation, at the end

    config.model = ml_collections.ConfigDict()
    config.model.name = "fc_vae"  # jaxspike.models.vae.SpikingVAE; the other fields are its attributes
    config.model.arch = "mlp"
    config.model.coding = "latency"
    config.model.estimator = "relaxed"
    config.model.prior = "mixture"
    config.model.num_components = 64
    config.model.prior_p = 0.5  # the fixed prior's firing probability (prior="bernoulli")
    config.model.readout = "membrane"
    config.model.num_steps = 8
    config.model.latent = 128
    config.model.encoder = (512, 256)
    config.model.decoder = (256, 512)
    config.model.current_norm = True
    # The arctan surrogate (snnTorch's default, peak 1): the sharper fast sigmoid starves the encoder.
    config.model.neuron = neuron(beta=0.9, threshold=1.0, surrogate="arctan", alpha=2.0)
    config.model.frontend = ""  # a frozen STDP front end's run folder (the stdp variant)
    config.model.frontend_cache = True  # its features computed once per training image (same spikes)

    config.loss = ml_collections.ConfigDict(dataclasses.asdict(ELBO(
        free_bits=0.5, spike_weight=0.01, temperature_start=1.0, temperature_end=0.3, temperature_steps=2000,
    )))
    # An adversarial term on the reconstructions (jaxspike.families.vae.Adversary); weight 0 = off.
    config.loss.adversary = ml_collections.ConfigDict(dataclasses.asdict(Adversary()))

    config.optimizer = configs.adam(1e-3)

    if arg == "analog":
        config.model.name = "analog_vae"
        config.model.prior = "bernoulli"  # any prior but "mixture": the twin's N(0, I)
        config.model.latent_kind = "gaussian"  # or "bernoulli": a binary latent for launch.convert
        config.loss.spike_weight = 0.0
    elif arg == "stdp":
        from jaxspike.local import stdp as local_stdp

        config.model.frontend = local_stdp.default_dir() + "?steps=4"  # 4 own bins of the front end
        config.model.encoder = (256,)
    elif arg == "smoke":
        config.model.num_steps = 2
        config.model.latent = 8
        config.model.encoder = (16,)
        config.model.decoder = (16,)
        configs.shrink(config)
    elif arg in TFDS_VARIANTS:
        configs.use_full_data(config, arg)
        config.model.arch = "conv"
        config.model.channels = (32, 64)
        config.model.num_steps = 16
        config.loss.spike_weight = 0.0
    elif arg not in (None, ""):
        raise ValueError(
            f"unknown config variant {arg!r}; use launch/configs/vae.py, :analog, :stdp, :smoke"
            f" or one of {', '.join(':' + v for v in TFDS_VARIANTS)}"
        )
    return config
