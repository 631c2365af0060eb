import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxspike import encoding


def test_rate_frequencies_match_probabilities(key):
    p = jnp.array([[0.0, 0.05, 0.3, 0.5, 0.9, 1.0]])
    spikes = encoding.rate(key, jnp.repeat(p, 200, axis=0), 100)  # 20,000 draws per value
    assert spikes.shape == (100, 200, 6)
    freq = spikes.mean(axis=(0, 1))
    # 5 standard errors of a Bernoulli mean over 20,000 draws.
    tol = 5 * np.sqrt(np.asarray(p[0]) * (1 - np.asarray(p[0])) / 20000) + 1e-9
    np.testing.assert_array_less(np.abs(freq - p[0]), tol + 1e-7)
    assert freq[0] == 0.0 and freq[-1] == 1.0


def test_rate_gain_and_key_reproducibility(key):
    x = jnp.full((4, 10), 0.2)
    a = encoding.rate(key, x, 50)
    np.testing.assert_array_equal(a, encoding.rate(key, x, 50))
    assert not np.array_equal(a, encoding.rate(jax.random.key(1), x, 50))
    doubled = encoding.rate(key, x, 2000, gain=2.0)
    assert abs(float(doubled.mean()) - 0.4) < 0.01


def test_latency_linear_first_spike_times():
    x = jnp.array([[1.0, 0.5, 0.0, 0.75, 0.005]])
    spikes = encoding.latency(x, 5)
    assert spikes.shape == (5, 1, 5)
    assert jnp.all(spikes.sum(0) <= 1)  # at most one spike per input
    t_first = encoding.first_spike_time(spikes)
    # t = (1 - x)(T - 1); x at or below threshold (0.01) never spikes -> T.
    np.testing.assert_array_equal(t_first[0], [0, 2, 5, 1, 5])


def test_latency_log_is_monotone_and_single_spike():
    x = jnp.linspace(0.02, 1.0, 50)[None]
    spikes = encoding.latency(x, 32, method="log")
    assert jnp.all(spikes.sum(0) == 1)
    t = encoding.first_spike_time(spikes)[0]
    assert t[-1] == 0  # the brightest input spikes first
    assert jnp.all(jnp.diff(t) <= 0)  # brighter never later


def test_direct_and_readouts():
    x = jnp.arange(6.0).reshape(2, 3)
    seq = encoding.direct(x, 4)
    assert seq.shape == (4, 2, 3)
    np.testing.assert_array_equal(encoding.membrane_mean(seq), x)
    v = jnp.array([[1.0], [3.0], [2.0]])
    assert encoding.membrane_last(v)[0] == 2.0 and encoding.membrane_max(v)[0] == 3.0
    s = jnp.array([[0, 1], [1, 0], [1, 0]], jnp.float32)[:, None]
    np.testing.assert_array_equal(encoding.spike_count(s), [[2, 1]])
    np.testing.assert_allclose(encoding.spike_rate(s), [[2 / 3, 1 / 3]])
    np.testing.assert_array_equal(encoding.first_spike_time(s), [[1, 0]])
    np.testing.assert_array_equal(encoding.first_spike_time(jnp.zeros((3, 1, 2))), [[3, 3]])


def test_bad_input_errors(key):
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        encoding.rate(key, jnp.array([[0.5, 1.2]]), 4)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        encoding.rate(key, jnp.array([[-0.1]]), 4)
    with pytest.raises(ValueError, match="NaN"):
        encoding.latency(jnp.array([[jnp.nan]]), 4)
    with pytest.raises(ValueError, match="T must be a positive int"):
        encoding.rate(key, jnp.array([[0.5]]), 0)
    with pytest.raises(ValueError, match="positive int"):
        encoding.direct(jnp.ones((2, 2)), 2.5)
    with pytest.raises(ValueError, match="batch"):
        encoding.latency(jnp.float32(0.5), 4)
    with pytest.raises(ValueError, match="T = 0"):
        encoding.spike_count(jnp.zeros((0, 2, 3)))
    with pytest.raises(ValueError, match="method"):
        encoding.latency(jnp.ones((1, 2)), 4, method="exp")


def test_first_spike_intensity_matches_times_and_has_gradients():
    s = jnp.array([[0, 1, 0], [1, 1, 0], [1, 0, 0], [0, 0, 0]], jnp.float32)[:, None]  # [T=4, B=1, 3]
    np.testing.assert_allclose(encoding.first_spike_intensity(s)[0], [1 - 1 / 4, 1.0, 0.0])
    t = encoding.first_spike_time(s)[0]
    np.testing.assert_allclose(encoding.first_spike_intensity(s)[0][:2], 1 - t[:2] / 4)
    g = jax.grad(lambda s: jnp.sum(encoding.first_spike_intensity(s)))(s)
    assert float(g[0, 0, 1]) > 0  # an earlier first spike would raise the intensity


def test_interpolated_first_spike_intensity_hand_checked():
    # T = 4, threshold 1. Neuron a: v = 0.2, 0.6, 1.4 -> crosses 1 at 0.5 of step 2 -> 1 - 2.5/4.
    # Neuron b: v = 2.0 at step 0 -> crosses at 1/2 of step 0 -> 1 - 0.5/4. Neuron c: silent -> 0.
    # Neuron d: a second spike (step 3) must not count.
    v = jnp.array([[0.2, 2.0, 0.1, 0.5], [0.6, 0.0, 0.2, 1.0], [1.4, 0.0, 0.3, 0.2], [0.0, 0.0, 0.4, 1.5]])
    s = (v >= 1.0).astype(jnp.float32)
    got = encoding.interpolated_first_spike_intensity(s[:, None], v[:, None], 1.0)[0]
    np.testing.assert_allclose(got, [1 - 2.5 / 4, 1 - 0.5 / 4, 0.0, 1 - 2.0 / 4], rtol=1e-6)
    # Never above the whole-step readout, and less than one step below it.
    whole = encoding.first_spike_intensity(s[:, None])[0]
    assert np.all(np.asarray(got) <= np.asarray(whole)) and np.all(np.asarray(whole - got) <= 1 / 4 + 1e-6)


def test_interpolated_first_spike_intensity_is_continuous_in_the_drive():
    # An IF neuron under a constant drive I crosses 1 at time 1 / I: intensity 1 - 1 / (I T) once it fires.
    T, drives = 8, jnp.linspace(0.13, 3.0, 200)
    v = jnp.arange(1, T + 1, dtype=jnp.float32)[:, None] * drives[None]  # [T, N]
    s = (v >= 1.0).astype(jnp.float32)
    got = np.asarray(encoding.interpolated_first_spike_intensity(s, v, 1.0))
    np.testing.assert_allclose(got, 1 - 1 / (np.asarray(drives) * T), atol=1e-5)
    g = jax.grad(lambda d: jnp.sum(encoding.interpolated_first_spike_intensity(
        s, jnp.arange(1, T + 1, dtype=jnp.float32)[:, None] * d[None], 1.0)))(drives)
    np.testing.assert_allclose(g, 1 / (np.asarray(drives) ** 2 * T), rtol=1e-4)  # d/dI (1 - 1/(I T))
    with pytest.raises(ValueError, match="membrane shape"):
        encoding.interpolated_first_spike_intensity(s, v[:, :3], 1.0)
