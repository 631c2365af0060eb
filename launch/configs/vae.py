"""Fully-connected spiking VAE (Bernoulli spike latent) on mnist5k.

Command (trains, then writes samples next to the run)::

    python -m launch.train --config=launch/configs/vae.py --workdir=/tmp/svae
    python -m launch.sample --workdir=/tmp/svae --num=1000 --out=/tmp/svae/samples.npy

Seed sweep (4 seeds in one vmapped program, folders ``seed_<k>/``)::

    python -m launch.train --config=launch/configs/vae.py --workdir=/tmp/svae4 --seeds=0,1,2,3

Expected (measured 2026-11-28 on 2 CPU cores shared with other jobs, load ~9,
jax 0.10.2): 3000 steps in 7 min 28 s wall (6.8 steps/s; ~15 steps/s on an
idle machine, i.e. ~3.5 min), final loss 208.6 (mean of the last 10 logged
values 204.8 nats/image), KL ~1e-7. NOTE: with these model settings the
posterior collapses: the second encoder layer (``fire/enc1``) falls silent
within ~20 steps, q -> prior (``latent_p`` = 0.5, KL -> 0) and the decoder
draws the mean digit (``samples_3000.png``). Lower learning rate (3e-4),
``loss.kl_weight=0.1`` and ``model.estimator='relaxed'`` collapse the same
way within 300 steps; ``model.slope=2.0`` keeps enc1 at ~1% firing but KL
stays ~0.04. This is a property of the model/estimator, not of the loop.
``launch.sample --num=1000`` then takes ~6 s. On one H200 GPU (jax 0.11.2)
the same 3000 steps take 33 s wall (119 steps/s), final loss 208.5.

Variants: ``launch/configs/vae.py:smoke`` shrinks everything (T=2, widths
16, 4 steps, batch 8) so tests run this exact code path in seconds.
Any field can be overridden: ``--config.model.latent=64``.
"""

from __future__ import annotations

import ml_collections


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

    config.model = ml_collections.ConfigDict()
    config.model.name = "fc_vae"  # jaxspike.models.vae.SpikingVAE; other fields are its attributes
    config.model.arch = "mlp"
    config.model.coding = "rate"
    config.model.estimator = "straight_through"
    config.model.prior = "bernoulli"
    config.model.readout = "membrane"
    config.model.num_steps = 16  # T, time steps per example
    config.model.latent = 128
    config.model.encoder = (512, 256)
    config.model.decoder = (256, 512)
    config.model.beta = 0.9
    config.model.threshold = 1.0
    # snnTorch's default surrogate (arctan, peak 1); the sharper fast sigmoid
    # (slope 25) starves the encoder of gradient (see the docstring).
    config.model.surrogate = "arctan"
    config.model.slope = 2.0
    config.model.prior_p = 0.5

    config.loss = ml_collections.ConfigDict()  # keyword arguments of vae.elbo_loss
    config.loss.likelihood = "bernoulli"
    config.loss.kl_weight = 1.0
    # Free bits (nats per latent unit, summed over time) against posterior collapse.
    config.loss.free_bits = 0.5

    config.optimizer = ml_collections.ConfigDict()
    config.optimizer.name = "adam"
    config.optimizer.learning_rate = 1e-3
    config.optimizer.b1 = 0.9
    config.optimizer.b2 = 0.999
    config.optimizer.grad_clip = 0.0  # global-norm clipping, 0 = off

    config.batch_size = 128  # global batch, split over the devices
    config.total_steps = 3000
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

    if arg == "smoke":
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
    elif arg not in (None, ""):
        raise ValueError(f"unknown config variant {arg!r}; use launch/configs/vae.py or launch/configs/vae.py:smoke")
    return config
