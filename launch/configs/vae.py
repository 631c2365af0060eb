"""Fully-connected spiking VAE (Bernoulli spike latent) on mnist5k.

Command (trains, then writes samples next to the run)::

    python -m launch.train --config=launch/configs/vae.py --workdir=/tmp/svae
    python -m launch.sample --workdir=/tmp/svae --num=1000 --out=/tmp/svae/samples.npy

Seed sweep (4 seeds in one vmapped program, folders ``seed_<k>/``)::

    python -m launch.train --config=launch/configs/vae.py --workdir=/tmp/svae4 --seeds=0,1,2,3

Expected (measured 2026-12-03, jax 0.10.2, 2 idle CPU cores): 3000 steps in
about 4 min (~13 steps/s), then one evaluation of 1,000 prior samples. Test
ELBO -164.8 nats, reconstruction MSE 0.0207; feature FID 69.6, IS 6.76, class
entropy 2.28 nats, precision 0.76, recall 0.40; one generation pass costs 556
spikes and 0.59 uJ per sample (the analog twin's decoder: 2.60 uJ). Over
seeds 0-2 (``--seeds=0,1,2``): FID 69.9 +- 4.8 against the N(0, I) twin's
87.5 +- 3.5 (and 38.1 +- 1.0 for a twin with a learned Gaussian-mixture prior).

The default (2026-12-03): latency input coding, the relaxed latent estimator,
T = 8, per-step normalised hidden-layer currents (``model.current_norm``), a
decoder spike penalty of 0.01 nats per spike and a learned prior, a mixture
of K = 64 Bernoulli spike processes (``model.prior="mixture"``: each sample
picks a component, whose learned per-unit, per-step rates then fire the 128
latent units). How it got there, 3000 steps each (``results/vae.md`` holds
these and the 3-seed rows):

=========================================  =====  =======  ======  ======  =========
config                                     FID    entropy  ELBO    MSE     uJ/sample
=========================================  =====  =======  ======  ======  =========
rate, ST, T=16, no norm, no penalty (old)  309.9  1.92     -190.3  0.0306  3.27
same, ``current_norm=True``                227.2  2.22     -183.6  0.0267  2.23
T=8, ``spike_weight=0.01``                 246.4  2.17     -173.8  0.0257  0.47
same, ``prior="mixture"``                  80.4   2.28     -164.8  0.0214  0.59
latency, relaxed (the default)             69.6   2.28     -164.8  0.0207  0.59
analog twin, N(0, I) prior (3 seeds)       87.5   2.27     -116.2  0.0161  2.60
=========================================  =====  =======  ======  ======  =========

ST = straight-through. The first three rows use the fixed Bernoulli(0.5)
prior; the old row reproduces with ``--config.model.coding=rate
--config.model.estimator=straight_through --config.model.prior=bernoulli
--config.model.num_steps=16 --config.model.current_norm=False
--config.loss.spike_weight=0``. Normalising the currents keeps every hidden
layer in its firing range whatever the latent rate; the spike penalty and
T = 8 cut the spikes per sample from 2,700 to 370. The i.i.d. Bernoulli(0.5)
prior draws codes unlike any posterior (every unit near rate 0.5), so its
samples are blurred: the mixture prior learns where the posteriors lie and
samples from there (FID 246 -> 80, and a cheaper KL term: ELBO -173.8 ->
-164.8). Latency coding with the relaxed estimator then adds recall (0.22 ->
0.40) and another 11 FID.

Energy rows (``energy/*``) now measure one *generation* pass (prior spikes ->
decoder), and the analog twin's its decoder only (565,248 MACs = 2.60 uJ per
sample), so the two are compared like for like; ``test/*`` rows hold the
test-split ELBO, its terms and the reconstruction MSE (all 1,000 digits).

Sample-quality probes (2026-12-02, with the then default T = 16 and no
current normalisation or spike penalty; 600 steps each, shared 2-core machine at
load 6-10; base command
``python -m launch.train --config=launch/configs/vae.py --workdir=W --config.total_steps=600``
plus the flag shown). None beat the default at this length, so the default
is unchanged:

==========================================  =====  ====  =======  ======  ======  ==========
flag                                        FID    IS    entropy  ELBO    MSE     uJ/sample
==========================================  =====  ====  =======  ======  ======  ==========
(default: Bernoulli(0.5) prior, FB 0.5)     421.5  1.25  1.36     -216.2  0.0455  4.37
``--config.model.prior=uniform_rate``       467.6  1.05  0.21     -286.5  0.0557  4.52
``--config.model.prior=autoregressive`` *   440.0  1.22  1.13     -239.6  0.0580  2.94
``--config.loss.free_bits=0.2``             462.5  1.05  0.98     -199.0  0.0536  4.51
==========================================  =====  ====  =======  ======  ======  ==========

(*) stopped by SIGTERM at step 222 and resumed to 600 (bit-identical to an
uninterrupted run by the loop's resume test). ``--config.loss.free_bits=0.05``
was stopped at step 350: the encoder fell nearly silent (``fire/enc1`` 0.007),
KL 11, recon 186 nats (default at 350: KL 57, recon 168). Free bits 0.2
lowers the KL to the analog twin's range (26 nats) and gives the best test
ELBO, but at 600 steps its samples are worse; every variant's prior samples
are still blurred average digits at this length. The learned AR prior cuts
the decoder's firing (latent rate ~9%) but its 2,560 candidate neurons cost
0.46 uJ per sample themselves. The uniform-rate prior
(``losses.uniform_rate_kl_per_unit``) did not train well in 600 steps.
A decoder spike penalty exists (``config.loss.spike_weight``, nats per
spike) but was not measured: no compute was left for it.

History: with the sharper fast-sigmoid surrogate (slope 25) and no free bits
the posterior collapsed (``fire/enc1`` silent within ~20 steps, KL -> 0, the
decoder drew the mean digit): Adam turns the tiny but consistent KL gradient
on the latent readout into full-size steps before the decoder learns to read
the latent. Free bits (``loss.free_bits=0.5``) and the arctan surrogate fix
it (1,000-step probes: recon 204 -> 145 with free bits and slope 5, 137-145
with arctan).

Variants: ``launch/configs/vae.py:analog`` is the analog twin (ReLU units,
Gaussian latent with the N(0, I) prior, same widths and loop;
``--config.model.name=analog_vae`` does the same to any variant, and with
``--config.model.prior=mixture`` the twin learns a mixture of 64 diagonal
Gaussians, the analog counterpart of the spiking mixture prior).
``launch/configs/vae.py:smoke`` shrinks everything (T=2, widths
16, 4 steps, batch 8) so tests run this exact code path in seconds.
Any field can be overridden: ``--config.model.latent=64``.

``launch/configs/vae.py:stdp``: the encoder reads frozen STDP features
(S1+S2 of the Mozafari et al. network, learned without labels by
``launch.stdp``) instead of a rate code; only the rest trains by surrogate
gradients. The front end is a ``launch.stdp`` run folder, by default
``$JAXSPIKE_CACHE/stdp_frontend`` (``~/.cache/jaxspike/stdp_frontend``)::

    python -m launch.stdp --workdir=$HOME/.cache/jaxspike/stdp_frontend --stdp_only
    python -m launch.train --config=launch/configs/vae.py:stdp --workdir=/tmp/svae_stdp

(or ``--config.model.frontend=/path/to/run?layers=1`` for S1 only). The
front end is frozen and deterministic, so its features are computed once per
training image before training (``config.frontend_cache``, 18 s for 4,000
digits on one core) and the steps run only the surrogate-trained layers: one
256-unit encoder layer, then the default's latent, prior and decoder.
Measured 2026-12-06 (3,000 steps, seeds 0-2, ``results/stdp.md`` part 2):
FID 74.5 +- 5.0 against the default's 70.1 +- 4.3, at 0.79x the default's
step time (``bench/stdp_vae_step.py``); the STDP training of the front end
(204 s) comes on top, once for every run that reuses it.
"""

