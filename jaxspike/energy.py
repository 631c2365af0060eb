"""Operation counting and energy estimates for spiking and analog networks.

Energy model (first-order, arithmetic only): every synaptic event of a
spiking layer costs one accumulate (AC), every input to a layer fed
real-valued data one multiply-accumulate (MAC):

    E = N_AC * e_AC + N_MAC * e_MAC,
    e_AC = 0.9 pJ (32-bit float add), e_MAC = 4.6 pJ (32-bit float mult 3.7 pJ + add 0.9 pJ),

at 45 nm from Horowitz 2014, "Computing's energy problem (and what to do
about it)", ISSCC, Fig. 1.1.9 - the constants used by most SNN energy
comparisons (e.g. Rathi & Roy 2020, "DIET-SNN"). Memory access, which
dominates on real hardware, is not in this figure; treat it as a
comparison of arithmetic work, not a power measurement.

The memory-inclusive model (:func:`memory_energy_report`, equations in
``docs/energy.md``) adds the data movement - weight fetches, accumulator
and membrane traffic, spike and activation transfer - on named
:class:`HardwareProfile` s, and compares the spiking network with its fp32,
8-bit and bit-matched (``ceil(log2(T + 1))``-bit activations) twins,
including the average spike rate below which the spiking network wins
(after Yan, Bai & Wong, "Reconsidering the energy efficiency of spiking
neural networks", arXiv 2409.08290).

Spiking counts come from the ``aux`` dict every layer of
:mod:`jaxspike.layers` returns (per example ``[B]``: ``spike_count``,
``firing_rate``, ``synops``, ``macs``, summed over all ``T`` steps). The
analog twin (the same architecture with ReLU units, one pass) is counted
from layer sizes with :func:`analog_report` or from its flax params with
:func:`analog_report_from_params`; :func:`compare` puts the two side by side.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, NamedTuple, Sequence

import jax
import numpy as np

__all__ = [
    "E_AC_PJ",
    "E_MAC_PJ",
    "energy_report",
    "layer_aux",
    "dense_macs",
    "conv_macs",
    "analog_dense_macs",
    "analog_report",
    "analog_report_from_params",
    "compare",
    "analog_macs",
    "HardwareProfile",
    "NEUROMORPHIC",
    "ACCELERATOR",
    "PROFILES",
    "LayerShape",
    "dense_shape",
    "conv_shape",
    "layer_shapes",
    "Twin",
    "matched_bits",
    "twins",
    "snn_layer_energy",
    "twin_layer_energy",
    "memory_energy_report",
    "per_sample_aux",
    "summary",
    "uniform_activity_aux",
    "crossover_rate",
    "headline",
]

E_AC_PJ = 0.9  # Horowitz 2014, 45 nm, 32-bit float add
E_MAC_PJ = 4.6  # Horowitz 2014, 45 nm, 32-bit float mult (3.7) + add (0.9)

_COUNT_KEYS = ("spike_count", "firing_rate", "synops", "macs")


def _is_layer(node: Any) -> bool:
    return isinstance(node, Mapping) and any(k in node for k in _COUNT_KEYS) and not any(
        isinstance(node[k], Mapping) for k in _COUNT_KEYS if k in node
    )


def layer_aux(aux: Mapping, prefix: str = "") -> dict[str, Mapping]:
    """Flattens a (nested) model aux dict to ``{"path/to/layer": layer_aux}``.

    A layer aux is a mapping holding any of ``spike_count``, ``firing_rate``,
    ``synops``, ``macs``; other entries (losses, latent probabilities) are
    skipped. A bare layer aux maps to the name ``"layer"``.
    """
    if not isinstance(aux, Mapping):
        raise TypeError(f"aux must be a dict (layer name -> counts), got {type(aux).__name__}")
    if _is_layer(aux):
        return {prefix or "layer": aux}
    out: dict[str, Mapping] = {}
    for name, node in aux.items():
        if isinstance(node, Mapping):
            out.update(layer_aux(node, f"{prefix}/{name}" if prefix else str(name)))
    return out


def _mean(value) -> float:
    arr = np.asarray(value, np.float64)
    if arr.size == 0:
        raise ValueError("empty count array in aux")
    if not np.isfinite(arr).all():
        raise ValueError("aux counts contain NaN/inf")
    return float(arr.mean())


def _energy(synops: float, macs: float, e_ac_pj: float, e_mac_pj: float) -> float:
    return synops * e_ac_pj + macs * e_mac_pj


def _check_costs(e_ac_pj: float, e_mac_pj: float) -> None:
    if not (e_ac_pj >= 0 and e_mac_pj >= 0):
        raise ValueError(f"energy per op must be >= 0 pJ, got e_ac_pj={e_ac_pj}, e_mac_pj={e_mac_pj}")


def _totals(layers: dict, e_ac_pj: float, e_mac_pj: float) -> dict:
    synops = sum(v["synops"] for v in layers.values())
    macs = sum(v["macs"] for v in layers.values())
    energy_pj = _energy(synops, macs, e_ac_pj, e_mac_pj)
    return {
        "spikes_per_sample": sum(v.get("spikes", 0.0) for v in layers.values()),
        "synops": synops,
        "macs": macs,
        "energy_pj": energy_pj,
        "energy_nj": energy_pj / 1e3,
        "e_ac_pj": e_ac_pj,
        "e_mac_pj": e_mac_pj,
        "layers": layers,
    }


def energy_report(aux: Mapping, *, e_ac_pj: float = E_AC_PJ, e_mac_pj: float = E_MAC_PJ) -> dict:
    """Per-sample operation counts and energy of a spiking model's forward pass.

    Args:
      aux: a layer's aux dict or a nested ``{name: aux}`` dict; counts are
        ``[B]`` (any shape works: the mean over all entries is taken, so a
        vmapped ``[S, B]`` also gives per-sample means).
      e_ac_pj: energy of one accumulate (pJ).
      e_mac_pj: energy of one multiply-accumulate (pJ).

    Returns:
      ``{"spikes_per_sample", "synops", "macs", "energy_pj", "energy_nj",
      "e_ac_pj", "e_mac_pj", "layers": {name: {"spikes", "firing_rate",
      "synops", "macs", "energy_pj"}}}``, all means per sample. Firing rates
      stay per layer (a readout reports 0 by construction).
    """
    _check_costs(e_ac_pj, e_mac_pj)
    flat = layer_aux(aux)
    if not flat:
        raise ValueError("aux holds no layer counts (spike_count / synops / macs)")
    layers = {}
    for name, counts in flat.items():
        entry = {key_out: _mean(counts[key_in]) if key_in in counts else 0.0 for key_in, key_out in (
            ("spike_count", "spikes"), ("firing_rate", "firing_rate"), ("synops", "synops"), ("macs", "macs"))}
        entry["energy_pj"] = _energy(entry["synops"], entry["macs"], e_ac_pj, e_mac_pj)
        layers[name] = entry
    return _totals(layers, e_ac_pj, e_mac_pj)


def dense_macs(fan_in: int, fan_out: int) -> int:
    """MACs of one dense layer on one example: ``fan_in * fan_out``."""
    if fan_in < 1 or fan_out < 1:
        raise ValueError(f"dense layer sizes must be >= 1, got ({fan_in}, {fan_out})")
    return int(fan_in) * int(fan_out)


def conv_macs(out_hw: Sequence[int], kernel_size: int | Sequence[int], in_channels: int, out_channels: int) -> int:
    """MACs of one convolution on one example: ``H' W' kh kw C_in C_out``.

    ``out_hw`` is the output spatial size (``H / stride`` for "SAME"). The
    count includes taps on zero padding, as is usual for analog networks;
    transposed convolutions: pass the kernel and the input size instead
    (each input pixel drives ``kh kw C_out`` outputs).
    """
    kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
    h, w = tuple(out_hw)
    return int(h) * int(w) * int(kh) * int(kw) * int(in_channels) * int(out_channels)


def analog_dense_macs(layer_sizes: Sequence[tuple[int, int]]) -> int:
    """Total MACs of a stack of dense layers given as ``[(fan_in, fan_out), ...]``."""
    return sum(dense_macs(fi, fo) for fi, fo in layer_sizes)


def analog_report(
    layers: Mapping[str, Any] | Sequence[tuple[int, int]],
    *,
    count_bias: bool = True,
    e_ac_pj: float = E_AC_PJ,
    e_mac_pj: float = E_MAC_PJ,
) -> dict:
    """Operation counts and energy of one forward pass of an analog (ReLU) network.

    Args:
      layers: either a list of dense ``(fan_in, fan_out)`` pairs, or a
        mapping ``name -> spec`` with spec a ``(fan_in, fan_out)`` pair or a
        dict ``{"macs": int, "bias_adds": int}`` (e.g. from :func:`conv_macs`).
      count_bias: count one accumulate per output unit for the bias (as the
        spiking layers do once per unit and step), reported as ``synops``.
      e_ac_pj, e_mac_pj: energy per accumulate / multiply-accumulate (pJ).

    Returns:
      The :func:`energy_report` schema (``spikes_per_sample`` is 0).
    """
    _check_costs(e_ac_pj, e_mac_pj)
    items = layers.items() if isinstance(layers, Mapping) else ((f"dense_{i}", s) for i, s in enumerate(layers))
    out = {}
    for name, spec in items:
        if isinstance(spec, Mapping):
            macs, adds = float(spec["macs"]), float(spec.get("bias_adds", 0))
        else:
            fan_in, fan_out = spec
            macs, adds = float(dense_macs(fan_in, fan_out)), float(fan_out)
        adds = adds if count_bias else 0.0
        out[name] = {"spikes": 0.0, "firing_rate": 0.0, "synops": adds, "macs": macs,
                     "energy_pj": _energy(adds, macs, e_ac_pj, e_mac_pj)}
    if not out:
        raise ValueError("analog_report needs at least one layer")
    return _totals(out, e_ac_pj, e_mac_pj)


def analog_report_from_params(
    params: Mapping,
    out_hw: Mapping[str, Sequence[int]] | None = None,
    *,
    count_bias: bool = True,
    e_ac_pj: float = E_AC_PJ,
    e_mac_pj: float = E_MAC_PJ,
) -> dict:
    """:func:`analog_report` from a flax params tree.

    Every sub-dict holding a ``kernel`` is one layer: a 2-D kernel
    ``[fan_in, fan_out]`` is dense; a 4-D kernel ``[kh, kw, C_in, C_out]`` is a
    convolution whose output spatial size must be given in ``out_hw`` under
    the layer's path (``"Conv_0"`` or ``"encoder/Conv_0"``).
    """
    out_hw = dict(out_hw or {})
    specs: dict[str, dict] = {}

    def walk(node, path):
        if not isinstance(node, Mapping):
            return
        if "kernel" in node and not isinstance(node["kernel"], Mapping):
            shape = tuple(np.shape(node["kernel"]))
            has_bias = "bias" in node
            if len(shape) == 2:
                specs[path] = {"macs": dense_macs(*shape), "bias_adds": shape[1] if has_bias else 0}
            elif len(shape) == 4:
                if path not in out_hw:
                    raise ValueError(f"conv layer {path!r} (kernel {shape}) needs its output size: out_hw[{path!r}] = (H, W)")
                h, w = out_hw[path]
                specs[path] = {"macs": conv_macs((h, w), shape[:2], shape[2], shape[3]),
                               "bias_adds": h * w * shape[3] if has_bias else 0}
            else:
                raise ValueError(f"layer {path!r}: unsupported kernel shape {shape}")
            return
        for name, child in node.items():
            walk(child, f"{path}/{name}" if path else str(name))

    root = params.get("params", params) if isinstance(params, Mapping) else params
    walk(root, "")
    return analog_report(specs, count_bias=count_bias, e_ac_pj=e_ac_pj, e_mac_pj=e_mac_pj)


def compare(spiking_report: Mapping, analog_report_: Mapping) -> dict:
    """Spiking vs analog energy per sample, side by side.

    Returns:
      ``{"spiking": {...}, "analog": {...}, "energy_ratio"}`` with the
      totals of both reports; ``energy_ratio = E_analog / E_spiking``
      (> 1: the spiking network does less arithmetic work).
    """
    keys = ("spikes_per_sample", "synops", "macs", "energy_pj", "energy_nj")
    spk = {k: float(spiking_report[k]) for k in keys}
    ana = {k: float(analog_report_[k]) for k in keys}
    ratio = ana["energy_pj"] / spk["energy_pj"] if spk["energy_pj"] > 0 else float("inf")
    return {"spiking": spk, "analog": ana, "energy_ratio": ratio}


def analog_macs(module, params, example_input, *args, **kwargs) -> float:
    """Multiply-accumulates of one forward pass of an analog module, per example.

    ``module.apply({"params": params}, example_input, *args, **kwargs)`` is
    traced (not run; ``params`` may be ``jax.ShapeDtypeStruct`` leaves) and the
    products of its dot/convolution operations are counted (XLA's FLOP estimate
    is not used: it counts elementwise ops too). ``kwargs`` may pick a
    ``method`` (e.g. a VAE's ``"decode"``).
    """
    jaxpr = jax.make_jaxpr(lambda p, x: module.apply({"params": p}, x, *args, **kwargs))(params, example_input)
    total = 0.0
    batch = example_input.shape[0]

    def visit(jp):
        nonlocal total
        for eqn in jp.eqns:
            if eqn.primitive.name == "dot_general":
                (lc, _), _ = eqn.params["dimension_numbers"]
                lhs = eqn.invars[0].aval.shape
                out = eqn.outvars[0].aval.shape
                total += float(np.prod(out)) * float(np.prod([lhs[d] for d in lc]))
            elif eqn.primitive.name == "conv_general_dilated":
                rhs = eqn.invars[1].aval.shape  # HWIO or OIHW: the product is the same
                out = eqn.outvars[0].aval.shape
                dn = eqn.params["dimension_numbers"]
                out_c = rhs[dn.rhs_spec[0]]
                in_per_group = float(np.prod(rhs)) / out_c
                # A transposed convolution is run as a convolution over a zero-dilated input;
                # only the products with real inputs count (1 / prod(lhs_dilation) of them).
                dilation = float(np.prod(eqn.params.get("lhs_dilation") or (1,)))
                total += float(np.prod(out)) * in_per_group / dilation
            for v in eqn.params.values():  # nested jaxprs (pjit, scan, custom_vjp ...)
                if hasattr(v, "eqns"):
                    visit(v)
                elif hasattr(getattr(v, "jaxpr", None), "eqns"):
                    visit(v.jaxpr)

    visit(jaxpr.jaxpr)
    return total / batch


# ---------------------------------------------------------------------------
# Memory-inclusive energy model
# ---------------------------------------------------------------------------
#
# Per-operation and per-access energies at 45 nm, 0.9 V: Horowitz 2014, ISSCC,
# Fig. 1.1.9. Memory figures are per 64-bit access and are scaled per bit.
# (E_AC_PJ above is the 32-bit float add; E_MAC_PJ = FP32_MULT_PJ + E_AC_PJ.)
FP32_MULT_PJ = 3.7  # 32-bit float multiply
INT8_ADD_PJ = 0.03  # 8-bit integer add
INT8_MULT_PJ = 0.2  # 8-bit integer multiply
SRAM_8KB_PJ = 10.0  # 64-bit read, 8 kB SRAM
SRAM_32KB_PJ = 20.0  # 64-bit read, 32 kB SRAM
SRAM_1MB_PJ = 100.0  # 64-bit read, 1 MB SRAM
DRAM_PJ = 1300.0  # 64-bit DRAM access: the low end of Horowitz's 1.3-2.6 nJ
ACCESS_BITS = 64  # width of the accesses above

WEIGHT_FETCHES = ("per_use", "per_pass")


@dataclasses.dataclass(frozen=True)
class HardwareProfile:
    """Where a network's data lives and what moving it costs.

    Every field can be overridden with ``dataclasses.replace(NEUROMORPHIC, batch=64)``.

    Integer arithmetic scales from Horowitz's 8-bit figures, an adder
    linearly in its width and an array multiplier with the product of its
    operand widths::

        e_add(b) = int8_add_pj * b / 8,    e_mult(a, b) = int8_mult_pj * a * b / 64,

    which gives 0.12 pJ / 3.2 pJ at 32 bits against Horowitz's measured
    0.1 pJ / 3.1 pJ. Float arithmetic (the fp32 twin) uses ``fp32_add_pj``
    and ``fp32_mult_pj``.

    Attributes:
      name: the profile's name in reports.
      weight_pj_per_bit: fetching one weight bit from the weight memory.
      state_pj_per_bit: reading or writing one bit of a neuron's membrane or
        synaptic accumulator.
      act_pj_per_bit: writing or reading one bit of a layer's output (a twin's
        activations; a spike's address-event packet).
      weight_fetch: ``"per_use"`` - every synaptic event (spiking network) and
        every MAC (twin) fetches its weight; ``"per_pass"`` - each weight is
        fetched once per pass of its layer, for the twin and for the spiking
        layer's whole time window alike, and shared by ``batch`` samples.
      batch: samples sharing one weight fetch under ``"per_pass"``.
      event_accumulate: each synaptic event read-modify-writes its target
        neuron's accumulator in state memory (event-driven cores receive
        events in arbitrary order and cannot hold every target's sum in a
        register; e.g. SpiNNaker's input ring buffers, Loihi's dendritic
        accumulators). ``False``: sums stay in registers, as in the twin.
      weight_bits: weight width of the spiking network and the integer twins.
      acc_bits: width of membranes and accumulators (both networks).
      spike_bits: width of one spike's address-event packet.
      source: where the numbers come from.
    """

    name: str
    weight_pj_per_bit: float
    state_pj_per_bit: float
    act_pj_per_bit: float
    weight_fetch: str = "per_use"
    batch: int = 1
    event_accumulate: bool = True
    weight_bits: int = 8
    acc_bits: int = 16
    spike_bits: int = 32
    int8_add_pj: float = INT8_ADD_PJ
    int8_mult_pj: float = INT8_MULT_PJ
    fp32_add_pj: float = E_AC_PJ
    fp32_mult_pj: float = FP32_MULT_PJ
    source: str = ""

    def __post_init__(self):
        if self.weight_fetch not in WEIGHT_FETCHES:
            raise ValueError(f"weight_fetch must be one of {WEIGHT_FETCHES}, got {self.weight_fetch!r}")
        energies = {k: getattr(self, k) for k in ("weight_pj_per_bit", "state_pj_per_bit", "act_pj_per_bit",
                                                  "int8_add_pj", "int8_mult_pj", "fp32_add_pj", "fp32_mult_pj")}
        bad = {k: v for k, v in energies.items() if not (v >= 0 and math.isfinite(v))}
        if bad:
            raise ValueError(f"profile {self.name!r}: energies must be finite and >= 0 pJ, got {bad}")
        counts = {k: getattr(self, k) for k in ("batch", "weight_bits", "acc_bits", "spike_bits")}
        bad = {k: v for k, v in counts.items() if not (isinstance(v, int) and v >= 1)}
        if bad:
            raise ValueError(f"profile {self.name!r}: batch and bit widths must be integers >= 1, got {bad}")

    def add_pj(self, bits: int) -> float:
        """One integer addition of ``bits``-wide operands (pJ)."""
        return self.int8_add_pj * bits / 8

    def mult_pj(self, a_bits: int, b_bits: int) -> float:
        """One integer multiplication of an ``a_bits`` by a ``b_bits`` operand (pJ)."""
        return self.int8_mult_pj * a_bits * b_bits / 64


NEUROMORPHIC = HardwareProfile(
    name="neuromorphic",
    weight_pj_per_bit=SRAM_32KB_PJ / ACCESS_BITS,
    state_pj_per_bit=SRAM_8KB_PJ / ACCESS_BITS,
    act_pj_per_bit=SRAM_8KB_PJ / ACCESS_BITS,
    weight_fetch="per_use",
    event_accumulate=True,
    source="event-driven cores, on-chip SRAM only: weights in 32 kB synapse memories, membranes, "
    "accumulators and spike queues in 8 kB memories (Horowitz 2014, 45 nm)",
)
ACCELERATOR = HardwareProfile(
    name="accelerator",
    weight_pj_per_bit=DRAM_PJ / ACCESS_BITS,
    state_pj_per_bit=SRAM_1MB_PJ / ACCESS_BITS,
    act_pj_per_bit=SRAM_1MB_PJ / ACCESS_BITS,
    weight_fetch="per_pass",
    event_accumulate=False,
    source="dense accelerator: weights fetched from DRAM once per layer pass (batch 1), "
    "membranes and activations in a 1 MB on-chip buffer, partial sums in registers (Horowitz 2014, 45 nm)",
)
PROFILES = {p.name: p for p in (NEUROMORPHIC, ACCELERATOR)}


class LayerShape(NamedTuple):
    """What the energy model needs to know of one layer beyond its ``aux`` counts.

    Attributes:
      neurons: output neurons ``N`` per example (``H' W' C_out`` for a conv).
      weights: stored weights ``W`` (kernel entries; biases not counted).
      macs: multiply-accumulates ``M`` of one pass of the analog twin layer
        (``N * fan_in``; padding taps included, as :func:`conv_macs`).
      num_steps: time steps ``T`` the spiking layer runs.
      bias: one bias addition per neuron and step (spiking) / per neuron (twin).
      norm: ``current_norm``: the layer's aux ``macs`` hold 4 extra MACs per
        neuron and step (:mod:`jaxspike.layers`).
      spiking: the layer emits spikes (``False``: a non-spiking readout).
      analog_input: the layer is fed real values (its aux counts MACs, which do
        not scale with spike activity).
    """

    neurons: int
    weights: int
    macs: int
    num_steps: int
    bias: bool = True
    norm: bool = False
    spiking: bool = True
    analog_input: bool = False


def dense_shape(fan_in: int, fan_out: int, num_steps: int, **flags) -> LayerShape:
    """:class:`LayerShape` of a dense layer ``[fan_in] -> [fan_out]`` run for ``num_steps``."""
    weights = dense_macs(fan_in, fan_out)
    return LayerShape(neurons=int(fan_out), weights=weights, macs=weights, num_steps=int(num_steps), **flags)


def conv_shape(
    in_hw: Sequence[int],
    out_hw: Sequence[int],
    kernel_size: int | Sequence[int],
    in_channels: int,
    out_channels: int,
    num_steps: int,
    *,
    transpose: bool = False,
    **flags,
) -> LayerShape:
    """:class:`LayerShape` of a (transposed) convolution.

    A convolution's twin does ``H' W'`` kernel applications, a transposed
    convolution's ``H W`` (each input pixel drives ``kh kw C_out`` outputs).
    """
    kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
    weights = int(kh) * int(kw) * int(in_channels) * int(out_channels)
    positions = int(np.prod(in_hw if transpose else out_hw))
    return LayerShape(neurons=int(np.prod(out_hw)) * int(out_channels), weights=weights, macs=positions * weights,
                      num_steps=int(num_steps), **flags)


@dataclasses.dataclass(frozen=True)
class _LayerTag:
    """Marks a layer's aux while :func:`layer_shapes` traces a model (a pytree with no leaves)."""

    index: int


