"""Pure training steps and the objectives they optimise.

An *objective* bundles the pure functions one model family needs. There are
two kinds:

* a **loss objective** (the VAE) gives ``init(key, batch) -> params`` and
  ``loss(params, batch, key) -> (loss, terms)``; :func:`make_train_step`
  turns it into a step over :class:`~jaxspike.train.state.TrainState` with one
  optimiser;
* a **state objective** (the GAN: two networks, two optimisers, an EMA)
  brings its own ``init_state(key, batch) -> state``, pure ``step(state,
  batch, key) -> (state, metrics)`` with the per-step key already derived,
  and ``sample_params(state) -> params`` (what ``generate`` takes, e.g. the
  generator EMA). The state must have an ``int32 []`` field ``step``.

Both also give ``generate(params, key, num) -> images`` and
``forward_aux(params, images, key) -> layer counts`` of one generation pass
(the energy report: energy per generated sample); ``reconstruct`` and
``test_scores`` are ``None`` for models without an encoder.
:func:`make_program` reduces either kind to the same
``(init_state, step(state, batch, run_key), sample_params)`` triple, which is
all the loop sees.

Everything in this module is pure and jit-able; placement, files and logging
live in :mod:`jaxspike.train.loop`.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxspike import gan_objective
from jaxspike.models import stdp_frontend
from jaxspike.models import vae as vae_lib
from jaxspike.train.state import TrainState, create_train_state

Array = jax.Array
Batch = dict[str, Array]
LossFn = Callable[[Any, Batch, Array], tuple[Array, dict]]

__all__ = [
    "Objective",
    "Program",
    "make_program",
    "make_train_step",
    "make_sweep_step",
    "make_vae_objective",
    "make_gan_objective",
    "summarize_terms",
]


class Objective(NamedTuple):
    """Pure functions of one model family.

    Attributes:
      init: ``(key, batch) -> params``.
      loss: ``(params, batch, key) -> (loss [], terms)``; ``terms`` holds
        scalar loss terms and optionally ``"aux"`` with ``"layers"`` (per-layer
        per-example counts ``[B]``) and ``"q"`` / ``"z"`` (latent probabilities
        and spikes ``[T, B, L]``).
      generate: ``(params, key, num) -> images [num, H, W, C]`` in [0, 1].
      reconstruct: ``(params, images [B, H, W, C], key) -> images`` in [0, 1],
        or ``None`` (no encoder: no reconstruction grids).
      forward_aux: ``(params, images, key) -> aux["layers"]`` of one
        generation pass of ``images.shape[0]`` samples (``images`` fixes only
        the batch size), for the energy report (``{}``: no report).
      name: objective name.
      init_state: state objectives only: ``(key, batch) -> state``.
      step: state objectives only: pure ``(state, batch, key) -> (state,
        metrics)``; ``key`` is the per-step key.
      sample_params: state objectives only: ``state -> params`` of ``generate``.
      check_first: metric names the non-finite check reports first (the
        primary losses).
      test_scores: ``(params, images, key) -> {name: [B]}`` per-example
        scores on held-out images (the VAE: ELBO, its terms and the
        reconstruction MSE), averaged over the test split by the loop; or
        ``None``.
      precompute: ``images (numpy [N, H, W, C]) -> {name: numpy [N, ...]}``,
        per-example inputs that depend on the image alone (a frozen,
        deterministic front end). The loop computes them once for the
        training set and adds each example's rows to its batches under
        ``name``; or ``None``.
    """

    init: Callable[[Array, Batch], Any] | None
    loss: LossFn | None
    generate: Callable[[Any, Array, int], Array]
    reconstruct: Callable[[Any, Array, Array], Array] | None
    forward_aux: Callable[[Any, Array, Array], dict]
    name: str = "objective"
    init_state: Callable[[Array, Batch], Any] | None = None
    step: Callable[[Any, Batch, Array], tuple[Any, dict]] | None = None
    sample_params: Callable[[Any], Any] | None = None
    check_first: tuple[str, ...] = ("loss",)
    test_scores: Callable[[Any, Array, Array], dict] | None = None
    precompute: Callable[[Any], dict] | None = None


class Program(NamedTuple):
    """What the loop runs: the same three functions for every objective.

    Attributes:
      init_state: ``(key, batch) -> state`` (a pytree with an ``int32 []`` ``step``).
      step: ``(state, batch, run_key) -> (state, metrics)``; the per-step key
        is ``fold_in(run_key, state.step)``. Jit once with ``donate_argnums=(0,)``.
      sample_params: ``state -> params`` handed to ``objective.generate``.
    """

    init_state: Callable[[Array, Batch], Any]
    step: Callable[[Any, Batch, Array], tuple[Any, dict]]
    sample_params: Callable[[Any], Any]


def make_program(objective: Objective, optimizer: optax.GradientTransformation | None = None) -> Program:
    """The :class:`Program` of an objective.

    A loss objective needs ``optimizer`` (its state is a :class:`TrainState`);
    a state objective brings its own optimisers and ignores it.
    """
    if objective.step is None:
        if optimizer is None:
            raise ValueError(f"objective {objective.name!r} optimises a loss: make_program needs an optimizer")

        def init_state(key, batch):
            return create_train_state(objective.init(key, batch), optimizer)

        return Program(init_state, make_train_step(objective.loss, optimizer), lambda state: state.params)
    own_step = objective.step

    def step(state, batch: Batch, run_key: Array):
        return own_step(state, batch, jax.random.fold_in(run_key, state.step))

    return Program(objective.init_state, step, objective.sample_params)


def summarize_terms(terms: dict) -> dict[str, Array]:
    """Scalar diagnostics of a loss's ``terms``.

    * every scalar entry of ``terms`` (the loss terms);
    * ``fire/<layer>``: mean firing rate (spikes per neuron per step) of each
      layer in ``terms["aux"]["layers"]``;
    * ``latent_p``: mean latent firing probability ``mean(q)``;
    * ``latent_silent``: fraction of latent units that emitted no spike in
      the whole batch (``z [T, B, L]``), a cheap dead-unit detector.
    """
    metrics = {k: v for k, v in terms.items() if k != "aux" and jnp.ndim(v) == 0}
    aux = terms.get("aux", {})
    for name, counts in aux.get("layers", {}).items():
        metrics[f"fire/{name}"] = jnp.mean(counts["firing_rate"])
    if "q" in aux:
        metrics["latent_p"] = jnp.mean(aux["q"])
    if "z" in aux:
        z = aux["z"]
        fired = jnp.sum(z.reshape(-1, z.shape[-1]), axis=0) > 0
        metrics["latent_silent"] = 1.0 - jnp.mean(fired.astype(jnp.float32))
    return metrics


def make_train_step(loss_fn: LossFn, optimizer: optax.GradientTransformation):
    """Builds the pure update ``step(state, batch, run_key) -> (state, metrics)``.

    The step's randomness is ``jax.random.fold_in(run_key, state.step)``, so
    step ``s`` sees the same key whether or not the run was resumed. Jit the
    result once, with ``donate_argnums=(0,)``.

    Args:
      loss_fn: ``(params, batch, key) -> (loss, terms)``.
      optimizer: an optax transformation.

    Returns:
      ``step``; ``metrics`` holds :func:`summarize_terms` of the terms plus
      ``grad_norm`` (global L2 norm of the gradient) and ``param_norm``.
    """

    def step(state: TrainState, batch: Batch, run_key: Array):
        key = jax.random.fold_in(run_key, state.step)
        # The step number rides along with the batch for losses with schedules
        # (relaxed-latent temperature, KL warm-up); losses that don't need it ignore it.
        inputs = {**batch, "step": state.step}
        (_, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, inputs, key)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = summarize_terms(terms)
        metrics["grad_norm"] = optax.tree.norm(grads)
        metrics["param_norm"] = optax.tree.norm(params)
        return TrainState(step=state.step + 1, params=params, opt_state=opt_state), metrics

    return step


def make_sweep_step(step):
    """The same step over a leading seed axis of state, batch and run key."""
    return jax.vmap(step, in_axes=(0, 0, 0))


def annealed(start: float, end: float, steps: int, step) -> Array:
    """Geometric schedule from ``start`` to ``end`` over ``steps`` updates, then ``end``.

    ``start * (end / start) ** min(step / steps, 1)`` (the exponential
    temperature annealing of Jang et al. 2017).
    """
    frac = jnp.clip(jnp.asarray(step, jnp.float32) / max(int(steps), 1), 0.0, 1.0)
    return start * (end / start) ** frac


def make_vae_objective(
    model,
    loss_fn=None,
    *,
    temperature_schedule: tuple[float, float, int] | None = None,
    kl_warmup_steps: int = 0,
    analog_macs: float | None = None,
    cache_frontend: bool = False,
    **loss_kwargs,
) -> Objective:
    """The negative-ELBO objective of a VAE (spiking: :func:`jaxspike.models.vae.elbo_loss`).

    Args:
      model: the VAE module (its ``image_shape`` fixes the data shape).
      loss_fn: ``elbo_loss`` (default) or ``analog_elbo_loss`` for the analog twin.
      temperature_schedule: ``(start, end, steps)`` of the relaxed estimator's
        temperature, annealed geometrically with the update number.
      kl_warmup_steps: the KL weight ramps linearly from 0 over this many updates.
      analog_macs: per-sample multiply-accumulates of an analog twin's
        decoder (:func:`jaxspike.energy.analog_macs` with ``method="decode"``),
        reported by ``forward_aux``; required for an :class:`AnalogVAE`.
      cache_frontend: a model with a frozen STDP front end (``model.frontend``)
        gets its features from the batch (``batch["frontend"]``, computed once
        per training image by ``precompute``) instead of running the front end
        every step. The spikes are the same; the front end needs no gradient
        here (its weights are constants and nothing upstream of it learns).
      **loss_kwargs: passed to the loss (``likelihood``, ``kl_weight``, ...).
    """
    loss_fn = loss_fn or vae_lib.elbo_loss
    analog = isinstance(model, vae_lib.AnalogVAE)
    if analog and analog_macs is None:
        raise ValueError("an AnalogVAE objective needs analog_macs (jaxspike.energy.analog_macs)")

    def scheduled(step) -> dict:
        kwargs = dict(loss_kwargs)
        if step is None:
            return kwargs
        if temperature_schedule is not None and not analog:
            kwargs["temperature"] = annealed(*temperature_schedule, step)
        if kl_warmup_steps:
            ramp = jnp.clip(jnp.asarray(step, jnp.float32) / kl_warmup_steps, 0.0, 1.0)
            kwargs["kl_weight"] = kwargs.get("kl_weight", 1.0) * ramp
        return kwargs

    def init(key: Array, batch: Batch):
        k_params, k_fwd = jax.random.split(key)
        return model.init(k_params, batch["image"], k_fwd)["params"]

    def loss(params, batch: Batch, key: Array):
        extra = {"features": batch["frontend"]} if "frontend" in batch else {}
        value, terms = loss_fn(model, params, batch["image"], key, **scheduled(batch.get("step")), **extra)
        aux = terms["aux"]
        # Non-spiking readouts have firing rate 0 by construction: log only
        # the layers that spike.
        silent_by_design = {"to_latent"} | ({"readout"} if getattr(model, "readout", "") == "membrane" else set())
        spiking = {
            k: v for k, v in aux["layers"].items()
            if k not in silent_by_design and isinstance(v, dict) and "firing_rate" in v
        }
        kept = {k: aux[k] for k in ("q", "z") if k in aux}
        return value, {**terms, "aux": {"layers": spiking, **kept}}

    def generate(params, key: Array, num: int):
        images, _ = model.apply({"params": params}, key, num, method="generate")
        return images

    def reconstruct(params, images: Array, key: Array):
        return model.apply({"params": params}, images, key, method="reconstruct")

    def forward_aux(params, images: Array, key: Array):
        # Energy per generated sample: one generation pass (prior -> decoder) of
        # images.shape[0] samples, the same pass for the spiking model and its twin.
        num = images.shape[0]
        if analog:
            # Every input of every decoder layer is a MAC; drawing z costs none.
            zero = jnp.zeros((num,))
            return {"analog": {"spike_count": zero, "firing_rate": zero, "synops": zero, "macs": zero + analog_macs}}
        _, aux = model.apply({"params": params}, key, num, method="generate")
        return aux

    def test_scores(params, images: Array, key: Array):
        # The bound with a sampled latent: hard spikes for the spiking model (the relaxed
        # estimator's eval mode), z = mu + sigma * eps for the analog twin.
        k_elbo, k_rec = jax.random.split(key)
        _, terms = loss_fn(model, params, images, k_elbo, train=analog, **loss_kwargs)
        recon = reconstruct(params, images, k_rec)
        mse = jnp.mean((recon - images) ** 2)
        return {"elbo": terms["elbo"], "recon": terms["recon"], "kl": terms["kl"], "mse": mse}

    precompute = None
    if cache_frontend and getattr(model, "frontend", ""):
        def precompute(images):
            front = stdp_frontend.load(model.frontend)
            one = lambda image: front.first_bins(image[None], model.num_steps)[0]  # noqa: E731
            # Vectorised over 256 images at a time (lax.map's batch_size), one compiled program.
            first = jax.jit(lambda x: jax.lax.map(one, x, batch_size=256))(images)
            return {"frontend": np.asarray(first)}

    return Objective(init, loss, generate, reconstruct, forward_aux, name="analog_vae" if analog else "vae",
                     test_scores=test_scores, precompute=precompute)


def make_gan_objective(
    generator,
    discriminator,
    g_tx: optax.GradientTransformation,
    d_tx: optax.GradientTransformation,
    *,
    analog_macs: float | None = None,
    **step_kwargs,
) -> Objective:
    """A GAN as a state objective (:func:`jaxspike.gan_objective.make_gan_step`).

    The state is a :class:`~jaxspike.gan_objective.GANState`; samples come
    from the generator EMA (``sample_params = state.g_ema``).

    Args:
      generator: a ``SpikingGenerator`` or ``AnalogGenerator``.
      discriminator: a ``SpikingDiscriminator`` or ``AnalogDiscriminator``.
      g_tx, d_tx: the generator's and discriminator's optimisers.
      analog_macs: per-sample multiply-accumulates of an analog generator;
        its energy report then counts them (an analog generator has no
        spike counts).
      **step_kwargs: ``loss``, ``r1_gamma``, ``gp_weight``, ``ema_decay``.
    """
    gan_step = gan_objective.make_gan_step(generator, discriminator, g_tx, d_tx, **step_kwargs)

    def init_state(key: Array, batch: Batch):
        return gan_objective.init_gan_state(generator, discriminator, key, batch["image"], g_tx, d_tx)

    def generate(params, key: Array, num: int):
        images, _ = generator.apply({"params": params}, key, num, method="generate")
        return images

    def forward_aux(params, images: Array, key: Array):
        # The generator's own forward pass; ``images`` only fixes the batch size.
        _, aux = generator.apply({"params": params}, key, images.shape[0], method="generate")
        if analog_macs is not None:
            aux = {"generator": {"macs": jnp.full((images.shape[0],), analog_macs, jnp.float32)}}
        return aux

    return Objective(
        init=None, loss=None, generate=generate, reconstruct=None, forward_aux=forward_aux, name="gan",
        init_state=init_state, step=gan_step, sample_params=lambda state: state.g_ema,
        check_first=("d_loss", "g_loss"),
    )
