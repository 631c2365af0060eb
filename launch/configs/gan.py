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
  the generator learns through its surrogate backward pass. It does not
  train yet: the frozen features let D win within tens of updates and the
  generator's gradient fades (0.19 -> 0.012 over 60 updates), at ~40x the
  default's cost per update on CPU. Results: ``results/stdp.md``, part 2;
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

Loss options (``config.loss``) besides the GAN loss: R1, the generator EMA,
``g_homeostasis`` / ``homeostasis_band`` (per-neuron firing-rate band of the
spiking generator, on by default), ``augment_shift`` (DiffAugment
translation), ``cr_weight`` / ``cr_sigma`` (consistency regularisation of D)
and ``fm_weight`` (feature matching); see :mod:`jaxspike.gan_objective`.

Measured (2026-12-06, 10,000 steps = this config, 5 seeds, 1,000 EMA samples scored by
:mod:`jaxspike.metrics`; tables, the comparison at every 1,000 steps and commands in
``results/gan.md``, written by ``launch.gan_report``; the same length at generator lr 4e-4 is in
``results/gan_10000steps_glr4e-4.md`` (with the surrogate-slope comparison), at 2e-4 and slope 25
in ``results/gan_10000steps_lr2e-4.md``, the 3,000-step results in ``results/gan_3000steps.md``,
the 1,000-step comparison of every variant in ``results/gan_1000steps.md``):

