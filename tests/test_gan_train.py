"""The GAN families through the training system: train, resume, sample, evaluate.

All runs use ``launch/configs/gan.py:smoke`` (T=2, widths 16, batch 8, 4 steps).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import REPO, child_env
from jaxspike.families import gan as gan_family
from jaxspike import metrics as metrics_lib
from jaxspike import train
from jaxspike.train import io
from launch.configs import gan as gan_config


def smoke(variant="smoke", **overrides):
    config = gan_config.get_config(variant)
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


def leaves(tree):
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(jax.device_get(tree))]


@pytest.fixture(scope="module")
def gan_run(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("gan_smoke"))
    return workdir, train.train(smoke(), workdir)


def test_spiking_gan_trains_end_to_end(gan_run):
    workdir, result = gan_run
    assert result.step == 4 and result.num_compiles == 1
    assert isinstance(result.state, gan_family.GANState) and int(result.state.step) == 4
    logged = rows(workdir)
    assert [r["step"] for r in logged] == [1, 2, 3, 4]
    for name in ("d_loss", "g_loss", "d_real", "d_fake", "d_grad_norm", "g_grad_norm", "rate/g0", "rate/d0"):
        assert all(np.isfinite(r[name]) for r in logged), name
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["2", "4"]
    assert os.path.getsize(os.path.join(workdir, "samples_4.png")) > 0
    assert not os.path.exists(os.path.join(workdir, "recons_4.png"))  # a GAN has no encoder
    saved = io.read_json(os.path.join(workdir, "config.json"))
    assert saved["model"]["name"] == "gan" and saved["loss"]["name"] == "ns"


@pytest.mark.slow
def test_gan_resume_equals_uninterrupted(gan_run, tmp_path):
    workdir, result = gan_run
    train.train(smoke(total_steps=2), str(tmp_path))
    resumed = train.train(smoke(), str(tmp_path))  # restores step 2: G, D, both Adam states, EMA
    assert resumed.step == 4
    assert rows(str(tmp_path)) == rows(workdir)
    for a, b in zip(leaves(result.state), leaves(resumed.state)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_sample_writes_ema_generator_images(gan_run, tmp_path):
    workdir, result = gan_run
    out = str(tmp_path / "s.npy")
    env = child_env()
    proc = subprocess.run([sys.executable, "-m", "launch.sample", f"--workdir={workdir}", "--num=6", f"--out={out}",
                           "--seed=1", "--chunk=4"], cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    samples = np.load(out)
    assert samples.shape == (6, 28, 28, 1) and samples.dtype == np.float32
    assert samples.min() >= 0.0 and samples.max() <= 1.0
    # They come from the generator EMA, not the raw generator weights.
    _, objective, state, _ = train.load_trained(workdir)
    for a, b in zip(leaves(state), leaves(result.state)):
        np.testing.assert_array_equal(a, b)
    first = np.asarray(objective.sample(state, jax.random.fold_in(jax.random.key(1), 0), 4))
    # Drawn from the EMA: a state whose raw generator is replaced gives the same samples.
    other = state._replace(g_params=jax.tree_util.tree_map(jnp.zeros_like, state.g_params))
    np.testing.assert_array_equal(np.asarray(objective.sample(other, jax.random.fold_in(jax.random.key(1), 0), 4)), first)
    np.testing.assert_allclose(samples[:4], first, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_mode_collapse_is_flagged(tmp_path, monkeypatch, caplog):
    """A generator whose samples all fall in one class: entropy 0 < 1.5 nats."""
    seen = []
    real_entropy = metrics_lib.class_entropy

    def one_class(samples, dataset, **kwargs):  # the real scores, from a one-class histogram
        seen.append(samples.shape)
        probs = np.zeros((len(samples), 10))
        probs[:, 3] = 1.0
        return {"fid": 99.0, "class_entropy": real_entropy(probs),
                "class_histogram": list(metrics_lib.class_histogram(probs, 10))}

    monkeypatch.setattr(metrics_lib, "evaluate_samples", one_class)
    with caplog.at_level(logging.WARNING, logger="jaxspike.train"):
        train.train(smoke(total_steps=2, eval_every=2, eval_num_samples=12, num_grid=0), str(tmp_path))
    assert seen == [(12, 28, 28, 1)]
    evals = [r for r in io.read_metrics(str(tmp_path / "metrics.jsonl")) if "eval/class_entropy" in r]
    assert len(evals) == 1 and evals[0]["eval/class_entropy"] == 0.0 and evals[0]["mode_collapse"] is True
    assert evals[0]["energy/energy_pj"] > 0 and "energy/layers/g0/synops" in evals[0]  # the generator's spikes
    assert any("mode collapse" in r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)


@pytest.mark.parametrize("variant", ["analog+smoke", pytest.param("hybrid+smoke", marks=pytest.mark.slow)])
def test_analog_and_hybrid_gans_train(tmp_path, monkeypatch, variant):
    monkeypatch.setattr(metrics_lib, "evaluate_samples", lambda s, d, **kw: {"class_entropy": 2.0})
    config = smoke(variant, total_steps=2, num_grid=0, eval_every=2, eval_num_samples=10)
    result = train.train(config, str(tmp_path))
    logged = rows(str(tmp_path))
    assert result.step == 2 and all(np.isfinite(r["d_loss"]) and np.isfinite(r["g_loss"]) for r in logged[:2])
    assert logged[-1]["mode_collapse"] is False  # 2.0 nats >= 1.5
    if variant.startswith("analog"):
        assert config.model.name == "analog_gan"
        # The analog generator's energy is its multiply-accumulates (dense 8->16->784).
        assert logged[-1]["energy/macs"] == 8 * 16 + 16 * 784


@pytest.mark.slow
def test_gan_seed_sweep_matches_single_runs(gan_run, tmp_path):
    ref_dir, ref = gan_run
    sweep = train.train(smoke(seeds="0,1", num_grid=0), str(tmp_path / "sweep"))
    assert sweep.num_compiles == 1
    a, b = rows(sweep.run_dirs[0]), rows(ref_dir)
    for ra, rb in zip(a, b):
        for k in ra:
            np.testing.assert_allclose(ra[k], rb[k], rtol=1e-4, atol=1e-5, err_msg=k)
    assert rows(sweep.run_dirs[0])[0]["d_loss"] != rows(sweep.run_dirs[1])[0]["d_loss"]


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("model.disc", "quantum", r"config.model.disc='quantum'"),
        ("loss.name", "lsgan", r"config.loss.name='lsgan'"),
        ("optimizer.d_learning_rate", 0.0, r"config.optimizer.d_learning_rate=0.0"),
        ("model.generator.readout", "phase", r"config.model.generator.readout='phase'"),
        ("loss.ema_decay", 1.0, r"config.loss.ema_decay=1.0"),
        ("model.neuron.surrogate", "erf", r"config.model.neuron.surrogate=.erf.: must be one of"),
        ("model.discriminator.mbstd_group", 3, r"config.model.discriminator.mbstd_group=3: .*dividing batch_size=8"),
        ("model.discriminator.mbstd_source", "pixel", r"config.model.discriminator.mbstd_source='pixel'"),
        ("model.discriminator.gradient", "exact", r"config.model.discriminator.gradient='exact'"),
        ("loss.g_homeostasis", -1.0, r"config.loss.g_homeostasis=-1.0"),
        ("loss.homeostasis_band", (0.5, 0.1), r"config.loss.homeostasis_band=\(0.5, 0.1\)"),
        ("loss.augment_shift", -2, r"config.loss.augment_shift=-2"),
        ("loss.cr_sigma", 0.0, r"config.loss.cr_sigma=0.0"),
        ("model.generator.num_steps", -1, r"config.model.generator.num_steps=-1"),
    ],
)
def test_bad_gan_config_gives_clear_error(tmp_path, field, value, message):
    with pytest.raises(train.ConfigError, match=message):
        train.train(smoke(**{field: value}), str(tmp_path))


def test_unknown_variant():
    with pytest.raises(ValueError, match="unknown config variant 'tiny'"):
        gan_config.get_config("tiny")
    for v in gan_config.VARIANTS:
        gan_config.get_config(v)


@pytest.mark.slow
def test_latent_walk_interpolates_firing_probabilities(gan_run):
    from jaxspike.models import gan as gan_lib

    workdir, _ = gan_run
    config, _, state, image_shape = train.load_trained(workdir)
    generator, _ = gan_family.make_models(config, image_shape)
    params = state.g_ema
    images = np.asarray(gan_lib.latent_walk(generator, params, jax.random.key(0), 2, 5))
    assert images.shape == (10,) + tuple(image_shape)
    again = np.asarray(gan_lib.latent_walk(generator, params, jax.random.key(0), 2, 5))
    np.testing.assert_array_equal(images, again)  # same key, same walk
    # Each row starts and ends at its own endpoints, so the two rows differ.
    assert np.abs(images[0] - images[5]).max() > 0 and np.abs(images[0] - images[4]).max() > 0


def test_gan_report_averages_seeds_and_checks_targets(tmp_path):
    def fake_run(folder, fid, energy_pj, last=10, **overrides):
        folder.mkdir(parents=True)
        config = smoke("analog" if overrides.pop("analog", False) else "smoke", **overrides).to_dict()
        (folder / "config.json").write_text(json.dumps({**config, "image_shape": [28, 28, 1]}))
        rows = [{"step": 5, "eval/fid": 2 * fid, "eval/class_entropy": 1.0, "eval/recall": 0.1,
                 "energy/energy_pj": energy_pj},
                {"step": last, "d_loss": 1.0, "time/elapsed_s": 5.0},
                {"step": last, "eval/fid": fid, "eval/class_entropy": 2.25, "eval/recall": 0.6,
                 "eval/space2/fid": 3 * fid, "eval/space2/recall": 0.55, "eval/mid_grey_frac": 0.1,
                 "eval/ref_mid_grey_frac": 0.088, "eval/memorisation": 0.7, "eval/memorisation_base": 0.67,
                 "energy/energy_pj": energy_pj}]
        (folder / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")

    for seed, fid in enumerate((100.0, 120.0)):
        fake_run(tmp_path / "spiking" / f"seed_{seed}", fid, 0.5e6, seed=seed)
    fake_run(tmp_path / "analog", 130.0, 2e6, analog=True)
    fake_run(tmp_path / "analog_u", 150.0, 2e6, analog=True, **{"model.noise": "uniform"})
    out = tmp_path / "gan.md"
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "launch.gan_report",
           f"--rows=spk={tmp_path / 'spiking'},ana={tmp_path / 'analog'},ana_u={tmp_path / 'analog_u'}",
           "--headline=spk", "--analog=ana", f"--out={out}", f"--figures={tmp_path / 'fig'}"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = out.read_text()
    row = next(line for line in text.splitlines() if line.startswith("| spk |"))
    assert "| 10 | 2 | 110.0 ± 14.1 |" in row and "| 0.50 ± 0.00 |" in row  # sample std; 0.5e6 pJ = 0.5 uJ
    assert "| feature FID <= analog twin's (both at 10 steps) | 110.0 vs 130.0 | **met** |" in text
    assert "(0.25x) | **met** |" in text and "| recall >= 0.5 | 0.60 | **met** |" in text
    assert "--config.seed=1" in text  # each seed's command
    # Both feature spaces, the pixels' mid-grey share and memorisation beside the real digits'.
    assert "| spk | 110.0 ± 14.1 | 330.0 ± 42.4 | - | - | 0.60 ± 0.00 | 0.55 ± 0.00 | - | - | 0.100 ± 0.000 |" in text
    assert "| real test digits |" in text and "| 0.088 | 0.67 |" in text
    # Each row names its generator: the twin's noise distribution as it ran.
    assert "| ana | analog (Gaussian noise) |" in text and "| ana_u | analog (U(0,1) noise) |" in text
    assert "--config.model.noise=uniform" in text
    # The table over training has every evaluation step of every row; the headline uses the last.
    assert "| spk | 5 | 220.0 ± 28.3 | 1.00 ± 0.00 | 0.10 ± 0.00 |" in text
    assert "| spk | 10 | 110.0 ± 14.1 | 2.25 ± 0.00 | 0.60 ± 0.00 |" in text and "| ana | 5 | 260.0 |" in text
    proc = subprocess.run(cmd[:3] + [f"--rows=x={tmp_path / 'missing'}", f"--out={out}"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "neither metrics.jsonl nor seed_<k>/" in proc.stderr
    # The FID target compares the two at the same number of steps.
    fake_run(tmp_path / "analog_longer", 90.0, 2e6, last=20, analog=True)
    proc = subprocess.run(cmd[:3] + [f"--rows=spk={tmp_path / 'spiking'},ana={tmp_path / 'analog_longer'}"] + cmd[4:],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "evaluations are at steps [10, 20]" in proc.stderr


def test_config_switches_reach_the_gan_modules():
    config = gan_config.get_config("smoke")
    config.model.generator.current_norm = True
    config.model.discriminator.current_norm = True
    config.model.discriminator.coding = "direct"
    generator, discriminator = gan_family.make_models(config, (28, 28, 1))
    assert generator.current_norm and discriminator.current_norm and discriminator.coding == "direct"
    z = generator.sample_noise(jax.random.key(0), 8)
    g_vars = generator.init(jax.random.key(1), z)
    assert "norm_scale" in g_vars["params"]["hidden_layers_0"]


@pytest.mark.slow
def test_generator_can_run_its_own_number_of_steps(tmp_path):
    config = smoke(**{"model.generator.num_steps": 5, "total_steps": 2})
    generator, discriminator = gan_family.make_models(config, (28, 28, 1))
    assert (generator.num_steps, discriminator.num_steps) == (5, config.model.num_steps)
    assert generator.sample_noise(jax.random.key(0), 3).shape == (5, 3, config.model.noise_dim)
    result = train.train(config, str(tmp_path))
    assert result.step == 2 and all(np.isfinite(r["g_loss"]) for r in rows(str(tmp_path)))
    config.model.generator.num_steps = 0  # the default: the shared model.num_steps
    assert gan_family.make_models(config, (28, 28, 1))[0].num_steps == config.model.num_steps
