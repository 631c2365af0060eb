"""jaxspike's extension nodes for NIR, and a reader that understands them.

NIR's node set is closed: ``nir.read`` accepts only the types it knows and
fails on any other. jaxspike needs seven things NIR cannot say. Each is a
:class:`nir.NIRNode` subclass whose serialised ``type`` is ``"jaxspike.<Name>"``,
so a file holding one is refused loudly by every other NIR reader (stock
``nir.read`` raises on the unknown type) instead of being run as something
else. :func:`read` reads them back; :func:`nir.write` writes them unchanged.

Time is discrete, ``t = 1 .. T``; shapes are NIR's (channels first, no batch).

* ``jaxspike.SubtractLIF(tau, r, v_leak, v_threshold)``: NIR's LIF with reset
  by subtraction, applied at the next step (jaxspike's and snnTorch's default
  ``Leaky``)::

      v_t = (1 - dt/tau) v_{t-1} + (dt/tau) (v_leak + r I_t) - v_threshold z_{t-1}
      z_t = 1[v_t > v_threshold]

* ``jaxspike.SubtractIF(r, v_threshold)``: ``v_t = v_{t-1} + r I_t - v_threshold z_{t-1}``.
* ``jaxspike.SubtractCubaLIF(tau_syn, tau_mem, r, v_leak, v_threshold, w_in)``::

      i_t = (1 - dt/tau_syn) i_{t-1} + (dt/tau_syn) w_in I_t
      v_t = (1 - dt/tau_mem) v_{t-1} + (dt/tau_mem) (v_leak + r i_t) - v_threshold z_{t-1}

* ``jaxspike.ConvTranspose2d(input_shape, weight, stride, padding, bias)``: a
  transposed (fractionally strided) convolution. ``x [C_in, H, W]`` gets
  ``stride - 1`` zeros inserted between neighbouring pixels, is padded by
  ``padding = [[lo_h, hi_h], [lo_w, hi_w]]`` and is cross-correlated at stride
  1 with ``weight [C_out, C_in, kH, kW]`` (the layout of ``nir.Conv2d``), plus
  ``bias [C_out]``. Output ``H' = (H - 1) s + lo + hi - k + 2``. In PyTorch it is
  ``nn.ConvTranspose2d(C_in, C_out, k, stride=s, padding=k - 1 - lo,
  output_padding=hi - lo)`` with ``weight.flip(2, 3).transpose(0, 1)`` as its
  weight, wherever ``0 <= k - 1 - lo`` and ``0 <= hi - lo < s``.
* ``jaxspike.Unflatten(input_type, output_shape)``: the inverse of
  ``nir.Flatten``, ``[N] -> output_shape`` in C (row-major) order.
* ``jaxspike.Bernoulli(shape, input)``: a stochastic spike source.
  ``z_t = 1[u_t < p_t]`` with ``u_t ~ U[0, 1)`` drawn afresh for every unit
  and step; ``p_t`` is the node's input (``input="probability"``) or the
  sigmoid of it (``input="logit"``). Fed a constant rate it is the Bernoulli
  noise source of a spiking generator.
* ``jaxspike.Readout(shape, mode, activation)``: collapses the time axis.
  ``mode``: ``"mean"`` (``(1/T) sum_t x_t``; of spikes: the firing rate),
  ``"last"`` (``x_T``), ``"max"`` (``max_t x_t``), ``"first_spike"``
  (``1 - t_f / T`` with ``t_f`` the 0-based step of the first non-zero input,
  0 if none: a time-to-first-spike readout) or ``"none"`` (keeps the time
  axis, elementwise only); then ``activation``: ``"identity"`` or
  ``"sigmoid"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import h5py
import nir
import numpy as np
from nir import serialization
from nir.ir.utils import ensure_str

__all__ = [
    "SubtractLIF",
    "SubtractIF",
    "SubtractCubaLIF",
    "ConvTranspose2d",
    "Unflatten",
    "Bernoulli",
    "Readout",
    "EXTENSION_NODES",
    "READOUT_MODES",
    "BERNOULLI_INPUTS",
    "ACTIVATIONS",
    "is_extension",
    "read",
    "write",
]

PREFIX = "jaxspike."
READOUT_MODES = ("mean", "last", "max", "first_spike", "none")
ACTIVATIONS = ("identity", "sigmoid")
BERNOULLI_INPUTS = ("probability", "logit")


def _array(x, dtype=None) -> np.ndarray:
    return np.asarray(x, dtype=dtype)


def _shape(x) -> np.ndarray:
    return np.asarray(x, dtype=np.int64).reshape(-1)


class _Extension(nir.NIRNode):
    """Shared serialisation: ``type`` is ``"jaxspike.<class name>"``."""

    def to_dict(self) -> dict[str, Any]:
        ret = super().to_dict()
        ret["type"] = PREFIX + type(self).__name__
        return ret

    @classmethod
    def from_dict(cls, kwargs: dict[str, Any]) -> "_Extension":
        kwargs = dict(kwargs)
        node_type = ensure_str(kwargs.pop("type"))
        if node_type != PREFIX + cls.__name__:
            raise ValueError(f"{cls.__name__}.from_dict got a node of type {node_type!r}")
        kwargs["metadata"] = dict(kwargs.get("metadata", {}) or {})
        return cls(**cls._coerce(kwargs))

    @classmethod
    def _coerce(cls, kwargs: dict[str, Any]) -> dict[str, Any]:
        return kwargs


def _neuron_types(node, names: tuple[str, ...]) -> None:
    shapes = {name: np.shape(getattr(node, name)) for name in names}
    if len(set(shapes.values())) != 1:
        raise ValueError(f"{type(node).__name__} parameters must share one shape, got {shapes}")
    shape = np.array(next(iter(shapes.values())), dtype=np.int64)
    node.input_type = {"input": shape}
    node.output_type = {"output": shape}


@dataclass(eq=False)
class SubtractLIF(_Extension):
    """NIR's LIF with reset by subtraction at the next step (see the module docstring)."""

    tau: np.ndarray
    r: np.ndarray
    v_leak: np.ndarray
    v_threshold: np.ndarray

    def __post_init__(self):
        for name in ("tau", "r", "v_leak", "v_threshold"):
            setattr(self, name, _array(getattr(self, name)))
        _neuron_types(self, ("tau", "r", "v_leak", "v_threshold"))


