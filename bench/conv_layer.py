"""Benchmark: one convolutional spiking layer against its own GEMM floor.

    python -m bench.conv_layer                                   # every configuration
    python -m bench.conv_layer --kinds=deconv4s2 --paths=per_step --modes=grad
    python -m bench.conv_layer --impls=native --repeats=3        # XLA's own convolutions
    python -m bench.conv_layer --kinds=conv3s1,conv3s2 --impls=gemm,gemm_backward

Layers: ``SpikingConv`` 3x3 stride 1 (``conv3s1``) and stride 2 (``conv3s2``),
``SpikingConvTranspose`` 4x4 stride 2 (``deconv4s2``), all "SAME", at two
sizes: ``fsvae`` (T = 16, B = 64, 14 x 14 maps, 32 -> 64 channels) and
``unet`` (T = 4, B = 32, 28 x 28, 64 -> 64). Paths: ``hoisted`` (synapse
over all ``T*B`` rows outside the scan) and ``per_step`` (inside it).
Modes: ``fwd`` (spikes) and ``grad`` (loss = sum of output spikes, its
gradient with respect to the parameters and the input spikes).

Input spikes ``rng(0).random((T, B, H, W, C_in)) < 0.2``; kernel
``rng(1).normal(0, 2 / sqrt(kh kw C_in))``, bias zero; default LIF (beta
0.9, threshold 1, reset by subtraction, fast sigmoid slope 25).

One JSON line per configuration. ``x_floor`` is the median over alternating
rounds of call time / time of the layer's own fp32 GEMMs run alone
(``bench._common.time_against_floor``): a convolution's im2col product
``[T*B*H'*W', kh*kw*C_in] x [kh*kw*C_in, C_out]``; a stride-s transposed
convolution's sub-pixel product ``[T*B*H*W, n*n*C_in] x [n*n*C_in, s*s*C_out]``
(``n = ceil(k / s)``: the taps of one output phase), the same multiply-adds
as the transposed convolution itself; with ``grad``, also the weight gradient
(``[K, M] x [M, N]``) and the input gradient (``[M, N] x [N, K]``).
``spikes`` is the total output spike count, equal across paths and
implementations. The elementwise work (cell, patch copies, overlap-adds)
counts as free in the floor.
"""

from __future__ import annotations

import math
import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

from absl import app, flags  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from bench import _common  # noqa: E402
from jaxspike import cells, layers, surrogates  # noqa: E402

KINDS = {  # name: (transposed, kernel, stride)
    "conv3s1": (False, 3, 1),
    "conv3s2": (False, 3, 2),
    "deconv4s2": (True, 4, 2),
}
SIZES = {  # name: (T, B, H = W, C_in, C_out)
    "fsvae": (16, 64, 14, 32, 64),
    "unet": (4, 32, 28, 64, 64),
}

flags.DEFINE_list("kinds", list(KINDS), f"layer kinds, of {list(KINDS)}")
flags.DEFINE_list("sizes", list(SIZES), f"sizes, of {list(SIZES)}")
flags.DEFINE_list("paths", ["hoisted", "per_step"], "synapse outside (hoisted) or inside (per_step) the scan")
flags.DEFINE_list("modes", ["fwd", "grad"], "fwd: spikes; grad: loss and its gradient (params and input)")
flags.DEFINE_list("impls", ["auto"], "conv_impl of the layer: auto, gemm, gemm_backward (convolutions only), native")
flags.DEFINE_integer("repeats", 10, "timed rounds (one call and one floor pass each)")
FLAGS = flags.FLAGS


def floor_shapes(kind: str, size: str, grad: bool) -> list[tuple[int, int, int]]:
    """``(m, k, n)`` of the layer's forward GEMM, and with ``grad`` its dW and dX GEMMs."""
    transposed, k, s = KINDS[kind]
    T, B, hw, c_in, c_out = SIZES[size]
    if transposed:
        n = math.ceil(k / s)
        m, kk, nn = T * B * hw * hw, n * n * c_in, s * s * c_out
    else:
        out = math.ceil(hw / s)  # "SAME"
        m, kk, nn = T * B * out * out, k * k * c_in, c_out
    return [(m, kk, nn)] + ([(kk, m, nn), (m, nn, kk)] if grad else [])


