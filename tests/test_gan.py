import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxspike import augment, cells, energy, losses
from jaxspike.families import gan as gan_family
from jaxspike.models import gan

TINY_G = dict(num_steps=4, noise_dim=16, hidden=(32, 64), channels=(8, 4))
TINY_D = dict(num_steps=4, hidden=(32, 16), channels=(4, 8))


def _real(n=16, seed=0):
    rng = np.random.default_rng(seed)
    imgs = np.zeros((n, 28, 28, 1), np.float32)
    for i in range(n):
        r = rng.integers(0, 20)
        imgs[i, r : r + 8, 6:22] = 1.0  # a bar at a random height
    return jnp.asarray(imgs)


def test_noise_spike_frequencies_follow_p():
    G = gan.SpikingGenerator(**TINY_G, noise_p=0.2)
    z = G.sample_noise(jax.random.key(0), 500)
    assert z.shape == (4, 500, 16) and set(np.unique(np.asarray(z))) <= {0.0, 1.0}
    assert abs(float(z.mean()) - 0.2) < 0.01  # 32,000 draws: s.e. 0.0022
    per_unit = jnp.linspace(0.05, 0.95, 16)
    z = G.sample_noise(jax.random.key(1), 4000, noise_p=per_unit)
    np.testing.assert_allclose(z.mean(axis=(0, 1)), per_unit, atol=0.02)


# Every coding and every readout once; both backward passes of D (the config's default is regular + rate).
@pytest.mark.parametrize(
    "coding, readout, gradient",
    [pytest.param("rate", "membrane", "surrogate", marks=pytest.mark.slow), pytest.param("regular", "membrane", "rate", marks=pytest.mark.slow), ("latency", "first_spike", "surrogate"),
     pytest.param("direct", "rate", "rate", marks=pytest.mark.slow), pytest.param("regular", "first_spike_interp", "rate", marks=pytest.mark.slow)],
)
def test_generator_gets_gradients_through_spiking_discriminator(coding, readout, gradient):
    G = gan.SpikingGenerator(**TINY_G, readout=readout, neuron=cells.Neuron(threshold=0.5))
    D = gan.SpikingDiscriminator(**TINY_D, coding=coding, neuron=cells.Neuron(threshold=0.5), gradient=gradient)
    real = _real()
    state = gan_family.init_gan_state(G, D, jax.random.key(0), real, optax.adam(1e-3), optax.adam(1e-3))

    def g_obj(g_params):
        fake, _ = G.apply({"params": g_params}, G.sample_noise(jax.random.key(1), 16))
        logits, _ = D.apply({"params": state.d_params}, fake, jax.random.key(2))
        return jnp.mean(logits)

    grads = jax.jit(jax.grad(g_obj))(state.g_params)  # one program, not op by op
    norms = [float(jnp.linalg.norm(g)) for g in jax.tree_util.tree_leaves(grads)]
    assert all(np.isfinite(norms)) and sum(norms) > 0


def test_direct_coding_feeds_pixels_as_currents_and_counts_macs():
    D = gan.SpikingDiscriminator(**TINY_D, coding="direct", neuron=cells.Neuron(threshold=0.5))
    real = _real(4)
    params = D.init(jax.random.key(0), real, jax.random.key(1))["params"]
    logits, aux = D.apply({"params": params}, real, jax.random.key(2))
    _, aux_other_key = D.apply({"params": params}, real, jax.random.key(3))
    np.testing.assert_array_equal(aux["d0"]["spike_count"], aux_other_key["d0"]["spike_count"])  # no sampling
    lit = np.asarray((real != 0).reshape(4, -1).sum(1), np.float32)
    # the first layer multiplies real-valued pixels: T * lit pixels * fan-out (+ bias adds) MACs, no synops
    np.testing.assert_allclose(aux["d0"]["macs"], 4 * lit * 32 + 4 * 32)
    assert float(jnp.sum(aux["d0"]["synops"])) == 0.0 and float(jnp.sum(aux["d1"]["macs"])) == 0.0
    g = jax.grad(lambda x: jnp.sum(D.apply({"params": params}, x, jax.random.key(2))[0]))(real)
    assert float(jnp.sum(jnp.abs(g))) > 0


