"""The training loop: devices, data feeding, checkpoints, logging, evaluation.

This and :mod:`jaxspike.train.io` are the only imperative modules. One
function, :func:`train`, runs a config in a work directory:

* **runs and seeds** - ``config.seed`` trains one model in ``workdir``;
  ``config.seeds = "0,1,2,3"`` trains all listed seeds in one compiled
  program (the same step under ``jax.vmap`` over a leading seed axis), each
  with its own data order, keys, folder ``workdir/seed_<k>/``, metrics,
  checkpoints and samples;
* **devices** - a 1-D :class:`jax.sharding.Mesh` with axis ``"data"`` over
  ``config.num_devices`` devices (0 = all, over all processes): the batch is
  sharded along it, parameters and optimiser state are replicated;
* **resume** - a work directory holding checkpoints resumes from the newest
  readable one (unreadable ones are reported by name and skipped);
* **model families** - a loss objective (``fc_vae``: one params pytree,
  one optimiser, :class:`TrainState`) or a state objective (``gan``,
  ``analog_gan``: its own state, step and optimisers, samples from the
  generator EMA), both reduced to one :class:`~jaxspike.train.steps.Program`;
* **evaluation** - every ``eval_every`` steps: sample quality
  (``eval/...``, incl. ``eval/class_entropy``), a mode-collapse flag
  (``mode_collapse``: class entropy below ``config.mode_collapse_entropy``,
  default 1.5 nats, with a warning), the energy report of one generation
  pass (``energy/...``, per generated sample) and, for models with an
  encoder, scores on the whole test split (``test/...``: ELBO, its terms,
  reconstruction MSE);
* **safety** - a non-finite loss term stops the run with
  :class:`NonFiniteLossError` naming the step and term; SIGINT/SIGTERM save
  a checkpoint, then raise :class:`TrainingInterrupted`.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import sys
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxspike import data as data_lib
from jaxspike import energy as energy_lib
from jaxspike import gan_objective
from jaxspike import cells
from jaxspike.models import gan as gan_lib
from jaxspike.models import vae as vae_lib
from jaxspike.train import io
from jaxspike.train import resume as resume_lib
from jaxspike.train import state as state_lib
from jaxspike.train import steps as steps_lib

log = logging.getLogger("jaxspike.train")

__all__ = [
    "ConfigError",
    "NonFiniteLossError",
    "TrainingInterrupted",
    "TrainResult",
    "parse_seeds",
    "validate_config",
    "make_mesh",
    "make_optimizer",
    "make_objective",
    "make_gan_models",
    "make_program",
    "initialize_distributed",
    "train",
    "load_trained",
    "generate_samples",
]

# Config sections that must match for a work directory to be resumed.
_RESUME_KEYS = ("data", "model", "loss", "optimizer", "batch_size", "seed", "seeds")
OPTIMIZERS = ("adam", "adamw", "sgd")
MODELS = ("fc_vae", "analog_vae", "gan", "analog_gan")
GAN_MODELS = ("gan", "analog_gan")
DISCRIMINATORS = ("spiking", "analog")
MODE_COLLAPSE_ENTROPY = 1.5  # nats; ln 10 = 2.30 is a uniform spread over 10 classes


class ConfigError(ValueError):
    """A config field or flag has an unusable value; the message names it."""


class NonFiniteLossError(FloatingPointError):
    """A loss term became NaN or infinite.

    Attributes:
      step: the update (1-based, as in ``metrics.jsonl``) that produced it.
      term: name of the first non-finite term.
      seed: the seed of the run (sweeps) or ``None``.
    """

    def __init__(self, message: str, step: int, term: str, seed: int | None):
        super().__init__(message)
        self.step, self.term, self.seed = step, term, seed


class TrainingInterrupted(KeyboardInterrupt):
    """SIGINT/SIGTERM arrived; a checkpoint of ``step`` was saved first."""

    def __init__(self, step: int, signum: int):
        super().__init__(f"training interrupted by signal {signum} at step {step}; checkpoint saved")
        self.step, self.signum = step, signum


class TrainResult(NamedTuple):
    """What :func:`train` returns.

    Attributes:
      state: the final :class:`TrainState` (stacked over seeds for sweeps).
      step: number of updates applied.
      last_metrics: the last logged metrics row of each run.
      run_dirs: folder of each run (one per seed).
      num_compiles: how many times the train step was compiled (1 expected).
    """

    state: Any
    step: int
    last_metrics: list[dict]
    run_dirs: list[str]
    num_compiles: int


# ---------------------------------------------------------------------------
# Config checks and builders.


def parse_seeds(seeds: Any) -> list[int]:
    """``"0,1,2,3"`` (or a sequence of ints) -> ``[0, 1, 2, 3]``; ``""`` -> ``[]``."""
    if isinstance(seeds, (list, tuple)):
        parts = [str(s) for s in seeds]
    else:
        parts = [p.strip() for p in str(seeds or "").split(",") if p.strip()]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise ConfigError(f"--seeds / config.seeds must be comma-separated non-negative integers, got {seeds!r}") from None
    if any(v < 0 for v in values):
        raise ConfigError(f"--seeds / config.seeds must be non-negative, got {seeds!r}")
    if len(set(values)) != len(values):
        raise ConfigError(f"--seeds / config.seeds lists a seed twice: {seeds!r}")
    return values


def _require(cond: bool, field: str, value: Any, what: str) -> None:
    if not cond:
        raise ConfigError(f"config.{field}={value!r}: {what}")


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def validate_config(config: ml_collections.ConfigDict) -> None:
    """Raises :class:`ConfigError` naming the first unusable field."""
    _require(config.data.name in data_lib.DATASETS, "data.name", config.data.name,
             f"unknown dataset; supported: {', '.join(data_lib.DATASETS)}")
    m = config.model
    _require(m.name in MODELS, "model.name", m.name, f"unknown model; supported: {', '.join(MODELS)}")
    if m.name in GAN_MODELS:
        _validate_gan(config)
    else:
        _validate_vae(config)
    for field, low in (("batch_size", 1), ("total_steps", 1), ("log_every", 1), ("checkpoint_every", 1),
                       ("keep_checkpoints", 1), ("num_grid", 0), ("sample_every", 0), ("eval_every", 0),
                       ("num_devices", 0), ("seed", 0), ("eval_seed", 0)):
        _require(_is_int(config[field]) and config[field] >= low, field, config[field], f"must be an int >= {low}")
    if config.eval_every:
        _require(config.eval_num_samples >= 10, "eval_num_samples", config.eval_num_samples, "evaluation needs >= 10 samples")
    parse_seeds(config.seeds)


def _validate_widths(field: str, widths: Any) -> None:
    widths = tuple(widths)
    _require(len(widths) >= 1 and all(_is_int(w) and w >= 1 for w in widths), field, widths,
             "layer widths must be ints >= 1")


def _validate_gan(config: ml_collections.ConfigDict) -> None:
    m = config.model
    g, d = m.generator, m.discriminator
    _require(_is_int(m.noise_dim) and m.noise_dim >= 1, "model.noise_dim", m.noise_dim, "noise units Z must be an int >= 1")
    _require(0.0 < m.noise_p < 1.0, "model.noise_p", m.noise_p, "noise firing probability must lie in (0, 1)")
    _require(m.disc in DISCRIMINATORS, "model.disc", m.disc, f"supported: {', '.join(DISCRIMINATORS)}")
    _require(m.name != "analog_gan" or m.disc == "analog", "model.disc", m.disc, "the analog GAN has an analog discriminator")
    _require(g.arch in gan_lib.ARCHS, "model.generator.arch", g.arch, f"supported: {', '.join(gan_lib.ARCHS)}")
    _require(d.arch in gan_lib.ARCHS, "model.discriminator.arch", d.arch, f"supported: {', '.join(gan_lib.ARCHS)}")
    for field in ("hidden", "channels"):
        _validate_widths(f"model.generator.{field}", g[field])
        _validate_widths(f"model.discriminator.{field}", d[field])
    if m.name == "gan" or m.disc == "spiking":
        _require(_is_int(m.num_steps) and m.num_steps >= 1, "model.num_steps", m.num_steps, "time steps T must be an int >= 1")
        _neuron(m)
    group = d.get("mbstd_group", 0)
    _require(_is_int(group) and (group == 0 or (group >= 2 and config.batch_size % group == 0)),
             "model.discriminator.mbstd_group", group, f"must be 0 (off) or an int >= 2 dividing batch_size={config.batch_size}")
    source = d.get("mbstd_source", "rates")
    _require(source in gan_lib.MBSTD_SOURCES, "model.discriminator.mbstd_source", source,
             f"supported: {', '.join(gan_lib.MBSTD_SOURCES)}")
    d_grad = d.get("gradient", "surrogate")
    _require(d_grad in gan_lib.D_GRADIENTS, "model.discriminator.gradient", d_grad,
             f"supported: {', '.join(gan_lib.D_GRADIENTS)}")
    if m.name == "gan":
        g_steps = g.get("num_steps", 0)
        _require(_is_int(g_steps) and g_steps >= 0, "model.generator.num_steps", g_steps,
                 "generator time steps must be an int >= 1, or 0 for model.num_steps")
        _require(g.readout in gan_lib.READOUTS, "model.generator.readout", g.readout, f"supported: {', '.join(gan_lib.READOUTS)}")
    else:
        noise = m.get("noise", "gaussian")
        _require(noise in gan_lib.ANALOG_NOISE, "model.noise", noise, f"supported: {', '.join(gan_lib.ANALOG_NOISE)}")
    if m.disc == "spiking":
        _require(d.coding in gan_lib.CODINGS, "model.discriminator.coding", d.coding, f"supported: {', '.join(gan_lib.CODINGS)}")
    loss = config.loss
    _require(loss.name in gan_objective.GAN_LOSSES, "loss.name", loss.name, f"supported: {', '.join(gan_objective.GAN_LOSSES)}")
    _require(0.0 <= loss.ema_decay < 1.0, "loss.ema_decay", loss.ema_decay, "must lie in [0, 1)")
    _require(loss.r1_gamma >= 0, "loss.r1_gamma", loss.r1_gamma, "must be >= 0 (0 = off)")
    _require(loss.gp_weight >= 0, "loss.gp_weight", loss.gp_weight, "must be >= 0")
    rate_penalty = loss.get("g_rate_penalty", 0.0)
    _require(rate_penalty >= 0, "loss.g_rate_penalty", rate_penalty, "must be >= 0 (0 = off)")
    for field in ("fm_weight", "cr_weight", "g_homeostasis"):
        value = loss.get(field, 0.0)
        _require(value >= 0, f"loss.{field}", value, "must be >= 0 (0 = off)")
    shift = loss.get("augment_shift", 0)
    _require(_is_int(shift) and shift >= 0, "loss.augment_shift", shift, "must be an int >= 0 pixels (0 = off)")
    _require(loss.get("cr_sigma", 0.05) > 0, "loss.cr_sigma", loss.get("cr_sigma", 0.05), "must be > 0")
    band = tuple(loss.get("homeostasis_band", (0.01, 0.5)))
    _require(len(band) == 2 and 0.0 <= band[0] < band[1] <= 1.0, "loss.homeostasis_band", band,
             "must be (lo, hi) with 0 <= lo < hi <= 1")
    _require(not loss.get("g_homeostasis", 0.0) or m.name == "gan", "loss.g_homeostasis", loss.get("g_homeostasis", 0.0),
             "needs a spiking generator (model.name='gan')")
    _validate_optimizer(config.optimizer, ("g_learning_rate", "d_learning_rate"))
    mce = config.get("mode_collapse_entropy", MODE_COLLAPSE_ENTROPY)
    _require(mce >= 0, "mode_collapse_entropy", mce, "must be >= 0 nats")


def _validate_vae(config: ml_collections.ConfigDict) -> None:
    m = config.model
    _require(_is_int(m.num_steps) and m.num_steps >= 1, "model.num_steps", m.num_steps, "time steps T must be an int >= 1")
    _require(_is_int(m.latent) and m.latent >= 1, "model.latent", m.latent, "latent size must be an int >= 1")
    for field in ("encoder", "decoder"):
        widths = tuple(m[field])
        _require(all(_is_int(w) and w >= 1 for w in widths), f"model.{field}", widths, "layer widths must be ints >= 1")
    _neuron(m)
    _require(0.0 < m.prior_p < 1.0, "model.prior_p", m.prior_p, "prior firing probability must lie in (0, 1)")
    cache = config.get("frontend_cache", True)
    _require(isinstance(cache, bool), "frontend_cache", cache, "must be True or False")
    _validate_optimizer(config.optimizer, ("learning_rate",))


def _neuron(m: ml_collections.ConfigDict) -> cells.Neuron:
    """``config.model.neuron`` as a :class:`~jaxspike.cells.Neuron`; a bad field is a ConfigError."""
    try:
        return cells.Neuron(**m.neuron)
    except ValueError as err:  # names the field: "neuron.<field>=<value>: ..."
        raise ConfigError(f"config.model.{err}") from None
    except TypeError as err:  # an unknown field
        raise ConfigError(f"config.model.neuron: {err}") from None


def _validate_optimizer(o: ml_collections.ConfigDict, rate_fields: tuple[str, ...]) -> None:
    """``config.optimizer`` of either model; ``rate_fields`` name its learning rates."""
    _require(o.name in OPTIMIZERS, "optimizer.name", o.name, f"unknown optimizer; supported: {', '.join(OPTIMIZERS)}")
    for field in rate_fields:
        _require(o[field] > 0, f"optimizer.{field}", o[field], "must be > 0")
    _require(o.grad_clip >= 0, "optimizer.grad_clip", o.grad_clip, "must be >= 0 (0 = off)")
    decay_from = o.get("lr_decay_from", 1.0)
    _require(isinstance(decay_from, (int, float)) and 0.0 <= decay_from <= 1.0, "optimizer.lr_decay_from", decay_from,
             "must be a fraction of total_steps in [0, 1] (1 = constant learning rate)")


def make_mesh(num_devices: int = 0) -> Mesh:
    """A 1-D mesh with axis ``"data"`` over the first ``num_devices`` devices (0 = all)."""
    devices = jax.devices()
    if num_devices == 0:
        num_devices = len(devices)
    if num_devices > len(devices):
        raise ConfigError(f"config.num_devices={num_devices} but only {len(devices)} devices are visible")
    if jax.process_count() > 1 and num_devices != len(devices):
        raise ConfigError(f"config.num_devices={num_devices}: multi-host runs use all {len(devices)} devices (set 0)")
    return Mesh(np.asarray(devices[:num_devices]), ("data",))


def make_optimizer(cfg: ml_collections.ConfigDict, learning_rate: float | None = None,
                   total_steps: int | None = None) -> optax.GradientTransformation:
    """Adam / AdamW / SGD from ``config.optimizer``, with optional global-norm clipping.

    ``learning_rate`` overrides ``cfg.learning_rate`` (the GAN's separate
    ``g_learning_rate`` / ``d_learning_rate``). ``cfg.lr_decay_from`` (a
    fraction of ``total_steps``; 1.0 or absent = constant) holds the rate
    until that step, then decays it linearly to zero at ``total_steps``. The
    schedule reads the optimizer's own update count, which is checkpointed, so
    a resumed run continues it where it stopped.
    """
    lr = cfg.learning_rate if learning_rate is None else learning_rate
    decay_from = float(cfg.get("lr_decay_from", 1.0))
    if decay_from < 1.0:
        if not total_steps:
            raise ConfigError("config.optimizer.lr_decay_from < 1 needs total_steps to place the decay")
        start = int(round(decay_from * total_steps))
        lr = optax.linear_schedule(lr, 0.0, max(total_steps - start, 1), transition_begin=start)
    if cfg.name == "adam":
        opt = optax.adam(lr, b1=cfg.b1, b2=cfg.b2)
    elif cfg.name == "adamw":
        opt = optax.adamw(lr, b1=cfg.b1, b2=cfg.b2, weight_decay=cfg.get("weight_decay", 1e-4))
    elif cfg.name == "sgd":
        opt = optax.sgd(lr)
    else:
        raise ConfigError(f"config.optimizer.name={cfg.name!r}: unknown optimizer; supported: {', '.join(OPTIMIZERS)}")
    if cfg.grad_clip:
        opt = optax.chain(optax.clip_by_global_norm(cfg.grad_clip), opt)
    return opt


def make_objective(config: ml_collections.ConfigDict, image_shape: tuple[int, ...]) -> steps_lib.Objective:
    """The objective of ``config.model`` for data of ``image_shape``.

    Every field of ``config.model`` but ``name`` is an attribute of
    :class:`jaxspike.models.vae.SpikingVAE`; ``config.loss`` (optional) holds
    keyword arguments of ``elbo_loss``.
    """
    m = config.model
    if m.name in GAN_MODELS:
        return _make_gan_objective(config, image_shape)
    if m.name == "analog_vae":
        return _make_analog_vae_objective(config, image_shape)
    if m.name != "fc_vae":
        raise ConfigError(f"config.model.name={m.name!r}: unknown model; supported: {', '.join(MODELS)}")
    known = set(vae_lib.SpikingVAE.__dataclass_fields__)
    kwargs = {}
    for field, value in m.items():
        if field == "name":
            continue
        if field not in known or field in ("image_shape", "parent", "name"):
            raise ConfigError(f"config.model.{field}: not an attribute of SpikingVAE (known: {', '.join(sorted(known - {'parent', 'name', 'image_shape'}))})")
        kwargs[field] = tuple(value) if isinstance(value, (list, tuple)) else value
    kwargs["neuron"] = _neuron(m)
    try:
        model = vae_lib.SpikingVAE(image_shape=tuple(int(d) for d in image_shape), **kwargs)
        model._validate() if hasattr(model, "_validate") else None
    except (TypeError, ValueError) as err:
        raise ConfigError(f"config.model: {err}") from None
    loss_kwargs = dict(config.loss) if "loss" in config else {}
    schedule = None
    if "temperature_start" in loss_kwargs:
        schedule = (float(loss_kwargs.pop("temperature_start")), float(loss_kwargs.pop("temperature_end")),
                    int(loss_kwargs.pop("temperature_steps")))
        if not (schedule[0] > 0 and schedule[1] > 0 and schedule[2] >= 1):
            raise ConfigError(f"config.loss.temperature_start/end/steps={schedule}: temperatures must be > 0, steps >= 1")
    warmup = int(loss_kwargs.pop("kl_warmup_steps", 0))
    return steps_lib.make_vae_objective(model, temperature_schedule=schedule, kl_warmup_steps=warmup,
                                        cache_frontend=config.get("frontend_cache", True), **loss_kwargs)


def _make_analog_vae_objective(config: ml_collections.ConfigDict, image_shape: tuple[int, ...]) -> steps_lib.Objective:
    """``analog_vae``: the spiking VAE's analog twin (ReLU, Gaussian latent).

    It takes the architecture fields of ``config.model`` (``arch``, ``latent``,
    ``encoder``, ``decoder``, ``channels``) and ignores the spiking-only ones,
    so ``--config.model.name=analog_vae`` turns any spiking VAE config into its
    twin; ``config.loss.likelihood`` / ``kl_weight`` apply, free bits do not.
    ``model.prior="mixture"`` gives the twin a learned Gaussian mixture prior;
    any other prior, ``N(0, I)``.
    """
    m = config.model
    fields = ("arch", "latent", "encoder", "decoder", "channels", "latent_kind", "prior_p", "num_components")
    kwargs = {f: (tuple(m[f]) if isinstance(m[f], (list, tuple)) else m[f]) for f in fields if f in m}
    # The spiking mixture prior's twin is the Gaussian mixture; every other prior's is N(0, I).
    kwargs["prior"] = "mixture" if m.get("prior") == "mixture" else "standard"
    try:
        model = vae_lib.AnalogVAE(image_shape=tuple(int(d) for d in image_shape), **kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"config.model: {err}") from None
    loss_kwargs = {k: v for k, v in (dict(config.loss) if "loss" in config else {}).items()
                   if k in ("likelihood", "sigma", "kl_weight")}
    # MACs per generated sample (the decoder's) depend on shapes only: count them once,
    # from abstract params.
    images = jax.ShapeDtypeStruct((2,) + tuple(image_shape), jnp.float32)
    abstract = jax.eval_shape(lambda k: model.init(k, jnp.zeros(images.shape), k)["params"], jax.random.key(0))
    z = jax.ShapeDtypeStruct((2, model.latent), jnp.float32)
    macs = energy_lib.analog_macs(model, abstract, z, method="decode")
    return steps_lib.make_vae_objective(model, loss_fn=vae_lib.analog_elbo_loss, analog_macs=macs, **loss_kwargs)


def make_gan_models(config: ml_collections.ConfigDict, image_shape: tuple[int, ...]):
    """``(generator, discriminator)`` flax modules of a GAN config: ``gan`` is a
    spiking generator with a spiking or analog (hybrid) discriminator,
    ``analog_gan`` the analog twin (see ``launch/configs/gan.py``)."""
    m = config.model
    g, d = m.generator, m.discriminator
    image_shape = tuple(int(x) for x in image_shape)
    lif = dict(neuron=_neuron(m))
    if m.name == "gan":
        generator = gan_lib.SpikingGenerator(
            num_steps=int(g.get("num_steps", 0)) or m.num_steps, noise_dim=m.noise_dim, noise_p=m.noise_p, noise_rates=m.get("noise_rates", "fixed"),
            image_shape=image_shape, arch=g.arch,
            hidden=tuple(g.hidden), channels=tuple(g.channels), readout=g.readout,
            current_norm=bool(g.get("current_norm", False)), **lif,
        )
    else:
        generator = gan_lib.AnalogGenerator(
            noise_dim=m.noise_dim, image_shape=image_shape, arch=g.arch, hidden=tuple(g.hidden),
            channels=tuple(g.channels), noise=m.get("noise", "gaussian"), noise_p=m.noise_p,
        )
    group = int(d.get("mbstd_group", 0))
    if m.disc == "spiking":
        discriminator = gan_lib.SpikingDiscriminator(
            num_steps=m.num_steps, coding=d.coding, arch=d.arch, hidden=tuple(d.hidden), channels=tuple(d.channels),
            mbstd_group=group, mbstd_source=d.get("mbstd_source", "rates"), frontend=d.get("frontend", ""),
            current_norm=bool(d.get("current_norm", False)), gradient=d.get("gradient", "surrogate"), **lif,
        )
    else:
        discriminator = gan_lib.AnalogDiscriminator(arch=d.arch, hidden=tuple(d.hidden), channels=tuple(d.channels),
                                                    mbstd_group=group)
    return generator, discriminator


def _make_gan_objective(config: ml_collections.ConfigDict, image_shape: tuple[int, ...]) -> steps_lib.Objective:
    """The GAN of :func:`make_gan_models` as a state objective."""
    m, o = config.model, config.optimizer
    image_shape = tuple(int(x) for x in image_shape)
    generator, discriminator = make_gan_models(config, image_shape)
    g_tx = make_optimizer(o, o.g_learning_rate, config.total_steps)
    d_tx = make_optimizer(o, o.d_learning_rate, config.total_steps)
    macs = None
    try:
        # Shapes only: module errors (bad widths for the image size, ...) surface here as ConfigErrors.
        abstract = jax.eval_shape(
            lambda k: gan_objective.init_gan_state(generator, discriminator, k, _example_batch(config, image_shape)["image"],
                                                   g_tx, d_tx),
            jax.random.key(0),
        )
        if m.name == "analog_gan":
            z = jax.ShapeDtypeStruct((2, m.noise_dim), jnp.float32)
            macs = energy_lib.analog_macs(generator, abstract.g_params, z)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"config.model: {err}") from None
    return steps_lib.make_gan_objective(
        generator, discriminator, g_tx, d_tx, analog_macs=macs, loss=config.loss.name,
        r1_gamma=float(config.loss.r1_gamma), gp_weight=float(config.loss.gp_weight),
        ema_decay=float(config.loss.ema_decay), g_rate_penalty=float(config.loss.get("g_rate_penalty", 0.0)),
        augment_shift=int(config.loss.get("augment_shift", 0)), fm_weight=float(config.loss.get("fm_weight", 0.0)),
        g_homeostasis=float(config.loss.get("g_homeostasis", 0.0)),
        cr_weight=float(config.loss.get("cr_weight", 0.0)), cr_sigma=float(config.loss.get("cr_sigma", 0.05)),
        homeostasis_band=tuple(float(x) for x in config.loss.get("homeostasis_band", (0.01, 0.5))),
    )


def make_program(config: ml_collections.ConfigDict, objective: steps_lib.Objective) -> steps_lib.Program:
    """The :class:`~jaxspike.train.steps.Program` the loop runs for ``objective``."""
    optimizer = make_optimizer(config.optimizer, total_steps=config.total_steps) if objective.step is None else None
    return steps_lib.make_program(objective, optimizer)


def initialize_distributed(coordinator_address: str | None = None, num_processes: int | None = None,
                           process_id: int | None = None) -> None:
    """``jax.distributed.initialize``; ``None`` arguments are auto-detected (SLURM, TPU, ...)."""
    jax.distributed.initialize(coordinator_address=coordinator_address or None,
                               num_processes=num_processes, process_id=process_id)
    log.info("process %d of %d, %d local / %d global devices", jax.process_index(), jax.process_count(),
             jax.local_device_count(), jax.device_count())


# ---------------------------------------------------------------------------
# Helpers of the loop.


def _check_resume_config(path: str, config_dict: dict) -> None:
    if not os.path.exists(path):
        return
    diffs = resume_lib.config_diffs(io.read_json(path), config_dict, _RESUME_KEYS)
    if diffs:
        raise ConfigError(
            f"workdir {os.path.dirname(path)!r} holds a run with a different config ({'; '.join(diffs[:5])}); "
            "use a fresh --workdir or the same config"
        )


def _flatten(prefix: str, value: Any, out: dict) -> dict:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}/{k}", v, out)
    else:
        out[prefix] = value
    return out


def _example_batch(config: ml_collections.ConfigDict, image_shape) -> dict:
    """A zero batch for shape-only state initialisation (``eval_shape``). It has
    the training batch size, so batch-dependent layers (minibatch std) are valid."""
    num = int(config.batch_size)
    return {"image": jnp.zeros((num,) + tuple(image_shape), jnp.float32), "label": jnp.zeros((num,), jnp.int32)}


def generate_samples(generate, params, key, num: int, chunk: int) -> np.ndarray:
    """``num`` samples in chunks of ``chunk`` (chunk ``i`` uses ``fold_in(key, i)``)."""
    out = []
    for i in range(int(math.ceil(num / chunk))):
        out.append(np.asarray(jax.device_get(generate(params, jax.random.fold_in(key, i), chunk))))
    return np.concatenate(out, axis=-4)[..., :num, :, :, :] if out else np.zeros((0,))


# ---------------------------------------------------------------------------
# The loop.


def train(config: ml_collections.ConfigDict, workdir: str) -> TrainResult:
    """Trains ``config`` in ``workdir`` (resuming if it holds checkpoints).

    Args:
      config: a ConfigDict as built by ``launch/configs/vae.py`` or ``launch/configs/gan.py``.
      workdir: the run folder (created if missing).

    Returns:
      A :class:`TrainResult`.

    Raises:
      ConfigError: an unusable config field (the message names it).
      NonFiniteLossError: a loss term became NaN/inf.
      TrainingInterrupted: SIGINT/SIGTERM (after saving a checkpoint).
    """
    validate_config(config)
    seeds = parse_seeds(config.seeds)
    sweep = bool(seeds)
    if not sweep:
        seeds = [int(config.seed)]
    mesh = make_mesh(int(config.num_devices))
    batch_size = int(config.batch_size)
    if batch_size % mesh.size:
        raise ConfigError(
            f"config.batch_size={batch_size} is not divisible by the {mesh.size} devices of the 'data' mesh axis; "
            f"use a multiple of {mesh.size} or set config.num_devices"
        )
    data_dir = config.data.data_dir or None
    # Sets too large for memory (celeb_a) train on their first data.max_examples images (0 = all).
    limit = int(config.data.get("max_examples", 0)) or None
    train_ds = data_lib.load(config.data.name, "train", data_dir=data_dir, binarize=config.data.binarize,
                             max_examples=limit)
    test_ds = data_lib.load(config.data.name, "test", data_dir=data_dir, binarize=config.data.binarize,
                            max_examples=limit)
    if batch_size > len(train_ds.labels):
        raise ConfigError(f"config.batch_size={batch_size} exceeds the {len(train_ds.labels)} training examples")
    image_shape = data_lib.image_shape(train_ds)
    objective = make_objective(config, image_shape)
    program = make_program(config, objective)
    total = int(config.total_steps)

    workdir = os.path.abspath(workdir)
    run_dirs = [os.path.join(workdir, f"seed_{s}") for s in seeds] if sweep else [workdir]
    config_dict = config.to_dict()
    meta = {"image_shape": list(image_shape), "num_train": len(train_ds.labels), "num_devices": mesh.size}
    _check_resume_config(os.path.join(workdir, "config.json"), config_dict)
    if io.is_writer():
        for d in [workdir] + run_dirs:
            os.makedirs(d, exist_ok=True)
        io.write_json(os.path.join(workdir, "config.json"), {**config_dict, **meta})
        if sweep:
            for s, d in zip(seeds, run_dirs):
                # Each seed folder reads as a single run of that seed.
                io.write_json(os.path.join(d, "config.json"), {**config_dict, "seed": s, "seeds": "", **meta})

    replicated = NamedSharding(mesh, P())
    batch_sharding = NamedSharding(mesh, P(None, "data") if sweep else P("data"))
    streams = [state_lib.seed_streams(s) for s in seeds]
    order_seeds = [state_lib.data_seed(st.data_key) for st in streams]
    example = _example_batch(config, image_shape)
    init_state = jax.jit(lambda key: program.init_state(key, example), out_shardings=replicated)

    ckpts = [io.Checkpointer(os.path.join(d, "checkpoints"), int(config.keep_checkpoints)) for d in run_dirs]
    try:
        abstract_state = resume_lib.abstract(jax.eval_shape(init_state, streams[0].init_key), replicated)
        restored = resume_lib.restore_newest(ckpts, abstract_state)
        if restored is not None:
            start, states = restored
            log.info("resuming %s from step %d", workdir, start)
        else:
            start, states = 0, [init_state(st.init_key) for st in streams]
        # Built inside jit so that multi-host runs get global (replicated)
        # arrays; device_put cannot target devices of other processes.
        if sweep:
            state = jax.jit(state_lib.stack_states, out_shardings=replicated)(states)
            run_keys = jax.jit(
                lambda: jnp.stack([state_lib.seed_streams(s).run_key for s in seeds]), out_shardings=replicated
            )()
        else:
            state = states[0]
            run_keys = jax.jit(lambda: state_lib.seed_streams(seeds[0]).run_key, out_shardings=replicated)()

        step_fn = program.step
        if sweep:
            step_fn = steps_lib.make_sweep_step(step_fn)
        jit_step = jax.jit(
            step_fn,
            donate_argnums=(0,),
            in_shardings=(replicated, batch_sharding, replicated),
            out_shardings=(replicated, replicated),
        )
        runner = _Runner(config, objective, program, train_ds, test_ds, seeds, sweep, order_seeds, run_dirs, ckpts,
                         batch_sharding, replicated, start)
        state, last_rows = runner.run(jit_step, state, run_keys, start, total)
        num_compiles = jit_step._cache_size() if hasattr(jit_step, "_cache_size") else -1
        return TrainResult(state, max(start, total), last_rows, run_dirs, num_compiles)
    finally:
        for c in ckpts:
            c.close()


class _Runner:
    """The imperative part of :func:`train`: feeding, logging, saving, evaluating."""

    def __init__(self, config, objective, program, train_ds, test_ds, seeds, sweep, order_seeds, run_dirs, ckpts,
                 batch_sharding, replicated, start):
        self.config, self.objective = config, objective
        self.sample_params = program.sample_params
        self.train_ds, self.test_ds = train_ds, test_ds
        self.seeds, self.sweep, self.order_seeds = seeds, sweep, order_seeds
        self.run_dirs, self.ckpts = run_dirs, ckpts
        self.batch_sharding, self.replicated = batch_sharding, replicated
        self.writers = [io.MetricsWriter(os.path.join(d, "metrics.jsonl"), start) for d in run_dirs] if io.is_writer() else []
        self.last_rows: list[dict] = [{} for _ in run_dirs]
        self.eval_key = jax.random.key(int(config.eval_seed))
        gen, rec = objective.generate, objective.reconstruct
        if sweep:
            gen1 = gen
            gen = lambda params, key, num: jax.vmap(lambda p: gen1(p, key, num))(params)  # noqa: E731
            rec = jax.vmap(rec, in_axes=(0, None, None)) if rec is not None else None
        self.generate = jax.jit(gen, static_argnums=2)
        self.reconstruct = jax.jit(rec) if rec is not None else None
        self.forward_aux = jax.jit(jax.vmap(objective.forward_aux, in_axes=(0, None, None)) if sweep else objective.forward_aux)
        scores = objective.test_scores
        self.test_scores = None if scores is None else jax.jit(
            jax.vmap(scores, in_axes=(0, None, None)) if sweep else scores)
        # Elapsed time counts from here, so it includes precomputing (e.g. cached front-end features).
        self.t0 = time.perf_counter()
        self.extras, self.precompute_s = {}, None
        if objective.precompute is not None:
            self.extras = objective.precompute(train_ds.images)
            self.precompute_s = time.perf_counter() - self.t0
            log.info("precomputed %s for %d training images in %.1f s", ", ".join(self.extras),
                     len(train_ds.images), self.precompute_s)
        self.start = start

    # -- data ---------------------------------------------------------------
    def host_batch(self, step: int) -> dict:
        bs = int(self.config.batch_size)
        batches = [data_lib.get_batch(self.train_ds, bs, s, step, self.extras) for s in self.order_seeds]
        if self.sweep:
            return {k: np.stack([b[k] for b in batches]) for k in batches[0]}
        return batches[0]

    def place(self, batch: dict) -> dict:
        # Every process computes the same global batch (a pure function of
        # seed and step) and hands over the shards of its own devices.
        return {
            k: jax.make_array_from_callback(v.shape, self.batch_sharding, lambda idx, v=v: v[idx])
            for k, v in batch.items()
        }

    # -- checks and logs -----------------------------------------------------
    def check_and_log(self, step: int, metrics: dict, bar) -> None:
        values = {k: np.asarray(v) for k, v in jax.device_get(metrics).items()}
        # Report the primary loss terms first, the totals and diagnostics after.
        first = [k for k in self.objective.check_first if k in values and k != "loss"]
        core = first + [k for k in values if k not in first and k not in ("loss", "grad_norm", "param_norm")
                        and not k.startswith(("fire/", "latent_", "rate/")) and not k.endswith("grad_norm")]
        order = core + (["loss"] if "loss" in values else []) + [k for k in values if k not in core and k != "loss"]
        total_name = "loss" if "loss" in values else next(iter(order), None)
        for name in order:
            vals = np.atleast_1d(values[name])
            bad = np.flatnonzero(~np.isfinite(vals))
            if bad.size:
                seed = self.seeds[int(bad[0])] if self.sweep else None
                where = f" (seed {seed})" if self.sweep else ""
                raise NonFiniteLossError(
                    f"non-finite loss at step {step}{where}: term {name!r} = {vals[bad[0]]} "
                    f"({total_name} = {np.atleast_1d(values[total_name])[bad[0] if self.sweep else 0]}); "
                    f"the last good checkpoint stays in {self.ckpts[int(bad[0]) if self.sweep else 0].directory}",
                    step, name, seed,
                )
        if step % int(self.config.log_every) and step != int(self.config.total_steps):
            return
        elapsed = time.perf_counter() - self.t0
        timing = {"time/elapsed_s": elapsed, "time/steps_per_s": (step - self.start) / max(elapsed, 1e-9)}
        if self.precompute_s is not None:
            timing["time/precompute_s"] = self.precompute_s
        for i in range(len(self.run_dirs)):
            row = {"step": step, **{k: float(np.atleast_1d(v)[i] if self.sweep else v) for k, v in values.items()}}
            row.update(timing)
            self.last_rows[i] = row
            if self.writers:
                self.writers[i].write(row)
        if bar is not None:
            shown = {k: float(np.mean(values[k])) for k in ("loss", "recon", "kl", "d_loss", "g_loss") if k in values}
            bar.set_postfix({k: f"{v:.4g}" for k, v in shown.items()}, refresh=False)

    # -- outputs -------------------------------------------------------------
    def save(self, step: int, state) -> None:
        for i, c in enumerate(self.ckpts):
            c.save(step, state_lib.unstack_state(state, i) if self.sweep else state)

    def write_grids(self, step: int, state) -> None:
        params = self.sample_params(state)
        n = int(self.config.num_grid)
        k_gen, k_rec = jax.random.split(self.eval_key)
        samples = np.asarray(jax.device_get(self.generate(params, k_gen, n)))
        # Evenly spaced test images: splits may be sorted by class (mnist5k is), and the
        # first n would all be zeros.
        spread = np.linspace(0, len(self.test_ds.images) - 1, n).astype(int) if n else np.zeros(0, int)
        originals = self.test_ds.images[spread]
        recons = None
        if self.reconstruct is not None:
            recons = np.asarray(jax.device_get(self.reconstruct(params, jnp.asarray(originals), k_rec)))
        if not io.is_writer():
            return
        for i, d in enumerate(self.run_dirs):
            s = samples[i] if self.sweep else samples
            io.save_image_grid(os.path.join(d, f"samples_{step}.png"), s)
            if recons is None:
                continue
            r = recons[i] if self.sweep else recons
            pairs = np.stack([originals, r], axis=1).reshape((2 * n,) + originals.shape[1:])
            io.save_image_grid(os.path.join(d, f"recons_{step}.png"), pairs, cols=2 * int(math.ceil(math.sqrt(n))))

    def score_test_split(self, params) -> dict[str, np.ndarray]:
        """Means of ``objective.test_scores`` over the whole test split (``[S]`` per name for sweeps)."""
        bs, num = int(self.config.batch_size), len(self.test_ds.images)
        key = jax.random.fold_in(self.eval_key, 2)
        sums: dict[str, np.ndarray] = {}
        for i, lo in enumerate(range(0, num, bs)):
            images = self.test_ds.images[lo : lo + bs]
            scores = jax.device_get(self.test_scores(params, jnp.asarray(images), jax.random.fold_in(key, i)))
            for name, value in scores.items():
                sums[name] = sums.get(name, 0.0) + np.asarray(value, np.float64) * len(images)
        return {name: total / num for name, total in sums.items()}

    def evaluate(self, step: int, state) -> None:
        from jaxspike import metrics as metrics_lib  # local: eval is optional

        params = self.sample_params(state)
        cfg = self.config
        k_eval, k_fwd = jax.random.split(jax.random.fold_in(self.eval_key, 1))
        samples = generate_samples(self.generate, params, k_eval, int(cfg.eval_num_samples), int(cfg.batch_size))
        test_images = jnp.asarray(self.test_ds.images[: int(cfg.batch_size)])
        layers = jax.device_get(self.forward_aux(params, test_images, k_fwd))
        test = self.score_test_split(params) if self.test_scores is not None else {}
        min_entropy = float(cfg.get("mode_collapse_entropy", MODE_COLLAPSE_ENTROPY))
        for i, d in enumerate(self.run_dirs):
            row = {"step": step}
            row.update({f"test/{k}": float(v[i] if self.sweep else v) for k, v in test.items()})
            s = samples[i] if self.sweep else samples
            scores = metrics_lib.evaluate_samples(s, cfg.data.name, data_dir=cfg.data.data_dir or None)
            _flatten("eval", scores, row)
            if "class_entropy" in scores:
                collapsed = bool(scores["class_entropy"] < min_entropy)
                row["mode_collapse"] = collapsed
                if collapsed:
                    log.warning(
                        "step %d%s: mode collapse: class entropy of the samples %.3f nats < %.3f "
                        "(config.mode_collapse_entropy); class histogram %s", step,
                        f" seed {self.seeds[i]}" if self.sweep else "", scores["class_entropy"], min_entropy,
                        scores.get("class_histogram"),
                    )
            if layers:
                aux_i = jax.tree_util.tree_map(lambda a: np.asarray(a)[i], layers) if self.sweep else layers
                _flatten("energy", energy_lib.energy_report(aux_i), row)
            self.last_rows[i] = {**self.last_rows[i], **row}
            if self.writers:
                self.writers[i].write(row)
            log.info("step %d eval%s: %s", step, f" seed {self.seeds[i]}" if self.sweep else "",
                     {k: v for k, v in row.items() if k in ("eval/fid", "eval/inception_score", "eval/class_entropy")})

    def should_stop(self, stop: resume_lib.SignalCatcher, done: int) -> bool:
        """Whether to checkpoint and stop after update ``done``.

        Multi-host: a signal may reach the processes at different steps, and
        a checkpoint needs all of them, so the flag is agreed on (any process
        stopping stops all) every ``log_every`` updates.
        """
        if jax.process_count() == 1:
            return stop.signum is not None
        if done % int(self.config.log_every):
            return False
        from jax.experimental import multihost_utils

        flags = multihost_utils.process_allgather(np.int32(stop.signum or 0))
        if stop.signum is None and np.any(flags):
            stop.signum = int(np.max(flags))
        return bool(np.any(flags))

    # -- main loop -----------------------------------------------------------
    def run(self, jit_step, state, run_keys, start: int, total: int):
        cfg = self.config
        if start >= total:
            log.info("already trained to step %d >= total_steps %d; nothing to do", start, total)
            return state, self.last_rows
        show = bool(cfg.progress) and io.is_writer()
        bar = None
        if show:
            from tqdm import tqdm

            bar = tqdm(total=total, initial=start, desc="train", unit="step", dynamic_ncols=True,
                       mininterval=1.0, file=sys.stderr)
        pending = None
        try:
            with resume_lib.SignalCatcher() as stop:
                next_batch = self.host_batch(start)
                for step in range(start, total):
                    done = step + 1
                    state, metrics = jit_step(state, self.place(next_batch), run_keys)
                    # While the device works: check the previous step, prepare the next batch.
                    if pending is not None:
                        self.check_and_log(*pending, bar)
                    pending = (done, metrics)
                    if done < total:
                        next_batch = self.host_batch(done)
                    stopping = self.should_stop(stop, done)
                    is_ckpt = done % int(cfg.checkpoint_every) == 0 or done == total or stopping
                    is_grid = bool(cfg.num_grid) and (
                        done == total or (cfg.sample_every and done % int(cfg.sample_every) == 0)
                    )
                    is_eval = bool(cfg.eval_every) and (done % int(cfg.eval_every) == 0 or done == total)
                    if is_ckpt or is_grid or is_eval:
                        self.check_and_log(*pending, bar)
                        pending = None
                    if is_ckpt:
                        self.save(done, state)
                    if is_grid:
                        self.write_grids(done, state)
                    if is_eval:
                        self.evaluate(done, state)
                    if bar is not None:
                        bar.update(1)
                    if stopping:
                        raise TrainingInterrupted(done, stop.signum or signal.SIGTERM)
        finally:
            if bar is not None:
                bar.close()
        return state, self.last_rows


# ---------------------------------------------------------------------------
# Trained models.


def load_trained(workdir: str):
    """``(config, objective, params, image_shape)`` of the newest readable checkpoint in ``workdir``.

    ``params`` are what ``objective.generate`` takes: the VAE's parameters,
    the GAN's generator EMA.

    Raises:
      FileNotFoundError: ``workdir`` has no ``config.json`` or no readable checkpoint.
    """
    workdir = os.path.abspath(workdir)
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"--workdir={workdir!r} holds no config.json; is it a training run folder?")
    saved = io.read_json(path)
    if saved.get("seeds"):
        names = ", ".join(f"seed_{s}" for s in parse_seeds(saved["seeds"]))
        raise FileNotFoundError(f"--workdir={workdir!r} is a seed sweep; pass one of its runs: {names}")
    image_shape = tuple(saved.pop("image_shape"))
    for extra in ("num_train", "num_devices"):
        saved.pop(extra, None)
    config = ml_collections.ConfigDict(saved)
    objective = make_objective(config, image_shape)
    program = make_program(config, objective)
    example = _example_batch(config, image_shape)
    key = state_lib.seed_streams(int(config.seed)).init_key
    abstract = jax.eval_shape(lambda k: program.init_state(k, example), key)
    sharding = NamedSharding(make_mesh(1 if jax.process_count() == 1 else 0), P())
    ckpt_dir = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(ckpt_dir):
        raise FileNotFoundError(f"--workdir={workdir!r} has no checkpoints/ folder; train it first")
    ckpt = io.Checkpointer(ckpt_dir, int(config.keep_checkpoints))
    try:
        for step in reversed(ckpt.all_steps()):
            state = ckpt.try_restore(step, resume_lib.abstract(abstract, sharding))
            if state is not None:
                return config, objective, program.sample_params(state), image_shape
    finally:
        ckpt.close()
    raise FileNotFoundError(f"--workdir={workdir!r} has no readable checkpoint in {ckpt_dir}")