from __future__ import annotations

import ml_collections

from launch import configs
from launch.configs import neuron

TFDS_VARIANTS = ("mnist", "fashion_mnist", "celeb_a")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The run configuration; ``arg="smoke"`` gives the tiny test variant."""
    config = ml_collections.ConfigDict()
    config.seed = 0
    # Comma-separated seeds ("0,1,2,3") train a vmapped sweep; "" = one run of `seed`.
    config.seeds = ""

    config.data = ml_collections.ConfigDict()
    config.data.name = "mnist5k"
    config.data.data_dir = ""  # TFDS data_dir ("" = TFDS default); unused by mnist5k
    config.data.binarize = False
    # Train/test on the first N images of each split (0 = all; celeb_a: see configs.use_full_data).
    config.data.max_examples = 0

    config.model = ml_collections.ConfigDict()
    config.model.name = "fc_vae"  # jaxspike.models.vae.SpikingVAE; other fields are its attributes
    config.model.arch = "mlp"
    # Latency (time-to-first-spike) input code and the relaxed (Gumbel-sigmoid) latent estimator:
    # 3 seeds, 3000 steps, FID 69.9 against 85.3 for rate coding + straight-through (docstring).
    config.model.coding = "latency"
    config.model.estimator = "relaxed"
    # A learned mixture of K Bernoulli spike processes (jaxspike.losses.bernoulli_mixture_kl);
    # "bernoulli" is the fixed i.i.d. Bernoulli(prior_p) prior (docstring: FID 246 -> 80).
    config.model.prior = "mixture"
    config.model.readout = "membrane"
    config.model.num_steps = 8  # T, time steps per example (16 in the TFDS variants, as in FSVAE)
    config.model.latent = 128
    config.model.encoder = (512, 256)
    config.model.decoder = (256, 512)
    # snnTorch's default surrogate (arctan, peak 1); the sharper fast sigmoid
    # (slope 25) starves the encoder of gradient (see the docstring).
    config.model.neuron = neuron(beta=0.9, threshold=1.0, surrogate="arctan", alpha=2.0)
    config.model.prior_p = 0.5
    config.model.num_components = 64  # K of the learned mixture prior (model.prior="mixture")
    # Per-example, per-step normalised hidden-layer currents (layers.SpikingDense
    # current_norm): 3000 steps FID 310 -> 227, class entropy 1.92 -> 2.22 (docstring).
    config.model.current_norm = True

    config.loss = ml_collections.ConfigDict()  # keyword arguments of vae.elbo_loss
    config.loss.likelihood = "bernoulli"
    config.loss.kl_weight = 1.0
    # Free bits (nats per latent unit, summed over time) against posterior collapse.
    config.loss.free_bits = 0.5
    # Temperature of the relaxed (Gumbel-sigmoid) estimator, annealed geometrically
    # with the update number (used only by model.estimator="relaxed").
    config.loss.temperature_start = 1.0
    config.loss.temperature_end = 0.3
    config.loss.temperature_steps = 2000
    config.loss.kl_warmup_steps = 0  # linear KL warm-up; 0 = off
    # Nats per decoder spike (per example): lowers the decoder's firing, hence the
    # synaptic operations of every generated sample; 0 = off. With T = 8 it takes the
    # energy per sample from 2.23 uJ (T = 16, no penalty) to 0.47 uJ (docstring).
    config.loss.spike_weight = 0.01

    config.optimizer = ml_collections.ConfigDict()
    config.optimizer.name = "adam"
    config.optimizer.learning_rate = 1e-3
    config.optimizer.b1 = 0.9
    config.optimizer.b2 = 0.999
    config.optimizer.grad_clip = 0.0  # global-norm clipping, 0 = off
    # Learning rates constant until this fraction of total_steps, then linearly to zero (1.0 = constant).
    config.optimizer.lr_decay_from = 1.0

    config.batch_size = 128  # global batch, split over the devices
    config.total_steps = 3000
    # With a frozen STDP front end (model.frontend, the :stdp variant): compute its features once
    # per training image before training instead of every step (the same spikes; False = rerun it).
    config.frontend_cache = True
    config.num_devices = 0  # 0 = all devices of all processes

    config.log_every = 50
    config.checkpoint_every = 500
    config.keep_checkpoints = 3
    config.sample_every = 1000  # PNG grids; the last step always writes one; 0 = last step only
    config.num_grid = 64  # images per PNG grid; 0 = no grids
    config.eval_every = 3000  # feature FID etc. + energy report (here: at the end); 0 = off
    config.eval_num_samples = 1000
    config.eval_seed = 0  # noise of sample grids and evaluation (fixed across steps)
    config.progress = True

    if arg == "analog":
        # The analog twin: same widths, ReLU units, Gaussian latent, same loop.
        config.model.name = "analog_vae"
        config.model.prior = "bernoulli"  # any prior but "mixture": the twin's N(0, I) (see the docstring)
        config.loss.spike_weight = 0.0  # no spikes to penalise
        # "gaussian" (the usual VAE) or "bernoulli": a binary latent whose decoder converts
        # to a spiking network reading the latent as tonic spike trains (launch.convert).
        config.model.latent_kind = "gaussian"
    elif arg == "stdp":
        # Frozen STDP S1+S2 features (jaxspike.models.stdp_frontend) replace the rate coding;
        # only the layers after them train. Train the front end once first (see the docstring).
        from jaxspike.models import stdp_frontend

        config.model.frontend = stdp_frontend.default_dir() + "?steps=4"  # 4 own bins of the front end
        # One 256-unit encoder layer behind the 1,600 STDP features: 3 seeds FID 74.5 +- 5.0 against the
        # default's 70.1 +- 4.3, at 0.79x its step time (512 + 256 units: 1.22x, FID 98.8 on seed 0).
        config.model.encoder = (256,)
    elif arg == "smoke":
        config.model.num_steps = 2
        config.model.latent = 8
        config.model.encoder = (16,)
        config.model.decoder = (16,)
        config.batch_size = 8
        config.total_steps = 4
        config.log_every = 1
        config.checkpoint_every = 2
        config.sample_every = 2
        config.num_grid = 4
        config.eval_num_samples = 16
        config.eval_every = 0  # evaluation trains a classifier on first use: not in smoke runs
        config.progress = False
    elif arg in TFDS_VARIANTS:
        # Full TFDS sets with the published spiking-VAE sizes (FSVAE, Kamata et al. 2022:
        # T = 16, latent 128 as in the default, conv encoder / transposed-conv decoder,
        # no spike penalty).
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
