import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxspike import cells, layers, surrogates


def _spikes(shape, p=0.2, seed=0):
    return jnp.asarray((np.random.default_rng(seed).random(shape) < p).astype(np.float32))


def _init_apply(layer, x, seed=1):
    variables = layer.init(jax.random.key(seed), x)
    return variables, layer.apply(variables, x)


def test_dense_matches_manual_recurrence():
    x = _spikes((12, 3, 20))
    layer = layers.SpikingDense(7, cell=cells.lif(0.8, 0.5))
    variables, (spikes, aux) = _init_apply(layer, x)
    p = variables["params"]
    v = np.zeros((3, 7), np.float32)
    s = np.zeros_like(v)
    expected = []
    for t in range(12):
        v = 0.8 * v + (np.asarray(x[t]) @ np.asarray(p["kernel"]) + np.asarray(p["bias"])) - 0.5 * s
        s = (v > 0.5).astype(np.float32)
        expected.append(s)
    np.testing.assert_array_equal(spikes, np.stack(expected))
    np.testing.assert_array_equal(aux["spike_count"], np.stack(expected).sum(axis=(0, 2)))


@pytest.mark.parametrize("remat_chunk", [0, 5])
def test_record_membrane_returns_the_recurrence(remat_chunk):
    x = _spikes((12, 3, 20), seed=2)
    layer = layers.SpikingDense(7, cell=cells.lif(0.8, 0.5), record_membrane=True, remat_chunk=remat_chunk)
    variables, (spikes, aux) = _init_apply(layer, x)
    p = variables["params"]
    v, s, vs = np.zeros((3, 7), np.float32), np.zeros((3, 7), np.float32), []
    for t in range(12):
        v = 0.8 * v + (np.asarray(x[t]) @ np.asarray(p["kernel"]) + np.asarray(p["bias"])) - 0.5 * s
        s = (v > 0.5).astype(np.float32)
        vs.append(v)
    np.testing.assert_allclose(aux["membrane"], np.stack(vs), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(spikes, layer.apply(variables, x)[0])
    assert "membrane" not in layers.SpikingDense(7, cell=cells.lif(0.8, 0.5)).apply(variables, x)[1]


@pytest.mark.parametrize("make", [
    lambda h, r: layers.SpikingDense(16, hoist=h, remat_chunk=r),
    pytest.param(lambda h, r: layers.SpikingConv(4, kernel_size=3, strides=2, hoist=h, remat_chunk=r),
                 marks=pytest.mark.slow),
    pytest.param(lambda h, r: layers.SpikingConvTranspose(3, kernel_size=4, strides=2, hoist=h, remat_chunk=r),
                 marks=pytest.mark.slow),
])
def test_hoisted_per_step_and_remat_paths_agree(make):
    dense = make(True, 0).__class__ is layers.SpikingDense
    x = _spikes((10, 2, 24) if dense else (10, 2, 6, 6, 2))
    layer_h = make(True, 0)
    variables = layer_h.init(jax.random.key(3), x)

    def loss(params, layer):
        spikes, aux = layer.apply({"params": params}, x)
        return jnp.sum(spikes * jnp.arange(spikes.shape[0])[(slice(None),) + (None,) * (spikes.ndim - 1)])

    results = {}
    for name, layer in {"hoisted": make(True, 0), "per_step": make(False, 0), "remat": make(False, 3)}.items():
        spikes, aux = layer.apply(variables, x)
        grads = jax.grad(loss)(variables["params"], layer)
        results[name] = (spikes, aux["synops"], grads)
    ref_spikes, ref_ops, ref_grads = results["hoisted"]
    assert float(ref_spikes.sum()) > 0
    for name in ("per_step", "remat"):
        spikes, ops, grads = results[name]
        np.testing.assert_array_equal(spikes, ref_spikes, err_msg=name)
        np.testing.assert_array_equal(ops, ref_ops)
        jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), grads, ref_grads)


def test_jit_equals_no_jit():
    x = _spikes((8, 4, 10))
    layer = layers.SpikingDense(5, cell=cells.lif(0.9, 0.3, surrogates.arctan()))
    variables = layer.init(jax.random.key(0), x)
    eager = layer.apply(variables, x)
    jitted = jax.jit(layer.apply)(variables, x)
    jax.tree_util.tree_map(np.testing.assert_array_equal, eager, jitted)