jax.tree_util.register_static(_LayerTag)
_TAG_KEY = "_energy_layer_tag"


def _time_major_steps(args, kwargs) -> int | None:
    for a in list(args) + list(kwargs.values()):
        if getattr(a, "ndim", 0) >= 3:
            return int(a.shape[0])
    return None


def _shape_of_module(module, args, kwargs, outputs) -> LayerShape | None:
    """A :class:`LayerShape` from a layer module's kernel, input and output shapes."""
    from jaxspike import layers  # local: layers is only needed to trace a model

    params = module.variables.get("params", {})
    kernel = params.get("kernel") if isinstance(params, Mapping) else None
    if kernel is None or isinstance(kernel, Mapping):
        return None
    num_steps = _time_major_steps(args, kwargs)
    if num_steps is None:
        raise ValueError(f"layer {module.name!r}: no time-major input [T, B, ...] to read T from; "
                         "give its LayerShape explicitly")
    flags = dict(
        bias=bool(getattr(module, "use_bias", True)),
        norm=bool(getattr(module, "current_norm", False)),
        analog_input=getattr(module, "input_kind", "spikes") == "analog",
    )
    if isinstance(module, layers.DenseReadout):
        flags["spiking"] = False
    elif isinstance(module, layers._SpikingLayer):
        flags["spiking"] = module._get_cell().name != "leaky_integrator"
    shape = tuple(kernel.shape)
    if len(shape) == 2:
        return dense_shape(shape[0], shape[1], num_steps, **flags)
    if len(shape) == 4 and isinstance(module, layers.SpikingConv):
        x_shape, y_shape = tuple(args[0].shape), tuple(outputs[0].shape)
        transpose = isinstance(module, layers.SpikingConvTranspose)
        return conv_shape(x_shape[2:4], y_shape[2:4], shape[:2], shape[2], shape[3], num_steps,
                          transpose=transpose, **flags)
    raise ValueError(f"layer {module.name!r}: kernel shape {shape} of a {type(module).__name__} is not "
                     "a dense or (transposed) convolution; give its LayerShape explicitly")


