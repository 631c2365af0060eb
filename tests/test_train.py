"""Training system: determinism, resume, sweeps, devices, retracing, failures.

All runs use the ``smoke`` config (T=2, widths 16, batch 8, 4 steps) so each
takes a few seconds, most of it compilation.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import textwrap

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxspike import data as data_lib
from jaxspike import families, objective as objective_lib, train
from jaxspike.families import vae as vae_family
from jaxspike.train import io
from launch.configs import vae as vae_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def smoke(**overrides):
    """The smoke config on one device, without PNG grids (their compiles cost seconds)."""
    config = vae_config.get_config("smoke")
    config.num_devices = 1
    config.num_grid = 0
    for key, value in overrides.items():
        node = config
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return config


def rows(run_dir):
    """metrics.jsonl without the wall-clock fields."""
    return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in io.read_metrics(os.path.join(run_dir, "metrics.jsonl"))]


def leaves(tree):
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(jax.device_get(tree))]


def assert_rows_close(a, b, rtol=1e-5, atol=1e-6):
    assert [r["step"] for r in a] == [r["step"] for r in b]
    for ra, rb in zip(a, b):
        assert ra.keys() == rb.keys()
        for k in ra:
            np.testing.assert_allclose(ra[k], rb[k], rtol=rtol, atol=atol, err_msg=f"step {ra['step']} {k}")


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    """One uninterrupted 4-step smoke run of seed 0."""
    workdir = str(tmp_path_factory.mktemp("reference"))
    result = train.train(smoke(num_grid=4), workdir)
    return workdir, result


def test_run_folder_is_self_describing(reference_run):
    workdir, result = reference_run
    assert result.step == 4
    assert result.num_compiles == 1  # the step compiled once for the whole run
    saved = io.read_json(os.path.join(workdir, "config.json"))
    assert saved["model"]["latent"] == 8 and saved["image_shape"] == [28, 28, 1]
    logged = rows(workdir)
    assert [r["step"] for r in logged] == [1, 2, 3, 4]
    for key in ("loss", "recon", "kl", "grad_norm", "fire/enc0", "fire/dec0", "latent_p", "latent_silent"):
        assert all(np.isfinite(r[key]) for r in logged), key
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["2", "4"]
    for name in ("samples_2.png", "samples_4.png", "recons_4.png"):
        assert os.path.getsize(os.path.join(workdir, name)) > 0


def test_same_seed_gives_identical_metrics(reference_run, tmp_path):
    workdir, result = reference_run
    again = train.train(smoke(), str(tmp_path))
    assert rows(str(tmp_path)) == rows(workdir)
    for a, b in zip(leaves(result.state), leaves(again.state)):
        np.testing.assert_array_equal(a, b)


def _events(run_dir):
    """(tag, step, kind) of every summary in the run's TensorBoard event files (TFRecord framing)."""
    import glob
    import struct

    from tensorboardX.proto import event_pb2

    found = []
    for path in sorted(glob.glob(os.path.join(run_dir, "events.out.tfevents.*"))):
        data = open(path, "rb").read()
        pos = 0
        while pos < len(data):
            (length,) = struct.unpack("<Q", data[pos : pos + 8])
            event = event_pb2.Event.FromString(data[pos + 12 : pos + 12 + length])
            pos += 12 + length + 4
            for value in event.summary.value:
                found.append((value.tag, event.step, "image" if value.HasField("image") else value.simple_value))
    return found


def test_tensorboard_events_hold_the_metrics_and_grids(reference_run):
    workdir, _ = reference_run
    events = _events(workdir)
    logged = [(r["step"], r["loss"]) for r in io.read_metrics(os.path.join(workdir, "metrics.jsonl"))]
    scalars = [(s, v) for tag, s, v in events if tag == "loss"]
    assert [s for s, _ in scalars] == [1, 2, 3, 4]
    np.testing.assert_allclose([v for _, v in scalars], [v for _, v in logged], rtol=1e-6)
    assert {tag for tag, _, v in events if v == "image"} == {"samples", "recons"}
    assert {s for tag, s, _ in events if tag == "samples"} == {2, 4}


