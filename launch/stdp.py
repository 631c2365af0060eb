"""Trains the STDP / R-STDP digit network (Mozafari et al. 2019) on mnist5k.

    python -m launch.stdp --workdir=/tmp/stdp
    python -m launch.stdp --workdir=/tmp/stdp_smoke --smoke
    python -m launch.stdp --workdir=/tmp/stdp_fe --stdp_only   # S1 + S2 only: a front end
    python -m launch.stdp --workdir=/tmp/stdp_sh8 --shifts=8 --epochs3=10   # R-STDP on 9 x 4,000 digits
    python -m launch.stdp --workdir=/tmp/stdp_best --rstdp_scale=4 --shifts=8 --epochs3=60 --rstdp_decay=linear --dropout=0.25
    python -m launch.stdp --workdir=/tmp/stdp_c250 --c2=250 --rstdp_scale=4 --shifts=8 --epochs3=60 --rstdp_decay=linear --dropout=0.25   # paper's S2, 2x cost

Stages (each timed): S1 by STDP (``--epochs1`` passes over the 4,000
training digits), S2 by STDP (``--epochs2``), features of train and test
through the frozen S1-S2, the decision layer by R-STDP (``--epochs3``
passes over its training set: the digits plus ``--shifts`` one-pixel
shifted copies of them and ``--distortions`` randomly distorted ones, with
``--dropout`` of the decision maps and, with ``--rstdp_decay=linear``, rates
falling linearly towards zero over the epochs), then a logistic-regression probe on
the same unsupervised S2 features.

Writes into ``--workdir``: ``config.json``, ``metrics.json`` (accuracies,
probe, energy per image, stage times), ``history.jsonl`` and ``rstdp_accuracy.png`` (R-STDP
train/test accuracy per epoch), ``params.npz`` and ``filters1.png`` (S1 kernels
back-projected through the DoG filters, i.e. the preferred stimulus of each
map).

Interrupted runs lose at most the epoch in progress: the whole state (S1, S2
and decision weights, the R-STDP rate scales, stage times) is checkpointed
with orbax into ``checkpoints/<step>`` after every epoch of every stage (step
= epochs finished, S1 then S2 then R-STDP), and rerunning the same command
in the same ``--workdir`` continues from the newest readable checkpoint,
ending with the same weights as an uninterrupted run (a different config is
refused). SIGINT/SIGTERM stop the run cleanly at the next batch (exit code
128 + signal); ``--stop_after=N`` stops after N epochs. While the decision
layer trains, the feature pass is cached in ``features.npz`` (removed when
the run ends) so a resume does not redo it.
"""

from __future__ import annotations

import json
import os
import sys
import time

from absl import app, flags

_WORKDIR = flags.DEFINE_string("workdir", None, "Run folder.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed (weights and data order).")
_C1 = flags.DEFINE_integer("c1", 30, "S1 feature maps.")
_C2 = flags.DEFINE_integer("c2", 100, "S2 feature maps (paper: 250).")
_PER_CLASS = flags.DEFINE_integer("per_class", 20, "Decision neurons per class.")
_EPOCHS1 = flags.DEFINE_integer("epochs1", 2, "STDP passes over the train set for S1.")
_EPOCHS2 = flags.DEFINE_integer("epochs2", 2, "STDP passes for S2.")
_EPOCHS3 = flags.DEFINE_integer("epochs3", 20, "R-STDP passes for the decision layer.")
_BATCH = flags.DEFINE_integer("batch", 16, "Images per compiled STDP step (winners from the batch-start weights).")
_DECIDE_EVERY = flags.DEFINE_integer("decide_every", 10, "R-STDP examples decided per group (1 = fully online).")
_RSTDP_SCALE = flags.DEFINE_float("rstdp_scale", 1.0, "Multiplies the paper's R-STDP rates (0.004, -0.003, -0.004, 0.0005).")
_DROPOUT = flags.DEFINE_float("dropout", 0.0, "R-STDP: probability that a decision map sits out an example "
                               "(Mozafari et al. 2018's guard against overfitting).")
_SHIFTS = flags.DEFINE_integer("shifts", 0, "R-STDP training set: the training digits plus this many one-pixel shifted "
                               "copies (0-8: down, up, right, left, then the four diagonals).")
