"""Writes samples of a trained model as one ``.npy`` array.

    python -m launch.sample --workdir=/tmp/svae --num=1000 --out=/tmp/svae/samples.npy [--seed=0]

The array is ``float32 [N, H, W, C]`` in [0, 1], shaped like the training
data, as the model family's ``sample`` draws them (a VAE: the decoder's
Bernoulli means; a GAN: the images of the generator's moving average). Sample ``i`` depends only on
``--seed`` and ``i`` (chunks of ``--chunk`` use keys ``fold_in(key(seed),
chunk)``), so a larger ``--num`` extends a smaller one. For a seed sweep,
point ``--workdir`` at one run, e.g. ``W/seed_2``.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags
from absl import logging as absl_logging

_WORKDIR = flags.DEFINE_string("workdir", None, "Run folder written by launch.train.")
_NUM = flags.DEFINE_integer("num", None, "Number of samples N (>= 1).")
_OUT = flags.DEFINE_string("out", None, "Output .npy path.")
_SEED = flags.DEFINE_integer("seed", 0, "Sampling seed (>= 0).")
_CHUNK = flags.DEFINE_integer("chunk", 256, "Samples generated per compiled call.")

flags.mark_flags_as_required(["workdir", "num", "out"])


def _fail(message: str) -> None:
    print(f"launch.sample: error: {message}", file=sys.stderr)
    sys.exit(2)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected positional arguments: {argv[1:]}")
    if absl_logging.get_verbosity() >= absl_logging.INFO and not flags.FLAGS["verbosity"].present:
        absl_logging.set_verbosity(absl_logging.WARNING)
    if _NUM.value < 1:
        _fail(f"--num={_NUM.value}: need at least one sample")
    if _SEED.value < 0:
        _fail(f"--seed={_SEED.value}: must be >= 0")
    if _CHUNK.value < 1:
        _fail(f"--chunk={_CHUNK.value}: must be >= 1")
    if not _OUT.value.endswith(".npy"):
        _fail(f"--out={_OUT.value!r}: must end in .npy")

    import jax
    import numpy as np

    from jaxspike import train

    try:
        _, objective, state, image_shape = train.load_trained(_WORKDIR.value)
    except (FileNotFoundError, train.ConfigError) as err:
        _fail(str(err))
    sample = jax.jit(objective.sample, static_argnums=2)
    samples = train.generate_samples(sample, state, jax.random.key(_SEED.value), _NUM.value, _CHUNK.value)
    samples = np.clip(samples.astype(np.float32), 0.0, 1.0)
    assert samples.shape == (_NUM.value,) + tuple(image_shape), samples.shape
    os.makedirs(os.path.dirname(os.path.abspath(_OUT.value)), exist_ok=True)
    np.save(_OUT.value, samples)
    print(f"launch.sample: wrote {samples.shape} float32 samples to {_OUT.value}")


if __name__ == "__main__":
    app.run(main)
