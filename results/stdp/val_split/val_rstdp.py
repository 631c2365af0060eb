"""R-STDP decision-layer variants checked on a validation split (results/stdp.md, 2026-12-07).

First leave one seed's S2 features in a run folder (S1, S2, the feature pass, one R-STDP epoch):

    python -m launch.stdp --workdir=/tmp/s14/seed0 --seed=0 --c2=100 --epochs3=60 --rstdp_scale=4 \
        --shifts=8 --rstdp_decay=linear --dropout=0.25 --stop_after=5

then, from the repository root,

    PYTHONPATH=. python results/stdp/val_split/val_rstdp.py --features=/tmp/s14/seed0/features.npz \
        --seed=0 --holdout=40 [--dropout=0.25 --per_class=20 --scale=4 --decide_every=10 \
        --epochs=60 --extra=more_shifts.npy] > out.jsonl

It trains the decision layer exactly as launch.stdp does (the same epoch function, keys, data
order and annealed rates: ``launch.stdp.rstdp_epoch_plan``) on the cached features, except that the last ``--holdout`` of each
digit's 400 training rows, and all their shifted copies, are kept out of R-STDP training and
scored instead. After every epoch it prints validation and test accuracy for three readouts of
the same potentials: ``max`` (the network's own: the single largest potential decides),
``top3`` (mean of each class's three best maps) and ``mapsum`` (sum over a class's maps). The
last line scores the mean of the last 5 / 10 / 20 epochs' weights (tail averaging).
``--extra``: a bool ``[k * 4000, 4, 4, C2]`` array of features of further shifted copies of the
training digits (in training-file order), appended to the R-STDP set.

With ``--holdout=0`` this replays launch.stdp's own R-STDP stage. With ``--holdout=40`` and
the defaults it reproduces, epoch for epoch, the seed 0 and seed 1 rows made by this script's
first version (git show d48b9d2:results/stdp/val_split/val_rstdp.py).
"""
import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxspike import data
from jaxspike.models import spyketorch_net as net
from launch.stdp import rstdp_epoch_plan

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--features", required=True, help="features.npz left by launch.stdp --stop_after")
parser.add_argument("--seed", type=int, required=True, help="the seed of that launch.stdp run")
parser.add_argument("--holdout", type=int, default=40, help="validation digits per class (0 = none)")
parser.add_argument("--epochs", type=int, default=60)
parser.add_argument("--dropout", type=float, default=0.25)
parser.add_argument("--per_class", type=int, default=20)
parser.add_argument("--scale", type=float, default=4.0, help="x the paper's R-STDP rates")
parser.add_argument("--decide_every", type=int, default=10)
parser.add_argument("--c2", type=int, default=100)
parser.add_argument("--extra", default="", help="extra shifted-copy features (.npy, bool)")
args = parser.parse_args()

cache = np.load(args.features)
f_all, f_test = cache["f_rstdp"], cache["f_test"].astype(np.float32)
if args.extra:
    f_all = np.concatenate([f_all, np.load(args.extra)])
y_train = data.load("mnist5k", "train").labels
y_test = data.load("mnist5k", "test").labels
n = len(y_train)
if len(f_all) % n:
    raise ValueError(f"{len(f_all)} R-STDP rows are not whole copies of the {n} training digits")
rank = np.zeros(n, int)  # each digit's position among the training rows of its class
for d in range(10):
    rank[y_train == d] = np.arange(np.sum(y_train == d))
keep = rank < np.bincount(y_train)[y_train] - args.holdout
copies = len(f_all) // n
f_r = jnp.asarray(f_all[np.tile(keep, copies)].astype(np.float32))
y_r = jnp.asarray(np.tile(y_train, copies)[np.tile(keep, copies)])
evals = {"test": (jnp.asarray(f_test), y_test)}
if args.holdout:
    evals["val"] = (jnp.asarray(f_all[:n][~keep].astype(np.float32)), y_train[~keep])

cfg = net.NetConfig(c2=args.c2, per_class=args.per_class)
epoch_fn = jax.jit(net.make_rstdp_epoch(cfg, batch=1000, decide_every=args.decide_every, dropout=args.dropout),
                   donate_argnums=(0,))


@jax.jit
def class_scores(w3, fired):
    best = net.decision_potentials(w3, fired).max(axis=(1, 2)).reshape(fired.shape[0], cfg.num_classes, -1)  # [B, class, map]
    ranked = -jnp.sort(-best, axis=-1)
    return {"max": ranked[..., 0], "top3": ranked[..., :3].mean(-1), "mapsum": best.sum(-1)}


def accuracies(w3):
    return {f"{split}_{readout}": float(np.mean(np.argmax(np.asarray(s), -1) == y))
            for split, (f, y) in evals.items() for readout, s in class_scores(w3, f).items()}


w3 = net.init_params(jax.random.key(args.seed), cfg).w3
scales = jnp.array([0.9, 0.1])
rates = jnp.array([args.scale * r for r in (0.004, -0.003, -0.004, 0.0005)])
tail = []
t0 = time.time()
for epoch in range(args.epochs):
    order, decay, key = rstdp_epoch_plan(args.seed, epoch, args.epochs, len(y_r), 1000, "linear")
    w3, scales, hits = epoch_fn(w3, scales, f_r, y_r, order, rates * decay, True, key)
    tail = (tail + [np.asarray(w3)])[-20:]
    print(json.dumps({"epoch": epoch, "train_online": float(hits) / len(order), **accuracies(w3),
                      "s": round(time.time() - t0)}), flush=True)
print(json.dumps({f"avg{k}": accuracies(jnp.asarray(np.mean(tail[-k:], 0))) for k in (5, 10, 20) if len(tail) >= k}))
