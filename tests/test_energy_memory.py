"""The memory-inclusive energy model against hand-computed values and the published crossover."""

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxspike import cells, energy, layers

# The two-layer network of test_energy.py: 3 -> 2 (bias) -> 1 (no bias), T = 3, LIF.
X = np.zeros((3, 2, 3), np.float32)
X[0, 0] = [1, 1, 0]
X[1, 0] = [0, 0, 1]
X[2, 0] = [1, 0, 0]
W1 = np.array([[1.0, 0.5], [0.6, 0.0], [0.0, 1.2]], np.float32)
W2 = np.array([[2.0], [0.5]], np.float32)
SHAPES = {"l1": energy.dense_shape(3, 2, 3), "l2": energy.dense_shape(2, 1, 3, bias=False)}


class TwoLayer(nn.Module):
    @nn.compact
    def __call__(self, x):
        lif = cells.lif(beta=0.5, threshold=1.0)
        s1, aux1 = layers.SpikingDense(2, cell=lif, name="l1")(x)
        s2, aux2 = layers.SpikingDense(1, cell=lif, use_bias=False, name="l2")(s1)
        return s2, {"l1": aux1, "l2": aux2}


PARAMS = {"params": {"l1": {"kernel": jnp.asarray(W1), "bias": jnp.zeros(2)}, "l2": {"kernel": jnp.asarray(W2)}}}


def _aux():
    return TwoLayer().apply(PARAMS, jnp.asarray(X))[1]


def test_matched_bits():
    # ceil(log2(T + 1)): T = 1 -> 1 bit, 3 -> 2, 4..7 -> 3, 8..15 -> 4.
    assert [energy.matched_bits(t) for t in (1, 3, 4, 5, 7, 8, 15, 16)] == [1, 2, 3, 3, 3, 4, 4, 5]
    assert all(energy.matched_bits(t) == math.ceil(math.log2(t + 1)) for t in range(1, 300))
    with pytest.raises(ValueError):
        energy.matched_bits(0)


def test_profile_arithmetic_and_validation():
    hw = energy.NEUROMORPHIC
    assert hw.add_pj(8) == pytest.approx(0.03) and hw.mult_pj(8, 8) == pytest.approx(0.2)
    # The width scaling lands near Horowitz's measured 32-bit integer add (0.1) and mult (3.1).
    assert hw.add_pj(32) == pytest.approx(0.12) and hw.mult_pj(32, 32) == pytest.approx(3.2)
    assert hw.weight_pj_per_bit == pytest.approx(20 / 64) and hw.state_pj_per_bit == pytest.approx(10 / 64)
    assert energy.ACCELERATOR.weight_pj_per_bit == pytest.approx(1300 / 64)
    assert dataclasses.replace(hw, batch=64).batch == 64
    with pytest.raises(ValueError, match="weight_fetch"):
        dataclasses.replace(hw, weight_fetch="sometimes")
    with pytest.raises(ValueError, match="energies"):
        dataclasses.replace(hw, state_pj_per_bit=-1.0)
    with pytest.raises(ValueError, match="bit widths"):
        dataclasses.replace(hw, acc_bits=0)


def test_layer_shapes_of_a_traced_model():
    x = jax.ShapeDtypeStruct(X.shape, jnp.float32)
    shapes = energy.layer_shapes(lambda p, x: TwoLayer().apply(p, x)[1], PARAMS, x)
    assert shapes == SHAPES


def test_conv_shapes_match_the_analog_twin():
    from jaxspike.models import gan

    g = gan.SpikingGenerator(num_steps=4, noise_dim=8, arch="conv", channels=(16, 8))
    z = jnp.zeros((4, 2, 8))
    shapes = energy.layer_shapes(lambda p, z: g.apply(p, z)[1], jax.eval_shape(g.init, jax.random.key(0), z), z)
    assert shapes["g_deconv0"] == energy.conv_shape((7, 7), (14, 14), 4, 16, 8, 4, transpose=True)
    assert not shapes["g_out"].spiking  # membrane readout
    twin = gan.AnalogGenerator(noise_dim=8, arch="conv", channels=(16, 8))
    twin_params = jax.eval_shape(twin.init, jax.random.key(0), jnp.zeros((2, 8)))["params"]
    assert sum(s.macs for s in shapes.values()) == energy.analog_macs(twin, twin_params, jnp.zeros((2, 8)))