def test_event_writer_leaves_torch_unimported_and_importable(tmp_path):
    """tensorboardX imports PyTorch at import when it is installed (seconds per process); the
    run folder's event writer loads it without, and a later `import torch` still works."""
    script = textwrap.dedent(f"""
        import importlib.util, sys
        from jaxspike.train import io
        writer = io.TensorBoardWriter({str(tmp_path)!r})
        writer.scalars({{"step": 1, "loss": 0.5}})
        writer.close()
        assert "torch" not in sys.modules, "tensorboardX pulled in torch"
        if importlib.util.find_spec("torch") is not None:
            import torch  # noqa: F401
        print("OK")
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "OK", proc.stderr[-2000:]
    assert [(tag, step) for tag, step, _ in _events(str(tmp_path))] == [("loss", 1)]


def test_resume_equals_uninterrupted_bit_for_bit(reference_run, tmp_path):
    workdir, result = reference_run
    first = train.train(smoke(total_steps=2), str(tmp_path))
    assert first.step == 2
    resumed = train.train(smoke(total_steps=4), str(tmp_path))  # restores step 2 from disk
    assert resumed.step == 4
    assert rows(str(tmp_path)) == rows(workdir)
    for a, b in zip(leaves(result.state), leaves(resumed.state)):
        np.testing.assert_array_equal(a, b)


def test_learning_rate_decay_is_constant_then_linear_to_zero():
    config = smoke(**{"optimizer.name": "sgd", "optimizer.lr_decay_from": 0.6})
    tx = objective_lib.make_optimizer(config.optimizer, 0.5, total_steps=10)
    params = {"w": jnp.zeros(())}
    opt_state = tx.init(params)
    rates = []
    for _ in range(11):
        updates, opt_state = tx.update({"w": jnp.ones(())}, opt_state, params)
        rates.append(-float(updates["w"]))
    np.testing.assert_allclose(rates, [0.5] * 7 + [0.375, 0.25, 0.125, 0.0], atol=1e-6)


@pytest.mark.slow
def test_resume_continues_the_learning_rate_decay(tmp_path):
    config = smoke(**{"optimizer.lr_decay_from": 0.25})
    whole = train.train(config, str(tmp_path / "whole"))
    shutil.copytree(tmp_path / "whole", tmp_path / "cut")
    kept = sorted(int(d) for d in os.listdir(tmp_path / "cut" / "checkpoints") if d.isdigit())
    for step in kept[1:]:  # as if killed after the first kept checkpoint
        shutil.rmtree(tmp_path / "cut" / "checkpoints" / str(step))
    resumed = train.train(config, str(tmp_path / "cut"))
    assert kept[0] < 4 and resumed.step == 4
    assert rows(str(tmp_path / "cut")) == rows(str(tmp_path / "whole"))
    for a, b in zip(leaves(whole.state), leaves(resumed.state)):
        np.testing.assert_array_equal(a, b)


def test_resume_drops_log_lines_after_the_checkpoint(reference_run, tmp_path):
    workdir, _ = reference_run
    shutil.copytree(workdir, tmp_path, dirs_exist_ok=True)
    shutil.rmtree(tmp_path / "checkpoints" / "4")  # as if killed after logging step 4
    train.train(smoke(), str(tmp_path))
    assert rows(str(tmp_path)) == rows(workdir)


def test_corrupt_checkpoint_is_reported_and_previous_used(reference_run, tmp_path, caplog):
    workdir, result = reference_run
    shutil.copytree(workdir, tmp_path, dirs_exist_ok=True)
    bad = tmp_path / "checkpoints" / "4"
    for path in bad.rglob("*"):
        if path.is_file() and "ocdbt" in str(path) or path.name == "_METADATA":
            path.write_bytes(b"garbage")
    with caplog.at_level(logging.WARNING, logger="jaxspike.train"):
        again = train.train(smoke(), str(tmp_path))
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("step 4" in m and str(bad) in m for m in warnings), warnings
    assert (tmp_path / "checkpoints" / "corrupt_4").is_dir()
    # Resumed from step 2 and replayed steps 3-4 exactly.
    assert rows(str(tmp_path)) == rows(workdir)
    for a, b in zip(leaves(result.state), leaves(again.state)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_sweep_equals_individual_runs(reference_run, tmp_path):
    ref_dir, ref = reference_run
    sweep = train.train(smoke(seeds="0,1", num_grid=2), str(tmp_path / "sweep"))
    assert sweep.run_dirs == [str(tmp_path / "sweep" / "seed_0"), str(tmp_path / "sweep" / "seed_1")]
    assert sweep.num_compiles == 1
    alone_1 = train.train(smoke(seed=1), str(tmp_path / "alone_1"))
    for i, (seed, alone_dir, alone) in enumerate(((0, ref_dir, ref), (1, alone_1.run_dirs[0], alone_1))):
        assert_rows_close(rows(sweep.run_dirs[i]), rows(alone_dir))
        for a, b in zip(leaves(jax.tree_util.tree_map(lambda x: x[i], sweep.state)), leaves(alone.state)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
        run_dir = tmp_path / "sweep" / f"seed_{seed}"
        assert sorted(os.listdir(run_dir / "checkpoints")) == ["2", "4"]
        assert (run_dir / "samples_4.png").exists() and (run_dir / "recons_4.png").exists()
        assert io.read_json(str(run_dir / "config.json"))["seed"] == seed
    # Different seeds really differ (own init and data order).
    assert rows(sweep.run_dirs[0])[0]["loss"] != rows(sweep.run_dirs[1])[0]["loss"]


_DEVICES_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    os.environ["JAX_PLATFORMS"] = "cpu"
    sys.path.insert(0, {repo!r})
    from jaxspike import train
    from jaxspike.train import io
    from launch.configs import vae
    config = vae.get_config("smoke")
    config.num_devices = 4
    config.num_grid = 0
    result = train.train(config, os.path.join({tmp!r}, "dev4"))
    out = [{{k: v for k, v in r.items() if not k.startswith("time/")}}
           for r in io.read_metrics(os.path.join(result.run_dirs[0], "metrics.jsonl"))]
    print("RESULT" + json.dumps(out))
    """
)


