"""Benchmark: one R-STDP epoch of the decision layer, matmul potentials against lax.conv.

    python -m bench.rstdp_epoch

Times ``spyketorch_net.make_rstdp_epoch`` (the launch script's epoch: chunks
of 1,000 examples, 10 decided per group, adaptive rates) on 4,000 synthetic
pooled-S2 feature maps ``[4, 4, C2]`` (each unit fired with probability 0.34,
the firing rate of the trained network on mnist5k), in two builds:

* ``matmul``: the library's ``decide``, potentials as one
  ``[10 * 16, 25 * C2] x [25 * C2, maps]`` product over stacked shifted inputs;
* ``conv``: the same epoch with ``net._decision_potentials`` swapped for
  ``lax.conv_general_dilated`` (the previous implementation) while the epoch
  is traced.

They are timed in alternating rounds, so the machine's drift lands in the
ratio (``x_matmul`` = median over rounds of conv time / matmul time). The
floor is the epoch's 400 potential GEMMs run alone as jitted fp32 products
(``x_floor`` = epoch time / floor; updates, argmax and gathers counted free).
Prints one JSON line per build.
"""

from __future__ import annotations

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

from absl import app, flags  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from bench import _common  # noqa: E402
from jaxspike.models import spyketorch_net as net  # noqa: E402

_ROUNDS = flags.DEFINE_integer("rounds", 5, "Alternating timing rounds.")
_EXAMPLES = flags.DEFINE_integer("examples", 4000, "Examples per epoch (a multiple of 1,000).")
_C2 = flags.DEFINE_integer("c2", 100, "S2 feature maps.")


def _conv_potentials(padded, w3):
    """``net._decision_potentials`` by lax.conv_general_dilated (the previous form)."""
    return jax.lax.conv_general_dilated(padded, w3, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))


def main(argv):
    del argv
    if _EXAMPLES.value < 1000 or _EXAMPLES.value % 1000:
        raise app.UsageError(f"--examples must be a positive multiple of 1000, got {_EXAMPLES.value}")
    cfg = net.NetConfig(c2=_C2.value)
    n = _EXAMPLES.value
    key = jax.random.key(0)
    fired = jax.random.bernoulli(jax.random.fold_in(key, 1), 0.34, (n, 4, 4, cfg.c2)).astype(jnp.float32)
    labels = jax.random.randint(jax.random.fold_in(key, 2), (n,), 0, cfg.num_classes)
    order = jax.random.permutation(jax.random.fold_in(key, 3), n)
    w3 = net.init_params(key, cfg).w3
    rates = 4.0 * jnp.array([0.004, -0.003, -0.004, 0.0005])
    args = (w3, jnp.array([0.9, 0.1]), fired, labels, order, rates, True, jax.random.key(1))
    epoch = net.make_rstdp_epoch(cfg, batch=1000, decide_every=10)

    builds = {"matmul": jax.jit(epoch).lower(*args).compile()}
    library_potentials = net._decision_potentials
    net._decision_potentials = _conv_potentials  # read by decide while the epoch is traced
    try:
        # A new closure, so jit traces it afresh rather than reusing the first trace.
        conv_epoch = net.make_rstdp_epoch(cfg, batch=1000, decide_every=10)
        builds["conv"] = jax.jit(conv_epoch).lower(*args).compile()
    finally:
        net._decision_potentials = library_potentials

    maps = cfg.num_classes * cfg.per_class
    groups = n // 10
    a = jnp.ones((10 * 16, 25 * cfg.c2), jnp.float32)
    b = jnp.ones((25 * cfg.c2, maps), jnp.float32)
    gemm = jax.jit(lambda a, b: a @ b)

    times = {name: [] for name in builds}
    floors, hits = [], {}
    for name, fn in builds.items():
        hits[name] = int(jax.block_until_ready(fn(*args))[2])  # warm-up
    for _ in range(_ROUNDS.value):
        for name, fn in builds.items():
            times[name].append(float(_common.time_fn(lambda: fn(*args), 1, warmup=0)[0]))
        floors.append(groups * float(np.median(_common.time_fn(lambda: gemm(a, b), 5, warmup=1))))
    times = {k: np.asarray(v) for k, v in times.items()}
    floors = np.asarray(floors)
    for name in builds:
        rec = {
            "bench": "rstdp_epoch",
            "build": name,
            "examples": n,
            "c2": cfg.c2,
            "median_s": float(np.median(times[name])),
            "examples_per_s": float(n / np.median(times[name])),
            "floor_s": float(np.median(floors)),
            "x_floor": float(np.median(times[name] / floors)),
            "x_matmul": float(np.median(times[name] / times["matmul"])),
            "online_hits": hits[name],
            "device": jax.devices()[0].device_kind,
            "jax": jax.__version__,
        }
        _common.emit(rec)


if __name__ == "__main__":
    app.run(main)