# Hand computation on NEUROMORPHIC: e_W = 20/64 pJ/bit, e_S = e_A = 10/64 pJ/bit,
# 8-bit weights, 16-bit accumulators (e_add = 0.06, leak e_mult(16, 8) = 0.4), 32-bit spike packets.
# Per-sample counts (test_energy.py): l1 synops 10 (4 events + 6 bias adds), 1 spike;
# l2 synops 1 (1 event, no bias), 0.5 spikes.
L1_PARTS = {
    "arithmetic": 4 * 0.06 + 6 * (0.06 + 0.4 + 0.06) + 1 * 0.06,  # events, T N (bias, leak, compare), reset
    "weights": 4 * 8 * 20 / 64,  # 10
    "accumulate": 4 * 2 * 16 * 10 / 64,  # 20
    "state": 6 * 2 * 16 * 10 / 64,  # 30
    "spikes": 1 * 2 * 32 * 10 / 64,  # 10
}
L2_PARTS = {
    "arithmetic": 1 * 0.06 + 3 * (0.4 + 0.06) + 0.5 * 0.06,
    "weights": 8 * 20 / 64,
    "accumulate": 2 * 16 * 10 / 64,
    "state": 3 * 2 * 16 * 10 / 64,
    "spikes": 0.5 * 2 * 32 * 10 / 64,
}
# Twins, one pass: M = 6 / 2 MACs, N = 2 / 1 neurons (bias on l1 only, a ReLU compare each).
MATCHED_PJ = (  # T = 3 -> 2-bit activations, 8-bit weights: MAC = e_mult(2, 8) + e_add = 0.05 + 0.06
    6 * 0.11 + 2 * 2 * 0.06 + 6 * 8 * 20 / 64 + 2 * 2 * 2 * 10 / 64
    + 2 * 0.11 + 1 * 0.06 + 2 * 8 * 20 / 64 + 1 * 2 * 2 * 10 / 64
)
FP32_PJ = (  # MAC 3.7 + 0.9 pJ, 32-bit weights and activations
    6 * 4.6 + 2 * 2 * 0.9 + 6 * 32 * 20 / 64 + 2 * 2 * 32 * 10 / 64
    + 2 * 4.6 + 1 * 0.9 + 2 * 32 * 20 / 64 + 1 * 2 * 32 * 10 / 64
)


def test_hand_computed_layer_terms():
    rep = energy.energy_report(_aux())["layers"]
    l1 = energy.snn_layer_energy(rep["l1"], SHAPES["l1"])
    l2 = energy.snn_layer_energy(rep["l2"], SHAPES["l2"])
    for got, want in ((l1, L1_PARTS), (l2, L2_PARTS)):
        for part, value in want.items():
            assert got[part] == pytest.approx(value), part
        assert got["total"] == pytest.approx(sum(want.values()))
    twin = energy.twin_layer_energy(SHAPES["l1"], energy.Twin(2, 8))
    assert twin["arithmetic"] == pytest.approx(6 * 0.11 + 4 * 0.06)
    assert twin["weights"] == pytest.approx(15.0) and twin["activations"] == pytest.approx(1.25)


def test_accelerator_terms():
    # DRAM weights fetched once per pass (W b_w e_W / batch), no event accumulation, 1 MB buffers.
    rep = energy.energy_report(_aux())["layers"]
    l1 = energy.snn_layer_energy(rep["l1"], SHAPES["l1"], energy.ACCELERATOR)
    assert l1["weights"] == pytest.approx(6 * 8 * 1300 / 64)
    assert l1["accumulate"] == 0.0
    assert l1["state"] == pytest.approx(6 * 2 * 16 * 100 / 64)
    batched = dataclasses.replace(energy.ACCELERATOR, batch=4)
    assert energy.snn_layer_energy(rep["l1"], SHAPES["l1"], batched)["weights"] == pytest.approx(l1["weights"] / 4)
    twin = energy.twin_layer_energy(SHAPES["l1"], energy.Twin(2, 8), batched)
    assert twin["weights"] == pytest.approx(6 * 8 * 1300 / 64 / 4)


