"""Converts a trained analog generator or VAE decoder into an integrate-and-fire network.

    python -m launch.convert --workdir=W --T=64 [--Ts=4,8,16,32,64,128,256] [--out=W_converted]

``W`` is a run folder of ``launch.train`` with an analog model: ``analog_gan``
(generator; its noise kind picks the spike coding: uniform -> ``uniform_rate``,
binary -> ``binary_tonic``, gaussian -> ``gaussian_quantile``) or
``analog_vae`` (decoder, Gaussian latent -> ``gaussian_quantile``). The
network is normalised on ``--calibration`` noise samples (percentile
``--percentile``), driven by Bernoulli spike trains standing for fresh noise,
and scored like every model: ``metrics.evaluate_samples`` on ``--num``
samples, ``energy.energy_report`` on the layer counts. The analog original is
scored on the same noise for comparison. Writes ``--out`` (default
``W_converted``): ``config.json``, ``metrics.jsonl`` (one row per T, plus the
analog row) and ``samples_T<T>.png``.
"""

from __future__ import annotations

import json
import os
import sys
import time

from absl import app, flags
from absl import logging as absl_logging

_WORKDIR = flags.DEFINE_string("workdir", None, "Run folder of a trained analog_gan or analog_vae.")
_T = flags.DEFINE_integer("T", 64, "Time steps of the converted network (ignored if --Ts is given).")
_TS = flags.DEFINE_string("Ts", "", "Comma-separated time steps to sweep, e.g. 4,8,16,32,64,128,256.")
_OUT = flags.DEFINE_string("out", None, "Output run folder (default: <workdir>_converted).")
_NUM = flags.DEFINE_integer("num", 1000, "Samples to score per T.")
_CALIB = flags.DEFINE_integer("calibration", 1000, "Noise samples for data-based normalisation.")
_PCT = flags.DEFINE_float("percentile", 99.9, "Activation percentile that maps to the threshold.")
_CODING = flags.DEFINE_string("coding", "", "Noise spike coding (default: from the model's noise kind).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the noise and spike draws.")
_CHUNK = flags.DEFINE_integer("chunk", 250, "Samples simulated per call.")

flags.mark_flags_as_required(["workdir"])