def layer_shapes(fn, *args, **kwargs) -> dict[str, LayerShape]:
    """The :class:`LayerShape` of every layer in the aux a model function returns.

    ``fn(*args, **kwargs)`` must return the aux dict you would give
    :func:`energy_report`, e.g. ``lambda p, z: generator.apply({"params": p}, z)[1]``.
    It is traced once for shapes (``jax.eval_shape``; ``args`` may be
    ``jax.ShapeDtypeStruct`` s), and every flax module whose call returns a
    layer aux and owns a ``kernel`` (the layers of :mod:`jaxspike.layers`,
    the VAE's autoregressive sampler) is described from its kernel, input and
    output shapes. Keys match :func:`layer_aux`. Layers that are not flax
    modules (the STDP front end) get no entry: give theirs explicitly.
    """
    import flax.linen as nn  # local: only tracing needs flax

    records: list[LayerShape] = []

    def interceptor(next_fun, call_args, call_kwargs, context):
        outputs = next_fun(*call_args, **call_kwargs)
        if (context.method_name == "__call__" and isinstance(outputs, tuple) and outputs
                and isinstance(outputs[-1], Mapping) and _is_layer(outputs[-1])):
            shape = _shape_of_module(context.module, call_args, call_kwargs, outputs)
            if shape is not None:
                records.append(shape)
                outputs = outputs[:-1] + ({**outputs[-1], _TAG_KEY: _LayerTag(len(records) - 1)},)
        return outputs

    with nn.intercept_methods(interceptor):
        aux = jax.eval_shape(lambda a, k: fn(*a, **k), args, kwargs)
    return {name: records[node[_TAG_KEY].index] for name, node in layer_aux(aux).items() if _TAG_KEY in node}


