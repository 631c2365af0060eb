"""Memory-inclusive energy of trained run folders, as the results pages' tables show it
(``launch.energy_report`` prints them; no flags here, so report tools can share it).

For every run folder (a training run of :mod:`jaxspike.train`, or a parent of ``seed_<k>``
folders, averaged over them) it takes the per-layer counts of the last evaluation in
``metrics.jsonl`` (``energy/layers/<name>/*``: one generation pass), the layer shapes of the
model its ``config.json`` describes, and prices them with
:func:`jaxspike.energy.memory_energy_report`: synaptic operations only (the usual figure), and
with weight, membrane and spike traffic on the ``neuromorphic`` and ``accelerator`` profiles,
against an fp32, an int8 and a bit-matched (``ceil(log2(T+1))``-bit activations) twin, with each
layer's spike rate and the crossover spike rate below which the spiking network wins.
Needs no checkpoint: the counts are logged, the shapes come from the config.

Run folders of the local-learning routes (``launch.stdp``, ``launch.rbm``) are priced from their
``metrics.json``: the STDP network per test image (S1, S2 and the decision layer as a readout),
the spiking RBM per Gibbs step of its latest label-gain-1 sampling (a conventional binary RBM
sampler is its bit-matched twin; the ratios hold per sample).
"""

from __future__ import annotations

import json
import os
import re

from launch import reporting


def run_dirs(path: str) -> list[str]:
    """The ``seed_<k>/`` runs of a sweep folder, else the folder itself."""
    return reporting.seed_dirs(path) or [path]


def last_counts(run_dir: str) -> dict:
    """``{layer: {count: value}}`` of the last row holding ``energy/layers/...``."""
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    rows = [r for r in rows if any(k.startswith("energy/layers/") for k in r)]
    if not rows:
        raise ValueError(f"{run_dir}: metrics.jsonl has no evaluation with energy counts (config.eval_every)")
    layers: dict[str, dict] = {}
    for key, value in rows[-1].items():
        if key.startswith("energy/layers/"):
            name, count = key[len("energy/layers/"):].rsplit("/", 1)
            layers.setdefault(name, {})[count] = value
    return layers


def price_run(run_dir: str) -> dict:
    """The headline of :func:`jaxspike.energy.memory_energy_report` for one run, and its layer spike rates."""
    import jax
    import jax.numpy as jnp
    import ml_collections

    from jaxspike import energy, families

    with open(os.path.join(run_dir, "config.json")) as f:
        saved = json.load(f)
    if "net" in saved or "rbm" in saved:
        return _local_report(run_dir, saved)
    saved = families.upgrade(saved)
    image_shape = tuple(saved.pop("image_shape"))
    for extra in ("num_train", "num_devices"):
        saved.pop(extra, None)
    config = ml_collections.ConfigDict(saved)
    objective = families.build(config, image_shape)
    num = int(config.batch_size)
    example = {"image": jnp.zeros((num,) + image_shape), "label": jnp.zeros((num,), jnp.int32)}
    state = jax.eval_shape(objective.init, jax.random.key(0), example)
    shapes = energy.layer_shapes(lambda s, k: objective.energy(s, k, num), state, jax.random.key(0))
    return energy.summary(energy.per_sample_aux(last_counts(run_dir)), shapes)


def _local_report(run_dir: str, saved: dict) -> dict:
    """The same for a run of :mod:`jaxspike.local`: the STDP network's test images, or the RBM's
    samples (the default sampler's per-sample counts, priced per Gibbs step)."""
    from jaxspike import energy
    from jaxspike.models import rbm, spyketorch_net

    path = os.path.join(run_dir, "metrics.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{run_dir}: no metrics.json (the run has not finished)")
    with open(path) as f:
        metrics = json.load(f)
    if "net" in saved:
        events = {k[len("test_"):]: v for k, v in metrics.items() if k.startswith("test_")}
        if "synops1" not in events:
            raise ValueError(f"{path} holds no test-image counts (test_synops1, ...): a front-end-only run?")
        cfg = spyketorch_net.NetConfig(**saved["net"])
        aux, shapes = spyketorch_net.energy_counts(events, cfg), spyketorch_net.energy_layers(cfg)
    else:
        tags = [k[len("sampling_energy_"):] for k in metrics if k.startswith("sampling_energy_gain1_")]
        if not tags:
            raise ValueError(f"{path} holds no sampler counts (sampling_energy_gain1_steps<N>)")
        tag = tags[-1]  # the latest sampling of the run
        cfg = rbm.RBMConfig(**saved["rbm"])
        steps = int(tag.rsplit("steps", 1)[1])
        aux, shapes = rbm.energy_counts(metrics[f"sampling_energy_{tag}"], cfg, steps), rbm.energy_layers(cfg)
    return energy.summary(energy.per_sample_aux(aux), shapes)


def mean_rows(rows: list[dict]) -> dict:
    import numpy as np

    out = {}
    for key, value in rows[0].items():
        if isinstance(value, dict):
            out[key] = {k: float(np.mean([r[key][k] for r in rows])) for k in value}
        else:
            out[key] = float(np.mean([r[key] for r in rows]))
    return out


def layer_rates(layers: dict) -> str:
    """``name rate, ...``; a sampler's repeated calls (``call_<k>/<layer>``) averaged per layer."""
    groups: dict[str, list[float]] = {}
    for name, rate in layers.items():
        match = re.fullmatch(r"call_\d+/(.+)", name)
        groups.setdefault(match.group(1) if match else name, []).append(rate)
    text = ", ".join(f"{k} {sum(v) / len(v):.3f}" for k, v in groups.items())
    calls = max(len(v) for v in groups.values())
    return text if calls == 1 else f"{text}; each the mean over {calls} calls"


def table(named: list[tuple[str, dict, int]]) -> str:
    head = ("| run | seeds | T | spike rate (per layer) | synops only | neuromorphic vs fp32 | vs int8 | vs matched "
            "| accelerator vs matched | crossover rate (neuromorphic, matched) | activity scale to win |")
    lines = [head, "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r, seeds in named:
        per_layer = layer_rates(r["layers"])
        lines.append(
            f"| {name} | {seeds} | {int(r['num_steps'])} | {r['spike_rate']:.3f} ({per_layer}) | {r['synops_only']:.2f}x "
            f"| {r['neuromorphic/fp32']:.2f}x | {r['neuromorphic/int8']:.2f}x | {r['neuromorphic/matched']:.2f}x "
            f"| {r['accelerator/matched']:.2f}x | {r['neuromorphic/matched/crossover_rate']:.3f} "
            f"| {r['crossover_scale']:.2f} |")
    return "\n".join(lines) + "\n"
