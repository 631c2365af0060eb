"""Hand-computed values of the loss terms, penalties and metrics the models are judged by.

Each test fixes a tiny input whose answer can be worked out on paper, so a
sign, an operand order or an off-by-one in the code changes the number.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxspike import losses, metrics
from jaxspike.families import gan as gan_family
from jaxspike.families import vae as vae_family
from jaxspike.models import vae


def _softplus(x):
    return float(np.log1p(np.exp(x)))


def _sigmoid(x):
    return float(1.0 / (1.0 + np.exp(-x)))


# --------------------------------------------------------------------------- GAN losses


def test_gan_losses_golden_values():
    d_real, d_fake = jnp.array([1.0, -0.5]), jnp.array([2.0, 0.25])
    ns = losses.gan_d_loss("ns", d_real, d_fake)
    np.testing.assert_allclose(ns, [_softplus(-1.0) + _softplus(2.0), _softplus(0.5) + _softplus(0.25)], rtol=1e-6)
    hinge = losses.gan_d_loss("hinge", d_real, d_fake)
    np.testing.assert_allclose(hinge, [0.0 + 3.0, 1.5 + 1.25], rtol=1e-6)
    np.testing.assert_allclose(losses.gan_d_loss("wgan_gp", d_real, d_fake), [1.0, 0.75], rtol=1e-6)
    np.testing.assert_allclose(losses.gan_g_loss("ns", d_fake), [_softplus(-2.0), _softplus(-0.25)], rtol=1e-6)
    np.testing.assert_allclose(losses.gan_g_loss("hinge", d_fake), [-2.0, -0.25], rtol=1e-6)


class _ConstantGenerator:
    """``G(z) = theta``: every sample is the parameter image, whatever the noise."""

    def __init__(self, shape):
        self.shape = shape

    def sample_noise(self, key, num):
        return jax.random.uniform(key, (num, 1))

    def init(self, key, z):
        return {"params": {"theta": jnp.full(self.shape, 0.5)}}

    def apply(self, variables, z):
        theta = variables["params"]["theta"]
        return jnp.broadcast_to(theta, (z.shape[0],) + self.shape), {}


class _LinearDiscriminator:
    """``D(x) = <w, x> + b``: its input gradient is ``w``, its weight gradient ``x``."""

    def init(self, key, images, key2=None):
        return {"params": {"w": jnp.array([[[0.3], [-0.2]], [[0.1], [0.4]]]), "b": jnp.array(0.1)}}

    def apply(self, variables, images, key):
        p = variables["params"]
        logits = jnp.sum(images * p["w"], axis=(1, 2, 3)) + p["b"]
        return logits, {"features": {"mean": images.reshape(images.shape[0], -1)}}


def _linear_gan_step(**kwargs):
    gen, disc = _ConstantGenerator((2, 2, 1)), _LinearDiscriminator()
    tx = optax.sgd(1.0)
    real = jnp.array([[[[1.0], [0.0]], [[0.0], [1.0]]]])  # one real image
    state = gan_family.init_gan_state(gen, disc, jax.random.key(0), real, tx, tx)
    step = gan_family.make_gan_step(gen, disc, tx, tx, gan_family.GANLoss(ema_decay=0.0, **kwargs))
    return state, step, real


def test_gan_step_updates_d_then_g_through_the_updated_d():
    """Non-saturating loss, SGD with rate 1: both updates worked out by hand."""
    state, step, real = _linear_gan_step(name="ns")
    w, b = np.asarray(state.d_params["w"]), float(state.d_params["b"])
    theta = np.asarray(state.g_params["theta"])
    x = np.asarray(real[0])
    d_real, d_fake = float(np.sum(w * x) + b), float(np.sum(w * theta) + b)
    # L_D = softplus(-d_real) + softplus(d_fake)
    gw = -_sigmoid(-d_real) * x + _sigmoid(d_fake) * theta
    gb = -_sigmoid(-d_real) + _sigmoid(d_fake)
    w1, b1 = w - gw, b - gb
    # L_G = softplus(-D'(theta)) with the *updated* discriminator
    d_fake1 = float(np.sum(w1 * theta) + b1)
    theta1 = theta + _sigmoid(-d_fake1) * w1
    new, metrics_ = step(state, {"image": real}, jax.random.key(1))
    np.testing.assert_allclose(new.d_params["w"], w1, rtol=1e-5)
    np.testing.assert_allclose(new.d_params["b"], b1, rtol=1e-5)
    np.testing.assert_allclose(new.g_params["theta"], theta1, rtol=1e-5)
    np.testing.assert_allclose(new.g_ema["theta"], theta1, rtol=1e-5)  # ema_decay 0: the EMA is the new G
    np.testing.assert_allclose(metrics_["d_loss"], _softplus(-d_real) + _softplus(d_fake), rtol=1e-5)
    np.testing.assert_allclose(metrics_["g_loss"], _softplus(-d_fake1), rtol=1e-5)


def test_r1_and_gradient_penalty_golden_values():
    """For a linear D the input gradient is ``w`` everywhere: R1 = |w|^2, GP = (|w| - 1)^2."""
    state, step, real = _linear_gan_step(name="ns", r1_gamma=2.0)
    w = np.asarray(state.d_params["w"])
    _, m = step(state, {"image": real}, jax.random.key(1))
    np.testing.assert_allclose(m["r1"], np.sum(w**2), rtol=1e-5)
    d_real = float(np.sum(w * np.asarray(real[0])) + state.d_params["b"])
    d_fake = float(np.sum(w * np.asarray(state.g_params["theta"])) + state.d_params["b"])
    np.testing.assert_allclose(m["d_loss"], _softplus(-d_real) + _softplus(d_fake) + 0.5 * 2.0 * np.sum(w**2), rtol=1e-5)

    state, step, real = _linear_gan_step(name="wgan_gp", gp_weight=10.0)
    _, m = step(state, {"image": real}, jax.random.key(1))
    norm = np.sqrt(np.sum(w**2))
    np.testing.assert_allclose(m["gp"], (norm - 1.0) ** 2, rtol=1e-4)
    np.testing.assert_allclose(m["d_loss"], d_fake - d_real + 10.0 * (norm - 1.0) ** 2, rtol=1e-4)


# --------------------------------------------------------------------------- VAE terms


def test_bernoulli_nll_golden_values():
    logits = jnp.array([[0.0, 2.0], [-1.0, 3.0]])
    targets = jnp.array([[1.0, 0.0], [0.25, 1.0]])
    expected = [
        np.log(2.0) + (np.log1p(np.exp(2.0))),
        -(0.25 * np.log(_sigmoid(-1.0)) + 0.75 * np.log(1.0 - _sigmoid(-1.0))) - np.log(_sigmoid(3.0)),
    ]
    np.testing.assert_allclose(losses.bernoulli_nll(logits, targets), expected, rtol=1e-6)


def test_mmd_psp_golden_values():
    """tau = 2: psp_t = psp_{t-1} / 2 + x_t / 2, summed squared difference over steps and units."""
    q = jnp.array([[[0.8, 0.2]], [[0.4, 0.6]]])  # [T=2, B=1, L=2]
    p = 0.5
    psp_q = [[0.4, 0.1], [0.2 + 0.2, 0.05 + 0.3]]
    psp_p = [[0.25, 0.25], [0.125 + 0.25, 0.125 + 0.25]]
    expected = sum((a - b) ** 2 for rq, rp in zip(psp_q, psp_p) for a, b in zip(rq, rp))
    np.testing.assert_allclose(losses.mmd_psp(q, p, tau_syn=2.0), [expected], rtol=1e-6)


def test_analog_twin_gaussian_kl_is_the_closed_form():
    """KL(N(mu, sigma^2) || N(0, 1)) = 1/2 sum (sigma^2 + mu^2 - 1 - log sigma^2), with the model's mu, logvar."""
    model = vae.AnalogVAE(latent=3, encoder=(8,), decoder=(8,), image_shape=(4, 4, 1))
    images = jax.random.uniform(jax.random.key(0), (5, 4, 4, 1))
    params = model.init(jax.random.key(1), images, jax.random.key(2))["params"]
    # Shift the mean readout so mu is far from 0 and the mu^2 term matters.
    params = {**params, "to_mu": {**params["to_mu"], "bias": params["to_mu"]["bias"] + 1.5}}
    _, terms = vae_family.analog_elbo_loss(model, params, images, jax.random.key(3))
    mu, logvar = np.asarray(terms["aux"]["mu"]), np.asarray(terms["aux"]["logvar"])
    expected = 0.5 * np.sum(np.exp(logvar) + mu**2 - 1.0 - logvar, axis=1).mean()
    assert abs(mu).mean() > 1.0
    np.testing.assert_allclose(terms["kl"], expected, rtol=1e-5)


