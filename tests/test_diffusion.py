"""The diffusion family: the process's closed forms, the samplers, the energy of a generation, and the
smoke config through the training system (``launch/configs/diffusion.py:smoke``)."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxspike import energy as energy_lib
from jaxspike import families, train
from jaxspike.families import diffusion as dif
from jaxspike.train import io
from launch.configs import diffusion as diffusion_config

IMAGE = (28, 28, 1)


def smoke(variant="smoke", **overrides):
    config = diffusion_config.get_config(variant)
    config.num_devices = 1
    for key, value in overrides.items():
        node = config
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return config


def rows(run_dir):
    return [{k: v for k, v in r.items() if not k.startswith("time/")}
            for r in io.read_metrics(os.path.join(run_dir, "metrics.jsonl"))]


def batch_of(num, seed=0):
    images = jax.random.uniform(jax.random.key(seed), (num,) + IMAGE)
    return {"image": images, "label": jnp.zeros((num,), jnp.int32)}


# ---------------------------------------------------------------------------
# The process.


@pytest.mark.parametrize("schedule", [dif.linear_schedule(200, 1e-4, 0.05), dif.cosine_schedule(200)])
def test_forward_marginal_matches_the_iterated_chain(schedule):
    """q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I) against q(x_t | x_{t-1}) applied t times."""
    betas = np.asarray(schedule.betas, np.float64)
    x0 = np.array([-1.0, -0.3, 0.0, 0.8])
    mean, var = x0.copy(), np.zeros_like(x0)
    for i, beta in enumerate(betas):  # exact moments of x_t = sqrt(1 - beta) x_{t-1} + sqrt(beta) n
        mean, var = np.sqrt(1.0 - beta) * mean, (1.0 - beta) * var + beta
        if i in (0, 9, 99, 199):
            ab = float(schedule.alpha_bars[i])
            np.testing.assert_allclose(mean, np.sqrt(ab) * x0, rtol=1e-5, atol=1e-7)
            np.testing.assert_allclose(var, 1.0 - ab, rtol=1e-5, atol=1e-7)
    # And q_sample draws from it: the chain simulated with noise, step 50, 20,000 draws.
    n = 20_000
    t = 49
    x = jnp.broadcast_to(jnp.asarray(x0, jnp.float32), (n, 4))
    for i, k in enumerate(jax.random.split(jax.random.key(0), t + 1)):
        x = jnp.sqrt(1.0 - schedule.betas[i]) * x + jnp.sqrt(schedule.betas[i]) * jax.random.normal(k, x.shape)
    direct = dif.q_sample(schedule, jnp.broadcast_to(jnp.asarray(x0, jnp.float32), (n, 4)),
                          jnp.full((n,), t), jax.random.normal(jax.random.key(1), (n, 4)))
    ab = float(schedule.alpha_bars[t])
    for draws in (np.asarray(x), np.asarray(direct)):
        np.testing.assert_allclose(draws.mean(0), np.sqrt(ab) * x0, atol=0.03)
        np.testing.assert_allclose(draws.var(0), 1.0 - ab, rtol=0.05)


def test_schedules_closed_forms():
    lin = dif.linear_schedule(1000)
    np.testing.assert_allclose(np.asarray(lin.betas)[[0, -1]], [1e-4, 0.02], rtol=1e-6)
    cos = dif.cosine_schedule(1000, s=0.008)
    f = lambda t: np.cos((t / 1000 + 0.008) / 1.008 * np.pi / 2) ** 2
    for t in (1, 10, 500, 900):  # abar of step t (index t - 1) = f(t) / f(0), where no beta is clipped
        np.testing.assert_allclose(float(cos.alpha_bars[t - 1]), f(t) / f(0), rtol=1e-5)
    assert float(np.max(cos.betas)) == pytest.approx(dif.MAX_BETA)
    assert np.all(np.diff(np.asarray(cos.alpha_bars)) < 0)


def test_sampling_steps():
    np.testing.assert_array_equal(dif.sampling_steps(1000, 1), [999])
    steps = dif.sampling_steps(1000, 50)
    assert len(steps) == 50 and steps[0] == 999 and steps[-1] == 0 and np.all(np.diff(steps) < 0)
    np.testing.assert_array_equal(dif.sampling_steps(10, 10), np.arange(9, -1, -1))
    with pytest.raises(ValueError, match="1 to timesteps=10"):
        dif.sampling_steps(10, 11)


def test_ddpm_step_is_hos_update_and_ddim_at_eta_one():
    """On the full schedule the ancestral step is Ho et al.'s eq. 11 with sigma^2 = the posterior variance."""
    sched = dif.linear_schedule(100)
    keys = jax.random.split(jax.random.key(0), 3)
    x_t, eps, noise = (jax.random.normal(k, (3, 5)) for k in keys)
    for i in (1, 40, 99):
        beta, ab_t, ab_prev = sched.betas[i], sched.alpha_bars[i], sched.alpha_bars[i - 1]
        posterior_var = (1.0 - ab_prev) / (1.0 - ab_t) * beta
        ho = (x_t - beta / jnp.sqrt(1.0 - ab_t) * eps) / jnp.sqrt(1.0 - beta) + jnp.sqrt(posterior_var) * noise
        ours = dif.ddpm_step(x_t, eps, ab_t, ab_prev, noise, clip=False)
        np.testing.assert_allclose(ours, ho, rtol=1e-4, atol=1e-5)
        ddim = dif.ddim_step(x_t, eps, ab_t, ab_prev, noise, eta=1.0, clip=False)
        np.testing.assert_allclose(ddim, ours, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("sampler", dif.SAMPLERS)
def test_samplers_recover_a_point_mass_with_the_ideal_denoiser(sampler):
    """For data x_0 = c the ideal noise estimate is (x_t - sqrt(abar) c) / sqrt(1 - abar): both samplers land on c."""
    sched = dif.cosine_schedule(100)
    target = jnp.linspace(-0.9, 0.9, 8).reshape(1, 2, 2, 2)

    def ideal(x_t, t):
        ab = sched.alpha_bars[t].reshape(-1, 1, 1, 1)
        return (x_t - jnp.sqrt(ab) * target) / jnp.sqrt(1.0 - ab), {}

    for steps in (1, 7, 100):
        x0, _ = dif.sample(ideal, sched, jax.random.key(3), (5, 2, 2, 2), sampler=sampler, num_steps=steps, eta=0.5)
        np.testing.assert_allclose(x0, jnp.broadcast_to(target, x0.shape), atol=1e-3)  # float32 near abar = 0


@pytest.mark.parametrize("sampler", [pytest.param("ddpm", marks=pytest.mark.slow), "ddim"])
def test_sampler_shapes_and_determinism(sampler):
    config = smoke(**{"loss.sampler": sampler, "loss.sample_steps": 4})
    objective = families.build(config, IMAGE)
    state = jax.jit(objective.init)(jax.random.key(0), batch_of(2))
    sample = jax.jit(objective.sample, static_argnums=2)  # one program, as the loop runs it
    a = np.asarray(sample(state, jax.random.key(5), 3))
    assert a.shape == (3,) + IMAGE and a.dtype == np.float32
    assert a.min() >= 0.0 and a.max() <= 1.0
    np.testing.assert_array_equal(a, np.asarray(sample(state, jax.random.key(5), 3)))
    assert np.abs(a - np.asarray(sample(state, jax.random.key(6), 3))).max() > 0
    # A sample depends on its key alone, not on the batch it is drawn with.
    x0, aux = dif.sample(lambda x, t: (0.1 * x, {"calls": jnp.ones(x.shape[:1])}), dif.cosine_schedule(20),
                         jax.random.key(1), (2, 4, 4, 1), sampler=sampler, num_steps=5, eta=0.3, keep=3)
    assert x0.shape == (2, 4, 4, 1) and aux["calls"].shape == (5, 2) and aux["x0_path"].shape == (3, 2, 4, 4, 1)


def test_ema_warms_up_then_decays():
    ema = dif.ema_update({"w": jnp.zeros(())}, {"w": jnp.ones(())}, 0.999, 0)
    assert float(ema["w"]) == pytest.approx(0.9)  # d = 1/10 at the first update
    ema = dif.ema_update({"w": jnp.zeros(())}, {"w": jnp.ones(())}, 0.999, 10**6)
    assert float(ema["w"]) == pytest.approx(0.001, rel=1e-3)


# ---------------------------------------------------------------------------
# Training and energy.


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["smoke", "analog+smoke"])
def test_a_few_steps_lower_the_loss(variant):
    """The loss of a fixed batch, step and noise (one key) falls over a few updates of a tiny denoiser."""
    config = smoke(variant, total_steps=100, **{"optimizer.learning_rate": 3e-3})
    objective = families.build(config, IMAGE)
    batch = batch_of(8)
    state = objective.init(jax.random.key(0), batch)
    step = jax.jit(objective.step)
    losses = []
    for _ in range(12):
        state, metrics = step(state, batch, jax.random.key(7))
        losses.append(float(metrics["eps_mse"]))
    assert np.all(np.isfinite(losses)) and losses[-1] < 0.85 * losses[0], losses
    assert int(state.step) == 12
    # The EMA follows the weights but is not them.
    leaves = zip(jax.tree_util.tree_leaves(state.ema), jax.tree_util.tree_leaves(state.params))
    assert any(float(jnp.abs(e - p).max()) > 0 for e, p in leaves)