def test_latency_code_is_single_spike_and_differentiable():
    x = jnp.linspace(0.0, 1.0, 11)[None]
    s = gan.latency_code_st(x, 8)
    assert s.shape == (8, 1, 11)
    np.testing.assert_allclose(s.sum(0)[0, 1:], 1.0)  # one spike for every lit pixel
    assert float(s.sum(0)[0, 0]) == 0.0  # a dark pixel stays silent
    t_first = np.argmax(np.asarray(s[:, 0]), axis=0)[1:]
    assert np.all(np.diff(t_first) <= 0)  # brighter = earlier
    g = jax.grad(lambda x: jnp.sum(gan.latency_code_st(x, 8) * jnp.arange(8.0)[:, None, None]))(x)
    assert float(jnp.sum(jnp.abs(g))) > 0  # spike times move with intensity


# Every loss with the analog D; the spiking D with the plain loss and the one that differentiates it twice.
@pytest.mark.parametrize(
    "loss, disc",
    [("ns", "spiking"), pytest.param("wgan_gp", "spiking", marks=pytest.mark.slow),
     pytest.param("ns", "analog", marks=pytest.mark.slow), ("hinge", "analog"), pytest.param("wgan_gp", "analog", marks=pytest.mark.slow)],
)
def test_smoke_training_step_runs_and_updates(loss, disc):
    G = gan.SpikingGenerator(**TINY_G, neuron=cells.Neuron(threshold=0.5))
    D = gan.SpikingDiscriminator(**TINY_D, neuron=cells.Neuron(threshold=0.5)) if disc == "spiking" else gan.AnalogDiscriminator(hidden=(32, 16))
    g_tx, d_tx = optax.adam(2e-4, b1=0.5), optax.adam(1e-3, b1=0.5)
    real = _real()
    state = gan_family.init_gan_state(G, D, jax.random.key(0), real, g_tx, d_tx)
    step = jax.jit(gan_family.make_gan_step(G, D, g_tx, d_tx, gan_family.GANLoss(name=loss, r1_gamma=0.1, ema_decay=0.9)))
    new_state, metrics = step(state, {"image": real}, jax.random.key(1))
    assert int(new_state.step) == 1
    assert all(np.isfinite(float(v)) for v in metrics.values()), metrics
    for name in ("d_loss", "g_loss", "d_real", "d_fake", "g_grad_norm", "d_grad_norm"):
        assert name in metrics
    moved = jax.tree_util.tree_map(lambda a, b: float(jnp.max(jnp.abs(a - b))), new_state.g_params, state.g_params)
    assert max(jax.tree_util.tree_leaves(moved)) > 0
    # The EMA moves a tenth of the way towards the new generator weights.
    ema_gap = jax.tree_util.tree_map(
        lambda e, p, p0: float(jnp.max(jnp.abs(e - (0.9 * p0 + 0.1 * p)))), new_state.g_ema, new_state.g_params, state.g_params
    )
    assert max(jax.tree_util.tree_leaves(ema_gap)) < 1e-6


@pytest.mark.slow
def test_sampling_is_reproducible_from_key():
    G = gan.SpikingGenerator(**TINY_G, neuron=cells.Neuron(threshold=0.5), readout="rate")
    params = G.init(jax.random.key(0), G.sample_noise(jax.random.key(1), 2))["params"]
    a, _ = G.apply({"params": params}, jax.random.key(7), 5, method="generate")
    b, _ = G.apply({"params": params}, jax.random.key(7), 5, method="generate")
    c, _ = G.apply({"params": params}, jax.random.key(8), 5, method="generate")
    assert a.shape == (5, 28, 28, 1) and float(a.min()) >= 0 and float(a.max()) <= 1
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_analog_macs_count_dense_and_transposed_convs():
    AG = gan.AnalogGenerator(noise_dim=16, arch="conv", channels=(8, 4))
    params = AG.init(jax.random.key(0), jnp.zeros((2, 16)))["params"]
    # dense 16->7*7*8, then each input of a stride-2 transposed conv drives 4x4 x C_out outputs.
    expected = 16 * 7 * 7 * 8 + 7 * 7 * 8 * 16 * 4 + 14 * 14 * 4 * 16 * 1
    assert energy.analog_macs(AG, params, jnp.zeros((2, 16))) == expected


