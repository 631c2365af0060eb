"""launch.train, launch.sample and launch.stdp end to end, in subprocesses, as a user runs them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOKE = "--config=launch/configs/vae.py:smoke"


def run(module, *args, devices=1, timeout=240):
    env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="2",
               XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("smoke_run"))
    proc = run("launch.train", SMOKE, f"--workdir={workdir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return workdir, proc


def test_train_smoke_end_to_end(trained):
    workdir, proc = trained
    assert "launch.train: done, step 4" in proc.stdout
    files = set(os.listdir(workdir))
    assert {"config.json", "metrics.jsonl", "checkpoints", "samples_4.png", "recons_4.png"} <= files
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        assert len(f.readlines()) == 4
    # A second launch finds the checkpoint and has nothing left to do.
    again = run("launch.train", SMOKE, f"--workdir={workdir}")
    assert again.returncode == 0 and "step 4" in again.stdout, again.stderr[-2000:]


def test_sample_writes_reproducible_images(trained, tmp_path):
    workdir, _ = trained
    out5, out3 = str(tmp_path / "s5.npy"), str(tmp_path / "sub" / "s3.npy")
    proc = run("launch.sample", f"--workdir={workdir}", "--num=5", f"--out={out5}", "--seed=3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = run("launch.sample", f"--workdir={workdir}", "--num=3", f"--out={out3}", "--seed=3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    s5, s3 = np.load(out5), np.load(out3)
    assert s5.shape == (5, 28, 28, 1) and s5.dtype == np.float32
    assert s5.min() >= 0.0 and s5.max() <= 1.0
    np.testing.assert_array_equal(s5[:3], s3)  # same seed, same samples


@pytest.mark.parametrize(
    "args, devices, message",
    [
        (["--config.model.latent=0"], 1, "config.model.latent=0"),
        (["--config.data.name=nope"], 1, "config.data.name='nope': unknown dataset"),
        (["--config.batch_size=6"], 4, "config.batch_size=6 is not divisible by the 4 devices"),
        (["--seeds=0,x"], 1, "--seeds"),
    ],
)
def test_bad_flags_give_clear_errors(tmp_path, args, devices, message):
    proc = run("launch.train", SMOKE, f"--workdir={tmp_path}", *args, devices=devices)
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-2000:]


def test_bad_config_variant_and_missing_workdir(tmp_path):
    proc = run("launch.train", "--config=launch/configs/vae.py:tiny", f"--workdir={tmp_path}")
    assert proc.returncode != 0 and "unknown config variant 'tiny'" in proc.stderr
    proc = run("launch.train", SMOKE)
    assert proc.returncode != 0 and "--workdir" in proc.stderr


def test_sample_without_checkpoint_is_a_clear_error(tmp_path):
    proc = run("launch.sample", f"--workdir={tmp_path}", "--num=4", f"--out={tmp_path / 's.npy'}")
    assert proc.returncode == 2 and "--workdir" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    proc = run("launch.sample", f"--workdir={tmp_path}", "--num=0", f"--out={tmp_path / 's.npy'}")
    assert proc.returncode == 2 and "--num=0" in proc.stderr


def test_sigterm_saves_a_checkpoint(tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=1")
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    args = [sys.executable, "-m", "launch.train", SMOKE, f"--workdir={tmp_path}", "--config.total_steps=100000",
            "--config.checkpoint_every=100000", "--config.num_grid=0"]
    proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (metrics.exists() and len(metrics.read_text().splitlines()) >= 3):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert "interrupted by signal" in err
    steps = [int(d) for d in os.listdir(tmp_path / "checkpoints") if d.isdigit()]
    assert len(steps) == 1 and 3 <= steps[0] < 100000


def test_stdp_smoke_with_enlarged_rstdp_set(tmp_path):
    proc = run("launch.stdp", f"--workdir={tmp_path}", "--smoke", "--shifts=1", "--distortions=2",
               "--rstdp_decay=linear")
    assert proc.returncode == 0, proc.stderr[-3000:]
    # 200 smoke digits + 1 shifted copy + 2 distorted copies of them.
    assert "R-STDP set 800 digits" in proc.stdout, proc.stdout[-2000:]
    with open(tmp_path / "config.json") as f:
        config = json.load(f)
    assert config["distortions"] == 2 and config["rstdp_decay"] == "linear" and config["shifts"] == 1
    with open(tmp_path / "metrics.json") as f:
        metrics = json.load(f)
    assert 0.0 <= metrics["test_acc"] <= 1.0 and metrics["test_energy_nj_per_image"] > 0
    assert {"filters1.png", "rstdp_accuracy.png", "params.npz", "history.jsonl"} <= set(os.listdir(tmp_path))
    bad = run("launch.stdp", f"--workdir={tmp_path}", "--smoke", "--distortions=-1")
    assert bad.returncode != 0 and "--distortions must be >= 0" in bad.stderr and "Traceback" not in bad.stderr