def test_one_device_equals_four_devices(reference_run, tmp_path):
    ref_dir, _ = reference_run
    if jax.device_count() >= 4:
        result = train.train(smoke(num_devices=4), str(tmp_path / "dev4"))
        four = rows(result.run_dirs[0])
    else:  # XLA_FLAGS must be set before jax is imported: use a fresh process
        script = _DEVICES_SCRIPT.format(repo=REPO, tmp=str(tmp_path))
        proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        four = json.loads(proc.stdout.split("RESULT", 1)[1])
    assert_rows_close(rows(ref_dir), four, rtol=1e-4, atol=1e-5)


def test_batch_not_divisible_by_devices(tmp_path):
    if jax.device_count() < 4:
        pytest.skip("needs 4 (fake) devices; tests/test_launch.py checks this in a subprocess")
    with pytest.raises(train.ConfigError, match=r"config.batch_size=6 .*4 devices"):
        train.train(smoke(num_devices=4, batch_size=6), str(tmp_path))


def test_step_traces_once(key):
    objective = families.build(smoke(), (28, 28, 1))
    step = chex.assert_max_traces(objective.step, n=1)
    jit_step = jax.jit(step, donate_argnums=(0,))
    ds = data_lib.load("mnist5k", "train")
    batch0 = {k: jnp.asarray(v) for k, v in data_lib.get_batch(ds, 8, 0, 0).items()}
    state = jax.jit(objective.init)(key, batch0)
    for i in range(3):
        batch = {k: jnp.asarray(v) for k, v in data_lib.get_batch(ds, 8, 0, i).items()}
        state, metrics = jit_step(state, batch, key)
    assert int(state.step) == 3
    assert set(metrics) >= {"loss", "recon", "kl", "grad_norm", "fire/enc0", "latent_p", "latent_silent"}
    chex.clear_trace_counter()


@pytest.mark.slow
def test_step_key_is_folded_from_the_step_number(key, tmp_path, monkeypatch):
    """Resume replays randomness: the step's key depends only on run_key and state.step."""
    seen = []
    real = families.build

    def spying(config, image_shape):
        objective = real(config, image_shape)

        def step(state, batch, k):
            jax.debug.callback(lambda s, kd: seen.append((int(s), np.asarray(kd))), state.step, jax.random.key_data(k))
            return objective.step(state, batch, k)

        return objective._replace(step=step)

    monkeypatch.setattr(families, "build", spying)
    train.train(smoke(total_steps=3), str(tmp_path))
    run_key = train.seed_streams(0).run_key
    assert [s for s, _ in seen] == [0, 1, 2]
    for s, kd in seen:
        np.testing.assert_array_equal(kd, jax.random.key_data(jax.random.fold_in(run_key, s)))


