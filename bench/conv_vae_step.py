"""Benchmark: one training step of the conv spiking VAE at the FSVAE sizes, against its own GEMM floor.

    python -m bench.conv_vae_step
    python -m bench.conv_vae_step --hoist=true --repeats=5

The model of ``launch/configs/vae.py`` with ``config.model.arch="conv"``,
``config.model.num_steps=16`` and ``config.batch_size=250`` (the sizes of
the Fully Spiking VAE, Kamata et al. 2022): 28 x 28 x 1 images, latency
coding, encoder LIF conv 3x3 stride 2 (1 -> 32, 28 -> 14) and 3x3 stride 2
(32 -> 64, 14 -> 7), latent 128 (relaxed estimator, mixture prior), decoder
LIF dense 128 -> 7*7*64, LIF transposed conv 4x4 stride 2 (64 -> 32, 7 -> 14)
and a non-spiking transposed conv 4x4 stride 2 (32 -> 1, 14 -> 28) whose
membrane is averaged over time; every hidden layer with per-step normalised
currents. The step timed is the family's own training step
(``jaxspike.families.build(config).step``: the ELBO of ``config.loss`` and
the config's optimiser), jitted, without the training loop around it. The
images are a fixed uniform draw (the step's cost does not depend on content).

Prints one JSON line: ``images_per_s`` = batch / median step time, and
``x_floor`` = step time / time of the step's own fp32 GEMMs run alone,
measured in alternating rounds (``bench._common.time_against_floor``):
every layer's forward product on ``T*B`` rows (im2col for a convolution,
the sub-pixel product for a transposed one, see ``bench/conv_layer.py``),
its weight gradient, and its input gradient except for the first layer's
(its input is data). The official PyTorch FSVAE code does 9.5 images/s at
these sizes on a 2-core machine.
"""

from __future__ import annotations

import math
import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from bench import _common
from jaxspike import families
from launch.configs import vae as vae_config

flags.DEFINE_integer("T", 16, "time steps")
flags.DEFINE_integer("B", 250, "batch size")
flags.DEFINE_enum("hoist", "auto", ["auto", "true", "false"], "synapse placement of every layer")
flags.DEFINE_integer("repeats", 10, "timed rounds (one step and one floor pass each)")
FLAGS = flags.FLAGS

FSVAE_IMAGES_PER_S = 9.5  # official PyTorch FSVAE code, same sizes, 2 cores


def gemm_shapes(T: int, B: int, channels=(32, 64), latent: int = 128, hw: int = 28) -> list[tuple[int, int, int]]:
    """``(m, k, n)`` of every GEMM of one training step (forward, dW, dX)."""
    rows = T * B
    c1, c2 = channels
    h1, h2 = hw // 2, hw // 4
    products = [  # (m, k, n, needs dX)
        (rows * h1 * h1, 9 * 1, c1, False),  # conv 3x3 s2, 1 -> c1
        (rows * h2 * h2, 9 * c1, c2, True),  # conv 3x3 s2, c1 -> c2
        (rows, h2 * h2 * c2, latent, True),  # latent readout
        (rows, latent, h2 * h2 * c2, True),  # decoder dense
        (rows * h2 * h2, 4 * c2, 4 * c1, True),  # transposed conv 4x4 s2, c2 -> c1 (sub-pixel)
        (rows * h1 * h1, 4 * c1, 4 * 1, True),  # transposed conv 4x4 s2, c1 -> 1
    ]
    shapes = []
    for m, k, n, dx in products:
        shapes += [(m, k, n), (k, m, n)] + ([(m, n, k)] if dx else [])
    return shapes


def main(_):
    T, B = FLAGS.T, FLAGS.B
    config = vae_config.get_config()
    config.model.arch = "conv"
    config.model.channels = (32, 64)
    config.model.num_steps = T
    config.batch_size = B
    config.model.hoist = {"auto": None, "true": True, "false": False}[FLAGS.hoist]
    objective = families.build(config, (28, 28, 1))

    images = jnp.asarray(np.random.default_rng(0).random((B, 28, 28, 1), dtype=np.float32))
    batch = {"image": images}
    state = {"s": jax.jit(objective.init)(jax.random.key(0), batch), "i": 0}
    step = jax.jit(objective.step)

    def one():
        state["s"], metrics = step(state["s"], batch, jax.random.key(state["i"]))
        state["i"] += 1
        return metrics["loss"]

    loss0 = float(one())
    timing = _common.time_against_floor(one, gemm_shapes(T, B, tuple(config.model.channels)), FLAGS.repeats)
    med = timing["median_s"]
    _common.emit(
        {
            "bench": "conv_vae_step",
            "T": T,
            "B": B,
            "hoist": FLAGS.hoist,
            "loss_first_step": loss0,
            "loss_finite": bool(math.isfinite(float(one()))),
            "images_per_s": B / med,
            "fsvae_images_per_s": FSVAE_IMAGES_PER_S,
            "median_s": med,
            "p10_s": timing["p10_s"],
            "p90_s": timing["p90_s"],
            "gemm_gflop": timing["flops"] / 1e9,
            "floor_s": timing["floor_s"],
            "x_floor": timing["x_floor"],
            "load1": round(os.getloadavg()[0], 2),
            "peak_rss_mb": _common.peak_rss_mb(),
        }
    )


if __name__ == "__main__":
    app.run(main)
