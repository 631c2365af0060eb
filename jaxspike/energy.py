"""Operation counting and energy estimates for spiking and analog networks.

Energy model (first-order, arithmetic only): every synaptic event of a
spiking layer costs one accumulate (AC), every input to a layer fed
real-valued data one multiply-accumulate (MAC):

    E = N_AC * e_AC + N_MAC * e_MAC,
    e_AC = 0.9 pJ (32-bit float add), e_MAC = 4.6 pJ (32-bit float mult 3.7 pJ + add 0.9 pJ),

at 45 nm from Horowitz 2014, "Computing's energy problem (and what to do
about it)", ISSCC, Fig. 1.1.9 - the constants used by most SNN energy
comparisons (e.g. Rathi & Roy 2020, "DIET-SNN"). Memory access, which
dominates on real hardware, is not modelled; treat the numbers as a
comparison of arithmetic work, not a power measurement.

Spiking counts come from the ``aux`` dict every layer of
:mod:`jaxspike.layers` returns (per example ``[B]``: ``spike_count``,
``firing_rate``, ``synops``, ``macs``, summed over all ``T`` steps). The
analog twin (the same architecture with ReLU units, one pass) is counted
from layer sizes with :func:`analog_report` or from its flax params with
:func:`analog_report_from_params`; :func:`compare` puts the two side by side.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

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
