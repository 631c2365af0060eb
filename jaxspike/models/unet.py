"""Spiking U-Net denoiser for denoising diffusion, and its analog twin.

The denoiser ``eps_theta(x_t, t)`` predicts the noise in a noisy image
(Ho et al. 2020, "Denoising diffusion probabilistic models"); the process
around it is :mod:`jaxspike.families.diffusion`. Layout (``channels =
(C_0, ..., C_{L-1})``, one resolution per entry, ``num_blocks`` residual
blocks per resolution, time-major ``[T, B, H, W, C]`` spikes inside)::

    x_t [B, H, W, C] --direct code, T steps--> stem: conv 3x3 + LIF          (C_0)
      encoder, level l:  num_blocks x ResBlock(C_l)  -> kept for the skip
                         conv 3x3 stride 2 + LIF                              (down_l)
      middle:            ResBlock(C_{L-1})
      decoder, level l:  concat(spikes, kept_l) -> ResBlock(C_l)             (num_blocks x)
                         transposed conv 4x4 stride 2 + LIF                   (up_l)
      readout:           conv 3x3 into non-spiking leaky integrators,
                         membrane averaged over the T steps -> eps [B, H, W, C]

A residual block is the spiking ResNet block, its shortcut entering the
membrane of the block's second neuron (Zheng et al. 2021, "Going deeper with
directly-trained larger spiking neural networks")::

    s1 = LIF(N(conv1(s)) + e_t)                 e_t: the step's current, per channel
    s2 = LIF(N(conv2(s1)) + shortcut(s))        shortcut: s itself (weight 1) or a 1x1 conv

``N`` is the layers' per-step current normalisation (``current_norm``). Every
convolution reads spikes (0/1) except the stem, which reads the noisy image as
a constant current each step (direct coding, Rathi & Roy 2020, "DIET-SNN").
The diffusion step ``t`` is embedded sinusoidally (Vaswani et al. 2017), sent
through a dense layer and SiLU, and projected per block to the current
``e_t`` added to the membranes of the block's first layer at every spike
step; being real valued, these dense layers count multiply-accumulates.

The analog twin has the same layout with SiLU units: each ``LIF(.)`` above is
``SiLU(.)``, the normalisation is the same, and there is no time axis.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxspike import cells, encoding, layers

Array = jax.Array

__all__ = ["MAX_PERIOD", "AnalogUNet", "DrivenState", "SpikingUNet", "driven", "step_embedding"]

MAX_PERIOD = 10_000.0  # longest wavelength of the sinusoidal step embedding (Vaswani et al. 2017)


def step_embedding(t: Array, dim: int, max_period: float = MAX_PERIOD) -> Array:
    """Sinusoidal embedding ``[B, dim]`` of integer diffusion steps ``t [B]``.

    ``[sin(t w_0), ..., sin(t w_{h-1}), cos(t w_0), ..., cos(t w_{h-1})]`` with
    ``h = dim / 2`` and ``w_i = max_period^(-i / h)`` (Vaswani et al. 2017,
    "Attention is all you need", as used for the step by Ho et al. 2020).
    """
    if dim < 2 or dim % 2:
        raise ValueError(f"the step embedding needs an even dim >= 2, got {dim}")
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
    args = jnp.asarray(t, jnp.float32)[:, None] * freqs[None]
    return jnp.concatenate([jnp.sin(args), jnp.cos(args)], axis=-1)


class DrivenState(NamedTuple):
    """State of a :func:`driven` cell: the wrapped cell's state and the step index."""

    inner: Any
    t: Array


def driven(cell: cells.Cell, *, constant: Array | None = None, sequence: Array | None = None) -> cells.Cell:
    """``cell`` whose input current at step ``t`` also receives an external current.

    ``I'_t = I_t + constant + sequence[t]``: ``constant`` broadcasts against
    the state ``[B, *features]`` (e.g. a per-channel current ``[B, 1, 1, C]``)
    and is the same at every step; ``sequence`` is ``[T, B, *features]``. The
    external currents are added after the layer's synapse and normalisation,
    so a layer built with this cell is ``s_t = cell(N(W x_t + b) + e_t)``. The
    cell keeps its name, parameters and constants (it is the same neuron).
    """
    if constant is None and sequence is None:
        return cell

    def init_state(shape, dtype=jnp.float32) -> DrivenState:
        return DrivenState(cell.init_state(shape, dtype), jnp.zeros((), jnp.int32))

    def step(params, state: DrivenState, x_t: Array):
        current = x_t
        if constant is not None:
            current = current + constant
        if sequence is not None:
            current = current + jax.lax.dynamic_index_in_dim(sequence, state.t, axis=0, keepdims=False)
        inner, out = cell.step(params, state.inner, current)
        return DrivenState(inner, state.t + 1), out

    return cells.Cell(cell.init_params, init_state, step, name=cell.name, constants=cell.constants)


