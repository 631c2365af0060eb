"""Spiking restricted Boltzmann machine trained by event-driven contrastive divergence.

Neftci, Das, Pedroni, Kreutz-Delgado & Cauwenberghs 2014, "Event-driven
contrastive divergence for spiking neuromorphic systems", Front. Neurosci.
7:272. Visible (``V`` pixels + ``L`` label units) and hidden (``H``)
neurons are stochastic spiking units in discrete time (one step = one
refractory period, the neural-sampling abstraction of Buesing et al. 2011,
"Neural dynamics as sampling", PLoS Comput. Biol.): a unit spikes in a step
with the probability its Boltzmann conditional gives it::

    h_t ~ Bernoulli(sigmoid(W^T v_t + U^T l_t + b_h))          (hidden)
    v_t ~ Bernoulli(sigmoid(W h_{t-1} + b_v))                   (visible, free)
    l_t ~ OneHot(softmax(U h_{t-1} + b_l))                      (label group, free;
                                                                 one spike per step: a WTA)

Learning is local and event-driven. Each presentation has two phases: a
*data* phase, visible spikes clamped to Bernoulli(pixel) trains and the label
unit of the class spiking every step; and a *model* phase, everything free,
continuing from the data phase's last state. A global signal ``g(t)`` is
``+1`` in the data phase, ``-1`` in the model phase and ``0`` during the
first ``burn_in`` steps of each (while the network settles). Every synapse
integrates a symmetric STDP term gated by ``g``::

    dW_ij = eta g(t) STDP_ij(t),
    STDP_ij(t) = h_j(t) A^v_i(t) + v_i(t) lam A^h_j(t-1),
    A^v_i(t) = lam A^v_i(t-1) + v_i(t)      (pre trace, includes this step)
    A^h_j(t) = lam A^h_j(t-1) + h_j(t)      (post trace)

With ``lam = 0`` (default) ``STDP_ij = v_i(t) h_j(t)``: a pre/post
coincidence in one step. Summed over the two phases, the data-phase
potentiation minus the model-phase depression estimates
``<v h>_data - <v h>_model``, the contrastive-divergence gradient (the
Gibbs chain of the model phase is CD-k with ``k`` = model steps). Biases
are synapses from an always-on unit: ``db_i = eta g(t) s_i(t)``. Updates
are normalised by the number of gated steps and averaged over the ``B``
copies of the network that see a minibatch in parallel.

With persistent chains (``chain=`` in :func:`ecd_statistics`) the model
phase instead continues the free network where the previous update's model
phase ended, so the negative statistics come from the model's own long-run
distribution rather than from ``k`` steps away from the data (Tieleman 2008).

Generation runs the free dynamics with the label group clamped to a class;
the image is the visible firing probability averaged over the last steps.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxspike import energy

Array = jax.Array

__all__ = ["RBMConfig", "Params", "init_params", "init_chain", "ecd_statistics", "ecd_update", "make_ecd_step", "sample",
           "reconstruct", "classify", "check_params", "synaptic_events_per_sample", "energy_layers", "energy_counts"]


class RBMConfig(NamedTuple):
    """Sizes and phase lengths.

    Attributes:
      num_visible: ``V`` pixel units.
      num_hidden: ``H``.
      num_labels: ``L`` classes (0 = unconditional).
      label_copies: ``m`` label units per class (a population code, as the
        label neurons of Neftci et al. 2014): all ``m`` units of a class spike
        together, so the label group has ``L m`` units and the class drives
        the hidden layer through ``m`` learned weight rows. ``1`` = one unit.
      phase_steps: steps per phase (data, then model).
      burn_in: first steps of each phase with ``g = 0``.
      trace_decay: ``lam``, STDP trace decay per step (0 = same-step coincidences).
    """

    num_visible: int = 784
    num_hidden: int = 500
    num_labels: int = 10
    label_copies: int = 1
    phase_steps: int = 6
    burn_in: int = 1
    trace_decay: float = 0.0


class Params(NamedTuple):
    """``w [V, H]``, ``u [L m, H]`` (label-hidden), biases ``b_v [V]``, ``b_h [H]``, ``b_l [L m]``."""

    w: Array
    u: Array
    b_v: Array
    b_h: Array
    b_l: Array


def check_params(params: Params, cfg: RBMConfig) -> None:
    """Shapes against ``cfg``; a clear ``ValueError`` otherwise."""
    v, h, l = cfg.num_visible, cfg.num_hidden, _label_units(cfg)
    want = {"w": (v, h), "u": (l, h), "b_v": (v,), "b_h": (h,), "b_l": (l,)}
    for name, shape in want.items():
        got = tuple(getattr(params, name).shape)
        if got != shape:
            raise ValueError(f"RBM param {name} has shape {got}, config wants {shape}")


def init_params(key: Array, cfg: RBMConfig, data_mean: Array | None = None) -> Params:
    """``w, u ~ N(0, 0.01^2)``; ``b_v = logit(data mean)`` if given (Hinton 2010, "A practical guide to training RBMs")."""
    if cfg.num_visible < 1 or cfg.num_hidden < 1 or cfg.num_labels < 0 or cfg.label_copies < 1:
        raise ValueError(f"bad RBM sizes {cfg}")
    if not 0 <= cfg.burn_in < cfg.phase_steps:
        raise ValueError(f"need 0 <= burn_in < phase_steps, got {cfg.burn_in}, {cfg.phase_steps}")
    kw, ku = jax.random.split(key)
    w = 0.01 * jax.random.normal(kw, (cfg.num_visible, cfg.num_hidden), jnp.float32)
    u = 0.01 * jax.random.normal(ku, (_label_units(cfg), cfg.num_hidden), jnp.float32)
    if data_mean is None:
        b_v = jnp.zeros((cfg.num_visible,), jnp.float32)
    else:
        p = jnp.clip(jnp.asarray(data_mean, jnp.float32).reshape(-1), 1e-3, 1 - 1e-3)
        b_v = jnp.log(p / (1 - p))
    return Params(w, u, b_v, jnp.zeros((cfg.num_hidden,), jnp.float32), jnp.zeros((_label_units(cfg),), jnp.float32))


def init_chain(key: Array, num_chains: int, cfg: RBMConfig) -> Array:
    """``[num_chains, H]`` random hidden spikes (p = 0.5): the start of persistent chains."""
    return jax.random.bernoulli(key, 0.5, (num_chains, cfg.num_hidden)).astype(jnp.float32)


def _label_units(cfg: RBMConfig) -> int:
    return cfg.num_labels * cfg.label_copies


def _label_code(classes: Array, cfg: RBMConfig) -> Array:
    """``int [B]`` classes -> ``[B, L m]`` label spikes: the class's ``m`` units on."""
    return jnp.repeat(jax.nn.one_hot(classes, cfg.num_labels, dtype=jnp.float32), cfg.label_copies, axis=-1)


