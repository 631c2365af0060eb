"""A frozen STDP-learned feature extractor as the spiking front end of other models.

The S1 (and optionally S2) layers of the Mozafari et al. network
(:mod:`jaxspike.models.spyketorch_net`), learned by unsupervised STDP
(``python -m launch.stdp``), turn images into spike trains that a
surrogate-trained model reads instead of its own input coding::

    images [B, 28, 28, 1] -> DoG + rank-order latency   [T, B, 28, 28, 6]
      -> S1 conv 5x5 (frozen), IF fire once, pool 2x2    [T, B, 14, 14, C1]
      -> S2 conv 3x3 (frozen), IF fire once, pool 3x3    [T, B, 4, 4, C2]   (layers=2)
      -> flatten                                          [T, B, F]

The forward pass equals :func:`jaxspike.models.spyketorch_net.forward`
spike for spike (no inhibition at inference, as in SpykeTorch), run at the
consumer's ``T``. The weights are constants (``stop_gradient``), never
parameters of the consumer, so only the layers after the front end train.

Gradient to the input. A GAN's generator learns through its discriminator,
so the front end is differentiable in the pixels while its forward pass
stays exactly binary. Every stage is written as a *cumulative* wave
``c_t = 1[fired by step t]`` (non-negative weights make potentials
non-decreasing in ``t``, so the first threshold crossing is the only spike)
with a surrogate step in the backward pass:

* latency code: ``c_t = H((v - theta_t) / theta_t)``, ``v`` the locally
  normalised DoG response and ``theta_t`` the smallest response that has
  spiked by bin ``t`` (held constant, straight-through: the forward value is
  the exact rank-order code of :func:`jaxspike.stdp.intensity_to_latency`);
  the DoG threshold and the local normaliser are passed straight through
  too (the normaliser floored at 1, so blank regions give a finite
  gradient);
* IF layers: ``c_out_t = H(V_t / thr - 1)`` with ``V_t = W * c_in_t``;
* pooling: the max of the cumulative wave (earliest spike).

``H`` is the fast-sigmoid surrogate (Zenke & Ganguli 2018) of
:mod:`jaxspike.surrogates`. The consumers hold the front end by a spec
string (a config field): ``"PATH"`` or ``"PATH?layers=1&output=cumulative"``
with ``PATH`` a run folder of :func:`jaxspike.local.stdp.run`, read once by
:func:`jaxspike.local.stdp.load_frontend`; the model then takes the
:class:`STDPFrontEnd` (a pytree of constant weights) as an argument.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxspike import stdp, surrogates

Array = jax.Array

__all__ = ["FrontEndConfig", "STDPFrontEnd", "parse_spec", "spec_fields", "OUTPUTS"]

OUTPUTS = ("spikes", "cumulative")


class FrontEndConfig(NamedTuple):
    """Constants of the front end (defaults: those of the trained network).

    Attributes:
      layers: 1 (pooled S1, ``14 x 14 x C1`` features) or 2 (pooled S2,
        ``4 x 4 x C2``).
      output: ``"spikes"`` (one spike per feature at its first-spike step) or
        ``"cumulative"`` (1 from that step on: a fired neuron keeps feeding
        its targets, SpykeTorch's wave representation).
      thr1, thr2: IF thresholds; dog_threshold, norm_radius: DoG input layer.
      slope: fast-sigmoid surrogate slope on the normalised potentials.
      steps: time bins the front end itself runs (0 = the consumer's ``T``);
        with ``0 < steps < T`` bin ``k`` is placed at step ``floor(k T /
        steps)`` of the consumer (coarser timing, ``T / steps`` times less
        work: the front end's cost grows linearly with its bins).
    """

    layers: int = 2
    output: str = "spikes"
    thr1: float = 15.0
    thr2: float = 10.0
    dog_threshold: float = 50.0
    norm_radius: int = 8
    slope: float = 5.0
    steps: int = 0


_DOG = stdp.dog_kernels()


def _conv(x: Array, w: Array, padding: int) -> Array:
    return jax.lax.conv_general_dilated(
        x, w, (1, 1), ((padding, padding), (padding, padding)), dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


def _local_mean(x: Array, radius: int) -> Array:
    size = 2 * radius + 1
    total = jax.lax.reduce_window(
        x, 0.0, jax.lax.add, (1, size, size, 1), (1, 1, 1, 1), ((0, 0), (radius, radius), (radius, radius), (0, 0))
    )
    return total / (size * size)


def _straight_through(hard: Array, soft: Array) -> Array:
    """Forward ``hard`` exactly, backward the derivative of ``soft``."""
    return hard + (soft - jax.lax.stop_gradient(soft))


@jax.tree_util.register_pytree_node_class
class STDPFrontEnd:
    """Frozen STDP conv layers mapping images to time-major spike trains.

    A pytree: its weights are the leaves, its :class:`FrontEndConfig` the
    static part, so a model takes it as an argument like any parameters
    (constants: the models never differentiate with respect to them).

    Call ``front(images [B, 28, 28, 1], num_steps) -> (spikes [T, B, F], aux)``;
    ``aux`` holds per-example energy counts of the DoG filter (analog MACs)
    and of each IF layer (synaptic events, spikes), in the layout of
    :mod:`jaxspike.layers` so :func:`jaxspike.energy.energy_report` counts
    them. Deterministic: no randomness anywhere (the latency code is a rank
    order).

    Args:
      w1: ``[5, 5, 6, C1]`` S1 weights in [0, 1].
      w2: ``[3, 3, C1, C2]`` S2 weights in [0, 1] (needed for ``layers=2``).
      config: :class:`FrontEndConfig`.
    """

    def __init__(self, w1, w2=None, config: FrontEndConfig = FrontEndConfig()):
        if config.layers not in (1, 2):
            raise ValueError(f"STDP front end: layers must be 1 or 2, got {config.layers!r}")
        if config.output not in OUTPUTS:
            raise ValueError(f"STDP front end: output must be one of {OUTPUTS}, got {config.output!r}")
        w1 = np.asarray(w1, np.float32)
        stdp.check_weights(w1, "w1")
        if w1.shape[:3] != (5, 5, _DOG.shape[-1]):
            raise ValueError(f"w1 must be [5, 5, {_DOG.shape[-1]}, C1], got shape {w1.shape}")
        if config.layers == 2:
            if w2 is None:
                raise ValueError("STDP front end with layers=2 needs the S2 weights w2")
            w2 = np.asarray(w2, np.float32)
            stdp.check_weights(w2, "w2")
            if w2.shape[:3] != (3, 3, w1.shape[-1]):
                raise ValueError(f"w2 must be [3, 3, {w1.shape[-1]}, C2] to follow w1 {w1.shape}, got shape {w2.shape}")
        self.w1, self.w2, self.config = w1, (w2 if config.layers == 2 else None), config
        self._spike = surrogates.fast_sigmoid(config.slope)

    def tree_flatten(self):
        return (self.w1, self.w2), self.config

    @classmethod
    def tree_unflatten(cls, config, weights):
        front = object.__new__(cls)  # the weights were checked when the front end was made
        front.w1, front.w2 = weights
        front.config = config
        front._spike = surrogates.fast_sigmoid(config.slope)
        return front

    @property
    def feature_shape(self) -> tuple[int, int, int]:
        """``(H, W, C)`` of the output map for 28 x 28 input."""
        if self.config.layers == 1:
            return (14, 14, self.w1.shape[-1])
        return (4, 4, self.w2.shape[-1])

    @property
    def num_features(self) -> int:
        return int(np.prod(self.feature_shape))

    def _input_wave(self, images: Array, num_steps: int) -> Array:
        """Cumulative rank-order latency wave ``[T, B, 28, 28, 6]`` of the DoG responses."""
        cfg = self.config
        resp = _conv(images * 255.0, jnp.asarray(_DOG), _DOG.shape[0] // 2)
        kept = jnp.where(resp < cfg.dog_threshold, 0.0, resp)
        if cfg.norm_radius > 0:
            mean = jax.lax.stop_gradient(_local_mean(kept, cfg.norm_radius))
            hard = kept / (mean + 1e-12)  # = stdp.dog_filter(images)
            # Floored so that blank regions (local mean 0) give a finite gradient.
            soft = resp / jnp.maximum(mean, 1.0)
        else:
            hard, soft = kept, resp / cfg.dog_threshold
        values = _straight_through(jax.lax.stop_gradient(hard), soft)
        # Exact rank-order code (forward; = stdp.intensity_to_latency, from one argsort) and the
        # per-bin thresholds theta_t (backward).
        flat = jax.lax.stop_gradient(hard).reshape(hard.shape[0], -1)
        batch, size = flat.shape
        order = jnp.argsort(-flat, axis=1, stable=True)
        rows = jnp.arange(batch)[:, None]
        rank = jnp.zeros_like(order).at[rows, order].set(jnp.broadcast_to(jnp.arange(size), order.shape))
        desc = flat[rows, order]
        nonzero = jnp.sum(flat > 0, axis=1)
        bin_size = jnp.maximum(nonzero // num_steps, 1)
        times = jnp.where(flat > 0, jnp.minimum(rank // bin_size[:, None], num_steps), num_steps)
        steps = jnp.arange(num_steps).reshape(num_steps, 1, 1)
        hard_c = (steps >= times[None]).astype(jnp.float32).reshape((num_steps,) + hard.shape)
        last = jnp.minimum((jnp.arange(num_steps)[:, None] + 1) * bin_size[None] - 1, jnp.maximum(nonzero - 1, 0)[None])
        theta = desc[jnp.arange(batch)[None, :], last]  # [T, B]
        theta = jnp.maximum(theta, 1e-3).reshape(theta.shape + (1, 1, 1))
        soft_c = self._spike(values[None] / theta - 1.0)
        return _straight_through(hard_c, soft_c)

    def _if_layer(self, wave: Array, w: np.ndarray, padding: int, thr: float) -> Array:
        """Cumulative output wave of non-leaky IF neurons that fire once."""
        num_steps, batch = wave.shape[:2]
        pot = _conv(wave.reshape((num_steps * batch,) + wave.shape[2:]), jnp.asarray(w), padding)
        return self._spike(pot / thr - 1.0).reshape((num_steps, batch) + pot.shape[1:])

    @staticmethod
    def _pool(wave: Array, window: int) -> Array:
        return jax.lax.reduce_window(
            wave, -jnp.inf, jax.lax.max, (1, 1, window, window, 1), (1, 1, window, window, 1), "VALID"
        )

    def _check_steps(self, num_steps) -> int:
        """The front end's own bins for a consumer running ``num_steps``."""
        if isinstance(num_steps, bool) or not isinstance(num_steps, (int, np.integer)) or num_steps < 1:
            raise ValueError(f"num_steps must be a positive int, got {num_steps!r}")
        if self.config.steps > num_steps:
            raise ValueError(f"the STDP front end runs {self.config.steps} bins but the model only {num_steps} steps")
        return int(self.config.steps or num_steps)

    def _place(self, wave: Array, consumer_steps: int) -> Array:
        """Cumulative wave at the own bins ``[bins, B, ...]`` -> the output ``[T, B, F]``."""
        bins = wave.shape[0]
        if bins < consumer_steps:
            # Bin k -> step floor(k T / bins); the wave holds its value until the next bin.
            start = (np.arange(bins) * consumer_steps) // bins
            bin_of_step = np.searchsorted(start, np.arange(consumer_steps), side="right") - 1
            wave = wave[bin_of_step]
        if self.config.output == "spikes":
            wave = wave - jnp.concatenate([jnp.zeros_like(wave[:1]), wave[:-1]], axis=0)
        return wave.reshape(wave.shape[:2] + (-1,))

    def first_bins(self, images: Array, num_steps: int) -> Array:
        """Each feature's first-spike bin, ``uint8 [B, F]`` (``bins`` = never fired).

        The whole forward pass in compact form, for caching: the front end is
        deterministic and frozen, so a consumer that needs no gradient to the
        pixels (the VAE) can compute this once per training image and turn it
        back into the spike trains of ``__call__`` with :meth:`from_first_bins`
        (equal spike for spike). Forward only (no gradient).
        """
        bins = self._check_steps(num_steps)
        if bins > 255:
            raise ValueError(f"first_bins stores bins as uint8: at most 255 bins, got {bins}")
        wave = self._forward(jax.lax.stop_gradient(jnp.asarray(images, jnp.float32)), bins)[0]
        fired = jnp.sum(wave > 0.5, axis=0)  # cumulative: fired at the last `fired` bins
        return (bins - fired).reshape(wave.shape[1], -1).astype(jnp.uint8)

    def from_first_bins(self, first: Array, num_steps: int) -> Array:
        """Spike trains ``[T, B, F]`` of :meth:`first_bins`' output ``[B, F]``, as ``__call__`` gives them."""
        bins = self._check_steps(num_steps)
        if first.ndim != 2 or first.shape[1] != self.num_features:
            raise ValueError(f"cached STDP features must be [B, {self.num_features}] first-spike bins, got shape {tuple(first.shape)}")
        wave = (jnp.arange(bins).reshape(bins, 1, 1) >= first[None].astype(jnp.int32)).astype(jnp.float32)
        return self._place(wave, num_steps)

    def __call__(self, images: Array, num_steps: int) -> tuple[Array, dict]:
        bins = self._check_steps(num_steps)
        out, aux = self._forward(jnp.asarray(images, jnp.float32), bins)
        return self._place(out, num_steps), aux

    def _forward(self, images: Array, num_steps: int) -> tuple[Array, dict]:
        """Cumulative pooled output wave ``[bins, B, H, W, C]`` at the own bins, and the energy counts."""
        if images.ndim != 4 or tuple(images.shape[1:]) != (28, 28, 1):
            raise ValueError(f"the STDP front end reads grey 28x28 images [B, 28, 28, 1], got shape {tuple(images.shape)}")
        cfg = self.config
        c_in = self._input_wave(images, num_steps)
        c1 = self._if_layer(c_in, self.w1, 2, cfg.thr1)
        p1 = self._pool(c1, 2)
        aux = {"stdp_dog": self._dog_aux(images.shape[0])}
        aux["stdp_s1"] = self._layer_aux(c_in, c1, 5, self.w1.shape[-1], 2)
        out = p1
        if cfg.layers == 2:
            c2 = self._if_layer(p1, self.w2, 1, cfg.thr2)
            aux["stdp_s2"] = self._layer_aux(p1, c2, 3, self.w2.shape[-1], 1)
            out = self._pool(c2, 3)  # 14 -> 4 (the last two rows/columns dropped, as in the network)
        return out, aux

    # -- energy bookkeeping (forward values only) ---------------------------

    def _dog_aux(self, batch: int) -> dict:
        # Analog filtering: every pixel times every non-zero DoG tap (as results/local.md counts it).
        taps = float(np.count_nonzero(_DOG)) * 28 * 28
        zero = jnp.zeros((batch,), jnp.float32)
        return {"synops": zero, "macs": zero + taps}

    @staticmethod
    def _layer_aux(c_in: Array, c_out: Array, kernel: int, out_channels: int, padding: int) -> dict:
        s_in = stdp.to_onehot(jax.lax.stop_gradient(c_in))
        s_out = stdp.to_onehot(jax.lax.stop_gradient(c_out))
        spikes = jnp.sum(s_out, axis=(0, 2, 3, 4))
        neurons = float(np.prod(s_out.shape[2:])) * s_out.shape[0]
        synops = stdp.conv_synops(s_in, kernel, out_channels, padding)
        return {"spike_count": spikes, "firing_rate": spikes / neurons, "synops": synops,
                "macs": jnp.zeros_like(synops)}


# ---------------------------------------------------------------------------
# Specs


def parse_spec(spec: str) -> tuple[str, FrontEndConfig]:
    """``"PATH?layers=1&output=cumulative"`` -> ``(PATH, FrontEndConfig)``."""
    path, fields = spec_fields(spec)
    return path, FrontEndConfig(**fields)


def spec_fields(spec: str) -> tuple[str, dict]:
    """``(PATH, {option: typed value})`` for the options the spec names."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"STDP front-end spec must be a non-empty 'PATH[?key=value&...]' string, got {spec!r}")
    path, _, query = spec.partition("?")
    fields = {}
    for item in filter(None, query.split("&")):
        key, eq, value = item.partition("=")
        if not eq or key not in FrontEndConfig._fields:
            raise ValueError(f"STDP front-end spec {spec!r}: bad option {item!r} (known: {', '.join(FrontEndConfig._fields)})")
        default = getattr(FrontEndConfig(), key)
        try:
            fields[key] = type(default)(value)
        except ValueError:
            raise ValueError(f"STDP front-end spec {spec!r}: {key}={value!r} is not a {type(default).__name__}") from None
    return path, fields
