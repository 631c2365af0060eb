"""NIR export and import: the discrete-time mapping, spike-for-spike round trips, whole models, refusals."""

import jax
import jax.numpy as jnp
import nir
import numpy as np
import pytest

from jaxspike import cells, convert, layers
from jaxspike import nir as jnir
from jaxspike.models import gan, vae
from jaxspike.nir import neurons, nodes

DT = jnir.DT
T, B = 8, 3


def _spikes(shape, p=0.3, seed=0):
    return jnp.asarray((np.random.default_rng(seed).random((T, B) + tuple(shape)) < p).astype(np.float32))


def _through_file(graph, tmp_path):
    path = tmp_path / "graph.nir"
    jnir.write(path, graph)
    return jnir.from_nir(jnir.read(path))


def _assert_tree_equal(a, b):
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _round_trip(network, params, x, tmp_path, input_shape=None, key=None):
    """Exported network and its re-import give identical outputs and parameters."""
    input_shape = input_shape or tuple(x.shape[2:])
    graph = jnir.to_nir(network, params, input_shape)
    imported = _through_file(graph, tmp_path)
    assert imported.input_shape == tuple(input_shape)
    args = (key,) if key is not None else ()
    y0, _ = network.apply({"params": params}, x, *args)
    y1, _ = imported.network.apply({"params": imported.params}, x, *args)
    np.testing.assert_array_equal(np.asarray(y0), np.asarray(y1))
    _assert_tree_equal(params, imported.params)
    return graph, imported, y0


def _scaled_init(layer, x, scale=3.0, seed=1):
    params = layer.init(jax.random.key(seed), x)["params"]
    return jax.tree_util.tree_map(lambda a: a * scale if a.ndim else a, params)


# ---------------------------------------------------------------------------
# The mapping written in the docstrings, against a direct simulation of NIR's nodes.


def _euler(node, currents):
    """NIR's node stepped by forward Euler (float64), reset to v_reset at the end of a spiking step."""
    n = currents.shape[-1]
    full = lambda name: np.broadcast_to(np.asarray(getattr(node, name), np.float64), (n,))  # noqa: E731
    v, i_syn, z = np.zeros(currents.shape[1:]), np.zeros(currents.shape[1:]), np.zeros(currents.shape[1:])
    out = []
    for current in currents:
        if isinstance(node, (nir.IF, nodes.SubtractIF)):
            v = v + full("r") * current
        elif isinstance(node, (nir.CubaLIF, nodes.SubtractCubaLIF)):
            i_syn = i_syn + DT / full("tau_syn") * (-i_syn + full("w_in") * current)
            v = v + DT / full("tau_mem") * (full("v_leak") - v + full("r") * i_syn)
        else:
            v = v + DT / full("tau") * (full("v_leak") - v + full("r") * current)
        if isinstance(node, nir.LI):
            out.append(v)
            continue
        if isinstance(node, (nodes.SubtractLIF, nodes.SubtractIF, nodes.SubtractCubaLIF)):
            v = v - full("v_threshold") * z
        z = (v > full("v_threshold")).astype(np.float64)
        if isinstance(node, (nir.LIF, nir.IF, nir.CubaLIF)):
            v = np.where(z > 0, full("v_reset"), v)
        out.append(z)
    return np.stack(out)


FOREIGN = {  # parameters another library might write: r and v_leak not jaxspike's, per-neuron values
    "LIF": lambda n: nir.LIF(
        tau=np.linspace(2e-4, 8e-4, n),
        r=np.full(n, 3.0),
        v_leak=np.full(n, 0.2),
        v_threshold=np.linspace(0.8, 1.2, n),
        v_reset=np.zeros(n),
    ),
    "IF": lambda n: nir.IF(r=np.full(n, 0.7), v_threshold=np.full(n, 1.1), v_reset=np.zeros(n)),
    "CubaLIF": lambda n: nir.CubaLIF(
        tau_syn=np.full(n, 3e-4),
        tau_mem=np.full(n, 5e-4),
        r=np.full(n, 4.0),
        v_leak=np.zeros(n),
        v_threshold=np.full(n, 0.9),
        w_in=np.full(n, 2.0),
    ),
    "LI": lambda n: nir.LI(tau=np.full(n, 4e-4), r=np.full(n, 2.0), v_leak=np.full(n, 0.1)),
    "SubtractLIF": lambda n: nodes.SubtractLIF(
        tau=np.full(n, 1e-3), r=np.full(n, 10.0), v_leak=np.zeros(n), v_threshold=np.full(n, 1.0)
    ),
    "SubtractCubaLIF": lambda n: nodes.SubtractCubaLIF(
        tau_syn=np.full(n, 5e-4),
        tau_mem=np.full(n, 1e-3),
        r=np.full(n, 10.0),
        v_leak=np.zeros(n),
        v_threshold=np.full(n, 1.0),
        w_in=np.full(n, 5.0),
    ),
}


