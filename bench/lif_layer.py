"""Benchmark: one LIF layer, loss = total output spikes, time loss + dL/dW.

    python -m bench.lif_layer --T 100 --B 64
    python -m bench.lif_layer --T 500 --B 16
    python -m bench.lif_layer --T 2000 --B 16 --remat 0
    python -m bench.lif_layer --T 2000 --B 16 --remat 45

Input ``x = (rng(0).random((T, B, 784)) < 0.1)`` as float32, weights
``W = rng(1).uniform(-1/28, 1/28, (784, 512))``, no bias, ``I_t = x_t W``;
default LIF (beta 0.9, thr 1, reset by subtraction, fast sigmoid slope 25).
Prints one JSON line. ``x_floor`` = measured time / time of the workload's two
fp32 GEMMs (forward ``[T*B, 784] x [784, 512]`` and ``dW = x^T g``) measured
in the same run. snnTorch's ``Leaky`` gives 30056 spikes at (100, 64) and
39245 at (500, 16) on these arrays.
"""

from __future__ import annotations

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

from absl import app, flags  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from bench import _common  # noqa: E402
from jaxspike import cells, layers, surrogates  # noqa: E402

flags.DEFINE_integer("T", 100, "time steps")
flags.DEFINE_integer("B", 64, "batch size")
flags.DEFINE_integer("remat", 0, "remat chunk length (0 = no rematerialisation)")
flags.DEFINE_enum("hoist", "auto", ["auto", "true", "false"], "synapse outside (true) or inside (false) the scan")
flags.DEFINE_integer("unroll", 1, "scan unroll")
flags.DEFINE_integer("repeats", 20, "timed rounds (one call and one floor pass each)")
FLAGS = flags.FLAGS

N_IN, N_OUT = 784, 512


def main(_):
    T, B = FLAGS.T, FLAGS.B
    x = (np.random.default_rng(0).random((T, B, N_IN), dtype=np.float32) < 0.1).astype(np.float32)
    W = np.random.default_rng(1).uniform(-1 / 28, 1 / 28, (N_IN, N_OUT)).astype(np.float32)
    x, W = jnp.asarray(x), jnp.asarray(W)
    hoist = {"auto": None, "true": True, "false": False}[FLAGS.hoist]
    layer = layers.SpikingDense(
        N_OUT,
        cell=cells.lif(0.9, 1.0, surrogates.fast_sigmoid(25.0)),
        use_bias=False,
        hoist=hoist,
        remat_chunk=FLAGS.remat,
        unroll=FLAGS.unroll,
    )

    def loss_fn(w, x):
        _, aux = layer.apply({"params": {"kernel": w}}, x)
        return jnp.sum(aux["spike_count"])

    step = jax.jit(jax.value_and_grad(loss_fn))
    total, grad = step(W, x)
    timing = _common.time_against_floor(
        lambda: step(W, x), [(T * B, N_IN, N_OUT), (N_IN, T * B, N_OUT)], FLAGS.repeats
    )
    med = timing["median_s"]
    _common.emit(
        {
            "bench": "lif_layer",
            "T": T,
            "B": B,
            "hoist": FLAGS.hoist,
            "remat": FLAGS.remat,
            "total_spikes": int(total),
            "grad_finite": bool(jnp.all(jnp.isfinite(grad))),
            "median_s": med,
            "p10_s": timing["p10_s"],
            "p90_s": timing["p90_s"],
            "gflops": timing["flops"] / med / 1e9,
            "floor_s": timing["floor_s"],
            "x_floor": timing["x_floor"],
            "xla_temp_mb": _common.temp_mb(step, W, x),
            "peak_rss_mb": _common.peak_rss_mb(),
        }
    )


if __name__ == "__main__":
    app.run(main)
