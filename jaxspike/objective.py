"""The contract between a model family and the training system.

A family (:mod:`jaxspike.families`) turns its config into an
:class:`Objective`: a small value of pure functions, as optax's
``GradientTransformation(init, update)`` is. The training loop
(:mod:`jaxspike.train`) runs any objective the same way and knows nothing
else about the model::

    state = objective.init(key, batch)
    state, metrics = objective.step(state, batch, fold_in(run_key, state.step))
    images = objective.sample(state, key, num)

Every field is a function every family provides; none is optional. The
state is any pytree with an ``int32 []`` field ``step``.

This module also holds what families share: :class:`TrainState` and
:func:`loss_objective` for models trained by one optimiser on one loss,
:func:`make_optimizer`, and :class:`ConfigError` with its checks.
"""

from __future__ import annotations

import re
from typing import Any, Callable, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

Array = jax.Array
Batch = dict[str, Array]
LossFn = Callable[[Any, Batch, Array], tuple[Array, dict]]

__all__ = [
    "Objective",
    "TrainState",
    "ConfigError",
    "require",
    "is_int",
    "check_widths",
    "check_fields",
    "build",
    "loss_objective",
    "make_train_step",
    "summarize_terms",
    "no_precompute",
    "make_optimizer",
    "validate_optimizer",
    "OPTIMIZERS",
]

OPTIMIZERS = ("adam", "adamw", "sgd")


class Objective(NamedTuple):
    """What a model family gives the training system: pure, jit-able functions.

    Attributes:
      init: ``(key, batch) -> state``; ``batch`` fixes the shapes (its
        ``"image"`` is ``[B, H, W, C]``).
      step: ``(state, batch, key) -> (state, metrics)``, one update; ``key``
        is this step's key (the loop passes ``fold_in(run_key, state.step)``,
        so a resumed run replays every step). ``metrics`` maps names to
        scalars.
      sample: ``(state, key, num) -> images [num, H, W, C]`` in [0, 1].
      energy: ``(state, key, num) -> layer counts`` of one generation pass
        of ``num`` samples, the input of
        :func:`jaxspike.energy.energy_report` (energy per generated sample).
      evaluate: ``(state, images [B, H, W, C], key) -> {name: []}``
        scores on a batch of held-out images, each the batch's mean (the
        loop averages them over the test split, weighting each batch by its
        size, and logs ``test/<name>``); ``{}`` when the model has none.
      figures: ``(state, key, images [N, H, W, C]) -> {name: array}``, the
        PNG grids (``<name>_<step>.png``) from ``N`` test images: an array
        ``[N, H, W, C]`` tiles as a square grid, ``[N, K, H, W, C]`` as rows
        of ``K``-tuples (e.g. an input beside its reconstruction).
      precompute: ``images (numpy [N, H, W, C]) -> {name: numpy [N, ...]}``,
        per-example inputs that depend on the image alone, computed once
        before training and added to each batch under ``name``
        (:func:`no_precompute`: none).
      headline: the primary metric names: the progress display shows them
        and the non-finite check names them first.
    """

    init: Callable[[Array, Batch], Any]
    step: Callable[[Any, Batch, Array], tuple[Any, dict]]
    sample: Callable[[Any, Array, int], Array]
    energy: Callable[[Any, Array, int], dict]
    evaluate: Callable[[Any, Array, Array], dict]
    figures: Callable[[Any, Array, Array], dict]
    precompute: Callable[[np.ndarray], dict]
    headline: tuple[str, ...]


def no_precompute(images: np.ndarray) -> dict:
    """The :attr:`Objective.precompute` of a model that needs nothing precomputed."""
    del images
    return {}


# ---------------------------------------------------------------------------
# Config checks shared by the families and the loop.


class ConfigError(ValueError):
    """A config field or flag has an unusable value; the message names it."""


def require(cond: bool, field: str, value: Any, what: str) -> None:
    """Raises ``ConfigError("config.<field>=<value>: <what>")`` unless ``cond``."""
    if not cond:
        raise ConfigError(f"config.{field}={value!r}: {what}")


def is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def check_widths(field: str, widths: Any) -> tuple[int, ...]:
    """Layer widths as a tuple of ints >= 1, or a ConfigError naming ``field``."""
    widths = tuple(widths)
    require(len(widths) >= 1 and all(is_int(w) and w >= 1 for w in widths), field, widths,
            "layer widths must be ints >= 1")
    return widths


def check_fields(section: str, fields, known) -> None:
    """A ConfigError naming the first field of ``config.<section>`` that is not in ``known`` (a misspelling)."""
    unknown = sorted(set(fields) - set(known))
    if unknown:
        raise ConfigError(f"config.{section}.{unknown[0]}: unknown field; {section} takes {', '.join(sorted(known))}")


def build(section: str, factory: Callable[..., Any], fields: dict) -> Any:
    """``factory(**fields)``; a misspelt field or a value the factory rejects is a ConfigError.

    The factory is a dataclass (or module) whose defaults are the library's
    defaults and whose checks raise ``ValueError("<Class> <field>=<value>:
    <what>")``; the message becomes ``config.<section>.<field>=<value>: <what>``.
    """
    try:
        return factory(**fields)
    except TypeError as err:
        raise ConfigError(f"config.{section}: {err}") from None
    except ValueError as err:
        named = re.match(r"^\w+ (\w+=.*)$", str(err), re.S)
        raise ConfigError(f"config.{section}.{named.group(1)}" if named else f"config.{section}: {err}") from None


