"""The GAN family: the spiking GAN (``model.name = "gan"``) and its analog twin (``"analog_gan"``).

One pure step updates the discriminator on real and generated images (one
concatenated batch, as in dm-haiku's ``mnist_gan``), then the generator
through the *updated* discriminator, then the generator's exponential moving
average, from which samples are drawn (Karras et al. 2018). The losses are
:func:`jaxspike.losses.gan_d_loss` / :func:`~jaxspike.losses.gan_g_loss`
(non-saturating, hinge, WGAN-GP); :class:`GANLoss` (``config.loss``) holds
them and the options against mode collapse and a discriminator that is
easily fooled:

* ``r1_gamma``: R1 penalty ``gamma/2 ||grad_x D(x_real)||^2`` (Mescheder et
  al. 2018); ``gp_weight``: the WGAN-GP penalty
  ``lambda (||grad_x D(x_hat)|| - 1)^2`` on random interpolates (Gulrajani
  et al. 2017).
* ``augment_shift``: differentiable random translation of every image the
  discriminator sees, real and fake (DiffAugment, Zhao et al. 2020): the
  generator is judged on what survives a shift.
* ``fm_weight``: feature matching (Salimans et al. 2016): the generator also
  matches the batch mean of the discriminator's last features (for a
  spiking discriminator, its last layer's firing rates) on real images.
* ``cr_weight``: consistency regularisation (Zhang et al. 2020):
  ``lambda (D(x) - D(x + sigma n))^2`` on real and fake images with Gaussian
  pixel noise and the same spike-coding key; unlike R1, which for a spiking
  discriminator penalises the *surrogate* input gradient, it bounds how much
  the discriminator's actual output moves.
* ``g_homeostasis``: the spiking generator's per-neuron firing-rate band
  (:func:`jaxspike.losses.rate_band_penalty`); ``g_rate_penalty``: its mean
  firing rates (spikes are what a generated sample costs).
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxspike import augment, cells, losses
from jaxspike import energy as energy_lib
from jaxspike import objective as obj
from jaxspike.local import stdp as local_stdp
from jaxspike.models import stdp_frontend
from jaxspike.models.gan import (
    ANALOG_NOISE,
    ARCHS,
    CODINGS,
    D_GRADIENTS,
    MBSTD_SOURCES,
    READOUTS,
    AnalogDiscriminator,
    AnalogGenerator,
    SpikingDiscriminator,
    SpikingGenerator,
)

Array = jax.Array

__all__ = ["GANLoss", "GANState", "init_gan_state", "make_gan_step", "make_models", "build", "DISCRIMINATORS"]

DISCRIMINATORS = ("spiking", "analog")


@dataclasses.dataclass(frozen=True)
class GANLoss:
    """The loss settings of a GAN (``config.loss``); the defaults are the library's.

    Attributes:
      name: ``"ns"``, ``"hinge"`` or ``"wgan_gp"`` (:data:`jaxspike.losses.GAN_LOSSES`).
      r1_gamma: R1 weight (0 = off).
      gp_weight: WGAN-GP weight (``wgan_gp`` only).
      ema_decay: decay of the generator EMA used for samples, in [0, 1).
      g_rate_penalty: weight of the generator layers' summed mean firing rates.
      augment_shift: DiffAugment shifts of up to this many pixels (0 = off).
      fm_weight: feature-matching weight (0 = off).
      g_homeostasis: weight of the generator's per-neuron firing-rate band (0 = off).
      homeostasis_band: ``(lo, hi)`` firing rate per neuron and step.
      cr_weight, cr_sigma: consistency-regularisation weight and pixel-noise std.
    """

    name: str = "ns"
    r1_gamma: float = 0.0
    gp_weight: float = 10.0
    ema_decay: float = 0.999
    g_rate_penalty: float = 0.0
    augment_shift: int = 0
    fm_weight: float = 0.0
    g_homeostasis: float = 0.0
    homeostasis_band: tuple[float, float] = (0.01, 0.3)
    cr_weight: float = 0.0
    cr_sigma: float = 0.05

    def __post_init__(self):
        def bad(field, what):
            raise ValueError(f"GANLoss {field}={getattr(self, field)!r}: {what}")

        object.__setattr__(self, "homeostasis_band", tuple(float(x) for x in self.homeostasis_band))
        if self.name not in losses.GAN_LOSSES:
            bad("name", f"supported: {', '.join(losses.GAN_LOSSES)}")
        if not 0.0 <= self.ema_decay < 1.0:
            bad("ema_decay", "must lie in [0, 1)")
        for field in ("r1_gamma", "gp_weight", "g_rate_penalty", "fm_weight", "g_homeostasis", "cr_weight"):
            if not getattr(self, field) >= 0:
                bad(field, "must be >= 0 (0 = off)")
        if not obj.is_int(self.augment_shift) or self.augment_shift < 0:
            bad("augment_shift", "must be an int >= 0 pixels (0 = off)")
        if not self.cr_sigma > 0:
            bad("cr_sigma", "must be > 0")
        band = self.homeostasis_band
        if len(band) != 2 or not 0.0 <= band[0] < band[1] <= 1.0:
            bad("homeostasis_band", "must be (lo, hi) with 0 <= lo < hi <= 1")


class GANState(NamedTuple):
    """Both networks' parameters and optimiser states, and the generator EMA."""

    step: Array
    g_params: Any
    d_params: Any
    g_opt: Any
    d_opt: Any
    g_ema: Any