def test_bad_configs():
    with pytest.raises(ValueError, match="noise_p"):
        gan.SpikingGenerator(**{**TINY_G, "noise_p": 1.5}).init(jax.random.key(0), jnp.zeros((4, 2, 16)))
    G = gan.SpikingGenerator(**TINY_G)
    with pytest.raises(ValueError, match="generator noise must be"):
        G.init(jax.random.key(0), jnp.zeros((5, 2, 16)))
    with pytest.raises(ValueError, match="name='lsgan': supported: ns, hinge, wgan_gp"):
        gan_family.GANLoss(name="lsgan")
    with pytest.raises(ValueError, match="coding"):
        gan.SpikingDiscriminator(coding="phase").init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)), jax.random.key(1))


def test_uniform_noise_rates_give_each_sample_its_own_code():
    G = gan.SpikingGenerator(**{**TINY_G, "num_steps": 64}, noise_rates="uniform")
    z = np.asarray(G.sample_noise(jax.random.key(0), 400))
    rates = z.mean(axis=0)  # [400, Z] per-sample firing rates over 64 steps
    # Spread across samples like U(0, 1) (std 0.289) rather than around one p (std ~0.06 at T = 64).
    assert 0.25 < rates.std() < 0.33 and abs(rates.mean() - 0.5) < 0.03
    fixed = np.asarray(gan.SpikingGenerator(**{**TINY_G, "num_steps": 64}).sample_noise(jax.random.key(0), 400))
    assert fixed.mean(axis=0).std() < 0.08


def test_minibatch_std_separates_collapsed_from_varied_groups():
    rng = np.random.default_rng(0)
    varied = jnp.asarray(rng.random((4, 8), dtype=np.float32))
    collapsed = jnp.broadcast_to(varied[:1], (4, 8))
    std = gan.minibatch_std(jnp.concatenate([varied, collapsed]), 4)
    assert std.shape == (8, 1)
    np.testing.assert_allclose(std[:4, 0], np.sqrt(np.var(np.asarray(varied), axis=0) + 1e-8).mean(), rtol=1e-5)
    np.testing.assert_allclose(std[4:, 0], 1e-4, rtol=1e-3)  # sqrt(0 + 1e-8)
    with pytest.raises(ValueError, match="divide the batch 8"):
        gan.minibatch_std(varied.repeat(2, axis=0), 3)


@pytest.mark.parametrize("spiking", [pytest.param(True, marks=pytest.mark.slow), False])
def test_minibatch_std_discriminator_sees_group_diversity(spiking):
    # The same real images in one group, varied ones in the other: with
    # mbstd on, D's logits depend on the group's diversity, not only on each image.
    real = _real(8)
    same = jnp.broadcast_to(real[:1], real[:4].shape)
    D = (gan.SpikingDiscriminator(**TINY_D, coding="latency", neuron=cells.Neuron(threshold=0.5), mbstd_group=4) if spiking
         else gan.AnalogDiscriminator(hidden=(32, 16), mbstd_group=4))
    params = D.init(jax.random.key(0), real, jax.random.key(1))
    a, _ = D.apply(params, jnp.concatenate([real[:1], real[1:4]]), jax.random.key(2))
    b, _ = D.apply(params, same, jax.random.key(2))
    assert abs(float(a[0] - b[0])) > 1e-6  # image 0 is the same in both batches


def test_regular_code_is_deterministic_rate_code_with_straight_through_gradient():
    x = jnp.array([0.0, 0.1, 0.25, 0.5, 0.9, 1.0])
    spikes = gan.regular_code_st(x, 8)
    assert spikes.shape == (8, 6) and set(np.unique(np.asarray(spikes))) <= {0.0, 1.0}
    np.testing.assert_array_equal(spikes.sum(axis=0), [0, 1, 2, 4, 7, 8])  # round(T x)
    np.testing.assert_array_equal(spikes[:, 3], [1, 0, 1, 0, 1, 0, 1, 0])  # evenly spaced
    grad = jax.grad(lambda v: gan.regular_code_st(v, 8).mean(axis=0).sum())(x)
    np.testing.assert_allclose(grad, 1.0)


