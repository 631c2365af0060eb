"""Spike encoders and readouts. Every spike train is time-major ``[T, B, ...]``.

Encoders turn real values ``x in [0, 1]`` (pixel intensities, probabilities)
into spike trains:

* :func:`rate` - Bernoulli rate coding: ``s_t ~ Bernoulli(clip(gain * x))``
  independently each step, drawn from an explicit key.
* :func:`latency` - time-to-first-spike coding: one spike per input at most,
  brighter inputs spike earlier (linear or logarithmic, snnTorch-style RC
  model).
* :func:`direct` - the analog value repeated as input current each step.

Readouts turn a ``[T, B, ...]`` sequence into ``[B, ...]``: spike count and
rate, membrane mean/last/max of a non-spiking output layer, first-spike time
(whole steps, or interpolated within the step from the membrane).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

__all__ = [
    "rate",
    "latency",
    "latency_times",
    "direct",
    "spike_count",
    "spike_rate",
    "membrane_mean",
    "membrane_last",
    "membrane_max",
    "first_spike_time",
    "first_spike_intensity",
    "interpolated_first_spike_intensity",
    "check_time_major",
    "check_num_steps",
]


def check_num_steps(num_steps) -> int:
    """``num_steps`` as a positive Python int, else a ``ValueError``."""
    if isinstance(num_steps, bool) or not isinstance(num_steps, (int, np.integer)) or num_steps < 1:
        raise ValueError(f"number of time steps T must be a positive int, got {num_steps!r}")
    return int(num_steps)


def check_time_major(seq: Array, name: str = "spikes", min_ndim: int = 2) -> None:
    """Checks ``seq`` is ``[T, B, ...]`` with ``T >= 1``."""
    if seq.ndim < min_ndim:
        raise ValueError(
            f"{name} must be time-major [T, B, ...] with at least {min_ndim} axes, "
            f"got shape {tuple(seq.shape)}"
        )
    if seq.shape[0] < 1:
        raise ValueError(f"{name} has T = 0 time steps (shape {tuple(seq.shape)})")


def _check_unit_interval(x: Array, name: str) -> None:
    """Value check for concrete arrays; traced values are checked by the caller's contract."""
    if isinstance(x, jax.core.Tracer):
        return
    x_np = np.asarray(x)
    if not x_np.size:
        return
    finite = np.isfinite(x_np)
    if not finite.all():
        raise ValueError(f"{name} must be probabilities/intensities in [0, 1]; it holds NaN or inf")
    if x_np.min() < 0.0 or x_np.max() > 1.0:
        raise ValueError(
            f"{name} must be probabilities/intensities in [0, 1]; got values in "
            f"[{x_np.min():.4g}, {x_np.max():.4g}]"
        )


def rate(key: Array, x: Array, num_steps: int, gain: float = 1.0) -> Array:
    """Bernoulli rate coding.

    ``s[t, ...] ~ Bernoulli(p)``, ``p = clip(gain * x, 0, 1)``, independent
    over time steps and elements, drawn from ``key``.

    Args:
      key: PRNG key.
      x: ``[B, ...]`` firing probabilities in [0, 1].
      num_steps: ``T`` >= 1.
      gain: scales the firing probability before clipping.

    Returns:
      ``[T, B, ...]`` spikes (0/1) in ``x.dtype``, or float32 for integer
      or boolean ``x``.
    """
    num_steps = check_num_steps(num_steps)
    x = jnp.asarray(x)
    if x.ndim < 1:
        raise ValueError(f"rate expects a batch [B, ...], got a scalar of shape {x.shape}")
    _check_unit_interval(x, "rate input x")
    if not gain >= 0:
        raise ValueError(f"gain must be >= 0, got {gain!r}")
    p = jnp.clip(gain * x, 0.0, 1.0)
    u = jax.random.uniform(key, (num_steps, *x.shape), dtype=p.dtype)
    return (u < p).astype(x.dtype if jnp.issubdtype(x.dtype, jnp.floating) else jnp.float32)


