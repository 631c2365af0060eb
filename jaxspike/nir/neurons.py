"""The discrete-time mapping between jaxspike's cells and NIR's neuron nodes.

NIR describes neurons in continuous time; jaxspike steps them once per time
step. A NIR node is read as its forward-Euler step of length ``dt`` (the
reading snnTorch and Norse use), with the input ``I_t`` the synapse output of
step ``t``:

LIF (``tau dv/dt = (v_leak - v) + r I``), LI (the same without spikes)::

    v_t = (1 - dt/tau) v_{t-1} + (dt/tau) (v_leak + r I_t)

so a jaxspike cell ``v_t = beta v_{t-1} + J_t`` with the current
``J_t = g I_t + c`` folded into the synapse (kernel and bias scaled by ``g``,
``c`` added to the bias) has::

    beta = 1 - dt/tau        g = r dt / tau        c = v_leak dt / tau
    export: tau = dt / (1 - beta),  r = tau / dt  (so g = 1),  v_leak = 0

IF and I (``dv/dt = r I``) carry no time constant; the libraries that run them
(snnTorch, Norse, Sinabs) read ``r = 1`` as ``v_t = v_{t-1} + I_t``, and so does
jaxspike: ``beta = 1``, ``g = r``; export ``r = 1``.

CubaLIF (``tau_syn di/dt = -i + w_in I``, ``tau_mem dv/dt = (v_leak - v) + r i``)
is jaxspike's :func:`~jaxspike.cells.synaptic_lif` with the synaptic current
scaled by ``dt r / tau_mem``::

    alpha = 1 - dt/tau_syn   beta = 1 - dt/tau_mem   g = (dt/tau_syn) w_in (dt/tau_mem) r
    export: tau_syn = dt/(1 - alpha), tau_mem = dt/(1 - beta), r = tau_mem/dt, w_in = tau_syn/dt

(``v_leak`` must be 0: a constant drive enters jaxspike's synaptic current,
which filters it.) This is snnTorch's ``export_to_nir``/``import_from_nir``
convention, whose ``dt`` is fixed at 1e-4 s, so :data:`DT` is 1e-4 too.

Threshold and spike: ``z_t = 1[v_t > v_threshold]`` on both sides (strict).

Reset. NIR's ``v <- v_reset`` on a spike, with ``v_reset = 0``, is jaxspike's
``reset="zero"`` exactly: NIR (and snnTorch's ``reset_delay=False``) zeroes the
membrane at the end of the spiking step ``t``, jaxspike at the start of step
``t + 1`` before the decay (``v_t = beta (1 - z_{t-1}) v_{t-1} + J_t``);
nothing reads the membrane in between, so the spike trains are identical
(only the recorded membrane of the spiking step differs: jaxspike keeps the
value that crossed). Any other ``v_reset`` is refused. jaxspike's default
reset by subtraction, ``v_t = beta v_{t-1} + J_t - thr z_{t-1}``, has no NIR
node; it is exported as :class:`~jaxspike.nir.nodes.SubtractLIF` /
``SubtractIF`` / ``SubtractCubaLIF`` (exact in jaxspike, refused by other
readers) or, with ``allow_extensions=False``, refused. ``reset="none"`` is
refused.

What NIR cannot carry (surrogate gradient, ``detach_reset``, learnability)
travels as node metadata (``jaxspike_*`` keys) where it matters for a round
trip; the surrogate is chosen at import (default: the cells' default).
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import nir
import numpy as np

from jaxspike import cells, surrogates
from jaxspike.nir import nodes

__all__ = ["DT", "CELL_NAMES", "cell_constants", "cell_to_node", "node_to_cell", "NeuronImport", "NEURON_NODES"]

DT = 1e-4
CELL_NAMES = ("lif", "if", "synaptic_lif", "leaky_integrator")
NEURON_NODES = (
    nir.LIF,
    nir.IF,
    nir.CubaLIF,
    nir.LI,
    nir.I,
    nodes.SubtractLIF,
    nodes.SubtractIF,
    nodes.SubtractCubaLIF,
)
# The synapse gain g = 1 of a jaxspike export comes back as r dt / tau in float64, within
# a few ulp of 1: such a gain is taken as exactly 1, so the kernel is not touched.
_UNIT_GAIN_RTOL = 1e-9


def cell_constants(cell: cells.Cell) -> dict:
    """The constants of a :mod:`jaxspike.cells` cell (beta, threshold, reset, ...), from :attr:`Cell.constants`."""
    if cell.name not in CELL_NAMES:
        raise ValueError(
            f"cell {cell.name!r} has no NIR mapping; cells made by jaxspike.cells.lif, integrate_and_fire, "
            f"synaptic_lif or leaky_integrator do"
        )
    return dict(cell.constants)


def _to_nir_layout(value, feature_shape: tuple[int, ...]) -> np.ndarray:
    """jaxspike ``[*features]`` (features last) -> NIR ``[C, H, W]`` (channels first), float64."""
    full = np.broadcast_to(np.asarray(value, np.float64), feature_shape)
    return np.ascontiguousarray(np.moveaxis(full, -1, 0) if full.ndim == 3 else full)


def _to_jax_layout(value: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.moveaxis(value, 0, -1) if value.ndim == 3 else value)


def _effective(cell: cells.Cell, cell_params: dict, consts: dict, name: str):
    """The value the cell's step uses: a learned one clipped as the cell clips it, else the constant."""
    if name in cell_params:
        value = np.asarray(cell_params[name], np.float64)
        if name == "threshold":
            return np.maximum(value, consts["min_threshold"])
        return np.clip(value, 0.0, 1.0)
    return consts[name]