def test_translate_moves_each_image_by_at_most_the_shift_and_passes_gradients():
    images = jnp.zeros((32, 28, 28, 1)).at[:, 14, 14, 0].set(1.0)
    moved = np.asarray(augment.translate(jax.random.key(0), images, 2))
    assert moved.shape == images.shape
    rows, cols = np.nonzero(moved[..., 0].reshape(32, 28, 28))[1:]
    assert len(rows) == 32  # the dot stays in the frame, one per image
    assert np.all(np.abs(rows - 14) <= 2) and np.all(np.abs(cols - 14) <= 2)
    assert len({(r, c) for r, c in zip(rows, cols)}) > 5  # each image draws its own offset
    np.testing.assert_array_equal(augment.translate(jax.random.key(0), images, 0), images)
    grad = jax.grad(lambda x: jnp.sum(augment.translate(jax.random.key(0), x, 2)))(images)
    assert float(grad[:, 14, 14, 0].min()) == 1.0  # the centre pixel reaches the output whatever the shift
    with pytest.raises(ValueError, match="augment shift"):
        augment.translate(jax.random.key(0), images, -1)


def test_rate_band_penalty_golden_values():
    rates = [jnp.array([0.0, 0.3, 0.9]), jnp.array([0.02, 0.5])]
    expected = (0.01**2 + 0.0 + 0.4**2) / 3 + 0.0
    np.testing.assert_allclose(losses.rate_band_penalty(rates, (0.01, 0.5)), expected, rtol=1e-6)
    with pytest.raises(ValueError, match="homeostasis band"):
        losses.rate_band_penalty(rates, (0.5, 0.5))
    with pytest.raises(ValueError, match="spiking generator"):
        losses.rate_band_penalty([], (0.0, 0.5))


def test_generator_reports_each_neurons_rate():
    G = gan.SpikingGenerator(**TINY_G, neuron=cells.Neuron(threshold=0.5))
    z = G.sample_noise(jax.random.key(0), 8)
    params = G.init(jax.random.key(1), z)["params"]
    _, aux = G.apply({"params": params}, z)
    for name, width in (("g0", 32), ("g1", 64)):
        rate = np.asarray(aux[name]["neuron_rate"])
        assert rate.shape == (width,) and rate.min() >= 0 and rate.max() <= 1
        # the per-neuron rates average to the layer's per-example rates
        np.testing.assert_allclose(rate.mean(), np.asarray(aux[name]["firing_rate"]).mean(), rtol=1e-5)


def test_homeostasis_pulls_saturated_generator_neurons_into_the_band():
    # A threshold far below the drive saturates the generator's neurons; the band penalty alone
    # (through the surrogate) must bring them back below the upper bound.
    G = gan.SpikingGenerator(**TINY_G, neuron=cells.Neuron(threshold=0.05, slope=5.0))
    D = gan.AnalogDiscriminator(hidden=(16,))
    g_tx, d_tx = optax.adam(1e-2), optax.adam(1e-4)
    real = _real()
    state = gan_family.init_gan_state(G, D, jax.random.key(0), real, g_tx, d_tx)
    step = jax.jit(gan_family.make_gan_step(G, D, g_tx, d_tx, gan_family.GANLoss(g_homeostasis=100.0, homeostasis_band=(0.01, 0.3))))
    penalties = []
    for i in range(25):
        state, metrics = step(state, {"image": real}, jax.random.key(i))
        penalties.append(float(metrics["g_homeostasis"]))
    assert penalties[0] > 0.01 and penalties[-1] < 0.25 * penalties[0], penalties


