"""Spiking neurons as pure ``init``/``step`` pairs.

Every neuron model is a :class:`Cell` of three pure functions (optax-style
factory, no hidden state)::

    cell = lif(beta=0.9)
    params = cell.init_params((512,))            # learnable decay/threshold, if any
    state = cell.init_state((64, 512))           # [B, N] zeros
    state, spikes = cell.step(params, state, current_t)

Constants that are not learned live in the closure; learnable ones live in
the ``params`` pytree so an optimiser updates them. Constraints are enforced
where the value is used: ``beta`` is clipped to ``[0, 1]``, the threshold to
``>= min_threshold`` (> 0), so an optimiser step can never make the neuron
unstable or fire on zero input.

The default leaky integrate-and-fire model (reset by subtraction, detached
reset) is exactly snnTorch's ``Leaky(reset_mechanism="subtract")``::

    v_t = beta * v_{t-1} + I_t - thr * sg(s_{t-1})
    s_t = H(v_t - thr)

with ``sg`` the stop-gradient and ``H`` the strict Heaviside step of
:mod:`jaxspike.surrogates` (Gerstner et al. 2014, "Neuronal Dynamics", ch. 1;
Eshraghian et al. 2023, "Training spiking neural networks using lessons from
deep learning").
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from jaxspike import surrogates

Array = jax.Array
Params = dict[str, Array]

RESETS = ("subtract", "zero", "none")
KINDS = ("lif", "if", "synaptic_lif")

__all__ = [
    "Cell",
    "LIFState",
    "SynapticState",
    "IntegratorState",
    "lif",
    "integrate_and_fire",
    "synaptic_lif",
    "leaky_integrator",
    "Neuron",
    "RESETS",
    "KINDS",
]


class Cell(NamedTuple):
    """A neuron model as pure functions.

    Attributes:
      init_params: ``feature_shape -> params`` (a possibly empty dict).
      init_state: ``(shape, dtype=float32) -> state`` for inputs of ``shape``
        (``[B, *features]``), all zeros.
      step: ``(params, state, x_t) -> (state, out_t)``; ``x_t`` is the input
        current of one time step with the state's shape.
      name: human-readable model name.
      constants: ``((name, value), ...)``, the constants the step uses (decay,
        threshold, reset, ...), for tools that translate a cell (NIR export).
    """

    init_params: Callable[[tuple[int, ...]], Params]
    init_state: Callable[..., Any]
    step: Callable[[Params, Any, Array], tuple[Any, Array]]
    name: str = "cell"
    constants: tuple[tuple[str, Any], ...] = ()


class LIFState(NamedTuple):
    """State of IF/LIF neurons: membrane ``v`` and last step's ``spikes``."""

    v: Array
    spikes: Array


class SynapticState(NamedTuple):
    """State of the current-based LIF: synaptic current, membrane, spikes."""

    syn: Array
    v: Array
    spikes: Array


class IntegratorState(NamedTuple):
    """State of a non-spiking leaky integrator: its membrane ``v``."""

    v: Array


def _check_reset(reset: str) -> None:
    if reset not in RESETS:
        raise ValueError(f"reset must be one of {RESETS}, got {reset!r}")


