"""R-STDP settings checked on a validation split (results/stdp.md, 2026-12-07).

    python -m launch.stdp --workdir=/tmp/s13/feat_seed1 --c2=100 --epochs3=60 --rstdp_scale=4 --shifts=8 \
        --rstdp_decay=linear --dropout=0.25 --seed=1 --stop_after=5       # leaves features.npz (S2 features)
    PYTHONPATH=. python results/stdp/val_split/val_rstdp.py EPOCHS DROPOUT PER_CLASS 40 SEED > seedS_....jsonl

Trains the decision layer exactly as launch.stdp does (same epoch function, keys, data order,
annealed rates x 4) on the cached S2 features of one seed, but holds the last 40 of each digit's
400 training rows (400 digits) and their shifted copies out of R-STDP training, and prints the
validation and test accuracy after every epoch. Seed 0's features came from an earlier dump of
the same S2 first-spike bins (/tmp/s11/times.npz); replaying the launch run on them gave its
epoch accuracies exactly. Scratch paths are those of the session that ran it.
"""
import json, os, sys, time
import numpy as np, jax, jax.numpy as jnp
from jaxspike.models import spyketorch_net as net

epochs, dropout, pc, val, seed = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
if seed == 0:
    d = np.load('/tmp/s11/times.npz')
    blocks = [d[f'shift{s}'] < 15 for s in range(9)]
    ft = d['test'] < 15
else:
    d = np.load(f'/tmp/s13/feat_seed{seed}/features.npz')
    blocks = np.split(d['f_rstdp'], 9)
    ft = d['f_test']
from jaxspike import data
y_tr = data.load("mnist5k", "train").labels
y_te = data.load("mnist5k", "test").labels
pos = np.arange(4000) % 400
assert np.all(y_tr == np.repeat(np.arange(10), 400))
tr = pos < 400 - val
va = ~tr
x = np.concatenate([b[tr] for b in blocks]).astype(np.float32)
y = np.tile(y_tr[tr], 9)
xv, yv = blocks[0][va].astype(np.float32), y_tr[va]
xt = ft.astype(np.float32)
cfg = net.NetConfig(c2=100, per_class=pc)
epoch_fn = jax.jit(net.make_rstdp_epoch(cfg, batch=1000, decide_every=10, dropout=dropout), donate_argnums=(0,))
dec = jax.jit(lambda w, f: net.decide(w, f, cfg)[0])
w3 = net.init_params(jax.random.key(seed), cfg).w3
scales = jnp.array([0.9, 0.1]); rates = jnp.array([4 * r for r in (0.004, -0.003, -0.004, 0.0005)])
xj, yj = jnp.asarray(x), jnp.asarray(y)
n3 = (len(y) // 1000) * 1000
t0 = time.time()
for e in range(epochs):
    order = jnp.asarray(np.random.default_rng([seed, 3, e]).permutation(len(y))[:n3])
    w3, scales, hits = epoch_fn(w3, scales, xj, yj, order, rates * (1 - e / epochs), True,
                                jax.random.fold_in(jax.random.key(seed), 3000 + e))
    va_acc = float(np.mean(np.asarray(dec(w3, jnp.asarray(xv))) == yv)) if val else None
    te = float(np.mean(np.asarray(dec(w3, jnp.asarray(xt))) == y_te))
    print(json.dumps({"epoch": e, "train": float(hits) / n3, "val": va_acc, "test": te, "s": round(time.time() - t0)}), flush=True)
