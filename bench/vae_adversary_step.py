"""Benchmark: the default spiking VAE's training step with and without the adversarial term.

    python -m bench.vae_adversary_step

Both objectives come from ``launch/configs/vae.py`` (batch 128, T = 8) through
``jaxspike.families.build``; the adversarial one sets
``loss.adversary.weight`` > 0 (its discriminator's forward, backward and R1
pass run every step whatever ``start`` is). The two jitted steps are timed in
alternating rounds on the same batch, so drift on a noisy machine hits both
alike. Prints one JSON line: median seconds per step of each and their ratio.
"""

from __future__ import annotations

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

from absl import app, flags  # noqa: E402
import jax  # noqa: E402
import numpy as np  # noqa: E402

from bench import _common  # noqa: E402
from jaxspike import data, families  # noqa: E402
from launch.configs import vae as vae_config  # noqa: E402

flags.DEFINE_integer("repeats", 20, "timed rounds (one step of each objective per round)")
flags.DEFINE_float("weight", 100.0, "loss.adversary.weight of the adversarial objective")
FLAGS = flags.FLAGS


def _stepper(weight: float, images):
    config = vae_config.get_config()
    config.loss.adversary.weight = weight
    objective = families.build(config, images.shape[1:])
    step = jax.jit(objective.step)
    state = {"s": objective.init(jax.random.key(0), {"image": images}), "i": 0}

    def one():
        state["s"], metrics = step(state["s"], {"image": images}, jax.random.key(state["i"]))
        state["i"] += 1
        return metrics["loss"]

    return one


def main(_):
    config = vae_config.get_config()
    images = data.load("mnist5k", "train").images[: config.batch_size]
    runs = {"plain": _stepper(0.0, images), "adversarial": _stepper(FLAGS.weight, images)}
    for fn in runs.values():  # compile and warm up
        for _ in range(3):
            jax.block_until_ready(fn())
    times = {name: [] for name in runs}
    for _ in range(FLAGS.repeats):
        for name, fn in runs.items():
            times[name].append(float(_common.time_fn(fn, 1, warmup=0)[0]))
    med = {name: float(np.median(t)) for name, t in times.items()}
    _common.emit({
        "bench": "vae_adversary_step",
        "batch": int(config.batch_size),
        "T": int(config.model.num_steps),
        "weight": FLAGS.weight,
        "plain_median_s": med["plain"],
        "adversarial_median_s": med["adversarial"],
        "ratio": med["adversarial"] / med["plain"],
        "peak_rss_mb": _common.peak_rss_mb(),
    })


if __name__ == "__main__":
    app.run(main)
