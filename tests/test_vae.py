import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxspike import cells, noise
from jaxspike.families import vae as vae_family
from jaxspike.models import vae

TINY = dict(num_steps=4, latent=8, encoder=(32,), decoder=(32,), channels=(4, 8), num_candidates=4)


def _images(n=16, seed=0):
    # Structured toy data: bright squares at a few positions.
    rng = np.random.default_rng(seed)
    imgs = np.zeros((n, 28, 28, 1), np.float32)
    for i in range(n):
        r, c = rng.integers(0, 20, size=2)
        imgs[i, r : r + 8, c : c + 8] = 1.0
    return jnp.asarray(imgs)


@pytest.mark.parametrize("kw", [
    pytest.param(dict(prior="mixture"), marks=pytest.mark.slow),  # the config default's prior
    dict(coding="latency", estimator="relaxed", readout="rate"),
    pytest.param(dict(estimator="autoregressive", prior="autoregressive", readout="first_spike"),
                 marks=pytest.mark.slow),
    pytest.param(dict(arch="conv", estimator="straight_through"), marks=pytest.mark.slow),
])
def test_loss_falls_on_tiny_subset(kw):
    model = vae.SpikingVAE(**TINY, **{"neuron": cells.Neuron(threshold=0.5), **kw})
    x = _images()
    params = model.init(jax.random.key(0), x, jax.random.key(1))["params"]
    opt = optax.adam(3e-3)
    opt_state = opt.init(params)

    @jax.jit
    def step(params, opt_state, key):
        (loss, _), grads = jax.value_and_grad(
            lambda p: vae_family.elbo_loss(model, p, x, key, temperature=0.5), has_aux=True
        )(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    losses = []
    for i in range(30):
        params, opt_state, loss = step(params, opt_state, jax.random.key(100 + i))
        losses.append(float(loss))
    assert np.all(np.isfinite(losses))
    assert np.mean(losses[-5:]) < 0.9 * np.mean(losses[:5]), losses[::5]


def test_latent_spike_frequencies_follow_posterior():
    model = vae.SpikingVAE(**TINY)
    x = jnp.repeat(_images(4), 64, axis=0)
    params = model.init(jax.random.key(0), x, jax.random.key(1))["params"]
    _, aux = model.apply({"params": params}, x, jax.random.key(2))
    q, z = np.asarray(aux["q"]), np.asarray(aux["z"])
    assert set(np.unique(z)) <= {0.0, 1.0}  # one spike or none
    # Spike frequency per (t, unit), pooled over 256 examples, matches mean q within 5 s.e.
    freq, mean_q = z.mean(axis=1), q.mean(axis=1)
    se = np.sqrt(mean_q * (1 - mean_q) / z.shape[1]) + 1e-3
    assert np.all(np.abs(freq - mean_q) < 5 * se)


def test_straight_through_frequency_and_gradient():
    p = jnp.full((20000,), 0.3)
    z = noise.straight_through_bernoulli(jax.random.key(0), p)
    assert abs(float(z.mean()) - 0.3) < 0.01
    g = jax.grad(lambda p: jnp.sum(noise.straight_through_bernoulli(jax.random.key(0), p)))(p)
    np.testing.assert_array_equal(g, 1.0)


@pytest.mark.parametrize("estimator", [pytest.param(e, marks=pytest.mark.slow) if e == "autoregressive" else e
                                       for e in vae.ESTIMATORS])
def test_estimator_gradient_points_uphill(estimator):
    # Toy objective: the expected number of latent spikes. Raising the encoder's latent bias
    # must raise it, so every estimator's gradient on that bias must be finite and positive.
    model = vae.SpikingVAE(**{**TINY, "estimator": estimator}, neuron=cells.Neuron(threshold=0.5))
    x = _images(32)
    params = model.init(jax.random.key(0), x, jax.random.key(1))["params"]
    bias_path = ("posterior", "bias") if estimator == "autoregressive" else ("to_latent", "bias")

    def objective(bias):
        p = jax.tree_util.tree_map(lambda a: a, params)
        p[bias_path[0]] = {**p[bias_path[0]], bias_path[1]: bias}
        _, aux = model.apply({"params": p}, x, jax.random.key(3), temperature=0.5)
        return jnp.mean(aux["z"])

    g = jax.grad(objective)(params[bias_path[0]][bias_path[1]])
    assert jnp.all(jnp.isfinite(g))
    assert float(jnp.sum(g)) > 0


@pytest.mark.slow
def test_prior_sampling_reproducible_from_key():
    for prior in vae.PRIORS:
        model = vae.SpikingVAE(**TINY, prior=prior)
        x = _images(2)
        params = model.init(jax.random.key(0), x, jax.random.key(1))["params"]

        @jax.jit  # one compile for the three draws
        def draw(key, model=model, params=params):
            images, _ = model.apply({"params": params}, key, 6, method="generate")
            z, _ = model.apply({"params": params}, key, 6, method="sample_prior")
            return images, z

        (a, za), (b, _), (_, zc) = draw(jax.random.key(5)), draw(jax.random.key(5)), draw(jax.random.key(6))
        assert a.shape == (6, 28, 28, 1)
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(za, zc)


@pytest.mark.slow
def test_autoregressive_prior_rate_follows_candidates():
    model = vae.SpikingVAE(**TINY, prior="autoregressive")
    x = _images(2)
    params = model.init(jax.random.key(0), x, jax.random.key(1))["params"]
    z, _ = model.apply({"params": params}, jax.random.key(2), 512, method="sample_prior")
    assert z.shape == (4, 512, 8) and set(np.unique(np.asarray(z))) <= {0.0, 1.0}


def test_analog_twin_trains_and_samples():
    model = vae.AnalogVAE(latent=8, encoder=(32,), decoder=(32,))
    x = _images()
    params = model.init(jax.random.key(0), x, jax.random.key(1))["params"]
    loss, terms = vae_family.analog_elbo_loss(model, params, x, jax.random.key(2))
    assert np.isfinite(float(loss)) and float(terms["kl"]) >= 0
    imgs, _ = model.apply({"params": params}, jax.random.key(3), 5, method="generate")
    assert imgs.shape == (5, 28, 28, 1) and float(imgs.min()) >= 0 and float(imgs.max()) <= 1


def test_bad_configs_give_clear_errors():
    x = _images(2)
    with pytest.raises(ValueError, match="latent size"):
        vae.SpikingVAE(latent=0).init(jax.random.key(0), x, jax.random.key(1))
    with pytest.raises(ValueError, match="estimator"):
        vae.SpikingVAE(**{**TINY, "estimator": "gumbel"}).init(jax.random.key(0), x, jax.random.key(1))
    with pytest.raises(ValueError, match="positive int"):
        vae.SpikingVAE(**{**TINY, "num_steps": 0}).init(jax.random.key(0), x, jax.random.key(1))
    model = vae.SpikingVAE(**TINY)
    params = model.init(jax.random.key(0), x, jax.random.key(1))["params"]
    with pytest.raises(ValueError, match="T = 7 steps but the model runs T = 4"):
        model.apply({"params": params}, jnp.zeros((7, 2, 8)), method="decode")
    with pytest.raises(ValueError, match="expects images"):
        model.apply({"params": params}, jnp.zeros((2, 32, 32, 1)), jax.random.key(0))
    with pytest.raises(ValueError, match="divisible by 4"):
        vae.SpikingVAE(**{**TINY, "arch": "conv", "image_shape": (30, 30, 1)}).init(
            jax.random.key(0), jnp.zeros((1, 30, 30, 1)), jax.random.key(1))


@pytest.mark.slow
def test_free_bits_clamp_per_unit_kl_and_leave_the_elbo_alone():
    model = vae.SpikingVAE(**TINY)
    x = _images(8)
    params = model.init(jax.random.key(0), x, jax.random.key(1))["params"]
    key = jax.random.key(2)
    loss0, t0 = vae_family.elbo_loss(model, params, x, key)
    loss_fb, t_fb = vae_family.elbo_loss(model, params, x, key, free_bits=1e3)
    assert float(t0["elbo"]) == float(t_fb["elbo"]) and float(t0["kl"]) == float(t_fb["kl"])
    # every unit is below 1000 nats, so each pays exactly the floor
    np.testing.assert_allclose(float(loss_fb), float(t0["recon"]) + TINY["latent"] * 1e3, rtol=1e-6)
    # and the KL then passes no gradient to the encoder's latent readout
    g = jax.grad(lambda p: vae_family.elbo_loss(model, p, x, key, free_bits=1e3, likelihood="gaussian", sigma=1e9)[0])(params)
    assert float(jnp.max(jnp.abs(g["to_latent"]["kernel"]))) < 1e-6


def test_analog_twin_with_binary_latent():
    model = vae.AnalogVAE(latent=8, encoder=(32,), decoder=(32,), latent_kind="bernoulli")
    x = _images()
    params = model.init(jax.random.key(0), x, jax.random.key(1))["params"]
    loss, terms = vae_family.analog_elbo_loss(model, params, x, jax.random.key(2))
    assert np.isfinite(float(loss)) and float(terms["kl"]) >= 0
    _, aux = model.apply({"params": params}, x, jax.random.key(3))
    assert set(np.unique(np.asarray(aux["z"]))) <= {0.0, 1.0}
    z = model.sample_prior(jax.random.key(4), 4000)
    assert abs(float(z.mean()) - 0.5) < 0.02


@pytest.mark.slow
def test_autoregressive_latent_spikes_follow_candidate_fraction():
    # The FSVAE sampler picks one of k candidates uniformly: P(z = 1) = q, the firing fraction.
    model = vae.SpikingVAE(**{**TINY, "estimator": "autoregressive", "num_candidates": 8}, neuron=cells.Neuron(threshold=0.5))
    x = jnp.repeat(_images(2), 128, axis=0)
    params = model.init(jax.random.key(0), x, jax.random.key(1))["params"]
    _, aux = model.apply({"params": params}, x, jax.random.key(2))
    q, z = np.asarray(aux["q"]), np.asarray(aux["z"])
    assert set(np.unique(z)) <= {0.0, 1.0} and set(np.unique(q * 8)) <= set(range(9))
    assert 0.05 < q.mean() < 0.95  # not trivially silent or saturated
    freq, mean_q = z.mean(axis=1), q.mean(axis=1)
    se = np.sqrt(mean_q * (1 - mean_q) / z.shape[1]) + 1e-3
    assert np.all(np.abs(freq - mean_q) < 5 * se)


@pytest.mark.slow
def test_spike_penalty_counts_decoder_spikes_and_lowers_them():
    model = vae.SpikingVAE(**TINY, neuron=cells.Neuron(threshold=0.5))
    x = _images(8)
    params = model.init(jax.random.key(0), x, jax.random.key(1))["params"]
    key = jax.random.key(2)
    loss0, t0 = vae_family.elbo_loss(model, params, x, key)
    loss1, t1 = vae_family.elbo_loss(model, params, x, key, spike_weight=0.1)
    layers = t1["aux"]["layers"]
    dec = float(jnp.mean(layers["dec0"]["spike_count"]))
    assert float(t1["dec_spikes"]) == pytest.approx(dec) and dec > 0  # TINY has one decoder layer
    np.testing.assert_allclose(float(loss1), float(loss0) + 0.1 * dec, rtol=1e-5)
    assert float(t0["elbo"]) == float(t1["elbo"])  # the bound itself is unchanged
    # Gradient steps on the penalty alone silence the decoder (surrogate gradient).
    opt = optax.adam(1e-2)
    state = opt.init(params)
    grad = jax.jit(jax.grad(lambda p: vae_family.elbo_loss(model, p, x, key, spike_weight=1.0)[1]["dec_spikes"]))
    for _ in range(20):
        updates, state = opt.update(grad(params), state, params)
        params = optax.apply_updates(params, updates)
    assert float(vae_family.elbo_loss(model, params, x, key, spike_weight=1.0)[1]["dec_spikes"]) < 0.5 * dec


def test_uniform_rate_kl_matches_exact_kl_on_enumerated_trains():
    # T = 3, one unit: enumerate the 8 spike trains, exact KL(q || beta-binomial prior),
    # against the mean of the one-sample estimate over many posterior samples.
    from itertools import product

    from jaxspike import losses

    q = jnp.asarray([0.8, 0.3, 0.6]).reshape(3, 1, 1)
    exact = 0.0
    for bits in product((0.0, 1.0), repeat=3):
        b = np.asarray(bits)
        qz = np.prod(np.where(b == 1, np.asarray(q).ravel(), 1 - np.asarray(q).ravel()))
        n = int(b.sum())
        pz = math.factorial(n) * math.factorial(3 - n) / math.factorial(4)
        exact += qz * np.log(qz / pz)
    qs = jnp.broadcast_to(q, (3, 20000, 1))
    z = noise.bernoulli_process(jax.random.key(0), qs, qs.shape)
    est = losses.uniform_rate_kl_per_unit(qs, z)
    assert est.shape == (20000, 1)
    assert abs(float(est.mean()) - exact) < 0.02, (float(est.mean()), exact)
    with pytest.raises(ValueError, match=r"\[T, B, L\]"):
        losses.uniform_rate_kl_per_unit(qs, z[:2])


@pytest.mark.slow
def test_uniform_rate_prior_draws_one_rate_per_sample_and_trains():
    model = vae.SpikingVAE(**{**TINY, "num_steps": 16}, prior="uniform_rate", neuron=cells.Neuron(threshold=0.5))
    x = _images(8)
    params = model.init(jax.random.key(0), x, jax.random.key(1))["params"]
    z, _ = model.apply({"params": params}, jax.random.key(5), 4000, method="sample_prior")
    rates = np.asarray(z).mean(axis=0)  # [4000, L]: per-sample rates spread over [0, 1]
    assert abs(rates.mean() - 0.5) < 0.02
    # Var of a beta-binomial(16, 1, 1) rate is 1/12 + (1/6)/16 ~ 0.094, not 0.25/16 as for Bernoulli(0.5).
    assert 0.08 < rates.var() < 0.11
    loss, terms = vae_family.elbo_loss(model, params, x, jax.random.key(2))
    assert np.isfinite(float(loss)) and float(terms["elbo"]) < 0
    g = jax.grad(lambda p: vae_family.elbo_loss(model, p, x, jax.random.key(2))[0])(params)
    assert all(bool(jnp.all(jnp.isfinite(v))) for v in jax.tree_util.tree_leaves(g))


def test_mixture_kl_bounds_the_exact_kl_and_is_exact_for_one_component():
    # T = 2, L = 2: enumerate the 16 latent trains and compute KL(q || mixture) exactly.
    from itertools import product

    from jaxspike import losses

    rng = np.random.default_rng(0)
    q = jnp.asarray(rng.uniform(0.05, 0.95, size=(2, 3, 2)), jnp.float32)  # [T, B, L]
    comp = jnp.asarray(rng.normal(0, 2, size=(3, 2, 2)), jnp.float32)  # K = 3
    mix = jnp.asarray([0.3, -0.5, 1.0], jnp.float32)
    pi, mu, qn = np.asarray(jax.nn.softmax(mix)), np.asarray(jax.nn.sigmoid(comp)), np.asarray(q)
    exact = np.zeros(3)
    for bits in product((0.0, 1.0), repeat=4):
        z = np.asarray(bits).reshape(2, 1, 2)
        qz = np.prod(np.where(z == 1, qn, 1 - qn), axis=(0, 2))  # [B]
        pz = np.sum(pi * np.prod(np.where(z[None, :, 0] == 1, mu, 1 - mu), axis=(1, 2)))
        exact += qz * np.log(qz / pz)
    kl_units, kl_c, r = losses.bernoulli_mixture_kl(q, comp, mix)
    bound = np.asarray(kl_units.sum(1) + kl_c)
    assert r.shape == (3, 3) and np.allclose(np.asarray(r).sum(1), 1.0)
    assert np.all(bound >= exact - 1e-5) and np.all(bound - exact < 1.0), (bound, exact)
    # The bound is the optimum over the component posterior: -logsumexp(log pi - KL_c).
    kl_c_each = np.stack([np.asarray(losses.bernoulli_kl(jnp.swapaxes(q, 0, 1), jax.nn.sigmoid(comp[k])[None]))
                          for k in range(3)], axis=1)
    np.testing.assert_allclose(bound, -np.log(np.sum(pi * np.exp(-kl_c_each), axis=1)), rtol=1e-5)
    # One component: the ordinary per-unit Bernoulli KL, and no component term.
    ku1, kc1, _ = losses.bernoulli_mixture_kl(q, comp[:1], mix[:1])
    np.testing.assert_allclose(ku1, losses.bernoulli_kl_per_unit(q, jax.nn.sigmoid(comp[0])[:, None, :]), rtol=1e-5)
    np.testing.assert_allclose(kc1, 0.0, atol=1e-6)
    with pytest.raises(ValueError, match="component_logits must be"):
        losses.bernoulli_mixture_kl(q, comp[:, :1], mix)


@pytest.mark.slow
def test_mixture_prior_samples_one_component_per_sample():
    model = vae.SpikingVAE(**{**TINY, "num_steps": 16}, prior="mixture", num_components=2, neuron=cells.Neuron(threshold=0.5))
    x = _images(8)
    params = model.init(jax.random.key(0), x, jax.random.key(1))["params"]
    # Two components: all units at rate 0.9, or all at 0.1, mixed 3:1.
    params = {**params, "component_logits": jnp.stack([jnp.full((16, 8), 2.1972), jnp.full((16, 8), -2.1972)]),
              "mixture_logits": jnp.log(jnp.asarray([0.75, 0.25]))}
    z, _ = model.apply({"params": params}, jax.random.key(5), 2000, method="sample_prior")
    rates = np.asarray(z).mean(axis=(0, 2))  # per sample, over 16 steps x 8 units
    high = rates > 0.5
    assert np.all(np.abs(np.where(high, rates - 0.9, rates - 0.1)) < 0.12)  # each sample is one component
    assert abs(high.mean() - 0.75) < 0.03
    # (Training with this prior: test_loss_falls_on_tiny_subset[kw0].)
    loss, terms = vae_family.elbo_loss(model, params, x, jax.random.key(2), free_bits=0.1)
    assert np.isfinite(float(loss)) and float(terms["elbo"]) < 0 and 1.0 <= float(terms["mix_perplexity"]) <= 2.0
    with pytest.raises(ValueError, match="num_components"):
        vae.SpikingVAE(**TINY, prior="mixture", num_components=0).init(jax.random.key(0), x, jax.random.key(1))


@pytest.mark.slow
def test_gaussian_mixture_kl_and_the_analog_twins_mixture_prior():
    from jaxspike import losses

    mu = jax.random.normal(jax.random.key(4), (3, 2))
    logvar = 0.3 * jax.random.normal(jax.random.key(5), (3, 2))
    # One standard-normal component: the usual closed-form KL to N(0, I).
    ku, kc, _ = losses.gaussian_mixture_kl(mu, logvar, jnp.zeros((1, 2)), jnp.zeros((1, 2)), jnp.zeros(1))
    np.testing.assert_allclose(ku.sum(1) + kc, 0.5 * jnp.sum(jnp.exp(logvar) + mu**2 - 1 - logvar, 1), rtol=1e-5)
    # Two components: an upper bound on a Monte-Carlo estimate of the exact KL.
    means, logvars, mix = jnp.asarray([[-1.0, 0.5], [1.5, -0.5]]), jnp.asarray([[0.0, -0.5], [0.4, 0.0]]), jnp.asarray([0.2, -0.2])
    ku, kc, _ = losses.gaussian_mixture_kl(mu, logvar, means, logvars, mix)
    z = mu + jnp.exp(0.5 * logvar) * jax.random.normal(jax.random.key(6), (50000,) + mu.shape)
    normal = lambda z, m, lv: -0.5 * jnp.sum(lv + (z - m) ** 2 / jnp.exp(lv) + jnp.log(2 * jnp.pi), -1)  # noqa: E731
    log_p = jax.scipy.special.logsumexp(
        jnp.stack([normal(z, means[k], logvars[k]) for k in range(2)], -1) + jax.nn.log_softmax(mix), -1)
    exact = jnp.mean(normal(z, mu, logvar) - log_p, 0)
    assert np.all(np.asarray(ku.sum(1) + kc) >= np.asarray(exact) - 0.02), (ku.sum(1) + kc, exact)
    with pytest.raises(ValueError, match="means and logvars"):
        losses.gaussian_mixture_kl(mu, logvar, means[:, :1], logvars, mix)
    model = vae.AnalogVAE(latent=2, encoder=(16,), decoder=(16,), prior="mixture", num_components=2)
    x = _images(4)
    params = model.init(jax.random.key(0), x, jax.random.key(1))["params"]
    params = {**params, "component_means": means, "component_logvars": jnp.full((2, 2), -6.0)}
    z = model.apply({"params": params}, jax.random.key(3), 400, method="sample_prior")
    nearest = np.min(np.linalg.norm(np.asarray(z)[:, None] - np.asarray(means)[None], axis=-1), axis=1)
    assert np.all(nearest < 0.2)  # every sample sits at one of the two (narrow) components
    loss, terms = vae_family.analog_elbo_loss(model, params, x, jax.random.key(2))
    assert np.isfinite(float(loss)) and float(terms["kl"]) > 0
    with pytest.raises(ValueError, match="latent_kind='gaussian'"):
        vae.AnalogVAE(latent=2, latent_kind="bernoulli", prior="mixture").init(jax.random.key(0), x, jax.random.key(1))


def test_prior_full_kl_trains_the_prior_below_the_floor_and_leaves_the_loss_alone():
    model = vae.SpikingVAE(**TINY, prior="mixture", num_components=3)
    x = _images(8)
    params = model.init(jax.random.key(0), x, jax.random.key(1))["params"]
    key = jax.random.key(2)
    # A floor of 1000 nats: every unit is below it; a flat likelihood leaves the KL's gradients alone.
    # Each function is jitted: run op by op, the model's scans compile hundreds of small programs.
    loss = jax.jit(lambda p, full: vae_family.elbo_loss(model, p, x, key, free_bits=1e3, prior_full_kl=full)[0],
                   static_argnums=1)
    grad = jax.jit(jax.grad(lambda p, full: vae_family.elbo_loss(
        model, p, x, key, free_bits=1e3, prior_full_kl=full, likelihood="gaussian", sigma=1e9)[0]), static_argnums=1)
    assert float(loss(params, True)) == pytest.approx(float(loss(params, False)), rel=1e-6)
    shielded, full = grad(params, False), grad(params, True)
    assert float(jnp.max(jnp.abs(shielded["component_logits"]))) == 0.0  # the floor starves the prior
    # With prior_full_kl the prior gets the full KL's gradient; the encoder still gets none.
    q = jax.jit(lambda p: model.apply({"params": p}, x, key)[1]["q"])(params)
    g_kl = jax.jit(jax.grad(lambda c: jnp.mean(jnp.sum(vae_family.losses.bernoulli_mixture_kl(
        q, c, params["mixture_logits"])[0], 1))))(params["component_logits"])
    np.testing.assert_allclose(full["component_logits"], g_kl, rtol=1e-4, atol=1e-7)
    assert float(jnp.max(jnp.abs(full["to_latent"]["kernel"]))) < 1e-6


def test_fit_mixture_prior_recovers_prototypes_and_never_raises_the_bound():
    from jaxspike import losses

    protos = jnp.where(jax.random.uniform(jax.random.key(0), (3, 4, 6)) < 0.5, 0.9, 0.1)
    which = np.arange(300) % 3
    q = jnp.clip(protos[which] + 0.05 * jax.random.normal(jax.random.key(1), (300, 4, 6)), 0.01, 0.99)

    def bound(iters):
        logits, mix = vae_family.fit_mixture_prior(q, 3, jax.random.key(2), iters=iters)
        kl_units, kl_component, _ = losses.bernoulli_mixture_kl(jnp.swapaxes(q, 0, 1), logits, mix)
        return float(jnp.mean(jnp.sum(kl_units, 1) + kl_component)), logits, mix

    bounds = [bound(i)[0] for i in (1, 2, 5, 20)]
    assert all(b1 <= b0 + 1e-5 for b0, b1 in zip(bounds, bounds[1:])), bounds  # EM: the bound never rises
    _, logits, mix = bound(20)
    assert logits.shape == (3, 4, 6) and mix.shape == (3,)
    np.testing.assert_allclose(np.exp(mix), 1 / 3, atol=1e-3)
    fitted = np.asarray(jax.nn.sigmoid(logits)).reshape(3, -1)
    truth = np.asarray(protos).reshape(3, -1)
    # each prototype is one component (up to order), its rates within 0.02
    err = np.abs(fitted[:, None] - truth[None]).max(-1)
    assert sorted(err.argmin(1).tolist()) == [0, 1, 2] and err.min(1).max() < 0.02
    same = vae_family.fit_mixture_prior(q, 3, jax.random.key(2), iters=20)
    np.testing.assert_array_equal(same[0], logits)
    for bad, match in ((dict(num_components=0), "num_components"), (dict(num_components=301), "num_components"),
                       (dict(num_components=3, iters=0), "iters")):
        with pytest.raises(ValueError, match=match):
            vae_family.fit_mixture_prior(q, key=jax.random.key(0), **bad)
    with pytest.raises(ValueError, match=r"\[N, T, L\]"):
        vae_family.fit_mixture_prior(q[0], 3, jax.random.key(0))


def test_posterior_probs_are_the_models_q():
    model = vae.SpikingVAE(**TINY)
    x = _images(10)
    params = model.init(jax.random.key(0), x, jax.random.key(1))["params"]
    q = vae_family.posterior_probs(model, params, x, jax.random.key(3), batch_size=4)
    assert q.shape == (10, TINY["num_steps"], TINY["latent"])
    # latency and rate codings are deterministic for q only through the key: same key, same q
    q1 = vae_family.posterior_probs(model, params, x[:4], jax.random.key(3), batch_size=4)
    np.testing.assert_array_equal(q[:4], q1)
    _, aux = model.apply({"params": params}, x[:4], jax.random.fold_in(jax.random.key(3), 0), train=False)
    np.testing.assert_allclose(q1, jnp.swapaxes(aux["q"], 0, 1), rtol=1e-6)


def test_adversary_trains_the_decoder_against_a_discriminator_and_changes_nothing_else():
    from jaxspike import families, objective
    from launch.configs import vae as vae_config

    def build(weight, start=0):
        config = vae_config.get_config("smoke")
        config.loss.adversary.update(weight=weight, start=start)
        return families.build(config, (28, 28, 1))

    plain, adversarial = build(0.0), build(5.0, start=1)
    batch = {"image": _images(8)}
    k_init, k_step, k_gen = jax.random.split(jax.random.key(0), 3)
    s0, s1 = plain.init(k_init, batch), adversarial.init(k_init, batch)
    assert isinstance(s0, objective.TrainState) and isinstance(s1, vae_family.AdversarialState)
    same = lambda a, b: jax.tree_util.tree_all(jax.tree_util.tree_map(  # noqa: E731
        lambda x, y: bool(jnp.array_equal(x, y)), a, b))
    assert same(s0.params, s1.params)  # the same VAE, with a discriminator beside it

    step0, step1 = jax.jit(plain.step), jax.jit(adversarial.step)
    # Before ``start`` the VAE takes the plain update; the discriminator learns already.
    n0, m0 = step0(s0, batch, k_step)
    n1, m1 = step1(s1, batch, k_step)
    assert same(n0.params, n1.params) and not same(n1.d_params, s1.d_params)
    assert np.isfinite(m1["adv/d_loss"]) and np.isfinite(m1["adv/g_loss"]) and m1["adv/r1"] >= 0
    # From ``start`` on, the ELBO terms are the same computation and the update differs.
    k2 = jax.random.fold_in(k_step, 1)
    (p0, m0), (p1, m1) = step0(n0, batch, k2), step1(n1, batch, k2)
    np.testing.assert_allclose(m1["loss"], m0["loss"], rtol=1e-6)
    assert not same(p0.params, p1.params) and int(p1.step) == 2

    # The discriminator learns to tell the digits from their reconstructions.
    state = p1
    for i in range(10):
        state, metrics = step1(state, batch, jax.random.fold_in(k_step, i + 2))
    assert metrics["adv/d_real"] > metrics["adv/d_fake"]

    # Generation reads the VAE parameters only: the same samples as a plain state holding them.
    as_plain = n0.replace(params=state.params)
    np.testing.assert_array_equal(jax.jit(adversarial.sample, static_argnums=2)(state, k_gen, 4),
                                  jax.jit(plain.sample, static_argnums=2)(as_plain, k_gen, 4))

    with pytest.raises(objective.ConfigError, match=r"loss\.adversary\.weight=-1\.0"):
        build(-1.0)
