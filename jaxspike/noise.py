"""Bernoulli spike processes: the spiking stand-in for Gaussian noise and latents.

A spiking network cannot carry a real-valued Gaussian sample; its analogue is
a Bernoulli spike process, one spike or none per unit and time step,
``z_t ~ Bernoulli(p_t)``, drawn from an explicit PRNG key.

Sampling is not differentiable in ``p``. :func:`straight_through_bernoulli`
uses the straight-through estimator (Bengio et al. 2013): forward a hard
sample, backward ``dz/dp = 1``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxspike import encoding

Array = jax.Array

__all__ = ["bernoulli_process", "straight_through_bernoulli"]


def bernoulli_process(key: Array, p: Array | float, shape: tuple[int, ...], dtype=jnp.float32) -> Array:
    """Spike trains ``[T, B, ...] = shape`` with ``z ~ Bernoulli(p)`` i.i.d.

    ``p`` is a scalar or broadcasts to ``shape`` (e.g. per-unit rates
    ``[N]``); it must lie in [0, 1].
    """
    if len(shape) < 2:
        raise ValueError(f"a spike process needs shape [T, B, ...], got {shape}")
    encoding.check_num_steps(shape[0])
    p = jnp.asarray(p, dtype)
    encoding._check_unit_interval(p, "spike probability p")
    return (jax.random.uniform(key, shape, dtype) < p).astype(dtype)


def straight_through_bernoulli(key: Array, p: Array) -> Array:
    """Hard Bernoulli sample of ``p`` (any shape) with a straight-through gradient.

    Forward: ``z ~ Bernoulli(p)``. Backward: ``dz/dp = 1``.
    """
    z = (jax.random.uniform(key, p.shape, p.dtype) < p).astype(p.dtype)
    return p + jax.lax.stop_gradient(z - p)