# ---------------------------------------------------------------------------
# Optimisers.


def validate_optimizer(cfg, rate_fields: tuple[str, ...]) -> None:
    """Checks ``config.optimizer``; ``rate_fields`` name its learning rates."""
    check_fields("optimizer", cfg, ("name", "b1", "b2", "weight_decay", "grad_clip", "lr_decay_from") + rate_fields)
    require(cfg.name in OPTIMIZERS, "optimizer.name", cfg.name, f"unknown optimizer; supported: {', '.join(OPTIMIZERS)}")
    for field in rate_fields:
        require(cfg[field] > 0, f"optimizer.{field}", cfg[field], "must be > 0")
    require(cfg.grad_clip >= 0, "optimizer.grad_clip", cfg.grad_clip, "must be >= 0 (0 = off)")
    decay_from = cfg.lr_decay_from
    require(isinstance(decay_from, (int, float)) and 0.0 <= decay_from <= 1.0, "optimizer.lr_decay_from", decay_from,
            "must be a fraction of total_steps in [0, 1] (1 = constant learning rate)")


def make_optimizer(cfg, learning_rate: float | None = None, total_steps: int | None = None) -> optax.GradientTransformation:
    """Adam / AdamW / SGD from ``config.optimizer``, with optional global-norm clipping.

    ``learning_rate`` overrides ``cfg.learning_rate`` (a family with two
    optimisers passes each its own). ``cfg.lr_decay_from`` (a fraction of
    ``total_steps``; 1.0 = constant) holds the rate until that step, then
    decays it linearly to zero at ``total_steps``. The schedule reads the
    optimiser's own update count, which is checkpointed, so a resumed run
    continues it where it stopped.
    """
    lr = cfg.learning_rate if learning_rate is None else learning_rate
    decay_from = float(cfg.lr_decay_from)
    if decay_from < 1.0:
        if not total_steps:
            raise ConfigError("config.optimizer.lr_decay_from < 1 needs total_steps to place the decay")
        start = int(round(decay_from * total_steps))
        lr = optax.linear_schedule(lr, 0.0, max(total_steps - start, 1), transition_begin=start)
    if cfg.name == "adam":
        opt = optax.adam(lr, b1=cfg.b1, b2=cfg.b2)
    elif cfg.name == "adamw":
        opt = optax.adamw(lr, b1=cfg.b1, b2=cfg.b2, weight_decay=cfg.weight_decay)
    elif cfg.name == "sgd":
        opt = optax.sgd(lr)
    else:
        raise ConfigError(f"config.optimizer.name={cfg.name!r}: unknown optimizer; supported: {', '.join(OPTIMIZERS)}")
    if cfg.grad_clip:
        opt = optax.chain(optax.clip_by_global_norm(cfg.grad_clip), opt)
    return opt


# ---------------------------------------------------------------------------
# Models trained by one optimiser on one loss.


@flax.struct.dataclass
class TrainState:
    """The state of a :func:`loss_objective`.

    Attributes:
      step: ``int32 []`` number of optimiser updates applied so far.
      params: model parameters.
      opt_state: optimiser state.
    """

    step: Array
    params: Any
    opt_state: Any


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
    """The pure update ``step(state, batch, key) -> (state, metrics)`` of a loss.

    The batch reaches the loss with the update number under ``"step"`` (for
    schedules such as a temperature or a KL warm-up; losses that need none
    ignore it). ``metrics`` holds :func:`summarize_terms` of the terms plus
    ``grad_norm`` (global L2 norm of the gradient) and ``param_norm``.
    """

    def step(state: TrainState, batch: Batch, key: Array):
        inputs = {**batch, "step": state.step}
        (_, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, inputs, key)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = summarize_terms(terms)
        metrics["grad_norm"] = optax.tree.norm(grads)
        metrics["param_norm"] = optax.tree.norm(params)
        return TrainState(step=state.step + 1, params=params, opt_state=opt_state), metrics

    return step


def loss_objective(
    init_params: Callable[[Array, Batch], Any],
    loss: LossFn,
    optimizer: optax.GradientTransformation,
    *,
    sample: Callable[[Any, Array, int], Array],
    energy: Callable[[Any, Array, int], dict],
    evaluate: Callable[[Any, Array, Array], dict],
    figures: Callable[[Any, Array, Array], dict],
    precompute: Callable[[np.ndarray], dict] = no_precompute,
    headline: tuple[str, ...] = ("loss",),
) -> Objective:
    """The :class:`Objective` of parameters trained by ``optimizer`` on ``loss``.

    The state is a :class:`TrainState`; ``sample``, ``energy``, ``evaluate``
    and ``figures`` take the *parameters* (``state.params``) in place of the
    state.
    """

    def init(key: Array, batch: Batch) -> TrainState:
        params = init_params(key, batch)
        return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=optimizer.init(params))

    return Objective(
        init=init,
        step=make_train_step(loss, optimizer),
        sample=lambda state, key, num: sample(state.params, key, num),
        energy=lambda state, key, num: energy(state.params, key, num),
        evaluate=lambda state, images, key: evaluate(state.params, images, key),
        figures=lambda state, key, images: figures(state.params, key, images),
        precompute=precompute,
        headline=headline,
    )