def _fail(message: str) -> None:
    print(f"launch.convert: error: {message}", file=sys.stderr)
    sys.exit(2)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected positional arguments: {argv[1:]}")
    absl_logging.set_verbosity(absl_logging.WARNING)
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxspike import convert, energy, metrics
    from jaxspike.families import gan as gan_family
    from jaxspike.families import vae as vae_family
    from jaxspike.train import io, loop

    try:
        config, objective, state, image_shape = loop.load_trained(_WORKDIR.value)
    except (FileNotFoundError, ValueError) as err:
        _fail(str(err))
    m = config.model
    if m.name == "analog_gan":
        model, _ = gan_family.make_models(config, image_shape)
        params = state.g_ema
        net = convert.from_analog_generator(model, params)
        noise_kind, noise_dim = model.noise, m.noise_dim

        def sample_noise(key, n):
            return model.sample_noise(key, n)

        def analog_images(z):
            return model.apply({"params": params}, z)[0]
    elif m.name == "analog_vae":
        model = vae_family.make_model(config, image_shape)
        params = state.params
        net = convert.from_analog_vae_decoder(model, params)
        noise_kind = "binary" if model.latent_kind == "bernoulli" else "gaussian"

        def sample_noise(key, n):
            return model.sample_prior(key, n)

        def analog_images(z):
            return jax.nn.sigmoid(model.apply({"params": params}, z, method="decode")).reshape((-1,) + tuple(image_shape))
    else:
        _fail(f"--workdir={_WORKDIR.value!r} holds a {m.name!r} model; conversion takes analog_gan or analog_vae runs")

    coding = _CODING.value or {"uniform": "uniform_rate", "binary": "binary_tonic", "gaussian": "gaussian_quantile"}[noise_kind]
    if coding not in convert.NOISE_CODINGS:
        _fail(f"--coding={coding!r}: choose one of {convert.NOISE_CODINGS}")
    if coding == "gaussian_quantile":
        net = convert.quantile_input_layer(net)
    Ts = [int(t) for t in _TS.value.split(",") if t.strip()] if _TS.value else [_T.value]
    if any(t < 1 for t in Ts):
        _fail(f"--T/--Ts must be positive, got {Ts}")

    key = jax.random.key(_SEED.value)
    k_cal, k_noise, k_spk = jax.random.split(key, 3)
    calib = sample_noise(k_cal, _CALIB.value)
    calib_in = jax.scipy.stats.norm.cdf(calib) if coding == "gaussian_quantile" else calib
    snn = convert.convert(net, calib_in, _PCT.value)

    out_dir = os.path.abspath(_OUT.value or _WORKDIR.value.rstrip("/") + "_converted")
    os.makedirs(out_dir, exist_ok=True)
    io.write_json(os.path.join(out_dir, "config.json"), {
        "source_workdir": os.path.abspath(_WORKDIR.value), "model": m.name, "coding": coding, "Ts": Ts,
        "num": _NUM.value, "calibration": _CALIB.value, "percentile": _PCT.value, "seed": _SEED.value,
        "lambdas": snn.lambdas, "command": " ".join(sys.argv),
    })
    rows = []
    noise = sample_noise(k_noise, _NUM.value)
    analog = np.asarray(jnp.concatenate([analog_images(noise[i:i + _CHUNK.value]) for i in range(0, _NUM.value, _CHUNK.value)]))
    scores = metrics.evaluate_samples(analog, config.data.name, data_dir=config.data.data_dir or None)
    if m.name == "analog_gan":
        analog_macs = energy.analog_macs(model, params, noise[:2])
    else:
        analog_macs = energy.analog_macs(model, params, noise[:2], method="decode")
    rows.append({"T": 0, "kind": "analog", **{k: v for k, v in scores.items() if k != "class_histogram"},
                 "macs": analog_macs, "energy_nj": analog_macs * energy.E_MAC_PJ / 1e3})
    io.save_image_grid(os.path.join(out_dir, "samples_analog.png"), analog[:64])

    sim = jax.jit(lambda spikes: convert.run_snn_on_spikes(snn, spikes), static_argnums=())
    for T in Ts:
        t0 = time.time()
        images, auxes = [], []
        for i in range(0, _NUM.value, _CHUNK.value):
            z = noise[i:i + _CHUNK.value]
            spikes = convert.noise_spikes(jax.random.fold_in(k_spk, T * 100_003 + i), z, T, coding)
            out, _, aux = sim(spikes)
            images.append(np.asarray(out).reshape((-1,) + tuple(image_shape)))
            auxes.append(jax.tree_util.tree_map(np.asarray, aux))
        images = np.clip(np.concatenate(images), 0.0, 1.0).astype(np.float32)
        aux = jax.tree_util.tree_map(lambda *a: np.concatenate(a), *auxes)
        rep = energy.energy_report(aux)
        # The same counts with weight, membrane and spike traffic, against the analog original as
        # fp32, int8 and bit-matched twins (jaxspike.energy.memory_energy_report).
        shapes = energy.layer_shapes(lambda s: convert.run_snn_on_spikes(snn, s)[2], spikes)
        memory = energy.headline(energy.memory_energy_report(aux, shapes))
        scores = metrics.evaluate_samples(images, config.data.name, data_dir=config.data.data_dir or None)
        row = {"T": T, "kind": "converted", **{k: v for k, v in scores.items() if k != "class_histogram"},
               "pixel_mae_vs_analog": float(np.mean(np.abs(images - analog))),
               "spikes_per_sample": rep["spikes_per_sample"], "synops": rep["synops"], "macs": rep["macs"],
               "energy_nj": rep["energy_nj"], "sim_s": time.time() - t0,
               **{f"energy_mem/{k}": v for k, v in memory.items()}}
        rows.append(row)
        io.save_image_grid(os.path.join(out_dir, f"samples_T{T}.png"), images[:64])
        print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()
                          if k in ("T", "fid", "inception_score", "class_entropy", "pixel_mae_vs_analog", "energy_nj")}), flush=True)
    with open(os.path.join(out_dir, "metrics.jsonl"), "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    a = rows[0]
    print(json.dumps({"analog_fid": round(a["fid"], 3), "analog_energy_nj": a["energy_nj"], "out": out_dir}))


if __name__ == "__main__":
    app.run(main)