def test_seed_streams_are_distinct_and_deterministic():
    a, b = train.seed_streams(0), train.seed_streams(0)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(jax.random.key_data(x), jax.random.key_data(y))
    datas = [jax.random.key_data(k) for k in a]
    assert not np.array_equal(datas[0], datas[1]) and not np.array_equal(datas[1], datas[2])
    assert train.data_seed(a.data_key) == train.data_seed(b.data_key) != train.data_seed(train.seed_streams(1).data_key)
    with pytest.raises(ValueError, match="seed"):
        train.seed_streams(-1)


def test_non_finite_loss_names_step_and_term(tmp_path, monkeypatch):
    config = smoke(total_steps=12, log_every=100, checkpoint_every=100, sample_every=0)
    ds = data_lib.load("mnist5k", "train")
    order = train.data_seed(train.seed_streams(0).data_key)
    # Poison the KL of any batch holding a digit 7 in its first slot: the
    # first such update (1-based) is where the error must point.
    first_labels = [int(data_lib.get_batch(ds, 8, order, s)["label"][0]) for s in range(12)]
    if 7 not in first_labels:
        pytest.skip("no poisoned batch in the first 12 steps")
    expected = first_labels.index(7) + 1
    real = families.build

    def poisoned(config, image_shape):
        objective = real(config, image_shape)

        def step(state, batch, key):
            state, metrics = objective.step(state, batch, key)
            bad = batch["label"][0] == 7
            return state, {**metrics, "kl": jnp.where(bad, jnp.nan, metrics["kl"]),
                           "loss": jnp.where(bad, jnp.nan, metrics["loss"])}

        return objective._replace(step=step)

    monkeypatch.setattr(families, "build", poisoned)
    with pytest.raises(train.NonFiniteLossError, match=rf"step {expected}\b.*'kl'") as err:
        train.train(config, str(tmp_path))
    assert err.value.step == expected and err.value.term == "kl"


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("model.latent", 0, r"config.model.latent=0"),
        ("data.name", "nope", r"config.data.name='nope': unknown dataset"),
        ("batch_size", 0, r"config.batch_size=0"),
        ("optimizer.name", "lion", r"config.optimizer.name='lion'"),
        ("seeds", "0,a", r"--seeds / config.seeds"),
        ("seeds", "1,1", r"twice"),
        ("num_devices", 64, r"config.num_devices=64"),
        ("batch_size", 5000, r"config.batch_size=5000 exceeds"),
        ("optimizer.lr_decay_from", 1.5, r"config.optimizer.lr_decay_from=1.5: must be a fraction"),
    ],
)
def test_bad_config_gives_clear_error(tmp_path, field, value, message):
    with pytest.raises(train.ConfigError, match=message):
        train.train(smoke(**{field: value}), str(tmp_path))


def test_resume_with_a_different_model_is_refused(reference_run, tmp_path):
    workdir, _ = reference_run
    shutil.copytree(workdir, tmp_path, dirs_exist_ok=True)
    with pytest.raises(train.ConfigError, match=r"model.latent: saved 8 != new 9"):
        train.train(smoke(**{"model.latent": 9}), str(tmp_path))


def test_periodic_evaluation_is_logged(tmp_path, monkeypatch):
    from jaxspike import metrics as metrics_lib

    seen = []

    def fake_evaluate(samples, dataset, **kwargs):  # the real one trains a classifier first
        seen.append((samples.shape, samples.dtype, dataset))
        return {"fid": 1.5, "inception_score": 2.0}

    monkeypatch.setattr(metrics_lib, "evaluate_samples", fake_evaluate)
    train.train(smoke(total_steps=2, eval_every=2, eval_num_samples=12), str(tmp_path))
    assert seen == [((12, 28, 28, 1), np.float32, "mnist5k")]
    evals = [r for r in io.read_metrics(str(tmp_path / "metrics.jsonl")) if "eval/fid" in r]
    assert len(evals) == 1 and evals[0]["step"] == 2 and evals[0]["eval/fid"] == 1.5
    # energy of one generation pass (prior -> decoder): no encoder layer in it
    assert evals[0]["energy/energy_pj"] > 0 and "energy/layers/dec0/synops" in evals[0]
    assert not any(k.startswith("energy/layers/enc") for k in evals[0])
    # and its memory-inclusive headline (jaxspike.energy.memory_energy_report), the same counts priced
    # with memory traffic against fp32, int8 and bit-matched twins on two hardware profiles
    for key in ("energy_mem/synops_only", "energy_mem/neuromorphic/matched", "energy_mem/accelerator/int8",
                "energy_mem/neuromorphic/matched/crossover_rate", "energy_mem/spike_rate"):
        assert np.isfinite(evals[0][key]), key
    # synaptic operations only: the logged energy over the fp32 twin's decoder, 8->16->784 MACs and 800 biases
    twin_pj = (8 * 16 + 16 * 784) * 4.6 + (16 + 784) * 0.9
    np.testing.assert_allclose(evals[0]["energy_mem/synops_only"], evals[0]["energy/energy_pj"] / twin_pj, rtol=1e-6)
    # launch.energy_report prices the same logged counts from the run folder alone
    from launch import energy_tables

    row = energy_tables.price_run(str(tmp_path))
    for key in ("synops_only", "neuromorphic/matched", "accelerator/int8", "neuromorphic/matched/crossover_rate"):
        assert row[key] == pytest.approx(evals[0][f"energy_mem/{key}"], rel=1e-6), key
    # the whole test split is scored: ELBO = -(recon + KL), reconstruction MSE in [0, 1]
    t = evals[0]
    assert t["test/elbo"] == pytest.approx(-(t["test/recon"] + t["test/kl"]), rel=1e-5)
    assert 0.0 < t["test/mse"] < 1.0 and t["test/kl"] >= 0