_DISTORTIONS = flags.DEFINE_integer("distortions", 0, "R-STDP training set: add this many randomly distorted copies "
                                    "(affine + elastic, jaxspike.augment) of the training digits.")
_RSTDP_DECAY = flags.DEFINE_enum("rstdp_decay", "none", ["none", "linear"], "R-STDP rates per epoch: constant, or "
                                 "multiplied by 1 - epoch / epochs3 (settles the decision layer by the last epoch).")
_NUM_TRAIN = flags.DEFINE_integer("num_train", 0, "Use only this many training digits (0 = all 4,000).")
_STDP_ONLY = flags.DEFINE_bool("stdp_only", False, "Stop after the S1/S2 STDP stages (params.npz, filters1.png, "
                                "metrics.json with their times): the frozen front end of jaxspike.models.stdp_frontend.")
_STOP_AFTER = flags.DEFINE_integer("stop_after", 0, "Stop once this many epochs are finished, counted over S1, S2 and "
                                   "R-STDP in turn (each is checkpointed), as an interrupted job would; rerun "
                                   "without it to continue. For tests and time-limited cluster jobs. 0 = run to the end.")
_SMOKE = flags.DEFINE_bool("smoke", False, "Tiny run (c1=8, c2=16, 200 digits, 1 epoch of S1 and S2, 2 of R-STDP) to test the code path.")

flags.mark_flags_as_required(["workdir"])