def _check_inputs(x: Array, t: Array, levels: int) -> None:
    if x.ndim != 4:
        raise ValueError(f"the denoiser takes images [B, H, W, C], got shape {tuple(x.shape)}")
    if t.shape != x.shape[:1]:
        raise ValueError(f"the denoiser takes one diffusion step per image: t {tuple(t.shape)} for x {tuple(x.shape)}")
    factor = 2 ** (levels - 1)
    if x.shape[1] % factor or x.shape[2] % factor:
        raise ValueError(f"{levels} resolutions halve H and W {levels - 1} times: they must be divisible by {factor}, "
                         f"got {tuple(x.shape[1:3])}")


def _check_widths(channels, num_blocks, emb_dim) -> None:
    if not channels or any(int(c) < 1 for c in channels):
        raise ValueError(f"channels must be one or more widths >= 1, got {tuple(channels)}")
    if num_blocks < 1:
        raise ValueError(f"num_blocks must be >= 1, got {num_blocks}")
    if emb_dim < 2 or emb_dim % 2:
        raise ValueError(f"emb_dim must be even and >= 2, got {emb_dim}")


def _event_count(spikes: Array) -> Array:
    """Input events per example ``[B]`` of spikes ``[T, B, ...]``."""
    return jnp.sum((spikes != 0).reshape(spikes.shape[0], spikes.shape[1], -1), axis=(0, 2)).astype(jnp.float32)


class SpikingUNet(nn.Module):
    """Spiking U-Net ``(x_t [B, H, W, C], t [B]) -> (eps [B, H, W, C], aux)`` (layout in the module docstring).

    Attributes:
      num_steps: spike steps ``T`` per denoiser call.
      channels: widths of the resolutions, finest first (each halves H, W).
      num_blocks: residual blocks per resolution in the encoder and the decoder.
      emb_dim: size of the sinusoidal step embedding and of its dense layer.
      neuron: the spiking neurons (:class:`jaxspike.cells.Neuron`); ``learn``
        trains per-neuron decay and threshold.
      current_norm: normalise each spiking layer's current per example and
        step (:mod:`jaxspike.layers`).
      readout_beta: decay of the readout's leaky integrators, in [0, 1]; the
        noise estimate is their membrane averaged over the ``T`` steps
        (``0``: the mean input current).
      hoist: the layers' synapse placement (``None``: automatic).

    ``aux`` maps layer names to the per-example counts of
    :mod:`jaxspike.layers` (``spike_count``, ``firing_rate``, ``synops``,
    ``macs``). An identity shortcut drives one synapse per input spike; its
    events are counted in the ``synops`` of the block's second layer.
    """

    num_steps: int = 4
    channels: Sequence[int] = (32, 64)
    num_blocks: int = 1
    emb_dim: int = 64
    neuron: cells.Neuron = cells.Neuron()
    current_norm: bool = True
    readout_beta: float = 0.0
    hoist: bool | None = None

    @nn.compact
    def __call__(self, x: Array, t: Array):
        encoding.check_num_steps(self.num_steps)
        _check_widths(self.channels, self.num_blocks, self.emb_dim)
        _check_inputs(x, t, len(self.channels))
        if not 0.0 <= self.readout_beta <= 1.0:
            raise ValueError(f"readout_beta must lie in [0, 1], got {self.readout_beta}")
        cell = self.neuron.cell()
        aux: dict[str, dict] = {}
        conv = dict(hoist=self.hoist, current_norm=self.current_norm)

        emb, aux["embed"] = layers.DenseReadout(self.emb_dim, input_kind="analog", name="embed")(
            step_embedding(t, self.emb_dim)[None])
        emb = nn.silu(emb)

        def block(spikes: Array, features: int, name: str) -> Array:
            e_t, aux[f"{name}_embed"] = layers.DenseReadout(features, input_kind="analog", name=f"{name}_embed")(
                emb[None])
            first = driven(cell, constant=e_t[:, None, None, :])
            s1, aux[f"{name}_conv1"] = layers.SpikingConv(features, kernel_size=3, cell=first, name=f"{name}_conv1",
                                                          **conv)(spikes)
            if spikes.shape[-1] == features:
                shortcut, shortcut_events = spikes, _event_count(spikes)
            else:
                shortcut, aux[f"{name}_skip"] = layers.SpikingConv(
                    features, kernel_size=1, cell=cells.leaky_integrator(0.0), use_bias=False, hoist=self.hoist,
                    name=f"{name}_skip")(spikes)
                shortcut_events = None
            second = driven(cell, sequence=shortcut)
            s2, counts = layers.SpikingConv(features, kernel_size=3, cell=second, name=f"{name}_conv2", **conv)(s1)
            if shortcut_events is not None:
                counts = {**counts, "synops": counts["synops"] + shortcut_events}
            aux[f"{name}_conv2"] = counts
            return s2

        spikes, aux["stem"] = layers.SpikingConv(self.channels[0], kernel_size=3, cell=cell, input_kind="analog",
                                                 name="stem", **conv)(encoding.direct(x, self.num_steps))
        kept = []
        last = len(self.channels) - 1
        for level, width in enumerate(self.channels):
            for i in range(self.num_blocks):
                spikes = block(spikes, width, f"enc{level}_{i}")
            kept.append(spikes)
            if level < last:
                spikes, aux[f"down{level}"] = layers.SpikingConv(
                    self.channels[level + 1], kernel_size=3, strides=2, cell=cell, name=f"down{level}", **conv)(spikes)
        spikes = block(spikes, self.channels[-1], "mid")
        for level in range(last, -1, -1):
            for i in range(self.num_blocks):
                if i == 0:
                    spikes = jnp.concatenate([spikes, kept[level]], axis=-1)
                spikes = block(spikes, self.channels[level], f"dec{level}_{i}")
            if level > 0:
                spikes, aux[f"up{level}"] = layers.SpikingConvTranspose(
                    self.channels[level - 1], kernel_size=4, strides=2, cell=cell, name=f"up{level}", **conv)(spikes)
        membrane, aux["readout"] = layers.SpikingConv(
            x.shape[-1], kernel_size=3, cell=cells.leaky_integrator(self.readout_beta), hoist=self.hoist,
            name="readout")(spikes)
        return jnp.mean(membrane, axis=0), aux


