r"""Refits a trained spiking VAE's mixture prior to its aggregate posterior (a new run folder).

    python -m launch.fit_prior --workdir=runs/svae --out=runs/svae_prior512 --num_components=512

Encodes the run's training split, fits a mixture of ``--num_components``
Bernoulli spike processes to the posterior spike probabilities by EM
(:func:`jaxspike.families.vae.fit_mixture_prior`) and writes ``--out``: the
run's config with ``model.num_components`` set and a ``prior_fit`` record, a
checkpoint at the run's step holding the trained weights and the fitted
prior, the sample grids and, when the run's config evaluates
(``eval_every``), the loop's evaluation row in ``metrics.jsonl``. The
encoder and decoder are unchanged; ``launch.sample`` and ``launch.evaluate``
work on ``--out`` as on any run. For a seed sweep, point ``--workdir`` at one
run, e.g. ``W/seed_2``.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags
from absl import logging as absl_logging

_WORKDIR = flags.DEFINE_string("workdir", None, "Run folder of a spiking VAE with prior='mixture' (launch.train).")
_OUT = flags.DEFINE_string("out", None, "New run folder for the refitted model (must not hold a run).")
_K = flags.DEFINE_integer("num_components", 512, "Components K of the fitted mixture (1 <= K <= training images).")
_ITERS = flags.DEFINE_integer("iters", 50, "EM iterations.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the components' starting posteriors and of the encoding.")

flags.mark_flags_as_required(["workdir", "out"])


def _fail(message: str) -> None:
    print(f"launch.fit_prior: error: {message}", file=sys.stderr)
    sys.exit(2)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected positional arguments: {argv[1:]}")
    if absl_logging.get_verbosity() >= absl_logging.INFO and not flags.FLAGS["verbosity"].present:
        absl_logging.set_verbosity(absl_logging.WARNING)
    if _ITERS.value < 1:
        _fail(f"--iters={_ITERS.value}: must be >= 1")
    out = os.path.abspath(_OUT.value)
    if os.path.abspath(_WORKDIR.value) == out:
        _fail("--out must be a new folder, not --workdir (the trained run stays as it is)")
    if os.path.exists(os.path.join(out, "config.json")) or os.path.exists(os.path.join(out, "checkpoints")):
        _fail(f"--out={out!r} already holds a run; choose a new folder")

    import jax

    from jaxspike import families, train
    from jaxspike.families import vae
    from jaxspike.train import io

    try:
        config, _, state, image_shape = train.load_trained(_WORKDIR.value)
    except (FileNotFoundError, train.ConfigError) as err:
        _fail(str(err))
    m = config.model
    if m.name != "fc_vae" or m.get("prior") != "mixture":
        _fail(f"--workdir={_WORKDIR.value!r} is a {m.name!r} run with prior={m.get('prior')!r}; "
              "launch.fit_prior refits the mixture prior of a spiking VAE (model.name='fc_vae', prior='mixture')")
    if m.get("frontend"):
        _fail("runs with a frozen STDP front end (model.frontend) are not supported")
    model = vae.make_model(config, image_shape)
    ds, _ = train.load_splits(config)
    split = "train_fit" if config.data.validation else "train"
    if not 1 <= _K.value <= len(ds.images):
        _fail(f"--num_components={_K.value}: need 1 <= K <= {len(ds.images)} (the {split} split's images)")
    k_enc, k_fit, k_init = jax.random.split(jax.random.key(_SEED.value), 3)
    try:
        q = vae.posterior_probs(model, state.params, ds.images, k_enc)
    except ValueError as err:
        _fail(str(err))
    component_logits, mixture_logits = vae.fit_mixture_prior(q, _K.value, k_fit, iters=_ITERS.value)

    step = int(state.step)
    config.model.num_components = _K.value
    record = {"source": os.path.abspath(_WORKDIR.value), "split": split, "num_components": _K.value,
              "iters": _ITERS.value, "seed": _SEED.value}
    objective = families.build(config, image_shape)
    fresh = objective.init(k_init, {"image": jax.numpy.zeros((2,) + tuple(image_shape))})
    params = {**state.params, "component_logits": component_logits, "mixture_logits": mixture_logits}
    # A fresh optimiser state: the refitted run starts no new training.
    new_state = fresh.replace(step=state.step, params=params)

    os.makedirs(out, exist_ok=True)
    saved = io.read_json(os.path.join(os.path.abspath(_WORKDIR.value), "config.json"))
    meta = {k: saved[k] for k in ("image_shape", "num_train", "num_devices") if k in saved}
    io.write_json(os.path.join(out, "config.json"), {**config.to_dict(), **meta, "prior_fit": record})
    ckpt = io.Checkpointer(os.path.join(out, "checkpoints"), int(config.keep_checkpoints))
    try:
        ckpt.save(step, new_state)
    finally:
        ckpt.close()
    row = train.evaluate_run(config, objective, new_state, out, step)
    shown = {k: round(float(v), 4) for k, v in row.items()
             if k in ("test/elbo", "eval/fid", "eval/recall", "eval/space2/fid", "eval/space2/recall")}
    print(f"launch.fit_prior: K={_K.value} prior fitted to {len(ds.images)} {split} posteriors; "
          f"wrote {out} (step {step}){'; ' + str(shown) if shown else ''}")


if __name__ == "__main__":
    app.run(main)