def init_gan_state(generator, discriminator, key, image_example, g_tx, d_tx, frontend=None) -> GANState:
    """Initial state; ``image_example`` is a ``[B, H, W, C]`` batch used for shapes."""
    k_g, k_d, k_z, k_c = jax.random.split(key, 4)
    z = generator.sample_noise(k_z, image_example.shape[0])
    g_params = generator.init(k_g, z)["params"]
    d_params = discriminator.init(k_d, image_example, k_c, **_front(frontend))["params"]
    return GANState(
        step=jnp.zeros((), jnp.int32),
        g_params=g_params,
        d_params=d_params,
        g_opt=g_tx.init(g_params),
        d_opt=d_tx.init(d_params),
        g_ema=g_params,
    )


def _front(frontend) -> dict:
    return {} if frontend is None else {"frontend": frontend}


def _rates(aux: dict) -> dict:
    return {f"rate/{k}": jnp.mean(v["firing_rate"]) for k, v in aux.items() if "firing_rate" in v}


def make_gan_step(generator, discriminator, g_tx: optax.GradientTransformation, d_tx: optax.GradientTransformation,
                  loss: GANLoss = GANLoss(), frontend: stdp_frontend.STDPFrontEnd | None = None):
    """The pure step ``(state, batch, key) -> (state, metrics)`` (see the module docstring).

    ``frontend``: a frozen STDP front end of the spiking discriminator.
    """
    cfg = loss
    front = _front(frontend)

    def generate(g_params, key, num):
        z = generator.sample_noise(key, num)
        return generator.apply({"params": g_params}, z)

    def disc(d_params, images, key):
        if cfg.augment_shift:  # the shifts get their own stream; without them the coder keeps ``key``
            k_aug, key = jax.random.split(key)
            images = augment.translate(k_aug, images, cfg.augment_shift)
        return discriminator.apply({"params": d_params}, images, key, **front)

    def d_objective(d_params, g_params, real, key):
        k_z, k_d, k_gp, k_eps = jax.random.split(key, 4)
        batch = real.shape[0]
        fake, _ = generate(g_params, k_z, batch)
        fake = jax.lax.stop_gradient(fake)
        logits, d_aux = disc(d_params, jnp.concatenate([real, fake], axis=0), k_d)
        d_real, d_fake = logits[:batch], logits[batch:]
        per_example = losses.gan_d_loss(cfg.name, d_real, d_fake)
        metrics = {"d_real": jnp.mean(d_real), "d_fake": jnp.mean(d_fake)}
        if cfg.name == "wgan_gp":
            eps = jax.random.uniform(k_eps, (batch, 1, 1, 1))
            x_hat = eps * real + (1.0 - eps) * fake
            grads = jax.grad(lambda x: jnp.sum(disc(d_params, x, k_gp)[0]))(x_hat)
            norms = jnp.sqrt(jnp.sum(grads.reshape(batch, -1) ** 2, axis=1) + 1e-12)
            gp = (norms - 1.0) ** 2
            per_example = per_example + cfg.gp_weight * gp
            metrics["gp"] = jnp.mean(gp)
        if cfg.cr_weight:
            both = jnp.concatenate([real, fake], axis=0)
            k_cr = jax.random.fold_in(k_eps, 1)  # k_eps itself draws WGAN-GP's interpolation weights
            noisy = jnp.clip(both + cfg.cr_sigma * jax.random.normal(k_cr, both.shape, both.dtype), 0.0, 1.0)
            # Same coding key: the two passes differ only by the pixel perturbation.
            logits_noisy, _ = disc(d_params, noisy, k_d)
            cr = (logits - logits_noisy) ** 2
            per_example = per_example + cfg.cr_weight * (cr[:batch] + cr[batch:])
            metrics["cr"] = jnp.mean(cr)
        if cfg.r1_gamma:
            r1 = losses.r1_penalty(lambda x: disc(d_params, x, k_gp)[0], real)
            per_example = per_example + 0.5 * cfg.r1_gamma * r1
            metrics["r1"] = jnp.mean(r1)
        d_loss = jnp.mean(per_example)
        metrics["d_loss"] = d_loss
        return d_loss, (metrics, d_aux)

    def g_objective(g_params, d_params, real, key):
        k_z, k_d = jax.random.split(key)
        batch = real.shape[0]
        fake, g_aux = generate(g_params, k_z, batch)
        if cfg.fm_weight:  # real features need no gradient, and real and fake go through D as one batch
            logits, d_aux = disc(d_params, jnp.concatenate([jax.lax.stop_gradient(real), fake], axis=0), k_d)
            d_fake = logits[batch:]
            feats = d_aux["features"]["mean"]
            fm = jnp.mean((jax.lax.stop_gradient(jnp.mean(feats[:batch], axis=0)) - jnp.mean(feats[batch:], axis=0)) ** 2)
        else:
            d_fake, _ = disc(d_params, fake, k_d)
        loss_g = jnp.mean(losses.gan_g_loss(cfg.name, d_fake))
        # Spread of the generated pixels across the batch: near 0 when the generator has collapsed.
        metrics = {"g_loss": loss_g, "fake_pixel_std": jnp.mean(jnp.std(jax.lax.stop_gradient(fake), axis=0))}
        total = loss_g
        if cfg.fm_weight:
            total = total + cfg.fm_weight * fm
            metrics["g_feature_matching"] = fm
        if cfg.g_homeostasis:
            band = losses.rate_band_penalty([v["neuron_rate"] for v in g_aux.values() if "neuron_rate" in v],
                                            cfg.homeostasis_band)
            total = total + cfg.g_homeostasis * band
            metrics["g_homeostasis"] = band
        if cfg.g_rate_penalty:
            activity = sum(jnp.mean(v["firing_rate"]) for v in g_aux.values() if "firing_rate" in v)
            total = total + cfg.g_rate_penalty * activity
            metrics["g_activity"] = activity
        return total, (metrics, g_aux)

    def step(state: GANState, batch: dict, key: Array):
        real = batch["image"]
        k_d, k_g = jax.random.split(key)
        (_, (d_metrics, d_aux)), d_grads = jax.value_and_grad(d_objective, has_aux=True)(
            state.d_params, state.g_params, real, k_d
        )
        d_updates, d_opt = d_tx.update(d_grads, state.d_opt, state.d_params)
        d_params = optax.apply_updates(state.d_params, d_updates)
        (_, (g_metrics, g_aux)), g_grads = jax.value_and_grad(g_objective, has_aux=True)(
            state.g_params, d_params, real, k_g
        )
        g_updates, g_opt = g_tx.update(g_grads, state.g_opt, state.g_params)
        g_params = optax.apply_updates(state.g_params, g_updates)
        g_ema = jax.tree_util.tree_map(lambda e, p: cfg.ema_decay * e + (1.0 - cfg.ema_decay) * p, state.g_ema, g_params)
        metrics = {
            **d_metrics,
            **g_metrics,
            "d_grad_norm": optax.tree.norm(d_grads),
            "g_grad_norm": optax.tree.norm(g_grads),
            **_rates(g_aux),
            **_rates(d_aux),
        }
        return GANState(state.step + 1, g_params, d_params, g_opt, d_opt, g_ema), metrics

    return step


