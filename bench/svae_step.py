"""Benchmark: one training step of the fully-connected spiking VAE.

    python -m bench.svae_step

T = 16, batch 128, Adam 1e-3; input spikes Bernoulli(pixel) each step;
encoder 784 -> 512 LIF -> 256 LIF -> linear 256 -> 128 per-step Bernoulli
logits; latent z_t ~ Bernoulli(sigmoid(l_t)) with a straight-through
gradient; decoder 128 -> 256 LIF -> 512 LIF -> non-spiking 512 -> 784 readout
averaged over time; loss = pixel BCE + sum_t KL(Bern(q_t) || Bern(0.5)),
batch mean (``jaxspike.models.vae``). Inputs are 128 mnist5k-like images drawn
from a fixed uniform generator (the step's cost does not depend on content).

Prints one JSON line. ``x_floor`` = step time / time of the step's own fp32
GEMMs run alone, measured in the same run: every layer's forward product on
``T*B`` rows (the readout on ``B`` rows: it is linear, so the time average is
taken before the matmul), its weight gradient, and its input gradient except
for the first layer (its input is data).
"""

from __future__ import annotations

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

from absl import app, flags  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from bench import _common  # noqa: E402
from jaxspike.families import vae as vae_family  # noqa: E402
from jaxspike.models import vae  # noqa: E402

flags.DEFINE_integer("T", 16, "time steps")
flags.DEFINE_integer("B", 128, "batch size")
flags.DEFINE_enum("hoist", "auto", ["auto", "true", "false"], "synapse placement")
flags.DEFINE_integer("repeats", 30, "timed rounds (one step and one floor pass each)")
FLAGS = flags.FLAGS


def gemm_shapes(T, B, sizes_enc=(784, 512, 256, 128), sizes_dec=(128, 256, 512)):
    rows = T * B
    shapes = []
    layers_ = list(zip(sizes_enc[:-1], sizes_enc[1:])) + list(zip(sizes_dec[:-1], sizes_dec[1:]))
    for i, (n_in, n_out) in enumerate(layers_):
        shapes.append((rows, n_in, n_out))  # forward
        shapes.append((n_in, rows, n_out))  # dW
        if i > 0:
            shapes.append((rows, n_out, n_in))  # dX
    shapes += [(B, 512, 784), (512, B, 784), (B, 784, 512)]  # readout fwd, dW, dX
    return shapes


def main(_):
    T, B = FLAGS.T, FLAGS.B
    hoist = {"auto": None, "true": True, "false": False}[FLAGS.hoist]
    model = vae.FCSpikingVAE(num_steps=T, hoist=hoist)
    images = jnp.asarray(np.random.default_rng(0).random((B, 28, 28, 1), dtype=np.float32))
    params = model.init(jax.random.key(0), images, jax.random.key(1))["params"]
    opt = optax.adam(1e-3)
    opt_state = opt.init(params)

    @jax.jit
    def train_step(params, opt_state, images, key):
        grads, terms = jax.grad(lambda p: vae_family.elbo_loss(model, p, images, key), has_aux=True)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, terms["loss"]

    state = {"p": params, "o": opt_state, "i": 0}

    def one():
        state["p"], state["o"], loss = train_step(state["p"], state["o"], images, jax.random.key(state["i"]))
        state["i"] += 1
        return loss

    timing = _common.time_against_floor(one, gemm_shapes(T, B), FLAGS.repeats)
    med = timing["median_s"]
    _common.emit(
        {
            "bench": "svae_step",
            "T": T,
            "B": B,
            "hoist": FLAGS.hoist,
            "loss": float(one()),
            "steps_per_s": 1.0 / med,
            "median_s": med,
            "p10_s": timing["p10_s"],
            "p90_s": timing["p90_s"],
            "gemm_gflop": timing["flops"] / 1e9,
            "floor_s": timing["floor_s"],
            "x_floor": timing["x_floor"],
            "peak_rss_mb": _common.peak_rss_mb(),
        }
    )


if __name__ == "__main__":
    app.run(main)
