"""GAN objectives and the pure GAN training step (discriminator, then generator).

Losses (Goodfellow et al. 2014; Lim & Ye 2017; Gulrajani et al. 2017), on
discriminator logits ``d_real``, ``d_fake``:

* ``ns`` (non-saturating): ``L_D = softplus(-d_real) + softplus(d_fake)``,
  ``L_G = softplus(-d_fake)``.
* ``hinge``: ``L_D = relu(1 - d_real) + relu(1 + d_fake)``, ``L_G = -d_fake``.
* ``wgan_gp``: ``L_D = d_fake - d_real + lambda (||grad_x D(x_hat)|| - 1)^2``
  on random interpolates ``x_hat``, ``L_G = -d_fake``.

Optional R1 penalty ``gamma/2 ||grad_x D(x_real)||^2`` (Mescheder et al.
2018) and an exponential moving average of the generator weights for sampling
(Karras et al. 2018). Real and fake images pass through the discriminator as
one concatenated batch.

Options against mode collapse and a discriminator that is easily fooled:

* ``augment_shift``: differentiable random translation of every image the
  discriminator sees, real and fake, by up to that many pixels with zero fill
  (DiffAugment, Zhao et al. 2020, "Differentiable augmentation for
  data-efficient GAN training"): the generator is judged on what survives a
  shift, so it cannot win with a pixel pattern aimed at a few detectors.
* ``fm_weight``: feature matching (Salimans et al. 2016, "Improved
  techniques for training GANs"): the generator also matches the batch mean
  of the discriminator's last features (for a spiking discriminator, its
  last layer's firing rates) on real images.
* ``cr_weight``: consistency regularisation (Zhang et al. 2020,
  "Consistency regularization for generative adversarial networks"):
  ``lambda (D(x) - D(x + sigma n))^2`` on real and fake images with Gaussian
  pixel noise ``n`` and the same spike-coding key. Unlike R1, which for a
  spiking discriminator penalises the *surrogate* input gradient, it bounds
  how much the discriminator's actual output moves.
* ``g_homeostasis``: per-neuron activity band for the spiking generator,
  ``lambda sum_l mean_j (relu(r_j - hi)^2 + relu(lo - r_j)^2)`` on each
  hidden neuron's firing rate ``r_j`` over the batch and time: a neuron
  that fires at every step for every sample carries no noise to the image
  and, far above threshold, passes no surrogate gradient, so it can never
  recover (the upper and lower activity regularisers of Zenke & Vogels 2021,
  "The remarkable robustness of surrogate gradient learning for instilling
  complex function in spiking neural networks").
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

Array = jax.Array

GAN_LOSSES = ("ns", "hinge", "wgan_gp")

__all__ = ["GANState", "GAN_LOSSES", "init_gan_state", "make_gan_step", "d_losses", "g_loss", "translate",
           "rate_band_penalty"]


class GANState(NamedTuple):
    step: Array
    g_params: Any
    d_params: Any
    g_opt: Any
    d_opt: Any
    g_ema: Any


def d_losses(kind: str, d_real: Array, d_fake: Array) -> Array:
    """Per-example discriminator loss (without gradient penalties)."""
    if kind == "ns":
        return jax.nn.softplus(-d_real) + jax.nn.softplus(d_fake)
    if kind == "hinge":
        return jax.nn.relu(1.0 - d_real) + jax.nn.relu(1.0 + d_fake)
    if kind == "wgan_gp":
        return d_fake - d_real
    raise ValueError(f"GAN loss must be one of {GAN_LOSSES}, got {kind!r}")


def g_loss(kind: str, d_fake: Array) -> Array:
    """Per-example generator loss."""
    if kind == "ns":
        return jax.nn.softplus(-d_fake)
    if kind in ("hinge", "wgan_gp"):
        return -d_fake
    raise ValueError(f"GAN loss must be one of {GAN_LOSSES}, got {kind!r}")


def translate(key: Array, images: Array, max_shift: int) -> Array:
    """Shifts each image of ``[B, H, W, C]`` by its own random offset in
    ``[-max_shift, max_shift]^2`` pixels, filling with zeros; differentiable in
    the pixels (a gather)."""
    if images.ndim != 4:
        raise ValueError(f"translate expects images [B, H, W, C], got shape {tuple(images.shape)}")
    if max_shift < 0:
        raise ValueError(f"augment shift must be >= 0 pixels, got {max_shift}")
    if max_shift == 0:
        return images
    batch, height, width, _ = images.shape
    offsets = jax.random.randint(key, (batch, 2), 0, 2 * max_shift + 1)
    padded = jnp.pad(images, ((0, 0), (max_shift, max_shift), (max_shift, max_shift), (0, 0)))

    def crop(image, offset):
        return jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (height, width, image.shape[-1]))

    return jax.vmap(crop)(padded, offsets)


def _check_band(band) -> tuple[float, float]:
    lo, hi = band
    if not 0.0 <= lo < hi <= 1.0:
        raise ValueError(f"homeostasis band must satisfy 0 <= lo < hi <= 1, got {tuple(band)}")
    return lo, hi


def rate_band_penalty(rates, band: tuple[float, float]) -> Array:
    """``sum_l mean_j (relu(r_lj - hi)^2 + relu(lo - r_lj)^2)`` over layers' per-neuron rates ``r_l [N_l]``."""
    lo, hi = _check_band(band)
    if not rates:
        raise ValueError("the rate band penalty needs spiking layers with per-neuron rates (a spiking generator)")
    return sum(jnp.mean(jax.nn.relu(r - hi) ** 2 + jax.nn.relu(lo - r) ** 2) for r in rates)


