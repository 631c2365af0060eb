"""Pure training steps and the objectives they optimise.

An *objective* bundles the pure functions one model family needs:
``init(key, batch) -> params``, ``loss(params, batch, key) -> (loss, terms)``,
``generate(params, key, num) -> images`` and ``reconstruct(params, images,
key) -> images``. :func:`make_train_step` is objective-agnostic: it only
calls ``loss``. Objective factories live here side by side
(:func:`make_vae_objective`; a GAN objective goes next to it).

Everything in this module is pure and jit-able; placement, files and logging
live in :mod:`jaxspike.train.loop`.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxspike.models import vae as vae_lib
from jaxspike.train.state import TrainState

Array = jax.Array
Batch = dict[str, Array]
LossFn = Callable[[Any, Batch, Array], tuple[Array, dict]]

__all__ = ["Objective", "make_train_step", "make_sweep_step", "make_vae_objective", "summarize_terms"]


class Objective(NamedTuple):
    """Pure functions of one model family.

    Attributes:
      init: ``(key, batch) -> params``.
      loss: ``(params, batch, key) -> (loss [], terms)``; ``terms`` holds
        scalar loss terms and optionally ``"aux"`` with ``"layers"`` (per-layer
        per-example counts ``[B]``) and ``"q"`` / ``"z"`` (latent probabilities
        and spikes ``[T, B, L]``).
      generate: ``(params, key, num) -> images [num, H, W, C]`` in [0, 1].
      reconstruct: ``(params, images [B, H, W, C], key) -> images`` in [0, 1].
      forward_aux: ``(params, images, key) -> aux["layers"]`` of one forward
        pass, for the energy report.
      name: objective name.
    """

    init: Callable[[Array, Batch], Any]
    loss: LossFn
    generate: Callable[[Any, Array, int], Array]
    reconstruct: Callable[[Any, Array, Array], Array]
    forward_aux: Callable[[Any, Array, Array], dict]
    name: str = "objective"


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
        (_, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, batch, key)
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


def make_vae_objective(model: vae_lib.SpikingVAE, **loss_kwargs) -> Objective:
    """The negative-ELBO objective of a spiking VAE (:func:`jaxspike.models.vae.elbo_loss`).

    Args:
      model: the VAE module (its ``image_shape`` fixes the data shape).
      **loss_kwargs: passed to ``elbo_loss`` (``likelihood``, ``kl_weight``, ...).
    """

    def init(key: Array, batch: Batch):
        k_params, k_fwd = jax.random.split(key)
        return model.init(k_params, batch["image"], k_fwd)["params"]

    def loss(params, batch: Batch, key: Array):
        value, terms = vae_lib.elbo_loss(model, params, batch["image"], key, **loss_kwargs)
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
        _, aux = model.apply({"params": params}, images, key, train=False)
        return aux["layers"]

    return Objective(init, loss, generate, reconstruct, forward_aux, name="vae")