@dataclass(eq=False)
class SubtractIF(_Extension):
    """NIR's IF with reset by subtraction at the next step (see the module docstring)."""

    r: np.ndarray
    v_threshold: np.ndarray

    def __post_init__(self):
        self.r, self.v_threshold = _array(self.r), _array(self.v_threshold)
        _neuron_types(self, ("r", "v_threshold"))


@dataclass(eq=False)
class SubtractCubaLIF(_Extension):
    """NIR's CubaLIF with reset by subtraction at the next step (see the module docstring)."""

    tau_syn: np.ndarray
    tau_mem: np.ndarray
    r: np.ndarray
    v_leak: np.ndarray
    v_threshold: np.ndarray
    w_in: np.ndarray = 1.0

    def __post_init__(self):
        for name in ("tau_syn", "tau_mem", "r", "v_leak", "v_threshold"):
            setattr(self, name, _array(getattr(self, name)))
        self.w_in = np.ones_like(self.v_threshold) * _array(self.w_in)
        _neuron_types(self, ("tau_syn", "tau_mem", "r", "v_leak", "v_threshold", "w_in"))


def conv_transpose_output(size: int, kernel: int, stride: int, lo: int, hi: int) -> int:
    """Output length of :class:`ConvTranspose2d` along one axis."""
    return (size - 1) * stride + lo + hi - kernel + 2


@dataclass(eq=False)
class ConvTranspose2d(_Extension):
    """Transposed 2-D convolution (see the module docstring for its exact definition)."""

    input_shape: tuple[int, int]
    weight: np.ndarray  # [C_out, C_in, kH, kW]
    stride: tuple[int, int]
    padding: np.ndarray  # [[lo_h, hi_h], [lo_w, hi_w]] of the stride-dilated input
    bias: np.ndarray  # [C_out]

    def __post_init__(self):
        self.weight = _array(self.weight)
        self.bias = _array(self.bias)
        self.input_shape = tuple(int(v) for v in _shape(self.input_shape))
        self.stride = tuple(int(v) for v in _shape(self.stride))
        self.padding = np.asarray(self.padding, dtype=np.int64).reshape(2, 2)
        if self.weight.ndim != 4 or self.bias.shape != (self.weight.shape[0],):
            raise ValueError(
                f"ConvTranspose2d needs weight [C_out, C_in, kH, kW] and bias [C_out], "
                f"got {self.weight.shape} and {self.bias.shape}"
            )
        if len(self.input_shape) != 2 or len(self.stride) != 2:
            raise ValueError(f"ConvTranspose2d needs 2-D input_shape and stride, got {self.input_shape}, {self.stride}")
        c_out, c_in, kh, kw = self.weight.shape
        out = [
            conv_transpose_output(n, k, s, lo, hi)
            for n, k, s, (lo, hi) in zip(self.input_shape, (kh, kw), self.stride, self.padding)
        ]
        self.input_type = {"input": np.array([c_in, *self.input_shape], dtype=np.int64)}
        self.output_type = {"output": np.array([c_out, *out], dtype=np.int64)}


