"""Spike-timing-dependent plasticity for convolutional spiking networks.

The building blocks of SpykeTorch-style networks in which every neuron fires
at most once per input (Mozafari et al. 2019, "SpykeTorch: efficient
simulation of convolutional spiking neural networks with at most one spike
per neuron", Front. Neurosci. 13:625), as pure, jit-able functions:

* :func:`dog_kernels` / :func:`dog_filter` - on- and off-centre
  difference-of-Gaussians filtering (retina-like contrast cells), thresholded
  and locally normalised.
* :func:`intensity_to_latency` - rank-order (intensity-to-latency) coding into
  ``T`` time bins: the strongest responses spike first, ``nonzero // T`` of
  them per bin.
* :func:`conv_potentials` / :func:`fire` - non-negative-weight convolution of
  the spike waves and integrate-and-fire neurons without leak or reset that
  fire once, when ``v_t > thr`` first holds.
* :func:`pool` - pooling by earliest spike.
* :func:`pointwise_inhibition` - lateral inhibition across feature maps: at
  each location only the earliest (then most depolarised) feature keeps its
  spike.
* :func:`k_winners` - k-winners-take-all with an inhibition radius.
* :func:`stdp_update` - the soft-bound STDP rule of Kheradpisheh et al. 2018
  ("STDP-based spiking deep convolutional neural networks for object
  recognition", Neural Networks) as implemented by SpykeTorch;
  :func:`learning_rates` - its rising learning-rate schedule.
* :func:`rstdp_update` - reward-modulated STDP (anti-STDP on punishment) for
  a decision layer (Mozafari et al. 2019, "Bio-inspired digit recognition
  using reward-modulated spike-timing-dependent plasticity in deep
  convolutional networks", Pattern Recognition 94:87-95).

Conventions. Spike trains are time-major one-hot ``[T, B, H, W, C]`` (NHWC
per step, as :mod:`jaxspike.data` images): ``s[t] = 1`` at the neuron's
single spike. Internally a layer integrates the *cumulative* wave
``c[t] = sum_{t' <= t} s[t']`` (SpykeTorch's representation): a neuron
that fired keeps feeding its targets, so with non-negative weights the
potential ``v[t] = W * c[t]`` never decreases and the first threshold
crossing is the only spike. Conv weights are ``[kh, kw, C_in, C_out]``
(HWIO) in ``[0, 1]``. The neuron that never spikes has first-spike time
``T``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

__all__ = [
    "dog_kernels",
    "dog_filter",
    "local_normalize",
    "intensity_to_latency",
    "encode_images",
    "to_cumulative",
    "to_onehot",
    "spike_times",
    "conv_potentials",
    "fire",
    "pool",
    "pointwise_inhibition",
    "k_winners",
    "Winners",
    "stdp_pairings",
    "stdp_update",
    "learning_rates",
    "rstdp_update",
    "init_conv_weights",
    "conv_synops",
    "check_weights",
    "check_spikes",
]


# ---------------------------------------------------------------------------
# Checks (plain ValueErrors naming the shapes, as the rest of the package)


def check_spikes(spikes: Array, name: str = "spikes", ndim: int = 5) -> None:
    """Checks ``spikes`` is time-major ``[T, B, H, W, C]`` (``ndim`` axes)."""
    if spikes.ndim != ndim:
        raise ValueError(
            f"{name} must be time-major with {ndim} axes ([T, B, H, W, C]), got shape {tuple(spikes.shape)}"
        )
    if spikes.shape[0] < 1:
        raise ValueError(f"{name} has T = 0 time steps (shape {tuple(spikes.shape)})")


def check_weights(weights: Array, name: str = "weights", ndim: int = 4, low: float = 0.0, high: float = 1.0) -> None:
    """Checks rank (HWIO conv kernel by default) and, for concrete arrays, ``[low, high]``."""
    if weights.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} axes, got shape {tuple(weights.shape)}")
    if isinstance(weights, jax.core.Tracer):
        return  # inside jit the bound is the caller's contract; every update here clips
    w = np.asarray(weights)
    # Compare in the weights' own precision: a float32 clipped to 0.8 is 0.800000012 in float64.
    lo, hi = np.asarray(low, w.dtype), np.asarray(high, w.dtype)
    if w.size and (not np.isfinite(w).all() or w.min() < lo or w.max() > hi):
        raise ValueError(
            f"{name} must lie in [{low}, {high}] (STDP weights are bounded), got values in "
            f"[{np.nanmin(w):.4g}, {np.nanmax(w):.4g}]"
        )


def _check_images(images: Array) -> None:
    if images.ndim != 4 or images.shape[-1] != 1:
        raise ValueError(f"images must be grey-scale [B, H, W, 1], got shape {tuple(images.shape)}")


# ---------------------------------------------------------------------------
# Input layer: DoG filtering and intensity-to-latency coding


def dog_kernels(
    specs: tuple[tuple[int, float, float], ...] = (
        (3, 3 / 9, 6 / 9),
        (3, 6 / 9, 3 / 9),
        (7, 7 / 9, 14 / 9),
        (7, 14 / 9, 7 / 9),
        (13, 13 / 9, 26 / 9),
        (13, 26 / 9, 13 / 9),
    ),
) -> np.ndarray:
    """Difference-of-Gaussians kernels, zero-padded to the largest window.

    Each ``(size, s1, s2)`` gives ``DoG(x, y) = (G_s1 - G_s2) / (2 pi)`` with
    ``G_s = exp(-(x^2 + y^2) / (2 s^2)) / s^2``, then zero mean and peak 1.
    ``s1 < s2`` is an on-centre cell (bright spot on dark), ``s1 > s2``
    off-centre. The defaults are SpykeTorch's MNIST set (three scales, on and
    off each).

    Returns:
      ``float32 [K, K, 1, F]`` (HWIO), ``K`` the largest size, ``F = len(specs)``.
    """
    if not specs:
        raise ValueError("dog_kernels needs at least one (size, sigma1, sigma2) spec")
    big = max(s for s, _, _ in specs)
    out = np.zeros((big, big, 1, len(specs)), np.float32)
    for f, (size, s1, s2) in enumerate(specs):
        if size % 2 != 1 or s1 <= 0 or s2 <= 0:
            raise ValueError(f"DoG spec {(size, s1, s2)}: size must be odd and sigmas > 0")
        half = size // 2
        y, x = np.mgrid[-half : half + 1, -half : half + 1]
        r2 = (x * x + y * y).astype(np.float64)
        g1 = np.exp(-0.5 * r2 / s1**2) / s1**2
        g2 = np.exp(-0.5 * r2 / s2**2) / s2**2
        dog = (g1 - g2) / (2 * math.pi)
        dog = dog - dog.mean()
        dog = dog / dog.max()
        off = (big - size) // 2
        out[off : off + size, off : off + size, 0, f] = dog
    return out


def local_normalize(x: Array, radius: int = 8, eps: float = 1e-12) -> Array:
    """Divides each map by its local mean over a ``(2r+1)^2`` window (zero padded).

    ``y = x / (mean_{|dy|,|dx| <= r} x + eps)`` per channel: contrast in
    dim regions counts as much as in bright ones (SpykeTorch
    ``local_normalization``).

    Args:
      x: ``[B, H, W, C]`` non-negative maps.
    """
    size = 2 * radius + 1
    local_sum = jax.lax.reduce_window(
        x, 0.0, jax.lax.add, (1, size, size, 1), (1, 1, 1, 1), ((0, 0), (radius, radius), (radius, radius), (0, 0))
    )
    return x / (local_sum / (size * size) + eps)


def dog_filter(images: Array, kernels: Array, threshold: float = 50.0, norm_radius: int = 8) -> Array:
    """DoG responses of grey images: ``relu_thr(DoG * (255 x))``, locally normalised.

    Responses below ``threshold`` (on the 0..255 pixel scale, as in
    SpykeTorch's MNIST example) are zeroed, so weak edges do not spike.

    Args:
      images: ``[B, H, W, 1]`` in [0, 1].
      kernels: ``[K, K, 1, F]`` from :func:`dog_kernels`.

    Returns:
      ``float32 [B, H, W, F]`` non-negative (same size: zero padding ``K // 2``).
    """
    images = jnp.asarray(images, jnp.float32)
    _check_images(images)
    kernels = jnp.asarray(kernels, jnp.float32)
    pad = kernels.shape[0] // 2
    resp = jax.lax.conv_general_dilated(
        images * 255.0, kernels, (1, 1), ((pad, pad), (pad, pad)), dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    resp = jnp.where(resp < threshold, 0.0, resp)
    return local_normalize(resp, norm_radius) if norm_radius > 0 else resp


def _inverse_permutation(order: Array) -> Array:
    """Row-wise inverse of ``[B, n]`` permutations, by one scatter (O(n), not a second sort)."""
    rows, n = order.shape
    return jnp.zeros_like(order).at[jnp.arange(rows)[:, None], order].set(jnp.arange(n, dtype=order.dtype)[None, :])


def intensity_to_latency(values: Array, num_steps: int) -> Array:
    """Rank-order coding: stronger values spike earlier, each at most once.

    Per example, the ``n`` non-zero values are sorted in decreasing order and
    cut into ``T`` bins of ``max(1, n // T)``; the values of bin ``i`` spike
    at step ``i``. Values left over after ``T`` bins and zeros never spike
    (SpykeTorch ``Intensity2Latency``). Ties are broken by flat index.

    Args:
      values: ``[B, H, W, C]`` non-negative.
      num_steps: ``T`` >= 1.

    Returns:
      ``float32 [T, B, H, W, C]`` one-hot spikes.
    """
    if values.ndim != 4:
        raise ValueError(f"intensity_to_latency expects [B, H, W, C], got shape {tuple(values.shape)}")
    if isinstance(num_steps, bool) or not isinstance(num_steps, (int, np.integer)) or num_steps < 1:
        raise ValueError(f"num_steps must be a positive int, got {num_steps!r}")
    flat = values.reshape(values.shape[0], -1)
    rank = _inverse_permutation(jnp.argsort(-flat, axis=1, stable=True))
    nonzero = jnp.sum(flat > 0, axis=1, keepdims=True)
    bin_size = jnp.maximum(nonzero // num_steps, 1)
    times = jnp.where(flat > 0, rank // bin_size, num_steps)
    times = jnp.minimum(times, num_steps).reshape(values.shape)
    steps = jnp.arange(num_steps).reshape((num_steps,) + (1,) * values.ndim)
    return (steps == times[None]).astype(jnp.float32)


def encode_images(
    images: Array, num_steps: int, kernels: Array, threshold: float = 50.0, norm_radius: int = 8
) -> Array:
    """``[B, H, W, 1]`` images -> ``[T, B, H, W, F]`` DoG latency spikes."""
    return intensity_to_latency(dog_filter(images, kernels, threshold, norm_radius), num_steps)


# ---------------------------------------------------------------------------
# Spike representations


def to_cumulative(spikes: Array) -> Array:
    """One-hot ``[T, ...]`` -> "has fired by step t" (0/1 float).

    Built from the first-spike times (``t >= t_first``) rather than a
    ``cumsum``: XLA lowers scans along an axis to slow windowed reductions on
    CPU, an ``argmax`` over ``T`` is cheap.
    """
    num_steps = spikes.shape[0]
    steps = jnp.arange(num_steps).reshape((num_steps,) + (1,) * (spikes.ndim - 1))
    return (steps >= spike_times(spikes)[None]).astype(jnp.float32)


def to_onehot(fired: Array) -> Array:
    """Cumulative ``[T, ...]`` -> one spike at the first step it is 1."""
    return _first_true(fired > 0)


def spike_times(spikes: Array) -> Array:
    """First-spike step of each neuron (``int32 [B, ...]``), ``T`` if silent."""
    num_steps = spikes.shape[0]
    fired = spikes > 0
    return jnp.where(jnp.any(fired, axis=0), jnp.argmax(fired, axis=0), num_steps).astype(jnp.int32)


# ---------------------------------------------------------------------------
# Layers


def init_conv_weights(
    key: Array, kernel: int, in_channels: int, out_channels: int, mean: float = 0.8, std: float = 0.05
) -> Array:
    """``N(mean, std)`` weights clipped to [0, 1] (SpykeTorch's default 0.8 +- 0.05)."""
    w = mean + std * jax.random.normal(key, (kernel, kernel, in_channels, out_channels), jnp.float32)
    return jnp.clip(w, 0.0, 1.0)


def conv_potentials(spikes: Array, weights: Array, padding: int = 0) -> Array:
    """Membrane potentials of non-leaky integrate-and-fire neurons, before firing.

    ``v[t] = sum_{t' <= t} W * s[t']`` (``*`` = 2-D cross-correlation,
    stride 1): no leak and no reset, so with ``W >= 0`` the potential only
    grows while input spikes arrive.

    Args:
      spikes: ``[T, B, H, W, C_in]`` one-hot spikes.
      weights: ``[kh, kw, C_in, C_out]``.
      padding: zeros (silent inputs) added on each side.

    Returns:
      ``[T, B, H', W', C_out]`` potentials.
    """
    check_spikes(spikes)
    check_weights(weights)
    if spikes.shape[-1] != weights.shape[2]:
        raise ValueError(
            f"spikes have {spikes.shape[-1]} channels but weights {tuple(weights.shape)} expect {weights.shape[2]}"
        )
    num_steps, batch = spikes.shape[:2]
    cum = to_cumulative(spikes).reshape((num_steps * batch,) + spikes.shape[2:])
    # All T waves go through one conv call ([T*B] batch): the time loop costs nothing extra.
    pot = jax.lax.conv_general_dilated(
        cum, weights, (1, 1), ((padding, padding), (padding, padding)), dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    return pot.reshape((num_steps, batch) + pot.shape[1:])


def _first_true(mask: Array) -> Array:
    """One-hot ``[T, ...]`` at the first ``True`` along time (none if never)."""
    num_steps = mask.shape[0]
    first = jnp.where(jnp.any(mask, axis=0), jnp.argmax(mask, axis=0), num_steps)
    steps = jnp.arange(num_steps).reshape((num_steps,) + (1,) * (mask.ndim - 1))
    return (steps == first[None]).astype(jnp.float32)


def fire(potentials: Array, threshold: float) -> tuple[Array, Array]:
    """Integrate-and-fire output: one spike at the first ``v[t] > thr``.

    ``s[t] = H(v[t] - thr) * prod_{t' < t} (1 - H(v[t'] - thr))`` with the
    strict step ``H(0) = 0`` (SpykeTorch's ``fire`` keeps ``v > thr``), so
    a neuron fires once even if its potential could fall again. ``thr =
    inf`` gives no spikes (a decision layer read by its final potential).

    Returns:
      ``(spikes, v_at_spike)``: ``[T, ...]`` one-hot spikes and ``[...]``
      the potential at each neuron's spike (0 if silent), the tie-breaker of
      the inhibition rules.
    """
    above = potentials > threshold
    num_steps = potentials.shape[0]
    fired = jnp.any(above, axis=0)
    first = jnp.argmax(above, axis=0)
    v_at_spike = jnp.where(fired, jnp.take_along_axis(potentials, first[None], axis=0)[0], 0.0)
    steps = jnp.arange(num_steps).reshape((num_steps,) + (1,) * (potentials.ndim - 1))
    spikes = ((steps == first[None]) & fired[None]).astype(jnp.float32)
    return spikes, v_at_spike


def pool(spikes: Array, window: int, stride: int, padding: int = 0) -> Array:
    """Pooling by earliest spike: a pooled neuron fires when its first input does.

    ``t_out = min_{window} t_in`` (max-pooling of the cumulative wave).

    Args:
      spikes: ``[T, B, H, W, C]`` one-hot.

    Returns:
      ``[T, B, H', W', C]`` one-hot, ``H' = (H + 2 pad - window) // stride + 1``.
    """
    check_spikes(spikes)
    cum = to_cumulative(spikes)
    pooled = jax.lax.reduce_window(
        cum,
        0.0,
        jax.lax.max,
        (1, 1, window, window, 1),
        (1, 1, stride, stride, 1),
        ((0, 0), (0, 0), (padding, padding), (padding, padding), (0, 0)),
    )
    return to_onehot(pooled)


def _rank_score(times: Array, v_at_spike: Array, num_steps: int) -> Array:
    """Earlier spike first, then higher potential; 0 for silent neurons."""
    # Potentials are bounded by the fan-in; scaling time by (max v + 1) makes the order lexicographic.
    scale = jnp.max(v_at_spike) + 1.0
    return jnp.where(times < num_steps, (num_steps - times) * scale + v_at_spike, 0.0)


def pointwise_inhibition(spikes: Array, v_at_spike: Array | None = None) -> Array:
    """Lateral inhibition across features: one spiking feature per location.

    At each ``(b, h, w)`` the feature that spikes first keeps its spike
    (ties: the higher ``v_at_spike``, then the lower index); all others are
    silenced (SpykeTorch ``pointwise_inhibition``).

    Args:
      spikes: ``[T, B, H, W, C]`` one-hot.
      v_at_spike: ``[B, H, W, C]`` tie-breaker (default: none).
    """
    check_spikes(spikes)
    num_steps = spikes.shape[0]
    times = spike_times(spikes)
    if v_at_spike is None:
        v_at_spike = jnp.zeros(times.shape, jnp.float32)
    score = _rank_score(times, v_at_spike, num_steps)
    winner = jnp.argmax(score, axis=-1)
    keep = jax.nn.one_hot(winner, spikes.shape[-1], dtype=spikes.dtype)
    return spikes * keep[None]


class Winners(NamedTuple):
    """k-WTA result per example.

    Attributes:
      index: ``int32 [B, k, 3]`` winner positions ``(h, w, c)``.
      valid: ``bool [B, k]``; fewer than ``k`` neurons may have spiked.
    """

    index: Array
    valid: Array


def k_winners(spikes: Array, v_at_spike: Array, k: int, radius: int = 0) -> Winners:
    """k-winners-take-all over feature maps with an inhibition radius.

    Greedily, ``k`` times: the earliest spiking neuron (ties: highest
    potential at its spike, then lowest flat index) wins; its whole feature
    map is inhibited (one winner per feature) and so is every feature at
    positions within Chebyshev distance ``radius`` of it (SpykeTorch
    ``get_k_winners``; ``radius = 0`` inhibits the feature only).

    Args:
      spikes: ``[T, B, H, W, C]`` one-hot.
      v_at_spike: ``[B, H, W, C]``.
      k: winners per example (static).
      radius: inhibition radius (static).

    Returns:
      :class:`Winners` (``index [B, k, 3]``, ``valid [B, k]``).
    """
    check_spikes(spikes)
    if k < 1 or radius < 0:
        raise ValueError(f"k must be >= 1 and radius >= 0, got k={k}, radius={radius}")
    num_steps = spikes.shape[0]
    times = spike_times(spikes)
    height, width, channels = times.shape[1:]
    hh = jnp.arange(height)[:, None, None]
    ww = jnp.arange(width)[None, :, None]
    cc = jnp.arange(channels)[None, None, :]

    def one(times_b, v_b):
        score = _rank_score(times_b, v_b, num_steps)

        def body(score, _):
            flat = jnp.argmax(score)
            ok = score.reshape(-1)[flat] > 0
            h, rem = jnp.divmod(flat, width * channels)
            w, c = jnp.divmod(rem, channels)
            mask = cc == c
            if radius > 0:
                mask = mask | ((jnp.abs(hh - h) <= radius) & (jnp.abs(ww - w) <= radius))
            score = jnp.where(ok & mask, 0.0, score)
            return score, (jnp.stack([h, w, c]).astype(jnp.int32), ok)

        _, (index, valid) = jax.lax.scan(body, score, None, length=k)
        return index, valid

    index, valid = jax.vmap(one)(times, v_at_spike)
    return Winners(index, valid)


# ---------------------------------------------------------------------------
# Plasticity


def stdp_pairings(in_spikes: Array, out_spikes: Array, winners: Winners, kernel: int, padding: int = 0) -> Array:
    """Causal pairing of each winner with its receptive field.

    ``pair[b, i, dy, dx, c] = t_in <= t_out`` for the input at
    ``(h + dy, w + dx, c)`` of the (padded) input and winner ``i = (h, w, f)``;
    a silent input (``t_in = T``) never pairs causally.

    Returns:
      ``bool [B, k, kh, kw, C_in]``.
    """
    check_spikes(in_spikes, "in_spikes")
    check_spikes(out_spikes, "out_spikes")
    num_steps = in_spikes.shape[0]
    t_in = spike_times(in_spikes)
    if padding:
        t_in = jnp.pad(t_in, ((0, 0), (padding, padding), (padding, padding), (0, 0)), constant_values=num_steps)
    t_out = spike_times(out_spikes)
    c_in = t_in.shape[-1]

    def one(t_in_b, t_out_b, index_b):
        def patch(idx):
            h, w, f = idx[0], idx[1], idx[2]
            rf = jax.lax.dynamic_slice(t_in_b, (h, w, 0), (kernel, kernel, c_in))
            return (rf <= t_out_b[h, w, f]) & (rf < num_steps)

        return jax.vmap(patch)(index_b)

    return jax.vmap(one)(t_in, t_out, winners.index)


def stdp_update(
    weights: Array,
    pairings: Array,
    winners: Winners,
    a_plus: Array | float,
    a_minus: Array | float,
    *,
    soft_bound: bool = True,
    bounds: tuple[float, float] = (0.0, 1.0),
) -> Array:
    """Soft-bound STDP on the winners' kernels, one example after another.

    For winner ``(h, w, f)`` and each synapse ``(dy, dx, c)`` of kernel ``f``::

        dw = a+ w (1 - w)   if t_in <= t_out   (pre no later than post: LTP)
        dw = a- w (1 - w)   otherwise          (a- < 0: LTD)
        w <- clip(w + dw, 0, 1)

    (Kheradpisheh et al. 2018; SpykeTorch ``STDP`` with the stabiliser
    ``(w - lo)(hi - w)``.) ``soft_bound=False`` drops the ``w (1 - w)``
    factor (plain additive STDP, clipped to ``bounds``). The ``k`` winners of
    one example hold different features, so their updates never overlap; the
    ``B`` examples are applied in order (a ``scan``), so the soft bound acts
    after each example as in online training. ``a+``/``a-`` may be ``[B]``
    (per-example rates of a schedule).

    Args:
      weights: ``[kh, kw, C_in, C_out]`` in ``bounds``.
      pairings: ``bool [B, k, kh, kw, C_in]`` from :func:`stdp_pairings`.
      winners: the :class:`Winners` the pairings came from.

    Returns:
      Updated weights, same shape, inside ``bounds``.
    """
    check_weights(weights, low=bounds[0], high=bounds[1])
    batch, k = pairings.shape[:2]
    if pairings.shape[2:] != weights.shape[:3] or winners.index.shape[:2] != (batch, k):
        raise ValueError(
            f"pairings {tuple(pairings.shape)} / winners {tuple(winners.index.shape)} do not match "
            f"weights {tuple(weights.shape)}"
        )
    lo, hi = bounds
    a_plus = jnp.broadcast_to(jnp.asarray(a_plus, jnp.float32), (batch,))
    a_minus = jnp.broadcast_to(jnp.asarray(a_minus, jnp.float32), (batch,))

    def example(w, inputs):
        pair, index, valid, ap, an = inputs
        feat = index[:, 2]
        w_f = jnp.moveaxis(w[..., feat], -1, 0)  # [k, kh, kw, C_in]
        lr = jnp.where(pair, ap, an)
        stab = (w_f - lo) * (hi - w_f) if soft_bound else 1.0
        dw = jnp.where(valid[:, None, None, None], lr * stab, 0.0)
        w = w.at[..., feat].add(jnp.moveaxis(dw, 0, -1))
        return jnp.clip(w, lo, hi), None

    weights, _ = jax.lax.scan(example, weights, (pairings, winners.index, winners.valid, a_plus, a_minus))
    return weights


def learning_rates(
    num_seen: Array | int,
    a_plus: float = 0.004,
    ratio: float = -0.75,
    every: int = 500,
    factor: float = 2.0,
    max_a_plus: float = 0.15,
) -> tuple[Array, Array]:
    """SpykeTorch's rising STDP rates after ``num_seen`` training examples.

    ``a+ = min(a+_0 * factor^(num_seen // every), max)``, ``a- = ratio * a+``:
    small steps while the features are still random, then faster
    convergence (Mozafari et al. 2019, MozafariMNIST2018 example).
    """
    num_seen = jnp.asarray(num_seen)
    ap = jnp.minimum(a_plus * factor ** (num_seen // every).astype(jnp.float32), max_a_plus)
    return ap, ratio * ap


def rstdp_update(
    weights: Array,
    pairings: Array,
    post: Array,
    reward: Array,
    a_reward: tuple[Array | float, Array | float] = (0.004, -0.003),
    a_punish: tuple[Array | float, Array | float] = (-0.004, 0.0005),
    bounds: tuple[float, float] = (0.2, 0.8),
) -> Array:
    """Reward-modulated STDP of a decision layer, one example after another.

    Only the winning decision neuron (output feature ``j = post``) learns;
    for each of its synapses ``i``::

        reward  (r = +1): dw_ij = a+_r if pre_i fired no later than j else a-_r   (STDP)
        punish  (r = -1): dw_ij = a+_p if pre_i fired no later than j else a-_p   (anti-STDP)
        r = 0:            no change
        w <- clip(w + dw, lo, hi)

    with ``a+_r > 0 > a-_r`` and ``a+_p < 0 < a-_p``, so punishment flips the
    sign of every change. Additive (no ``w (1 - w)`` factor) with hard bounds
    ``[0.2, 0.8]``, as in Mozafari et al. 2019 (Pattern Recognition) and the
    SpykeTorch ``MozafariMNIST2018`` example.

    Args:
      weights: ``[..., N_out]`` (a conv kernel ``[kh, kw, C_in, C_out]`` or a
        dense ``[N_in, N_out]``) in ``bounds``.
      pairings: ``bool [B, *weights.shape[:-1]]`` causal pre/post pairs of the
        winner's receptive field.
      post: ``int32 [B]`` the winning output feature.
      reward: ``[B]`` in {+1, 0, -1}.

    Returns:
      Updated weights, same shape.
    """
    check_weights(weights, ndim=weights.ndim, low=bounds[0], high=bounds[1])
    if weights.ndim < 2 or pairings.shape[1:] != weights.shape[:-1]:
        raise ValueError(f"pairings {tuple(pairings.shape)} do not match weights {tuple(weights.shape)}")
    if post.shape != pairings.shape[:1] or reward.shape != pairings.shape[:1]:
        raise ValueError(f"post {tuple(post.shape)} and reward {tuple(reward.shape)} must be [B] = {pairings.shape[:1]}")
    lo, hi = bounds

    def example(w, inputs):
        pair, j, r = inputs
        dw_r = jnp.where(pair, a_reward[0], a_reward[1])
        dw_p = jnp.where(pair, a_punish[0], a_punish[1])
        dw = jnp.where(r > 0, dw_r, jnp.where(r < 0, dw_p, 0.0))
        return w.at[..., j].set(jnp.clip(w[..., j] + dw, lo, hi)), None

    weights, _ = jax.lax.scan(example, weights, (pairings, post, reward))
    return weights


# ---------------------------------------------------------------------------
# Energy bookkeeping


def conv_synops(spikes: Array, kernel: int, out_channels: int, padding: int = 0, stride: int = 1) -> Array:
    """Synaptic events of a conv layer per example: each input spike times its fan-out.

    An input spike reaches every output position whose receptive field holds
    it (fewer at the border) in each of ``C_out`` maps; counted exactly by
    correlating the spike-count map with a ones kernel.

    Returns:
      ``float32 [B]``.
    """
    check_spikes(spikes)
    counts = jnp.sum(spikes, axis=(0, 4))[..., None]  # [B, H, W, 1]
    ones = jnp.ones((kernel, kernel, 1, 1), jnp.float32)
    reach = jax.lax.conv_general_dilated(
        counts, ones, (stride, stride), ((padding, padding), (padding, padding)), dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    return jnp.sum(reach, axis=(1, 2, 3)) * out_channels