* default (spiking G with first-spike readout, per-sample uniform noise rates and
  homeostasis + spiking D reading a regular rate code, trained through its firing
  rates, pixel minibatch std, T=8, surrogate slope 10, R1 1, EMA 0.99, generator lr 8e-4):
  **FID 14.2 ± 1.1, class entropy 2.30, recall 0.82, 0.24 uJ per sample** (0.09x the
  analog twin's energy); about 14 min of training on one core.
* ``analog`` (R1 1, generator lr 8e-4): FID 14.8 ± 1.2, entropy 2.29, recall 0.73, 2.52 uJ; ~3 min.
  With ``--config.optimizer.g_learning_rate=1.2e-3`` the twin reaches FID 12.6 ± 0.4 (5 seeds), better than the
  spiking GAN at any generator lr tried (results/gan.md, notes).

What was tried against the spiking-D collapse, and what it showed, is in
``results/gan_1000steps.md``.
"""

from __future__ import annotations

import ml_collections

from launch import configs
from launch.configs import neuron

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
    # Train/test on the first N images of each split (0 = all; celeb_a: see configs.use_full_data).
    config.data.max_examples = 0

    config.model = ml_collections.ConfigDict()
    config.model.name = "gan"  # "gan": spiking generator; "analog_gan": the analog twin
    config.model.disc = "spiking"  # "spiking" or "analog" (hybrid)
    config.model.num_steps = 8  # T
    config.model.noise_dim = 64  # Z, Bernoulli noise units
    config.model.noise_p = 0.5  # noise firing probability per step (noise_rates="fixed")
    config.model.noise_rates = "uniform"  # per-sample rates p ~ U(0,1)^Z (spiking G); "fixed": noise_p for all
    config.model.noise = "gaussian"  # analog_gan only: "gaussian" | "uniform" | "binary"
    # LIF neurons shared by G and D (jaxspike.cells.Neuron). Surrogate slope 10: FID 18.8 against 25.6
    # at snnTorch's 25 at 10,000 steps, 3 seeds each (results/gan.md).
    config.model.neuron = neuron(beta=0.9, threshold=0.5, surrogate="fast_sigmoid", slope=10.0)
    config.model.generator = ml_collections.ConfigDict()
    config.model.generator.num_steps = 0  # the generator's own T (0 = model.num_steps, shared with D)
    config.model.generator.arch = "mlp"  # "mlp" (hidden) or "conv" (channels, DCGAN-like)
    # Output pixel = how early its neuron first fires ("first_spike", a latency code: FID 18.8 at 10,000
    # steps, results/gan.md) | "first_spike_interp" (the crossing time interpolated inside the step from
    # the output membrane: continuous grey levels, no extra spikes) | "membrane" (leaky integrator of the
    # output spikes) | "rate".
    config.model.generator.readout = "first_spike"
    config.model.generator.hidden = (256, 512)
    config.model.generator.channels = (64, 32)
    config.model.generator.current_norm = False  # per-example, per-step normalised hidden currents
    config.model.discriminator = ml_collections.ConfigDict()
    config.model.discriminator.arch = "mlp"
    # Spike code of the spiking D's input: "regular" (deterministic rate code: no sampling noise) | "rate"
    # (Bernoulli) | "latency" | "direct" (pixels as currents into its first spiking layer).
    config.model.discriminator.coding = "regular"
    config.model.discriminator.hidden = (512, 256)
    config.model.discriminator.channels = (32, 64)
    config.model.discriminator.current_norm = False  # per-example, per-step normalised feature-layer currents
    config.model.discriminator.mbstd_group = 4  # 0 = off; >= 2: minibatch-std input over groups of this many images
    # Spiking D: minibatch std of the "pixels" (before spike coding) or of its last firing "rates".
    config.model.discriminator.mbstd_source = "pixels"
    # Spiking D's backward pass: "rate" (through each layer's firing-rate map, Meng et al. 2022) or
    # "surrogate" (per-step surrogate, BPTT: the generator collapses to one image, results/gan_1000steps.md).
    config.model.discriminator.gradient = "rate"

    config.loss = ml_collections.ConfigDict()
    config.loss.name = "ns"  # "ns" | "hinge" | "wgan_gp"
    config.loss.r1_gamma = 1.0  # R1 on real images (Mescheder et al. 2018): without it D wins within ~300 steps
    config.loss.gp_weight = 10.0  # wgan_gp only
    config.loss.ema_decay = 0.99  # generator EMA used for samples and evaluation
    config.loss.g_rate_penalty = 0.0  # lambda * sum of the generator layers' mean firing rates
    config.loss.augment_shift = 0  # DiffAugment: random shifts of up to this many pixels for everything D sees
    config.loss.fm_weight = 0.0  # feature matching on D's last-layer firing rates (Salimans et al. 2016)
    # Per-neuron firing-rate band of the spiking generator's hidden layers (gan_objective): keeps its
    # neurons from saturating, which otherwise happens within ~100 steps (results/gan_1000steps.md).
    config.loss.g_homeostasis = 10.0
    config.loss.homeostasis_band = (0.01, 0.3)  # (lo, hi) firing rate per neuron and step
    config.loss.cr_weight = 0.0  # consistency regularisation of D under pixel noise (Zhang et al. 2020)
    config.loss.cr_sigma = 0.05  # std of that pixel noise

    config.optimizer = ml_collections.ConfigDict()
    config.optimizer.name = "adam"
    # 8e-4 for both generators since 2026-12-06 (4e-4 since 2026-12-05, 2e-4 before): at 10,000 steps,
    # 5 seeds, spiking FID 14.2 ± 1.1 (twin 14.8 ± 1.2) against 18.8 at 4e-4 and 37.8 at 2e-4 (results/gan.md and the pages it links).
    # The spiking GAN gains nothing above 8e-4 (seed 0: 14.0 at 1.2e-3, 14.1 at 1.6e-3); the twin does (12.6 ± 0.4 at 1.2e-3, 5 seeds).
    config.optimizer.g_learning_rate = 8e-4
    config.optimizer.d_learning_rate = 2e-4
    config.optimizer.b1 = 0.5
    config.optimizer.b2 = 0.999
    config.optimizer.grad_clip = 0.0
    # Learning rates constant until this fraction of total_steps, then linearly to zero (1.0 = constant).
    config.optimizer.lr_decay_from = 1.0

    config.batch_size = 64
    config.total_steps = 10000  # ~14 min on one CPU core (results/gan.md); FID still falling at the end
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
            config.loss.g_homeostasis = 0.0  # an analog generator has no firing rates
        elif v == "hybrid":
            config.model.disc = "analog"
            config.loss.r1_gamma = 1.0
        elif v == "stdp":
            # The spiking D reads frozen STDP S1+S2 features (differentiable in the pixels).
            from jaxspike.models import stdp_frontend

            config.model.disc = "spiking"
            config.model.discriminator.frontend = stdp_frontend.default_dir() + "?steps=4"
        elif v in ("mnist", "fashion_mnist", "cifar10", "celeb_a"):
            configs.use_full_data(config, v)
            config.model.generator.arch = "conv"
            config.model.discriminator.arch = "conv"
            config.model.num_steps = 16
            config.model.noise_dim = 128
            config.model.generator.channels = (128, 64)
            config.model.discriminator.channels = (64, 128)
            config.batch_size = 128
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
