"""Spike functions: Heaviside forward pass, surrogate derivative backward pass.

A spiking neuron emits ``s = H(u)`` where ``u = v - threshold`` and

    H(u) = 1 if u > 0 else 0            (strict: u == 0 gives no spike)

``H`` has zero derivative almost everywhere, so training by backpropagation
replaces ``dH/du`` by a smooth *surrogate* ``sigma'(u)`` in the backward pass
only (Neftci, Mostafa & Zenke 2019, "Surrogate gradient learning in spiking
neural networks"). Each factory below returns a spike function ``spike(u)``
built with :func:`jax.custom_vjp`; the forward value is always exactly ``H``.

Scaling convention: every surrogate here is stated as the derivative used in
the backward pass, with its peak value at ``u = 0`` written in the docstring.
Libraries differ (snnTorch's ``atan`` peaks at 1 for ``alpha=2``; spyx's at
``1/pi``), so the formulas are given in full.

Each surrogate has exactly one shape parameter, always passed by its name
(:data:`PARAMETER`: ``slope``, ``alpha``, ``width`` or ``scale``), with one
default per name (:data:`SLOPE`, :data:`ALPHA`, :data:`WIDTH`, :data:`SCALE`).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

Array = jax.Array
SpikeFn = Callable[[Array], Array]

__all__ = [
    "heaviside",
    "make_spike_fn",
    "fast_sigmoid",
    "arctan",
    "sigmoid",
    "triangle",
    "boxcar",
    "straight_through",
    "get",
    "SURROGATES",
    "PARAMETER",
    "SLOPE",
    "ALPHA",
    "WIDTH",
    "SCALE",
]

SLOPE = 25.0  # fast sigmoid and sigmoid (snnTorch's default)
ALPHA = 2.0  # arctan (snnTorch's default: peak 1)
WIDTH = 1.0  # triangle and boxcar (unit area)
SCALE = 1.0  # straight-through


def heaviside(u: Array) -> Array:
    """Strict Heaviside step ``1[u > 0]`` in the dtype of ``u``."""
    u = jnp.asarray(u)
    return (u > 0).astype(u.dtype)


def _check_positive(name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"surrogate parameter {name} must be > 0, got {value!r}")


def make_spike_fn(surrogate_grad: Callable[[Array], Array], name: str = "custom") -> SpikeFn:
    """Builds ``spike(u)``: forward ``H(u)``, backward ``g * surrogate_grad(u)``.

    Args:
      surrogate_grad: elementwise function giving the surrogate ``dH/du``.
      name: shown in the function's ``__name__`` (handy in jaxprs and errors).
    """

    @jax.custom_vjp
    def spike(u):
        return heaviside(u)

    def fwd(u):
        return heaviside(u), u

    def bwd(u, g):
        return (g * jnp.asarray(surrogate_grad(u)).astype(g.dtype),)

    spike.defvjp(fwd, bwd)
    spike.__name__ = f"spike_{name}"
    spike.surrogate_grad = surrogate_grad  # exposed for tests and plots
    return spike


def fast_sigmoid(slope: float = SLOPE) -> SpikeFn:
    """SuperSpike fast sigmoid (Zenke & Ganguli 2018).

    Backward: ``dS/du = 1 / (1 + slope * |u|)**2``; peak 1 at ``u = 0``.
    Default ``slope = 25`` (snnTorch ``surrogate.fast_sigmoid`` default).
    """
    _check_positive("slope", slope)
    return make_spike_fn(lambda u: 1.0 / (1.0 + slope * jnp.abs(u)) ** 2, "fast_sigmoid")


def arctan(alpha: float = ALPHA) -> SpikeFn:
    """Arctangent surrogate (Fang et al. 2021), snnTorch scaling.

    Backward: ``dS/du = (alpha/2) / (1 + (pi/2 * alpha * u)**2)``; peak
    ``alpha/2`` (1 for the default ``alpha = 2``, as in snnTorch; spyx's
    version peaks at ``1/pi``). It is the derivative of
    ``arctan(pi/2 * alpha * u) / pi + 1/2``.
    """
    _check_positive("alpha", alpha)
    return make_spike_fn(
        lambda u: (alpha / 2.0) / (1.0 + (jnp.pi / 2.0 * alpha * u) ** 2), "arctan"
    )


def sigmoid(slope: float = SLOPE) -> SpikeFn:
    """Logistic surrogate.

    Backward: ``dS/du = slope * sig(slope*u) * (1 - sig(slope*u))``, the
    derivative of ``sig(slope*u)``; peak ``slope/4`` at ``u = 0``. Default
    ``slope = 25`` (snnTorch ``surrogate.sigmoid``).
    """
    _check_positive("slope", slope)

    def grad(u):
        # sig(x) * sig(-x) == sig(x) * (1 - sig(x)), without cancellation in the tails.
        return slope * jax.nn.sigmoid(slope * u) * jax.nn.sigmoid(-slope * u)

    return make_spike_fn(grad, "sigmoid")


def triangle(width: float = WIDTH) -> SpikeFn:
    """Triangular (tent) surrogate (Esser et al. 2016; Bellec et al. 2018).

    Backward: ``dS/du = max(0, 1 - |u|/width) / width``: a tent of half-width
    ``width`` centred at 0 with unit area; peak ``1/width``. Default
    ``width = 1``.
    """
    _check_positive("width", width)
    return make_spike_fn(lambda u: jnp.maximum(0.0, 1.0 - jnp.abs(u) / width) / width, "triangle")


def boxcar(width: float = WIDTH) -> SpikeFn:
    """Rectangular surrogate (Wu et al. 2018).

    Backward: ``dS/du = 1/width`` where ``|u| < width/2`` else 0: a box of
    total width ``width`` with unit area; peak ``1/width``. Default
    ``width = 1``.
    """
    _check_positive("width", width)
    return make_spike_fn(
        lambda u: jnp.where(jnp.abs(u) < width / 2.0, 1.0 / width, 0.0).astype(u.dtype), "boxcar"
    )


def straight_through(scale: float = SCALE) -> SpikeFn:
    """Straight-through estimator (Bengio et al. 2013).

    Backward: ``dS/du = scale`` everywhere (default 1): the step is treated
    as the identity in the backward pass.
    """
    _check_positive("scale", scale)
    return make_spike_fn(lambda u: jnp.full_like(u, scale), "straight_through")


SURROGATES: dict[str, Callable[..., SpikeFn]] = {
    "fast_sigmoid": fast_sigmoid,
    "arctan": arctan,
    "sigmoid": sigmoid,
    "triangle": triangle,
    "boxcar": boxcar,
    "straight_through": straight_through,
}


# The name of each surrogate's one shape parameter.
PARAMETER: dict[str, str] = {
    "fast_sigmoid": "slope",
    "arctan": "alpha",
    "sigmoid": "slope",
    "triangle": "width",
    "boxcar": "width",
    "straight_through": "scale",
}


def get(name: str, **params: float) -> SpikeFn:
    """Spike function by name, its parameter by name: ``get("arctan", alpha=2.0)``.

    Parameters other surrogates take (``slope``, ``alpha``, ``width``,
    ``scale``) may be passed too and are ignored, so one neuron description
    can carry all of them; anything else is an error.
    """
    try:
        factory = SURROGATES[name]
    except KeyError:
        raise ValueError(f"unknown surrogate {name!r}; choose one of {sorted(SURROGATES)}") from None
    unknown = set(params) - set(PARAMETER.values())
    if unknown:
        raise ValueError(f"unknown surrogate parameter(s) {sorted(unknown)}; surrogates take one of "
                         f"{sorted(set(PARAMETER.values()))} ({name!r} takes {PARAMETER[name]!r})")
    own = PARAMETER[name]
    return factory(**({own: params[own]} if own in params else {}))
