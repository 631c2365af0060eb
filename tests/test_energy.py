"""Energy accounting against a two-layer network counted by hand."""

import jax.numpy as jnp
import numpy as np
import pytest

from jaxspike import cells, energy, layers

# Input spikes [T=3, B=2, N=3]; example 1 is silent.
X = np.zeros((3, 2, 3), np.float32)
X[0, 0] = [1, 1, 0]
X[1, 0] = [0, 0, 1]
X[2, 0] = [1, 0, 0]
W1 = np.array([[1.0, 0.5], [0.6, 0.0], [0.0, 1.2]], np.float32)
W2 = np.array([[2.0], [0.5]], np.float32)


def _run(input_kind="spikes"):
    lif = cells.lif(beta=0.5, threshold=1.0)
    l1 = layers.SpikingDense(2, cell=lif, input_kind=input_kind)
    l2 = layers.SpikingDense(1, cell=lif, use_bias=False)
    s1, aux1 = l1.apply({"params": {"kernel": jnp.asarray(W1), "bias": jnp.zeros(2)}}, jnp.asarray(X))
    s2, aux2 = l2.apply({"params": {"kernel": jnp.asarray(W2)}}, s1)
    return s1, s2, {"encoder": {"l1": aux1}, "l2": aux2, "kl": jnp.ones(2)}


def test_hand_counted_two_layer_network():
    # Layer 1, example 0: currents x_t W1 = [1.6, .5], [0, 1.2], [1, .5].
    # LIF v_t = .5 v_{t-1} + I_t - s_{t-1}, spike iff v_t > 1:
    #   unit 0: v = 1.6 (spike), -.2, .9      unit 1: v = .5, 1.45 (spike), .225
    # -> 2 spikes; synops = 4 input events * 2 fan-out + 2 biases * 3 steps = 14.
    # Example 1: no input, no spikes, synops = 6 (bias adds only).
    # Layer 2 (no bias), example 0: inputs [1,0], [0,1], [0,0] -> currents 2, .5, 0
    #   v = 2 (spike), .5*2 + .5 - 1 = .5, .25 -> 1 spike; synops = 2 events * 1.
    s1, s2, aux = _run()
    np.testing.assert_array_equal(np.asarray(s1[:, 0]), [[1, 0], [0, 1], [0, 0]])
    np.testing.assert_array_equal(np.asarray(s2[:, 0, 0]), [1, 0, 0])

    rep = energy.energy_report(aux)
    assert set(rep["layers"]) == {"encoder/l1", "l2"}  # "kl" is not a layer
    l1, l2 = rep["layers"]["encoder/l1"], rep["layers"]["l2"]
    assert l1["spikes"] == pytest.approx(1.0)  # (2 + 0) / 2 examples
    assert l1["firing_rate"] == pytest.approx((2 / 6 + 0) / 2)
    assert l1["synops"] == pytest.approx((14 + 6) / 2)
    assert l2["spikes"] == pytest.approx(0.5)
    assert l2["synops"] == pytest.approx(1.0)
    assert rep["spikes_per_sample"] == pytest.approx(1.5)
    assert rep["synops"] == pytest.approx(11.0) and rep["macs"] == 0.0
    assert rep["energy_pj"] == pytest.approx(11 * 0.9)
    assert rep["energy_nj"] == pytest.approx(11 * 0.9e-3)

    custom = energy.energy_report(aux, e_ac_pj=2.0)
    assert custom["energy_pj"] == pytest.approx(22.0)


def test_analog_input_layer_counts_macs():
    _, _, aux = _run(input_kind="analog")
    rep = energy.energy_report(aux)
    assert rep["layers"]["encoder/l1"]["macs"] == pytest.approx(10.0)
    assert rep["layers"]["encoder/l1"]["synops"] == 0.0
    assert rep["energy_pj"] == pytest.approx(10 * 4.6 + 1 * 0.9)


def test_analog_twin_and_compare():
    # Analog twin of the same 3-2-1 net, one pass: 3*2 + 2*1 MACs, 2 bias adds.
    assert energy.analog_dense_macs([(3, 2), (2, 1)]) == 8
    ana = energy.analog_report([(3, 2), (2, 1)])
    assert ana["macs"] == 8 and ana["synops"] == 3  # biases: 2 + 1
    assert ana["energy_pj"] == pytest.approx(8 * 4.6 + 3 * 0.9)
    params = {"params": {"l1": {"kernel": W1, "bias": np.zeros(2)}, "l2": {"kernel": W2}}}
    from_params = energy.analog_report_from_params(params)
    assert from_params["macs"] == 8 and from_params["synops"] == 2

    spk = energy.energy_report(_run()[2])
    cmp = energy.compare(spk, ana)
    assert cmp["energy_ratio"] == pytest.approx(ana["energy_pj"] / spk["energy_pj"])
    assert cmp["spiking"]["synops"] == pytest.approx(11.0)


def test_conv_counts():
    assert energy.conv_macs((14, 14), 3, 1, 8) == 14 * 14 * 9 * 8
    params = {"conv": {"kernel": np.zeros((3, 3, 1, 8)), "bias": np.zeros(8)}}
    rep = energy.analog_report_from_params(params, {"conv": (14, 14)})
    assert rep["macs"] == 14 * 14 * 9 * 8 and rep["synops"] == 14 * 14 * 8
    with pytest.raises(ValueError, match="out_hw"):
        energy.analog_report_from_params(params)


def test_bad_aux():
    with pytest.raises(ValueError, match="no layer counts"):
        energy.energy_report({"kl": {"x": 1}})
    with pytest.raises(TypeError):
        energy.energy_report([1, 2])
    with pytest.raises(ValueError, match="NaN"):
        energy.energy_report({"synops": np.array([np.nan])})