@pytest.mark.parametrize("kind", sorted(FOREIGN))
def test_import_follows_nir_euler_equations(kind, tmp_path):
    n_in, n = 10, 6
    rng = np.random.default_rng(0)
    weight = rng.normal(0.0, 0.6, (n, n_in)).astype(np.float32)
    bias = rng.normal(0.0, 0.1, n).astype(np.float32)
    neuron = FOREIGN[kind](n)
    graph = nir.NIRGraph.from_list(
        nir.Input(np.array([n_in])), nir.Affine(weight=weight, bias=bias), neuron, nir.Output(np.array([n]))
    )
    imported = _through_file(graph, tmp_path)
    x = _spikes((n_in,), 0.5)
    out, _ = imported.network.apply({"params": imported.params}, x)
    expected = _euler(neuron, np.asarray(x, np.float64) @ weight.T.astype(np.float64) + bias)
    if kind == "LI":
        np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-5, atol=1e-5)
    else:
        np.testing.assert_array_equal(np.asarray(out), expected)
        assert 0 < float(out.sum()) < out.size


def test_export_constants_follow_the_mapping():
    lif = neurons.cell_to_node(cells.lif(0.9, 1.3, reset="zero"), {}, (4,))
    assert isinstance(lif, nir.LIF)
    np.testing.assert_allclose(lif.tau, DT / 0.1)
    np.testing.assert_allclose(lif.r * DT / lif.tau, 1.0)  # unit input gain
    np.testing.assert_array_equal(lif.v_leak, 0.0)
    np.testing.assert_array_equal(lif.v_reset, 0.0)
    np.testing.assert_array_equal(lif.v_threshold, 1.3)
    back = neurons.node_to_cell(lif, (4,))
    consts = neurons.cell_constants(back.cell)
    assert np.float32(consts["beta"]) == np.float32(0.9) and consts["reset"] == "zero"
    np.testing.assert_array_equal(back.gain, 1.0)

    cuba = neurons.cell_to_node(cells.synaptic_lif(0.6, 0.8, 0.7, reset="zero"), {}, (2,))
    np.testing.assert_allclose([cuba.tau_syn[0], cuba.tau_mem[0]], [DT / 0.4, DT / 0.2])
    np.testing.assert_allclose(cuba.w_in * DT / cuba.tau_syn * cuba.r * DT / cuba.tau_mem, 1.0)

    if_node = neurons.cell_to_node(cells.integrate_and_fire(0.5), {}, (2,))
    assert isinstance(if_node, nodes.SubtractIF)  # the default reset, as an extension node
    np.testing.assert_array_equal(if_node.r, 1.0)
    li = neurons.cell_to_node(cells.leaky_integrator(0.0), {}, (2,))
    np.testing.assert_allclose([li.tau[0], li.r[0]], [DT, 1.0])
    assert isinstance(neurons.cell_to_node(cells.leaky_integrator(1.0), {}, (2,)), nir.I)


def test_zero_reset_matches_nir_reset_without_delay():
    """jaxspike's reset='zero' (applied before the next decay) gives NIR's (applied at the spike) spikes."""
    rng = np.random.default_rng(3)
    currents = rng.normal(0.4, 0.6, (40, 2, 5)).astype(np.float32)
    cell = cells.lif(0.8, 1.0, reset="zero")
    _, spikes = jax.lax.scan(lambda s, i: cell.step({}, s, i), cell.init_state((2, 5)), jnp.asarray(currents))
    node = neurons.cell_to_node(cell, {}, (5,))
    np.testing.assert_array_equal(np.asarray(spikes), _euler(node, currents.astype(np.float64)))


