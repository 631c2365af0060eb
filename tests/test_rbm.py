"""Tests of the event-driven-CD spiking RBM (tiny sizes)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxspike.models import rbm

TINY = rbm.RBMConfig(num_visible=6, num_hidden=4, num_labels=3, phase_steps=4, burn_in=1)


def _hand_stats(aux, lam, batch, gated):
    """The eCD rule computed step by step from the recorded spike trains (NumPy)."""
    v, h, l, g = (np.asarray(aux[k], np.float64) for k in ("v", "h", "l", "g"))
    steps = len(g) // 2
    vh = np.zeros((v.shape[2], h.shape[2]))
    lh = np.zeros((l.shape[2], h.shape[2]))
    for phase in (0, 1):
        a_v = np.zeros_like(v[0])
        a_l = np.zeros_like(l[0])
        a_h = np.zeros_like(h[0])
        for t in range(phase * steps, (phase + 1) * steps):
            a_v = lam * a_v + v[t]
            a_l = lam * a_l + l[t]
            # post spike x pre trace (this step included) + pre spike x post trace of earlier steps
            for b in range(batch):
                vh += g[t] * (np.outer(a_v[b], h[t, b]) + np.outer(v[t, b], lam * a_h[b]))
                lh += g[t] * (np.outer(a_l[b], h[t, b]) + np.outer(l[t, b], lam * a_h[b]))
            a_h = lam * a_h + h[t]
    norm = batch * gated
    sv = (g[:, None, None] * v).sum((0, 1)) / norm
    sh = (g[:, None, None] * h).sum((0, 1)) / norm
    sl = (g[:, None, None] * l).sum((0, 1)) / norm
    return vh / norm, lh / norm, sv, sh, sl


@pytest.mark.parametrize("lam", [0.0, pytest.param(0.5, marks=pytest.mark.slow)])
def test_one_ecd_update_matches_hand_rule(key, lam):
    cfg = TINY._replace(trace_decay=lam)
    params = rbm.init_params(key, cfg)
    params = params._replace(w=params.w * 100)  # non-trivial firing
    x = jnp.asarray([[1, 0, 1, 0.5, 0.2, 0.9], [0, 1, 0, 1, 1, 0.1]], jnp.float32)
    y = jnp.array([2, 0])
    stats, aux = rbm.ecd_statistics(params, jax.random.fold_in(key, 7), x, y, cfg)
    np.testing.assert_array_equal(np.asarray(aux["g"]), [0, 1, 1, 1, 0, -1, -1, -1])
    # Data phase: visible spikes only where the pixel is on, the label unit of the class every step.
    v_data = np.asarray(aux["v"][:4])
    assert not v_data[:, 0, 1].any() and v_data[:, 0, 0].all()
    np.testing.assert_array_equal(np.asarray(aux["l"][:4]).argmax(-1), np.tile([2, 0], (4, 1)))
    np.testing.assert_array_equal(np.asarray(aux["l"]).sum(-1), 1.0)  # one label spike per step (WTA)
    vh, lh, sv, sh, sl = _hand_stats(aux, lam, batch=2, gated=3)
    np.testing.assert_allclose(np.asarray(stats.vh), vh, atol=1e-6)
    np.testing.assert_allclose(np.asarray(stats.lh), lh, atol=1e-6)
    np.testing.assert_allclose(np.asarray(stats.v), sv, atol=1e-6)
    np.testing.assert_allclose(np.asarray(stats.h), sh, atol=1e-6)
    np.testing.assert_allclose(np.asarray(stats.l), sl, atol=1e-6)
    new = rbm.ecd_update(params, stats, 0.1, weight_decay=0.0)
    np.testing.assert_allclose(np.asarray(new.w - params.w), 0.1 * vh, atol=1e-6)
    np.testing.assert_allclose(np.asarray(new.b_h - params.b_h), 0.1 * sh, atol=1e-6)


@pytest.mark.slow
def test_persistent_chain_starts_the_model_phase_and_follows_the_rule(key):
    cfg = TINY
    params = rbm.init_params(key, cfg)
    params = params._replace(w=jnp.full((6, 4), 200.0), b_v=jnp.full((6,), -100.0))
    x = jnp.asarray([[1, 0, 1, 0.5, 0.2, 0.9], [0, 1, 0, 1, 1, 0.1]], jnp.float32)
    y = jnp.array([2, 0])
    chain = jnp.asarray([[1, 1, 1, 1], [0, 0, 0, 0]], jnp.float32)
    stats, aux = rbm.ecd_statistics(params, jax.random.fold_in(key, 7), x, y, cfg, chain)
    # The first free visible spikes come from the chain, not from the data: all on / all off.
    np.testing.assert_array_equal(np.asarray(aux["v_model"][0]), [[1] * 6, [0] * 6])
    np.testing.assert_array_equal(np.asarray(aux["chain"]), np.asarray(aux["h_model"][-1]))
    # The gated sums follow the same rule over the data phase and the chain's model phase.
    joined = {"g": aux["g"], **{k: jnp.concatenate([aux[k], aux[k + "_model"]]) for k in ("v", "h", "l")}}
    vh, lh, sv, sh, sl = _hand_stats(joined, 0.0, batch=2, gated=3)
    np.testing.assert_allclose(np.asarray(stats.vh), vh, atol=1e-6)
    np.testing.assert_allclose(np.asarray(stats.lh), lh, atol=1e-6)
    np.testing.assert_allclose(np.asarray(stats.h), sh, atol=1e-6)
    # The chains need not match the data batch; a chain of the wrong width is refused.
    step = rbm.make_ecd_step(cfg, 0.1)
    _, new_chain, _ = step(params, {"image": x, "label": y}, key, rbm.init_chain(key, 5, cfg))
    assert new_chain.shape == (5, 4)
    with pytest.raises(ValueError, match="chain"):
        rbm.ecd_statistics(params, key, x, y, cfg, jnp.zeros((2, 3)))


@pytest.mark.slow
def test_label_population_fires_together_and_follows_the_rule(key):
    cfg = TINY._replace(label_copies=2)
    params = rbm.init_params(key, cfg)
    assert params.u.shape == (6, 4) and params.b_l.shape == (6,)
    params = params._replace(w=params.w * 100, u=params.u * 100)
    x = jnp.asarray([[1, 0, 1, 0.5, 0.2, 0.9], [0, 1, 0, 1, 1, 0.1]], jnp.float32)
    y = jnp.array([2, 0])
    stats, aux = rbm.ecd_statistics(params, jax.random.fold_in(key, 7), x, y, cfg)
    l = np.asarray(aux["l"]).reshape(8, 2, 3, 2)  # [time, batch, class, copy]
    np.testing.assert_array_equal(l[..., 0], l[..., 1])  # a class's units spike together
    np.testing.assert_array_equal(l.sum((-1, -2)), 2.0)  # one class per step, in both phases
    np.testing.assert_array_equal(l[:4, :, :, 0].argmax(-1), np.tile([2, 0], (4, 1)))
    vh, lh, sv, sh, sl = _hand_stats(aux, 0.0, batch=2, gated=3)
    np.testing.assert_allclose(np.asarray(stats.lh), lh, atol=1e-6)
    np.testing.assert_allclose(np.asarray(stats.l), sl, atol=1e-6)
    # Two copies with equal weights act as one unit with twice the weight.
    one = TINY
    p1 = rbm.init_params(key, one)
    p2 = p1._replace(u=jnp.repeat(p1.u, 2, axis=0), b_l=jnp.repeat(p1.b_l, 2))
    p1 = p1._replace(u=2 * p1.u, b_l=2 * p1.b_l)
    np.testing.assert_allclose(np.asarray(rbm.classify(p2, key, x, cfg, num_steps=5)),
                               np.asarray(rbm.classify(p1, key, x, one, num_steps=5)), atol=1e-5)
    a, _ = rbm.sample(p2, key, y, cfg, num_steps=6, average=2)
    b, _ = rbm.sample(p1, key, y, one, num_steps=6, average=2)
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)
    with pytest.raises(ValueError, match="sizes"):
        rbm.init_params(key, TINY._replace(label_copies=0))


def test_sampling_is_reproducible_from_key(key):
    cfg = TINY
    params = rbm.init_params(key, cfg)
    params = params._replace(w=params.w * 200, u=params.u * 200)
    labels = jnp.array([0, 1, 2, 1])
    a, aux_a = rbm.sample(params, jax.random.key(3), labels, cfg, num_steps=12, average=4)
    b, _ = rbm.sample(params, jax.random.key(3), labels, cfg, num_steps=12, average=4)
    c, _ = rbm.sample(params, jax.random.key(4), labels, cfg, num_steps=12, average=4)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(c))
    assert a.shape == (4, 6) and float(a.min()) >= 0 and float(a.max()) <= 1
    assert float(jnp.sum(aux_a["v_spikes"])) > 0
    jitted = jax.jit(lambda p, k: rbm.sample(p, k, labels, cfg, 12, 4)[0])(params, jax.random.key(3))
    np.testing.assert_allclose(np.asarray(jitted), np.asarray(a), atol=1e-6)


def test_annealed_label_drive_ends_at_the_trained_model(key):
    # Hidden units fire (p ~ 1) only while the label drive is above 1.7x its trained value
    # (whatever the pixels); hidden spikes turn every pixel on. Otherwise all is off (p ~ 0).
    cfg = TINY
    c = 50.0
    params = rbm.Params(w=jnp.full((6, 4), c / 2), u=jnp.full((3, 4), 10 * c), b_v=jnp.full((6,), -c),
                        b_h=jnp.full((4,), -20 * c), b_l=jnp.zeros((3,)))
    labels = jnp.array([0, 1, 2])
    run = lambda gain, anneal: np.asarray(rbm.sample(params, key, labels, cfg, 12, 4, gain, anneal)[0])  # noqa: E731
    np.testing.assert_allclose(run(3.0, 0), 1.0, atol=1e-6)  # constant gain 3: always on
    np.testing.assert_allclose(run(1.0, 0), 0.0, atol=1e-6)  # the trained drive: off
    # Annealed 3 -> 1 over 8 steps: on at first, off in the read-out (the last 4 steps, gain 1).
    annealed, aux = rbm.sample(params, key, labels, cfg, 12, 4, 3.0, 8)
    np.testing.assert_allclose(np.asarray(annealed), 0.0, atol=1e-6)
    assert float(aux["h_spikes"].min()) > 0  # it did fire early on
    with pytest.raises(ValueError, match="anneal_steps"):
        rbm.sample(params, key, labels, cfg, 12, 4, 3.0, 9)


@pytest.mark.parametrize("persistent", [pytest.param(False, marks=pytest.mark.slow), True])
def test_short_training_reduces_reconstruction_error(key, persistent):
    cfg = rbm.RBMConfig(num_visible=16, num_hidden=12, num_labels=2, phase_steps=3, burn_in=0)
    # Two prototypes (bars) with 10% pixel noise.
    proto = np.zeros((2, 16), np.float32)
    proto[0, :8] = 1
    proto[1, 8:] = 1
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 32)
    x = np.abs(proto[labels] - (rng.random((32, 16)) < 0.1)).astype(np.float32)
    x, labels = jnp.asarray(x), jnp.asarray(labels)
    params = rbm.init_params(key, cfg, x.mean(0))
    step = jax.jit(rbm.make_ecd_step(cfg, learning_rate=0.2, weight_decay=0.0))
    recon_key = jax.random.key(9)

    def recon_error(p):
        # Average over a few hidden samples to measure the model, not the noise.
        keys = jax.random.split(recon_key, 8)
        return float(np.mean([jnp.mean((rbm.reconstruct(p, k, x, None, cfg) - x) ** 2) for k in keys]))

    before = recon_error(params)
    chain = rbm.init_chain(jax.random.key(5), 32, cfg) if persistent else None
    for i in range(150):
        params, last, metrics = step(params, {"image": x, "label": labels}, jax.random.fold_in(key, i), chain)
        chain = last if persistent else None
    after = recon_error(params)
    assert after < 0.6 * before, (before, after)
    assert np.isfinite(float(metrics["recon_mse"]))


def test_bad_inputs_raise(key):
    params = rbm.init_params(key, TINY)
    with pytest.raises(ValueError, match=r"\[B, 6\]"):
        rbm.ecd_statistics(params, key, jnp.zeros((2, 5)), jnp.zeros(2, jnp.int32), TINY)
    with pytest.raises(ValueError, match="labels"):
        rbm.ecd_statistics(params, key, jnp.zeros((2, 6)), jnp.zeros(3, jnp.int32), TINY)
    with pytest.raises(ValueError, match="shape"):
        rbm.ecd_statistics(params._replace(w=jnp.zeros((6, 5))), key, jnp.zeros((2, 6)), jnp.zeros(2, jnp.int32), TINY)
    with pytest.raises(ValueError, match="burn_in"):
        rbm.init_params(key, TINY._replace(burn_in=4))
    with pytest.raises(ValueError, match="labels"):
        rbm.sample(params, key, jnp.zeros((2, 2), jnp.int32), TINY)