class AnalogUNet(nn.Module):
    """The analog twin of :class:`SpikingUNet`: the same layout with SiLU units, one pass.

    ``(x_t [B, H, W, C], t [B]) -> (eps [B, H, W, C], aux)`` with
    ``aux = {"norm_macs": [B]}``: 4 operations per normalised activation
    (mean, variance, scale and shift), counted as the spiking layers count
    their current normalisation.
    """

    channels: Sequence[int] = (32, 64)
    num_blocks: int = 1
    emb_dim: int = 64
    current_norm: bool = True

    @nn.compact
    def __call__(self, x: Array, t: Array):
        _check_widths(self.channels, self.num_blocks, self.emb_dim)
        _check_inputs(x, t, len(self.channels))
        normalised = [0]

        def norm(h: Array, name: str) -> Array:
            if not self.current_norm:
                return h
            normalised[0] += int(np.prod(h.shape[1:]))
            # The spiking layers' current_norm: per-example statistics over H, W, C, per-channel scale and offset.
            return nn.LayerNorm(epsilon=1e-5, reduction_axes=(1, 2, 3), feature_axes=-1, name=name)(h)

        def conv_unit(h: Array, features: int, name: str, extra: Array | float = 0.0, **kw) -> Array:
            return nn.silu(norm(nn.Conv(features, (3, 3), name=name, **kw)(h), f"{name}_norm") + extra)

        emb = nn.silu(nn.Dense(self.emb_dim, name="embed")(step_embedding(t, self.emb_dim)))

        def block(h: Array, features: int, name: str) -> Array:
            e_t = nn.Dense(features, name=f"{name}_embed")(emb)[:, None, None, :]
            h1 = conv_unit(h, features, f"{name}_conv1", e_t)
            shortcut = h if h.shape[-1] == features else nn.Conv(features, (1, 1), use_bias=False, name=f"{name}_skip")(h)
            return conv_unit(h1, features, f"{name}_conv2", shortcut)

        h = conv_unit(x, self.channels[0], "stem")
        kept = []
        last = len(self.channels) - 1
        for level, width in enumerate(self.channels):
            for i in range(self.num_blocks):
                h = block(h, width, f"enc{level}_{i}")
            kept.append(h)
            if level < last:
                h = conv_unit(h, self.channels[level + 1], f"down{level}", strides=(2, 2))
        h = block(h, self.channels[-1], "mid")
        for level in range(last, -1, -1):
            for i in range(self.num_blocks):
                if i == 0:
                    h = jnp.concatenate([h, kept[level]], axis=-1)
                h = block(h, self.channels[level], f"dec{level}_{i}")
            if level > 0:
                up = nn.ConvTranspose(self.channels[level - 1], (4, 4), strides=(2, 2), name=f"up{level}")(h)
                h = nn.silu(norm(up, f"up{level}_norm"))
        eps = nn.Conv(x.shape[-1], (3, 3), name="readout")(h)
        return eps, {"norm_macs": jnp.full((x.shape[0],), 4.0 * normalised[0], jnp.float32)}
