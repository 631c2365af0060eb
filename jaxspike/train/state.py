"""The seed streams a run is built from, and stacking states over a sweep's seeds.

A run is a pure function of one integer seed. The seed is split once into
three independent streams that are never reused for another purpose::

    init_key, data_key, run_key = jax.random.split(jax.random.key(seed), 3)

* ``init_key`` initialises the parameters;
* ``data_key`` fixes the order of the training examples (through the integer
  :func:`data_seed` handed to :func:`jaxspike.data.get_batch`);
* ``run_key`` drives the step's randomness: step ``s`` uses
  ``jax.random.fold_in(run_key, s)``, so a run resumed at step ``s`` replays
  it exactly (big_vision, maxtext).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

__all__ = ["SeedStreams", "seed_streams", "data_seed", "stack_states", "unstack_state"]


class SeedStreams(NamedTuple):
    """The three independent key streams of one seed."""

    init_key: Array
    data_key: Array
    run_key: Array


def seed_streams(seed: int) -> SeedStreams:
    """Splits ``key(seed)`` into the init, data and run streams."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    init_key, data_key, run_key = jax.random.split(jax.random.key(int(seed)), 3)
    return SeedStreams(init_key, data_key, run_key)


def data_seed(data_key: Array) -> int:
    """The integer seed of the data order, a deterministic function of ``data_key``.

    :func:`jaxspike.data.get_batch` shuffles with NumPy on the host, so the
    key is turned into one non-negative 31-bit integer.
    """
    bits = jax.random.bits(data_key, (), jnp.uint32)
    return int(np.uint32(jax.device_get(bits)) >> np.uint32(1))


def stack_states(states: list[Any]) -> Any:
    """Stacks pytrees along a new leading (seed) axis."""
    return jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves), *states)


def unstack_state(stacked: Any, index: int) -> Any:
    """Entry ``index`` of a pytree stacked by :func:`stack_states`."""
    return jax.tree_util.tree_map(lambda leaf: leaf[index], stacked)
