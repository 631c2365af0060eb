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
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

Array = jax.Array

GAN_LOSSES = ("ns", "hinge", "wgan_gp")

__all__ = ["GANState", "GAN_LOSSES", "init_gan_state", "make_gan_step", "d_losses", "g_loss"]


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
):
    """Builds the pure step ``(state, batch, key) -> (state, metrics)``.

    One call updates the discriminator on real and generated images (one
    concatenated batch), then the generator through the updated
    discriminator, then the generator's EMA. ``g_rate_penalty`` adds
    ``lambda * sum_l mean firing rate of generator layer l`` to the generator
    loss (an activity regulariser: spikes are what a generated sample costs).
    """
    if g_rate_penalty < 0:
        raise ValueError(f"g_rate_penalty must be >= 0, got {g_rate_penalty}")
    if loss not in GAN_LOSSES:
        raise ValueError(f"GAN loss must be one of {GAN_LOSSES}, got {loss!r}")
    if not 0.0 <= ema_decay < 1.0:
        raise ValueError(f"ema_decay must lie in [0, 1), got {ema_decay}")

    def generate(g_params, key, num):
        z = generator.sample_noise(key, num)
        return generator.apply({"params": g_params}, z)

    def disc(d_params, images, key):
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
        if r1_gamma:
            grads = jax.grad(lambda x: jnp.sum(disc(d_params, x, k_gp)[0]))(real)
            r1 = jnp.sum(grads.reshape(batch, -1) ** 2, axis=1)
            per_example = per_example + 0.5 * r1_gamma * r1
            metrics["r1"] = jnp.mean(r1)
        d_loss = jnp.mean(per_example)
        metrics["d_loss"] = d_loss
        return d_loss, (metrics, d_aux)

    def g_objective(g_params, d_params, batch, key):
        k_z, k_d = jax.random.split(key)
        fake, g_aux = generate(g_params, k_z, batch)
        d_fake, _ = disc(d_params, fake, k_d)
        loss_g = jnp.mean(g_loss(loss, d_fake))
        metrics = {"g_loss": loss_g}
        total = loss_g
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
            state.g_params, d_params, real.shape[0], k_g
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
