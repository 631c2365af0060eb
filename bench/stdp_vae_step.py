"""Benchmark: a training step of the STDP-fronted spiking VAE, cached or not, against the default VAE.

    python -m bench.stdp_vae_step --frontend=$HOME/.cache/jaxspike/stdp_frontend

Three jitted training steps as the loop builds them (``launch/configs/vae.py``
and its ``:stdp`` variant, batch 128, the same 128 mnist5k training digits):

* ``default``: the default VAE (latency-coded pixels, 784 inputs);
* ``stdp``: the frozen STDP front end run inside every step
  (``config.frontend_cache=False``);
* ``stdp_cached``: its features read from the batch, computed once per
  training image (``config.frontend_cache=True``, the default);
* ``stdp_cached_e256``: the same with one 256-unit encoder layer behind the
  front end instead of the default's 512 and 256.

They are timed in alternating rounds (one call of each per round), so the
machine's drift lands in the ratios; ``x_default`` is the median over rounds
of each step's time over the default step's time in the same round. Also
times computing the cache for all 4,000 training digits as the loop does
once per run (``precompute_s``, compiling included) and, for the two steps without the front end, ``x_floor``:
the step time over the time of its dense layers' fp32 GEMMs (forward, weight
and input gradients) run alone (:func:`bench._common.time_against_floor`).
Prints one JSON line per step and one for the cache.
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

from absl import app, flags  # noqa: E402
import jax  # noqa: E402
import numpy as np  # noqa: E402

from bench import _common  # noqa: E402
from jaxspike import data  # noqa: E402
from jaxspike.local import stdp as local_stdp  # noqa: E402
from jaxspike import families  # noqa: E402
from launch.configs import vae as vae_config  # noqa: E402

flags.DEFINE_string("frontend", local_stdp.default_dir(), "launch.stdp run folder of the front end.")
flags.DEFINE_integer("steps", 4, "Front-end bins (the :stdp variant's ?steps=4).")
flags.DEFINE_integer("repeats", 20, "Timed rounds.")
FLAGS = flags.FLAGS


def _gemms(config, num_inputs: int) -> list[tuple[int, int, int]]:
    """Dense GEMMs of one step: forward, dW and dX (not for the data input) of each layer."""
    m = config.model
    rows = int(m.num_steps) * int(config.batch_size)
    sizes = [(num_inputs, m.encoder[0])] + list(zip(m.encoder[:-1], m.encoder[1:])) + [(m.encoder[-1], m.latent)]
    sizes += [(m.latent, m.decoder[0])] + list(zip(m.decoder[:-1], m.decoder[1:]))
    shapes = []
    for i, (n_in, n_out) in enumerate(sizes):
        shapes += [(rows, n_in, n_out), (n_in, rows, n_out)] + ([(rows, n_out, n_in)] if i else [])
    b, n = int(config.batch_size), m.decoder[-1]
    return shapes + [(b, n, 784), (n, b, 784), (b, 784, n)]  # the linear readout reads the time average


def _step(config, images: np.ndarray):
    objective = families.build(config, (28, 28, 1))
    batch = {"image": images}
    batch.update(objective.precompute(images))  # the cached step reads the features of the same digits
    state = jax.jit(objective.init)(jax.random.key(0), batch)
    step = jax.jit(objective.step)
    key = jax.random.key(1)
    return lambda: step(state, batch, key)[1]["loss"], objective


def main(_):
    train = data.load("mnist5k", "train")
    spec = f"{FLAGS.frontend}?steps={FLAGS.steps}"
    configs = {}
    for name, cache in (("default", None), ("stdp", False), ("stdp_cached", True), ("stdp_cached_e256", True)):
        config = vae_config.get_config()
        if cache is not None:
            config.model.frontend = spec
            config.model.frontend_cache = cache
        if name.endswith("e256"):
            config.model.encoder = (256,)
        configs[name] = config
    bs = int(configs["default"].batch_size)
    fns, objectives = {}, {}
    for name, config in configs.items():
        fns[name], objectives[name] = _step(config, train.images[:bs])
    # The cache for the whole training set, as the loop computes it (compiled by the call above).
    t0 = time.perf_counter()
    cache = objectives["stdp_cached"].precompute(train.images)
    precompute_s = time.perf_counter() - t0

    for fn in fns.values():  # compile and warm
        jax.block_until_ready(fn())
        jax.block_until_ready(fn())
    times = {name: [] for name in fns}
    for _ in range(FLAGS.repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            jax.block_until_ready(fn())
            times[name].append(time.perf_counter() - t0)
    times = {k: np.asarray(v) for k, v in times.items()}
    features = local_stdp.load_frontend(spec).num_features
    for name, t in times.items():
        record = {
            "bench": "stdp_vae_step",
            "step": name,
            "B": bs,
            "T": int(configs[name].model.num_steps),
            "median_s": float(np.median(t)),
            "p10_s": float(np.percentile(t, 10)),
            "p90_s": float(np.percentile(t, 90)),
            "steps_per_s": 1.0 / float(np.median(t)),
            "x_default": float(np.median(t / times["default"])),
        }
        if name != "stdp":
            inputs = 784 if name == "default" else features
            floor = _common.time_against_floor(fns[name], _gemms(configs[name], inputs), 5)
            record["x_floor"] = floor["x_floor"]
            record["gemm_gflop"] = floor["flops"] / 1e9
        _common.emit(record)
    _common.emit({"bench": "stdp_vae_step", "step": "precompute", "images": len(train.images),
                  "features": features, "bins": FLAGS.steps, "cache_mb": cache["frontend"].nbytes / 2**20,
                  "precompute_s": precompute_s, "peak_rss_mb": _common.peak_rss_mb()})


if __name__ == "__main__":
    app.run(main)
