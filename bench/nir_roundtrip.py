"""NIR round trip of the lif-layer workload: jaxspike -> NIR file -> jaxspike and snnTorch.

    pip install nir torch==2.13.0 && pip install snntorch nirtorch --no-deps
    python -m bench.nir_roundtrip            # T = 100, B = 64
    python -m bench.nir_roundtrip --T 500 --B 16

snnTorch and its torch are needed only here, not by jaxspike or its tests
(``--no-deps`` keeps pip from swapping the CPU torch for another one).

The arrays of ``bench/lif_layer.py``: ``x = (rng(0).random((T, B, 784)) < 0.1)``,
``W = rng(1).uniform(-1/28, 1/28, (784, 512))``, no bias, one LIF layer
(beta 0.9, threshold 1). snnTorch's ``import_from_nir`` builds
``Leaky(reset_mechanism="zero", reset_delay=False)`` with
``beta = 1 - dt/tau``, so the layer uses ``reset="zero"``, whose spikes are
those of NIR's LIF with ``v_reset = 0`` (:mod:`jaxspike.nir.neurons`). The
layer is exported to one NIR file, which is read back by jaxspike and, with
the stock ``nir.read``, by snnTorch; each runs the same input. Prints one
JSON line with the three spike counts, whether the three spike trains are
equal element by element, and what becomes of the default reset by
subtraction: it is written as a ``jaxspike.SubtractLIF`` node, which jaxspike
reads back exactly (``subtract_reimport_equal``) and stock ``nir.read``
refuses (``subtract_stock_nir_read``).
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

from absl import app, flags  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from bench import _common  # noqa: E402
from jaxspike import cells, layers, surrogates  # noqa: E402
from jaxspike import nir as jnir  # noqa: E402

flags.DEFINE_integer("T", 100, "time steps")
flags.DEFINE_integer("B", 64, "batch size")
FLAGS = flags.FLAGS

N_IN, N_OUT = 784, 512
INSTALL = "pip install torch==2.13.0 && pip install snntorch nirtorch --no-deps"


def _jaxspike_run(layer, params, x):
    spikes, _ = layer.apply({"params": params}, x)
    return np.asarray(spikes)


def _snntorch_run(path: str, x: np.ndarray) -> np.ndarray:
    try:
        import nir
        import torch
        from snntorch.import_nir import import_from_nir
    except ImportError as err:
        raise SystemExit(f"this check needs snnTorch: {INSTALL} ({err})") from None
    with contextlib.redirect_stdout(io.StringIO()):  # the importer prints progress; keep one JSON line
        net = import_from_nir(nir.read(path))
    out = []
    with torch.no_grad():
        inputs = torch.from_numpy(x)
        for t in range(x.shape[0]):  # snnTorch layers keep their state between calls
            spikes, _ = net(inputs[t])
            out.append(spikes.numpy().copy())
    return np.stack(out)


def _refusal(path: str) -> str:
    import nir

    try:
        nir.read(path)
    except Exception as err:  # noqa: BLE001 - which error stock NIR raises is the point
        return f"{type(err).__name__}: {err}".strip().rstrip(":")
    return "read without error"


def main(_):
    T, B = FLAGS.T, FLAGS.B
    x = (np.random.default_rng(0).random((T, B, N_IN), dtype=np.float32) < 0.1).astype(np.float32)
    W = np.random.default_rng(1).uniform(-1 / 28, 1 / 28, (N_IN, N_OUT)).astype(np.float32)
    params = {"kernel": jnp.asarray(W)}
    spike_fn = surrogates.fast_sigmoid(25.0)
    zero = layers.SpikingDense(N_OUT, cell=cells.lif(0.9, 1.0, spike_fn, reset="zero"), use_bias=False)
    subtract = zero.clone(cell=cells.lif(0.9, 1.0, spike_fn))  # jaxspike's default reset

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "lif_layer.nir")
        t0 = time.perf_counter()
        graph = jnir.to_nir(jnir.Network(("lif_layer",), (zero,)), {"lif_layer": params}, (N_IN,))
        jnir.write(path, graph)
        imported = jnir.from_nir(jnir.read(path))
        io_s = time.perf_counter() - t0
        ref = _jaxspike_run(zero, params, x)
        again = _jaxspike_run(imported.network, imported.params, x)
        t0 = time.perf_counter()
        torch_spikes = _snntorch_run(path, x)
        torch_s = time.perf_counter() - t0

        sub_path = os.path.join(tmp, "lif_layer_subtract.nir")
        sub_graph = jnir.to_nir(jnir.Network(("lif_layer",), (subtract,)), {"lif_layer": params}, (N_IN,))
        jnir.write(sub_path, sub_graph)
        sub_imported = jnir.from_nir(jnir.read(sub_path))
        sub_ref = _jaxspike_run(subtract, params, x)
        sub_again = _jaxspike_run(sub_imported.network, sub_imported.params, x)
        refusal = _refusal(sub_path)

    counts = [int(ref.sum()), int(again.sum()), int(torch_spikes.sum())]
    _common.emit(
        {
            "bench": "nir_roundtrip",
            "T": T,
            "B": B,
            "reset": "zero",
            "jaxspike_spikes": counts[0],
            "reimport_spikes": counts[1],
            "snntorch_spikes": counts[2],
            "equal": counts[0] == counts[1] == counts[2] > 0,
            "trains_equal": bool(np.array_equal(ref, again) and np.array_equal(ref, torch_spikes)),
            "nir_nodes": [type(node).__name__ for node in graph.nodes.values()],
            "subtract_node": type(sub_graph.nodes["lif_layer_cell"]).__name__,
            "subtract_spikes": int(sub_ref.sum()),
            "subtract_reimport_equal": bool(np.array_equal(sub_ref, sub_again)),
            "subtract_stock_nir_read": refusal,
            "export_read_s": io_s,
            "snntorch_s": torch_s,
        }
    )


if __name__ == "__main__":
    app.run(main)