# ---------------------------------------------------------------------------
# Config -> models and objective.


def _choice(field: str, value, options) -> None:
    obj.require(value in options, field, value, f"supported: {', '.join(options)}")


_MODEL_FIELDS = ("name", "disc", "num_steps", "noise_dim", "noise_p", "noise_rates", "noise", "neuron", "generator",
                 "discriminator")
_GENERATOR_FIELDS = ("num_steps", "arch", "readout", "hidden", "channels", "current_norm")
_DISCRIMINATOR_FIELDS = ("arch", "coding", "hidden", "channels", "current_norm", "mbstd_group", "mbstd_source",
                         "gradient", "frontend")


def _validate(config) -> None:
    m = config.model
    obj.check_fields("model", m, _MODEL_FIELDS)
    g, d = m.generator, m.discriminator
    obj.check_fields("model.generator", g, _GENERATOR_FIELDS)
    obj.check_fields("model.discriminator", d, _DISCRIMINATOR_FIELDS)
    _choice("model.name", m.name, ("gan", "analog_gan"))
    obj.require(obj.is_int(m.noise_dim) and m.noise_dim >= 1, "model.noise_dim", m.noise_dim, "noise units Z must be an int >= 1")
    obj.require(0.0 < m.noise_p < 1.0, "model.noise_p", m.noise_p, "noise firing probability must lie in (0, 1)")
    _choice("model.disc", m.disc, DISCRIMINATORS)
    obj.require(m.name != "analog_gan" or m.disc == "analog", "model.disc", m.disc, "the analog GAN has an analog discriminator")
    _choice("model.generator.arch", g.arch, ARCHS)
    _choice("model.discriminator.arch", d.arch, ARCHS)
    for field in ("hidden", "channels"):
        obj.check_widths(f"model.generator.{field}", g[field])
        obj.check_widths(f"model.discriminator.{field}", d[field])
    if m.name == "gan" or m.disc == "spiking":
        obj.require(obj.is_int(m.num_steps) and m.num_steps >= 1, "model.num_steps", m.num_steps,
                    "time steps T must be an int >= 1")
    group = d.mbstd_group
    obj.require(obj.is_int(group) and (group == 0 or (group >= 2 and config.batch_size % group == 0)),
                "model.discriminator.mbstd_group", group,
                f"must be 0 (off) or an int >= 2 dividing batch_size={config.batch_size}")
    _choice("model.discriminator.mbstd_source", d.mbstd_source, MBSTD_SOURCES)
    _choice("model.discriminator.gradient", d.gradient, D_GRADIENTS)
    if m.name == "gan":
        obj.require(obj.is_int(g.num_steps) and g.num_steps >= 0, "model.generator.num_steps", g.num_steps,
                    "generator time steps must be an int >= 1, or 0 for model.num_steps")
        _choice("model.generator.readout", g.readout, READOUTS)
    else:
        _choice("model.noise", m.noise, ANALOG_NOISE)
    if m.disc == "spiking":
        _choice("model.discriminator.coding", d.coding, CODINGS)
    obj.require(not config.loss.g_homeostasis or m.name == "gan", "loss.g_homeostasis", config.loss.g_homeostasis,
                "needs a spiking generator (model.name='gan')")