# ---------------------------------------------------------------------------
# Round trips, layer by layer.

CELLS = {
    "lif_subtract": lambda: cells.lif(0.9, 1.0),
    "lif_zero": lambda: cells.lif(0.8, 0.7, reset="zero"),
    "if": lambda: cells.integrate_and_fire(1.2),
    "if_zero": lambda: cells.integrate_and_fire(1.0, reset="zero"),
    "synaptic_subtract": lambda: cells.synaptic_lif(0.7, 0.85, 0.9),
    "synaptic_zero": lambda: cells.synaptic_lif(0.6, 0.8, reset="zero"),
    "leaky_integrator": lambda: cells.leaky_integrator(0.5),
    "learned_per_neuron": lambda: cells.lif(0.9, learn_beta=True, learn_threshold=True, per_neuron=True),
    "learned_shared": lambda: cells.synaptic_lif(learn_alpha=True, learn_threshold=True),
    "no_detach": lambda: cells.lif(0.9, detach_reset=False),
}


@pytest.mark.parametrize("cell_name", sorted(CELLS))
def test_dense_round_trip_every_cell(cell_name, tmp_path):
    x = _spikes((12,))
    layer = layers.SpikingDense(7, cell=CELLS[cell_name]())
    params = _scaled_init(layer, x)
    if cell_name == "learned_per_neuron":
        params["cell"] = {"beta": jnp.linspace(0.5, 0.95, 7), "threshold": jnp.linspace(0.5, 1.5, 7)}
    net = jnir.Network(("fc",), (layer,))
    _, imported, spikes = _round_trip(net, {"fc": params}, x, tmp_path)
    assert cell_name == "leaky_integrator" or 0 < float(spikes.sum()) < spikes.size
    back = imported.network.stages[0].cell
    assert back.name == layer.cell.name
    want, got = neurons.cell_constants(layer.cell), neurons.cell_constants(back)
    for name in set(want) - {"spike_fn"} - set(params.get("cell", {})):  # learned values are in params
        same = (
            np.float32(got[name]) == np.float32(want[name])
            if isinstance(want[name], float)
            else got[name] == want[name]
        )
        assert same, (name, want[name], got[name])


def test_dense_without_bias_exports_linear(tmp_path):
    x = _spikes((12,))
    layer = layers.SpikingDense(5, cell=cells.lif(0.9, 1.0, reset="zero"), use_bias=False)
    graph, imported, _ = _round_trip(jnir.Network(("fc",), (layer,)), {"fc": _scaled_init(layer, x)}, x, tmp_path)
    assert [type(n).__name__ for n in graph.nodes.values()] == ["Input", "Linear", "LIF", "Output"]
    nir.write(tmp_path / "std.nir", graph)
    assert isinstance(nir.read(tmp_path / "std.nir"), nir.NIRGraph)  # standard NIR: any reader takes it
    assert not imported.network.stages[0].use_bias


@pytest.mark.parametrize(
    "kernel, strides, padding",
    [(3, 2, "SAME"), (3, 1, "SAME"), (2, 1, "VALID"), (3, 2, ((0, 2), (2, 0))), ((3, 2), 1, ((0, 1), (1, 1)))],
)
def test_conv_round_trip(kernel, strides, padding, tmp_path):
    x = _spikes((8, 8, 2), 0.4)
    cell = cells.lif(0.85, 0.8, learn_threshold=True, per_neuron=True)
    layer = layers.SpikingConv(3, kernel_size=kernel, strides=strides, padding=padding, cell=cell)
    params = _scaled_init(layer, x)
    params["cell"]["threshold"] = jnp.linspace(0.5, 1.5, params["cell"]["threshold"].size).reshape(
        params["cell"]["threshold"].shape
    )
    graph, imported, spikes = _round_trip(jnir.Network(("conv",), (layer,)), {"conv": params}, x, tmp_path)
    assert 0 < float(spikes.sum()) < spikes.size
    node = graph.nodes["conv"]
    assert isinstance(node, nir.Conv2d) and node.padding[0] == node.padding[1] or padding != "SAME"
    assert imported.network.stages[0].padding == padding


