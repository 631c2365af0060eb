"""Tests of the frozen STDP front end (jaxspike.models.stdp_frontend) and its VAE / GAN hooks."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxspike import cells, energy, families, stdp
from jaxspike.families import gan as gan_family
from jaxspike.families import vae as vae_family
from jaxspike.local import stdp as local_stdp
from jaxspike.models import gan, spyketorch_net as net, stdp_frontend, vae

TINY = net.NetConfig(num_steps=6, c1=4, k1=2, r1=2, c2=5, k2=2, r2=1, per_class=1)


def _digits(n=4, seed=0):
    """Stroke images (bars and blobs) that make the DoG cells fire."""
    rng = np.random.default_rng(seed)
    img = np.zeros((n, 28, 28, 1), np.float32)
    for i in range(n):
        for _ in range(3):
            r, c = rng.integers(3, 21, 2)
            img[i, r : r + rng.integers(3, 8), c : c + 3, 0] = rng.uniform(0.6, 1.0)
    return jnp.asarray(img)


def _weights(seed=0):
    # Uniform weights (not the N(0.8, 0.05) init) so neurons fire at different steps.
    k1, k2 = jax.random.split(jax.random.key(seed))
    w1 = np.asarray(jax.random.uniform(k1, (5, 5, 6, TINY.c1)))
    w2 = np.asarray(jax.random.uniform(k2, (3, 3, TINY.c1, TINY.c2)))
    return w1, w2


def _save_run(path, w1, w2):
    os.makedirs(path, exist_ok=True)
    np.savez(os.path.join(path, "params.npz"), w1=w1, w2=w2)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump({"net": TINY._asdict()}, f)
    return str(path)


def test_forward_equals_the_stdp_network_spike_for_spike():
    w1, w2 = _weights()
    x = _digits()
    params = net.init_params(jax.random.key(0), TINY)._replace(w1=jnp.asarray(w1), w2=jnp.asarray(w2))
    # Each network runs as one compiled program (op by op, the same spikes took ~4x longer).
    pooled2, ref_aux = jax.jit(net.forward, static_argnums=2)(params, x, TINY)
    front = stdp_frontend.STDPFrontEnd(w1, w2)
    run = lambda f, steps: jax.jit(lambda im: f(im, steps))(x)  # noqa: E731
    out, aux = run(front, TINY.num_steps)
    assert out.shape == (6, 4, 4 * 4 * TINY.c2) == (TINY.num_steps, x.shape[0], front.num_features)  # [T, B, F]
    np.testing.assert_array_equal(np.asarray(out), np.asarray(pooled2).reshape(out.shape))
    assert float(out.sum()) > 0 and float(jnp.max(out.sum(0))) <= 1.0  # one spike per feature at most
    # Spikes differ in time (a real temporal code, not all at step 0).
    assert len(np.unique(np.asarray(stdp.spike_times(out[..., None, None, :])))) > 2
    np.testing.assert_allclose(aux["stdp_s1"]["synops"], ref_aux["synops1"])
    np.testing.assert_allclose(aux["stdp_s2"]["synops"], ref_aux["synops2"])
    assert energy.energy_report(aux)["macs"] == float(np.count_nonzero(stdp.dog_kernels())) * 784

    # Fewer bins of its own than the consumer's T: bin k lands on step floor(k T / steps).
    coarse, _ = run(stdp_frontend.STDPFrontEnd(w1, w2, stdp_frontend.FrontEndConfig(steps=3)), 6)
    own, _ = run(front, 3)
    assert coarse.shape == (6,) + own.shape[1:]
    np.testing.assert_array_equal(np.asarray(coarse[0::2]), np.asarray(own))
    assert not np.asarray(coarse[1::2]).any()
    with pytest.raises(ValueError, match="bins"):
        stdp_frontend.STDPFrontEnd(w1, w2, stdp_frontend.FrontEndConfig(steps=8))(x, 6)

    # S1 only, and the cumulative output (a fired neuron keeps feeding its targets).
    s1, _ = stdp.fire(stdp.conv_potentials(net.encode(x, TINY), params.w1, padding=2), TINY.thr1)
    one = stdp_frontend.STDPFrontEnd(w1, config=stdp_frontend.FrontEndConfig(layers=1))
    out1, _ = run(one, TINY.num_steps)
    np.testing.assert_array_equal(np.asarray(out1), np.asarray(stdp.pool(s1, 2, 2)).reshape(out1.shape))
    cum = run(stdp_frontend.STDPFrontEnd(w1, w2, stdp_frontend.FrontEndConfig(output="cumulative")), TINY.num_steps)[0]
    np.testing.assert_array_equal(np.asarray(cum), np.cumsum(np.asarray(out), axis=0))


@pytest.mark.slow
def test_gradient_reaches_the_pixels_and_is_finite():
    w1, w2 = _weights()
    front = stdp_frontend.STDPFrontEnd(w1, w2)
    x = _digits()
    readout = jax.random.normal(jax.random.key(3), (TINY.num_steps, front.num_features))

    def f(images):
        return jnp.sum(front(images, TINY.num_steps)[0] * readout[:, None])

    g = jax.grad(f)(x)
    assert bool(jnp.all(jnp.isfinite(g))) and float(jnp.abs(g).sum()) > 0
    # Blank images (local mean 0 everywhere) still give a finite gradient.
    g0 = jax.grad(f)(jnp.zeros_like(x))
    assert bool(jnp.all(jnp.isfinite(g0)))
    # Second order (R1 penalties differentiate a gradient): finite too.
    gg = jax.grad(lambda im: jnp.sum(jax.grad(f)(im) ** 2))(x)
    assert bool(jnp.all(jnp.isfinite(gg)))


@pytest.mark.slow
def test_generator_learns_through_the_stdp_discriminator(tmp_path):
    spec = _save_run(tmp_path / "fe", *_weights())
    G = gan.SpikingGenerator(num_steps=4, noise_dim=16, hidden=(32,), neuron=cells.Neuron(threshold=0.5))
    D = gan.SpikingDiscriminator(num_steps=4, hidden=(16,), neuron=cells.Neuron(threshold=0.5))
    front = local_stdp.load_frontend(spec)
    real = _digits(8)
    g_tx, d_tx = optax.adam(1e-3, b1=0.5), optax.adam(1e-3, b1=0.5)
    state = gan_family.init_gan_state(G, D, jax.random.key(0), real, g_tx, d_tx, front)
    # The front end has no parameters in D: only its layers after the STDP features train.
    assert set(state.d_params) == {"feature_layers_0", "head"}
    assert state.d_params["feature_layers_0"]["kernel"].shape == (4 * 4 * TINY.c2, 16)

    # (R1's second derivative through the front end: test_gradient_reaches_the_pixels_and_is_finite.)
    step = jax.jit(gan_family.make_gan_step(G, D, g_tx, d_tx, gan_family.GANLoss(ema_decay=0.9), front))
    new, metrics = step(state, {"image": real}, jax.random.key(4))
    assert all(np.isfinite(float(v)) for v in metrics.values()), metrics
    moved = jax.tree_util.tree_map(lambda a, b: float(jnp.max(jnp.abs(a - b))), new.g_params, state.g_params)
    # Adam moves a parameter only if its gradient is non-zero: every generator layer got one.
    assert min(jax.tree_util.tree_leaves(moved)) > 0, moved
    # Frozen: the weights on disk are what the D uses, unchanged by training.
    np.testing.assert_array_equal(local_stdp.load_frontend(spec).w1, _weights()[0].astype(np.float32))


@pytest.mark.slow
def test_vae_encoder_reads_frozen_features(tmp_path):
    spec = _save_run(tmp_path / "fe", *_weights())
    front = local_stdp.load_frontend(spec)
    model = vae.SpikingVAE(num_steps=6, latent=8, encoder=(16,), decoder=(16,))
    x = _digits()
    params = model.init(jax.random.key(0), x, jax.random.key(1), frontend=front)["params"]
    assert params["enc_layers_0"]["kernel"].shape == (4 * 4 * TINY.c2, 16)
    # Deterministic: the code of an image does not depend on the key (rank order, no sampling).
    h1, aux = model.apply({"params": params}, x, jax.random.key(5), frontend=front, method="encode")
    h2, _ = model.apply({"params": params}, x, jax.random.key(6), frontend=front, method="encode")
    np.testing.assert_array_equal(np.asarray(h1), np.asarray(h2))
    assert {"stdp_dog", "stdp_s1", "stdp_s2"} <= set(aux["stdp"])
    # The loop's cached batch (features computed once per image by the objective's precompute)
    # gives the loss and gradient of running the front end every step.
    # SGD with rate 1: the step's parameter change is minus the gradient.
    objective = vae_family.vae_objective(model, vae_family.ELBO(), optax.sgd(1.0), frontend=front, cache_frontend=True)
    cached = objective.precompute(np.asarray(x))
    assert set(cached) == {"frontend"} and cached["frontend"].shape == (4, 4 * 4 * TINY.c2)
    state = objective.init(jax.random.key(0), {"image": x})
    new, m = objective.step(state, {"image": x}, jax.random.key(3))
    new_c, m_c = objective.step(state, {"image": x, "frontend": jnp.asarray(cached["frontend"])}, jax.random.key(3))
    assert np.isfinite(float(m["loss"]))
    assert float(jnp.max(jnp.abs(new.params["enc_layers_0"]["kernel"] - state.params["enc_layers_0"]["kernel"]))) > 0
    np.testing.assert_allclose(float(m_c["loss"]), float(m["loss"]), rtol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7),
                 new_c.params, new.params)
    uncached = vae_family.vae_objective(model, vae_family.ELBO(), optax.sgd(1.0), frontend=front)
    assert uncached.precompute(np.asarray(x)) == {}  # off unless asked for
    with pytest.raises(ValueError, match=r"cached STDP features must be \[B, 80\]"):
        model.apply({"params": params}, x, jax.random.key(0), features=cached["frontend"][:, :7], frontend=front)
    with pytest.raises(ValueError, match="no STDP front end"):
        model.init(jax.random.key(0), x, jax.random.key(1), features=cached["frontend"])
    with pytest.raises(ValueError, match="MLP encoder"):
        vae.SpikingVAE(arch="conv").init(jax.random.key(0), x, jax.random.key(1), frontend=front)


def test_cached_first_bins_give_the_same_spikes():
    x = _digits()
    w1, w2 = _weights()
    for steps, output in ((0, "spikes"), (3, "spikes"), (3, "cumulative")):
        front = stdp_frontend.STDPFrontEnd(w1, w2, stdp_frontend.FrontEndConfig(steps=steps, output=output))
        first = front.first_bins(x, 6)
        assert first.dtype == jnp.uint8 and first.shape == (4, front.num_features)
        assert 0 < int(jnp.sum(first < (steps or 6))) < first.size  # some features fire, not all
        np.testing.assert_array_equal(np.asarray(front.from_first_bins(first, 6)), np.asarray(front(x, 6)[0]))


def test_spec_loading_and_errors(tmp_path):
    w1, w2 = _weights()
    run = _save_run(tmp_path / "fe", w1, w2)
    front = local_stdp.load_frontend(run + "?layers=1&output=cumulative")
    assert front.config.layers == 1 and front.config.output == "cumulative" and front.w2 is None
    assert front.config.thr1 == TINY.thr1 and front.feature_shape == (14, 14, TINY.c1)
    assert local_stdp.load_frontend(run + "?thr1=12.5&dog_threshold=20").config[2:4] == (12.5, TINY.thr2)  # the spec wins
    assert local_stdp.load_frontend(run + "?dog_threshold=20").config.dog_threshold == 20.0
    assert local_stdp.load_frontend(os.path.join(run, "params.npz")).num_features == 4 * 4 * TINY.c2
    with pytest.raises(FileNotFoundError, match="--stdp_only"):
        local_stdp.load_frontend(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="bad option"):
        stdp_frontend.parse_spec(run + "?depth=2")
    with pytest.raises(ValueError, match="not a int"):
        stdp_frontend.parse_spec(run + "?layers=two")
    with pytest.raises(ValueError, match="layers must be 1 or 2"):
        stdp_frontend.STDPFrontEnd(w1, w2, stdp_frontend.FrontEndConfig(layers=3))
    with pytest.raises(ValueError, match="needs the S2 weights"):
        stdp_frontend.STDPFrontEnd(w1)
    with pytest.raises(ValueError, match="w2 must be"):
        stdp_frontend.STDPFrontEnd(w1, w2[:, :, :2])
    with pytest.raises(ValueError, match="must lie in"):
        stdp_frontend.STDPFrontEnd(w1 + 1.0, w2)
    with pytest.raises(ValueError, match="28x28"):
        stdp_frontend.STDPFrontEnd(w1, w2)(jnp.zeros((2, 32, 32, 3)), 4)
    with pytest.raises(ValueError, match="num_steps"):
        stdp_frontend.STDPFrontEnd(w1, w2)(_digits(), 0)


@pytest.mark.slow
def test_training_loop_feeds_cached_features(tmp_path):
    from jaxspike import data
    from jaxspike.train import io, loop, state as state_lib
    from launch.configs import vae as vae_config

    spec = _save_run(tmp_path / "fe", *_weights())
    config = vae_config.get_config("smoke")
    config.update(num_devices=1, num_grid=0, total_steps=1, log_every=1)
    config.data.max_examples = 32  # the cache covers the training split: keep it small
    config.model.frontend = spec
    loop.train(config, str(tmp_path / "run"))
    (row,) = io.read_metrics(str(tmp_path / "run" / "metrics.jsonl"))
    assert row["time/precompute_s"] > 0
    # The logged first loss is the step's on the loop's first batch with its cached features,
    # and the loss does depend on the features fed (all-silent ones give another).
    objective = families.build(config, (28, 28, 1))
    train_ds = data.load("mnist5k", "train", max_examples=32)
    stream = state_lib.seed_streams(0)
    cache = objective.precompute(train_ds.images)
    batch = data.get_batch(train_ds, config.batch_size, state_lib.data_seed(stream.data_key), 0, cache)
    state = jax.jit(objective.init)(stream.init_key, {"image": batch["image"]})
    step = jax.jit(lambda st, b: objective.step(st, b, jax.random.fold_in(stream.run_key, st.step)))
    np.testing.assert_allclose(row["loss"], float(step(state, batch)[1]["loss"]), rtol=1e-5)
    silent = {**batch, "frontend": np.full_like(batch["frontend"], 255)}
    assert abs(float(step(state, silent)[1]["loss"]) - row["loss"]) > 1e-3