def _class_logits(params: Params, h: Array, cfg: RBMConfig) -> Array:
    """``[B, L]`` log-odds of each class's population firing, given hidden spikes ``h``.

    A class's ``m`` units fire together, so its energy is the sum over them.
    """
    per_unit = h @ params.u.T + params.b_l
    return per_unit.reshape(*per_unit.shape[:-1], cfg.num_labels, cfg.label_copies).sum(-1)


def _check_batch(x: Array, labels: Array | None, cfg: RBMConfig) -> Array:
    x = jnp.asarray(x, jnp.float32)
    if x.ndim == 4:
        x = x.reshape(x.shape[0], -1)
    if x.ndim != 2 or x.shape[1] != cfg.num_visible:
        raise ValueError(
            f"RBM input must be [B, {cfg.num_visible}] or [B, H, W, C] with H*W*C = {cfg.num_visible}, "
            f"got shape {tuple(x.shape)}"
        )
    if labels is not None and (labels.ndim != 1 or labels.shape[0] != x.shape[0]):
        raise ValueError(f"labels must be [B] = [{x.shape[0]}], got shape {tuple(labels.shape)}")
    return x


def _hidden_drive(params, v, l):
    return v @ params.w + l @ params.u + params.b_h


class _Stats(NamedTuple):
    """Gated STDP sums: ``vh [V, H]``, ``lh [L, H]``, ``v [V]``, ``h [H]``, ``l [L]``."""

    vh: Array
    lh: Array
    v: Array
    h: Array
    l: Array


