"""Spiking GAN: a generator driven by Bernoulli spike noise and a spiking discriminator.

Generator (time-major)::

    noise z [T, B, Z],  z_t ~ Bernoulli(noise_p)        (a spike process, not a Gaussian)
      -> LIF dense layers (MLP) or LIF dense + LIF transposed convs (DCGAN-like)
      -> readout: non-spiking membrane mean (sigmoid), output firing rate, or
         output first-spike time (intensity 1 - t_first / T, temporal coding
         in the spirit of Kotariya & Ganguly 2022, "Spiking-GAN: a spiking
         generative adversarial network using time-to-first-spike coding"),
         whole steps or interpolated inside the step from the membrane
      -> image x in [0, 1], [B, H, W, C]

Discriminator: the image is coded as spikes (Bernoulli rate or latency),
through LIF layers, read out by a non-spiking membrane mean to one logit. The
generator learns through that encoding: the coders here are differentiable
(straight-through for rate coding; a surrogate step on the cumulative
latency code), so gradients reach the generated pixels. ``analog`` gives the
hybrid of a spiking generator with an analog (LeakyReLU) discriminator
(Rosenfeld, Simeone & Rajendran 2022, "Spiking generative adversarial
networks with a neural network discriminator").

The analog twins have the same widths with ReLU (generator) / LeakyReLU
(discriminator) units and Gaussian noise.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxspike import cells, encoding, layers, noise, surrogates
from jaxspike.models import stdp_frontend

Array = jax.Array

__all__ = [
    "SpikingGenerator",
    "SpikingDiscriminator",
    "AnalogGenerator",
    "AnalogDiscriminator",
    "rate_code_st",
    "latency_code_st",
    "regular_code_st",
    "minibatch_std",
    "latent_walk",
    "READOUTS",
    "CODINGS",
    "ARCHS",
]

READOUTS = ("membrane", "rate", "first_spike", "first_spike_interp")
CODINGS = ("rate", "regular", "latency", "direct")
ARCHS = ("mlp", "conv")
MBSTD_SOURCES = ("rates", "pixels")
D_GRADIENTS = ("surrogate", "rate")


def _neuron_rates(spikes: Array) -> Array:
    """Each neuron's (or channel's) firing rate over time, batch and positions: ``[N]``."""
    return jnp.mean(spikes.reshape(-1, spikes.shape[-1]), axis=0)


def _check_choice(name, value, options):
    if value not in options:
        raise ValueError(f"{name} must be one of {options}, got {value!r}")


def rate_code_st(key: Array, x: Array, num_steps: int) -> Array:
    """Bernoulli rate code ``[T, B, ...]`` with a straight-through gradient to ``x``.

    Forward ``s_t ~ Bernoulli(x)``; backward ``ds_t/dx = 1`` (so ``d mean_t
    s_t / dx = 1``).
    """
    x_seq = jnp.broadcast_to(x[None], (num_steps, *x.shape))
    u = jax.random.uniform(key, x_seq.shape, x.dtype)
    hard = (u < x_seq).astype(x.dtype)
    return x_seq + jax.lax.stop_gradient(hard - x_seq)


def regular_code_st(x: Array, num_steps: int) -> Array:
    """Deterministic (regular-interval) rate code ``[T, B, ...]`` with a straight-through gradient.

    An integrate-and-fire encoder with unit threshold fed ``x`` each step,
    started half-way: ``s_t = floor((t+1) x + 1/2) - floor(t x + 1/2)``, so
    an input fires ``round(T x)`` evenly spaced spikes. Unlike the Bernoulli
    code it carries no sampling noise, so a discriminator reading it sees
    two different images as two different spike trains. Backward ``ds_t/dx = 1``.
    """
    t = jnp.arange(num_steps, dtype=x.dtype).reshape((num_steps,) + (1,) * x.ndim)
    hard = jnp.floor((t + 1.0) * x[None] + 0.5) - jnp.floor(t * x[None] + 0.5)
    x_seq = jnp.broadcast_to(x[None], hard.shape)
    return x_seq + jax.lax.stop_gradient(hard - x_seq)


# Surrogate slope of the differentiable latency code: its argument is a pixel intensity
# minus a bin level (unit scale), not a membrane potential, so it has its own constant.
LATENCY_CODE_SLOPE = 10.0


def latency_code_st(x: Array, num_steps: int, spike_fn: surrogates.SpikeFn | None = None) -> Array:
    """Linear latency code ``[T, B, ...]`` that is differentiable in ``x``.

    The input has spiked by step ``t`` iff ``x >= 1 - t / (T - 1)`` (linear
    time-to-first-spike, brighter = earlier). Writing the cumulative code
    ``c_t = H(x - 1 + t/(T-1) + eps)`` with a surrogate ``H``, the spike train
    ``s_t = c_t - c_{t-1}`` has one spike per input (none for ``x = 0``
    when ``eps`` is below half a bin) and a gradient to ``x`` (by default the
    fast sigmoid of slope :data:`LATENCY_CODE_SLOPE`).
    """
    spike_fn = spike_fn or surrogates.fast_sigmoid(LATENCY_CODE_SLOPE)
    denom = max(num_steps - 1, 1)
    levels = 1.0 - jnp.arange(num_steps, dtype=x.dtype) / denom
    levels = levels.reshape((num_steps,) + (1,) * x.ndim)
    eps = 0.25 / denom
    cum = spike_fn(x[None] - levels + eps)
    cum = cum * (x[None] > 0.5 / denom)  # dark pixels stay silent
    prev = jnp.concatenate([jnp.zeros_like(cum[:1]), cum[:-1]], axis=0)
    return cum - prev


def minibatch_std(features: Array, group_size: int) -> Array:
    """Minibatch standard deviation of ``features [B, F]`` within groups: ``[B, 1]``.

    Consecutive groups of ``group_size`` examples (so a concatenated
    ``[real; fake]`` batch keeps real and fake in separate groups when each
    half divides by it) each get the standard deviation of every feature
    across the group, averaged over features (Karras et al. 2018, "Progressive
    growing of GANs", section 3). A discriminator that sees it can tell a
    collapsed group of samples from a varied one.
    """
    batch = features.shape[0]
    if group_size < 2 or batch % group_size:
        raise ValueError(f"minibatch-std group size must be >= 2 and divide the batch {batch}, got {group_size}")
    groups = features.reshape(batch // group_size, group_size, -1)
    std = jnp.sqrt(jnp.var(groups, axis=1) + 1e-8).mean(axis=-1)  # [B / G]
    return jnp.repeat(std, group_size)[:, None]


class SpikingGenerator(nn.Module):
    """Generator fed by a Bernoulli spike process.

    Attributes:
      num_steps: ``T``.
      noise_dim: noise units ``Z``.
      noise_p: firing probability of each noise unit per step.
      image_shape: ``(H, W, C)``.
      arch: ``"mlp"`` (``hidden`` widths) or ``"conv"`` (``channels``, DCGAN-like).
      readout: one of :data:`READOUTS`.
      neuron: the spiking neurons (:class:`jaxspike.cells.Neuron`); its
        ``learn`` trains per-neuron decay and threshold (snnTorch-style
        trainable hyper-parameters).
      current_norm: standardise each hidden layer's input current per example
        and step (:class:`jaxspike.layers.SpikingDense`), so that its neurons
        can neither saturate nor fall silent as the weights grow.
    """

    num_steps: int = 16
    noise_dim: int = 64
    noise_p: float = 0.5
    image_shape: tuple[int, int, int] = (28, 28, 1)
    arch: str = "mlp"
    hidden: Sequence[int] = (256, 512)
    channels: Sequence[int] = (64, 32)
    readout: str = "membrane"
    noise_rates: str = "fixed"
    neuron: cells.Neuron = cells.Neuron()
    current_norm: bool = False
    hoist: bool | None = None

    def setup(self):
        encoding.check_num_steps(self.num_steps)
        _check_choice("noise_rates", self.noise_rates, ("fixed", "uniform"))
        if self.noise_dim < 1:
            raise ValueError(f"noise_dim must be >= 1, got {self.noise_dim}")
        if not 0.0 < self.noise_p < 1.0:
            raise ValueError(f"noise_p must lie in (0, 1), got {self.noise_p}")
        _check_choice("arch", self.arch, ARCHS)
        _check_choice("readout", self.readout, READOUTS)
        interp = self.readout == "first_spike_interp"
        if interp and self.neuron.learn:
            raise ValueError(
                "readout='first_spike_interp' reads the crossing time against the fixed threshold; "
                "it cannot be combined with a learned threshold (neuron.learn=True)"
            )
        h, w, c = self.image_shape
        cell = self.neuron.cell()
        drive = nn.initializers.constant(0.5 * self.neuron.threshold)
        if self.arch == "mlp":
            self.hidden_layers = [
                layers.SpikingDense(n, cell=cell, hoist=self.hoist, current_norm=self.current_norm) for n in self.hidden
            ]
            if self.readout == "membrane":
                self.out_layer = layers.DenseReadout(h * w * c, mode="mean", beta=0.0)
            else:
                self.out_layer = layers.SpikingDense(
                    h * w * c, cell=cell, hoist=self.hoist, bias_init=drive, record_membrane=interp
                )
        else:
            if h % 4 or w % 4:
                raise ValueError(f"the conv generator needs H and W divisible by 4, got {self.image_shape}")
            self.hidden_layers = [
                layers.SpikingDense(
                    (h // 4) * (w // 4) * self.channels[0], cell=cell, hoist=self.hoist, current_norm=self.current_norm
                )
            ]
            self.deconvs = [
                layers.SpikingConvTranspose(
                    ch, kernel_size=4, strides=2, cell=cell, hoist=self.hoist, current_norm=self.current_norm
                )
                for ch in self.channels[1:]
            ]
            out_cell = cells.leaky_integrator(0.0) if self.readout == "membrane" else cell
            self.out_layer = layers.SpikingConvTranspose(
                c, kernel_size=4, strides=2 if len(self.channels) == 2 else 1, cell=out_cell, hoist=self.hoist,
                bias_init=nn.initializers.zeros_init() if self.readout == "membrane" else drive,
                record_membrane=interp,
            )
            if len(self.channels) != 2:
                raise ValueError(f"the conv generator takes two channel widths (7x7 -> 14x14 -> 28x28), got {self.channels}")

    def sample_noise(self, key: Array, num: int, noise_p: Array | float | None = None) -> Array:
        """Noise spike trains ``[T, num, Z]``.

        ``noise_rates="fixed"``: every unit fires with probability ``noise_p``
        each step. ``"uniform"``: each sample first draws its own firing
        probabilities ``p ~ U(0, 1)^Z``, then fires ``Bernoulli(p)`` each step
        (the probabilities are the latent code; with fixed ``p`` the rates a
        LIF layer integrates over T steps concentrate near ``p`` and samples
        hardly differ). ``noise_p`` given here (scalar, ``[Z]`` or ``[num, Z]``)
        overrides both (latent walks).
        """
        k_p, k_s = jax.random.split(key)
        if noise_p is not None:
            p = noise_p
        elif self.noise_rates == "uniform":
            p = jax.random.uniform(k_p, (num, self.noise_dim))
        else:
            p = self.noise_p
        return noise.bernoulli_process(k_s, p, (self.num_steps, num, self.noise_dim))

    def __call__(self, z: Array):
        """Noise spikes ``z [T, B, Z]`` -> images ``[B, H, W, C]`` in [0, 1] and layer aux."""
        if z.ndim != 3 or z.shape[-1] != self.noise_dim or z.shape[0] != self.num_steps:
            raise ValueError(
                f"generator noise must be [T={self.num_steps}, B, Z={self.noise_dim}], got shape {tuple(z.shape)}"
            )
        batch = z.shape[1]
        h, w, c = self.image_shape
        aux = {}
        spikes = z
        for i, layer in enumerate(self.hidden_layers):
            spikes, aux[f"g{i}"] = layer(spikes)
            aux[f"g{i}"]["neuron_rate"] = _neuron_rates(spikes)
        if self.arch == "conv":
            spikes = spikes.reshape(spikes.shape[:2] + (h // 4, w // 4, self.channels[0]))
            for i, layer in enumerate(self.deconvs):
                spikes, aux[f"g_deconv{i}"] = layer(spikes)
                aux[f"g_deconv{i}"]["neuron_rate"] = _neuron_rates(spikes)
        out, aux["g_out"] = self.out_layer(spikes)
        if self.readout == "membrane":
            logits = out if self.arch == "mlp" else jnp.mean(out, axis=0)
            img = jax.nn.sigmoid(logits)
        elif self.readout == "rate":
            img = jnp.mean(out, axis=0)
        elif self.readout == "first_spike":
            img = encoding.first_spike_intensity(out)
        else:
            membrane = aux["g_out"].pop("membrane")
            img = encoding.interpolated_first_spike_intensity(out, membrane, self.neuron.threshold)
            # Per output neuron: two subtractions, a division and the time arithmetic (~4 ops).
            aux["g_out"]["macs"] = aux["g_out"]["macs"] + 4.0 * float(h * w * c)
        return img.reshape((batch, h, w, c)), aux

    def generate(self, key: Array, num: int, noise_p: Array | float | None = None):
        """``num`` images from fresh noise spikes: ``(images [num, H, W, C], aux)``."""
        return self(self.sample_noise(key, num, noise_p))


def latent_walk(generator: SpikingGenerator, g_params, key: Array, rows: int, cols: int) -> Array:
    """Images ``[rows * cols, H, W, C]`` of walks through the noise firing probabilities.

    Row ``r`` interpolates ``p(a) = (1 - a) p0 + a p1`` between two random
    rate vectors ``p0, p1 ~ U(0, 1)^Z`` at ``cols`` even steps of ``a``. The
    columns of a row share one noise key, hence the same uniform draws: a
    unit's spike train changes only where its probability crosses its draw.
    """
    if rows < 1 or cols < 2:
        raise ValueError(f"a latent walk needs rows >= 1 and cols >= 2, got rows={rows}, cols={cols}")
    k_ends, k_spikes = jax.random.split(key)
    ends = jax.random.uniform(k_ends, (2, rows, 1, generator.noise_dim))
    alpha = jnp.linspace(0.0, 1.0, cols)[None, :, None]
    p = (1.0 - alpha) * ends[0] + alpha * ends[1]  # [rows, cols, Z]

    def row(k, p_row):
        images, _ = generator.apply({"params": g_params}, k, cols, p_row, method="generate")
        return images

    images = jax.vmap(row)(jax.random.split(k_spikes, rows), p)
    return images.reshape((rows * cols,) + images.shape[2:])


class SpikingDiscriminator(nn.Module):
    """Spiking discriminator reading images as spikes; returns one logit per image.

    Attributes:
      num_steps: ``T``.
      coding: ``"rate"`` (straight-through Bernoulli), ``"regular"``
        (deterministic rate code, :func:`regular_code_st`), ``"latency"``, or
        ``"direct"`` (pixels as a constant input current to the first spiking
        layer, whose synapse then counts MACs; direct input as in Rathi & Roy 2020, "DIET-SNN").
      arch: ``"mlp"`` (``hidden``) or ``"conv"`` (``channels``, stride 2).
      mbstd_group: if >= 2, the readout also gets the :func:`minibatch_std`
        of the last layer's firing rates over groups of this many images, as
        one extra constant input current (0 = off).
      mbstd_source: what the minibatch std is taken of: ``"rates"`` (the
        last layer's firing rates) or ``"pixels"`` (the images themselves,
        before spike coding: free of the coding's sampling noise, which
        swamps the spread of a collapsed batch in the rates at small T).
      current_norm: per-example, per-step normalised input currents of the
        feature layers (see :class:`SpikingGenerator`).
      gradient: how the feature layers are differentiated: ``"surrogate"``
        (per-step surrogate derivative, backpropagation through time) or
        ``"rate"`` (the exact spikes forward, the gradient of each layer's
        firing-rate map ``clip(mean current / threshold, 0, 1)`` backward;
        Meng et al. 2022, see :meth:`jaxspike.layers._SpikingLayer._rate_gradient`).
    """

    num_steps: int = 16
    coding: str = "rate"
    arch: str = "mlp"
    hidden: Sequence[int] = (512, 256)
    channels: Sequence[int] = (32, 64)
    neuron: cells.Neuron = cells.Neuron()
    hoist: bool | None = None
    mbstd_group: int = 0
    mbstd_source: str = "rates"
    current_norm: bool = False
    gradient: str = "surrogate"

    def setup(self):
        encoding.check_num_steps(self.num_steps)
        _check_choice("coding", self.coding, CODINGS)
        _check_choice("gradient", self.gradient, D_GRADIENTS)
        rate_grad = self.neuron.threshold if self.gradient == "rate" else 0.0
        _check_choice("mbstd_source", self.mbstd_source, MBSTD_SOURCES)
        _check_choice("arch", self.arch, ARCHS)
        cell = self.neuron.cell()
        if self.arch == "mlp":
            kinds = ["analog" if self.coding == "direct" else "spikes"] + ["spikes"] * (len(self.hidden) - 1)
            self.feature_layers = [
                layers.SpikingDense(
                    n, cell=cell, hoist=self.hoist, input_kind=k, current_norm=self.current_norm, rate_grad=rate_grad
                )
                for n, k in zip(self.hidden, kinds)
            ]
        else:
            self.feature_layers = [
                layers.SpikingConv(
                    ch, kernel_size=3, strides=2, cell=cell, hoist=self.hoist, current_norm=self.current_norm,
                    rate_grad=rate_grad,
                    input_kind="analog" if (i == 0 and self.coding == "direct") else "spikes",
                )
                for i, ch in enumerate(self.channels)
            ]
        self.head = layers.DenseReadout(1, mode="mean", beta=0.0)

    def features(self, images: Array, key: Array, frontend: stdp_frontend.STDPFrontEnd | None = None):
        """Spiking features ``[T, B, F]`` of images ``[B, H, W, C]``.

        ``frontend``: a frozen, input-differentiable STDP front end (a pytree
        of constant weights) that replaces the coding (MLP only).
        """
        if images.ndim != 4:
            raise ValueError(f"discriminator expects images [B, H, W, C], got shape {tuple(images.shape)}")
        x = images if self.arch == "conv" else images.reshape(images.shape[0], -1)
        aux = {}
        if frontend is not None:  # frozen STDP features, differentiable in the pixels
            if self.arch != "mlp":
                raise ValueError(f"an STDP front end feeds the MLP discriminator, got arch={self.arch!r}")
            spikes, aux["stdp"] = frontend(images, self.num_steps)
        elif self.coding == "rate":
            spikes = rate_code_st(key, x, self.num_steps)
        elif self.coding == "regular":
            spikes = regular_code_st(x, self.num_steps)
        elif self.coding == "latency":
            spikes = latency_code_st(x, self.num_steps)
        else:  # direct: pixel intensities as a constant input current; the first layer spikes
            spikes = jnp.broadcast_to(x[None], (self.num_steps,) + x.shape)
        for i, layer in enumerate(self.feature_layers):
            spikes, aux[f"d{i}"] = layer(spikes)
        return spikes.reshape(spikes.shape[:2] + (-1,)), aux

    def __call__(self, images: Array, key: Array, frontend: stdp_frontend.STDPFrontEnd | None = None):
        feats, aux = self.features(images, key, frontend)
        # Per-neuron firing rates of the last feature layer, for feature matching.
        rates = jnp.mean(feats, axis=0)
        aux["features"] = {"mean": rates}
        if self.mbstd_group:
            source = rates if self.mbstd_source == "rates" else images.reshape(images.shape[0], -1)
            std = minibatch_std(source, self.mbstd_group)
            feats = jnp.concatenate([feats, jnp.broadcast_to(std[None], (feats.shape[0], *std.shape))], axis=-1)
        logit, aux["d_head"] = self.head(feats)
        return logit[:, 0], aux


ANALOG_NOISE = ("gaussian", "uniform", "binary")


class AnalogGenerator(nn.Module):
    """Analog twin of :class:`SpikingGenerator`: ReLU units, noise ``[B, Z]``.

    ``noise`` is ``"gaussian"`` (the usual GAN), ``"uniform"`` (``u ~ U(0,1)``,
    i.e. a Gaussian pushed through its CDF: a converted twin reads it as
    Bernoulli spike trains of rate ``u``) or ``"binary"`` (``b ~
    Bernoulli(noise_p)``: a converted twin reads it as tonic spike trains),
    see :mod:`jaxspike.convert`.
    """

    noise_dim: int = 64
    image_shape: tuple[int, int, int] = (28, 28, 1)
    arch: str = "mlp"
    hidden: Sequence[int] = (256, 512)
    channels: Sequence[int] = (64, 32)
    noise: str = "gaussian"
    noise_p: float = 0.5

    def sample_noise(self, key: Array, num: int, noise_p=None) -> Array:
        del noise_p
        _check_choice("noise", self.noise, ANALOG_NOISE)
        shape = (num, self.noise_dim)
        if self.noise == "gaussian":
            return jax.random.normal(key, shape)
        if self.noise == "uniform":
            return jax.random.uniform(key, shape)
        return jax.random.bernoulli(key, self.noise_p, shape).astype(jnp.float32)

    @nn.compact
    def __call__(self, z: Array):
        if z.ndim != 2 or z.shape[-1] != self.noise_dim:
            raise ValueError(f"analog generator noise must be [B, {self.noise_dim}], got shape {tuple(z.shape)}")
        h, w, c = self.image_shape
        x = z
        if self.arch == "mlp":
            for n in self.hidden:
                x = nn.relu(nn.Dense(n)(x))
            x = nn.Dense(h * w * c)(x)
        else:
            x = nn.relu(nn.Dense((h // 4) * (w // 4) * self.channels[0])(x))
            x = x.reshape(x.shape[0], h // 4, w // 4, self.channels[0])
            x = nn.relu(nn.ConvTranspose(self.channels[1], (4, 4), strides=(2, 2))(x))
            x = nn.ConvTranspose(c, (4, 4), strides=(2, 2))(x)
        return jax.nn.sigmoid(x).reshape((z.shape[0], h, w, c)), {}

    def generate(self, key: Array, num: int, noise_p=None):
        return self(self.sample_noise(key, num))


class AnalogDiscriminator(nn.Module):
    """LeakyReLU discriminator (for the analog twin and the hybrid GAN)."""

    arch: str = "mlp"
    hidden: Sequence[int] = (512, 256)
    channels: Sequence[int] = (32, 64)
    mbstd_group: int = 0  # as in SpikingDiscriminator, on the last hidden activations

    @nn.compact
    def __call__(self, images: Array, key: Array | None = None):
        del key
        if images.ndim != 4:
            raise ValueError(f"discriminator expects images [B, H, W, C], got shape {tuple(images.shape)}")
        if self.arch == "mlp":
            x = images.reshape(images.shape[0], -1)
            for n in self.hidden:
                x = nn.leaky_relu(nn.Dense(n)(x), 0.2)
        else:
            x = images
            for ch in self.channels:
                x = nn.leaky_relu(nn.Conv(ch, (3, 3), strides=2)(x), 0.2)
            x = x.reshape(x.shape[0], -1)
        aux = {"features": {"mean": x}}  # last hidden activations, for feature matching
        if self.mbstd_group:
            x = jnp.concatenate([x, minibatch_std(x, self.mbstd_group)], axis=-1)
        return nn.Dense(1)(x)[:, 0], aux