@dataclass(eq=False)
class Unflatten(_Extension):
    """``[N] -> output_shape`` in row-major order, the inverse of ``nir.Flatten``."""

    input_type: dict
    output_shape: np.ndarray

    def __post_init__(self):
        if not isinstance(self.input_type, dict):
            self.input_type = {"input": _shape(self.input_type)}
        self.output_shape = _shape(self.output_shape)
        n_in = int(np.prod(self.input_type["input"]))
        if n_in != int(np.prod(self.output_shape)):
            raise ValueError(f"Unflatten cannot reshape {self.input_type['input']} into {self.output_shape}")
        self.output_type = {"output": self.output_shape}

    def to_dict(self) -> dict[str, Any]:
        ret = super().to_dict()
        ret["input_type"] = self.input_type["input"]
        return ret


@dataclass(eq=False)
class Bernoulli(_Extension):
    """Stochastic spike source ``z_t = 1[u_t < p_t]`` (see the module docstring)."""

    shape: np.ndarray
    input: str = "probability"

    def __post_init__(self):
        self.shape = _shape(self.shape)
        self.input = ensure_str(self.input)
        if self.input not in BERNOULLI_INPUTS:
            raise ValueError(f"Bernoulli input must be one of {BERNOULLI_INPUTS}, got {self.input!r}")
        self.input_type = {"input": self.shape}
        self.output_type = {"output": self.shape}


@dataclass(eq=False)
class Readout(_Extension):
    """Reduction over time, then an activation (see the module docstring)."""

    shape: np.ndarray
    mode: str = "mean"
    activation: str = "identity"

    def __post_init__(self):
        self.shape = _shape(self.shape)
        self.mode, self.activation = ensure_str(self.mode), ensure_str(self.activation)
        if self.mode not in READOUT_MODES:
            raise ValueError(f"Readout mode must be one of {READOUT_MODES}, got {self.mode!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"Readout activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        self.input_type = {"input": self.shape}
        self.output_type = {"output": self.shape}


EXTENSION_NODES: dict[str, type[_Extension]] = {
    PREFIX + cls.__name__: cls
    for cls in (SubtractLIF, SubtractIF, SubtractCubaLIF, ConvTranspose2d, Unflatten, Bernoulli, Readout)
}


def is_extension(node: nir.NIRNode) -> bool:
    """Whether ``node`` is one of jaxspike's extension nodes."""
    return isinstance(node, _Extension)


def _node_from_dict(data: dict[str, Any], type_check: bool) -> nir.NIRNode:
    node_type = ensure_str(data["type"])
    if node_type == "NIRGraph":
        nodes = {ensure_str(k): _node_from_dict(v, type_check) for k, v in data["nodes"].items()}
        edges = [(ensure_str(a), ensure_str(b)) for a, b in data["edges"]]
        return nir.NIRGraph(nodes=nodes, edges=edges, metadata=dict(data.get("metadata", {})), type_check=type_check)
    if node_type in EXTENSION_NODES:
        return EXTENSION_NODES[node_type].from_dict(data)
    if node_type.startswith(PREFIX):
        raise ValueError(f"unknown jaxspike extension node {node_type!r}; known: {sorted(EXTENSION_NODES)}")
    return nir.dict2NIRNode(data)


def read(path, type_check: bool = True) -> nir.NIRGraph:
    """Reads a NIR file, standard nodes and jaxspike's extension nodes alike."""
    with h5py.File(path, "r") as f:
        data = serialization.hdf2dict(f["node"])
    return _node_from_dict(data, type_check)


def write(path, graph: nir.NIRGraph) -> None:
    """Writes ``graph`` (``nir.write``; extension nodes serialise themselves)."""
    nir.write(path, graph)