_SHIFT_ORDER = ((1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (-1, -1), (1, -1), (-1, 1))


def _filters_png(w1, path):
    """Each S1 map's kernel back-projected through the DoG kernels (its preferred input)."""
    import jax
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from jaxspike import stdp

    dog = stdp.dog_kernels()  # [13, 13, 1, 6]
    # Transposed conv: the input pattern that drives each map = sum_c w[:, :, c, f] (*) DoG_c.
    w = np.asarray(w1)  # [5, 5, 6, C1]
    recon = jax.lax.conv_general_dilated(
        np.transpose(w, (3, 0, 1, 2)), np.flip(np.transpose(dog, (0, 1, 3, 2)), (0, 1)), (1, 1),
        ((12, 12), (12, 12)), dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )
    recon = np.asarray(recon)[..., 0]
    num = recon.shape[0]
    cols = min(10, num)
    rows = -(-num // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.2, rows * 1.2))
    for i, ax in enumerate(np.atleast_1d(axes).ravel()):
        ax.axis("off")
        if i < num:
            r = recon[i]
            ax.imshow(r, cmap="gray", vmin=-np.abs(r).max(), vmax=np.abs(r).max())
    fig.suptitle("S1 STDP features (kernels back-projected through the DoG filters)", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _history_png(history, probe_acc, path):
    """R-STDP train/test accuracy per epoch, with the linear probe as a reference line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] + 1 for r in history]
    fig = plt.figure(figsize=(4.5, 3))
    plt.plot(epochs, [r["train_acc_online"] for r in history], label="train (online, while learning)")
    plt.plot(epochs, [r["test_acc"] for r in history], label="test")
    plt.axhline(probe_acc, ls="--", c="gray", label="linear probe on S2 features")
    plt.xlabel("R-STDP epoch")
    plt.ylabel("accuracy")
    plt.ylim(0.5, 1)
    plt.legend(fontsize=7)
    plt.title("Decision layer trained by R-STDP", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def rstdp_epoch_plan(seed, epoch, epochs, num_examples, chunk, decay="none"):
    """What R-STDP epoch ``epoch`` of ``epochs`` uses, a pure function of the seed:
    ``(order, rate factor, dropout key)``. The order visits ``num_examples`` rounded down to
    whole ``chunk``s; ``decay="linear"`` scales the rates by ``1 - epoch / epochs``."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    visited = (num_examples // chunk) * chunk
    order = jnp.asarray(np.random.default_rng([seed, 3, epoch]).permutation(num_examples)[:visited])
    factor = 1.0 - epoch / epochs if decay == "linear" else 1.0
    return order, factor, jax.random.fold_in(jax.random.key(seed), 3000 + epoch)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected positional arguments: {argv[1:]}")
    if not 0 <= _SHIFTS.value <= len(_SHIFT_ORDER):
        raise app.UsageError(f"--shifts must be in 0..{len(_SHIFT_ORDER)}, got {_SHIFTS.value}")
    if _DISTORTIONS.value < 0:
        raise app.UsageError(f"--distortions must be >= 0, got {_DISTORTIONS.value}")
    if not 0.0 <= _DROPOUT.value < 1.0:
        raise app.UsageError(f"--dropout must be in [0, 1), got {_DROPOUT.value}")
    if _STOP_AFTER.value < 0:
        raise app.UsageError(f"--stop_after must be >= 0, got {_STOP_AFTER.value}")
    from jaxspike.train import resume

    resume.quiet_checkpoint_logs()
    with resume.SignalCatcher() as stop:
        try:
            _run(stop)
        except resume.Stopped as err:
            print(f"launch.stdp: {err}", file=sys.stderr, flush=True)
            sys.exit(err.code)


def _run(stop):
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxspike import augment, data
    from jaxspike.models import spyketorch_net as net
    from jaxspike.train import io, resume

    workdir = _WORKDIR.value
    os.makedirs(workdir, exist_ok=True)
    smoke = _SMOKE.value
    cfg = net.NetConfig(c1=8 if smoke else _C1.value, c2=16 if smoke else _C2.value, per_class=2 if smoke else _PER_CLASS.value)
    epochs = (1, 1, 2) if smoke else (_EPOCHS1.value, _EPOCHS2.value, _EPOCHS3.value)
    num_train = 200 if smoke else _NUM_TRAIN.value
    batch = 8 if smoke else _BATCH.value
    decide_every = 10 if smoke else _DECIDE_EVERY.value
    rstdp_batch = 100 if smoke else 1000
    seed = _SEED.value
    config = {"net": cfg._asdict(), "epochs": epochs, "num_train": num_train, "batch": batch,
              "decide_every": decide_every, "rstdp_chunk": rstdp_batch, "seed": seed, "dataset": "mnist5k",
              "dropout": _DROPOUT.value, "shifts": _SHIFTS.value,
              "distortions": _DISTORTIONS.value, "rstdp_decay": _RSTDP_DECAY.value, "stdp_only": _STDP_ONLY.value,
              "rstdp_rates": tuple(_RSTDP_SCALE.value * r for r in (0.004, -0.003, -0.004, 0.0005)), "command": " ".join(sys.argv)}
    try:
        ckpts = resume.EpochCheckpoints(workdir, config)
    except ValueError as err:
        raise app.UsageError(str(err)) from None

    train = data.load("mnist5k", "train")
    test = data.load("mnist5k", "test")
    x_train, y_train = train.images, train.labels
    if num_train:
        # The file is sorted by digit: take a class-balanced subset.
        keep = np.random.default_rng([seed, 99]).permutation(len(y_train))[:num_train]
        x_train, y_train = x_train[keep], y_train[keep]
    n = len(y_train)

    # The whole training state, checkpointed after every epoch of every stage. Steps count
    # finished epochs: S1 ends at step e1, S2 at e1 + e2, R-STDP at e1 + e2 + e3. Everything else
    # (data order, keys, the STDP rate schedule) is a pure function of (seed, stage, epoch).
    e1, e2, e3 = epochs
    state = {"params": net.init_params(jax.random.key(seed), cfg)._asdict(), "scales": jnp.array([0.9, 0.1]),
             "stage_s": jnp.zeros(4), "convergence": jnp.zeros(2)}
    start, state = ckpts.restore(state)
    if start:
        print(f"launch.stdp: resuming {workdir} from its checkpoint after epoch step {start} "
              f"(S1 {min(start, e1)}/{e1}, S2 {min(max(start - e1, 0), e2)}/{e2}, "
              f"R-STDP {max(start - e1 - e2, 0)}/{e3})", flush=True)
    params = net.Params(**state["params"])
    stage_s = np.asarray(state["stage_s"], np.float64)
    convergence = np.asarray(state["convergence"], np.float64)
    total = e1 + e2 + (0 if _STDP_ONLY.value else e3)

    def save(done, **updates):
        state.update(updates, stage_s=jnp.asarray(stage_s, jnp.float32), convergence=jnp.asarray(convergence, jnp.float32))
        ckpts.save(done, state)
        if _STOP_AFTER.value and done >= _STOP_AFTER.value and done < total:
            raise resume.Stopped(f"stopped after epoch step {done} of {total} (--stop_after); "
                                 "rerun the same command without it to continue", 0)

    def check_signal(where):
        if stop.signum is not None:
            steps = ckpts.ckpt.all_steps()
            since = f"from its checkpoint after epoch step {steps[-1]}" if steps else "(no checkpoint yet: from the start)"
            raise resume.Stopped(f"interrupted by signal {stop.signum} {where}; rerun the same command to resume {since}",
                                 128 + stop.signum)

    for layer, first, count in ((1, 0, e1), (2, e1, e2)):
        if start >= first + count:
            continue
        step = jax.jit(net.make_stdp_step(cfg, layer), donate_argnums=(0,))
        for epoch in range(max(start - first, 0), count):
            t0 = time.time()
            seen = epoch * data.steps_per_epoch(n, batch) * batch
            # Separate, reproducible order per layer and epoch.
            for idx in data.batch_indices(n, batch, seed * 10 + layer, epoch):
                check_signal(f"during S{layer} epoch {epoch}")
                params, m = step(params, jnp.asarray(x_train[idx]), seen)
                seen += batch
            m = {k: float(v) for k, v in m.items()}
            stage_s[layer - 1] += time.time() - t0
            convergence[layer - 1] = m["convergence"]
            print(f"S{layer} epoch {epoch}: {seen} images, {stage_s[layer - 1]:.0f}s, {m}", flush=True)
            save(first + epoch + 1, params=params._asdict())
    times = {"stdp1_s": float(stage_s[0]), "stdp2_s": float(stage_s[1])}
    metrics = {"convergence1": float(convergence[0]), "convergence2": float(convergence[1])}
    if start:
        metrics["resumed_from_step"] = start

    if _STDP_ONLY.value:
        times["train_total_s"] = times["stdp1_s"] + times["stdp2_s"]
        metrics["times"] = times
        with open(os.path.join(workdir, "metrics.json"), "w") as f:
            json.dump(metrics, f, indent=1)
        np.savez(os.path.join(workdir, "params.npz"), w1=np.asarray(params.w1), w2=np.asarray(params.w2))
        _filters_png(params.w1, os.path.join(workdir, "filters1.png"))
        ckpts.close()
        print(json.dumps(metrics, indent=1))
        return

    feat_fn = jax.jit(lambda p, x: net.features(p, x, cfg))

    def all_features(x):
        out = []
        for i in range(0, len(x), 100):
            check_signal("during the feature pass")
            out.append(feat_fn(params, jnp.asarray(x[i : i + 100])))
        fired = np.concatenate([np.asarray(o[0]) for o in out])
        early = np.concatenate([np.asarray(o[1]) for o in out])
        aux = {k: np.concatenate([np.asarray(o[2][k]) for o in out]) for k in out[0][2]}
        return fired, early, aux

    # The feature pass (minutes) is cached in the run folder until the run ends, so a resumed
    # R-STDP stage does not redo it; the frozen S1/S2 make it a pure function of the checkpoint.
    cache = os.path.join(workdir, "features.npz")
    cached = None
    if start >= e1 + e2 and os.path.exists(cache):
        with np.load(cache) as f:
            cached = dict(f)
    if cached is not None and cached["f_rstdp"].shape[0] == n * (1 + _SHIFTS.value + _DISTORTIONS.value):
        f_rstdp, f_test = (cached[k].astype(np.float32) for k in ("f_rstdp", "f_test"))  # 0/1, stored as bool
        e_train, e_test = cached["e_train"], cached["e_test"]
        aux_test = {k[4:]: v for k, v in cached.items() if k.startswith("aux_")}
        times["features_s"] = float(cached["features_s"])
    else:
        t0 = time.time()
        f_train, e_train, _ = all_features(x_train)
        f_test, e_test, aux_test = all_features(test.images)
        # The R-STDP set: the training digits, then their one-pixel shifted copies, then randomly
        # distorted ones (more distinct digits for the decision layer; S1, S2 and the probe see the
        # originals only).
        f_rstdp = [f_train] + [all_features(data.shift_images(x_train, dy, dx))[0] for dy, dx in _SHIFT_ORDER[: _SHIFTS.value]]
        distort = jax.jit(augment.distort_images)
        distort_key = jax.random.fold_in(jax.random.key(seed), 5000)
        for k in range(_DISTORTIONS.value):
            f_rstdp.append(all_features(np.asarray(distort(jax.random.fold_in(distort_key, k), x_train)))[0])
        f_rstdp = np.concatenate(f_rstdp)
        times["features_s"] = time.time() - t0
        with open(cache + ".tmp", "wb") as f:  # written whole, then renamed: never a torn cache
            np.savez(f, f_rstdp=f_rstdp.astype(bool), e_train=e_train, f_test=f_test.astype(bool), e_test=e_test,
                     features_s=times["features_s"], **{f"aux_{k}": v for k, v in aux_test.items()})
        os.replace(cache + ".tmp", cache)
    f_train = f_rstdp[:n]  # the originals come first
    y_rstdp = np.tile(y_train, len(f_rstdp) // n)
    print(f"features{' (from ' + cache + ')' if cached is not None else ''}: {times['features_s']:.0f}s, S2 pooled firing {f_train.mean():.3f}, "
          f"R-STDP set {len(y_rstdp)} digits", flush=True)

    epoch_fn = jax.jit(net.make_rstdp_epoch(cfg, batch=rstdp_batch, decide_every=decide_every, dropout=_DROPOUT.value),
                       donate_argnums=(0,))
    decide = jax.jit(lambda w, f: net.decide(w, f, cfg)[0])
    f_rstdp_j, y_rstdp_j, f_test_j = jnp.asarray(f_rstdp), jnp.asarray(y_rstdp), jnp.asarray(f_test)
    w3, scales = params.w3, state["scales"]
    rates = jnp.array(config["rstdp_rates"])
    hist_path = os.path.join(workdir, "history.jsonl")
    if not start and os.path.exists(hist_path):
        os.remove(hist_path)  # a fresh run: drop an older run's history
    hist = io.MetricsWriter(hist_path, resume_step=start)
    n_rstdp = len(y_rstdp)
    for epoch in range(max(start - e1 - e2, 0), e3):
        check_signal(f"before R-STDP epoch {epoch}")
        t0 = time.time()
        order, decay, key = rstdp_epoch_plan(seed, epoch, e3, n_rstdp, rstdp_batch, _RSTDP_DECAY.value)
        w3, scales, hits = epoch_fn(w3, scales, f_rstdp_j, y_rstdp_j, order, rates * decay, True, key)
        test_acc = float(np.mean(np.asarray(decide(w3, f_test_j)) == test.labels))
        stage_s[3] += time.time() - t0
        rec = {"step": e1 + e2 + epoch + 1, "epoch": epoch, "train_acc_online": float(hits) / len(order), "test_acc": test_acc,
               "time_s": float(stage_s[3])}
        hist.write(rec)
        print(f"R-STDP epoch {epoch}: {rec}", flush=True)
        save(e1 + e2 + epoch + 1, params=params._replace(w3=w3)._asdict(), scales=scales)
    history = io.read_metrics(hist_path)
    times["rstdp_s"] = float(stage_s[3])
    params = params._replace(w3=w3)
    metrics["test_acc"] = float(np.mean(np.asarray(decide(w3, f_test_j)) == test.labels))
    metrics["train_acc"] = float(np.mean(np.asarray(decide(w3, f_rstdp_j[:n])) == y_train))  # the originals come first

    from sklearn.linear_model import LogisticRegression

    t0 = time.time()
    for name, (a, b) in {"fired": (f_train, f_test), "earliness": (e_train, e_test)}.items():
        probe = LogisticRegression(C=0.1 if name == "fired" else 1.0, max_iter=300)
        probe.fit(a.reshape(len(a), -1), y_train)
        metrics[f"probe_{name}_test_acc"] = float(probe.score(b.reshape(len(b), -1), test.labels))
    times["probe_s"] = time.time() - t0
    metrics.update({f"test_{k}": v for k, v in net.synaptic_events(aux_test).items()})
    times["train_total_s"] = times["stdp1_s"] + times["stdp2_s"] + times["features_s"] + times["rstdp_s"]
    metrics["times"] = times
    with open(os.path.join(workdir, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=1)
    np.savez(os.path.join(workdir, "params.npz"), **{k: np.asarray(v) for k, v in params._asdict().items()})
    _filters_png(params.w1, os.path.join(workdir, "filters1.png"))
    _history_png(history, metrics["probe_fired_test_acc"], os.path.join(workdir, "rstdp_accuracy.png"))
    ckpts.close()
    os.remove(cache)
    print(json.dumps(metrics, indent=1))


if __name__ == "__main__":
    app.run(main)
