"""Latent walk of a spiking GAN: interpolates the noise units' firing probabilities.

    python -m launch.gan_walk --workdir=/tmp/sgan --out=results/gan/walk.png [--rows=6 --cols=10 --seed=0]

Each row walks from one random vector of firing probabilities ``p0 ~ U(0,1)^Z``
to another, ``p(a) = (1 - a) p0 + a p1`` for ``a`` in ``cols`` even steps.
Every image of a row draws its noise spikes with the same key, so the spike
trains change only where a unit's probability crosses its uniform draw: the
walk is as smooth as a spike code allows (:func:`jaxspike.models.gan.latent_walk`).
Uses the generator EMA of the newest checkpoint (as ``launch.sample`` does).
"""

from __future__ import annotations

import os
import sys

from absl import app, flags
from absl import logging as absl_logging

_WORKDIR = flags.DEFINE_string("workdir", None, "Run folder of a spiking GAN (model.name=gan).")
_OUT = flags.DEFINE_string("out", None, "Output .png path.")
_ROWS = flags.DEFINE_integer("rows", 6, "Number of walks (>= 1).")
_COLS = flags.DEFINE_integer("cols", 10, "Images per walk (>= 2).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the end points and the noise spikes (>= 0).")
flags.mark_flags_as_required(["workdir", "out"])


def _fail(message: str) -> None:
    print(f"launch.gan_walk: error: {message}", file=sys.stderr)
    sys.exit(2)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected positional arguments: {argv[1:]}")
    if absl_logging.get_verbosity() >= absl_logging.INFO and not flags.FLAGS["verbosity"].present:
        absl_logging.set_verbosity(absl_logging.WARNING)
    if _ROWS.value < 1 or _COLS.value < 2:
        _fail(f"--rows={_ROWS.value} --cols={_COLS.value}: need rows >= 1 and cols >= 2")
    if not _OUT.value.endswith(".png"):
        _fail(f"--out={_OUT.value!r}: must end in .png")

    import jax

    from jaxspike import train
    from jaxspike.families import gan as gan_family
    from jaxspike.models import gan as gan_lib
    from jaxspike.train import io

    try:
        config, _, state, image_shape = train.load_trained(_WORKDIR.value)
    except (FileNotFoundError, train.ConfigError) as err:
        _fail(str(err))
    if config.model.name != "gan":
        _fail(f"--workdir={_WORKDIR.value!r} holds a {config.model.name!r} model; a latent walk needs a spiking GAN (gan)")
    generator, _ = gan_family.make_models(config, image_shape)
    images = gan_lib.latent_walk(generator, state.g_ema, jax.random.key(_SEED.value), _ROWS.value, _COLS.value)
    os.makedirs(os.path.dirname(os.path.abspath(_OUT.value)), exist_ok=True)
    io.save_image_grid(_OUT.value, jax.device_get(images), cols=_COLS.value)
    print(f"launch.gan_walk: wrote {_ROWS.value} walks of {_COLS.value} images to {_OUT.value}")


if __name__ == "__main__":
    app.run(main)