def _time_constant(decay: np.ndarray, dt: float, what: str, where: str) -> np.ndarray:
    if np.any(decay >= 1.0):
        raise ValueError(f"{where}: {what} = 1 means an infinite time constant, which NIR's node cannot hold")
    return dt / (1.0 - decay)


def cell_to_node(
    cell: cells.Cell,
    cell_params: dict,
    feature_shape: tuple[int, ...],
    *,
    dt: float = DT,
    allow_extensions: bool = True,
    where: str = "cell",
) -> nir.NIRNode:
    """The NIR neuron node of ``cell`` for neurons of jaxspike shape ``feature_shape``.

    ``cell_params``: the cell's learned values (``params["cell"]``, may be
    empty). Parameters come out in NIR's layout (``[C, H, W]`` for conv
    layers). Raises ``ValueError`` with a one-line reason for what NIR cannot
    express (see the module docstring).
    """
    consts = cell_constants(cell)
    cell_params = dict(cell_params or {})
    meta = {"jaxspike_cell": cell.name}
    if cell_params:
        meta["jaxspike_learn"] = ",".join(sorted(cell_params))
        meta["jaxspike_per_neuron"] = int(any(np.ndim(v) > 0 for v in cell_params.values()))
    if not consts.get("detach_reset", True):
        meta["jaxspike_detach_reset"] = 0
    layout = lambda v: _to_nir_layout(v, feature_shape)  # noqa: E731
    beta = layout(_effective(cell, cell_params, consts, "beta"))
    zeros = np.zeros_like(beta)

    if cell.name == "leaky_integrator":
        if np.all(beta == 1.0):
            return nir.I(r=np.ones_like(beta), metadata=meta)
        tau = _time_constant(beta, dt, "beta", where)
        return nir.LI(tau=tau, r=tau / dt, v_leak=zeros, metadata=meta)

    reset = consts["reset"]
    if reset == "none":
        raise ValueError(f"{where}: reset='none' has no NIR node; use reset='zero' (NIR's LIF) or 'subtract'")
    subtract = reset == "subtract"
    if subtract and not allow_extensions:
        raise ValueError(
            f"{where}: reset by subtraction has no standard NIR node; use reset='zero' or allow_extensions=True "
            f"(node jaxspike.Subtract*)"
        )
    threshold = layout(_effective(cell, cell_params, consts, "threshold"))

    if cell.name == "synaptic_lif":
        alpha = layout(_effective(cell, cell_params, consts, "alpha"))
        tau_syn = _time_constant(alpha, dt, "alpha", where)
        tau_mem = _time_constant(beta, dt, "beta", where)
        fields = dict(
            tau_syn=tau_syn,
            tau_mem=tau_mem,
            r=tau_mem / dt,
            v_leak=zeros,
            v_threshold=threshold,
            w_in=tau_syn / dt,
            metadata=meta,
        )
        return nodes.SubtractCubaLIF(**fields) if subtract else nir.CubaLIF(v_reset=zeros, **fields)

    if np.all(beta == 1.0):  # no leak: IF
        fields = dict(r=np.ones_like(beta), v_threshold=threshold, metadata=meta)
        return nodes.SubtractIF(**fields) if subtract else nir.IF(v_reset=zeros, **fields)
    tau = _time_constant(beta, dt, "beta", where)
    fields = dict(tau=tau, r=tau / dt, v_leak=zeros, v_threshold=threshold, metadata=meta)
    return nodes.SubtractLIF(**fields) if subtract else nir.LIF(v_reset=zeros, **fields)


