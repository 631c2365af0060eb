"""Three-layer STDP / R-STDP digit classifier of Mozafari et al.

Mozafari, Ganjtabesh, Nowzari-Dalini, Thorpe & Masquelier 2019,
"Bio-inspired digit recognition using reward-modulated
spike-timing-dependent plasticity in deep convolutional networks", Pattern
Recognition 94:87-95; the layer sizes and constants are those of the
``MozafariMNIST2018`` network in SpykeTorch (Mozafari et al. 2019, Front.
Neurosci. 13:625). Pipeline for a ``28 x 28`` digit (``T`` time steps)::

    DoG (3 scales x on/off = 6 maps) -> rank-order latency  [T, B, 28, 28, 6]
    S1: conv 5x5 (pad 2), C1 maps, IF thr1, fire once       [T, B, 28, 28, C1]
        pool 2x2 stride 2 by earliest spike                  [T, B, 14, 14, C1]
    S2: conv 3x3 (pad 1), C2 maps, IF thr2                   [T, B, 14, 14, C2]
        pool 3x3 stride 3                                    [T, B, 4, 4, C2]
    S3: decision layer, conv 5x5 (pad 2), 10 x per_class maps, no threshold:
        the neuron (any map, any of the 4x4 positions) with the largest
        final potential v = sum_i w_i [input i fired] decides; its map's
        class is the answer.

S1 and S2 learn, one after the other, by unsupervised soft-bound STDP on
the k winners (point-wise inhibition, then k-WTA with an inhibition radius);
S3 learns by R-STDP: reward (correct class) applies STDP to the winner,
punishment anti-STDP. All functions are pure; the data loop lives in
``launch/stdp.py``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxspike import energy, stdp

Array = jax.Array

__all__ = ["NetConfig", "Params", "init_params", "encode", "forward", "features", "decision_potentials", "decide", "make_stdp_step",
           "make_rstdp_epoch", "synaptic_events", "energy_layers", "energy_counts"]


class NetConfig(NamedTuple):
    """Network constants (defaults: SpykeTorch ``MozafariMNIST2018``).

    Attributes:
      num_steps: ``T`` latency bins.
      dog_threshold: DoG response threshold (0..255 pixel scale).
      norm_radius: local-normalisation radius of the DoG maps.
      c1, k1, r1, thr1: S1 maps, STDP winners, inhibition radius, threshold.
      c2, k2, r2, thr2: the same for S2.
      per_class: decision neurons per class (10 classes).
    """

    num_steps: int = 15
    dog_threshold: float = 50.0
    norm_radius: int = 8
    c1: int = 30
    k1: int = 5
    r1: int = 3
    thr1: float = 15.0
    c2: int = 250
    k2: int = 8
    r2: int = 1
    thr2: float = 10.0
    per_class: int = 20
    num_classes: int = 10


class Params(NamedTuple):
    """``w1 [5, 5, 6, C1]``, ``w2 [3, 3, C1, C2]`` in [0, 1]; ``w3 [5, 5, C2, 10 * per_class]`` in [0.2, 0.8]."""

    w1: Array
    w2: Array
    w3: Array


_DOG = stdp.dog_kernels()


def num_features(cfg: NetConfig) -> int:
    """Size of the pooled S2 map ``4 x 4 x C2`` (the decision layer's input)."""
    return 4 * 4 * cfg.c2


def init_params(key: Array, cfg: NetConfig) -> Params:
    """Weights ``N(0.8, 0.05)``, clipped to each layer's bounds."""
    k1, k2, k3 = jax.random.split(key, 3)
    w1 = stdp.init_conv_weights(k1, 5, _DOG.shape[-1], cfg.c1)
    w2 = stdp.init_conv_weights(k2, 3, cfg.c1, cfg.c2)
    w3 = stdp.init_conv_weights(k3, 5, cfg.c2, cfg.num_classes * cfg.per_class)
    return Params(w1, w2, jnp.clip(w3, 0.2, 0.8))


def encode(images: Array, cfg: NetConfig) -> Array:
    """``[B, 28, 28, 1]`` in [0, 1] -> ``[T, B, 28, 28, 6]`` DoG latency spikes."""
    if images.ndim != 4 or images.shape[1:] != (28, 28, 1):
        raise ValueError(f"images must be [B, 28, 28, 1], got shape {tuple(images.shape)}")
    return stdp.encode_images(images, cfg.num_steps, _DOG, cfg.dog_threshold, cfg.norm_radius)


def _layer1(w1, in_spikes, cfg):
    return stdp.fire(stdp.conv_potentials(in_spikes, w1, padding=2), cfg.thr1)


def _layer2_input(spikes1):
    # As SpykeTorch's MozafariMNIST2018: no point-wise inhibition between S1 and S2 (with it,
    # a 3x3 field would hold at most 9 input spikes, below thr2 = 10).
    return stdp.pool(spikes1, 2, 2)


def _layer2(w2, in2, cfg):
    return stdp.fire(stdp.conv_potentials(in2, w2, padding=1), cfg.thr2)


def forward(params: Params, images: Array, cfg: NetConfig) -> tuple[Array, dict]:
    """Spikes of the pooled S2 map and per-layer counts.

    Returns:
      ``(pooled2, aux)``: ``[T, B, 4, 4, C2]`` one-hot spikes; ``aux`` holds
      ``[B]`` spike counts of each stage (``spikes_in``, ``spikes1``,
      ``spikes2_in``, ``spikes2``, ``spikes3_in``) and synaptic events
      (``synops1``, ``synops2``, ``synops3``: spikes x fan-out).
    """
    in_spikes = encode(images, cfg)
    spikes1, _ = _layer1(params.w1, in_spikes, cfg)
    in2 = _layer2_input(spikes1)
    spikes2, _ = _layer2(params.w2, in2, cfg)
    pooled2 = stdp.pool(spikes2, 3, 3)
    count = lambda s: jnp.sum(s, axis=(0, 2, 3, 4))  # noqa: E731
    n_out3 = cfg.num_classes * cfg.per_class
    aux = {
        "spikes_in": count(in_spikes),
        "spikes1": count(spikes1),
        "spikes2_in": count(in2),
        "spikes2": count(spikes2),
        "spikes3_in": count(pooled2),
        "synops1": stdp.conv_synops(in_spikes, 5, cfg.c1, padding=2),
        "synops2": stdp.conv_synops(in2, 3, cfg.c2, padding=1),
        "synops3": stdp.conv_synops(pooled2, 5, n_out3, padding=2),
    }
    return pooled2, aux


def features(params: Params, images: Array, cfg: NetConfig) -> tuple[Array, Array, dict]:
    """Decision-layer inputs: which pooled S2 neurons fired, and how early.

    Returns:
      ``(fired [B, 4, 4, C2] float 0/1, earliness [B, 4, 4, C2] = (T - t) / T, aux)``.
    """
    pooled2, aux = forward(params, images, cfg)
    times = stdp.spike_times(pooled2)
    fired = (times < cfg.num_steps).astype(jnp.float32)
    earliness = ((cfg.num_steps - times) / cfg.num_steps).astype(jnp.float32)
    return fired, earliness, aux


def _decision_potentials(padded: Array, w3: Array) -> Array:
    """``[B, H + k - 1, W + k - 1, C2]`` zero-padded inputs -> ``[B, H, W, maps]`` potentials.

    The k x k "valid" convolution as one matmul over stacked shifted copies
    ``[B, H, W, k, k, C2]``. Inside the R-STDP scan, where ``w3`` is
    loop-carried, XLA's CPU backend rewrote ``lax.conv_general_dilated`` into a
    slower operand-swapped convolution: this form made an R-STDP epoch 5-6x
    faster on CPU (``bench/rstdp_epoch.py``); potentials equal up to float rounding.
    """
    kernel = w3.shape[0]
    height, width = padded.shape[1] - kernel + 1, padded.shape[2] - kernel + 1
    shifted = jnp.stack(
        [jnp.stack([padded[:, dy : dy + height, dx : dx + width] for dx in range(kernel)], 3) for dy in range(kernel)], 3
    )
    return jnp.einsum("bhwyxc,yxcm->bhwm", shifted, w3)


def _pad_for(w3: Array, fired: Array) -> Array:
    """``fired [B, H, W, C2]`` checked and zero-padded for the decision layer's "same" convolution."""
    if fired.ndim != 4 or fired.shape[-1] != w3.shape[2]:
        raise ValueError(f"fired must be [B, H, W, {w3.shape[2]}], got shape {tuple(fired.shape)}")
    pad = w3.shape[0] // 2
    return jnp.pad(fired, ((0, 0), (pad, pad), (pad, pad), (0, 0)))


def decision_potentials(w3: Array, fired: Array) -> Array:
    """Final potentials ``[B, H, W, maps]`` of the decision layer (what ``decide`` ranks)."""
    return _decision_potentials(_pad_for(w3, fired), w3)


def decide(w3: Array, fired: Array, cfg: NetConfig, active: Array | None = None) -> tuple[Array, Array, Array]:
    """Decision by the largest final potential, and the winner's causal pairs.

    ``v[h, w, j] = sum_{dy, dx, c} w3[dy, dx, c, j] fired[h + dy - 2, w + dx - 2, c]``
    (zero outside, for the 5x5 kernel);
    with no threshold every decision neuron "fires" at the last step, so an
    input pairs causally (LTP) iff it fired at all.

    Args:
      w3: ``[5, 5, C2, 10 * per_class]``.
      fired: ``[B, 4, 4, C2]`` 0/1.
      active: optional ``bool [B, 10 * per_class]``: only these decision maps
        may win (dropout during R-STDP training; ``None`` = all).

    Returns:
      ``(class [B], neuron map j [B], pairings bool [B, 5, 5, C2])``; map ``j``
      belongs to class ``j // per_class``.
    """
    padded = _pad_for(w3, fired)
    pot = _decision_potentials(padded, w3)
    kernel = w3.shape[0]
    batch, _, width, maps = pot.shape
    if active is not None:
        if active.shape != (batch, maps):
            raise ValueError(f"active must be [B, maps] = {(batch, maps)}, got shape {tuple(active.shape)}")
        pot = jnp.where(active[:, None, None, :], pot, -jnp.inf)
    flat = jnp.argmax(pot.reshape(batch, -1), axis=-1)
    h, rem = jnp.divmod(flat, width * maps)
    w, j = jnp.divmod(rem, maps)
    patch = jax.vmap(lambda x, hh, ww: jax.lax.dynamic_slice(x, (hh, ww, 0), (kernel, kernel, x.shape[-1])))
    pairings = patch(padded, h, w) > 0
    j = j.astype(jnp.int32)
    return j // cfg.per_class, j, pairings


def make_stdp_step(cfg: NetConfig, layer: int, schedule: dict | None = None):
    """Unsupervised STDP step of S1 or S2 on a batch of images.

    ``step(params, images [B, 28, 28, 1], num_seen) -> (params, metrics)``:
    the batch goes forward with the current weights; each example's winners
    (point-wise inhibition, then k-WTA) update the layer in order, with
    :func:`jaxspike.stdp.learning_rates` at ``num_seen + b``. Batch 1 is
    SpykeTorch's online training; larger batches reuse the weights of the
    batch start to pick winners (faster, slightly stale).
    """
    if layer not in (1, 2):
        raise ValueError(f"layer must be 1 or 2, got {layer}")
    schedule = schedule or {}

    def step(params: Params, images: Array, num_seen: Array):
        in_spikes = encode(images, cfg)
        spikes1, v1 = _layer1(params.w1, in_spikes, cfg)
        if layer == 1:
            spikes_in, spikes, v_at, w, k, r, kernel, pad = in_spikes, spikes1, v1, params.w1, cfg.k1, cfg.r1, 5, 2
        else:
            in2 = _layer2_input(spikes1)
            spikes2, v2 = _layer2(params.w2, in2, cfg)
            spikes_in, spikes, v_at, w, k, r, kernel, pad = in2, spikes2, v2, params.w2, cfg.k2, cfg.r2, 3, 1
        # Winners are picked after point-wise inhibition, so one location trains one feature.
        spikes = stdp.pointwise_inhibition(spikes, v_at)
        v_at = v_at * jnp.max(spikes, axis=0)
        winners = stdp.k_winners(spikes, v_at, k, r)
        pairings = stdp.stdp_pairings(spikes_in, spikes, winners, kernel, pad)
        seen = num_seen + jnp.arange(images.shape[0])
        a_plus, a_minus = stdp.learning_rates(seen, **schedule)
        w_new = stdp.stdp_update(w, pairings, winners, a_plus, a_minus)
        params = params._replace(w1=w_new) if layer == 1 else params._replace(w2=w_new)
        metrics = {
            "winners": jnp.mean(jnp.sum(winners.valid, axis=1).astype(jnp.float32)),
            "a_plus": a_plus[-1],
            # Convergence measure of Kheradpisheh et al.: sum w (1 - w) / n -> 0 as weights go binary.
            "convergence": jnp.mean(w_new * (1.0 - w_new)),
            "dw": jnp.mean(jnp.abs(w_new - w)),
        }
        return params, metrics

    return step


def make_rstdp_epoch(cfg: NetConfig, batch: int = 1000, decide_every: int = 1, dropout: float = 0.0):
    """One R-STDP epoch of the decision layer over precomputed S2 features.

    ``epoch(w3, scales, fired [N, 4, 4, C2], labels [N], order [N], rates,
    adapt, key) -> (w3, scales, hits)`` with ``rates = (a+_r, a-_r, a+_p, a-_p)``
    the base rates and ``scales = (reward scale, punishment scale)`` carried
    from epoch to epoch (start: ``(0.9, 0.1)``, chance level as in the
    SpykeTorch example; ignored unless ``adapt``).
    Examples are visited in ``order`` and rewarded (+1, correct class) or
    punished (-1). After each chunk of ``batch`` examples the rates adapt to
    the chunk's performance: reward rates scale by its error rate,
    punishment rates by its hit rate (Mozafari et al. 2018, IEEE TNNLS
    29(12); SpykeTorch example), so the layer stops changing where it
    already works. ``decide_every`` examples are decided together with the
    weights of their group start and then applied one after another (1 =
    fully online, as the paper; more = faster, slightly stale decisions).
    ``dropout``: each example, every decision map is switched off with this
    probability (drawn from ``key``), so the winner is one of the others
    (Mozafari et al. 2018's guard against overfitting): more maps learn, and
    fewer of them specialise on single training digits. ``0`` = none (then
    ``key`` is unused).
    ``N`` must be a multiple of ``batch`` and ``batch`` of ``decide_every``.
    """
    if batch % decide_every:
        raise ValueError(f"batch={batch} must be a multiple of decide_every={decide_every}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    maps = cfg.num_classes * cfg.per_class

    def epoch(w3, scales, fired, labels, order, rates, adapt, key):
        n = order.shape[0]
        groups = order.reshape(n // batch, batch // decide_every, decide_every)
        keys = jax.random.split(key, groups.shape[:2]).reshape(groups.shape[:2])
        base = jnp.asarray(rates, jnp.float32)

        def chunk_fn(carry, inputs):
            w, scale_r, scale_p = carry
            idx, chunk_keys = inputs

            def group(w, inputs):
                ids, k = inputs
                active = None
                if dropout > 0:
                    active = jax.random.bernoulli(k, 1.0 - dropout, (decide_every, maps))
                    active = active | ~jnp.any(active, axis=-1, keepdims=True)  # never all off
                cls, neuron, pairings = decide(w, fired[ids], cfg, active)
                hit = cls == labels[ids]
                w = stdp.rstdp_update(
                    w, pairings, neuron, jnp.where(hit, 1.0, -1.0),
                    a_reward=(base[0] * scale_r, base[1] * scale_r),
                    a_punish=(base[2] * scale_p, base[3] * scale_p),
                )
                return w, jnp.sum(hit)

            w, hits = jax.lax.scan(group, w, (idx, chunk_keys))
            acc = jnp.sum(hits) / batch
            scale_r = jnp.where(adapt, 1.0 - acc, 1.0)
            scale_p = jnp.where(adapt, acc, 1.0)
            return (w, scale_r, scale_p), jnp.sum(hits)

        init = (w3, jnp.where(adapt, scales[0], 1.0), jnp.where(adapt, scales[1], 1.0))
        (w3, scale_r, scale_p), hits = jax.lax.scan(chunk_fn, init, (groups, keys))
        return w3, jnp.stack([scale_r, scale_p]), jnp.sum(hits)

    return epoch


def synaptic_events(aux: dict) -> dict:
    """Mean synaptic events per image of each layer, and their energy at 0.9 pJ/AC (Horowitz 2014)."""
    out = {k: float(np.mean(np.asarray(v))) for k, v in aux.items()}
    out["synops_total"] = out["synops1"] + out["synops2"] + out["synops3"]
    out["energy_nj_per_image"] = out["synops_total"] * 0.9e-3
    return out


def energy_layers(cfg: NetConfig) -> dict[str, energy.LayerShape]:
    """Shapes of one image's pass for :func:`jaxspike.energy.memory_energy_report`.

    S1 and S2 are spiking convolutions without bias; the decision layer
    integrates for ``T`` steps and emits no spikes (a readout). The DoG front
    end is analog filtering shared by the spiking network and its twin and is
    not counted by either; pooling is free.
    """
    t = cfg.num_steps
    return {
        "s1": energy.conv_shape((28, 28), (28, 28), 5, _DOG.shape[-1], cfg.c1, t, bias=False),
        "s2": energy.conv_shape((14, 14), (14, 14), 3, cfg.c1, cfg.c2, t, bias=False),
        "decision": energy.conv_shape((4, 4), (4, 4), 5, cfg.c2, cfg.num_classes * cfg.per_class, t, bias=False,
                                      spiking=False),
    }


def energy_counts(events: dict, cfg: NetConfig) -> dict[str, dict[str, float]]:
    """Per-image mean counts of :func:`synaptic_events` -> ``{layer: {spikes, firing_rate, synops}}``
    for the layers of :func:`energy_layers`."""
    shapes = energy_layers(cfg)
    spikes = {"s1": events["spikes1"], "s2": events["spikes2"], "decision": 0.0}
    synops = {"s1": events["synops1"], "s2": events["synops2"], "decision": events["synops3"]}
    return {n: {"spikes": float(spikes[n]), "synops": float(synops[n]),
                "firing_rate": float(spikes[n]) / (s.num_steps * s.neurons)} for n, s in shapes.items()}