class Twin(NamedTuple):
    """Precision of an analog twin: activation and weight widths, float or integer."""

    act_bits: int
    weight_bits: int
    floating: bool = False


def matched_bits(num_steps: int) -> int:
    """Activation width of the twin that matches a ``T``-step rate code: ``ceil(log2(T + 1))``.

    A neuron emits 0..T spikes in T steps, ``T + 1`` levels (Yan, Bai & Wong,
    arXiv 2409.08290); equal to ``floor(log2 T) + 1``.
    """
    if int(num_steps) < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    return int(num_steps).bit_length()


def twins(num_steps: int, weight_bits: int) -> dict[str, Twin]:
    """The three twins every report compares with.

    ``fp32`` (32-bit float weights and activations), ``int8`` (8-bit integer
    weights and activations) and ``matched`` (the spiking network's
    ``weight_bits`` weights with :func:`matched_bits` activations: the same
    weights, the same information per neuron).
    """
    return {"fp32": Twin(32, 32, True), "int8": Twin(8, 8), "matched": Twin(matched_bits(num_steps), weight_bits)}


_SNN_PARTS = ("arithmetic", "weights", "accumulate", "state", "spikes")
_TWIN_PARTS = ("arithmetic", "weights", "activations")


def _snn_terms(counts: Mapping[str, float], shape: LayerShape, hw: HardwareProfile):
    """(activity-independent, activity-proportional) SNN energy of one layer, per part (pJ)."""
    t_n = float(shape.num_steps) * shape.neurons
    synops, macs, spikes = (float(counts.get(k, 0.0)) for k in ("synops", "macs", "spikes"))
    events = synops + macs - t_n * (shape.bias + 4 * shape.norm)
    if events < -1e-6 * max(1.0, t_n):
        raise ValueError(f"aux counts (synops {synops:g} + macs {macs:g}) are below the {t_n * shape.bias:g} bias and "
                         f"{4 * t_n * shape.norm:g} normalisation operations of its shape {shape}")
    events = max(events, 0.0)
    acc, wb = hw.acc_bits, hw.weight_bits
    mac_pj = hw.mult_pj(wb, wb) + hw.add_pj(acc)
    fixed = dict.fromkeys(_SNN_PARTS, 0.0)
    active = dict.fromkeys(_SNN_PARTS, 0.0)
    per_event = active if not shape.analog_input else fixed
    # Arithmetic: events, bias adds, normalisation MACs, leak (one multiply) and threshold
    # compare per neuron and step, one reset subtraction per spike.
    per_event["arithmetic"] += events * (mac_pj if shape.analog_input else hw.add_pj(acc))
    fixed["arithmetic"] += t_n * (shape.bias * hw.add_pj(acc) + 4 * shape.norm * mac_pj + hw.mult_pj(acc, wb)
                                  + shape.spiking * hw.add_pj(acc))
    active["arithmetic"] += spikes * hw.add_pj(acc)
    if hw.weight_fetch == "per_use":
        per_event["weights"] += events * wb * hw.weight_pj_per_bit
    else:
        fixed["weights"] += shape.weights * wb * hw.weight_pj_per_bit / hw.batch
    if hw.event_accumulate:
        per_event["accumulate"] += events * 2 * acc * hw.state_pj_per_bit
    fixed["state"] += t_n * 2 * acc * hw.state_pj_per_bit
    active["spikes"] += spikes * 2 * hw.spike_bits * hw.act_pj_per_bit
    return fixed, active