def test_energy_counts_every_denoiser_call():
    """Spiking: one group of layer counts per call, the report sums them; twice the calls, twice the work."""
    reports = {}
    for k in (3, 6):
        objective = families.build(smoke(**{"loss.sample_steps": k}), IMAGE)
        state = jax.jit(objective.init)(jax.random.key(0), batch_of(2))
        layers = jax.jit(objective.energy, static_argnums=2)(state, jax.random.key(2), 2)
        assert sorted(layers) == [f"call_{i}" for i in range(k)]
        total = energy_lib.energy_report(layers)
        calls = [energy_lib.energy_report(layers[name]) for name in sorted(layers)]
        assert total["synops"] == pytest.approx(sum(c["synops"] for c in calls), rel=1e-6)
        assert total["spikes_per_sample"] == pytest.approx(sum(c["spikes_per_sample"] for c in calls), rel=1e-6)
        assert total["macs"] == pytest.approx(sum(c["macs"] for c in calls), rel=1e-6)
        # Real-valued inputs (the direct-coded image, the step embedding) cost about the same MACs every call;
        # only zero inputs are skipped (sin(0 w) = 0 in the embedding of step 0).
        assert total["macs"] == pytest.approx(k * calls[0]["macs"], rel=1e-3)
        # Each call's counts are those of the denoiser run on that call's input: the first call sees x_T.
        x_T = jax.random.normal(jax.random.split(jax.random.key(2))[0], (2,) + IMAGE)
        model = dif.make_model(smoke(), IMAGE)
        _, direct = jax.jit(model.apply)({"params": state.ema}, x_T, jnp.full((2,), smoke().loss.timesteps - 1))
        first = energy_lib.energy_report(direct)
        assert calls[0]["synops"] == pytest.approx(first["synops"], rel=1e-2)
        reports[k] = total
        # The memory-inclusive model prices every call: the loop's shapes trace covers all of them.
        shapes = energy_lib.layer_shapes(lambda s, key: objective.energy(s, key, 2), state, jax.random.key(2))
        assert len(shapes) == len(energy_lib.layer_aux(layers))
        memory = energy_lib.memory_energy_report(layers, shapes)
        assert memory["synops_only"]["snn_pj"] == pytest.approx(total["energy_pj"], rel=1e-6)
    ratio = reports[6]["synops"] / reports[3]["synops"]
    assert 1.5 < ratio < 2.5, ratio
    assert reports[6]["macs"] == pytest.approx(2 * reports[3]["macs"], rel=1e-3)