@pytest.mark.slow
def test_analog_twin_trains_through_the_same_loop(tmp_path):
    config = smoke(**{"model.name": "analog_vae"})
    result = train.train(config, str(tmp_path))
    assert result.step == config.total_steps
    rows = [json.loads(l) for l in open(os.path.join(str(tmp_path), "metrics.jsonl"))]
    assert all(np.isfinite(r["loss"]) for r in rows) and "kl" in rows[-1]
    _, objective, state, shape = train.load_trained(str(tmp_path))
    images = objective.sample(state, jax.random.key(0), 3)
    assert images.shape == (3,) + tuple(shape)
    # Energy per generated sample of the analog twin: its decoder, 8->16, 16->784, all MACs.
    aux = objective.energy(state, jax.random.key(1), 2)
    assert float(aux["analog"]["macs"][0]) == 8 * 16 + 16 * 784


@pytest.mark.slow
def test_relaxed_temperature_follows_its_schedule(monkeypatch):
    assert float(vae_family.annealed(1.0, 0.25, 100, 0)) == pytest.approx(1.0)
    assert float(vae_family.annealed(1.0, 0.25, 100, 50)) == pytest.approx(0.5)
    assert float(vae_family.annealed(1.0, 0.25, 100, 1000)) == pytest.approx(0.25)
    # The schedule reaches the loss: the step at update s hands the loss annealed(..., s).
    seen = []
    real = vae_family.elbo_loss

    def spy(*args, temperature=1.0, **kwargs):
        seen.append(float(temperature))
        return real(*args, temperature=temperature, **kwargs)

    monkeypatch.setattr(vae_family, "elbo_loss", spy)
    config = smoke(**{"model.estimator": "relaxed"})
    objective = families.build(config, (28, 28, 1))
    batch = {"image": jnp.full((4, 28, 28, 1), 0.5)}
    state = objective.init(jax.random.key(0), batch)
    for step in (0, 1000, 10_000):
        objective.step(state.replace(step=jnp.asarray(step, jnp.int32)), batch, jax.random.key(1))
    start, end, steps = config.loss.temperature_start, config.loss.temperature_end, config.loss.temperature_steps
    np.testing.assert_allclose(seen, [start, start * (end / start) ** (1000 / steps), end], rtol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["mnist", pytest.param("celeb_a", marks=pytest.mark.slow)])
def test_tfds_variant_trains_on_mock_data(tmp_path, variant):
    """The full-data configs run the real TFDS loading code (here on tfds' mock data)."""
    tfds = pytest.importorskip("tensorflow_datasets")
    config = vae_config.get_config(variant)
    assert config.data.name == variant and config.model.arch == "conv" and config.model.num_steps == 16
    small = smoke()
    for field in ("num_steps", "latent"):
        config.model[field] = small.model[field]
    config.model.channels = (4, 8)
    for field in ("batch_size", "total_steps", "log_every", "checkpoint_every", "num_devices", "num_grid",
                  "eval_every", "progress"):
        config[field] = small[field]
    config.data.data_dir = str(tmp_path)
    with tfds.testing.mock_data(num_examples=16):
        train.train(config, str(tmp_path / "run"))
    last = rows(str(tmp_path / "run"))[-1]
    assert last["step"] == config.total_steps and np.isfinite(last["loss"])
