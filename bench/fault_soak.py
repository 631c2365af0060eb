"""Fault soak of the training loop: kill -9 at random moments, many times, then resume to the end.

    python -m bench.fault_soak --kills=20 --workdir=/tmp/soak [--seed=0]

Trains the smoke config for ``--steps`` steps with a checkpoint after every step, once
uninterrupted and once under ``--kills`` SIGKILLs at random moments (a third of them timed to
land while a checkpoint is being written: a ``.partial`` step folder on disk), each followed by a
rerun of the same command; then checks that the interrupted run ends with the same
``metrics.jsonl`` and the same final weights as the uninterrupted one. Then runs each failure
class once (a second job, a file for a folder, a bad config, a non-finite loss, an empty and a
garbled newest checkpoint) and reports its exit code and message. One JSON line per part.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

from absl import app, flags

flags.DEFINE_string("workdir", "/tmp/jaxspike_soak", "Scratch folder (emptied first).")
flags.DEFINE_integer("kills", 20, "SIGKILLs to inject.")
flags.DEFINE_integer("steps", 40, "Training steps of the soaked run.")
flags.DEFINE_integer("seed", 0, "Seed of the kill times.")
flags.DEFINE_list("parts", ["soak", "classes"], "What to run: the kill -9 soak, the failure classes, or both.")
FLAGS = flags.FLAGS

SMOKE = ["--config=launch/configs/vae.py:smoke", "--config.num_grid=0", "--config.checkpoint_every=1",
         "--config.keep_checkpoints=2"]


def _env():
    return dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=1",
                PYTHONPATH=os.getcwd() + os.pathsep + os.environ.get("PYTHONPATH", ""))


def _run(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "launch.train", *args], env=_env(), capture_output=True, text=True,
                          timeout=timeout)


def _rows(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [{k: v for k, v in json.loads(line).items() if not k.startswith("time/")} for line in f if line.strip()]


def _steps(workdir):
    ckpt = os.path.join(workdir, "checkpoints")
    return sorted(int(n) for n in os.listdir(ckpt) if n.isdigit()) if os.path.isdir(ckpt) else []


def _final_weights(workdir):
    import jax
    import numpy as np

    from jaxspike import train

    return [np.asarray(x) for x in jax.tree_util.tree_leaves(train.load_trained(workdir)[2])]


def soak(root: str) -> dict:
    rng = random.Random(FLAGS.seed)
    args = SMOKE + [f"--config.total_steps={FLAGS.steps}"]
    whole, cut = os.path.join(root, "whole"), os.path.join(root, "cut")
    assert _run(*args, f"--workdir={whole}").returncode == 0
    kills = mid_save = resumes = 0
    lost = []
    while kills < FLAGS.kills:
        before = max(_steps(cut), default=0)
        if before >= FLAGS.steps:
            break
        proc = subprocess.Popen([sys.executable, "-m", "launch.train", *args, f"--workdir={cut}"], env=_env(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        resumes += before > 0
        aim_mid_save = rng.random() < 1 / 3
        # Let the resumed run train at least one step first, then kill after a random delay
        # (or, for a third of the kills, as soon as a checkpoint is being written).
        logged0 = len(_rows(cut)) if os.path.exists(os.path.join(cut, "metrics.jsonl")) else 0
        while proc.poll() is None and (not os.path.exists(os.path.join(cut, "metrics.jsonl"))
                                       or len(_rows(cut)) <= min(logged0, before)):
            time.sleep(0.01)
        deadline = time.time() + rng.uniform(0.0, 2.0)
        while proc.poll() is None and time.time() < deadline:
            if aim_mid_save and os.path.isdir(os.path.join(cut, "checkpoints")) and any(
                n.endswith(".partial") for n in os.listdir(os.path.join(cut, "checkpoints"))
            ):
                break
            time.sleep(0.005)
        if proc.poll() is not None:  # finished before the kill
            break
        in_save = os.path.isdir(os.path.join(cut, "checkpoints")) and any(
            n.endswith(".partial") for n in os.listdir(os.path.join(cut, "checkpoints")))
        logged = len(_rows(cut)) if os.path.exists(os.path.join(cut, "metrics.jsonl")) else 0
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        mid_save += in_save
        # Steps done but not checkpointed are what the kill lost (at most one checkpoint interval).
        lost.append(max(logged - max(_steps(cut), default=0), 0))
    done = _run(*args, f"--workdir={cut}")
    resumes += 1
    import numpy as np

    identical = done.returncode == 0 and _rows(cut) == _rows(whole) and all(
        np.array_equal(a, b) for a, b in zip(_final_weights(cut), _final_weights(whole)))
    return {"bench": "fault_soak", "part": "kill -9", "steps": FLAGS.steps, "kills": kills, "kills_mid_save": mid_save,
            "resumes": resumes, "max_steps_lost": max(lost, default=0), "checkpoint_every": 1,
            "bit_identical_finish": bool(identical)}


def failure_classes(root: str) -> list[dict]:
    out = []
    base = os.path.join(root, "base")
    assert _run(*SMOKE, f"--workdir={base}").returncode == 0

    def case(name, *args, prepare=None):
        workdir = os.path.join(root, name.replace(" ", "_"))
        if prepare is not None:
            prepare(workdir)
        proc = _run(*args, f"--workdir={workdir}")
        lines = [line for line in proc.stderr.splitlines() if line.startswith("launch.train: error:")]
        out.append({"bench": "fault_soak", "part": name, "exit_code": proc.returncode,
                    "message": lines[-1] if lines else "", "traceback": "Traceback" in proc.stderr,
                    "stderr_lines_of_error": len(lines)})

    def copy(workdir):
        shutil.copytree(base, workdir)

    def file_folder(workdir):
        with open(workdir, "w") as f:
            f.write("not a folder")

    def empty_newest(workdir):
        copy(workdir)
        os.makedirs(os.path.join(workdir, "checkpoints", "9"))

    def garbled_newest(workdir):
        copy(workdir)
        state = os.path.join(workdir, "checkpoints", "4", "state")
        path = max((os.path.join(d, f) for d, _, fs in os.walk(state) for f in fs), key=os.path.getsize)
        data = bytearray(open(path, "rb").read())
        data[len(data) // 2] ^= 0xFF
        open(path, "wb").write(bytes(data))

    case("bad config field", *SMOKE, "--config.model.latent=0")
    case("file as run folder", *SMOKE, prepare=file_folder)
    case("non-finite loss", *SMOKE, "--config.optimizer.learning_rate=1e30")
    case("empty newest step folder", *SMOKE, "--config.total_steps=6", prepare=empty_newest)
    case("garbled newest checkpoint", *SMOKE, "--config.total_steps=6", prepare=garbled_newest)
    # A second job while the first runs.
    busy = os.path.join(root, "busy")
    first = subprocess.Popen([sys.executable, "-m", "launch.train", *SMOKE, "--config.total_steps=400",
                              f"--workdir={busy}"], env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True)
    while not os.path.exists(os.path.join(busy, "metrics.jsonl")):  # training, so SIGTERM below is caught
        time.sleep(0.05)
    proc = _run(*SMOKE, f"--workdir={busy}")
    lines = [line for line in proc.stderr.splitlines() if line.startswith("launch.train: error:")]
    out.append({"bench": "fault_soak", "part": "second job in the folder", "exit_code": proc.returncode,
                "message": lines[-1] if lines else "", "traceback": "Traceback" in proc.stderr,
                "stderr_lines_of_error": len(lines)})
    first.send_signal(signal.SIGTERM)
    _, err = first.communicate()
    lines = [line for line in err.splitlines() if line.startswith("launch.train: error:")]
    out.append({"bench": "fault_soak", "part": "SIGTERM", "exit_code": first.returncode,
                "message": lines[-1] if lines else "", "traceback": "Traceback" in err,
                "stderr_lines_of_error": len(lines)})
    return out


def main(argv):
    del argv
    root = os.path.abspath(FLAGS.workdir)
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    if "soak" in FLAGS.parts:
        print(json.dumps(soak(root)), flush=True)
    if "classes" in FLAGS.parts:
        for row in failure_classes(root):
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    app.run(main)
