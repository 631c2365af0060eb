"""S2 features of the 16 two-pixel shifts of the training digits, for ``launch.val_rstdp --extra``.

    python -m launch.stdp --workdir=/tmp/s14/p0 --seed=0 --c2=100 --stdp_only   # params.npz (w1, w2)
    python -m launch.shift_features --params=/tmp/s14/p0/params.npz --out=/tmp/s14/sh2_s0.npy

The S1/S2 of a seed are the same in a ``--stdp_only`` run and a full one (both pure functions of
the seed), so the rows line up with that seed's cached features; these shifts add to
``launch.stdp``'s eight one-pixel ones.
"""

from __future__ import annotations

from absl import app, flags

flags.DEFINE_string("params", None, "params.npz of a launch.stdp run (w1, w2)")
flags.DEFINE_string("out", None, "output .npy (bool [16 * 4000, 4, 4, C2])")
flags.mark_flags_as_required(["params", "out"])
FLAGS = flags.FLAGS

SHIFTS = ((2, 0), (-2, 0), (0, 2), (0, -2), (2, 2), (-2, -2), (2, -2), (-2, 2),
          (2, 1), (2, -1), (-2, 1), (-2, -1), (1, 2), (-1, 2), (1, -2), (-1, -2))


def main(argv):
    del argv
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxspike import data
    from jaxspike.models import spyketorch_net as net

    weights = np.load(FLAGS.params)
    cfg = net.NetConfig(c2=weights["w2"].shape[-1])
    params = net.init_params(jax.random.key(0), cfg)._replace(w1=jnp.asarray(weights["w1"]), w2=jnp.asarray(weights["w2"]))
    fired = jax.jit(lambda p, x: net.features(p, x, cfg)[0])
    images = data.load("mnist5k", "train").images
    out = []
    for dy, dx in SHIFTS:
        moved = data.shift_images(images, dy, dx)
        out += [np.asarray(fired(params, jnp.asarray(moved[i : i + 100]))).astype(bool) for i in range(0, len(moved), 100)]
    np.save(FLAGS.out, np.concatenate(out))


if __name__ == "__main__":
    app.run(main)
