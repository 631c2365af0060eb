"""Spiking variational autoencoder with a Bernoulli spike latent.

The fully-connected model (the core benchmark's, ``bench/svae_step.py``)::

    x [B, D] --rate--> s_in [T, B, D]
      -> LIF(D -> 512) -> LIF(512 -> 256) -> linear(256 -> L): per-step logits l_t
    q_t = sigmoid(l_t);  z_t ~ Bernoulli(q_t)       (straight-through gradient)
      -> LIF(L -> 256) -> LIF(256 -> 512) -> non-spiking readout(512 -> D),
         membrane averaged over time = reconstruction logits

Loss per example: ``BCE(x, logits) + sum_{t, units} KL(Bern(q_t) || Bern(p0))``.
The latent is a Bernoulli spike process, as in the Fully Spiking VAE (Kamata,
Mukuta & Harada, AAAI 2022); sampling draws ``z_t ~ Bernoulli(p0)`` from the
prior and decodes it.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxspike import cells, encoding, layers, losses, noise, surrogates

Array = jax.Array

__all__ = ["FCSpikingVAE", "elbo_loss"]


class FCSpikingVAE(nn.Module):
    """Fully-connected spiking VAE with a Bernoulli spike latent.

    Attributes:
      num_steps: ``T``, time steps per example.
      latent: latent units ``L``.
      encoder: hidden widths of the spiking encoder.
      decoder: hidden widths of the spiking decoder.
      beta, threshold, slope: LIF decay, threshold, fast-sigmoid slope.
      prior_p: firing probability of the Bernoulli prior.
      hoist: synapse placement, see :mod:`jaxspike.layers` (None = auto).
    """

    num_steps: int = 16
    latent: int = 128
    encoder: Sequence[int] = (512, 256)
    decoder: Sequence[int] = (256, 512)
    beta: float = 0.9
    threshold: float = 1.0
    slope: float = 25.0
    prior_p: float = 0.5
    out_dim: int = 784
    hoist: bool | None = None

    def setup(self):
        if self.latent < 1:
            raise ValueError(f"latent size must be >= 1, got {self.latent}")
        encoding.check_num_steps(self.num_steps)
        cell = cells.lif(self.beta, self.threshold, surrogates.fast_sigmoid(self.slope))
        self.enc_layers = [layers.SpikingDense(n, cell=cell, hoist=self.hoist) for n in self.encoder]
        self.to_latent = layers.DenseReadout(self.latent, mode="sequence", beta=0.0)
        self.dec_layers = [layers.SpikingDense(n, cell=cell, hoist=self.hoist) for n in self.decoder]
        self.readout = layers.DenseReadout(self.out_dim, mode="mean", beta=0.0)

    def encode(self, images: Array, key: Array):
        """``images [B, ...]`` in [0, 1] -> posterior probabilities ``q [T, B, L]``, aux."""
        flat = images.reshape(images.shape[0], -1)
        spikes = encoding.rate(key, flat, self.num_steps)
        aux = {}
        for i, layer in enumerate(self.enc_layers):
            spikes, aux[f"enc{i}"] = layer(spikes)
        logits, aux["to_latent"] = self.to_latent(spikes)
        return jax.nn.sigmoid(logits), aux

    def decode(self, z: Array):
        """Latent spikes ``z [T, B, L]`` -> reconstruction logits ``[B, out_dim]``, aux."""
        aux = {}
        spikes = z
        for i, layer in enumerate(self.dec_layers):
            spikes, aux[f"dec{i}"] = layer(spikes)
        logits, aux["readout"] = self.readout(spikes)
        return logits, aux

    def __call__(self, images: Array, key: Array):
        """Encodes, samples the latent spikes and decodes.

        Args:
          images: ``[B, H, W, C]`` or ``[B, D]`` in [0, 1].
          key: PRNG key for the input coding and the latent sample.

        Returns:
          ``(logits [B, D], aux)`` where ``aux`` holds ``q`` (posterior
          probabilities ``[T, B, L]``), ``z`` (latent spikes) and one entry of
          counts per layer under ``"layers"``.
        """
        k_in, k_z = jax.random.split(key)
        q, enc_aux = self.encode(images, k_in)
        z = noise.straight_through_bernoulli(k_z, q)
        flat_dim = images.reshape(images.shape[0], -1).shape[-1]
        if flat_dim != self.out_dim:
            raise ValueError(f"images have {flat_dim} values each but the model's out_dim is {self.out_dim}")
        logits, dec_aux = self.decode(z)
        return logits, {"q": q, "z": z, "layers": {**enc_aux, **dec_aux}}

    def generate(self, key: Array, num: int):
        """Samples ``num`` images from the Bernoulli prior: ``sigmoid(logits) [num, out_dim]``.

        Call as ``model.apply(variables, key, num, method="generate")``.
        """
        z = noise.bernoulli_process(key, self.prior_p, (self.num_steps, num, self.latent))
        logits, aux = self.decode(z)
        return jax.nn.sigmoid(logits), aux


def elbo_loss(model: FCSpikingVAE, params, images: Array, key: Array):
    """Negative ELBO averaged over the batch, and its terms.

    ``-ELBO = BCE(x, logits) + sum_{t,l} KL(Bern(q_t) || Bern(prior_p))``.
    """
    logits, aux = model.apply({"params": params}, images, key)
    targets = images.reshape(images.shape[0], -1)
    recon = losses.bernoulli_nll(logits, targets)
    kl = losses.bernoulli_kl(aux["q"], model.prior_p, batch_axis=1)
    loss = jnp.mean(recon + kl)
    return loss, {"loss": loss, "recon": jnp.mean(recon), "kl": jnp.mean(kl), "aux": aux}