def snn_layer_energy(counts: Mapping[str, float], shape: LayerShape, profile: HardwareProfile = NEUROMORPHIC) -> dict:
    """Memory-inclusive energy of one spiking layer per sample (pJ), by part.

    ``counts`` are per-sample means ``{"synops", "macs", "spikes"}`` (as in
    :func:`energy_report`'s layers). With ``T`` steps, ``N`` neurons,
    ``E = synops + macs - T N (bias + 4 norm)`` synaptic events, ``S`` spikes,
    weight width ``b_w``, accumulator width ``b_a``, spike packet ``b_s``::

        arithmetic = E e_ev + T N (bias e_add + 4 norm e_mac + e_mult(b_a, b_w) + spiking e_add) + S e_add
        weights    = E b_w e_W                  ("per_use")   or  W b_w e_W / batch   ("per_pass")
        accumulate = E 2 b_a e_S                (event_accumulate, else 0)
        state      = T N 2 b_a e_S              (membrane read + write each step)
        spikes     = S 2 b_s e_A                (packet written and read once)

    with ``e_ev = e_add(b_a)`` for spike inputs, ``e_mac = e_mult(b_w, b_w) +
    e_add(b_a)`` for real-valued inputs. Returns the parts and ``"total"``.
    """
    fixed, active = _snn_terms(counts, shape, profile)
    parts = {k: fixed[k] + active[k] for k in _SNN_PARTS}
    parts["total"] = sum(parts[k] for k in _SNN_PARTS)
    return parts


