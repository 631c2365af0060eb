"""Benchmark: the frozen S1-S2 feature pass of the STDP digit network, against its GEMM floor.

    python -m bench.feature_pass
    taskset -c 1 python -m bench.feature_pass --batch=100   # one core, as launch.stdp's runs

Times ``spyketorch_net.features`` (what ``launch.stdp`` runs over every
digit before R-STDP: DoG latency coding, S1 conv + fire, pooling, S2 conv +
fire, pooling) on ``--batch`` real mnist5k digits, and its parts run alone:
the encoding, its rank-order latency step (``stdp.intensity_to_latency``,
and for comparison the same step with the rank found by a second argsort,
the earlier form, instead of one scatter: ``x_rank_scatter``) and the
two convolutions over all T time steps (``stdp.conv_potentials``). The floor is the two convolutions as im2col
GEMMs (``[T*B*H*W, k*k*C_in] x [k*k*C_in, C_out]``) timed in alternating
rounds with the pass (``_common.time_against_floor``). Weights are the
untrained initial ones: the work does not depend on their values.
Prints one JSON line.
"""

from __future__ import annotations

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

from absl import app, flags  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from bench import _common  # noqa: E402
from jaxspike import data, stdp  # noqa: E402
from jaxspike.models import spyketorch_net as net  # noqa: E402

_BATCH = flags.DEFINE_integer("batch", 100, "Digits per call (launch.stdp uses 100).")
_ROUNDS = flags.DEFINE_integer("rounds", 5, "Alternating timing rounds.")
_C2 = flags.DEFINE_integer("c2", 100, "S2 feature maps.")


def _inverse_by_argsort(order):
    """``stdp._inverse_permutation`` by a second argsort (the earlier form)."""
    return jnp.argsort(order, axis=1, stable=True)


def main(argv):
    del argv
    if _BATCH.value < 1 or _ROUNDS.value < 1:
        raise app.UsageError(f"--batch and --rounds must be >= 1, got {_BATCH.value}, {_ROUNDS.value}")
    cfg = net.NetConfig(c2=_C2.value)
    b, t = _BATCH.value, cfg.num_steps
    params = net.init_params(jax.random.key(0), cfg)
    images = jnp.asarray(data.load("mnist5k", "train").images[:b])

    feat = jax.jit(lambda x: net.features(params, x, cfg))
    encode = jax.jit(lambda x: net.encode(x, cfg))
    spikes_in = encode(images)
    in2 = jax.jit(lambda s: net._layer2_input(net._layer1(params.w1, s, cfg)[0]))(spikes_in)
    dog = jax.jit(lambda x: stdp.dog_filter(x, net._DOG, cfg.dog_threshold, cfg.norm_radius))(images)
    latency = jax.jit(lambda v: stdp.intensity_to_latency(v, t))
    library_inverse = stdp._inverse_permutation
    stdp._inverse_permutation = _inverse_by_argsort  # read by intensity_to_latency while it is traced
    try:
        latency_old = jax.jit(lambda v: stdp.intensity_to_latency(v, t)).lower(dog).compile()
    finally:
        stdp._inverse_permutation = library_inverse
    if not bool(jnp.array_equal(latency(dog), latency_old(dog))):
        raise AssertionError("the two latency forms disagree")
    conv1 = jax.jit(lambda s: stdp.conv_potentials(s, params.w1, padding=2))
    conv2 = jax.jit(lambda s: stdp.conv_potentials(s, params.w2, padding=1))

    shapes = [(t * b * 28 * 28, 5 * 5 * 6, cfg.c1), (t * b * 14 * 14, 3 * 3 * cfg.c1, cfg.c2)]
    rec = _common.time_against_floor(lambda: feat(images), shapes, _ROUNDS.value)
    parts = {
        "encode_s": encode,
        "latency_s": lambda: latency(dog),
        "latency_two_sorts_s": lambda: latency_old(dog),
        "conv1_s": lambda: conv1(spikes_in),
        "conv2_s": lambda: conv2(in2),
    }
    for name, fn in parts.items():
        call = (lambda f=fn: f(images)) if name == "encode_s" else fn
        rec[name] = float(np.median(_common.time_fn(call, _ROUNDS.value)))
    rec.update({
        "bench": "feature_pass",
        "batch": b,
        "c2": cfg.c2,
        "ms_per_digit": 1000 * rec["median_s"] / b,
        "conv_share": (rec["conv1_s"] + rec["conv2_s"]) / rec["median_s"],
        "encode_share": rec["encode_s"] / rec["median_s"],
        "x_rank_scatter": rec["latency_two_sorts_s"] / rec["latency_s"],
        "conv_x_floor": (rec["conv1_s"] + rec["conv2_s"]) / rec["floor_s"],
        "device": jax.devices()[0].device_kind,
        "jax": jax.__version__,
    })
    _common.emit(rec)


if __name__ == "__main__":
    app.run(main)