class NeuronImport(NamedTuple):
    """A NIR neuron node as a jaxspike cell.

    Attributes:
      cell: the :class:`~jaxspike.cells.Cell`.
      cell_params: its learnable values (jaxspike layout), ``{}`` if none.
      gain, offset: NIR-layout arrays; the cell's input current is
        ``gain * I + offset`` with ``I`` the NIR synapse output, to be folded
        into the synapse's kernel and bias.
    """

    cell: cells.Cell
    cell_params: dict
    gain: np.ndarray
    offset: np.ndarray


def _meta(node) -> dict:
    return dict(getattr(node, "metadata", None) or {})


def _str(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _snap_unit(gain: np.ndarray) -> np.ndarray:
    return np.where(np.abs(gain - 1.0) <= _UNIT_GAIN_RTOL, 1.0, gain)


def _decay(tau: np.ndarray, dt: float, what: str, where: str) -> np.ndarray:
    if not np.all(np.isfinite(tau)) or np.any(tau < dt):
        raise ValueError(
            f"{where}: {what} must be finite and >= dt = {dt} (a decay 1 - dt/tau in [0, 1]), "
            f"got {tau.min()}..{tau.max()}"
        )
    return 1.0 - dt / tau


def _check_reset_zero(node, where: str) -> None:
    v_reset = getattr(node, "v_reset", None)
    if v_reset is not None and np.any(np.asarray(v_reset) != 0):
        raise ValueError(f"{where}: v_reset != 0 has no jaxspike cell (reset='zero' resets to 0)")


def _values(values: dict[str, np.ndarray], meta: dict, where: str):
    """Constants (uniform values) and learnable params (metadata, or values that differ per neuron)."""
    if "jaxspike_learn" in meta:
        learned = {k for k in _str(meta["jaxspike_learn"]).split(",") if k}
        per_neuron = bool(int(meta.get("jaxspike_per_neuron", 1)))
    else:
        learned = {k for k, v in values.items() if np.ptp(v) > 0}
        per_neuron = True
    consts, params = {}, {}
    for name, value in values.items():
        consts[name] = float(np.float32(value.reshape(-1)[0]))
        if name in learned:
            if per_neuron:
                params[name] = jnp.asarray(_to_jax_layout(value), jnp.float32)
            elif np.ptp(value) > 0:
                raise ValueError(f"{where}: {name} differs per neuron but the node says it is one shared value")
            else:
                params[name] = jnp.asarray(consts[name], jnp.float32)
        elif np.ptp(value) > 0:
            raise ValueError(f"{where}: {name} differs per neuron but is marked constant")
    return consts, params, {f"learn_{k}": k in params for k in values}, per_neuron


def expand(value, shape: tuple[int, ...], what: str = "parameter") -> np.ndarray:
    """A neuron parameter broadcast to the NIR neuron shape ``shape``.

    Exporters disagree on shapes: one value for all (``()`` or ``(1,)``), one
    per channel (``(C,)``, ``(C, 1, 1)``) or one per neuron; all are accepted.
    """
    value = np.asarray(value, np.float64)
    shape = tuple(int(s) for s in shape)
    if value.shape == shape:
        return value
    if value.size == 1:
        return np.full(shape, value.reshape(-1)[0])
    if len(shape) == 3 and value.size == shape[0] and value.shape in ((shape[0],), (shape[0], 1, 1)):
        return np.broadcast_to(value.reshape(shape[0], 1, 1), shape).copy()
    raise ValueError(f"{what} of shape {value.shape} does not fit neurons of shape {shape}")


def node_to_cell(
    node: nir.NIRNode,
    shape: tuple[int, ...],
    *,
    dt: float = DT,
    spike_fn: surrogates.SpikeFn | None = None,
    where: str = "node",
) -> NeuronImport:
    """The jaxspike cell of a NIR neuron node of (NIR-layout) neuron shape ``shape``.

    See the module docstring for the mapping.
    """
    meta = _meta(node)
    detach = bool(int(meta.get("jaxspike_detach_reset", 1)))
    name_hint = _str(meta.get("jaxspike_cell", ""))
    f64 = lambda v: expand(v, shape, f"{where} parameter")  # noqa: E731

    if isinstance(node, (nir.LI, nir.I)):
        if isinstance(node, nir.I):
            r = f64(node.r)
            beta, gain, offset = np.ones_like(r), r, np.zeros_like(r)
        else:
            tau, r, v_leak = f64(node.tau), f64(node.r), f64(node.v_leak)
            beta = _decay(tau, dt, "tau", where)
            gain, offset = r * dt / tau, v_leak * dt / tau
        consts, params, learn, per_neuron = _values({"beta": beta}, meta, where)
        cell = cells.leaky_integrator(consts["beta"], per_neuron=per_neuron, **learn)
        return NeuronImport(cell, params, _snap_unit(gain), offset)

    if isinstance(node, (nir.LIF, nir.IF, nir.CubaLIF)):
        _check_reset_zero(node, where)
        reset = "zero"
    elif isinstance(node, (nodes.SubtractLIF, nodes.SubtractIF, nodes.SubtractCubaLIF)):
        reset = "subtract"
    else:
        raise ValueError(f"{where}: {type(node).__name__} is not a neuron node jaxspike imports")
    threshold = f64(node.v_threshold)
    common = dict(spike_fn=spike_fn, reset=reset, detach_reset=detach)

    if isinstance(node, (nir.CubaLIF, nodes.SubtractCubaLIF)):
        tau_syn, tau_mem = f64(node.tau_syn), f64(node.tau_mem)
        if np.any(f64(node.v_leak) != 0):
            raise ValueError(f"{where}: CubaLIF with v_leak != 0 has no jaxspike cell (the leak would be filtered)")
        alpha, beta = _decay(tau_syn, dt, "tau_syn", where), _decay(tau_mem, dt, "tau_mem", where)
        gain = (dt / tau_syn) * f64(node.w_in) * (dt / tau_mem) * f64(node.r)
        consts, params, learn, per_neuron = _values({"alpha": alpha, "beta": beta, "threshold": threshold}, meta, where)
        cell = cells.synaptic_lif(
            consts["alpha"], consts["beta"], consts["threshold"], per_neuron=per_neuron, **learn, **common
        )
        return NeuronImport(cell, params, _snap_unit(gain), np.zeros_like(gain))

    if isinstance(node, (nir.IF, nodes.SubtractIF)):
        r = f64(node.r)
        beta, gain, offset = np.ones_like(r), r, np.zeros_like(r)
    else:
        tau, r, v_leak = f64(node.tau), f64(node.r), f64(node.v_leak)
        beta = _decay(tau, dt, "tau", where)
        gain, offset = r * dt / tau, v_leak * dt / tau
    values = {"beta": beta, "threshold": threshold}
    if name_hint != "lif" and np.all(beta == 1.0) and "beta" not in _str(meta.get("jaxspike_learn", "")):
        consts, params, learn, per_neuron = _values({"threshold": threshold}, meta, where)
        cell = cells.integrate_and_fire(consts["threshold"], per_neuron=per_neuron, **learn, **common)
    else:
        consts, params, learn, per_neuron = _values(values, meta, where)
        cell = cells.lif(consts["beta"], consts["threshold"], per_neuron=per_neuron, **learn, **common)
    return NeuronImport(cell, params, _snap_unit(gain), offset)