def _zero_stats(cfg: RBMConfig) -> _Stats:
    v, h, l = cfg.num_visible, cfg.num_hidden, _label_units(cfg)
    z = lambda *s: jnp.zeros(s, jnp.float32)  # noqa: E731
    return _Stats(z(v, h), z(l, h), z(v), z(h), z(l))


def _stdp_terms(v, l, h, traces, lam):
    """``STDP(t)`` summed over the batch, and the new traces."""
    a_v, a_l, a_h = traces
    a_v = lam * a_v + v
    a_l = lam * a_l + l
    # Post spike meets the pre trace (this step included); pre spike meets the post trace of earlier steps.
    vh = a_v.T @ h + (v.T @ (lam * a_h) if lam else 0.0)
    lh = a_l.T @ h + (l.T @ (lam * a_h) if lam else 0.0)
    a_h = lam * a_h + h
    return (vh, lh, jnp.sum(v, 0), jnp.sum(h, 0), jnp.sum(l, 0)), (a_v, a_l, a_h)


def ecd_statistics(
    params: Params, key: Array, x: Array, labels: Array, cfg: RBMConfig, chain: Array | None = None
) -> tuple[_Stats, dict]:
    """Runs one data phase and one model phase; returns ``sum_t g(t) STDP(t)``.

    Args:
      params: :class:`Params`.
      key: PRNG key (all spikes of both phases).
      x: ``[B, V]`` (or images) in [0, 1], visible firing probabilities of the data phase.
      labels: ``int32 [B]``.
      chain: ``[B', H]`` hidden spikes the model phase starts from: the end of
        the previous update's model phase, so the free network runs on across
        updates (persistent chains, Tieleman 2008, "Training restricted
        Boltzmann machines using approximations to the likelihood gradient",
        ICML) and its ``B'`` copies need not match the data batch. ``None``
        (default): the model phase starts from this data phase's last state
        (contrastive divergence, as in Neftci et al. 2014).

    Returns:
      ``(stats, aux)``: gated sums averaged over the batch and divided by the
      gated steps per phase; ``aux`` holds time-major spike trains
      ``v [2S, B, V]``, ``h [2S, B, H]``, ``l [2S, B, L m]`` and ``g [2S]``
      (with a ``chain``: the data phase's ``[S, ...]`` in ``v, h, l`` and the
      model phase's in ``v_model, h_model, l_model``), and ``chain``: the
      model phase's last hidden spikes ``[B', H]``, where the next persistent
      update starts.
    """
    x = _check_batch(x, labels, cfg)
    check_params(params, cfg)
    batch = x.shape[0]
    steps, burn, lam = cfg.phase_steps, cfg.burn_in, cfg.trace_decay
    label_onehot = _label_code(labels, cfg)
    g = jnp.concatenate([
        jnp.where(jnp.arange(steps) < burn, 0.0, 1.0),
        jnp.where(jnp.arange(steps) < burn, 0.0, -1.0),
    ])
    keys = jax.random.split(key, 2 * steps)

    def data_step(carry, inputs):
        traces, _ = carry
        k, g_t = inputs
        kv, kh = jax.random.split(k)
        v = jax.random.bernoulli(kv, x).astype(jnp.float32)
        l = label_onehot
        h = jax.random.bernoulli(kh, jax.nn.sigmoid(_hidden_drive(params, v, l))).astype(jnp.float32)
        terms, traces = _stdp_terms(v, l, h, traces, lam)
        return (traces, h), (jax.tree.map(lambda a: g_t * a, terms), v, h, l)

    def model_step(carry, inputs):
        traces, h_prev = carry
        k, g_t = inputs
        kv, kl, kh = jax.random.split(k, 3)
        v = jax.random.bernoulli(kv, jax.nn.sigmoid(h_prev @ params.w.T + params.b_v)).astype(jnp.float32)
        l = _label_code(jax.random.categorical(kl, _class_logits(params, h_prev, cfg)), cfg)
        h = jax.random.bernoulli(kh, jax.nn.sigmoid(_hidden_drive(params, v, l))).astype(jnp.float32)
        terms, traces = _stdp_terms(v, l, h, traces, lam)
        return (traces, h), (jax.tree.map(lambda a: g_t * a, terms), v, h, l)

    zeros = (
        jnp.zeros((batch, cfg.num_visible), jnp.float32),
        jnp.zeros((batch, _label_units(cfg)), jnp.float32),
        jnp.zeros((batch, cfg.num_hidden), jnp.float32),
    )
    carry = (zeros, zeros[2])
    carry, (terms_d, v_d, h_d, l_d) = jax.lax.scan(data_step, carry, (keys[:steps], g[:steps]))
    # The model phase starts from the data phase's last hidden state (or the persistent chain),
    # with fresh traces.
    if chain is None:
        start = carry[1]
    else:
        start = jnp.asarray(chain, jnp.float32)
        if start.ndim != 2 or start.shape[1] != cfg.num_hidden:
            raise ValueError(f"chain must be [B, {cfg.num_hidden}] hidden spikes, got shape {tuple(start.shape)}")
    model_batch = start.shape[0]
    model_traces = tuple(jnp.zeros((model_batch, z.shape[1]), jnp.float32) for z in zeros)
    _, (terms_m, v_m, h_m, l_m) = jax.lax.scan(model_step, (model_traces, start), (keys[steps:], g[steps:]))
    norm_d = 1.0 / (batch * (steps - burn))
    norm_m = 1.0 / (model_batch * (steps - burn))
    stats = _Stats(*[norm_d * jnp.sum(a, 0) + norm_m * jnp.sum(b, 0) for a, b in zip(terms_d, terms_m)])
    aux = {"g": g}
    if chain is None:
        aux.update(v=jnp.concatenate([v_d, v_m]), h=jnp.concatenate([h_d, h_m]), l=jnp.concatenate([l_d, l_m]))
    else:
        aux.update(v=v_d, h=h_d, l=l_d, v_model=v_m, h_model=h_m, l_model=l_m)
    aux["chain"] = h_m[-1]
    return stats, aux


