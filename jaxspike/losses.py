"""Loss terms, per example (``[B]``); reduce with a mean in the objective."""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array

__all__ = ["bernoulli_nll", "bernoulli_kl", "bernoulli_kl_per_unit"]


def bernoulli_nll(logits: Array, targets: Array) -> Array:
    """Binary cross-entropy ``-sum [x log sig(l) + (1-x) log(1-sig(l))]`` per example.

    ``logits`` and ``targets`` are ``[B, ...]``; targets may be grey levels in
    [0, 1] (continuous Bernoulli without its normaliser, as usual for MNIST).
    """
    if logits.shape != targets.shape:
        raise ValueError(f"logits {logits.shape} and targets {targets.shape} differ in shape")
    per_pixel = jnp.logaddexp(0.0, logits) - targets * logits
    return jnp.sum(per_pixel.reshape(per_pixel.shape[0], -1), axis=1)


def bernoulli_kl(q: Array, p: Array | float, *, batch_axis: int = 0, eps: float = 1e-6) -> Array:
    """``KL(Bern(q) || Bern(p))`` summed over all axes but ``batch_axis``.

    ``KL = q log(q/p) + (1-q) log((1-q)/(1-p))``; probabilities are clipped to
    ``[eps, 1-eps]`` so a saturated posterior gives a large finite value, not
    NaN.
    """
    q = jnp.clip(q, eps, 1.0 - eps)
    p = jnp.clip(jnp.asarray(p, q.dtype), eps, 1.0 - eps)
    kl = q * (jnp.log(q) - jnp.log(p)) + (1.0 - q) * (jnp.log1p(-q) - jnp.log1p(-p))
    kl = jnp.moveaxis(kl, batch_axis, 0)
    return jnp.sum(kl.reshape(kl.shape[0], -1), axis=1)


def bernoulli_kl_per_unit(q: Array, p: Array | float, *, eps: float = 1e-6) -> Array:
    """``KL(Bern(q) || Bern(p))`` of time-major ``[T, B, L]`` spike probabilities, summed over time: ``[B, L]``."""
    q = jnp.clip(q, eps, 1.0 - eps)
    p = jnp.clip(jnp.asarray(p, q.dtype), eps, 1.0 - eps)
    kl = q * (jnp.log(q) - jnp.log(p)) + (1.0 - q) * (jnp.log1p(-q) - jnp.log1p(-p))
    return jnp.sum(kl, axis=0)