@pytest.mark.slow
def test_stability_options_step_reproducibly_and_change_the_update():
    # DiffAugment shifts, consistency regularisation and feature matching in one step.
    G = gan.SpikingGenerator(**TINY_G, neuron=cells.Neuron(threshold=0.5))
    D = gan.SpikingDiscriminator(**TINY_D, neuron=cells.Neuron(threshold=0.5), mbstd_group=4)
    g_tx, d_tx = optax.adam(2e-4, b1=0.5), optax.adam(2e-4, b1=0.5)
    real = _real()
    state = gan_family.init_gan_state(G, D, jax.random.key(0), real, g_tx, d_tx)
    step = jax.jit(gan_family.make_gan_step(G, D, g_tx, d_tx, gan_family.GANLoss(augment_shift=2, cr_weight=1.0, fm_weight=1.0)))
    a_state, a = step(state, {"image": real}, jax.random.key(1))
    _, b = step(state, {"image": real}, jax.random.key(1))
    assert all(np.isfinite(float(v)) for v in a.values()), a
    assert {k: float(v) for k, v in a.items()} == {k: float(v) for k, v in b.items()}
    assert float(a["cr"]) > 0 and float(a["g_feature_matching"]) > 0
    c_state, _ = jax.jit(gan_family.make_gan_step(G, D, g_tx, d_tx))(state, {"image": real}, jax.random.key(1))
    for new, old in ((a_state.d_params, c_state.d_params), (a_state.g_params, c_state.g_params)):
        gaps = jax.tree_util.tree_map(lambda x, y: float(jnp.max(jnp.abs(x - y))), new, old)
        assert max(jax.tree_util.tree_leaves(gaps)) > 0
    # The analog discriminator exposes its last hidden activations for feature matching too.
    AD = gan.AnalogDiscriminator(hidden=(32, 16))
    _, aux = AD.apply(AD.init(jax.random.key(0), real), real)
    assert aux["features"]["mean"].shape == (16, 16)
    with pytest.raises(ValueError, match="cr_weight=-1.0: must be >= 0"):
        gan_family.GANLoss(cr_weight=-1.0)


def test_pixel_minibatch_std_sees_a_collapsed_batch_through_rate_coding():
    # With the Bernoulli rate code, the pixels' spread separates a collapsed group from a varied one
    # whatever the coding draws; only the readout's mbstd input differs between the two batches.
    real = _real(8)
    same = jnp.broadcast_to(real[:1], real[:4].shape)
    D = gan.SpikingDiscriminator(**TINY_D, neuron=cells.Neuron(threshold=0.5), mbstd_group=4, mbstd_source="pixels")
    params = D.init(jax.random.key(0), real, jax.random.key(1))
    a, _ = D.apply(params, jnp.concatenate([real[:1], real[1:4]]), jax.random.key(2))
    b, _ = D.apply(params, same, jax.random.key(2))
    std_varied = float(gan.minibatch_std(real[:4].reshape(4, -1), 4)[0, 0])
    assert std_varied > 0.1
    assert abs(float(a[0] - b[0])) > 1e-6
    with pytest.raises(ValueError, match="mbstd_source"):
        gan.SpikingDiscriminator(**TINY_D, mbstd_group=4, mbstd_source="rate").init(
            jax.random.key(0), real, jax.random.key(1))


@pytest.mark.slow
def test_rate_gradient_discriminator_spikes_the_same_and_backpropagates_through_rates():
    # (the conv layers' rate gradient is checked against its formula in test_layers.py)
    real = _real(4)
    kw = dict(TINY_D, coding="regular", neuron=cells.Neuron(threshold=0.5))
    bptt, rated = gan.SpikingDiscriminator(**kw), gan.SpikingDiscriminator(**kw, gradient="rate")
    params = bptt.init(jax.random.key(0), real, jax.random.key(1))
    a, aux_a = bptt.apply(params, real, jax.random.key(2))
    b, aux_b = rated.apply(params, real, jax.random.key(2))
    np.testing.assert_array_equal(a, b)  # same spikes, same logits
    np.testing.assert_array_equal(aux_a["d1"]["spike_count"], aux_b["d1"]["spike_count"])
    grad = lambda D: jax.grad(lambda x: jnp.sum(D.apply(params, x, jax.random.key(2))[0]))(real)
    g_bptt, g_rate = grad(bptt), grad(rated)
    assert np.all(np.isfinite(g_rate)) and float(jnp.linalg.norm(g_rate)) > 0
    assert not np.allclose(g_bptt, g_rate)
    with pytest.raises(ValueError, match="gradient must be one of"):
        gan.SpikingDiscriminator(**TINY_D, gradient="exact").init(jax.random.key(0), real, jax.random.key(1))
