"""Features of the 16 two-pixel shifts of the training digits, for ``val_rstdp.py --extra``.

    python -m launch.stdp --workdir=/tmp/s14/p0 --seed=0 --c2=100 --stdp_only   # params.npz (w1, w2)
    PYTHONPATH=. python results/stdp/val_split/more_shifts.py /tmp/s14/p0/params.npz /tmp/s14/sh2_s0.npy

Same S1/S2 as the launch.stdp run of that seed (both are pure functions of the seed), so the
rows line up with its cached features; the shifts add to launch.stdp's eight one-pixel ones.
"""
import sys

import jax
import jax.numpy as jnp
import numpy as np

from jaxspike import data
from jaxspike.models import spyketorch_net as net

params_path, out_path = sys.argv[1:3]
weights = np.load(params_path)
cfg = net.NetConfig(c2=weights["w2"].shape[-1])
params = net.init_params(jax.random.key(0), cfg)._replace(w1=jnp.asarray(weights["w1"]), w2=jnp.asarray(weights["w2"]))
fired = jax.jit(lambda p, x: net.features(p, x, cfg)[0])
images = data.load("mnist5k", "train").images
shifts = [(2, 0), (-2, 0), (0, 2), (0, -2), (2, 2), (-2, -2), (2, -2), (-2, 2),
          (2, 1), (2, -1), (-2, 1), (-2, -1), (1, 2), (-1, 2), (1, -2), (-1, -2)]
out = []
for dy, dx in shifts:
    moved = data.shift_images(images, dy, dx)
    out += [np.asarray(fired(params, jnp.asarray(moved[i : i + 100]))).astype(bool) for i in range(0, len(moved), 100)]
np.save(out_path, np.concatenate(out))