def init_gan_state(generator, discriminator, key, image_example, g_tx, d_tx) -> GANState:
    """Initial state; ``image_example`` is a ``[B, H, W, C]`` batch used for shapes."""
    k_g, k_d, k_z, k_c = jax.random.split(key, 4)
    z = generator.sample_noise(k_z, image_example.shape[0])
    g_params = generator.init(k_g, z)["params"]
    d_params = discriminator.init(k_d, image_example, k_c)["params"]
    return GANState(
        step=jnp.zeros((), jnp.int32),
        g_params=g_params,
        d_params=d_params,
        g_opt=g_tx.init(g_params),
        d_opt=d_tx.init(d_params),
        g_ema=g_params,
    )


def _rates(aux: dict) -> dict:
    return {f"rate/{k}": jnp.mean(v["firing_rate"]) for k, v in aux.items() if "firing_rate" in v}


def make_gan_step(
    generator,
    discriminator,
    g_tx: optax.GradientTransformation,
    d_tx: optax.GradientTransformation,
    *,
    loss: str = "ns",
    r1_gamma: float = 0.0,
    gp_weight: float = 10.0,
    ema_decay: float = 0.999,
    g_rate_penalty: float = 0.0,
    augment_shift: int = 0,
    fm_weight: float = 0.0,
    g_homeostasis: float = 0.0,
    cr_weight: float = 0.0,
    cr_sigma: float = 0.05,
    homeostasis_band: tuple[float, float] = (0.01, 0.5),
):
    """Builds the pure step ``(state, batch, key) -> (state, metrics)``.

    One call updates the discriminator on real and generated images (one
    concatenated batch), then the generator through the updated
    discriminator, then the generator's EMA. ``g_rate_penalty`` adds
    ``lambda * sum_l mean firing rate of generator layer l`` to the generator
    loss (an activity regulariser: spikes are what a generated sample costs).
    """
    for name, value in (("g_rate_penalty", g_rate_penalty), ("fm_weight", fm_weight), ("cr_weight", cr_weight),
                        ("augment_shift", augment_shift)):
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
    if loss not in GAN_LOSSES:
        raise ValueError(f"GAN loss must be one of {GAN_LOSSES}, got {loss!r}")
    _check_band(homeostasis_band)
    if not 0.0 <= ema_decay < 1.0:
        raise ValueError(f"ema_decay must lie in [0, 1), got {ema_decay}")

    def generate(g_params, key, num):
        z = generator.sample_noise(key, num)
        return generator.apply({"params": g_params}, z)

    def disc(d_params, images, key):
        if augment_shift:  # the shifts get their own stream; without them the coder keeps ``key``
            k_aug, key = jax.random.split(key)
            images = translate(k_aug, images, augment_shift)
        return discriminator.apply({"params": d_params}, images, key)

    def d_objective(d_params, g_params, real, key):
        k_z, k_d, k_gp, k_eps = jax.random.split(key, 4)
        batch = real.shape[0]
        fake, _ = generate(g_params, k_z, batch)
        fake = jax.lax.stop_gradient(fake)
        logits, d_aux = disc(d_params, jnp.concatenate([real, fake], axis=0), k_d)
        d_real, d_fake = logits[:batch], logits[batch:]
        per_example = d_losses(loss, d_real, d_fake)
        metrics = {"d_real": jnp.mean(d_real), "d_fake": jnp.mean(d_fake)}
        if loss == "wgan_gp":
            eps = jax.random.uniform(k_eps, (batch, 1, 1, 1))
            x_hat = eps * real + (1.0 - eps) * fake
            grads = jax.grad(lambda x: jnp.sum(disc(d_params, x, k_gp)[0]))(x_hat)
            norms = jnp.sqrt(jnp.sum(grads.reshape(batch, -1) ** 2, axis=1) + 1e-12)
            gp = (norms - 1.0) ** 2
            per_example = per_example + gp_weight * gp
            metrics["gp"] = jnp.mean(gp)
        if cr_weight:
            both = jnp.concatenate([real, fake], axis=0)
            k_cr = jax.random.fold_in(k_eps, 1)  # k_eps itself draws WGAN-GP's interpolation weights
            noisy = jnp.clip(both + cr_sigma * jax.random.normal(k_cr, both.shape, both.dtype), 0.0, 1.0)
            # Same coding key: the two passes differ only by the pixel perturbation.
            logits_noisy, _ = disc(d_params, noisy, k_d)
            cr = (logits - logits_noisy) ** 2
            per_example = per_example + cr_weight * (cr[:batch] + cr[batch:])
            metrics["cr"] = jnp.mean(cr)
        if r1_gamma:
            grads = jax.grad(lambda x: jnp.sum(disc(d_params, x, k_gp)[0]))(real)
            r1 = jnp.sum(grads.reshape(batch, -1) ** 2, axis=1)
            per_example = per_example + 0.5 * r1_gamma * r1
            metrics["r1"] = jnp.mean(r1)
        d_loss = jnp.mean(per_example)
        metrics["d_loss"] = d_loss
        return d_loss, (metrics, d_aux)

    def g_objective(g_params, d_params, real, key):
        k_z, k_d = jax.random.split(key)
        batch = real.shape[0]
        fake, g_aux = generate(g_params, k_z, batch)
        if fm_weight:  # real features need no gradient, and real and fake go through D as one batch
            logits, d_aux = disc(d_params, jnp.concatenate([jax.lax.stop_gradient(real), fake], axis=0), k_d)
            d_fake = logits[batch:]
            feats = d_aux["features"]["mean"]
            fm = jnp.mean((jax.lax.stop_gradient(jnp.mean(feats[:batch], axis=0)) - jnp.mean(feats[batch:], axis=0)) ** 2)
        else:
            d_fake, _ = disc(d_params, fake, k_d)
        loss_g = jnp.mean(g_loss(loss, d_fake))
        # Spread of the generated pixels across the batch: near 0 when the generator has collapsed.
        metrics = {"g_loss": loss_g, "fake_pixel_std": jnp.mean(jnp.std(jax.lax.stop_gradient(fake), axis=0))}
        total = loss_g
        if fm_weight:
            total = total + fm_weight * fm
            metrics["g_feature_matching"] = fm
        if g_homeostasis:
            band = rate_band_penalty([v["neuron_rate"] for v in g_aux.values() if "neuron_rate" in v], homeostasis_band)
            total = total + g_homeostasis * band
            metrics["g_homeostasis"] = band

        if g_rate_penalty:
            activity = sum(jnp.mean(v["firing_rate"]) for v in g_aux.values() if "firing_rate" in v)
            total = total + g_rate_penalty * activity
            metrics["g_activity"] = activity
        return total, (metrics, g_aux)

    def step(state: GANState, batch: dict, key: Array):
        real = batch["image"]
        k_d, k_g = jax.random.split(key)
        (_, (d_metrics, d_aux)), d_grads = jax.value_and_grad(d_objective, has_aux=True)(
            state.d_params, state.g_params, real, k_d
        )
        d_updates, d_opt = d_tx.update(d_grads, state.d_opt, state.d_params)
        d_params = optax.apply_updates(state.d_params, d_updates)
        (_, (g_metrics, g_aux)), g_grads = jax.value_and_grad(g_objective, has_aux=True)(
            state.g_params, d_params, real, k_g
        )
        g_updates, g_opt = g_tx.update(g_grads, state.g_opt, state.g_params)
        g_params = optax.apply_updates(state.g_params, g_updates)
        g_ema = jax.tree_util.tree_map(lambda e, p: ema_decay * e + (1.0 - ema_decay) * p, state.g_ema, g_params)
        metrics = {
            **d_metrics,
            **g_metrics,
            "d_grad_norm": optax.tree.norm(d_grads),
            "g_grad_norm": optax.tree.norm(g_grads),
            **_rates(g_aux),
            **_rates(d_aux),
        }
        new_state = GANState(state.step + 1, g_params, d_params, g_opt, d_opt, g_ema)
        return new_state, metrics

    return step