@pytest.mark.slow
def test_twin_energy_is_its_macs_per_call_times_the_calls():
    macs = {}
    for k in (3, 6):
        config = smoke("analog+smoke", **{"loss.sample_steps": k})
        objective = families.build(config, IMAGE)
        state = objective.init(jax.random.key(0), batch_of(2))
        macs[k] = energy_lib.energy_report(objective.energy(state, jax.random.key(2), 2))["macs"]
    assert macs[6] == pytest.approx(2 * macs[3], rel=1e-6)
    # One call of the smoke twin (channels (4,), embedding 8), counted by hand: products, then 4 per normalised value.
    hw = 28 * 28
    convs = 9 * 1 * 4 + 4 * (9 * 4 * 4) + (9 * 8 * 4 + 8 * 4 + 9 * 4 * 4) + 9 * 4 * 1  # stem, enc + mid, dec, readout
    dense = 8 * 8 + 3 * 8 * 4  # embedding, one projection per block
    norm = 4 * hw * 4 * (1 + 2 + 2 + 2)  # stem, then two per block
    assert macs[3] == pytest.approx(3 * (hw * convs + dense + norm), rel=1e-6)


# ---------------------------------------------------------------------------
# The training system.


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("diffusion_smoke"))
    return workdir, train.train(smoke(), workdir)


