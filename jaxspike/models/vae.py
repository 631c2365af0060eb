"""Spiking variational autoencoder with a Bernoulli spike latent, and its analog twin.

Spiking model (all arrays time-major)::

    x [B, H, W, C] --rate or latency coding--> s_in [T, B, ...]
      -> spiking encoder (LIF dense, or LIF conv stride 2 twice)  -> h [T, B, F]
      -> latent posterior q_t = q(z_t = 1 | x, ...)   (one of three estimators)
      -> z_t ~ Bernoulli(q_t): one spike or none per latent unit and step
      -> spiking decoder (LIF dense, or LIF dense + transposed convs)
      -> readout: non-spiking membrane mean / output firing rate /
                  output first-spike time  ->  image logits [B, D]

Loss per example (negative ELBO)::

    -log p(x | z) + sum_{t, units} KL(Bern(q_t) || Bern(p_t))   [+ w * MMD]

with a Bernoulli (cross-entropy) or Gaussian likelihood and a fixed prior
``p_t = prior_p``, the learned autoregressive spiking prior, the
uniform-rate prior (each sample draws one rate ``r ~ U(0, 1)`` per unit,
then ``z_t ~ Bern(r)``; see :func:`jaxspike.losses.uniform_rate_kl_per_unit`),
or a learned mixture of ``K`` Bernoulli spike processes (``prior="mixture"``:
each sample picks one component ``c``, whose learned rates ``[T, L]`` then
fire the latent units independently; the KL is the component-posterior
bound of :func:`jaxspike.losses.bernoulli_mixture_kl`).

Latent gradient estimators (``estimator``):

* ``straight_through`` - ``q_t = sigmoid(l_t)`` from a linear readout of the
  encoder spikes; hard sample forward, identity backward (Bengio et al. 2013).
* ``relaxed`` - Concrete / Gumbel-sigmoid relaxation (Maddison et al. 2017;
  Jang et al. 2017): ``z_t = sigmoid((l_t + log u - log(1-u)) / tau)`` while
  training, a hard sample at evaluation; ``tau`` follows a schedule given to
  the loss.
* ``autoregressive`` - the autoregressive Bernoulli spike sampling of the
  Fully Spiking VAE (Kamata, Mukuta & Harada, AAAI 2022): at each step a
  spiking layer reads ``[h_t, z_{t-1}]`` and emits ``k`` candidate spikes per
  latent unit; ``z_t`` is one candidate chosen uniformly at random, so
  ``q_t`` is the fraction of firing candidates and gradients flow through
  the chosen candidate's surrogate derivative. The learned prior
  (``prior="autoregressive"``) is a spiking layer of the same kind reading
  ``z_{t-1}`` only; during training it is fed the posterior's ``z_{t-1}``.

The analog twin (:class:`AnalogVAE`) has the same layer sizes with ReLU units
and a Gaussian latent (Kingma & Welling 2014).
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxspike import cells, encoding, layers, noise
from jaxspike.models import stdp_frontend

Array = jax.Array

__all__ = [
    "SpikingVAE",
    "FCSpikingVAE",
    "AnalogVAE",
    "ESTIMATORS",
    "PRIORS",
    "READOUTS",
    "CODINGS",
    "ARCHS",
    "LIKELIHOODS",
]

ESTIMATORS = ("straight_through", "relaxed", "autoregressive")
PRIORS = ("bernoulli", "autoregressive", "uniform_rate", "mixture")
READOUTS = ("membrane", "rate", "first_spike")
CODINGS = ("rate", "latency")
ARCHS = ("mlp", "conv")
LIKELIHOODS = ("bernoulli", "gaussian")

_EPS = 1e-4


def _check_choice(name: str, value, options) -> None:
    if value not in options:
        raise ValueError(f"{name} must be one of {options}, got {value!r}")


class _AutoregressiveSpikes(nn.Module):
    """One FSVAE-style autoregressive Bernoulli spike sampler.

    At each step a LIF layer reads ``[context_t, z_{t-1}]`` and emits ``k``
    candidate spikes per latent unit; ``z_t`` is one candidate chosen at
    random. ``teacher`` (``[T, B, L]``), when given, replaces the sampler's own
    ``z_{t-1}`` by the given sequence (the prior trained on posterior samples).

    Returns ``(z [T, B, L], probs [T, B, L], aux)``.
    """

    latent: int
    num_candidates: int
    cell: cells.Cell
    bias_scale: float = 1.0

    @nn.compact
    def __call__(self, key: Array, context: Array | None, num_steps: int, batch: int, teacher: Array | None = None):
        L, k = self.latent, self.num_candidates
        n_ctx = 0 if context is None else context.shape[-1]
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (n_ctx + L, L * k))
        # Spread constant drives over the candidates so that, from the start, they fire at
        # different rates and z_t varies with the key (a zero bias leaves the prior silent).
        bias = self.param("bias", nn.initializers.uniform(self.bias_scale), (L * k,))
        cell_params = self.cell.init_params((L * k,))
        state0 = self.cell.init_state((batch, L * k))
        picks = jax.random.randint(key, (num_steps, batch, L), 0, k)
        ctx = jnp.zeros((num_steps, batch, 0)) if context is None else context
        prev_seq = None
        if teacher is not None:
            prev_seq = jnp.concatenate([jnp.zeros_like(teacher[:1]), teacher[:-1]], axis=0)

        def step(carry, inputs):
            st, z_prev = carry
            ctx_t, pick_t, prev_t = inputs
            z_in = z_prev if prev_t is None else prev_t
            current = jnp.concatenate([ctx_t, z_in], axis=-1) @ kernel + bias
            st, cand = self.cell.step(cell_params, st, current)
            cand = cand.reshape(batch, L, k)
            z_t = jnp.take_along_axis(cand, pick_t[..., None], axis=-1)[..., 0]
            return (st, z_t), (z_t, jnp.mean(cand, axis=-1), jnp.sum(cand.reshape(batch, -1), axis=1))

        xs = (ctx, picks, prev_seq)
        _, (z, probs, counts) = jax.lax.scan(step, (state0, jnp.zeros((batch, L))), xs)
        # Synaptic events: context spikes + previous latent spikes, each to L*k neurons.
        events = jnp.sum((ctx != 0), axis=(0, 2)) + jnp.sum(
            (z if teacher is None else prev_seq) != 0, axis=(0, 2)
        )
        ops = events.astype(jnp.float32) * (L * k) + L * k * num_steps
        spikes = jnp.sum(counts, axis=0)
        aux = {
            "spike_count": spikes,
            "firing_rate": spikes / (num_steps * L * k),
            "synops": ops,
            "macs": jnp.zeros_like(ops),
        }
        return z, probs, aux


class SpikingVAE(nn.Module):
    """Spiking VAE with a Bernoulli spike latent (see module docstring).

    Attributes:
      num_steps: ``T``.
      latent: latent units ``L``.
      image_shape: ``(H, W, C)`` of the data.
      arch: ``"mlp"`` or ``"conv"`` (stride-2 convolutions in the encoder,
        transposed convolutions in the decoder).
      encoder / decoder: hidden widths of the MLP variant.
      channels: feature maps of the conv variant (encoder order).
      coding: input coding, ``"rate"`` (Bernoulli) or ``"latency"``.
      estimator: latent gradient estimator, one of :data:`ESTIMATORS`.
      prior: ``"bernoulli"`` (fixed ``prior_p``), ``"autoregressive"``,
        ``"uniform_rate"`` (per-sample rates ``r ~ U(0, 1)``) or ``"mixture"``
        (a learned mixture of ``num_components`` Bernoulli spike processes).
      num_candidates: ``k`` of the autoregressive sampler.
      num_components: ``K`` of the mixture prior.
      readout: decoder output, one of :data:`READOUTS`.
      neuron: the spiking neurons of every layer (:class:`jaxspike.cells.Neuron`:
        kind, decay, threshold, surrogate, learnable or not).
      latent_init_gain: init scale of the encoder's latent readout.
      latent_beta: leak of the non-spiking latent readout (0 = the logit of
        step t reads only step t's encoder spikes).
      hoist: synapse placement (None = auto, see :mod:`jaxspike.layers`).
      current_norm: per-example, per-step normalised input currents of the
        hidden spiking layers (:class:`jaxspike.layers.SpikingDense`).
    """

    num_steps: int = 16
    latent: int = 128
    image_shape: tuple[int, int, int] = (28, 28, 1)
    arch: str = "mlp"
    encoder: Sequence[int] = (512, 256)
    decoder: Sequence[int] = (256, 512)
    channels: Sequence[int] = (32, 64)
    coding: str = "rate"
    estimator: str = "straight_through"
    prior: str = "bernoulli"
    prior_p: float = 0.5
    num_candidates: int = 20
    num_components: int = 64
    readout: str = "membrane"
    neuron: cells.Neuron = cells.Neuron()
    latent_init_gain: float = 1.0
    latent_beta: float = 0.0
    hoist: bool | None = None
    current_norm: bool = False

    @property
    def out_dim(self) -> int:
        return int(np.prod(self.image_shape))

    def _validate(self) -> None:
        if self.latent < 1:
            raise ValueError(f"latent size must be >= 1, got {self.latent}")
        encoding.check_num_steps(self.num_steps)
        _check_choice("arch", self.arch, ARCHS)
        _check_choice("coding", self.coding, CODINGS)
        _check_choice("estimator", self.estimator, ESTIMATORS)
        _check_choice("prior", self.prior, PRIORS)
        _check_choice("readout", self.readout, READOUTS)
        if not 0.0 < self.prior_p < 1.0:
            raise ValueError(f"prior_p must lie in (0, 1), got {self.prior_p}")
        if self.num_candidates < 1:
            raise ValueError(f"num_candidates must be >= 1, got {self.num_candidates}")
        if self.num_components < 1:
            raise ValueError(f"num_components must be >= 1, got {self.num_components}")
        if self.arch == "conv":
            h, w, _ = self.image_shape
            if h % 4 or w % 4:
                raise ValueError(f"the conv VAE needs H and W divisible by 4, got image_shape {self.image_shape}")

    def setup(self):
        self._validate()
        cell = self.neuron.cell()
        norm = self.current_norm
        dense = lambda n, **kw: layers.SpikingDense(n, cell=cell, hoist=self.hoist, current_norm=norm, **kw)  # noqa: E731
        if self.arch == "mlp":
            self.enc_layers = [dense(n) for n in self.encoder]
            self.dec_layers = [dense(n) for n in self.decoder]
        else:
            conv = lambda c, **kw: layers.SpikingConv(  # noqa: E731
                c, kernel_size=3, strides=2, cell=cell, hoist=self.hoist, current_norm=norm, **kw
            )
            deconv = lambda c, **kw: layers.SpikingConvTranspose(  # noqa: E731
                c, kernel_size=4, strides=2, hoist=self.hoist, current_norm=norm, **kw
            )
            self.enc_layers = [conv(c) for c in self.channels]
            h, w, _ = self.image_shape
            self.dec_layers = [dense((h // 4) * (w // 4) * self.channels[-1])]
            self.deconv_layers = [deconv(self.channels[0], cell=cell)]
        if self.estimator == "autoregressive":
            self.posterior = _AutoregressiveSpikes(self.latent, self.num_candidates, cell, self.neuron.threshold)
        else:
            self.to_latent = layers.DenseReadout(
                self.latent,
                mode="sequence",
                beta=self.latent_beta,
                kernel_init=nn.initializers.variance_scaling(self.latent_init_gain**2, "fan_in", "truncated_normal"),
            )
        if self.prior == "autoregressive":
            self.prior_net = _AutoregressiveSpikes(self.latent, self.num_candidates, cell, self.neuron.threshold)
        if self.prior == "mixture":
            # Components start at nearly equal rates (0.5, jittered by 1 %) and equal weights,
            # so every component shares the early posteriors and the components split as
            # the posteriors cluster. Widely spread random rates instead hand every example
            # to the one component nearest 0.5, and the others never receive a gradient.
            k = self.num_components
            self.mixture_logits = self.param("mixture_logits", nn.initializers.zeros, (k,))
            self.component_logits = self.param(
                "component_logits", nn.initializers.normal(0.01), (k, self.num_steps, self.latent)
            )
        h, w, c = self.image_shape
        if self.readout == "membrane":
            if self.arch == "mlp":
                self.out_layer = layers.DenseReadout(self.out_dim, mode="mean", beta=0.0)
            else:
                self.out_layer = layers.SpikingConvTranspose(
                    c, kernel_size=4, strides=2, cell=cells.leaky_integrator(0.0), hoist=self.hoist
                )
        else:
            # Output neurons start with a drive of half the threshold per step so every pixel
            # fires early on: a silent output gets (almost) no surrogate gradient.
            drive = nn.initializers.constant(0.5 * self.neuron.threshold)
            if self.arch == "mlp":
                self.out_layer = layers.SpikingDense(self.out_dim, cell=cell, hoist=self.hoist, bias_init=drive)
            else:
                self.out_layer = layers.SpikingConvTranspose(
                    c, kernel_size=4, strides=2, cell=cell, hoist=self.hoist, bias_init=drive
                )

    # -- encoder -------------------------------------------------------------

    def _code_input(self, images: Array, key: Array) -> Array:
        x = images if self.arch == "conv" else images.reshape(images.shape[0], -1)
        if self.coding == "rate":
            return encoding.rate(key, x, self.num_steps)
        return encoding.latency(x, self.num_steps)

    def encode(self, images: Array, key: Array, features: Array | None = None,
               frontend: stdp_frontend.STDPFrontEnd | None = None):
        """``images [B, H, W, C]`` -> encoder features ``h [T, B, F]`` and layer aux.

        ``frontend``: a frozen STDP front end (a pytree of constant weights)
        whose spikes replace the input coding (MLP only).
        ``features``: that front end's output for ``images`` computed beforehand
        (:meth:`jaxspike.models.stdp_frontend.STDPFrontEnd.first_bins`, ``[B, F]``),
        used instead of running it (same spikes; no front-end counts in aux).
        """
        if images.ndim != 4 or tuple(images.shape[1:]) != tuple(self.image_shape):
            raise ValueError(
                f"SpikingVAE expects images [B, {', '.join(map(str, self.image_shape))}], got shape {tuple(images.shape)}"
            )
        aux = {}
        if features is not None and frontend is None:
            raise ValueError("cached front-end features were given but the model has no STDP front end (model.frontend)")
        if frontend is not None:  # frozen STDP features instead of the input coding
            if self.arch != "mlp":
                raise ValueError(f"an STDP front end feeds the MLP encoder, got arch={self.arch!r}")
            if features is None:
                spikes, aux["stdp"] = frontend(images, self.num_steps)
            else:
                if features.shape[0] != images.shape[0]:
                    raise ValueError(f"cached front-end features {tuple(features.shape)} do not match the batch of {images.shape[0]} images")
                spikes = frontend.from_first_bins(features, self.num_steps)
        else:
            spikes = self._code_input(images, key)
        for i, layer in enumerate(self.enc_layers):
            spikes, aux[f"enc{i}"] = layer(spikes)
        return spikes.reshape(spikes.shape[:2] + (-1,)), aux

    def posterior_sample(self, h: Array, key: Array, *, train: bool = True, temperature: float = 1.0):
        """Latent spikes ``z [T, B, L]`` and posterior probabilities ``q`` from features ``h``."""
        aux = {}
        if self.estimator == "autoregressive":
            z, q, aux["posterior"] = self.posterior(key, h, self.num_steps, h.shape[1])
            return z, q, aux
        logits, aux["to_latent"] = self.to_latent(h)
        q = jax.nn.sigmoid(logits)
        if self.estimator == "straight_through" or not train:
            z = noise.straight_through_bernoulli(key, q)
        else:
            u = jax.random.uniform(key, q.shape, q.dtype, minval=_EPS, maxval=1.0 - _EPS)
            z = jax.nn.sigmoid((logits + jnp.log(u) - jnp.log1p(-u)) / temperature)
        return z, q, aux

    # -- decoder -------------------------------------------------------------

    def decode(self, z: Array):
        """Latent spikes ``z [T, B, L]`` -> image logits ``[B, H*W*C]`` and layer aux."""
        if z.ndim != 3 or z.shape[-1] != self.latent:
            raise ValueError(f"latent spikes must be [T, B, {self.latent}], got shape {tuple(z.shape)}")
        if z.shape[0] != self.num_steps:
            raise ValueError(f"latent has T = {z.shape[0]} steps but the model runs T = {self.num_steps}")
        aux = {}
        spikes = z
        for i, layer in enumerate(self.dec_layers):
            spikes, aux[f"dec{i}"] = layer(spikes)
        if self.arch == "conv":
            h, w, _ = self.image_shape
            spikes = spikes.reshape(spikes.shape[:2] + (h // 4, w // 4, self.channels[-1]))
            for i, layer in enumerate(self.deconv_layers):
                spikes, aux[f"deconv{i}"] = layer(spikes)
        out, aux["readout"] = self.out_layer(spikes)
        batch = z.shape[1]
        if self.readout == "membrane":
            logits = out if self.arch == "mlp" else jnp.mean(out, axis=0)
            return logits.reshape(batch, -1), aux
        if self.readout == "rate":
            p = jnp.mean(out, axis=0)
        else:
            p = encoding.first_spike_intensity(out)
        p = jnp.clip(p.reshape(batch, -1), _EPS, 1.0 - _EPS)
        return jnp.log(p) - jnp.log1p(-p), aux

    def prior_probs(self, z: Array, key: Array):
        """Prior probabilities ``p [T, B, L]`` for the posterior sample ``z`` (teacher forcing)."""
        if self.prior == "bernoulli":
            return jnp.full(z.shape, self.prior_p, z.dtype), {}
        if self.prior == "uniform_rate":
            # Its per-step marginal; the KL of this prior is not a per-step Bernoulli KL
            # (elbo_loss uses losses.uniform_rate_kl_per_unit).
            return jnp.full(z.shape, 0.5, z.dtype), {}
        if self.prior == "mixture":
            # Its per-step marginal, sum_c pi_c sigmoid(logits_c); its KL is the component
            # bound of losses.bernoulli_mixture_kl (elbo_loss).
            marginal = jnp.einsum("k,ktl->tl", jax.nn.softmax(self.mixture_logits), jax.nn.sigmoid(self.component_logits))
            return jnp.broadcast_to(marginal[:, None, :], z.shape), {}
        _, p, aux = self.prior_net(key, None, self.num_steps, z.shape[1], teacher=z)
        return p, {"prior": aux}

    def __call__(self, images: Array, key: Array, *, train: bool = True, temperature: float = 1.0,
                 features: Array | None = None, frontend: stdp_frontend.STDPFrontEnd | None = None):
        """Encodes, samples the latent spikes, decodes (``features``, ``frontend``: see :meth:`encode`).

        Returns:
          ``(logits [B, D], aux)``; ``aux`` holds ``q`` and ``p`` (posterior
          and prior probabilities ``[T, B, L]``), ``z`` (latent spikes) and the
          per-layer counts under ``"layers"``.
        """
        k_in, k_z, k_p = jax.random.split(key, 3)
        h, enc_aux = self.encode(images, k_in, features, frontend)
        z, q, post_aux = self.posterior_sample(h, k_z, train=train, temperature=temperature)
        p, prior_aux = self.prior_probs(z, k_p)
        logits, dec_aux = self.decode(z)
        return logits, {"q": q, "p": p, "z": z, "layers": {**enc_aux, **post_aux, **prior_aux, **dec_aux}}

    def sample_prior(self, key: Array, num: int) -> tuple[Array, dict]:
        """Latent spike trains ``[T, num, L]`` drawn from the prior."""
        if self.prior == "bernoulli":
            return noise.bernoulli_process(key, self.prior_p, (self.num_steps, num, self.latent)), {}
        if self.prior == "uniform_rate":
            k_r, k_z = jax.random.split(key)
            rates = jax.random.uniform(k_r, (num, self.latent))
            return noise.bernoulli_process(k_z, rates, (self.num_steps, num, self.latent)), {}
        if self.prior == "mixture":
            k_c, k_z = jax.random.split(key)
            c = jax.random.categorical(k_c, self.mixture_logits, shape=(num,))
            rates = jnp.swapaxes(jax.nn.sigmoid(self.component_logits[c]), 0, 1)  # [T, num, L]
            return noise.bernoulli_process(k_z, rates, rates.shape), {}
        z, _, aux = self.prior_net(key, None, self.num_steps, num)
        return z, {"prior": aux}

    def generate(self, key: Array, num: int):
        """``num`` images from the prior: ``(probs [num, H, W, C], aux)``.

        Call as ``model.apply(variables, key, num, method="generate")``.
        """
        z, prior_aux = self.sample_prior(key, num)
        logits, aux = self.decode(z)
        return jax.nn.sigmoid(logits).reshape((num,) + tuple(self.image_shape)), {**prior_aux, **aux}

    def reconstruct(self, images: Array, key: Array, frontend: stdp_frontend.STDPFrontEnd | None = None):
        """Mean reconstructions ``[B, H, W, C]`` with a hard latent sample."""
        logits, _ = self(images, key, train=False, frontend=frontend)
        return jax.nn.sigmoid(logits).reshape(images.shape)


FCSpikingVAE = SpikingVAE  # the core benchmark's fully-connected model is the default


# ---------------------------------------------------------------------------
# Analog twin


class AnalogVAE(nn.Module):
    """The spiking VAE's analog twin: ReLU units and a Gaussian latent.

    Same widths as :class:`SpikingVAE` (``encoder``/``decoder`` for the MLP,
    ``channels`` for the conv variant); latent ``z = mu + sigma * eps``.
    ``prior="standard"`` is ``N(0, I)`` (``Bernoulli(prior_p)`` for
    ``latent_kind="bernoulli"``); ``prior="mixture"`` (Gaussian latent only) is
    the analog counterpart of the spiking mixture prior, a learned mixture of
    ``num_components`` diagonal Gaussians
    (:func:`jaxspike.losses.gaussian_mixture_kl`).
    """

    latent: int = 128
    image_shape: tuple[int, int, int] = (28, 28, 1)
    arch: str = "mlp"
    encoder: Sequence[int] = (512, 256)
    decoder: Sequence[int] = (256, 512)
    channels: Sequence[int] = (32, 64)
    latent_kind: str = "gaussian"
    prior_p: float = 0.5
    prior: str = "standard"
    num_components: int = 64

    def setup(self):
        if self.latent < 1:
            raise ValueError(f"latent size must be >= 1, got {self.latent}")
        _check_choice("arch", self.arch, ARCHS)
        _check_choice("latent_kind", self.latent_kind, ("gaussian", "bernoulli"))
        _check_choice("prior", self.prior, ("standard", "mixture"))
        if self.prior == "mixture":
            if self.latent_kind != "gaussian":
                raise ValueError("the analog mixture prior needs latent_kind='gaussian'")
            if self.num_components < 1:
                raise ValueError(f"num_components must be >= 1, got {self.num_components}")
            k = self.num_components
            # Nearly equal unit-variance components at the origin, split by training (as in SpikingVAE).
            self.mixture_logits = self.param("mixture_logits", nn.initializers.zeros, (k,))
            self.component_means = self.param("component_means", nn.initializers.normal(0.01), (k, self.latent))
            self.component_logvars = self.param("component_logvars", nn.initializers.zeros, (k, self.latent))
        h, w, c = self.image_shape
        if self.arch == "mlp":
            self.enc_layers = [nn.Dense(n) for n in self.encoder]
            self.dec_layers = [nn.Dense(n) for n in self.decoder]
            self.out_layer = nn.Dense(h * w * c)
        else:
            self.enc_layers = [nn.Conv(ch, (3, 3), strides=2) for ch in self.channels]
            self.dec_layers = [nn.Dense((h // 4) * (w // 4) * self.channels[-1])]
            self.deconv_layers = [nn.ConvTranspose(self.channels[0], (4, 4), strides=(2, 2))]
            self.out_layer = nn.ConvTranspose(c, (4, 4), strides=(2, 2))
        self.to_mu = nn.Dense(self.latent)
        self.to_logvar = nn.Dense(self.latent)

    def encode(self, images: Array):
        if images.ndim != 4 or tuple(images.shape[1:]) != tuple(self.image_shape):
            raise ValueError(
                f"AnalogVAE expects images [B, {', '.join(map(str, self.image_shape))}], got shape {tuple(images.shape)}"
            )
        x = images if self.arch == "conv" else images.reshape(images.shape[0], -1)
        for layer in self.enc_layers:
            x = nn.relu(layer(x))
        x = x.reshape(x.shape[0], -1)
        return self.to_mu(x), self.to_logvar(x)

    def decode(self, z: Array) -> Array:
        x = z
        for layer in self.dec_layers:
            x = nn.relu(layer(x))
        if self.arch == "conv":
            h, w, _ = self.image_shape
            x = x.reshape(x.shape[0], h // 4, w // 4, self.channels[-1])
            for layer in self.deconv_layers:
                x = nn.relu(layer(x))
        return self.out_layer(x).reshape(z.shape[0], -1)

    def __call__(self, images: Array, key: Array, *, train: bool = True, temperature: float = 1.0):
        del temperature  # same signature as SpikingVAE
        mu, logvar = self.encode(images)
        if self.latent_kind == "bernoulli":
            # Binary latent (straight-through), so a converted decoder can read it as spikes.
            q = jax.nn.sigmoid(mu)
            z = noise.straight_through_bernoulli(key, q)
            return self.decode(z), {"q": q, "z": z, "layers": {}}
        z = mu + jnp.exp(0.5 * logvar) * jax.random.normal(key, mu.shape) if train else mu
        return self.decode(z), {"mu": mu, "logvar": logvar, "z": z, "layers": {}}

    def sample_prior(self, key: Array, num: int) -> Array:
        if self.prior == "mixture":
            k_c, k_z = jax.random.split(key)
            c = jax.random.categorical(k_c, self.mixture_logits, shape=(num,))
            eps = jax.random.normal(k_z, (num, self.latent))
            return self.component_means[c] + jnp.exp(0.5 * self.component_logvars[c]) * eps
        if self.latent_kind == "bernoulli":
            return jax.random.bernoulli(key, self.prior_p, (num, self.latent)).astype(jnp.float32)
        return jax.random.normal(key, (num, self.latent))

    def generate(self, key: Array, num: int):
        z = self.sample_prior(key, num)
        return jax.nn.sigmoid(self.decode(z)).reshape((num,) + tuple(self.image_shape)), {}

    def reconstruct(self, images: Array, key: Array):
        logits, _ = self(images, key, train=False)
        return jax.nn.sigmoid(logits).reshape(images.shape)
