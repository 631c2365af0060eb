"""NIR -> jaxspike: a NIR graph (from jaxspike or another library) as jaxspike layers with their parameters.

The graph must be one feed-forward path ``Input -> ... -> Output`` (no
branches, merges, recurrent subgraphs). Along it, a synapse node and the
neuron node after it become one jaxspike layer, the neuron's gain and leak
folded into the synapse (:mod:`jaxspike.nir.neurons`):

* ``Affine`` / ``Linear`` + neuron -> :class:`~jaxspike.layers.SpikingDense`
  (``kernel = weight.T``), or :class:`~jaxspike.layers.DenseReadout` where
  jaxspike exported one (it then takes the ``jaxspike.Readout`` after it
  back as its ``mode``);
* ``Conv2d`` + neuron -> :class:`~jaxspike.layers.SpikingConv` (``groups = 1``,
  ``dilation = 1``; per-neuron gains must be per channel);
* ``jaxspike.ConvTranspose2d`` + neuron -> :class:`~jaxspike.layers.SpikingConvTranspose`;
* a synapse followed by no neuron passes its current on (a
  ``leaky_integrator(0)`` cell: ``v_t = I_t``);
* ``Flatten``, ``jaxspike.Unflatten``, ``jaxspike.Bernoulli``, ``jaxspike.Readout``
  -> :mod:`jaxspike.nir.network` stages. Next to a dense layer the
  channels-first order is moved into that layer's kernel, so a jaxspike
  export comes back with its own parameters.

Data layout: the network takes and returns jaxspike's features-last arrays,
``[T, B, H, W, C]`` for a NIR input of shape ``(C, H, W)``.
"""

from __future__ import annotations

import re
from typing import NamedTuple

import jax.numpy as jnp
import nir
import numpy as np

from jaxspike import cells, layers, surrogates
from jaxspike.nir import exporter, neurons, nodes
from jaxspike.nir import network as net_lib

__all__ = ["Imported", "from_nir"]

_DENSE = (nir.Affine, nir.Linear)
_SYNAPSES = _DENSE + (nir.Conv2d, nodes.ConvTranspose2d)
_SUPPORTED = (
    "Input, Output, Affine, Linear, Conv2d, Flatten, LIF, IF, CubaLIF, LI, I and the jaxspike.* extension nodes"
)


class Imported(NamedTuple):
    """``from_nir``'s result; ``network.apply({"params": params}, x_seq[, key])`` runs it.

    Attributes:
      network: the stages.
      params: ``{stage name: params}``.
      input_shape: per-step input features, jaxspike layout.
    """

    network: net_lib.Network
    params: dict
    input_shape: tuple[int, ...]


def _chain(graph: nir.NIRGraph) -> tuple[np.ndarray, list[tuple[str, nir.NIRNode]]]:
    """The graph's single path from its Input to its Output, without those two."""
    for name, node in graph.nodes.items():
        if isinstance(node, nir.NIRGraph):
            raise ValueError(
                f"node {name!r} is a subgraph (e.g. a recurrent layer); jaxspike imports feed-forward paths"
            )
    inputs = [k for k, n in graph.nodes.items() if isinstance(n, nir.Input)]
    outputs = [k for k, n in graph.nodes.items() if isinstance(n, nir.Output)]
    if len(inputs) != 1 or len(outputs) != 1:
        raise ValueError(
            f"jaxspike imports graphs with one Input and one Output, got inputs {inputs}, outputs {outputs}"
        )
    succ: dict[str, list[str]] = {k: [] for k in graph.nodes}
    n_in: dict[str, int] = {k: 0 for k in graph.nodes}
    for a, b in graph.edges:
        succ[a].append(b)
        n_in[b] += 1
    for name in graph.nodes:
        if len(succ[name]) > 1 or n_in[name] > 1:
            raise ValueError(
                f"node {name!r} has {n_in[name]} inputs and {len(succ[name])} outputs; "
                f"jaxspike imports a single feed-forward path (no branches, merges or recurrence)"
            )
    path, seen, name = [], {inputs[0]}, inputs[0]
    while name != outputs[0]:
        if not succ[name]:
            raise ValueError(f"node {name!r} leads nowhere; the path from {inputs[0]!r} never reaches {outputs[0]!r}")
        name = succ[name][0]
        if name in seen:
            raise ValueError(f"the graph has a cycle through {name!r}")
        seen.add(name)
        if name != outputs[0]:
            path.append((name, graph.nodes[name]))
    if len(seen) != len(graph.nodes):
        raise ValueError(f"nodes {sorted(set(graph.nodes) - seen)} are off the input-output path")
    in_shape = np.asarray(graph.nodes[inputs[0]].input_type["input"], dtype=np.int64).reshape(-1)
    return in_shape, path