def make_models(config, image_shape: tuple[int, ...]):
    """``(generator, discriminator)`` flax modules of a GAN config: ``gan`` is a spiking
    generator with a spiking or analog (hybrid) discriminator, ``analog_gan`` the analog twin."""
    _validate(config)
    m = config.model
    g, d = m.generator, m.discriminator
    image_shape = tuple(int(x) for x in image_shape)
    neuron = obj.build("model.neuron", cells.Neuron, dict(m.neuron))
    if m.name == "gan":
        generator = SpikingGenerator(
            num_steps=int(g.num_steps) or m.num_steps, noise_dim=m.noise_dim, noise_p=m.noise_p,
            noise_rates=m.noise_rates, image_shape=image_shape, arch=g.arch, hidden=tuple(g.hidden),
            channels=tuple(g.channels), readout=g.readout, current_norm=bool(g.current_norm), neuron=neuron,
        )
    else:
        generator = AnalogGenerator(
            noise_dim=m.noise_dim, image_shape=image_shape, arch=g.arch, hidden=tuple(g.hidden),
            channels=tuple(g.channels), noise=m.noise, noise_p=m.noise_p,
        )
    if m.disc == "spiking":
        discriminator = SpikingDiscriminator(
            num_steps=m.num_steps, coding=d.coding, arch=d.arch, hidden=tuple(d.hidden), channels=tuple(d.channels),
            mbstd_group=int(d.mbstd_group), mbstd_source=d.mbstd_source, current_norm=bool(d.current_norm),
            gradient=d.gradient, neuron=neuron,
        )
    else:
        discriminator = AnalogDiscriminator(arch=d.arch, hidden=tuple(d.hidden), channels=tuple(d.channels),
                                            mbstd_group=int(d.mbstd_group))
    return generator, discriminator