def test_report_totals_ratios_and_crossover():
    aux = _aux()
    rep = energy.memory_energy_report(aux, SHAPES)
    assert rep["num_steps"] == 3 and rep["matched_bits"] == 2
    assert rep["spike_rate"] == pytest.approx((1 + 0.5) / (3 * 2 + 3 * 1))
    assert rep["layers"]["l1"]["spike_rate"] == pytest.approx((2 / 6 + 0) / 2)
    # Today's figure, unchanged: 11 synops x 0.9 pJ against 8 MACs x 4.6 + 2 bias adds x 0.9.
    assert rep["synops_only"]["snn_pj"] == energy.energy_report(aux)["energy_pj"]
    assert rep["synops_only"]["fp32_twin_pj"] == pytest.approx(8 * 4.6 + 2 * 0.9)

    neuro = rep["neuromorphic"]
    snn = sum(L1_PARTS.values()) + sum(L2_PARTS.values())
    assert neuro["snn_pj"] == pytest.approx(snn)
    assert neuro["matched"]["twin_pj"] == pytest.approx(MATCHED_PJ)
    assert neuro["fp32"]["twin_pj"] == pytest.approx(FP32_PJ)
    assert neuro["matched"]["snn_over_twin"] == pytest.approx(snn / MATCHED_PJ)
    assert neuro["layers"]["l2"]["snn_pj"] == pytest.approx(sum(L2_PARTS.values()))
    # Crossover: activity-independent part = T N (bias, leak, compare) + membrane traffic.
    fixed = 6 * (0.06 + 0.4 + 0.06) + 30 + 3 * (0.4 + 0.06) + 15
    scale = (FP32_PJ - fixed) / (snn - fixed)
    assert neuro["fp32"]["crossover_scale"] == pytest.approx(scale)
    assert neuro["fp32"]["crossover_rate"] == pytest.approx(scale / 6)
    # This tiny network's membrane traffic alone costs more than its matched twin: it never wins.
    assert fixed > MATCHED_PJ
    assert neuro["matched"]["crossover_rate"] == 0.0 and neuro["matched"]["crossover_scale"] == 0.0

    flat = energy.headline(rep)
    assert flat["neuromorphic/matched"] == neuro["matched"]["snn_over_twin"]
    assert flat["synops_only"] == rep["synops_only"]["snn_over_twin"]
    assert set(flat) >= {"accelerator/int8", "accelerator/fp32/crossover_rate", "spike_rate"}


def test_report_does_not_change_energy_report():
    aux = _aux()
    before = energy.energy_report(aux)
    energy.memory_energy_report(aux, SHAPES)
    assert energy.energy_report(aux) == before


def test_uniform_activity_reproduces_the_measured_counts_form():
    # At rate s every input and neuron fires s T times: events = s T M, spikes = s T N.
    aux = energy.uniform_activity_aux(SHAPES, 0.25)
    assert aux["l1"]["synops"] == pytest.approx(0.25 * 3 * 6 + 6) and aux["l1"]["spike_count"] == pytest.approx(1.5)
    assert aux["l2"]["synops"] == pytest.approx(0.25 * 3 * 2)
    rep = energy.memory_energy_report(aux, SHAPES)
    assert rep["spike_rate"] == pytest.approx(0.25)
    # The crossover is where the energies meet: evaluate there.
    wide = {"a": energy.dense_shape(64, 64, 8), "b": energy.dense_shape(64, 64, 8)}
    s_star = energy.crossover_rate(wide, energy.NEUROMORPHIC, "int8")
    at = energy.memory_energy_report(energy.uniform_activity_aux(wide, s_star), wide)["neuromorphic"]["int8"]
    assert at["snn_over_twin"] == pytest.approx(1.0)
    assert at["crossover_rate"] == pytest.approx(s_star)


