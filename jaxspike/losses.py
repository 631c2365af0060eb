"""Loss terms, per example (``[B]``); reduce with a mean in the objective."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

Array = jax.Array

__all__ = [
    "bernoulli_nll",
    "gaussian_nll",
    "gaussian_kl",
    "mmd_psp",
    "GAN_LOSSES",
    "gan_d_loss",
    "gan_g_loss",
    "r1_penalty",
    "rate_band_penalty",
    "bernoulli_kl",
    "bernoulli_kl_per_unit",
    "uniform_rate_kl_per_unit",
    "bernoulli_mixture_kl",
    "gaussian_mixture_kl",
    "mixture_bound",
]


def bernoulli_nll(logits: Array, targets: Array) -> Array:
    """Binary cross-entropy ``-sum [x log sig(l) + (1-x) log(1-sig(l))]`` per example.

    ``logits`` and ``targets`` are ``[B, ...]``; targets may be grey levels in
    [0, 1] (continuous Bernoulli without its normaliser, as usual for MNIST).
    """
    if logits.shape != targets.shape:
        raise ValueError(f"logits {logits.shape} and targets {targets.shape} differ in shape")
    per_pixel = jnp.logaddexp(0.0, logits) - targets * logits
    return jnp.sum(per_pixel.reshape(per_pixel.shape[0], -1), axis=1)


def gaussian_nll(logits: Array, targets: Array, sigma: float) -> Array:
    """``sum (sigmoid(l) - x)^2 / (2 sigma^2)`` per example: a Gaussian likelihood of
    fixed ``sigma`` around the pixel means, without its constant."""
    if logits.shape != targets.shape:
        raise ValueError(f"logits {logits.shape} and targets {targets.shape} differ in shape")
    sq = (jax.nn.sigmoid(logits) - targets) ** 2
    return jnp.sum(sq.reshape(sq.shape[0], -1), axis=1) / (2.0 * sigma**2)


def gaussian_kl(mu: Array, logvar: Array) -> Array:
    """``KL(N(mu, exp(logvar)) || N(0, I)) = 1/2 sum (exp(logvar) + mu^2 - 1 - logvar)`` per example ``[B]``."""
    return 0.5 * jnp.sum(jnp.exp(logvar) + mu**2 - 1.0 - logvar, axis=1)


def mmd_psp(q: Array, p: Array, tau_syn: float = 2.0) -> Array:
    """Squared distance between PSP-filtered posterior and prior spike probabilities.

    The Fully Spiking VAE compares posterior and prior spike trains after
    filtering them with a post-synaptic-potential kernel (Kamata et al. 2022,
    sec. 3.3). Here both ``[T, B, L]`` probability sequences are filtered with
    ``psp_t = (1 - 1/tau) psp_{t-1} + x_t / tau`` and compared per example:
    ``sum_{t, l} (psp(q) - psp(p))^2`` -> ``[B]``.
    """
    decay = 1.0 - 1.0 / tau_syn

    def filt(seq):
        def step(c, x):
            c = decay * c + x / tau_syn
            return c, c

        return jax.lax.scan(step, jnp.zeros_like(seq[0]), seq)[1]

    diff = filt(q) - filt(jnp.broadcast_to(p, q.shape))
    return jnp.sum(jnp.moveaxis(diff, 1, 0).reshape(q.shape[1], -1) ** 2, axis=1)


def bernoulli_kl(q: Array, p: Array | float, *, batch_axis: int = 0, eps: float = 1e-6) -> Array:
    """``KL(Bern(q) || Bern(p))`` summed over all axes but ``batch_axis``.

    ``KL = q log(q/p) + (1-q) log((1-q)/(1-p))``; probabilities are clipped to
    ``[eps, 1-eps]`` so a saturated posterior gives a large finite value, not
    NaN.
    """
    q = jnp.clip(q, eps, 1.0 - eps)
    p = jnp.clip(jnp.asarray(p, q.dtype), eps, 1.0 - eps)
    kl = q * (jnp.log(q) - jnp.log(p)) + (1.0 - q) * (jnp.log1p(-q) - jnp.log1p(-p))
    kl = jnp.moveaxis(kl, batch_axis, 0)
    return jnp.sum(kl.reshape(kl.shape[0], -1), axis=1)


def bernoulli_kl_per_unit(q: Array, p: Array | float, *, eps: float = 1e-6) -> Array:
    """``KL(Bern(q) || Bern(p))`` of time-major ``[T, B, L]`` spike probabilities, summed over time: ``[B, L]``."""
    q = jnp.clip(q, eps, 1.0 - eps)
    p = jnp.clip(jnp.asarray(p, q.dtype), eps, 1.0 - eps)
    kl = q * (jnp.log(q) - jnp.log(p)) + (1.0 - q) * (jnp.log1p(-q) - jnp.log1p(-p))
    return jnp.sum(kl, axis=0)


def uniform_rate_kl_per_unit(q: Array, z: Array, *, eps: float = 1e-6) -> Array:
    """One-sample estimate of ``KL(q(z|x) || p(z))`` under a uniform-rate spike prior: ``[B, L]``.

    The prior draws one firing rate ``r ~ U(0, 1)`` per unit and sample, then
    ``z_t ~ Bern(r)`` at every step, so a unit's spike train has probability
    ``p(z) = int r^n (1-r)^(T-n) dr = n! (T-n)! / (T+1)!`` with ``n = sum_t z_t``
    (a beta-binomial with ``a = b = 1``): trains of steady rate are as likely
    as any other rate, unlike under an i.i.d. Bernoulli(0.5) prior, which
    concentrates rates near 0.5. With ``q [T, B, L]`` the posterior spike
    probabilities and ``z`` a sample of them (straight-through or relaxed, so
    ``n`` carries the gradient),

        KL ~= sum_t [q_t log q_t + (1 - q_t) log(1 - q_t)] - log p(z):

    the posterior's negative entropy exactly, the cross-entropy by the sample.
    """
    if q.shape != z.shape or q.ndim != 3:
        raise ValueError(f"q and z must both be [T, B, L], got {q.shape} and {z.shape}")
    num_steps = q.shape[0]
    qc = jnp.clip(q, eps, 1.0 - eps)
    neg_entropy = jnp.sum(qc * jnp.log(qc) + (1.0 - qc) * jnp.log1p(-qc), axis=0)
    n = jnp.sum(z, axis=0)
    log_prior = (jax.scipy.special.gammaln(n + 1.0) + jax.scipy.special.gammaln(num_steps - n + 1.0)
                 - jax.scipy.special.gammaln(num_steps + 2.0))
    return neg_entropy - log_prior


def bernoulli_mixture_kl(q: Array, component_logits: Array, mixture_logits: Array, *, eps: float = 1e-6):
    """KL of a Bernoulli spike posterior to a mixture of Bernoulli spike processes.

    The prior first picks a component ``c ~ Cat(softmax(mixture_logits))``,
    then fires every unit at every step independently,
    ``z_tl ~ Bern(sigmoid(component_logits[c, t, l]))``. Treating ``c`` as a
    latent variable with its own posterior ``r(c | x)`` bounds the KL to the
    mixture marginal from above (as in mixture-prior VAEs, Dilokthanakul et al.
    2016, "Deep unsupervised clustering with Gaussian mixture VAEs")::

        KL(q || sum_c pi_c p_c) <= sum_c r_c KL(q || p_c) + KL(r || pi)

    and the bound is tightest, equal to ``-logsumexp_c(log pi_c - KL(q || p_c))``,
    at ``r = softmax(log pi - KL(q || p_.))``, which is what is used. ``r`` is
    held fixed under differentiation: at the optimum the bound's gradient
    does not depend on ``r`` (envelope theorem), so this changes nothing but
    the cost. Keeping the per-unit split lets free bits act on each unit.

    Args:
      q: posterior spike probabilities ``[T, B, L]``.
      component_logits: ``[K, T, L]``.
      mixture_logits: ``[K]``.

    Returns:
      ``(kl_units [B, L], kl_component [B], r [B, K])``: the expected per-unit
      KL summed over time under ``r``, ``KL(r || pi)``, and ``r``. The total KL
      is ``kl_units.sum(1) + kl_component``.
    """
    if q.ndim != 3:
        raise ValueError(f"q must be [T, B, L], got shape {q.shape}")
    k = mixture_logits.shape[0]
    if component_logits.shape != (k,) + (q.shape[0], q.shape[2]):
        raise ValueError(
            f"component_logits must be [K={k}, T={q.shape[0]}, L={q.shape[2]}], got shape {component_logits.shape}"
        )
    qc = jnp.clip(q, eps, 1.0 - eps)
    neg_entropy = jnp.sum(qc * jnp.log(qc) + (1.0 - qc) * jnp.log1p(-qc), axis=0)  # [B, L]
    log_on = jax.nn.log_sigmoid(component_logits)
    log_off = jax.nn.log_sigmoid(-component_logits)
    cross = -(jnp.einsum("tbl,ktl->bkl", qc, log_on) + jnp.einsum("tbl,ktl->bkl", 1.0 - qc, log_off))
    return mixture_bound(neg_entropy[:, None, :] + cross, mixture_logits)  # KL(q || p_c) per unit: [B, K, L]


def mixture_bound(kl_bkl: Array, mixture_logits: Array):
    """The component-posterior bound on ``KL(q || sum_c pi_c p_c)`` from the per-component KLs.

    ``kl_bkl [B, K, L]`` holds ``KL(q || p_c)`` per example, component and
    latent unit, ``mixture_logits [K]`` the mixing weights. Returns
    ``(kl_units [B, L], kl_component [B], r [B, K])`` as
    :func:`bernoulli_mixture_kl` describes.
    """
    log_pi = jax.nn.log_softmax(mixture_logits)
    r = jax.lax.stop_gradient(jax.nn.softmax(log_pi - jnp.sum(kl_bkl, axis=2), axis=1))  # [B, K]
    kl_units = jnp.einsum("bk,bkl->bl", r, kl_bkl)
    kl_component = jnp.sum(r * (jnp.log(jnp.maximum(r, 1e-30)) - log_pi), axis=1)
    return kl_units, kl_component, r


def gaussian_mixture_kl(mu: Array, logvar: Array, means: Array, logvars: Array, mixture_logits: Array):
    """The same bound for a diagonal Gaussian posterior and a mixture of diagonal Gaussians.

    ``mu, logvar [B, L]`` describe ``q``; ``means, logvars [K, L]`` the
    components; ``KL(q || p_c)`` per unit is the closed form
    ``(lv_c - lv + (e^lv + (mu - m_c)^2) / e^lv_c - 1) / 2``. Returns
    ``(kl_units [B, L], kl_component [B], r [B, K])``.
    """
    if mu.shape != logvar.shape or mu.ndim != 2:
        raise ValueError(f"mu and logvar must both be [B, L], got {mu.shape} and {logvar.shape}")
    if means.shape != logvars.shape or means.shape[1:] != mu.shape[1:]:
        raise ValueError(f"means and logvars must both be [K, L={mu.shape[1]}], got {means.shape} and {logvars.shape}")
    var = jnp.exp(logvar)[:, None, :]
    kl_bkl = 0.5 * (logvars[None] - logvar[:, None, :] + (var + (mu[:, None, :] - means[None]) ** 2)
                    * jnp.exp(-logvars[None]) - 1.0)
    return mixture_bound(kl_bkl, mixture_logits)


# ---------------------------------------------------------------------------
# GAN losses and the generator's activity band.

GAN_LOSSES = ("ns", "hinge", "wgan_gp")


def gan_d_loss(kind: str, d_real: Array, d_fake: Array) -> Array:
    """Per-example discriminator loss on logits (without gradient penalties).

    * ``ns`` (non-saturating; Goodfellow et al. 2014):
      ``softplus(-d_real) + softplus(d_fake)``;
    * ``hinge`` (Lim & Ye 2017): ``relu(1 - d_real) + relu(1 + d_fake)``;
    * ``wgan_gp`` (Gulrajani et al. 2017): ``d_fake - d_real`` (the gradient
      penalty is added by the GAN step).
    """
    if kind == "ns":
        return jax.nn.softplus(-d_real) + jax.nn.softplus(d_fake)
    if kind == "hinge":
        return jax.nn.relu(1.0 - d_real) + jax.nn.relu(1.0 + d_fake)
    if kind == "wgan_gp":
        return d_fake - d_real
    raise ValueError(f"GAN loss must be one of {GAN_LOSSES}, got {kind!r}")


def gan_g_loss(kind: str, d_fake: Array) -> Array:
    """Per-example generator loss: ``softplus(-d_fake)`` (``ns``) or ``-d_fake`` (``hinge``, ``wgan_gp``)."""
    if kind == "ns":
        return jax.nn.softplus(-d_fake)
    if kind in ("hinge", "wgan_gp"):
        return -d_fake
    raise ValueError(f"GAN loss must be one of {GAN_LOSSES}, got {kind!r}")


def r1_penalty(critic: Callable[[Array], Array], real: Array) -> Array:
    """Per-example ``||grad_x D(x)||^2`` on real images ``[B, ...]`` (R1; Mescheder et al. 2018).

    ``critic`` maps a batch to per-example logits; the penalty is usually
    weighted by ``gamma / 2``.
    """
    grads = jax.grad(lambda x: jnp.sum(critic(x)))(real)
    return jnp.sum(grads.reshape(real.shape[0], -1) ** 2, axis=1)


def check_band(band) -> tuple[float, float]:
    """``(lo, hi)`` of a firing-rate band, checked: ``0 <= lo < hi <= 1``."""
    lo, hi = band
    if not 0.0 <= lo < hi <= 1.0:
        raise ValueError(f"homeostasis band must satisfy 0 <= lo < hi <= 1, got {tuple(band)}")
    return lo, hi


def rate_band_penalty(rates, band: tuple[float, float]) -> Array:
    """``sum_l mean_j (relu(r_lj - hi)^2 + relu(lo - r_lj)^2)`` over layers' per-neuron rates ``r_l [N_l]``.

    The upper and lower activity regularisers of Zenke & Vogels 2021 ("The
    remarkable robustness of surrogate gradient learning for instilling
    complex function in spiking neural networks") as a band: a neuron that
    fires at every step carries no noise and, far above threshold, passes no
    surrogate gradient, so it could never recover.
    """
    lo, hi = check_band(band)
    if not rates:
        raise ValueError("the rate band penalty needs spiking layers with per-neuron rates (a spiking generator)")
    return sum(jnp.mean(jax.nn.relu(r - hi) ** 2 + jax.nn.relu(lo - r) ** 2) for r in rates)