def _load_frontend(config) -> stdp_frontend.STDPFrontEnd | None:
    d = config.model.discriminator
    spec = d.get("frontend", "")
    if not spec:
        return None
    obj.require(config.model.disc == "spiking", "model.discriminator.frontend", spec,
                "an STDP front end feeds the spiking discriminator")
    try:
        return local_stdp.load_frontend(spec)
    except ValueError as err:
        raise obj.ConfigError(f"config.model.discriminator.frontend={spec!r}: {err}") from None


def build(config, image_shape: tuple[int, ...]) -> obj.Objective:
    """The objective of a GAN config (``gan`` or ``analog_gan``); every field checked.

    The state is a :class:`GANState`; samples come from the generator EMA.
    """
    loss = obj.build("loss", GANLoss, dict(config.loss))
    generator, discriminator = make_models(config, image_shape)
    o = config.optimizer
    obj.validate_optimizer(o, ("g_learning_rate", "d_learning_rate"))
    g_tx = obj.make_optimizer(o, o.g_learning_rate, config.total_steps)
    d_tx = obj.make_optimizer(o, o.d_learning_rate, config.total_steps)
    frontend = _load_frontend(config)
    example = jnp.zeros((int(config.batch_size),) + tuple(image_shape), jnp.float32)
    macs = None
    try:
        # Shapes only: module errors (bad widths for the image size, ...) surface here as ConfigErrors.
        abstract = jax.eval_shape(
            lambda k: init_gan_state(generator, discriminator, k, example, g_tx, d_tx, frontend), jax.random.key(0)
        )
        if config.model.name == "analog_gan":
            z = jax.ShapeDtypeStruct((2, config.model.noise_dim), jnp.float32)
            macs = energy_lib.analog_macs(generator, abstract.g_params, z)
    except (TypeError, ValueError) as err:
        raise obj.ConfigError(f"config.model: {err}") from None
    step = make_gan_step(generator, discriminator, g_tx, d_tx, loss, frontend)

    def init(key: Array, batch: dict) -> GANState:
        return init_gan_state(generator, discriminator, key, batch["image"], g_tx, d_tx, frontend)

    def sample(state: GANState, key: Array, num: int):
        images, _ = generator.apply({"params": state.g_ema}, key, num, method="generate")
        return images

    def energy(state: GANState, key: Array, num: int):
        # The generator's own forward pass (what one generated sample costs).
        _, aux = generator.apply({"params": state.g_ema}, key, num, method="generate")
        if macs is not None:
            aux = {"generator": {"macs": jnp.full((num,), macs, jnp.float32)}}
        return aux

    def evaluate(state: GANState, images: Array, key: Array):
        del state, images, key
        return {}  # a GAN has no held-out likelihood or reconstruction

    def figures(state: GANState, key: Array, images: Array):
        k_gen, _ = jax.random.split(key)
        return {"samples": sample(state, k_gen, images.shape[0])}

    return obj.Objective(init=init, step=step, sample=sample, energy=energy, evaluate=evaluate, figures=figures,
                         precompute=obj.no_precompute, headline=("d_loss", "g_loss"))