def _jax_shape(nir_shape) -> tuple[int, ...]:
    shape = tuple(int(s) for s in nir_shape)
    return (shape[1], shape[2], shape[0]) if len(shape) == 3 else shape


def _meta(node) -> dict:
    return dict(getattr(node, "metadata", None) or {})


def _str(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _per_channel(value: np.ndarray, what: str, where: str) -> np.ndarray:
    """A ``[C, H, W]`` gain/offset as ``[C]``; it must not vary over positions (a kernel is shared)."""
    flat = value.reshape(value.shape[0], -1)
    if np.any(flat != flat[:, :1]):
        raise ValueError(f"{where}: the neuron {what} varies over positions; a convolution kernel cannot absorb it")
    return flat[:, 0]


def _fold(kernel, bias, gain, offset, out_axis: int = -1):
    """kernel * gain (per output unit), bias * gain + offset; untouched where gain is 1 and offset 0."""
    if np.any(gain != 1.0):
        shape = [1] * kernel.ndim
        shape[out_axis] = -1
        kernel = (kernel.astype(np.float64) * gain.reshape(shape)).astype(np.float32)
        if bias is not None:
            bias = (bias.astype(np.float64) * gain).astype(np.float32)
    if np.any(offset != 0.0):
        bias = (offset if bias is None else bias.astype(np.float64) + offset).astype(np.float32)
    return kernel, bias


def _layer_params(kernel, bias, cell_params) -> dict:
    params = {"kernel": jnp.asarray(kernel, jnp.float32)}
    if bias is not None:
        params["bias"] = jnp.asarray(bias, jnp.float32)
    if cell_params:
        params["cell"] = dict(cell_params)
    return params


def _conv_pads(node: nir.Conv2d, kernel_hw, where: str):
    padding = node.padding
    if isinstance(padding, (str, bytes)):
        padding = _str(padding)
        if padding == "valid":
            return ((0, 0), (0, 0))
        if any(int(s) != 1 for s in np.reshape(node.stride, -1)):
            raise ValueError(f"{where}: padding 'same' with stride > 1 is ambiguous")
        return tuple(((k - 1) // 2, k - 1 - (k - 1) // 2) for k in kernel_hw)
    ph, pw = (int(v) for v in np.broadcast_to(np.asarray(padding).reshape(-1), (2,)))
    return ((ph, ph), (pw, pw))


def _restore_padding(weight: np.ndarray, pads, meta: dict):
    """Undoes the exporter's zero-bordered kernel when ``jaxspike_padding`` says it made one."""
    if "jaxspike_padding" not in meta:
        return weight, pads
    orig = np.asarray(meta["jaxspike_padding"], dtype=np.int64).reshape(2, 2)
    trimmed = weight
    for axis, ((lo, hi), (p_lo, p_hi)) in enumerate(zip(orig, pads)):
        lead, trail = p_lo - lo, p_hi - hi
        size = trimmed.shape[2 + axis]
        if p_lo != p_hi or lead < 0 or trail < 0 or lead + trail >= size:
            return weight, pads
        border = np.ones(size, bool)
        border[lead : size - trail] = False
        if np.any(np.take(trimmed, np.flatnonzero(border), axis=2 + axis)):
            return weight, pads
        trimmed = np.take(trimmed, np.arange(lead, size - trail), axis=2 + axis)
    return trimmed, tuple((int(lo), int(hi)) for lo, hi in orig)


class _Builder:
    """Walks the chain of nodes, turning each synapse (+ neuron) or step into one stage."""

    def __init__(self, chain, in_shape, dt: float, spike_fn):
        self.chain, self.dt, self.spike_fn = chain, dt, spike_fn
        self.shape = tuple(int(s) for s in in_shape)  # of the current activations, NIR layout, per step
        self.row_perm = None  # a channels-first Flatten's order, for the rows of the next dense kernel
        self.names: list[str] = []
        self.stages: list = []
        self.params: dict = {}

    def add(self, raw_name: str, stage, params: dict | None = None) -> None:
        name = re.sub(r"[^0-9A-Za-z_]", "_", raw_name) or "stage"
        base, k = name, 1
        while name in self.names:
            name, k = f"{base}_{k}", k + 1
        self.names.append(name)
        self.stages.append(stage)
        if params is not None:
            self.params[name] = params

    def neuron(self, i: int, shape) -> tuple[neurons.NeuronImport, int]:
        """The cell of the neuron node after synapse ``i`` (or a pass-through), and the next index."""
        if i + 1 < len(self.chain) and isinstance(self.chain[i + 1][1], neurons.NEURON_NODES):
            name, node = self.chain[i + 1]
            imported = neurons.node_to_cell(
                node, tuple(shape), dt=self.dt, spike_fn=self.spike_fn, where=f"node {name!r}"
            )
            return imported, i + 2
        ones = np.ones(tuple(shape))
        return neurons.NeuronImport(cells.leaky_integrator(0.0), {}, ones, np.zeros_like(ones)), i + 1

    def build(self, i: int) -> int:
        """Builds the stage starting at node ``i``; returns the index of the next node."""
        name, node = self.chain[i]
        if isinstance(node, _DENSE):
            return self.dense(i)
        if isinstance(node, (nir.Conv2d, nodes.ConvTranspose2d)):
            return self.conv(i)
        if isinstance(node, nir.Flatten):
            return self.flatten(i)
        if isinstance(node, nodes.Unflatten):
            return self.unflatten(i)
        if isinstance(node, nodes.Bernoulli):
            self.add(name, net_lib.Bernoulli(node.input))
        elif isinstance(node, nodes.Readout):
            self.add(name, net_lib.Readout(node.mode, node.activation))
        elif isinstance(node, neurons.NEURON_NODES):
            raise ValueError(
                f"node {name!r}: a {type(node).__name__} with no synapse before it (jaxspike layers start with one)"
            )
        else:
            raise ValueError(f"node {name!r}: {type(node).__name__} is not imported; supported: {_SUPPORTED}")
        return i + 1

    def dense(self, i: int) -> int:
        name, node = self.chain[i]
        input_kind = _str(_meta(node).get("jaxspike_input_kind", "spikes"))
        weight = np.asarray(node.weight, np.float32)
        if weight.ndim != 2 or weight.shape[1] != int(np.prod(self.shape)):
            raise ValueError(f"node {name!r}: weight {weight.shape} does not take inputs of shape {self.shape}")
        features = weight.shape[0]
        neuron, nxt = self.neuron(i, (features,))
        bias = np.asarray(node.bias, np.float32) if isinstance(node, nir.Affine) else None
        kernel, bias = _fold(weight.T, bias, neuron.gain, neuron.offset)
        if self.row_perm is not None:
            kernel, self.row_perm = kernel[np.argsort(self.row_perm)], None
        neuron_meta = _meta(self.chain[nxt - 1][1]) if nxt == i + 2 else {}
        if _str(neuron_meta.get("jaxspike_module", "")) == "DenseReadout" and not neuron.cell_params:
            mode = "sequence"  # a jaxspike DenseReadout takes its readout over time back
            if nxt < len(self.chain) and isinstance(self.chain[nxt][1], nodes.Readout):
                readout = self.chain[nxt][1]
                if readout.mode in ("mean", "last", "max") and readout.activation == "identity":
                    mode, nxt = readout.mode, nxt + 1
            beta = neurons.cell_constants(neuron.cell)["beta"]
            use_bias = bias is not None
            stage = layers.DenseReadout(features, mode=mode, beta=beta, use_bias=use_bias, input_kind=input_kind)
        else:
            stage = layers.SpikingDense(features, cell=neuron.cell, use_bias=bias is not None, input_kind=input_kind)
        self.add(name, stage, _layer_params(kernel, bias, neuron.cell_params))
        self.shape = (features,)
        return nxt

    def conv(self, i: int) -> int:
        name, node = self.chain[i]
        where, meta, shape = f"node {name!r}", _meta(node), self.shape
        weight = np.asarray(node.weight, np.float32)
        if len(shape) != 3 or weight.ndim != 4 or weight.shape[1] != shape[0]:
            raise ValueError(f"{where}: weight {weight.shape} does not take inputs of shape {shape} (C, H, W)")
        strides = tuple(int(s) for s in np.broadcast_to(np.asarray(node.stride).reshape(-1), (2,)))
        in_hw = tuple(shape[1:])
        if isinstance(node, nir.Conv2d):
            if int(node.groups) != 1 or np.any(np.asarray(node.dilation) != 1):
                raise ValueError(f"{where}: grouped or dilated convolutions are not imported")
            weight, pads = _restore_padding(weight, _conv_pads(node, weight.shape[2:], where), meta)
            kernel_hw = weight.shape[2:]
            out_hw = [(n + lo + hi - k) // s + 1 for n, k, s, (lo, hi) in zip(in_hw, kernel_hw, strides, pads)]
            same = exporter.conv_padding("SAME", in_hw, kernel_hw, strides)
            valid = exporter.conv_padding("VALID", in_hw, kernel_hw, strides)
            cls = layers.SpikingConv
        else:
            pads = tuple((int(lo), int(hi)) for lo, hi in node.padding)
            kernel_hw = weight.shape[2:]
            out_hw = [
                nodes.conv_transpose_output(n, k, s, lo, hi)
                for n, k, s, (lo, hi) in zip(in_hw, kernel_hw, strides, pads)
            ]
            same = exporter.conv_transpose_padding("SAME", kernel_hw, strides)
            valid = exporter.conv_transpose_padding("VALID", kernel_hw, strides)
            cls = layers.SpikingConvTranspose
        out_shape = (weight.shape[0], *out_hw)
        neuron, nxt = self.neuron(i, out_shape)
        gain = _per_channel(neuron.gain, "gain", where)
        offset = _per_channel(neuron.offset, "leak", where)
        bias = np.asarray(node.bias, np.float32)
        use_bias = not (int(meta.get("jaxspike_use_bias", 1)) == 0 and not np.any(bias) and not np.any(offset))
        kernel, bias = _fold(weight.transpose(2, 3, 1, 0), bias if use_bias else None, gain, offset)
        stage = cls(
            weight.shape[0],
            cell=neuron.cell,
            kernel_size=tuple(kernel_hw),
            strides=strides,
            padding="SAME" if pads == same else "VALID" if pads == valid else pads,
            use_bias=use_bias,
            input_kind=_str(meta.get("jaxspike_input_kind", "spikes")),
        )
        self.add(name, stage, _layer_params(kernel, bias, neuron.cell_params))
        self.shape = out_shape
        return nxt

    def flatten(self, i: int) -> int:
        name, node = self.chain[i]
        start = int(node.start_dim)
        declared = (node.input_type or {}).get("input")
        rank = len(self.shape) if declared is None else np.asarray(declared).size
        batch_dim = rank == len(self.shape) + 1  # some exporters count the batch axis
        if start != (1 if batch_dim else 0) or int(node.end_dim) not in (-1, rank - 1):
            raise ValueError(
                f"node {name!r}: only a Flatten of all features is imported (start_dim {start}, end_dim {node.end_dim})"
            )
        if len(self.shape) == 3:
            feeds_dense = i + 1 < len(self.chain) and isinstance(self.chain[i + 1][1], _DENSE)
            if feeds_dense:  # keep jaxspike's (H, W, C) order; the dense kernel's rows take NIR's
                self.row_perm = net_lib.hwc_to_chw_index(_jax_shape(self.shape))
            self.add(name, net_lib.Flatten("hwc" if feeds_dense else "chw"))
        self.shape = (int(np.prod(self.shape)),)
        return i + 1

    def unflatten(self, i: int) -> int:
        name, node = self.chain[i]
        target = tuple(int(s) for s in node.output_shape)
        if int(np.prod(target)) != int(np.prod(self.shape)):
            raise ValueError(f"node {name!r}: cannot unflatten {self.shape} into {target}")
        prev = self.stages[-1] if self.stages else None
        dense_before = isinstance(prev, layers.SpikingDense) or (
            isinstance(prev, layers.DenseReadout) and prev.mode == "sequence"
        )
        order = "chw"
        if len(target) == 3 and dense_before:  # the dense layer's outputs take jaxspike's (H, W, C) order
            inv = np.argsort(net_lib.hwc_to_chw_index(_jax_shape(target)))
            p = self.params[self.names[-1]]
            p["kernel"] = p["kernel"][:, inv]
            if "bias" in p:
                p["bias"] = p["bias"][inv]
            if "cell" in p:
                p["cell"] = {k: v[inv] if jnp.ndim(v) else v for k, v in p["cell"].items()}
            order = "hwc"
        self.add(name, net_lib.Unflatten(_jax_shape(target), order))
        self.shape = target
        return i + 1


def from_nir(
    graph: nir.NIRGraph,
    *,
    dt: float | None = None,
    spike_fn: surrogates.SpikeFn | None = None,
) -> Imported:
    """jaxspike layers and parameters computing ``graph`` (see the module docstring).

    Args:
      graph: a NIR graph, e.g. from :func:`jaxspike.nir.read` or ``nir.read``.
      dt: the step length to read time constants with; default the graph's
        ``jaxspike_dt`` metadata, else :data:`jaxspike.nir.DT` (snnTorch's 1e-4).
      spike_fn: surrogate spike function of the imported cells (NIR does not
        carry one); default the cells' default.

    Returns:
      :class:`Imported` ``(network, params, input_shape)``.

    Raises:
      ValueError: a node or structure jaxspike cannot run, with the reason.
    """
    if dt is None:
        dt = float(np.asarray((graph.metadata or {}).get("jaxspike_dt", neurons.DT)))
    in_shape, chain = _chain(graph)
    b = _Builder(chain, in_shape, dt, spike_fn)
    i = 0
    while i < len(chain):
        i = b.build(i)
    network = net_lib.Network(names=tuple(b.names), stages=tuple(b.stages))
    return Imported(network, b.params, _jax_shape(in_shape))