def test_reference_point_yan_bai_wong():
    """Yan, Bai & Wong (arXiv 2409.08290): with T = 5 on neuromorphic hardware a rate-coded SNN
    beats its bit-matched (ceil(log2 6) = 3-bit) QNN only below an average spike rate of 5.7 %
    (6.4 % in the earlier version, for T in [5, 10]).

    Our model, same setting: NEUROMORPHIC (8-bit weights in 32 kB SRAM, 16-bit accumulators in
    8 kB SRAM), twin with the same 8-bit weights and 3-bit activations. For a wide dense layer the
    per-neuron terms vanish and per synaptic event vs per MAC

        s* = (b_w e_W + e_mult(3, 8) + e_add(16)) / (T (b_w e_W + 2 b_a e_S + e_add(16)))
           = (2.5 + 0.075 + 0.06) / (5 (2.5 + 5.0 + 0.06)) = 2.635 / 37.8 = 6.97 %.
    """
    hand = (8 * 20 / 64 + 0.2 * 3 * 8 / 64 + 0.06) / (5 * (8 * 20 / 64 + 2 * 16 * 10 / 64 + 0.06))
    assert hand == pytest.approx(0.0697, abs=1e-4)
    wide = {"layer": energy.dense_shape(1 << 16, 1 << 16, 5)}
    assert energy.crossover_rate(wide) == pytest.approx(hand, rel=1e-3)
    # A 784-256-256 rate-coded MLP (its neurons' membrane traffic included) lands near the paper's figure.
    mlp = {"h1": energy.dense_shape(784, 256, 5), "h2": energy.dense_shape(256, 256, 5)}
    s_mlp = energy.crossover_rate(mlp)
    assert 0.05 < s_mlp < hand
    assert abs(s_mlp - 0.064) < 0.01
    # Without event accumulation the crossover is ~1/T: the 6 % comes from the per-event traffic.
    plain = dataclasses.replace(energy.NEUROMORPHIC, event_accumulate=False)
    assert energy.crossover_rate(wide, plain) == pytest.approx(2.635 / (5 * 2.56), rel=1e-3)


def test_shapes_must_match_aux():
    aux = _aux()
    with pytest.raises(ValueError, match="missing \\['l2'\\]"):
        energy.memory_energy_report(aux, {"l1": SHAPES["l1"]})
    with pytest.raises(ValueError, match="not in aux \\['l3'\\]"):
        energy.memory_energy_report(aux, {**SHAPES, "l3": SHAPES["l1"]})
    with pytest.raises(ValueError, match="bias"):  # counts below the shape's bias adds
        energy.snn_layer_energy({"synops": 1.0, "macs": 0.0, "spikes": 0.0}, SHAPES["l1"])
    with pytest.raises(ValueError, match="rate"):
        energy.uniform_activity_aux(SHAPES, 1.5)


def test_per_sample_aux_round_trips_energy_report():
    aux = _aux()
    base = energy.energy_report(aux)["layers"]
    means = {n: {"spikes": v["spikes"], "firing_rate": v["firing_rate"], "synops": v["synops"], "macs": v["macs"]}
             for n, v in base.items()}
    again = energy.per_sample_aux(means)
    assert energy.summary(again, SHAPES) == energy.summary(aux, SHAPES)


def test_rbm_priced_per_gibbs_step_by_hand():
    from jaxspike.models import rbm

    cfg = rbm.RBMConfig(num_visible=6, num_hidden=4, num_labels=0)
    events = {"v_spikes": 30.0, "h_spikes": 20.0}  # per sample, over 10 Gibbs steps
    counts = rbm.energy_counts(events, cfg, 10)
    # per step: 3 visible spikes reach 4 hidden units, 2 hidden spikes reach 6 visible units
    assert counts == {"hidden": {"spikes": 2.0, "synops": 12.0, "firing_rate": 0.5},
                      "visible": {"spikes": 3.0, "synops": 12.0, "firing_rate": 0.5}}
    steps = 10 * sum(c["synops"] for c in counts.values())
    cfg_counts = {"v_spikes": np.array([30.0]), "h_spikes": np.array([20.0])}
    assert steps == rbm.synaptic_events_per_sample(cfg_counts, cfg)["synops"]
    shapes = rbm.energy_layers(cfg)
    assert shapes["hidden"] == energy.LayerShape(neurons=4, weights=24, macs=24, num_steps=1, bias=False)
    out = energy.summary(energy.per_sample_aux(counts), shapes)
    # a conventional binary RBM sampler is the matched twin: 1-bit activations
    assert out["num_steps"] == 1 and out["matched_bits"] == 1
    # synaptic operations only: 24 events x 0.9 pJ against 2 x 24 MACs x 4.6 pJ per step
    assert out["synops_only"] == pytest.approx(24 * 0.9 / (48 * 4.6))
    assert out["layers"] == {"hidden": 0.5, "visible": 0.5}
    with pytest.raises(ValueError, match="num_steps"):
        rbm.energy_counts(events, cfg, 0)