def latency_times(
    x: Array,
    num_steps: int,
    *,
    method: str = "linear",
    tau: float = 1.0,
    threshold: float = 0.01,
) -> Array:
    """First-spike time (float, in steps) of each input; ``num_steps`` = no spike.

    * ``linear``: ``t = (1 - x) (T - 1)`` for ``x > threshold``.
    * ``log``: the RC-circuit charging time ``tau * ln(x / (x - threshold))``
      (snnTorch ``spikegen.latency(linear=False)``), rescaled so the
      brightest input (``x = 1``) spikes at 0 and a dim input
      (``x = threshold + 0.01``) at ``T - 1``; clipped to ``[0, T-1]``.

    Inputs ``<= threshold`` never spike.
    """
    num_steps = check_num_steps(num_steps)
    x = jnp.asarray(x, jnp.float32)
    _check_unit_interval(x, "latency input x")
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"latency threshold must lie in [0, 1), got {threshold!r}")
    t_max = num_steps - 1
    if method == "linear":
        t = (1.0 - x) * t_max
    elif method == "log":
        if not tau > 0:
            raise ValueError(f"tau must be > 0, got {tau!r}")
        safe = jnp.maximum(x, threshold + 1e-6)
        raw = tau * jnp.log(safe / (safe - threshold))
        t_first = tau * math.log(1.0 / (1.0 - threshold))  # x = 1
        # Normalise so that x = 1 maps to 0 and x = threshold + 1e-2 (a dim pixel) to T - 1.
        dim = threshold + 1e-2
        t_last = tau * math.log(dim / (dim - threshold))
        t = jnp.clip((raw - t_first) / (t_last - t_first) * t_max, 0.0, t_max)
    else:
        raise ValueError(f"latency method must be 'linear' or 'log', got {method!r}")
    return jnp.where(x > threshold, t, float(num_steps))


def latency(
    x: Array,
    num_steps: int,
    *,
    method: str = "linear",
    tau: float = 1.0,
    threshold: float = 0.01,
) -> Array:
    """Time-to-first-spike coding: each input spikes once at most.

    The spike of input ``x`` falls at step ``round(latency_times(x))``
    (brighter = earlier); inputs at or below ``threshold`` stay silent.

    Args:
      x: ``[B, ...]`` intensities in [0, 1].
      num_steps: ``T`` >= 1.
      method: ``"linear"`` or ``"log"`` (see :func:`latency_times`).

    Returns:
      ``[T, B, ...]`` spikes, at most one per input.
    """
    x = jnp.asarray(x)
    if x.ndim < 1:
        raise ValueError(f"latency expects a batch [B, ...], got shape {x.shape}")
    times = jnp.round(latency_times(x, num_steps, method=method, tau=tau, threshold=threshold))
    steps = jnp.arange(num_steps, dtype=times.dtype).reshape((num_steps,) + (1,) * x.ndim)
    return (steps == times[None]).astype(x.dtype if jnp.issubdtype(x.dtype, jnp.floating) else jnp.float32)


def direct(x: Array, num_steps: int) -> Array:
    """Direct (current) input: ``x`` repeated at each of ``num_steps`` steps."""
    num_steps = check_num_steps(num_steps)
    x = jnp.asarray(x)
    if x.ndim < 1:
        raise ValueError(f"direct expects a batch [B, ...], got shape {x.shape}")
    return jnp.broadcast_to(x[None], (num_steps, *x.shape))


# ---------------------------------------------------------------------------
# Readouts: [T, B, ...] -> [B, ...]


def spike_count(spikes: Array) -> Array:
    """Number of spikes per neuron over time: ``sum_t s_t``."""
    check_time_major(spikes, min_ndim=1)
    return jnp.sum(spikes, axis=0)


def spike_rate(spikes: Array) -> Array:
    """Firing rate per neuron, spikes per step in [0, 1]: ``mean_t s_t``."""
    check_time_major(spikes, min_ndim=1)
    return jnp.mean(spikes, axis=0)


def membrane_mean(v_mem: Array) -> Array:
    """Time-averaged membrane of a non-spiking readout layer."""
    check_time_major(v_mem, "membrane", min_ndim=1)
    return jnp.mean(v_mem, axis=0)


def membrane_last(v_mem: Array) -> Array:
    """Membrane at the last time step."""
    check_time_major(v_mem, "membrane", min_ndim=1)
    return v_mem[-1]


def membrane_max(v_mem: Array) -> Array:
    """Maximum membrane over time."""
    check_time_major(v_mem, "membrane", min_ndim=1)
    return jnp.max(v_mem, axis=0)