def ecd_update(params: Params, stats: _Stats, learning_rate: float, weight_decay: float = 0.0) -> Params:
    """``theta <- theta + eta (stats - decay * theta)`` (decay on ``w``, ``u`` only)."""
    return Params(
        params.w + learning_rate * (stats.vh - weight_decay * params.w),
        params.u + learning_rate * (stats.lh - weight_decay * params.u),
        params.b_v + learning_rate * stats.v,
        params.b_h + learning_rate * stats.h,
        params.b_l + learning_rate * stats.l,
    )


def make_ecd_step(cfg: RBMConfig, learning_rate: float = 0.05, weight_decay: float = 1e-4):
    """One eCD presentation: ``step(params, batch {"image", "label"}, key, chain=None) -> (params, chain, metrics)``.

    ``chain=None``: contrastive divergence (the model phase starts from the
    data); otherwise the persistent chain's hidden spikes (see
    :func:`ecd_statistics`). The returned ``chain`` is where the model phase
    ended: pass it to the next step for persistent training.
    """

    def step(params: Params, batch: dict, key: Array, chain: Array | None = None):
        x = _check_batch(batch["image"], batch["label"], cfg)
        stats, aux = ecd_statistics(params, key, x, batch["label"], cfg, chain)
        params = ecd_update(params, stats, learning_rate, weight_decay)
        steps = cfg.phase_steps
        h_model = aux["h"][steps:] if chain is None else aux["h_model"]
        v_model = aux["v"][steps:] if chain is None else aux["v_model"]
        # One-step mean-field reconstruction from the data phase's last hidden spikes.
        recon = jax.nn.sigmoid(aux["h"][steps - 1] @ params.w.T + params.b_v)
        metrics = {
            "recon_mse": jnp.mean((recon - x) ** 2),
            "hidden_rate_data": jnp.mean(aux["h"][:steps]),
            "hidden_rate_model": jnp.mean(h_model),
            "visible_rate_model": jnp.mean(v_model),
        }
        if chain is None:  # the free label after a CD model phase: does it still name the data's class?
            free_class = jnp.argmax(aux["l"][-1], -1) // cfg.label_copies  # a class's units are adjacent
            metrics["label_match_model"] = jnp.mean(free_class == batch["label"])
        return params, aux["chain"], metrics

    return step