def test_conv_synops_are_exact():
    # Brute force: each non-zero input drives the outputs whose window holds it, in all channels.
    x = _spikes((3, 2, 5, 5, 2), p=0.3)
    layer = layers.SpikingConv(4, kernel_size=3, strides=2, padding="SAME", use_bias=False)
    variables, (spikes, aux) = _init_apply(layer, x)
    kernel_ones = jnp.ones((3, 3, 2, 4))
    reach = jax.lax.conv_general_dilated(
        x.reshape(6, 5, 5, 2), kernel_ones, (2, 2), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )  # sum over outputs of connected input events = synaptic events
    expected = reach.reshape(3, 2, -1).sum(axis=(0, 2))
    np.testing.assert_allclose(aux["synops"], expected)
    assert spikes.shape == (3, 2, 3, 3, 4)


def test_dense_aux_counts_and_bias_ops():
    x = _spikes((4, 2, 6))
    layer = layers.SpikingDense(3)
    _, (spikes, aux) = _init_apply(layer, x)
    events = np.asarray(x).sum(axis=(0, 2))
    np.testing.assert_allclose(aux["synops"], events * 3 + 3 * 4)
    np.testing.assert_allclose(aux["firing_rate"], np.asarray(spikes).sum(axis=(0, 2)) / 12)
    analog = layers.SpikingDense(3, input_kind="analog")
    _, (_, aux_a) = _init_apply(analog, x)
    np.testing.assert_allclose(aux_a["macs"], aux["synops"])
    assert float(aux_a["synops"].sum()) == 0


def test_learnable_cell_params_are_in_the_pytree_and_trained():
    x = _spikes((6, 2, 8), p=0.5)
    layer = layers.SpikingDense(4, cell=cells.lif(0.9, 0.5, learn_beta=True, learn_threshold=True, per_neuron=True))
    variables = layer.init(jax.random.key(0), x)
    assert variables["params"]["cell"]["beta"].shape == (4,)
    grads = jax.grad(lambda p: jnp.sum(layer.apply({"params": p}, x)[1]["spike_count"]))(variables["params"])
    assert jnp.any(grads["cell"]["threshold"] != 0)


@pytest.mark.parametrize("mode", ["mean", "last", "max", "sequence"])
@pytest.mark.parametrize("beta", [0.0, 0.7, 1.0])
def test_readout_modes_match_integrator(mode, beta):
    x = _spikes((5, 3, 6))
    layer = layers.DenseReadout(4, mode=mode, beta=beta)
    variables = layer.init(jax.random.key(0), x)
    out, aux = layer.apply(variables, x)
    p = variables["params"]
    current = np.asarray(x) @ np.asarray(p["kernel"]) + np.asarray(p["bias"])
    v, vs = np.zeros((3, 4), np.float32), []
    for t in range(5):
        v = beta * v + current[t]
        vs.append(v)
    vs = np.stack(vs)
    expected = {"mean": vs.mean(0), "last": vs[-1], "max": vs.max(0), "sequence": vs}[mode]
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_bad_input_shapes():
    dense = layers.SpikingDense(3)
    with pytest.raises(ValueError, match=r"\[T, B, N\]"):
        dense.init(jax.random.key(0), jnp.zeros((4, 6)))
    with pytest.raises(ValueError, match="T = 0"):
        dense.init(jax.random.key(0), jnp.zeros((0, 2, 6)))
    conv = layers.SpikingConv(3)
    with pytest.raises(ValueError, match="H, W, C"):
        conv.init(jax.random.key(0), jnp.zeros((4, 2, 6)))
    x = jnp.zeros((4, 2, 6))
    variables = dense.init(jax.random.key(0), x)
    with pytest.raises(ValueError, match="kernel for 6 input features but got input with 7"):
        dense.apply(variables, jnp.zeros((4, 2, 7)))
    with pytest.raises(ValueError, match="readout mode"):
        layers.DenseReadout(2, mode="median").init(jax.random.key(0), x)
    with pytest.raises(ValueError, match="features"):
        layers.SpikingDense(0).init(jax.random.key(0), x)


