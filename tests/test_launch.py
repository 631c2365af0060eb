"""launch.train, launch.sample, launch.stdp and launch.rbm end to end, in subprocesses, as a user runs them."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import REPO, child_env

SMOKE = "--config=launch/configs/vae.py:smoke"


def run(module, *args, devices=1, timeout=240):
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=child_env(devices), capture_output=True,
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


@pytest.mark.slow
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


def test_fit_prior_writes_a_new_run_that_samples(trained, tmp_path):
    workdir, _ = trained
    out = str(tmp_path / "fitted")
    proc = run("launch.fit_prior", f"--workdir={workdir}", f"--out={out}", "--num_components=5", "--iters=3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "K=5 prior fitted to 4000 train posteriors" in proc.stdout
    with open(os.path.join(out, "config.json")) as f:
        saved = json.load(f)
    assert saved["model"]["num_components"] == 5 and saved["prior_fit"]["source"] == os.path.abspath(workdir)
    assert {"checkpoints", "samples_4.png", "recons_4.png"} <= set(os.listdir(out))
    with open(os.path.join(workdir, "config.json")) as f:
        assert json.load(f)["model"]["num_components"] != 5  # the trained run is left as it was
    npy = str(tmp_path / "s.npy")
    proc = run("launch.sample", f"--workdir={out}", "--num=4", f"--out={npy}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert np.load(npy).shape == (4, 28, 28, 1)
    for args, match in (((f"--out={workdir}",), "must be a new folder"), ((f"--out={out}",), "already holds a run")):
        proc = run("launch.fit_prior", f"--workdir={workdir}", *args)
        assert proc.returncode == 2 and match in proc.stderr, proc.stderr[-2000:]


def test_sample_without_checkpoint_is_a_clear_error(tmp_path):
    proc = run("launch.sample", f"--workdir={tmp_path}", "--num=4", f"--out={tmp_path / 's.npy'}")
    assert proc.returncode == 2 and "--workdir" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    proc = run("launch.sample", f"--workdir={tmp_path}", "--num=0", f"--out={tmp_path / 's.npy'}")
    assert proc.returncode == 2 and "--num=0" in proc.stderr


def test_sigterm_saves_a_checkpoint(tmp_path):
    env = child_env()
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


STDP_SMOKE = ("--smoke", "--shifts=1", "--distortions=2", "--rstdp_decay=linear")


@pytest.fixture(scope="module")
def stdp_smoke(tmp_path_factory):
    """One uninterrupted smoke run of launch.stdp (4 epoch steps: S1, S2, 2 x R-STDP)."""
    workdir = tmp_path_factory.mktemp("stdp_smoke")
    proc = run("launch.stdp", f"--workdir={workdir}", *STDP_SMOKE)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return workdir, proc


def _rows(path, drop=("time_s",)):
    with open(path) as f:
        return [{k: v for k, v in json.loads(line).items() if k not in drop} for line in f]


def _same_npz(a, b):
    with np.load(a) as fa, np.load(b) as fb:
        assert sorted(fa.files) == sorted(fb.files)
        for k in fa.files:
            np.testing.assert_array_equal(fa[k], fb[k], err_msg=k)


@pytest.mark.slow
def test_stdp_smoke_with_enlarged_rstdp_set(stdp_smoke):
    tmp_path, proc = stdp_smoke
    # 200 smoke digits + 1 shifted copy + 2 distorted copies of them.
    assert "R-STDP set 800 digits" in proc.stdout, proc.stdout[-2000:]
    with open(tmp_path / "config.json") as f:
        config = json.load(f)
    assert config["distortions"] == 2 and config["rstdp_decay"] == "linear" and config["shifts"] == 1
    with open(tmp_path / "metrics.json") as f:
        metrics = json.load(f)
    assert 0.0 <= metrics["test_acc"] <= 1.0 and metrics["test_energy_nj_per_image"] > 0
    files = set(os.listdir(tmp_path))
    assert {"filters1.png", "rstdp_accuracy.png", "params.npz", "history.jsonl", "checkpoints"} <= files
    assert "features.npz" not in files  # the feature cache lives only while the run does
    assert [r["step"] for r in _rows(tmp_path / "history.jsonl")] == [3, 4]


@pytest.mark.slow
@pytest.mark.parametrize("stop_after", [1, 3])  # inside S1/S2, and inside R-STDP (feature cache in use)
def test_stdp_interrupted_and_resumed_equals_uninterrupted(stdp_smoke, tmp_path, stop_after):
    ref, _ = stdp_smoke
    cut = run("launch.stdp", f"--workdir={tmp_path}", *STDP_SMOKE, f"--stop_after={stop_after}")
    assert cut.returncode == 0, cut.stderr[-3000:]
    assert f"stopped after epoch step {stop_after} of 4" in cut.stderr
    assert not (tmp_path / "metrics.json").exists()
    assert (tmp_path / "features.npz").exists() == (stop_after == 3)
    resumed = run("launch.stdp", f"--workdir={tmp_path}", *STDP_SMOKE)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming {tmp_path} from its checkpoint after epoch step {stop_after}" in resumed.stdout
    _same_npz(ref / "params.npz", tmp_path / "params.npz")
    assert _rows(ref / "history.jsonl") == _rows(tmp_path / "history.jsonl")
    with open(ref / "metrics.json") as f, open(tmp_path / "metrics.json") as g:
        a, b = json.load(f), json.load(g)
    assert b["resumed_from_step"] == stop_after
    for k in ("test_acc", "train_acc", "probe_fired_test_acc", "test_synops_total", "convergence1", "convergence2"):
        assert a[k] == b[k], k


@pytest.mark.slow
def test_stdp_resume_with_other_flags_is_refused(stdp_smoke, tmp_path):
    ref, _ = stdp_smoke
    shutil.copytree(ref, tmp_path / "run")
    proc = run("launch.stdp", f"--workdir={tmp_path / 'run'}", *STDP_SMOKE, "--dropout=0.1")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "different config (dropout: saved 0.0 != new 0.1)" in proc.stderr


def test_stdp_bad_flag_is_a_clear_error(tmp_path):
    bad = run("launch.stdp", f"--workdir={tmp_path}", "--smoke", "--distortions=-1")
    assert bad.returncode != 0 and "--distortions must be >= 0" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.slow
def test_stdp_sigterm_stops_cleanly(tmp_path):
    env = child_env()
    proc = subprocess.Popen([sys.executable, "-m", "launch.stdp", f"--workdir={tmp_path}", *STDP_SMOKE], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # config.json is written once the signal handler is in place, before data loading and compiling.
    deadline = time.time() + 120
    while time.time() < deadline and not (tmp_path / "config.json").exists():
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert "interrupted by signal 15 during S1 epoch 0" in err and "Traceback" not in err, err[-2000:]


RBM_SMOKE = ("--smoke",)


@pytest.mark.slow
def test_rbm_interrupted_and_resumed_equals_uninterrupted(tmp_path):
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    whole = run("launch.rbm", f"--workdir={ref}", *RBM_SMOKE)
    assert whole.returncode == 0, whole.stderr[-3000:]
    first = run("launch.rbm", f"--workdir={cut}", *RBM_SMOKE, "--stop_after=1")
    assert first.returncode == 0 and "stopped after epoch 1 of 2" in first.stderr, first.stderr[-3000:]
    assert not (cut / "params.npz").exists() and (cut / "checkpoints" / "1").is_dir()
    # The sampling flags may differ on resume; the training ones may not.
    refused = run("launch.rbm", f"--workdir={cut}", *RBM_SMOKE, "--lr=0.01")
    assert refused.returncode == 1 and "different config (lr: saved 0.05 != new 0.01)" in refused.stderr
    assert "Traceback" not in refused.stderr
    second = run("launch.rbm", f"--workdir={cut}", *RBM_SMOKE, "--label_gain=1")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resuming" in second.stdout and "after epoch 1 of 2" in second.stdout
    _same_npz(ref / "params.npz", cut / "params.npz")
    assert _rows(ref / "metrics.jsonl") == _rows(cut / "metrics.jsonl")
    np.testing.assert_array_equal(np.load(ref / "samples_gain1_steps20.npy"), np.load(cut / "samples_gain1_steps20.npy"))