def test_stdp_network_priced_from_its_counts():
    from jaxspike.models import spyketorch_net as net

    cfg = net.NetConfig(c1=4, c2=6, per_class=1)
    shapes = net.energy_layers(cfg)
    assert shapes["s1"] == energy.LayerShape(neurons=28 * 28 * 4, weights=5 * 5 * 6 * 4, macs=784 * 5 * 5 * 6 * 4,
                                             num_steps=15, bias=False)
    assert shapes["s2"].neurons == 14 * 14 * 6 and shapes["s2"].macs == 196 * 3 * 3 * 4 * 6
    assert not shapes["decision"].spiking and shapes["decision"].neurons == 4 * 4 * 10
    # per-example counts of two images, as net.forward's aux holds them
    aux = {"spikes_in": np.array([100.0, 120.0]), "spikes1": np.array([40.0, 60.0]), "spikes2_in": np.array([20.0, 30.0]),
           "spikes2": np.array([10.0, 14.0]), "spikes3_in": np.array([5.0, 7.0]),
           "synops1": np.array([9e4, 1.1e5]), "synops2": np.array([5e3, 7e3]), "synops3": np.array([4e3, 6e3])}
    events = net.synaptic_events(aux)
    counts = net.energy_counts(events, cfg)
    assert counts["s1"] == {"spikes": 50.0, "synops": 1e5, "firing_rate": 50.0 / (15 * 28 * 28 * 4)}
    assert counts["decision"] == {"spikes": 0.0, "synops": 5e3, "firing_rate": 0.0}
    out = energy.summary(energy.per_sample_aux(counts), shapes)
    twin_pj = sum(s.macs for s in shapes.values()) * 4.6  # no biases
    assert out["synops_only"] == pytest.approx(events["energy_nj_per_image"] * 1e3 / twin_pj, rel=1e-6)
    assert out["layers"] == pytest.approx({"s1": 50.0 / (15 * 3136), "s2": 12.0 / (15 * 1176), "decision": 0.0})


def test_energy_report_prices_local_run_folders(tmp_path):
    """launch.energy_report reads a local-learning run's config.json and metrics.json."""
    import json

    from launch import energy_tables
    from jaxspike.models import rbm

    cfg = rbm.RBMConfig(num_visible=6, num_hidden=4, num_labels=0)
    (tmp_path / "config.json").write_text(json.dumps({"rbm": cfg._asdict(), "seed": 0}))
    sampled = {"v_spikes": 30.0, "h_spikes": 20.0, "synops": 240.0, "energy_nj": 0.216}
    (tmp_path / "metrics.json").write_text(json.dumps({"sampling_energy_gain1_steps10": sampled}))
    row = energy_tables.price_run(str(tmp_path))
    assert row["synops_only"] == pytest.approx(24 * 0.9 / (48 * 4.6))
    assert row["layers"] == {"hidden": 0.5, "visible": 0.5}
    (tmp_path / "metrics.json").write_text(json.dumps({"final": {}}))
    with pytest.raises(ValueError, match="no sampler counts"):
        energy_tables.price_run(str(tmp_path))


def test_report_table_averages_a_samplers_calls_per_layer():
    from launch import energy_tables

    rates = {"call_00/a": 0.1, "call_00/b": 0.0, "call_01/a": 0.3, "call_01/b": 0.0}
    assert energy_tables.layer_rates(rates) == "a 0.200, b 0.000; each the mean over 2 calls"
    assert energy_tables.layer_rates({"dec0": 0.087, "readout": 0.0}) == "dec0 0.087, readout 0.000"
