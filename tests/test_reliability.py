"""Faults injected into run folders: every one resumes from the newest good checkpoint or stops
with one line naming what is wrong, and none loses an older checkpoint.

In-process on the smoke config (4 steps, checkpoints at 2 and 4); the exit codes and
kill -9 in subprocesses. ``python -m bench.fault_soak`` repeats the kills many times.
"""

from __future__ import annotations

import errno
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from conftest import REPO, child_env
from jaxspike import train
from jaxspike.train import io, resume
from launch.configs import vae as vae_config


def smoke(**overrides):
    config = vae_config.get_config("smoke")
    config.update(num_devices=1, num_grid=0, **overrides)
    return config


def rows(run_dir):
    return [{k: v for k, v in r.items() if not k.startswith("time/")}
            for r in io.read_metrics(os.path.join(run_dir, "metrics.jsonl"))]


def leaves(tree):
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(jax.device_get(tree))]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted smoke run: checkpoints at steps 2 and 4."""
    workdir = str(tmp_path_factory.mktemp("reference"))
    return workdir, train.train(smoke(), workdir)


def _copy(reference, tmp_path):
    workdir, _ = reference
    shutil.copytree(workdir, tmp_path, dirs_exist_ok=True)
    return str(tmp_path)


def _resumes_to_the_reference(reference, workdir):
    """Resuming ``workdir`` to step 6 equals continuing the uninterrupted reference run."""
    ref_dir, _ = reference
    cont = train.train(smoke(total_steps=6), workdir)
    whole = os.path.join(os.path.dirname(workdir), "whole6")
    if not os.path.exists(whole):
        shutil.copytree(ref_dir, whole)
        train.train(smoke(total_steps=6), whole)
    assert rows(workdir) == rows(whole)
    assert [r["step"] for r in rows(workdir)] == [1, 2, 3, 4, 5, 6]
    final = train.load_trained(workdir)[2]
    for a, b in zip(leaves(final), leaves(train.load_trained(whole)[2])):
        np.testing.assert_array_equal(a, b)
    return cont


def test_an_empty_newest_step_folder_is_ignored(reference, tmp_path, caplog):
    workdir = _copy(reference, tmp_path / "run")
    os.makedirs(os.path.join(workdir, "checkpoints", "6"))  # a stray mkdir, or a copy cut short
    with caplog.at_level("WARNING", logger="jaxspike.train"):
        _resumes_to_the_reference(reference, workdir)
    assert any("checkpoints/6 holds no complete checkpoint" in r.getMessage() for r in caplog.records)
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["2", "4", "6", "incomplete_6"]


def test_a_step_folder_without_its_item_falls_back(reference, tmp_path, caplog):
    workdir = _copy(reference, tmp_path / "run")
    shutil.rmtree(os.path.join(workdir, "checkpoints", "4", "state"))
    with caplog.at_level("WARNING", logger="jaxspike.train"):
        _resumes_to_the_reference(reference, workdir)
    assert any("step 4" in r.getMessage() and "manifest" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("target", ["data", "metadata"])
def test_garbled_or_deleted_files_fail_their_checksums(reference, tmp_path, caplog, target):
    workdir = _copy(reference, tmp_path / "run")
    state_dir = os.path.join(workdir, "checkpoints", "4", "state")
    if target == "metadata":
        os.remove(os.path.join(state_dir, "_METADATA"))
    else:
        # Same size, other bytes: the largest data file has a run of bytes flipped.
        files = [os.path.join(d, f) for d, _, fs in os.walk(state_dir) for f in fs]
        path = max(files, key=os.path.getsize)
        data = bytearray(open(path, "rb").read())
        data[len(data) // 2 : len(data) // 2 + 16] = bytes(b ^ 0xFF for b in data[len(data) // 2 : len(data) // 2 + 16])
        open(path, "wb").write(bytes(data))
    with caplog.at_level("WARNING", logger="jaxspike.train"):
        _resumes_to_the_reference(reference, workdir)
    assert any("step 4" in r.getMessage() for r in caplog.records)
    assert os.path.isdir(os.path.join(workdir, "checkpoints", "corrupt_4"))  # kept aside, not deleted


def test_a_checkpoint_with_non_finite_values_is_not_restored(reference, tmp_path, caplog):
    workdir = _copy(reference, tmp_path / "run")
    ckpt = io.Checkpointer(os.path.join(workdir, "checkpoints"), keep=5)
    _, _, state, _ = train.load_trained(workdir)
    poisoned = jax.tree_util.tree_map(lambda x: x * np.nan if np.issubdtype(np.asarray(x).dtype, np.floating) else x, state)
    ckpt.save(6, poisoned.replace(step=state.step + 2))
    ckpt.close()
    with caplog.at_level("WARNING", logger="jaxspike.train"):
        result = train.train(smoke(total_steps=6), workdir)
    assert any("step 6" in r.getMessage() and "NaN" in r.getMessage() for r in caplog.records)
    assert result.step == 6 and all(np.isfinite(r["loss"]) for r in rows(workdir))


def test_only_bad_checkpoints_stop_the_run_instead_of_restarting(reference, tmp_path):
    workdir = _copy(reference, tmp_path / "run")
    for step in ("2", "4"):
        shutil.rmtree(os.path.join(workdir, "checkpoints", step, "state"))
    with pytest.raises(resume.NoUsableCheckpoint, match="left in place"):
        train.train(smoke(), workdir)
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["2", "4"]
    assert len(rows(workdir)) == 4  # the log is not rewritten either


def test_disk_full_while_saving_is_one_clear_error_and_loses_nothing(reference, tmp_path, monkeypatch):
    workdir = _copy(reference, tmp_path / "run")
    real = ocp.Checkpointer.save

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ocp.Checkpointer, "save", full)
    with pytest.raises(io.CheckpointWriteError, match=r"could not write checkpoint step 6 .*No space left"):
        train.train(smoke(total_steps=6), workdir)
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["2", "4"]  # no partial step left
    monkeypatch.setattr(ocp.Checkpointer, "save", real)
    _resumes_to_the_reference(reference, workdir)


def test_a_second_job_in_the_folder_is_refused(tmp_path):
    with io.RunLock(str(tmp_path)):
        with pytest.raises(io.RunFolderBusy, match=rf"in use by host \S+ pid {os.getpid()} since"):
            train.train(smoke(), str(tmp_path))
    assert not os.path.exists(tmp_path / "config.json")  # the refused job wrote nothing
    train.train(smoke(total_steps=2), str(tmp_path))  # the lock is free again


def test_bad_config_before_and_after_a_checkpoint(reference, tmp_path):
    empty = tmp_path / "fresh"
    with pytest.raises(train.ConfigError, match=r"config.model.neuron.surrogate='erf'"):
        train.train(smoke(**{"model": {**smoke().model.to_dict(), "neuron": {**smoke().model.neuron.to_dict(), "surrogate": "erf"}}}), str(empty))
    assert not os.path.exists(empty)  # checked before the folder is touched
    with pytest.raises(train.ConfigError, match=r"config.loss.likelihood='poisson'"):
        train.train(smoke(loss={**smoke().loss.to_dict(), "likelihood": "poisson"}), str(empty))
    with pytest.raises(train.ConfigError, match=r"config.modle: unknown field"):
        train.train(smoke(modle={}), str(empty))
    assert not os.path.exists(empty)

    workdir = _copy(reference, tmp_path / "run")
    lower = smoke(total_steps=6, optimizer={**smoke().optimizer.to_dict(), "learning_rate": 3e-4})
    with pytest.raises(train.ConfigError, match=r"optimizer.learning_rate: saved 0.001 != new 0.0003.*"
                                                 r"--allow_change=optimizer.learning_rate"):
        train.train(lower, workdir)
    result = train.train(lower, workdir, allow_change=("optimizer.learning_rate",))
    assert result.step == 6
    changes = [r for r in io.read_metrics(os.path.join(workdir, "metrics.jsonl")) if "config_change" in r]
    assert changes == [{"step": 4, "config_change": "optimizer.learning_rate: saved 0.001 != new 0.0003"}]


def test_a_folder_without_a_checkpoint_takes_a_new_config(tmp_path):
    # A run that crashed before its first checkpoint left only config.json behind.
    train.train(smoke(total_steps=1, checkpoint_every=1), str(tmp_path))
    shutil.rmtree(tmp_path / "checkpoints")
    result = train.train(smoke(**{"model": {**smoke().model.to_dict(), "latent": 6}}), str(tmp_path))
    assert result.step == 4 and io.read_json(str(tmp_path / "config.json"))["model"]["latent"] == 6


# --------------------------------------------------------------------------- subprocesses


def _launch(*args, timeout=300):
    env = child_env()
    return subprocess.run([sys.executable, "-m", "launch.train", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_exit_codes_and_one_line_messages(reference, tmp_path):
    workdir = _copy(reference, tmp_path / "busy")
    with io.RunLock(workdir):  # held by this test process
        busy = _launch("--config=launch/configs/vae.py:smoke", f"--workdir={workdir}")
    assert busy.returncode == 3, busy.stderr[-2000:]
    (line,) = [l for l in busy.stderr.splitlines() if l.startswith("launch.train: error:")]
    assert f"pid {os.getpid()}" in line and "Traceback" not in busy.stderr

    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    bad = _launch("--config=launch/configs/vae.py:smoke", f"--workdir={blocked}")
    assert bad.returncode == 2 and "is a file, not a folder" in bad.stderr and "Traceback" not in bad.stderr

    # A folder that cannot hold checkpoints (here "checkpoints" is a file; a read-only or full
    # disk gives the same class of error): exit 4, one line.
    unwritable = tmp_path / "unwritable"
    unwritable.mkdir()
    (unwritable / "checkpoints").write_text("")
    io_err = _launch("--config=launch/configs/vae.py:smoke", f"--workdir={unwritable}")
    assert io_err.returncode == 4, io_err.stderr[-2000:]
    assert "checkpoints" in io_err.stderr and "Traceback" not in io_err.stderr


def test_kill_9_at_random_points_resumes_to_the_same_weights(reference, tmp_path):
    """kill -9 twice at random moments (mid-step or mid-save), then run to the end: the same
    final weights and log as the uninterrupted run of the same length."""
    args = ["--config=launch/configs/vae.py:smoke", "--config.total_steps=12", "--config.checkpoint_every=1",
            "--config.num_grid=0"]
    whole = tmp_path / "whole"  # in this process: the same program as the launcher's
    train.train(smoke(total_steps=12, checkpoint_every=1), str(whole))
    cut = tmp_path / "cut"
    rng = random.Random(0)
    env = child_env()
    for _ in range(2):
        proc = subprocess.Popen([sys.executable, "-m", "launch.train", *args, f"--workdir={cut}"], cwd=REPO, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # Wait for the first checkpoint of this attempt, then kill at a random moment after it.
        deadline = time.time() + 240
        start = len(os.listdir(cut / "checkpoints")) if (cut / "checkpoints").exists() else 0
        while time.time() < deadline and proc.poll() is None:
            if (cut / "checkpoints").exists() and len(os.listdir(cut / "checkpoints")) > start:
                break
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 1.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    done = _launch(*args, f"--workdir={cut}")
    assert done.returncode == 0, done.stderr[-2000:]
    assert rows(str(cut)) == rows(str(whole))
    for a, b in zip(leaves(train.load_trained(str(cut))[2]), leaves(train.load_trained(str(whole))[2])):
        np.testing.assert_array_equal(a, b)