def twin_layer_energy(shape: LayerShape, twin: Twin, profile: HardwareProfile = NEUROMORPHIC) -> dict:
    """Memory-inclusive energy of one layer of an analog twin, one pass (pJ), by part.

    With ``M`` MACs, ``W`` weights, ``N`` neurons, activation / weight widths
    ``b_x`` / ``b_w`` of the twin::

        arithmetic  = M (e_mult(b_x, b_w) + e_add) + N (bias e_add + spiking e_add)   (bias, ReLU compare)
        weights     = M b_w e_W                  ("per_use")   or  W b_w e_W / batch   ("per_pass")
        activations = spiking N 2 b_x e_A        (each output written and read once)

    ``e_add`` is ``e_add(acc_bits)`` (integer twins) or ``fp32_add_pj``; float
    multiplications cost ``fp32_mult_pj``. Partial sums stay in registers.
    A readout's output is the model's output and, as for the spiking network,
    is not charged.
    """
    hw = profile
    if twin.floating:
        e_add, e_mult = hw.fp32_add_pj, hw.fp32_mult_pj
    else:
        e_add, e_mult = hw.add_pj(hw.acc_bits), hw.mult_pj(twin.act_bits, twin.weight_bits)
    n = float(shape.neurons)
    parts = {
        "arithmetic": shape.macs * (e_mult + e_add) + n * (shape.bias + shape.spiking) * e_add,
        "weights": (shape.macs if hw.weight_fetch == "per_use" else shape.weights / hw.batch)
        * twin.weight_bits * hw.weight_pj_per_bit,
        "activations": shape.spiking * n * 2 * twin.act_bits * hw.act_pj_per_bit,
    }
    parts["total"] = sum(parts[k] for k in _TWIN_PARTS)
    return parts