def first_spike_time(spikes: Array) -> Array:
    """Index of each neuron's first spike; ``T`` where it never spikes.

    Returned as float in the spikes' dtype. Not differentiable by itself; a
    decoder that reads intensities from first-spike times uses a surrogate
    (see the model files).
    """
    check_time_major(spikes, min_ndim=1)
    num_steps = spikes.shape[0]
    fired = spikes > 0
    first = jnp.argmax(fired, axis=0)
    return jnp.where(jnp.any(fired, axis=0), first, num_steps).astype(
        spikes.dtype if jnp.issubdtype(spikes.dtype, jnp.floating) else jnp.float32
    )


def first_spike_intensity(spikes: Array) -> Array:
    """Differentiable time-to-first-spike readout: ``1 - t_first / T`` (0 if silent).

    ``f_t = s_t prod_{k<t} (1 - s_k)`` marks each neuron's first spike and the
    intensity is ``sum_t f_t (1 - t / T)``: brighter = earlier, as in
    latency coding. Built from the spikes themselves, so gradients reach every
    spike through its surrogate derivative (unlike :func:`first_spike_time`).
    """
    check_time_major(spikes, min_ndim=1)
    num_steps = spikes.shape[0]
    weights = 1.0 - jnp.arange(num_steps, dtype=spikes.dtype) / num_steps
    return jnp.tensordot(weights, _first_spikes(spikes), axes=(0, 0))


def _first_spikes(spikes: Array) -> Array:
    """``f_t = s_t prod_{k<t} (1 - s_k)``: 1 at each neuron's first spike only, differentiable in ``s``."""
    silent_before = jnp.cumprod(1.0 - spikes, axis=0)
    silent_before = jnp.concatenate([jnp.ones_like(spikes[:1]), silent_before[:-1]], axis=0)
    return spikes * silent_before


def interpolated_first_spike_intensity(
    spikes: Array, membrane: Array, threshold: float | Array, min_rise: float = 0.1
) -> Array:
    """Time-to-first-spike readout with the crossing time interpolated inside the step.

    :func:`first_spike_intensity` knows the spike time only to the step, so
    it has ``T + 1`` levels. Here the membrane is taken to rise linearly
    from ``v_{t-1}`` to ``v_t`` during step ``t``, and the threshold is
    crossed at the fraction ``phi = (thr - v_{t-1}) / (v_t - v_{t-1})`` of
    it, as precise-spike-time simulators place spikes between grid points
    (Morrison et al. 2007, "Exact subthreshold integration with continuous
    spike times in discrete-time neural network simulations"; Hanuschkin et
    al. 2010). The intensity ``1 - (t + phi) / T`` is continuous in the drive:
    ``phi = 1`` at step ``t`` meets ``phi = 0`` at step ``t + 1``, and a spike
    that only just happens at the last step gives 0, the silent value. No
    extra spikes are needed for the extra grey levels.

    Gradients reach the crossing time through ``phi`` (``d t* / d v =
    -1 / rise``, as in SpikeProp, Bohte et al. 2002) and the spike itself
    through its surrogate. ``rise`` is floored at ``min_rise * thr`` so that a
    membrane that creeps over the threshold cannot give an unbounded gradient.

    Args:
      spikes: ``[T, ...]`` output spikes.
      membrane: ``[T, ...]`` the same neurons' membrane ``v_t`` after
        integration, before reset (``SpikingDense(record_membrane=True)``).
        The membrane before the first step is taken as 0.
      threshold: firing threshold (scalar or broadcastable to one step).
      min_rise: floor of the per-step rise, as a fraction of the threshold.

    Returns:
      Intensities ``[...]`` in ``[0, 1)``; 0 for neurons that never fire.
    """
    check_time_major(spikes, min_ndim=1)
    if membrane.shape != spikes.shape:
        raise ValueError(f"membrane shape {tuple(membrane.shape)} must equal the spikes' {tuple(spikes.shape)}")
    if not min_rise > 0:
        raise ValueError(f"min_rise must be > 0, got {min_rise!r}")
    num_steps = spikes.shape[0]
    v_prev = jnp.concatenate([jnp.zeros_like(membrane[:1]), membrane[:-1]], axis=0)
    rise = jnp.maximum(membrane - v_prev, min_rise * threshold)
    phi = jnp.clip((threshold - v_prev) / rise, 0.0, 1.0)
    steps = jnp.arange(num_steps, dtype=spikes.dtype).reshape((num_steps,) + (1,) * (spikes.ndim - 1))
    return jnp.sum(_first_spikes(spikes) * (1.0 - (steps + phi) / num_steps), axis=0)
