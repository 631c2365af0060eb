import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxspike import cells, surrogates

# Two neurons, three steps; beta 0.9, threshold 1.
CURRENTS = jnp.array([[0.6, 1.5], [0.6, 0.0], [0.6, 0.2]], jnp.float32)[:, None, :]  # [T, B=1, N=2]


def run(cell, params, currents):
    state = cell.init_state(currents.shape[1:])
    outs, vs = [], []
    for t in range(currents.shape[0]):
        state, out = cell.step(params, state, currents[t])
        outs.append(out)
        vs.append(state.v)
    return jnp.stack(outs), jnp.stack(vs)


def test_lif_golden_trace_subtract():
    cell = cells.lif(0.9, 1.0)
    spikes, v = run(cell, cell.init_params((2,)), CURRENTS)
    # Hand computation: v_t = 0.9 v_{t-1} + I_t - 1.0 s_{t-1}; s_t = [v_t > 1].
    np.testing.assert_allclose(v[:, 0], [[0.6, 1.5], [1.14, 0.35], [0.626, 0.515]], rtol=1e-6)
    np.testing.assert_array_equal(spikes[:, 0], [[0, 1], [1, 0], [0, 0]])


def test_lif_golden_trace_zero_and_none():
    cell = cells.lif(0.9, 1.0, reset="zero")
    spikes, v = run(cell, {}, CURRENTS)
    np.testing.assert_allclose(v[:, 0, 1], [1.5, 0.0, 0.2], rtol=1e-6)
    cell = cells.lif(0.9, 1.0, reset="none")
    spikes, v = run(cell, {}, CURRENTS)
    np.testing.assert_allclose(v[:, 0, 1], [1.5, 1.35, 1.415], rtol=1e-6)
    np.testing.assert_array_equal(spikes[:, 0, 1], [1, 1, 1])


def test_if_and_synaptic_traces():
    cell = cells.integrate_and_fire(1.0)
    spikes, v = run(cell, {}, CURRENTS)
    np.testing.assert_allclose(v[:, 0, 0], [0.6, 1.2, 0.8], rtol=1e-6)
    np.testing.assert_array_equal(spikes[:, 0, 0], [0, 1, 0])
    cell = cells.synaptic_lif(alpha=0.5, beta=0.9, threshold=1.0)
    state = cell.init_state((1, 2))
    syn_hist = []
    for t in range(3):
        state, _ = cell.step({}, state, CURRENTS[t])
        syn_hist.append(state.syn[0, 0])
    # syn_t = 0.5 syn_{t-1} + 0.6
    np.testing.assert_allclose(syn_hist, [0.6, 0.9, 1.05], rtol=1e-6)


def test_leaky_integrator_emits_membrane():
    cell = cells.leaky_integrator(0.5)
    out, v = run(cell, {}, CURRENTS)
    np.testing.assert_allclose(out[:, 0, 0], [0.6, 0.9, 1.05], rtol=1e-6)
    np.testing.assert_array_equal(out, v)


def _spike_total(params, cell, currents):
    spikes, _ = run(cell, params, currents)
    return jnp.sum(spikes)


@pytest.mark.parametrize("per_neuron", [False, True])
def test_learnable_beta_and_threshold_get_gradients(per_neuron):
    cell = cells.lif(0.9, 1.0, surrogates.arctan(), learn_beta=True, learn_threshold=True, per_neuron=per_neuron)
    params = cell.init_params((2,))
    assert params["beta"].shape == ((2,) if per_neuron else ())
    grads = jax.grad(_spike_total)(params, cell, CURRENTS)
    assert jnp.all(jnp.isfinite(grads["beta"])) and jnp.any(grads["beta"] != 0)
    assert jnp.all(grads["threshold"] < 0)  # a higher threshold means fewer spikes


def test_constraints_clip_learned_values():
    cell = cells.lif(0.9, 1.0, learn_beta=True, learn_threshold=True)
    wild = {"beta": jnp.float32(3.0), "threshold": jnp.float32(-2.0)}
    state = cell.init_state((1, 2))
    state, _ = cell.step(wild, state, jnp.full((1, 2), 0.5))
    state, _ = cell.step(wild, state, jnp.zeros((1, 2)))
    # beta clipped to 1 and threshold to min_threshold (1e-3): v stays 0.5 - 1e-3 after a spike.
    np.testing.assert_allclose(state.v, 0.5 - 1e-3, rtol=1e-5)


def test_detach_reset_option_changes_gradient():
    inputs = jnp.array([1.2, 0.5, 0.7], jnp.float32)[:, None, None]

    def last_v(i0, detach):
        cell = cells.lif(0.9, 1.0, surrogates.fast_sigmoid(2.0), detach_reset=detach)
        _, v = run(cell, {}, inputs.at[0].set(i0))
        return v[-1, 0, 0]

    g_detached = jax.grad(last_v)(1.2, True)
    g_attached = jax.grad(last_v)(1.2, False)
    assert g_detached == pytest.approx(0.81)  # only the leak path: beta^2
    assert g_attached != pytest.approx(0.81)


def test_bad_arguments():
    with pytest.raises(ValueError, match="beta"):
        cells.lif(beta=1.5)
    with pytest.raises(ValueError, match="threshold"):
        cells.lif(threshold=0.0)
    with pytest.raises(ValueError, match="reset"):
        cells.lif(reset="soft")
    cell = cells.lif()
    with pytest.raises(ValueError, match="does not match"):
        cell.step({}, cell.init_state((2, 3)), jnp.zeros((2, 4)))