def _crossover(e_twin: float, fixed: float, active: float, spike_rate: float) -> tuple[float, float]:
    """(activity scale, spike rate) at which the spiking network's energy equals the twin's.

    Scaling all activity (synaptic events of spike-fed layers and spikes) by
    ``k`` gives ``E_snn(k) = fixed + k active``; the crossover is
    ``k* = (E_twin - fixed) / active`` (0 when the activity-independent part
    alone exceeds the twin, ``inf`` when nothing scales with activity and the
    network wins anyway), at spike rate ``k* spike_rate``.
    """
    if e_twin <= fixed:
        scale = 0.0
    elif active <= 0:
        scale = math.inf
    else:
        scale = (e_twin - fixed) / active
    if spike_rate > 0:
        rate = scale * spike_rate
    else:
        rate = 0.0 if scale == 0 else math.nan
    return scale, rate


def memory_energy_report(
    aux: Mapping,
    shapes: Mapping[str, LayerShape],
    *,
    profiles: Mapping[str, HardwareProfile] | Sequence[HardwareProfile] | None = None,
) -> dict:
    """Per-sample energy of a spiking model and of its twins, arithmetic-only and memory-inclusive.

    Args:
      aux: the model's aux, as for :func:`energy_report`.
      shapes: ``{layer name: LayerShape}`` for every layer in ``aux`` (names as
        :func:`layer_aux`; see :func:`layer_shapes`, :func:`dense_shape`,
        :func:`conv_shape`).
      profiles: hardware profiles (default :data:`PROFILES`).

    Returns:
      A nested dict of floats (flattens to ``energy_mem/...`` log rows)::

        num_steps, matched_bits       T and the bit-matched twin's activation width
        spike_rate                    spikes / (T x neurons) over the spiking layers
        layers/<name>/spike_rate      each layer's spikes per neuron and step
        synops_only/                  snn_pj (= energy_report), fp32_twin_pj (MACs x 4.6 + bias x 0.9), snn_over_twin
        <profile>/snn_pj              memory-inclusive spiking energy
        <profile>/snn_parts_pj/       arithmetic, weights, accumulate, state, spikes
        <profile>/<twin>/             twin_pj, snn_over_twin (< 1: the spiking network wins),
                                      crossover_rate (the network's average spike rate at which the
                                      two are equal, all activity scaled alike), crossover_scale
                                      (crossover_rate / spike_rate: > 1 the spiking network wins)
        <profile>/layers/<name>/      snn_pj and <twin>_pj per layer

      with ``<twin>`` in ``fp32``, ``int8``, ``matched`` (:func:`twins`).
    """
    if profiles is None:
        profiles = PROFILES
    if not isinstance(profiles, Mapping):
        profiles = {p.name: p for p in profiles}
    base = energy_report(aux)
    names = set(base["layers"])
    missing, extra = sorted(names - set(shapes)), sorted(set(shapes) - names)
    if missing or extra:
        raise ValueError(f"shapes must describe exactly the layers in aux: missing {missing}, not in aux {extra}")
    num_steps = max(int(shapes[n].num_steps) for n in names)
    spiking = [n for n in names if shapes[n].spiking]
    neuron_steps = sum(float(shapes[n].num_steps) * shapes[n].neurons for n in spiking)
    spike_rate = sum(base["layers"][n]["spikes"] for n in spiking) / neuron_steps if neuron_steps else 0.0

    twin_fp32_pj = sum(shapes[n].macs * E_MAC_PJ + shapes[n].bias * shapes[n].neurons * E_AC_PJ for n in names)
    report = {
        "num_steps": num_steps,
        "matched_bits": matched_bits(num_steps),
        "spike_rate": spike_rate,
        "layers": {n: {"spike_rate": base["layers"][n]["firing_rate"]} for n in sorted(names)},
        "synops_only": {"snn_pj": base["energy_pj"], "fp32_twin_pj": twin_fp32_pj,
                        "snn_over_twin": _ratio(base["energy_pj"], twin_fp32_pj)},
    }
    for pname, hw in profiles.items():
        fixed = dict.fromkeys(_SNN_PARTS, 0.0)
        active = dict.fromkeys(_SNN_PARTS, 0.0)
        twin_pj: dict[str, float] = {}
        per_layer = {}
        for n in sorted(names):
            f, a = _snn_terms(base["layers"][n], shapes[n], hw)
            for k in _SNN_PARTS:
                fixed[k] += f[k]
                active[k] += a[k]
            layer = {"snn_pj": sum(f.values()) + sum(a.values())}
            for tname, twin in twins(shapes[n].num_steps, hw.weight_bits).items():
                e = twin_layer_energy(shapes[n], twin, hw)["total"]
                layer[f"{tname}_pj"] = e
                twin_pj[tname] = twin_pj.get(tname, 0.0) + e
            per_layer[n] = layer
        e_fixed, e_active = sum(fixed.values()), sum(active.values())
        snn_pj = e_fixed + e_active
        out = {"snn_pj": snn_pj, "snn_parts_pj": {k: fixed[k] + active[k] for k in _SNN_PARTS}}
        for tname, e_twin in twin_pj.items():
            scale, rate = _crossover(e_twin, e_fixed, e_active, spike_rate)
            out[tname] = {"twin_pj": e_twin, "snn_over_twin": _ratio(snn_pj, e_twin),
                          "crossover_rate": rate, "crossover_scale": scale}
        out["layers"] = per_layer
        report[pname] = out
    return report


