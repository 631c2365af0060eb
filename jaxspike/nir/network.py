"""A feed-forward chain of jaxspike layers and shape/readout steps: what a NIR graph becomes.

:class:`Network` runs its ``stages`` in order on a time-major sequence
(``[T, B, *features]``, features last, as everywhere in jaxspike). A stage is
a jaxspike layer (:class:`~jaxspike.layers.SpikingDense`,
:class:`~jaxspike.layers.SpikingConv`,
:class:`~jaxspike.layers.SpikingConvTranspose`,
:class:`~jaxspike.layers.DenseReadout`) or one of the small steps here
(:class:`Flatten`, :class:`Unflatten`, :class:`Bernoulli`, :class:`Readout`).
Each stage's parameters sit under its name, so ``params["enc_layers_0"]`` is
the layer's own ``{"kernel", "bias", "cell"?}``.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxspike import encoding
from jaxspike.nir import nodes

Array = jax.Array

__all__ = ["Network", "Flatten", "Unflatten", "Bernoulli", "Readout", "ORDERS"]

ORDERS = ("hwc", "chw")


def _check_order(order: str) -> None:
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")


class Flatten(nn.Module):
    """``[T, B, H, W, C] -> [T, B, H*W*C]``.

    ``order="hwc"``: jaxspike's reshape (features last, as the models
    flatten); ``"chw"``: NIR's ``Flatten`` of a channels-first tensor, i.e.
    the channels transposed to the front first.
    """

    order: str = "hwc"

    def __call__(self, x_seq: Array):
        _check_order(self.order)
        if self.order == "chw" and x_seq.ndim == 5:
            x_seq = jnp.moveaxis(x_seq, -1, 2)
        return x_seq.reshape(x_seq.shape[:2] + (-1,)), {}


class Unflatten(nn.Module):
    """``[T, B, N] -> [T, B, *shape]`` with ``shape = (H, W, C)`` (jaxspike layout).

    ``order="hwc"``: a plain reshape; ``"chw"``: NIR's row-major unflatten to
    ``(C, H, W)`` followed by a transpose to ``(H, W, C)``.
    """

    shape: tuple[int, ...]
    order: str = "hwc"

    def __call__(self, x_seq: Array):
        _check_order(self.order)
        shape = tuple(self.shape)
        if self.order == "chw" and len(shape) == 3:
            y = x_seq.reshape(x_seq.shape[:2] + (shape[2], shape[0], shape[1]))
            return jnp.moveaxis(y, 2, -1), {}
        return x_seq.reshape(x_seq.shape[:2] + shape), {}


class Bernoulli(nn.Module):
    """Spikes ``z_t = 1[u_t < p_t]``, ``u ~ U[0, 1)`` from ``key``, of the same shape as the input.

    ``input="probability"``: the input is ``p``; ``"logit"``: ``p = sigmoid(input)``.
    The forward value is the hard sample; the backward pass is straight
    through (``dz/dp = 1``, Bengio et al. 2013). Drawn as
    :func:`jaxspike.noise.bernoulli_process` and the straight-through sampler
    draw (one ``uniform(key, p.shape)``), so the same key gives the same spikes.
    """

    input: str = "probability"

    def __call__(self, x_seq: Array, key: Array):
        if self.input not in nodes.BERNOULLI_INPUTS:
            raise ValueError(f"Bernoulli input must be one of {nodes.BERNOULLI_INPUTS}, got {self.input!r}")
        if key is None:
            raise ValueError("a network with a Bernoulli stage needs a PRNG key: net.apply(variables, x, key)")
        p = jax.nn.sigmoid(x_seq) if self.input == "logit" else x_seq
        hard = (jax.random.uniform(key, p.shape, p.dtype) < p).astype(p.dtype)
        return hard + (p - jax.lax.stop_gradient(p)), {}


class Readout(nn.Module):
    """Collapses time: ``[T, B, ...] -> [B, ...]`` (``mode="none"``: elementwise only), then an activation.

    Modes: ``"mean"`` (of spikes: the firing rate), ``"last"``, ``"max"``,
    ``"first_spike"`` (:func:`jaxspike.encoding.first_spike_intensity`,
    ``1 - t_first / T``), ``"none"``. Activation: ``"identity"`` or ``"sigmoid"``.
    """

    mode: str = "mean"
    activation: str = "identity"

    def __call__(self, x_seq: Array):
        if self.mode not in nodes.READOUT_MODES:
            raise ValueError(f"readout mode must be one of {nodes.READOUT_MODES}, got {self.mode!r}")
        if self.activation not in nodes.ACTIVATIONS:
            raise ValueError(f"readout activation must be one of {nodes.ACTIVATIONS}, got {self.activation!r}")
        if self.mode == "mean":
            out = jnp.mean(x_seq, axis=0)
        elif self.mode == "last":
            out = x_seq[-1]
        elif self.mode == "max":
            out = jnp.max(x_seq, axis=0)
        elif self.mode == "first_spike":
            out = encoding.first_spike_intensity(x_seq)
        else:
            out = x_seq
        return (jax.nn.sigmoid(out) if self.activation == "sigmoid" else out), {}


class Network(nn.Module):
    """Stages run in order; see the module docstring.

    Attributes:
      names: one name per stage (its parameter key), unique.
      stages: the stage modules.
    """

    names: Sequence[str]
    stages: Sequence[nn.Module]

    @nn.compact
    def __call__(self, x_seq: Array, key: Array | None = None):
        """Runs the network.

        Args:
          x_seq: ``[T, B, *features]`` input (spikes, currents, or the
            firing probabilities of a leading :class:`Bernoulli` stage).
          key: PRNG key for :class:`Bernoulli` stages; with one such stage it
            gets ``key`` itself, with several the ``i``-th gets
            ``jax.random.split(key, n)[i]``.

        Returns:
          ``(output, aux)``, ``aux[name]`` being each stage's aux (layer counts).
        """
        if len(self.names) != len(self.stages) or len(set(self.names)) != len(self.names):
            raise ValueError(f"a Network needs one unique name per stage, got names {tuple(self.names)}")
        encoding.check_time_major(x_seq, "network input", min_ndim=3)
        n_random = sum(isinstance(s, Bernoulli) for s in self.stages)
        if n_random > 1 and key is not None:
            keys = iter(jax.random.split(key, n_random))
        else:
            keys = iter([key] * n_random)
        aux = {}
        for name, stage in zip(self.names, self.stages):
            module = stage.clone(name=name, parent=self)
            if isinstance(stage, Bernoulli):
                x_seq, aux[name] = module(x_seq, next(keys))
            else:
                x_seq, aux[name] = module(x_seq)
        return x_seq, aux


def hwc_to_chw_index(shape: Sequence[int]) -> np.ndarray:
    """``idx`` with ``chw_flat[j] = hwc_flat[idx[j]]`` for a tensor of jaxspike shape ``(H, W, C)``."""
    return np.arange(int(np.prod(shape))).reshape(tuple(shape)).transpose(2, 0, 1).reshape(-1)