def test_smoke_config_trains_end_to_end(smoke_run):
    workdir, result = smoke_run
    assert result.step == 4 and result.num_compiles == 1 and result.headline == ("eps_mse",)
    assert isinstance(result.state, dif.DiffusionState) and int(result.state.step) == 4
    logged = rows(workdir)
    assert [r["step"] for r in logged] == [1, 2, 3, 4]
    for name in ("eps_mse", "loss", "grad_norm", "fire/stem", "fire/enc0_0_conv2", "fire/dec0_0_conv1"):
        assert all(np.isfinite(r[name]) for r in logged), name
    assert not any(k.startswith(("fire/readout", "fire/embed")) for k in logged[0])  # not spiking layers
    for name in ("samples_4.png", "trajectory_4.png"):
        assert os.path.getsize(os.path.join(workdir, name)) > 0
    config, objective, state, shape = train.load_trained(workdir)
    assert config.model.name == "diffusion" and tuple(shape) == IMAGE
    images = np.asarray(objective.sample(state, jax.random.key(0), 3))
    assert images.shape == (3,) + IMAGE and 0.0 <= images.min() and images.max() <= 1.0


@pytest.mark.slow
def test_smoke_run_is_evaluated_with_the_generations_energy(tmp_path, monkeypatch):
    from jaxspike import metrics as metrics_lib

    monkeypatch.setattr(metrics_lib, "evaluate_samples", lambda s, d, **kw: {"fid": 1.0, "class_entropy": 2.0})
    train.train(smoke(total_steps=2, num_grid=0, eval_every=2, eval_num_samples=10), str(tmp_path))
    last = rows(str(tmp_path))[-1]
    steps = smoke().loss.sample_steps
    assert last["eval/fid"] == 1.0 and np.isfinite(last["test/eps_mse"])
    assert last["energy/synops"] > 0 and f"energy/layers/call_{steps - 1}/readout/synops" in last
    assert 0 < last["energy_mem/synops_only"] < 1  # the spiking generation against its fp32 twin's MACs


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("loss.sampler", "euler", r"config.loss.sampler='euler'"),
        ("loss.schedule", "sigmoid", r"config.loss.schedule='sigmoid'"),
        ("loss.sample_steps", 50, r"config.loss.sample_steps=50: must be an int in \[1, timesteps=20\]"),
        ("loss.ema_decay", 1.0, r"config.loss.ema_decay=1.0"),
        ("model.channels", (4, 4, 4, 4), r"config.model.channels=.*divisible by 8"),
        ("model.emb_dim", 7, r"config.model.emb_dim=7"),
        ("model.num_steps", 0, r"config.model.num_steps=0"),
        ("model.neuron.beta", 1.5, r"config.model.neuron.beta=1.5"),
        ("optimizer.learning_rate", 0.0, r"config.optimizer.learning_rate=0.0"),
    ],
)
def test_bad_diffusion_config_gives_clear_error(tmp_path, field, value, message):
    with pytest.raises(train.ConfigError, match=message):
        train.train(smoke(**{field: value}), str(tmp_path))
    assert not os.listdir(tmp_path)


def test_variants():
    with pytest.raises(ValueError, match="unknown config variant 'tiny'"):
        diffusion_config.get_config("tiny")
    for variant in ("", "analog", "smoke", "analog+smoke"):
        config = diffusion_config.get_config(variant)
        assert config.model.name == ("analog_diffusion" if "analog" in variant else "diffusion")
        families.build(config, IMAGE)
    config = diffusion_config.get_config("")
    with pytest.raises(train.ConfigError, match="config.model.kernel: unknown field"):
        config.model.kernel = 3
        families.build(config, IMAGE)
