import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxspike import convert
from jaxspike.models import gan, vae


def _random_net(key, sizes=(20, 32, 16, 10)):
    net = []
    keys = jax.random.split(key, len(sizes))
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        k1, k2 = jax.random.split(keys[i])
        net.append(convert.Layer("dense", kernel=jax.random.normal(k1, (a, b)) / np.sqrt(a),
                                 bias=0.1 * jax.random.normal(k2, (b,)), name=f"dense{i}"))
        if i < len(sizes) - 2:
            net.append(convert.Layer("relu"))
    return net


@pytest.mark.slow
def test_rates_approach_activations_as_T_grows():
    net = _random_net(jax.random.key(0))
    x = jax.random.uniform(jax.random.key(1), (64, 20))
    snn = convert.convert(net, x, percentile=100.0)
    _, acts = convert.analog_forward(convert.fold_batchnorm(net), x, return_activations=True)
    target_out = convert.analog_forward(net, x)
    errors = []
    for T in (8, 32, 128, 512):
        out, rates, _ = convert.run_snn(snn, x, T)
        # Hidden rates times lambda approximate the ReLU activations.
        hid = float(jnp.mean(jnp.abs(rates[0] * snn.lambdas[0] - acts[0])))
        errors.append((hid, float(jnp.mean(jnp.abs(out - target_out)))))
    hidden_err, out_err = zip(*errors)
    assert all(a > b for a, b in zip(hidden_err, hidden_err[1:])), hidden_err
    assert all(a > b for a, b in zip(out_err, out_err[1:])), out_err
    assert out_err[-1] < 0.1 * out_err[0]


def test_percentile_normalisation_puts_top_activation_at_percentile():
    net = _random_net(jax.random.key(2))
    x = jax.random.uniform(jax.random.key(3), (200, 20))
    for pct in (99.0, 99.9, 100.0):
        normed, lambdas = convert.normalize(net, x, pct)
        _, acts = convert.analog_forward(normed, x, return_activations=True)
        for a in acts:
            # after normalisation the chosen percentile of each layer sits at 1 (the threshold)
            assert np.percentile(np.asarray(a), pct) == pytest.approx(1.0, rel=1e-4)
        # and the output layer is unchanged
        np.testing.assert_allclose(convert.analog_forward(normed, x), convert.analog_forward(net, x), rtol=1e-4, atol=1e-5)


def test_batchnorm_is_folded():
    net = _random_net(jax.random.key(4), sizes=(6, 5, 3))
    bn = convert.Layer("batchnorm", scale=jnp.arange(1.0, 6.0), bias=jnp.ones(5), mean=jnp.full(5, 0.2), var=jnp.full(5, 2.0))
    with_bn = [net[0], bn, *net[1:]]
    x = jax.random.normal(jax.random.key(5), (7, 6))
    np.testing.assert_allclose(convert.analog_forward(convert.fold_batchnorm(with_bn), x),
                               convert.analog_forward(with_bn, x), rtol=1e-5, atol=1e-5)


def test_unsupported_layer_is_named():
    net = _random_net(jax.random.key(6))
    net.insert(2, convert.Layer("maxpool", name="pool1"))
    with pytest.raises(ValueError, match="pool1.*maxpool"):
        convert.convert(net, jnp.ones((4, 20)))


@pytest.mark.parametrize("arch", ["mlp", pytest.param("conv", marks=pytest.mark.slow)])
def test_converted_analog_generator_matches_at_long_T(arch):
    G = gan.AnalogGenerator(noise_dim=8, arch=arch, hidden=(16, 32), channels=(8, 4))
    z = jax.random.uniform(jax.random.key(0), (16, 8))
    params = G.init(jax.random.key(1), z)["params"]
    net = convert.from_analog_generator(G, params)
    analog = G.apply({"params": params}, z)[0].reshape(16, -1)
    np.testing.assert_allclose(convert.analog_forward(net, z).reshape(16, -1), analog, rtol=1e-5, atol=1e-5)
    snn = convert.convert(net, z)
    out, _, aux = convert.run_snn(snn, z, 256)
    assert float(jnp.mean(jnp.abs(out.reshape(16, -1) - analog))) < 0.02
    assert float(aux["layer0"]["macs"].sum()) > 0 and float(aux["layer1"]["synops"].sum()) > 0


def test_analog_vae_decoder_extracts():
    V = vae.AnalogVAE(latent=8, encoder=(16,), decoder=(16, 32))
    x = jnp.zeros((2, 28, 28, 1))
    params = V.init(jax.random.key(0), x, jax.random.key(1))["params"]
    net = convert.from_analog_vae_decoder(V, params)
    z = jax.random.normal(jax.random.key(2), (3, 8))
    expected = jax.nn.sigmoid(V.apply({"params": params}, z, method="decode"))
    np.testing.assert_allclose(convert.analog_forward(net, z), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("noise,coding", [pytest.param("uniform", "uniform_rate", marks=pytest.mark.slow), ("binary", "binary_tonic"),
                                          ("gaussian", "gaussian_quantile")])
def test_noise_codings_drive_converted_generator(noise, coding):
    G = gan.AnalogGenerator(noise_dim=8, hidden=(16, 32), noise=noise)
    z = G.sample_noise(jax.random.key(0), 64)
    params = G.init(jax.random.key(1), z)["params"]
    net = convert.from_analog_generator(G, params)
    if coding == "gaussian_quantile":
        net = convert.quantile_input_layer(net)
    snn = convert.convert(net, z if coding != "gaussian_quantile" else jax.scipy.stats.norm.cdf(z))
    analog = G.apply({"params": params}, z)[0].reshape(64, -1)
    errs = []
    for T in (16, 256):
        spikes = convert.noise_spikes(jax.random.key(T), z, T, coding)
        assert spikes.shape == (T, 64, 8) and set(np.unique(np.asarray(spikes))) <= {0.0, 1.0}
        out, _, _ = convert.run_snn_on_spikes(snn, spikes)
        errs.append(float(jnp.mean(jnp.abs(out.reshape(64, -1) - analog))))
    assert errs[1] < errs[0] or errs[1] < 0.01
    if coding == "binary_tonic":
        assert errs[1] < 0.02
