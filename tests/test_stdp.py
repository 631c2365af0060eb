"""Tests of jaxspike.stdp and the Mozafari et al. STDP / R-STDP network (tiny sizes)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxspike import stdp
from jaxspike.models import spyketorch_net as net

TINY = net.NetConfig(num_steps=6, c1=4, k1=2, r1=2, c2=5, k2=2, r2=1, per_class=1)


def _onehot_from_times(times, num_steps):
    """``[B, H, W, C]`` int times (``T`` = silent) -> ``[T, B, H, W, C]`` one-hot."""
    times = np.asarray(times)
    return (np.arange(num_steps).reshape((-1,) + (1,) * times.ndim) == times[None]).astype(np.float32)


def _images(key, n=3):
    # Random strokes: a few bright rectangles on black, so DoG cells respond.
    img = np.zeros((n, 28, 28, 1), np.float32)
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).sum().item())
    for i in range(n):
        for _ in range(3):
            r, c = rng.integers(4, 20, 2)
            img[i, r : r + rng.integers(2, 8), c : c + 3, 0] = 1.0
    return jnp.asarray(img)


def test_each_neuron_spikes_at_most_once(key):
    k1, k2 = jax.random.split(key)
    # Non-monotone potentials: a neuron crossing twice still fires once.
    pot = jax.random.normal(k1, (7, 2, 5, 5, 3)) * 3.0
    spikes, v_at = stdp.fire(pot, 1.0)
    assert float(jnp.max(jnp.sum(spikes, 0))) <= 1.0
    first = np.argmax(np.asarray(pot) > 1.0, axis=0)
    fired = np.any(np.asarray(pot) > 1.0, axis=0)
    np.testing.assert_array_equal(np.asarray(stdp.spike_times(spikes)), np.where(fired, first, 7))
    np.testing.assert_allclose(np.asarray(v_at), np.where(fired, np.take_along_axis(np.asarray(pot), first[None], 0)[0], 0))

    @jax.jit  # one compile for the whole pipeline (op by op it costs seconds per primitive)
    def layer1(images, w1):
        in_spikes = net.encode(images, TINY)
        pot1 = stdp.conv_potentials(in_spikes, w1, padding=2)
        s1, _ = stdp.fire(pot1, TINY.thr1)
        return in_spikes, pot1, s1, stdp.pool(s1, 2, 2), stdp.pointwise_inhibition(s1)

    in_spikes, pot1, s1, pooled, inhibited = layer1(_images(k2), net.init_params(key, TINY).w1)
    assert in_spikes.shape == (6, 3, 28, 28, 6)
    assert float(jnp.max(jnp.sum(in_spikes, 0))) <= 1.0
    assert float(jnp.sum(in_spikes)) > 0
    assert bool(jnp.all(jnp.diff(pot1, axis=0) >= -1e-5)), "non-negative weights: potentials never fall"
    for s in (s1, pooled, inhibited):
        assert float(jnp.max(jnp.sum(s, 0))) <= 1.0
    # Pooling keeps the earliest spike of each window.
    t1 = np.asarray(stdp.spike_times(s1))
    t_pool = t1.reshape(3, 14, 2, 14, 2, 4).min(axis=(2, 4))
    np.testing.assert_array_equal(np.asarray(stdp.spike_times(pooled)), t_pool)


def test_intensity_to_latency_rank_order():
    values = jnp.asarray([0.0, 5.0, 1.0, 3.0, 4.0, 2.0, 0.0, 6.0]).reshape(1, 2, 4, 1)
    spikes = stdp.intensity_to_latency(values, 3)  # 6 non-zero values, 2 per bin
    times = np.asarray(stdp.spike_times(spikes)).reshape(-1)
    np.testing.assert_array_equal(times, [3, 0, 2, 1, 1, 2, 3, 0])


def test_pointwise_inhibition_keeps_earliest_then_strongest():
    times = np.array([[[[2, 1, 1, 4]]]])  # one location, four features; T = 4 means silent
    spikes = jnp.asarray(_onehot_from_times(times, 4))
    v = jnp.asarray([[[[5.0, 3.0, 7.0, 0.0]]]])
    out = np.asarray(stdp.spike_times(stdp.pointwise_inhibition(spikes, v)))
    np.testing.assert_array_equal(out[0, 0, 0], [4, 4, 1, 4])


def test_k_winners_at_most_k_and_outside_radius(key):
    num_steps, k, radius = 5, 4, 2
    times = jax.random.randint(key, (3, 9, 9, 6), 0, num_steps + 3)
    times = jnp.minimum(times, num_steps)
    spikes = jnp.asarray(_onehot_from_times(times, num_steps))
    v = jax.random.uniform(jax.random.fold_in(key, 1), times.shape) * 10 + 1
    winners = stdp.k_winners(spikes, v * (times < num_steps), k, radius)
    index, valid = np.asarray(winners.index), np.asarray(winners.valid)
    assert index.shape == (3, k, 3)
    t = np.asarray(times)
    for b in range(3):
        won = index[b][valid[b]]
        assert len(won) <= k
        assert len(set(won[:, 2])) == len(won), "one winner per feature map"
        for i in range(len(won)):
            assert t[b, won[i, 0], won[i, 1], won[i, 2]] < num_steps, "winners spiked"
            for j in range(i):
                cheb = max(abs(won[i, 0] - won[j, 0]), abs(won[i, 1] - won[j, 1]))
                assert cheb > radius
        # The first winner is the earliest spike in the map.
        assert t[b, won[0, 0], won[0, 1], won[0, 2]] == t[b].min()
    # Silent maps give no winners.
    none = stdp.k_winners(jnp.zeros((4, 1, 5, 5, 2)), jnp.zeros((1, 5, 5, 2)), 2, 1)
    assert not np.asarray(none.valid).any()


def test_stdp_update_by_hand():
    num_steps = 5
    # Receptive field of a 2x2 kernel, one input channel: spike times (T = 5 = silent).
    t_in = np.array([[[[0], [3]], [[5], [2]]]])  # [B=1, 2, 2, 1]
    t_out = np.array([[[[2]]]])  # the output neuron fires at step 2
    in_spikes = jnp.asarray(_onehot_from_times(t_in, num_steps))
    out_spikes = jnp.asarray(_onehot_from_times(t_out, num_steps))
    winners = stdp.Winners(jnp.zeros((1, 1, 3), jnp.int32), jnp.ones((1, 1), bool))
    pairings = stdp.stdp_pairings(in_spikes, out_spikes, winners, kernel=2)
    # t_in <= t_out: 0 <= 2 yes, 3 no, silent no, 2 <= 2 yes (same step counts as causal).
    np.testing.assert_array_equal(np.asarray(pairings)[0, 0, :, :, 0], [[True, False], [False, True]])
    w = jnp.asarray(np.array([0.5, 0.2, 0.9, 0.5], np.float32).reshape(2, 2, 1, 1))
    new = np.asarray(stdp.stdp_update(w, pairings, winners, 0.1, -0.08))[:, :, 0, 0]
    expect = np.array([
        [0.5 + 0.1 * 0.5 * 0.5, 0.2 - 0.08 * 0.2 * 0.8],
        [0.9 - 0.08 * 0.9 * 0.1, 0.5 + 0.1 * 0.5 * 0.5],
    ])
    np.testing.assert_allclose(new, expect, rtol=1e-6)
    # An invalid winner changes nothing.
    off = stdp.Winners(winners.index, jnp.zeros((1, 1), bool))
    np.testing.assert_array_equal(np.asarray(stdp.stdp_update(w, pairings, off, 0.1, -0.08)), np.asarray(w))


def test_weights_stay_in_unit_interval(key):
    w = jax.random.uniform(key, (3, 3, 2, 4))
    pairings = jax.random.bernoulli(jax.random.fold_in(key, 1), 0.5, (20, 2, 3, 3, 2))
    index = jnp.stack([jnp.zeros((20, 2), jnp.int32), jnp.zeros((20, 2), jnp.int32),
                       jnp.tile(jnp.array([0, 3]), (20, 1))], -1)
    winners = stdp.Winners(index, jnp.ones((20, 2), bool))
    for soft in (True, False):
        new = stdp.stdp_update(w, pairings, winners, 0.9, -0.9, soft_bound=soft)
        assert float(new.min()) >= 0.0 and float(new.max()) <= 1.0
    r = stdp.rstdp_update(jnp.full((4, 3), 0.5), jnp.ones((50, 4), bool), jnp.zeros(50, jnp.int32), jnp.ones(50),
                          a_reward=(0.3, -0.3))
    assert r.max() <= np.float32(0.8) and r.min() >= np.float32(0.2)


def test_learning_rate_schedule():
    ap, an = stdp.learning_rates(jnp.array([0, 499, 500, 1000, 10_000]))
    np.testing.assert_allclose(np.asarray(ap), [0.004, 0.004, 0.008, 0.016, 0.15], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(an), -0.75 * np.asarray(ap), rtol=1e-6)


def test_rstdp_flips_sign_on_punishment():
    w = jnp.full((6, 3), 0.5)
    pre = jnp.asarray([[1, 0, 1, 0, 0, 1]], bool)
    post = jnp.array([2])
    d_reward = np.asarray(stdp.rstdp_update(w, pre, post, jnp.array([1.0]))) - 0.5
    d_punish = np.asarray(stdp.rstdp_update(w, pre, post, jnp.array([-1.0]))) - 0.5
    d_none = np.asarray(stdp.rstdp_update(w, pre, post, jnp.array([0.0]))) - 0.5
    np.testing.assert_allclose(d_reward[:, 2], [0.004, -0.003, 0.004, -0.003, -0.003, 0.004], atol=1e-7)
    assert np.all(np.sign(d_punish[:, 2]) == -np.sign(d_reward[:, 2]))
    assert not d_reward[:, :2].any() and not d_punish[:, :2].any() and not d_none.any()


def test_same_key_same_filters_and_training_changes_them(key):
    images = _images(key, 4)
    step = jax.jit(net.make_stdp_step(TINY, 1))

    def train(seed):
        params = net.init_params(jax.random.key(seed), TINY)
        for i in range(2):
            params, m = step(params, images, i * 4)
        return params, m

    a, m = train(0)
    b, _ = train(0)
    c, _ = train(1)
    np.testing.assert_array_equal(np.asarray(a.w1), np.asarray(b.w1))
    assert not np.array_equal(np.asarray(a.w1), np.asarray(c.w1))
    assert float(m["winners"]) > 0 and float(m["dw"]) > 0
    assert float(a.w1.min()) >= 0 and float(a.w1.max()) <= 1
    # Layer 2 then the decision layer run end to end.
    a2, _ = jax.jit(net.make_stdp_step(TINY, 2))(a, images, 0)
    fired, early, aux = jax.jit(net.features, static_argnums=2)(a2, images, TINY)
    assert fired.shape == (4, 4, 4, TINY.c2) and early.shape == fired.shape
    assert float(aux["synops1"].min()) > 0
    labels, rates = jnp.array([0, 1, 2, 3]), jnp.array([0.004, -0.003, -0.004, 0.0005])
    epoch = jax.jit(net.make_rstdp_epoch(TINY, batch=4, decide_every=2))
    w3, scales, hits = epoch(a2.w3, jnp.array([0.9, 0.1]), fired, labels, jnp.arange(4), rates, True, jax.random.key(0))
    assert w3.shape == a2.w3.shape and 0 <= int(hits) <= 4
    assert w3.min() >= np.float32(0.2) and w3.max() <= np.float32(0.8)
    # Dropout: a switched-off decision map never wins; the draws come from the key alone.
    active = jnp.zeros((4, w3.shape[-1]), bool).at[:, 1].set(True)
    decide = jax.jit(net.decide, static_argnums=2)
    np.testing.assert_array_equal(np.asarray(decide(a2.w3, fired, TINY, active)[1]), [1, 1, 1, 1])
    dropped = jax.jit(net.make_rstdp_epoch(TINY, batch=4, decide_every=2, dropout=0.5))
    runs = [dropped(a2.w3, jnp.array([0.9, 0.1]), fired, labels, jnp.arange(4), rates, True, jax.random.key(k))[0]
            for k in (1, 1, 2)]
    np.testing.assert_array_equal(np.asarray(runs[0]), np.asarray(runs[1]))
    assert not np.array_equal(np.asarray(runs[0]), np.asarray(runs[2]))
    with pytest.raises(ValueError, match="dropout"):
        net.make_rstdp_epoch(TINY, dropout=1.0)


def test_decide_matches_the_potential_formula(key):
    """The winner is the argmax of v[h, w, j] = sum w3[dy, dx, c, j] fired[h + dy - 2, w + dx - 2, c]."""
    cfg = net.NetConfig(c2=6, per_class=2)
    k1, k2 = jax.random.split(key)
    w3 = np.asarray(jax.random.uniform(k1, (5, 5, 6, 20), minval=0.2, maxval=0.8))
    fired = np.asarray(jax.random.bernoulli(k2, 0.4, (7, 4, 4, 6))).astype(np.float32)
    cls, j, pairings = net.decide(jnp.asarray(w3), jnp.asarray(fired), cfg)
    padded = np.pad(fired, ((0, 0), (2, 2), (2, 2), (0, 0)))
    for b in range(7):
        v = np.zeros((4, 4, 20))
        for h in range(4):
            for w in range(4):
                v[h, w] = np.tensordot(padded[b, h : h + 5, w : w + 5], w3, axes=3)
        h, w, jj = np.unravel_index(np.argmax(v), v.shape)
        assert int(j[b]) == jj and int(cls[b]) == jj // 2
        np.testing.assert_array_equal(np.asarray(pairings[b]), padded[b, h : h + 5, w : w + 5] > 0)


def test_bad_inputs_raise():
    w = jnp.full((3, 3, 2, 4), 0.5)
    with pytest.raises(ValueError, match="time-major"):
        stdp.conv_potentials(jnp.zeros((2, 5, 5, 2)), w)
    with pytest.raises(ValueError, match=r"\[0.0, 1.0\]"):
        stdp.conv_potentials(jnp.zeros((2, 1, 5, 5, 2)), w.at[0, 0, 0, 0].set(1.5))
    with pytest.raises(ValueError, match="channels"):
        stdp.conv_potentials(jnp.zeros((2, 1, 5, 5, 3)), w)
    with pytest.raises(ValueError, match="4 axes"):
        stdp.conv_potentials(jnp.zeros((2, 1, 5, 5, 2)), jnp.full((3, 3, 2), 0.5))
    with pytest.raises(ValueError, match=r"\[0.2, 0.8\]"):
        stdp.rstdp_update(jnp.full((4, 2), 0.9), jnp.ones((1, 4), bool), jnp.zeros(1, jnp.int32), jnp.ones(1))
    with pytest.raises(ValueError, match="grey-scale"):
        stdp.dog_filter(jnp.zeros((2, 28, 28)), stdp.dog_kernels())
    with pytest.raises(ValueError, match=r"\[B, 28, 28, 1\]"):
        net.encode(jnp.zeros((2, 20, 20, 1)), TINY)
    with pytest.raises(ValueError, match="num_steps"):
        stdp.intensity_to_latency(jnp.ones((1, 2, 2, 1)), 0)