def test_asymmetric_padding_exports_an_equivalent_symmetric_conv():
    """The zero-bordered kernel under symmetric padding computes the same map (what other readers run)."""
    x = _spikes((8, 8, 2), 0.4)[0]
    layer = layers.SpikingConv(3, kernel_size=3, strides=2, cell=cells.lif(reset="zero"))
    params = _scaled_init(layer, x[None])
    node = jnir.to_nir(jnir.Network(("conv",), (layer,)), {"conv": params}, (8, 8, 2)).nodes["conv"]
    assert node.weight.shape[2:] == (4, 4) and tuple(node.padding) == (1, 1)
    nchw = jnp.moveaxis(x, -1, 1)
    sym = (
        jax.lax.conv_general_dilated(
            nchw, node.weight, node.stride, [(1, 1), (1, 1)], dimension_numbers=("NCHW", "OIHW", "NCHW")
        )
        + node.bias[:, None, None]
    )
    ref = layer.apply({"params": params}, x[None], method=lambda m, v: m._synapse(params, v[0]))
    np.testing.assert_allclose(np.asarray(jnp.moveaxis(sym, 1, -1)), np.asarray(ref), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kernel, strides, padding", [(4, 2, "SAME"), (3, 2, "SAME"), (3, 1, "VALID"), (2, 2, "VALID")])
def test_conv_transpose_round_trip_and_node_definition(kernel, strides, padding, tmp_path):
    x = _spikes((3, 3, 2), 0.5)
    layer = layers.SpikingConvTranspose(
        3, kernel_size=kernel, strides=strides, padding=padding, cell=cells.lif(0.9, 0.6)
    )
    params = _scaled_init(layer, x)
    graph, _, spikes = _round_trip(jnir.Network(("deconv",), (layer,)), {"deconv": params}, x, tmp_path)
    assert 0 < float(spikes.sum()) < spikes.size
    # The node's definition: dilate by the stride, pad, cross-correlate with weight, add bias.
    node = graph.nodes["deconv"]
    x0 = np.asarray(x[0, 0])  # [H, W, C_in]
    s = strides
    dilated = np.zeros(((x0.shape[0] - 1) * s + 1, (x0.shape[1] - 1) * s + 1, x0.shape[2]))
    dilated[::s, ::s] = x0
    (lo_h, hi_h), (lo_w, hi_w) = node.padding
    padded = np.pad(dilated, ((lo_h, hi_h), (lo_w, hi_w), (0, 0)))
    k = node.weight.shape[2]
    out = np.zeros(tuple(node.output_type["output"][1:]) + (node.weight.shape[0],))
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] = np.einsum("hwc,ochw->o", padded[i : i + k, j : j + k], node.weight) + node.bias
    current = layer.apply({"params": params}, x, method=lambda m, v: m._synapse(params, v[0, :1]))[0]
    np.testing.assert_allclose(np.asarray(current), out, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", ["mean", "last", "max", "sequence"])
def test_dense_readout_round_trip(mode, tmp_path):
    x = _spikes((9,))
    layer = layers.DenseReadout(4, mode=mode, beta=0.5)
    graph, imported, _ = _round_trip(jnir.Network(("head",), (layer,)), {"head": _scaled_init(layer, x)}, x, tmp_path)
    stage = imported.network.stages[0]
    assert isinstance(stage, layers.DenseReadout) and stage.mode == mode and np.float32(stage.beta) == np.float32(0.5)
    assert ("head_readout" in graph.nodes) == (mode != "sequence")


@pytest.mark.parametrize("mode", ["mean", "last", "max", "first_spike", "none"])
def test_readout_and_bernoulli_stages_round_trip(mode, key, tmp_path):
    probs = jnp.asarray(np.random.default_rng(0).random((T, B, 6)), jnp.float32)
    dense = layers.SpikingDense(5, cell=cells.lif(0.9, 0.5))
    net = jnir.Network(("noise", "fc", "out"), (jnir.Bernoulli(), dense, jnir.Readout(mode, "sigmoid")))
    params = {"fc": _scaled_init(dense, probs)}
    _, _, y = _round_trip(net, params, probs, tmp_path, key=key)
    spikes = (jax.random.uniform(key, probs.shape) < probs).astype(jnp.float32)
    ref_spikes, _ = dense.apply({"params": params["fc"]}, spikes)
    reduce = {
        "mean": lambda s: s.mean(0),
        "last": lambda s: s[-1],
        "max": lambda s: s.max(0),
        "first_spike": lambda s: __import__("jaxspike").encoding.first_spike_intensity(s),
        "none": lambda s: s,
    }
    np.testing.assert_array_equal(np.asarray(y), np.asarray(jax.nn.sigmoid(reduce[mode](ref_spikes))))


def test_flatten_and_unflatten_move_layout_into_dense_kernels(tmp_path):
    """NIR is channels first: the dense layers next to a reshape come back with their own kernels."""
    x = _spikes((4, 4, 2), 0.4)
    conv = layers.SpikingConv(3, kernel_size=3, strides=2, cell=cells.lif(0.9, 0.5))
    dense = layers.SpikingDense(2 * 2 * 3, cell=cells.lif(0.9, 0.5, learn_threshold=True, per_neuron=True))
    deconv = layers.SpikingConvTranspose(2, kernel_size=4, strides=2, cell=cells.lif(0.9, 0.5))
    net = jnir.Network(
        ("conv", "flat", "fc", "unflat", "deconv"), (conv, jnir.Flatten(), dense, jnir.Unflatten((2, 2, 3)), deconv)
    )
    params = _scaled_init(net, x)
    params["fc"]["cell"]["threshold"] = jnp.linspace(0.3, 0.9, 12)
    graph, imported, y = _round_trip(net, params, x, tmp_path)
    assert y.shape == (T, B, 4, 4, 2) and 0 < float(y.sum())
    assert [s.order for s in imported.network.stages if hasattr(s, "order")] == ["hwc", "hwc"]
    assert not np.array_equal(graph.nodes["fc"].weight, np.asarray(params["fc"]["kernel"]).T)  # permuted in NIR


# ---------------------------------------------------------------------------
# Whole models.


@pytest.mark.parametrize("arch", [pytest.param("mlp", marks=pytest.mark.slow), "conv"])
def test_discriminator_round_trip(arch, key, tmp_path):
    D = gan.SpikingDiscriminator(num_steps=T, arch=arch, hidden=(16, 8), channels=(4, 6), neuron=cells.Neuron(threshold=0.5))
    images = jax.random.uniform(jax.random.key(2), (B, 8, 8, 1))
    d_params = D.init(key, images, key)["params"]
    logit, d_aux = D.apply({"params": d_params}, images, key)
    exported = jnir.discriminator_network(D, d_params, (8, 8, 1))
    x = images if arch == "conv" else images.reshape(B, -1)
    spikes = gan.rate_code_st(key, x, T)
    graph, imported, y = _round_trip(*exported[:2], spikes, tmp_path, input_shape=exported.input_shape)
    np.testing.assert_array_equal(np.asarray(y[:, 0]), np.asarray(logit))
    _, aux = imported.network.apply({"params": imported.params}, spikes)
    for i in range(2):
        np.testing.assert_array_equal(aux[f"feature_layers_{i}"]["spike_count"], d_aux[f"d{i}"]["spike_count"])
    assert any(isinstance(n, nodes.SubtractLIF) for n in graph.nodes.values())


@pytest.mark.parametrize("arch, readout", [("mlp", "first_spike"), pytest.param("conv", "membrane", marks=pytest.mark.slow)])
def test_generator_round_trip_with_extension_nodes(arch, readout, key, tmp_path):
    G = gan.SpikingGenerator(
        num_steps=T,
        noise_dim=5,
        image_shape=(8, 8, 1),
        arch=arch,
        hidden=(12, 16),
        channels=(4, 3),
        readout=readout,
        neuron=cells.Neuron(threshold=0.5),
    )
    g_params = G.init(key, jnp.zeros((T, B, 5)))["params"]
    images, g_aux = G.apply({"params": g_params}, key, B, method="generate")
    exported = jnir.generator_network(G, g_params)
    probs = jnp.full((T, B, 5), G.noise_p)
    _, k_spikes = jax.random.split(key)  # SpikingGenerator.sample_noise's split
    graph, imported, y = _round_trip(*exported[:2], probs, tmp_path, input_shape=(5,), key=k_spikes)
    np.testing.assert_array_equal(np.asarray(y).reshape(images.shape), np.asarray(images))
    kinds = {type(n).__name__ for n in graph.nodes.values()}
    assert {"Bernoulli", "Readout", "SubtractLIF"} <= kinds
    assert (arch == "conv") == ({"ConvTranspose2d", "Unflatten"} <= kinds)
    _, aux = imported.network.apply({"params": imported.params}, probs, k_spikes)
    np.testing.assert_array_equal(aux["hidden_layers_0"]["spike_count"], g_aux["g0"]["spike_count"])
    with pytest.raises(AssertionError):
        path = tmp_path / "gen.nir"
        jnir.write(path, graph)
        nir.read(path)  # any other reader refuses the extension nodes


def test_vae_encoder_round_trip(key, tmp_path):
    V = vae.SpikingVAE(num_steps=T, latent=5, image_shape=(8, 8, 1), encoder=(16,), decoder=(16,), neuron=cells.Neuron(threshold=0.5))
    images = jax.random.uniform(jax.random.key(3), (B, 8, 8, 1))
    v_params = V.init(key, images, key)["params"]
    k_in, k_z, _ = jax.random.split(key, 3)
    spikes = V.apply({"params": v_params}, images, k_in, method="_code_input")
    h, _ = V.apply({"params": v_params}, images, k_in, method="encode")
    z, q, _ = V.apply({"params": v_params}, h, k_z, train=False, method="posterior_sample")
    exported = jnir.vae_encoder_network(V, v_params, sample=True)
    _, _, y = _round_trip(*exported[:2], spikes, tmp_path, input_shape=exported.input_shape, key=k_z)
    np.testing.assert_array_equal(np.asarray(y), np.asarray(z > 0.5))
    logits_net = jnir.vae_encoder_network(V, v_params)
    logits, _ = logits_net.network.apply({"params": logits_net.params}, spikes)
    np.testing.assert_allclose(np.asarray(jax.nn.sigmoid(logits)), np.asarray(q), rtol=1e-6)


@pytest.mark.slow
def test_converted_network_round_trip(key, tmp_path):
    G = gan.AnalogGenerator(noise_dim=6, image_shape=(8, 8, 1), arch="conv", channels=(4, 3), noise="uniform")
    z = jax.random.uniform(key, (32, 6))
    g_params = G.init(key, z)["params"]
    snn = convert.convert(convert.from_analog_generator(G, g_params), z)
    spikes = convert.noise_spikes(key, z[:B], T, "uniform_rate")
    out, _, _ = convert.run_snn_on_spikes(snn, spikes)
    exported = jnir.converted_network(snn, (6,), input_kind="spikes")
    graph, _, y = _round_trip(*exported[:2], spikes, tmp_path, input_shape=(6,))
    np.testing.assert_array_equal(np.asarray(y), np.asarray(out))
    assert any(isinstance(n, nodes.SubtractIF) for n in graph.nodes.values())


# ---------------------------------------------------------------------------
# Graphs made elsewhere, and what is refused.


def test_imports_a_channels_first_conv_graph_like_other_libraries_write(tmp_path):
    """snnTorch-style: scalar neuron parameters, untyped nodes, channels-first arrays."""
    rng = np.random.default_rng(4)
    conv_w = rng.normal(0, 0.8, (3, 2, 3, 3)).astype(np.float32)
    conv_b = rng.normal(0, 0.1, 3).astype(np.float32)
    fc_w = rng.normal(0, 0.5, (4, 3 * 6 * 6)).astype(np.float32)
    tau = np.array(DT / (1 - 0.8))
    lif = lambda: nir.LIF(tau=tau, r=tau / DT, v_leak=np.array(0.0), v_threshold=np.array(1.0))  # noqa: E731
    graph = nir.NIRGraph(
        nodes={
            "input": nir.Input(np.array([2, 6, 6])),
            "conv": nir.Conv2d(input_shape=None, weight=conv_w, stride=1, padding=1, dilation=1, groups=1, bias=conv_b),
            "lif1": lif(),
            "flat": nir.Flatten(input_type=None, start_dim=0, end_dim=-1),
            "fc": nir.Linear(weight=fc_w),
            "lif2": lif(),
            "output": nir.Output(np.array([4])),
        },
        edges=[
            ("input", "conv"),
            ("conv", "lif1"),
            ("lif1", "flat"),
            ("flat", "fc"),
            ("fc", "lif2"),
            ("lif2", "output"),
        ],
        type_check=False,
    )
    imported = jnir.from_nir(graph)
    x_chw = _spikes((2, 6, 6), 0.5)  # [T, B, C, H, W] as the other library would feed it
    y, _ = imported.network.apply({"params": imported.params}, jnp.moveaxis(x_chw, 2, -1))

    def reference(x):  # the same network in NIR's layout
        cur = (
            jax.lax.conv_general_dilated(
                x.reshape(-1, 2, 6, 6), conv_w, (1, 1), [(1, 1), (1, 1)], dimension_numbers=("NCHW", "OIHW", "NCHW")
            )
            + conv_b[:, None, None]
        )
        s1 = layers.scan_time(
            lambda st, i: cells.lif(0.8, reset="zero").step({}, st, i),
            cells.lif().init_state((B, 3, 6, 6)),
            cur.reshape(T, B, 3, 6, 6),
        )[1]
        cur2 = s1.reshape(T, B, -1) @ fc_w.T
        return layers.scan_time(
            lambda st, i: cells.lif(0.8, reset="zero").step({}, st, i), cells.lif().init_state((B, 4)), cur2
        )[1]

    np.testing.assert_array_equal(np.asarray(y), np.asarray(reference(x_chw)))
    assert 0 < float(y.sum())


def test_refusals_are_one_line_errors(tmp_path):
    x = _spikes((6,))
    sub = layers.SpikingDense(3)
    params = {"fc": _scaled_init(sub, x)}
    with pytest.raises(ValueError, match="reset by subtraction has no standard NIR node") as err:
        jnir.to_nir(jnir.Network(("fc",), (sub,)), params, (6,), allow_extensions=False)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="reset='none'"):
        jnir.to_nir(jnir.Network(("fc",), (sub.clone(cell=cells.lif(reset="none")),)), params, (6,))
    with pytest.raises(ValueError, match="current_norm"):
        norm = layers.SpikingDense(3, current_norm=True)
        jnir.to_nir(jnir.Network(("fc",), (norm,)), {"fc": _scaled_init(norm, x)}, (6,))
    with pytest.raises(ValueError, match="readout='first_spike_interp'"):
        jnir.generator_network(gan.SpikingGenerator(num_steps=T, readout="first_spike_interp"), {})

    lif = nir.LIF(
        tau=np.full(3, 1e-3), r=np.full(3, 10.0), v_leak=np.zeros(3), v_threshold=np.ones(3), v_reset=np.full(3, -0.5)
    )
    graph = nir.NIRGraph.from_list(nir.Input(np.array([6])), nir.Linear(weight=np.ones((3, 6), np.float32)), lif)
    with pytest.raises(ValueError, match="v_reset != 0"):
        jnir.from_nir(graph)
    branching = nir.NIRGraph(
        nodes={
            "input": nir.Input(np.array([2])),
            "a": nir.Linear(weight=np.ones((2, 2))),
            "b": nir.Linear(weight=np.ones((2, 2))),
            "output": nir.Output(np.array([2])),
        },
        edges=[("input", "a"), ("input", "b"), ("a", "output"), ("b", "output")],
        type_check=False,
    )
    with pytest.raises(ValueError, match="single feed-forward path"):
        jnir.from_nir(branching)