@pytest.mark.parametrize("T,B,expected", [(100, 64, 30056), (500, 16, 39245)])
def test_default_lif_matches_snntorch_spike_counts(T, B, expected):
    # The reference arrays of bench/lif_layer.py; snnTorch's Leaky(beta=0.9, threshold=1,
    # reset_mechanism="subtract") emits exactly these totals on them.
    x = (np.random.default_rng(0).random((T, B, 784), dtype=np.float32) < 0.1).astype(np.float32)
    w = np.random.default_rng(1).uniform(-1 / 28, 1 / 28, (784, 512)).astype(np.float32)
    layer = layers.SpikingDense(512, use_bias=False)
    for hoist in (True, False):
        spikes, aux = layer.clone(hoist=hoist).apply({"params": {"kernel": jnp.asarray(w)}}, jnp.asarray(x))
        assert int(spikes.sum()) == expected
        assert int(aux["spike_count"].sum()) == expected


@pytest.mark.parametrize("hoist", [True, False])
def test_current_norm_makes_spikes_invariant_to_weight_scale(hoist):
    x = (jax.random.uniform(jax.random.key(0), (6, 3, 20)) < 0.4).astype(jnp.float32)
    layer = layers.SpikingDense(16, cell=cells.lif(0.9, 0.5), current_norm=True, hoist=hoist)
    params = layer.init(jax.random.key(1), x)["params"]
    assert params["norm_scale"].shape == (16,) and params["norm_offset"].shape == (16,)
    s1, aux = layer.apply({"params": params}, x)
    big = dict(params, kernel=params["kernel"] * 100.0)  # runaway weights: same spikes after the norm
    s2, _ = layer.apply({"params": big}, x)
    np.testing.assert_array_equal(s1, s2)
    rate = float(jnp.mean(s1))
    assert 0.05 < rate < 0.6  # standardised drive: neither silent nor saturated
    _, aux_plain = layers.SpikingDense(16, cell=cells.lif(0.9, 0.5), hoist=hoist).apply({"params": params}, x)
    np.testing.assert_allclose(aux["macs"] - aux_plain["macs"], 4.0 * 16 * 6)  # 4 MACs per neuron and step
    g = jax.grad(lambda p: jnp.sum(layer.apply({"params": p}, x)[0] * jnp.arange(16.0)))(params)
    assert float(jnp.sum(jnp.abs(g["norm_scale"]))) > 0 and float(jnp.sum(jnp.abs(g["norm_offset"]))) > 0


@pytest.mark.parametrize("layer_cls", ["dense", pytest.param("conv", marks=pytest.mark.slow)])
def test_rate_grad_keeps_the_spikes_and_backpropagates_the_rate_map(layer_cls):
    theta = 0.5
    if layer_cls == "dense":
        x = (jax.random.uniform(jax.random.key(0), (8, 3, 20)) < 0.4).astype(jnp.float32)
        make = lambda **kw: layers.SpikingDense(16, cell=cells.lif(0.9, theta), **kw)
    else:
        x = (jax.random.uniform(jax.random.key(0), (8, 2, 6, 6, 3)) < 0.4).astype(jnp.float32)
        make = lambda **kw: layers.SpikingConv(4, kernel_size=3, cell=cells.lif(0.9, theta), **kw)
    plain, rated = make(), make(rate_grad=theta)
    params = plain.init(jax.random.key(1), x)["params"]
    s_plain, _ = plain.apply({"params": params}, x)
    s_rated, _ = rated.apply({"params": params}, x)
    np.testing.assert_array_equal(s_plain, s_rated)  # forward: the exact spike trains
    w = jax.random.normal(jax.random.key(2), s_plain.shape[1:])

    def readout(layer, p, inp):
        return jnp.sum(jnp.mean(layer.apply({"params": p}, inp)[0], axis=0) * w)

    def rate_map(p, inp):  # clip(mean current / theta, 0, 1): the map the backward pass differentiates
        current = plain.apply({"params": p}, jnp.mean(inp, axis=0), method=lambda m, v: m._synapse(p, v))
        return jnp.sum(jnp.clip(current / theta, 0.0, 1.0) * w)

    got = jax.grad(readout, argnums=(1, 2))(rated, params, x)
    want_p, want_x = jax.grad(rate_map, argnums=(0, 1))(params, x)
    for a, b in zip(jax.tree_util.tree_leaves(got[0]), jax.tree_util.tree_leaves(want_p)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[1], want_x, rtol=1e-5, atol=1e-7)  # each step's input gets 1/T of it
    # and it is not the surrogate gradient
    assert not np.allclose(jax.grad(readout, argnums=1)(plain, params, x)["kernel"], got[0]["kernel"])