def _check_unit(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {value!r}")


def _learnable(
    values: dict[str, float], learn: dict[str, bool], per_neuron: bool
) -> Callable[[tuple[int, ...]], Params]:
    """``init_params`` holding the learnable constants, shared or per neuron."""

    def init_params(feature_shape: tuple[int, ...] = ()) -> Params:
        shape = tuple(feature_shape) if per_neuron else ()
        return {k: jnp.full(shape, v, jnp.float32) for k, v in values.items() if learn[k]}

    return init_params


def _integrate(beta, v_prev, current, thr, s_prev, reset: str, detach_reset: bool) -> Array:
    """One membrane update with the chosen reset (see :func:`lif`).

    The subtract form keeps snnTorch's operation order, ``beta v + I - thr s``,
    so float32 results match it spike for spike.
    """
    if detach_reset:
        s_prev = jax.lax.stop_gradient(s_prev)
    if reset == "subtract":
        return beta * v_prev + current - thr * s_prev
    if reset == "zero":
        return beta * (1.0 - s_prev) * v_prev + current
    return beta * v_prev + current


def _check_input(state_v: Array, x_t: Array) -> None:
    if x_t.shape != state_v.shape:
        raise ValueError(
            f"cell input of shape {x_t.shape} does not match its state of shape {state_v.shape}"
        )


def lif(
    beta: float = 0.9,
    threshold: float = 1.0,
    spike_fn: surrogates.SpikeFn | None = None,
    *,
    reset: str = "subtract",
    detach_reset: bool = True,
    learn_beta: bool = False,
    learn_threshold: bool = False,
    per_neuron: bool = False,
    min_threshold: float = 1e-3,
) -> Cell:
    """Leaky integrate-and-fire neuron.

    Model (``s_{t-1}`` enters through ``sg`` when ``detach_reset``)::

        subtract: v_t = beta v_{t-1} + I_t - thr s_{t-1}
        zero:     v_t = beta (1 - s_{t-1}) v_{t-1} + I_t
        none:     v_t = beta v_{t-1} + I_t
        s_t = H(v_t - thr)

    Args:
      beta: membrane decay per step, in [0, 1] (1 = no leak, i.e. IF).
      threshold: firing threshold ``thr`` > 0.
      spike_fn: spike function with its surrogate (default SuperSpike fast
        sigmoid, slope 25).
      reset: ``"subtract"`` (default, keeps the residual charge), ``"zero"``
        or ``"none"``.
      detach_reset: stop the gradient through the reset term (default, as in
        snnTorch); ``False`` lets it flow.
      learn_beta / learn_threshold: hold ``beta`` / ``threshold`` in the params
        pytree so they are trained.
      per_neuron: learnable values get one entry per neuron (feature shape)
        instead of one shared scalar.
      min_threshold: lower bound enforced on a learned threshold.

    Returns:
      A :class:`Cell` with :class:`LIFState` state; ``step`` emits spikes.
    """
    _check_unit("beta", beta)
    if not threshold > 0:
        raise ValueError(f"threshold must be > 0, got {threshold!r}")
    _check_reset(reset)
    spike_fn = spike_fn or surrogates.fast_sigmoid()
    init_params = _learnable(
        {"beta": beta, "threshold": threshold},
        {"beta": learn_beta, "threshold": learn_threshold},
        per_neuron,
    )

    def init_state(shape, dtype=jnp.float32) -> LIFState:
        zeros = jnp.zeros(shape, dtype)
        return LIFState(v=zeros, spikes=zeros)

    def step(params: Params, state: LIFState, x_t: Array) -> tuple[LIFState, Array]:
        _check_input(state.v, x_t)
        b = jnp.clip(params["beta"], 0.0, 1.0) if "beta" in params else beta
        thr = jnp.maximum(params["threshold"], min_threshold) if "threshold" in params else threshold
        v = _integrate(b, state.v, x_t, thr, state.spikes, reset, detach_reset)
        spikes = spike_fn(v - thr)
        return LIFState(v=v, spikes=spikes), spikes

    constants = dict(beta=beta, threshold=threshold, reset=reset, detach_reset=detach_reset, min_threshold=min_threshold)
    return Cell(init_params, init_state, step, name="lif", constants=tuple(constants.items()))


def integrate_and_fire(
    threshold: float = 1.0,
    spike_fn: surrogates.SpikeFn | None = None,
    **kwargs,
) -> Cell:
    """Non-leaky integrate-and-fire neuron: :func:`lif` with ``beta = 1``.

    ``v_t = v_{t-1} + I_t - thr s_{t-1}``, ``s_t = H(v_t - thr)``. This is the
    neuron of ANN-to-SNN conversion (Rueckauer et al. 2017).
    """
    if kwargs.get("learn_beta"):
        raise ValueError("integrate_and_fire has no leak to learn; use lif(learn_beta=True)")
    cell = lif(1.0, threshold, spike_fn, **kwargs)
    return cell._replace(name="if")


def synaptic_lif(
    alpha: float = 0.8,
    beta: float = 0.9,
    threshold: float = 1.0,
    spike_fn: surrogates.SpikeFn | None = None,
    *,
    reset: str = "subtract",
    detach_reset: bool = True,
    learn_alpha: bool = False,
    learn_beta: bool = False,
    learn_threshold: bool = False,
    per_neuron: bool = False,
    min_threshold: float = 1e-3,
) -> Cell:
    """Current-based (second-order) LIF, snnTorch's ``Synaptic``.

    Model::

        syn_t = alpha syn_{t-1} + I_t
        v_t   = beta v_{t-1} + syn_t - thr s_{t-1}     (reset as in :func:`lif`)
        s_t   = H(v_t - thr)

    ``alpha`` is the synaptic-current decay in [0, 1]; the rest as in
    :func:`lif`.
    """
    _check_unit("alpha", alpha)
    _check_unit("beta", beta)
    if not threshold > 0:
        raise ValueError(f"threshold must be > 0, got {threshold!r}")
    _check_reset(reset)
    spike_fn = spike_fn or surrogates.fast_sigmoid()
    init_params = _learnable(
        {"alpha": alpha, "beta": beta, "threshold": threshold},
        {"alpha": learn_alpha, "beta": learn_beta, "threshold": learn_threshold},
        per_neuron,
    )

    def init_state(shape, dtype=jnp.float32) -> SynapticState:
        zeros = jnp.zeros(shape, dtype)
        return SynapticState(syn=zeros, v=zeros, spikes=zeros)

    def step(params: Params, state: SynapticState, x_t: Array):
        _check_input(state.v, x_t)
        a = jnp.clip(params["alpha"], 0.0, 1.0) if "alpha" in params else alpha
        b = jnp.clip(params["beta"], 0.0, 1.0) if "beta" in params else beta
        thr = jnp.maximum(params["threshold"], min_threshold) if "threshold" in params else threshold
        syn = a * state.syn + x_t
        v = _integrate(b, state.v, syn, thr, state.spikes, reset, detach_reset)
        spikes = spike_fn(v - thr)
        return SynapticState(syn=syn, v=v, spikes=spikes), spikes

    constants = dict(alpha=alpha, beta=beta, threshold=threshold, reset=reset, detach_reset=detach_reset,
                     min_threshold=min_threshold)
    return Cell(init_params, init_state, step, name="synaptic_lif", constants=tuple(constants.items()))


def leaky_integrator(beta: float = 1.0, *, learn_beta: bool = False, per_neuron: bool = False) -> Cell:
    """Non-spiking output neuron: ``v_t = beta v_{t-1} + I_t``; emits ``v_t``.

    Used as the readout layer whose membrane (mean, last or max over time, see
    :mod:`jaxspike.encoding`) is the network's real-valued output. ``beta = 1``
    (default) makes it a pure integrator.
    """
    _check_unit("beta", beta)
    init_params = _learnable({"beta": beta}, {"beta": learn_beta}, per_neuron)

    def init_state(shape, dtype=jnp.float32) -> IntegratorState:
        return IntegratorState(v=jnp.zeros(shape, dtype))

    def step(params: Params, state: IntegratorState, x_t: Array):
        _check_input(state.v, x_t)
        b = jnp.clip(params["beta"], 0.0, 1.0) if "beta" in params else beta
        v = b * state.v + x_t
        return IntegratorState(v=v), v

    return Cell(init_params, init_state, step, name="leaky_integrator", constants=(("beta", beta),))


@dataclasses.dataclass(frozen=True)
class Neuron:
    """One description of a spiking neuron; :meth:`cell` turns it into a :class:`Cell`.

    Every model builds its cells from one of these, and configs hold its
    fields (``config.model.neuron``), so each constant is named once.

    Attributes:
      kind: ``"lif"`` (:func:`lif`), ``"if"`` (:func:`integrate_and_fire`,
        ``beta`` unused) or ``"synaptic_lif"`` (:func:`synaptic_lif`).
      beta: membrane decay per step, in [0, 1].
      threshold: firing threshold, > 0.
      reset: one of :data:`RESETS`.
      learn: learn per-neuron decay and threshold (snnTorch-style trainable
        neuron hyper-parameters); the threshold only for ``"if"``.
      syn_decay: synaptic-current decay of ``"synaptic_lif"``, in [0, 1].
      surrogate: spike function by name (:data:`jaxspike.surrogates.SURROGATES`).
      slope / alpha / width / scale: the surrogate's shape parameter, by name;
        the surrogate reads only its own (:data:`jaxspike.surrogates.PARAMETER`).
    """

    kind: str = "lif"
    beta: float = 0.9
    threshold: float = 1.0
    reset: str = "subtract"
    learn: bool = False
    syn_decay: float = 0.8
    surrogate: str = "fast_sigmoid"
    slope: float = surrogates.SLOPE
    alpha: float = surrogates.ALPHA
    width: float = surrogates.WIDTH
    scale: float = surrogates.SCALE

    def __post_init__(self):
        def bad(field, what):
            raise ValueError(f"Neuron {field}={getattr(self, field)!r}: {what}")

        if self.kind not in KINDS:
            bad("kind", f"must be one of {KINDS}")
        if self.reset not in RESETS:
            bad("reset", f"must be one of {RESETS}")
        if self.surrogate not in surrogates.SURROGATES:
            bad("surrogate", f"must be one of {sorted(surrogates.SURROGATES)}")
        if not isinstance(self.learn, bool):
            bad("learn", "must be True or False")
        for field in ("beta", "syn_decay"):
            if not 0.0 <= getattr(self, field) <= 1.0:
                bad(field, "must lie in [0, 1]")
        if not self.threshold > 0:
            bad("threshold", "must be > 0")
        own = surrogates.PARAMETER[self.surrogate]
        if not getattr(self, own) > 0:
            bad(own, f"the {self.surrogate} surrogate's {own} must be > 0")

    def spike_fn(self) -> surrogates.SpikeFn:
        """The spike function with its surrogate gradient."""
        return surrogates.get(self.surrogate, **{p: getattr(self, p) for p in ("slope", "alpha", "width", "scale")})

    def cell(self) -> Cell:
        """The :class:`Cell` this describes."""
        learn = dict(learn_threshold=self.learn, per_neuron=self.learn, reset=self.reset)
        if self.kind == "if":
            return integrate_and_fire(self.threshold, self.spike_fn(), **learn)
        if self.kind == "synaptic_lif":
            return synaptic_lif(self.syn_decay, self.beta, self.threshold, self.spike_fn(), learn_beta=self.learn, **learn)
        return lif(self.beta, self.threshold, self.spike_fn(), learn_beta=self.learn, **learn)