def make_layer(kind: str, c_out: int, path: str, impl: str):
    transposed, k, s = KINDS[kind]
    cls = layers.SpikingConvTranspose if transposed else layers.SpikingConv
    kwargs = {} if impl == "auto" else {"conv_impl": impl}  # "auto" also runs code without the attribute
    return cls(
        c_out,
        kernel_size=k,
        strides=s,
        padding="SAME",
        cell=cells.lif(0.9, 1.0, surrogates.fast_sigmoid(25.0)),
        hoist=path == "hoisted",
        **kwargs,
    )


def auto_impl(kind: str) -> str:
    """What ``conv_impl="auto"`` runs here ("native" for code from before the choice existed)."""
    if not hasattr(layers, "conv_impl_for_backend"):
        return "native"
    return layers.conv_impl_for_backend(transposed=KINDS[kind][0])


def inputs(kind: str, size: str):
    _, k, _ = KINDS[kind]
    T, B, hw, c_in, c_out = SIZES[size]
    x = (np.random.default_rng(0).random((T, B, hw, hw, c_in), dtype=np.float32) < 0.2).astype(np.float32)
    w = np.random.default_rng(1).normal(0.0, 2.0 / math.sqrt(k * k * c_in), (k, k, c_in, c_out)).astype(np.float32)
    params = {"kernel": jnp.asarray(w), "bias": jnp.zeros((c_out,), jnp.float32)}
    return jnp.asarray(x), params


def run_one(kind: str, size: str, path: str, mode: str, impl: str) -> dict:
    x, params = inputs(kind, size)
    layer = make_layer(kind, params["kernel"].shape[-1], path, impl)

    def loss_fn(p, inp):
        spikes, _ = layer.apply({"params": p}, inp)
        return jnp.sum(spikes)

    if mode == "fwd":
        fn = jax.jit(loss_fn)
    else:
        fn = jax.jit(jax.value_and_grad(loss_fn, argnums=(0, 1)))
    out = fn(params, x)
    total = out if mode == "fwd" else out[0]
    timing = _common.time_against_floor(lambda: fn(params, x), floor_shapes(kind, size, mode == "grad"), FLAGS.repeats)
    T, B, hw, c_in, c_out = SIZES[size]
    record = {
        "bench": "conv_layer",
        "kind": kind,
        "size": size,
        "T": T,
        "B": B,
        "hw": hw,
        "c_in": c_in,
        "c_out": c_out,
        "path": path,
        "mode": mode,
        "impl": impl if impl != "auto" else f"auto:{auto_impl(kind)}",
        "spikes": int(total),
        "median_s": timing["median_s"],
        "p10_s": timing["p10_s"],
        "p90_s": timing["p90_s"],
        "floor_s": timing["floor_s"],
        "x_floor": timing["x_floor"],
        "gemm_gflop": timing["flops"] / 1e9,
        "load1": round(os.getloadavg()[0], 2),
    }
    if mode == "grad":
        record["grad_finite"] = bool(all(jnp.all(jnp.isfinite(g)) for g in jax.tree_util.tree_leaves(out[1])))
    return record


def main(_):
    for name, chosen, options in (("kinds", FLAGS.kinds, KINDS), ("sizes", FLAGS.sizes, SIZES),
                                  ("paths", FLAGS.paths, ("hoisted", "per_step")), ("modes", FLAGS.modes, ("fwd", "grad")),
                                  ("impls", FLAGS.impls, ("auto", "gemm", "gemm_backward", "native"))):
        unknown = set(chosen) - set(options)
        if unknown:
            raise app.UsageError(f"--{name}: unknown {sorted(unknown)}; choose from {list(options)}")
    for size in FLAGS.sizes:
        for kind in FLAGS.kinds:
            for path in FLAGS.paths:
                for mode in FLAGS.modes:
                    for impl in FLAGS.impls:
                        if impl == "gemm_backward" and KINDS[kind][0]:
                            continue  # not offered for transposed convolutions
                        _common.emit(run_one(kind, size, path, mode, impl))


if __name__ == "__main__":
    app.run(main)