# --------------------------------------------------------------------------- k-NN metrics


def test_precision_recall_density_coverage_golden_values():
    """1-D points; k = 2, so each ball's radius is the distance to the 2nd nearest *other* point.

    real 0, 1, 3, 6, 10 -> radii 3, 2, 3, 4, 7 (with k - 1 they would be 1, 1, 2, 3, 4).
    """
    real = np.array([[0.0], [1.0], [3.0], [6.0], [10.0]])
    fake = np.array([[2.0], [15.0], [16.0]])
    # Real balls holding each fake: 2 -> {0, 1, 3, 6}; 15 -> {10} (|15-10| = 5 <= 7); 16 -> {10} (6 <= 7).
    # Fake radii (k = 2 among the fakes): 2 -> 14, 15 -> 13, 16 -> 14; every real point lies in
    # the ball of fake 2 (|r - 2| <= 8 < 14), so recall is 1.
    out = metrics.precision_recall(real, fake, k=2)
    assert out["precision"] == pytest.approx(1.0)
    assert out["recall"] == pytest.approx(1.0)
    assert out["density"] == pytest.approx((4 + 1 + 1) / 3 / 2)
    assert out["coverage"] == pytest.approx(5 / 5)

    fake = np.array([[2.0], [18.0], [19.0]])  # 18 is 8 from 10 (> 7): outside every real ball
    out = metrics.precision_recall(real, fake, k=2)
    # Fake radii: 2 -> 17 (2nd nearest of 18, 19), 18 -> 16, 19 -> 17: recall 1 again.
    assert out["precision"] == pytest.approx(1 / 3)
    assert out["density"] == pytest.approx(4 / 3 / 2)
    assert out["coverage"] == pytest.approx(4 / 5)  # the ball of 10 holds no fake
    assert out["recall"] == pytest.approx(1.0)


def test_recall_counts_real_points_inside_the_fake_manifold():
    """Fakes bunched at 0, 0.1, 0.3 (k = 1 radii 0.1, 0.1, 0.2): only the real points near them count."""
    real = np.array([[0.05], [0.25], [0.6], [5.0]])
    fake = np.array([[0.0], [0.1], [0.3]])
    out = metrics.precision_recall(real, fake, k=1)
    # 0.05 within 0.1 of 0 -> in; 0.25 within 0.2 of 0.3 -> in; 0.6 is 0.3 from 0.3 (> 0.2) -> out; 5 out.
    assert out["recall"] == pytest.approx(2 / 4)
    # Real k = 1 radii: 0.05 -> 0.2, 0.25 -> 0.2, 0.6 -> 0.35, 5 -> 4.4 (which reaches no fake).
    # Balls holding each fake: 0 -> {0.05}; 0.1 -> {0.05, 0.25}; 0.3 -> {0.25, 0.6}.
    assert out["precision"] == pytest.approx(1.0)
    assert out["density"] == pytest.approx((1 + 2 + 2) / 3 / 1)
    assert out["coverage"] == pytest.approx(3 / 4)
