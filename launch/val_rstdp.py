"""R-STDP decision-layer variants scored on a validation split of the training digits.

First leave one seed's S2 features in a run folder (S1, S2, the feature pass, one R-STDP epoch):

    python -m launch.stdp --workdir=/tmp/s14/seed0 --seed=0 --c2=100 --epochs3=60 --rstdp_scale=4 \
        --shifts=8 --rstdp_decay=linear --dropout=0.25 --stop_after=5

then

    python -m launch.val_rstdp --features=/tmp/s14/seed0/features.npz --seed=0 --holdout=40 \
        [--dropout=0.25 --per_class=20 --scale=4 --decide_every=10 --epochs=60 --extra=more.npy] > out.jsonl

It trains the decision layer exactly as ``launch.stdp`` does (the same epoch function, keys,
data order and annealed rates: :func:`jaxspike.local.stdp.rstdp_epoch_plan`) on the cached
features, except that the last ``--holdout`` of each digit's 400 training rows, and all their
shifted copies, are kept out of R-STDP training and scored instead. After every epoch it prints
validation and test accuracy for three readouts of the same potentials: ``max`` (the network's
own: the single largest potential decides), ``top3`` (mean of each class's three best maps) and
``mapsum`` (sum over a class's maps). The last line scores the mean of the last 5 / 10 / 20
epochs' weights (tail averaging). ``--extra``: a bool ``[k * 4000, 4, 4, C2]`` array of features
of further shifted copies of the training digits (``launch.shift_features``), appended to the
R-STDP set. With ``--holdout=0`` this replays ``launch.stdp``'s own R-STDP stage.
"""

from __future__ import annotations

import json
import time

from absl import app, flags

flags.DEFINE_string("features", None, "features.npz left by launch.stdp --stop_after")
flags.DEFINE_integer("seed", None, "the seed of that launch.stdp run")
flags.DEFINE_integer("holdout", 40, "validation digits per class (0 = none)")
flags.DEFINE_integer("epochs", 60, "R-STDP epochs")
flags.DEFINE_float("dropout", 0.25, "decision-map dropout")
flags.DEFINE_integer("per_class", 20, "decision maps per class")
flags.DEFINE_float("scale", 4.0, "x the paper's R-STDP rates")
flags.DEFINE_integer("decide_every", 10, "examples decided per group")
flags.DEFINE_integer("c2", 100, "S2 maps of the run")
flags.DEFINE_string("extra", "", "extra shifted-copy features (.npy, bool)")
flags.mark_flags_as_required(["features", "seed"])
FLAGS = flags.FLAGS


def main(argv):
    del argv
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxspike import data
    from jaxspike.local.stdp import RSTDP_RATES, rstdp_epoch_plan
    from jaxspike.models import spyketorch_net as net

    cache = np.load(FLAGS.features)
    f_all, f_test = cache["f_rstdp"], cache["f_test"].astype(np.float32)
    if FLAGS.extra:
        f_all = np.concatenate([f_all, np.load(FLAGS.extra)])
    y_train = data.load("mnist5k", "train").labels
    y_test = data.load("mnist5k", "test").labels
    n = len(y_train)
    if len(f_all) % n:
        raise ValueError(f"{len(f_all)} R-STDP rows are not whole copies of the {n} training digits")
    rank = np.zeros(n, int)  # each digit's position among the training rows of its class
    for d in range(10):
        rank[y_train == d] = np.arange(np.sum(y_train == d))
    keep = rank < np.bincount(y_train)[y_train] - FLAGS.holdout
    copies = len(f_all) // n
    f_r = jnp.asarray(f_all[np.tile(keep, copies)].astype(np.float32))
    y_r = jnp.asarray(np.tile(y_train, copies)[np.tile(keep, copies)])
    evals = {"test": (jnp.asarray(f_test), y_test)}
    if FLAGS.holdout:
        evals["val"] = (jnp.asarray(f_all[:n][~keep].astype(np.float32)), y_train[~keep])

    cfg = net.NetConfig(c2=FLAGS.c2, per_class=FLAGS.per_class)
    epoch_fn = jax.jit(net.make_rstdp_epoch(cfg, batch=1000, decide_every=FLAGS.decide_every, dropout=FLAGS.dropout),
                       donate_argnums=(0,))

    @jax.jit
    def class_scores(w3, fired):
        best = net.decision_potentials(w3, fired).max(axis=(1, 2)).reshape(fired.shape[0], cfg.num_classes, -1)  # [B, class, map]
        ranked = -jnp.sort(-best, axis=-1)
        return {"max": ranked[..., 0], "top3": ranked[..., :3].mean(-1), "mapsum": best.sum(-1)}

    def accuracies(w3):
        return {f"{split}_{readout}": float(np.mean(np.argmax(np.asarray(s), -1) == y))
                for split, (f, y) in evals.items() for readout, s in class_scores(w3, f).items()}

    w3 = net.init_params(jax.random.key(FLAGS.seed), cfg).w3
    scales = jnp.array([0.9, 0.1])
    rates = jnp.array([FLAGS.scale * r for r in RSTDP_RATES])
    tail = []
    t0 = time.time()
    for epoch in range(FLAGS.epochs):
        order, decay, key = rstdp_epoch_plan(FLAGS.seed, epoch, FLAGS.epochs, len(y_r), 1000, "linear")
        w3, scales, hits = epoch_fn(w3, scales, f_r, y_r, order, rates * decay, True, key)
        tail = (tail + [np.asarray(w3)])[-20:]
        print(json.dumps({"epoch": epoch, "train_online": float(hits) / len(order), **accuracies(w3),
                          "s": round(time.time() - t0)}), flush=True)
    print(json.dumps({f"avg{k}": accuracies(jnp.asarray(np.mean(tail[-k:], 0))) for k in (5, 10, 20) if len(tail) >= k}))


if __name__ == "__main__":
    app.run(main)
