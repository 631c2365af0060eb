"""Spiking GAN (Bernoulli spike noise -> LIF generator; spiking discriminator) on mnist5k.

Command (trains, then writes samples of the generator EMA)::

    python -m launch.train --config=launch/configs/gan.py --workdir=/tmp/sgan
    python -m launch.sample --workdir=/tmp/sgan --num=1000 --out=/tmp/sgan/samples.npy

Variants (``--config=launch/configs/gan.py:<variant>``):

* ``smoke`` - tiny (T=2, widths 16, batch 8, 4 steps): the tests' code path, seconds;
* ``analog`` - the analog twin: ReLU generator with Gaussian noise, LeakyReLU
  discriminator (``--config.model.noise=uniform|binary`` for the conversion
  route of :mod:`jaxspike.convert`);
* ``hybrid`` - spiking generator + analog discriminator (Rosenfeld, Simeone &
  Rajendran 2022);
* ``stdp`` - the spiking discriminator's features are a frozen STDP
  front end (S1+S2 of ``launch.stdp``, ``jaxspike.models.stdp_frontend``;
  run folder ``$JAXSPIKE_CACHE/stdp_frontend``, made once by ``python -m
  launch.stdp --workdir=$HOME/.cache/jaxspike/stdp_frontend --stdp_only``);
  the generator learns through its surrogate backward pass. Results:
  ``results/stdp.md``, part 2;
* ``mnist``, ``fashion_mnist``, ``cifar10``, ``celeb_a`` - TFDS data (the
  image shape comes from the data; conv generator/discriminator, longer
  runs; these need the TFDS data and a GPU to be practical).

Variants combine with ``+``: ``gan.py:hybrid+smoke``.

Loss ``config.loss.name``: ``ns`` (non-saturating), ``hinge`` or ``wgan_gp``
(``gp_weight``), optional R1 (``r1_gamma``), generator EMA (``ema_decay``)
for samples. Generator and discriminator have their own Adam (b1 = 0.5).
Evaluation (``eval_every``) logs feature FID, class entropy and the
generator's energy report, and flags ``mode_collapse`` when the class
entropy of the samples falls below ``mode_collapse_entropy`` nats.

Expected (measured 2026-11-28, 2 CPU cores shared with other jobs, jax 0.10.2;
``eval`` = 1000 EMA samples, feature FID / class entropy from the mnist5k
classifier of :mod:`jaxspike.metrics`):

* default (spiking G + spiking rate-coded D, T=8, R1 10, EMA 0.99): 3000
  steps in 215 s of training (14 steps/s; 8 steps/s under load), ~4 min wall
  with three evaluations. The losses stay balanced (step 3000: d_loss 1.06,
  g_loss 1.05, d_real 0.58, d_fake -0.53), but the generator **collapses to one
  image**: the spread of its samples across noise draws is 0.0014 (pixel std),
  class entropy 0.0 nats at steps 1000/2000/3000, FID 436 / 422 / 443 (so
  ``mode_collapse: true`` in every eval row). Energy of one generated sample
  at step 3000: 2804 spikes, 1.88 uJ. NOT a good generator yet.
* without R1 (``--config.loss.r1_gamma=0``) the spiking D wins within ~300
  steps (d_loss 2e-4, g_loss 9.4 at 3000) and G collapses as well (FID 436);
  a latency-coded D (``--config.model.discriminator.coding=latency``) with R1
  10 is also won by D (d_loss 0.009 at 1500 steps, FID 483); T=4 with
  ``noise_p=0.2`` (53 steps/s) stays balanced but collapses too (FID 423),
  and so does T=16 (11 steps/s, 1500 steps, FID 437).
* ``hybrid`` (spiking G, analog D, R1 1): 1500 steps in 37 s, class entropy
  1.95 nats (no collapse), FID 287: the spiking generator can make varied
  images when the discriminator sees exact pixels.
* ``analog`` (R1 1): 1500 steps in 29 s, FID 103, class entropy 2.18 nats
  (R1 10: FID 121; R1 0: collapse, FID 459 - R1 is what makes these train).

Reading: the spiking D sees the image through a Bernoulli rate code, whose
sampling noise hides sample-to-sample differences, so it does not punish a
generator that ignores its (time-i.i.d.) noise spikes. Worth trying next:
a longer T in D or latency coding with a tuned R1, minibatch statistics in D.
"""

from __future__ import annotations

import ml_collections