def _ratio(num: float, den: float) -> float:
    return num / den if den > 0 else math.inf


def uniform_activity_aux(shapes: Mapping[str, LayerShape], rate: float) -> dict:
    """The aux counts of a network of ``shapes`` in which every input and neuron fires at ``rate``.

    The single-average-spike-rate view of Yan, Bai & Wong: each layer sees
    ``rate T M`` synaptic events (every input spikes ``rate T`` times and
    drives its fan-out, padding taps included) and emits ``rate T N`` spikes
    (none for a readout). Per-sample floats, ready for
    :func:`memory_energy_report`.
    """
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"rate must lie in [0, 1], got {rate}")
    aux = {}
    for name, s in shapes.items():
        t_n = float(s.num_steps) * s.neurons
        ops = rate * s.num_steps * s.macs + t_n * s.bias
        spikes = rate * t_n if s.spiking else 0.0
        aux[name] = {
            "spike_count": np.float64(spikes),
            "firing_rate": np.float64(spikes / t_n),
            "synops": np.float64(0.0 if s.analog_input else ops),
            "macs": np.float64(4 * t_n * s.norm + (ops if s.analog_input else 0.0)),
        }
    return aux


def crossover_rate(shapes: Mapping[str, LayerShape], profile: HardwareProfile = NEUROMORPHIC,
                   twin: str = "matched") -> float:
    """The spike rate below which a network of ``shapes`` firing uniformly beats a twin.

    ``E_snn(s)`` of :func:`uniform_activity_aux` is affine in ``s``; this is
    the ``s*`` with ``E_snn(s*) = E_twin``. For one large dense layer on a
    profile with per-use weight fetches and event accumulation (the per-neuron
    terms vanish as the fan-in grows)::

        s* ~ (b_w e_W + e_mult(b_x, b_w) + e_add) / (T (b_w e_W + 2 b_a e_S + e_add)),

    ~ 7 % for ``T = 5`` against the 3-bit matched twin on :data:`NEUROMORPHIC`
    (``docs/energy.md``).
    """
    rep = memory_energy_report(uniform_activity_aux(shapes, 1.0), shapes, profiles={profile.name: profile})
    return rep[profile.name][twin]["crossover_rate"]


def per_sample_aux(counts: Mapping[str, Mapping[str, float]]) -> dict:
    """``{layer: {"spikes", "synops", "macs", "firing_rate"}}`` of per-sample means -> an aux for the reports.

    For routes that log mean counts rather than a model's aux
    (:func:`energy_report` and :func:`memory_energy_report` read per-example
    arrays; here each becomes a one-example array).
    """
    aux = {}
    for name, c in counts.items():
        node = aux
        *parents, leaf = name.split("/")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = {"spike_count": np.array([float(c["spikes"])]), "firing_rate": np.array([float(c["firing_rate"])]),
                      "synops": np.array([float(c.get("synops", 0.0))]), "macs": np.array([float(c.get("macs", 0.0))])}
    return aux


def summary(aux: Mapping, shapes: Mapping[str, LayerShape]) -> dict:
    """What a results table shows of :func:`memory_energy_report`: :func:`headline`, each layer's
    spike rate, ``num_steps``, ``matched_bits`` and the activity scale at which the network
    would match the bit-matched twin on :data:`NEUROMORPHIC` (``crossover_scale``)."""
    full = memory_energy_report(aux, shapes)
    return {**headline(full), "layers": {n: v["spike_rate"] for n, v in full["layers"].items()},
            "num_steps": full["num_steps"], "matched_bits": full["matched_bits"],
            "crossover_scale": full[NEUROMORPHIC.name]["matched"]["crossover_scale"]}


def headline(report: Mapping) -> dict[str, float]:
    """The numbers a results page shows, flat: spiking / twin energy ratios and crossovers.

    ``synops_only`` (today's figure against the fp32 twin), then for every
    profile in the report ``<profile>/<twin>`` ratios and
    ``<profile>/<twin>/crossover_rate``, and the model's ``spike_rate``.
    """
    out = {"spike_rate": report["spike_rate"], "synops_only": report["synops_only"]["snn_over_twin"]}
    for pname, value in report.items():
        if isinstance(value, Mapping) and "snn_parts_pj" in value:
            for tname in ("fp32", "int8", "matched"):
                out[f"{pname}/{tname}"] = value[tname]["snn_over_twin"]
                out[f"{pname}/{tname}/crossover_rate"] = value[tname]["crossover_rate"]
    return out