def reconstruct(params: Params, key: Array, x: Array, labels: Array | None, cfg: RBMConfig) -> Array:
    """``sigmoid(W h + b_v)`` after one hidden sample driven by ``x`` (and the label if given).

    Returns ``[B, V]`` visible probabilities (the reconstruction-error probe).
    """
    x = _check_batch(x, labels, cfg)
    l = _label_code(labels, cfg) if labels is not None else jnp.zeros((x.shape[0], _label_units(cfg)), jnp.float32)
    h = jax.random.bernoulli(key, jax.nn.sigmoid(_hidden_drive(params, x, l))).astype(jnp.float32)
    return jax.nn.sigmoid(h @ params.w.T + params.b_v)


def classify(params: Params, key: Array, x: Array, cfg: RBMConfig, num_steps: int = 20) -> Array:
    """Label firing probabilities with the visible layer clamped to Bernoulli(x) spikes.

    The label group runs freely (``l_t ~ softmax(U h_{t-1} + b_l)``) and is
    read as its mean softmax over ``num_steps``. Returns ``[B, L]``.
    """
    x = _check_batch(x, None, cfg)
    batch = x.shape[0]

    def step(carry, k):
        l = carry
        kv, kh, kl = jax.random.split(k, 3)
        v = jax.random.bernoulli(kv, x).astype(jnp.float32)
        h = jax.random.bernoulli(kh, jax.nn.sigmoid(_hidden_drive(params, v, l))).astype(jnp.float32)
        logits = _class_logits(params, h, cfg)
        l = _label_code(jax.random.categorical(kl, logits), cfg)
        return l, jax.nn.softmax(logits)

    l0 = jnp.zeros((batch, _label_units(cfg)), jnp.float32)
    _, probs = jax.lax.scan(step, l0, jax.random.split(key, num_steps))
    return jnp.mean(probs, 0)