VARIANTS = ("smoke", "analog", "hybrid", "stdp", "mnist", "fashion_mnist", "cifar10", "celeb_a")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The run configuration; ``arg`` picks variants (see the module docstring), joined by ``+``."""
    variants = [v for v in (arg or "").split("+") if v]
    for v in variants:
        if v not in VARIANTS:
            raise ValueError(f"unknown config variant {v!r}; use one of {', '.join(VARIANTS)} (joined by '+')")

    config = ml_collections.ConfigDict()
    config.seed = 0
    config.seeds = ""  # "0,1,2,3" trains a vmapped seed sweep

    config.data = ml_collections.ConfigDict()
    config.data.name = "mnist5k"
    config.data.data_dir = ""
    config.data.binarize = False

    config.model = ml_collections.ConfigDict()
    config.model.name = "gan"  # "gan": spiking generator; "analog_gan": the analog twin
    config.model.disc = "spiking"  # "spiking" or "analog" (hybrid)
    config.model.num_steps = 8  # T
    config.model.noise_dim = 64  # Z, Bernoulli noise units
    config.model.noise_p = 0.5  # noise firing probability per step (noise_rates="fixed")
    config.model.noise_rates = "uniform"  # per-sample rates p ~ U(0,1)^Z (spiking G); "fixed": noise_p for all
    config.model.noise = "gaussian"  # analog_gan only: "gaussian" | "uniform" | "binary"
    config.model.beta = 0.9  # LIF decay, shared by G and D
    config.model.threshold = 0.5
    config.model.surrogate = "fast_sigmoid"  # jaxspike.surrogates.SURROGATES
    config.model.slope = 25.0  # surrogate slope (arctan: alpha)
    config.model.learn_neuron = False  # per-neuron trainable beta and threshold (snnTorch-style)
    config.model.generator = ml_collections.ConfigDict()
    config.model.generator.arch = "mlp"  # "mlp" (hidden) or "conv" (channels, DCGAN-like)
    config.model.generator.readout = "membrane"  # "membrane" | "rate" | "first_spike"
    config.model.generator.hidden = (256, 512)
    config.model.generator.channels = (64, 32)
    config.model.discriminator = ml_collections.ConfigDict()
    config.model.discriminator.arch = "mlp"
    config.model.discriminator.coding = "rate"  # "rate" (Bernoulli) | "regular" | "latency" (spiking D only)
    config.model.discriminator.hidden = (512, 256)
    config.model.discriminator.channels = (32, 64)
    config.model.discriminator.mbstd_group = 4  # 0 = off; >= 2: minibatch-std input over groups of this many images

    config.loss = ml_collections.ConfigDict()
    config.loss.name = "ns"  # "ns" | "hinge" | "wgan_gp"
    config.loss.r1_gamma = 10.0  # R1 on real images (Mescheder et al. 2018): without it D wins within ~300 steps
    config.loss.gp_weight = 10.0  # wgan_gp only
    config.loss.ema_decay = 0.99  # generator EMA used for samples and evaluation
    config.loss.g_rate_penalty = 0.0  # lambda * sum of the generator layers' mean firing rates

    config.optimizer = ml_collections.ConfigDict()
    config.optimizer.name = "adam"
    config.optimizer.g_learning_rate = 2e-4
    config.optimizer.d_learning_rate = 2e-4
    config.optimizer.b1 = 0.5
    config.optimizer.b2 = 0.999
    config.optimizer.grad_clip = 0.0

    config.batch_size = 64
    config.total_steps = 3000
    config.num_devices = 0

    config.log_every = 50
    config.checkpoint_every = 500
    config.keep_checkpoints = 3
    config.sample_every = 500
    config.num_grid = 64
    config.eval_every = 1000
    config.eval_num_samples = 1000
    config.eval_seed = 0
    config.mode_collapse_entropy = 1.5  # nats (ln 10 = 2.30 for 10 equally used classes)
    config.progress = True

    for v in variants:
        if v == "analog":
            config.model.name = "analog_gan"
            config.model.disc = "analog"
            config.loss.r1_gamma = 1.0  # measured best of {0, 1, 10} for the analog D (docstring)
        elif v == "hybrid":
            config.model.disc = "analog"
            config.loss.r1_gamma = 1.0
        elif v == "stdp":
            # The spiking D reads frozen STDP S1+S2 features (differentiable in the pixels).
            from jaxspike.models import stdp_frontend

            config.model.disc = "spiking"
            config.model.discriminator.frontend = stdp_frontend.default_dir() + "?steps=4"
        elif v in ("mnist", "fashion_mnist", "cifar10", "celeb_a"):
            config.data.name = v
            config.model.generator.arch = "conv"
            config.model.discriminator.arch = "conv"
            config.model.num_steps = 16
            config.model.noise_dim = 128
            config.model.generator.channels = (128, 64)
            config.model.discriminator.channels = (64, 128)
            config.batch_size = 128
            config.total_steps = 50_000
            config.checkpoint_every = 2000
            config.sample_every = 2000
            config.eval_every = 5000
            config.eval_num_samples = 5000
        elif v == "smoke":
            config.model.num_steps = 2
            config.model.noise_dim = 8
            config.model.generator.hidden = (16,)
            config.model.generator.channels = (8, 4)
            config.model.discriminator.hidden = (16,)
            config.model.discriminator.channels = (4, 8)
            config.batch_size = 8
            config.total_steps = 4
            config.log_every = 1
            config.checkpoint_every = 2
            config.sample_every = 2
            config.num_grid = 4
            config.eval_every = 0
            config.eval_num_samples = 16
            config.progress = False
    return config