def sample(
    params: Params,
    key: Array,
    labels: Array,
    cfg: RBMConfig,
    num_steps: int = 200,
    average: int = 20,
    label_gain: float = 1.0,
    anneal_steps: int = 0,
) -> tuple[Array, dict]:
    """Class-conditional samples by free-running spiking dynamics.

    The label group is clamped to ``labels`` (one spike per step); hidden and
    visible units run freely from a random hidden state for ``num_steps``
    steps (alternating ``h_t | v_t, l`` and ``v_{t+1} | h_t``). The image is
    the visible firing probability ``sigmoid(W h_{t-1} + b_v)`` averaged over
    the last ``average`` steps (a rate read-out). ``label_gain`` scales the
    label's drive ``U^T l`` (1 = the trained model; > 1 sharpens classes).
    With ``anneal_steps = n > 0`` the gain instead falls linearly from
    ``label_gain`` at the first step to 1 at step ``n`` and stays 1 after:
    the chain starts in the label's basin and then runs under the trained
    model itself (its last ``num_steps - n`` steps, which must cover the
    ``average`` read-out steps). Everything is drawn from ``key``: the same
    key gives the same samples.

    Args:
      labels: ``int32 [N]`` classes to generate.

    Returns:
      ``(images [N, V] in [0, 1], aux)`` with ``aux["v_spikes"]`` (visible
      spike count per sample) and ``aux["h_spikes"]``.
    """
    check_params(params, cfg)
    labels = jnp.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be [N], got shape {tuple(labels.shape)}")
    if not 1 <= average <= num_steps:
        raise ValueError(f"need 1 <= average <= num_steps, got average={average}, num_steps={num_steps}")
    if not 0 <= anneal_steps <= num_steps - average:
        raise ValueError(f"need 0 <= anneal_steps <= num_steps - average = {num_steps - average}, got {anneal_steps}")
    n = labels.shape[0]
    l = _label_code(labels, cfg)
    if anneal_steps:
        gains = jnp.maximum(1.0 + (label_gain - 1.0) * (1.0 - jnp.arange(num_steps) / anneal_steps), 1.0)
    else:
        gains = jnp.full((num_steps,), label_gain)
    k0, k_run = jax.random.split(key)
    h0 = init_chain(k0, n, cfg)

    def step(h_prev, xs):
        k, gain = xs
        kv, kh = jax.random.split(k)
        p_v = jax.nn.sigmoid(h_prev @ params.w.T + params.b_v)
        v = jax.random.bernoulli(kv, p_v).astype(jnp.float32)
        h = jax.random.bernoulli(kh, jax.nn.sigmoid(_hidden_drive(params, v, gain * l))).astype(jnp.float32)
        return h, (p_v, jnp.sum(v, -1), jnp.sum(h, -1))

    _, (p_v, v_count, h_count) = jax.lax.scan(step, h0, (jax.random.split(k_run, num_steps), gains))
    images = jnp.mean(p_v[-average:], 0)
    return images, {"v_spikes": jnp.sum(v_count, 0), "h_spikes": jnp.sum(h_count, 0)}


def synaptic_events_per_sample(aux: dict, cfg: RBMConfig) -> dict:
    """Synaptic events of free sampling: each visible spike reaches ``H`` hidden units,
    each hidden spike ``V`` visible ones (the label's clamped drive is not counted)."""
    v = float(np.mean(np.asarray(aux["v_spikes"])))
    h = float(np.mean(np.asarray(aux["h_spikes"])))
    synops = v * cfg.num_hidden + h * cfg.num_visible
    return {"v_spikes": v, "h_spikes": h, "synops": synops, "energy_nj": synops * 0.9e-3}


def energy_layers(cfg: RBMConfig) -> dict:
    """Shapes of one Gibbs step for :func:`jaxspike.energy.memory_energy_report`: visible spikes
    drive the hidden layer (``V -> H``), hidden spikes the visible one (``H -> V``).

    One step each (``T = 1``): an analog RBM sampler runs the same number of
    Gibbs steps, so the spiking sampler is compared step for step, and its
    bit-matched twin (1-bit activations) is a conventional binary RBM sampler.
    No biases, as :func:`synaptic_events_per_sample` (the label's clamped
    drive is not counted either).
    """
    return {"hidden": energy.dense_shape(cfg.num_visible, cfg.num_hidden, 1, bias=False),
            "visible": energy.dense_shape(cfg.num_hidden, cfg.num_visible, 1, bias=False)}


def energy_counts(events: dict, cfg: RBMConfig, num_steps: int) -> dict[str, dict[str, float]]:
    """Per-sample counts of :func:`synaptic_events_per_sample` over ``num_steps`` Gibbs steps ->
    per-step ``{layer: {spikes, firing_rate, synops}}`` for :func:`energy_layers`."""
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    v, h = float(events["v_spikes"]) / num_steps, float(events["h_spikes"]) / num_steps
    return {"hidden": {"spikes": h, "synops": v * cfg.num_hidden, "firing_rate": h / cfg.num_hidden},
            "visible": {"spikes": v, "synops": h * cfg.num_visible, "firing_rate": v / cfg.num_visible}}
