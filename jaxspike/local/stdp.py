"""The STDP / R-STDP digit network (Mozafari et al. 2019, SpykeTorch) trained in a run folder.

Stages, each timed: S1 by STDP (``epochs[0]`` passes over the training
digits), S2 by STDP (``epochs[1]``), features of train and test through the
frozen S1-S2, the decision layer by R-STDP (``epochs[2]`` passes over its
training set: the digits plus ``shifts`` one-pixel shifted copies and
``distortions`` randomly distorted ones, with ``dropout`` of the decision
maps and, with ``rstdp_decay="linear"``, rates falling linearly towards zero
over the epochs), then a logistic-regression probe on the same unsupervised
S2 features. The network itself is :mod:`jaxspike.models.spyketorch_net`.

:func:`run` writes into the run folder: ``config.json``, ``metrics.json``
(accuracies, probe, energy per image, stage times), ``history.jsonl`` and
``rstdp_accuracy.png`` (R-STDP train/test accuracy per epoch),
``params.npz`` and ``filters1.png`` (S1 kernels back-projected through the
DoG filters, i.e. the preferred stimulus of each map). With ``stdp_only`` it
stops after S2: the folder is then a frozen front end
(:func:`load_frontend`, :mod:`jaxspike.models.stdp_frontend`).

Interrupted runs lose at most the epoch in progress: the whole state (S1, S2
and decision weights, the R-STDP rate scales, stage times) is checkpointed
after every epoch of every stage (step = epochs finished, S1 then S2 then
R-STDP), and a rerun with the same settings in the same folder continues
from the newest readable checkpoint, ending with the same weights as an
uninterrupted run. While the decision layer trains, the feature pass is
cached in ``features.npz`` (removed when the run ends).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxspike import augment, data, energy
from jaxspike.models import spyketorch_net as net
from jaxspike.models import stdp_frontend
from jaxspike.train import io, resume

__all__ = ["Config", "run", "rstdp_epoch_plan", "SHIFT_ORDER", "RSTDP_RATES", "default_dir", "load_frontend"]

# One-pixel shifts of the R-STDP set, in order: down, up, right, left, then the four diagonals.
SHIFT_ORDER = ((1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (-1, -1), (1, -1), (-1, 1))
# The paper's R-STDP rates (reward +, reward -, punishment +, punishment -), scaled by rstdp_scale.
RSTDP_RATES = (0.004, -0.003, -0.004, 0.0005)


@dataclasses.dataclass(frozen=True)
class Config:
    """Settings of one STDP / R-STDP run; every field is checked on construction.

    Attributes:
      seed: weights, data order and R-STDP keys.
      c1, c2: S1 and S2 feature maps (the paper: 30 and 250).
      per_class: decision neurons per class.
      epochs: passes of S1, S2 and R-STDP.
      batch: images per compiled STDP step (winners from the batch-start weights).
      decide_every: R-STDP examples decided per group (1 = fully online).
      rstdp_chunk: R-STDP examples per compiled chunk.
      rstdp_scale: multiplies :data:`RSTDP_RATES`.
      dropout: probability that a decision map sits out an example.
      shifts: one-pixel shifted copies in the R-STDP set (0-8, :data:`SHIFT_ORDER`).
      distortions: randomly distorted copies (:func:`jaxspike.augment.distort_images`).
      rstdp_decay: ``"none"`` or ``"linear"`` (rates times ``1 - epoch / epochs[2]``).
      num_train: use only this many training digits (0 = all).
      stdp_only: stop after S2 (a front end).
      stop_after: stop once this many epochs are finished (0 = run to the end),
        as an interrupted job would; not part of the run's identity.
    """

    seed: int = 0
    c1: int = 30
    c2: int = 100
    per_class: int = 20
    epochs: tuple[int, int, int] = (2, 2, 20)
    batch: int = 16
    decide_every: int = 10
    rstdp_chunk: int = 1000
    rstdp_scale: float = 1.0
    dropout: float = 0.0
    shifts: int = 0
    distortions: int = 0
    rstdp_decay: str = "none"
    num_train: int = 0
    stdp_only: bool = False
    stop_after: int = 0

    def __post_init__(self):
        def bad(field, what):
            raise ValueError(f"--{field} {what}, got {getattr(self, field)!r}")

        object.__setattr__(self, "epochs", tuple(int(e) for e in self.epochs))
        if not 0 <= self.shifts <= len(SHIFT_ORDER):
            bad("shifts", f"must be in 0..{len(SHIFT_ORDER)}")
        if self.distortions < 0:
            bad("distortions", "must be >= 0")
        if not 0.0 <= self.dropout < 1.0:
            bad("dropout", "must be in [0, 1)")
        if self.stop_after < 0:
            bad("stop_after", "must be >= 0")
        if self.rstdp_decay not in ("none", "linear"):
            bad("rstdp_decay", "must be 'none' or 'linear'")
        if len(self.epochs) != 3 or min(self.epochs) < 0:
            bad("epochs", "must be three epoch counts >= 0 (S1, S2, R-STDP)")
        for field in ("c1", "c2", "per_class", "batch", "decide_every", "rstdp_chunk"):
            if getattr(self, field) < 1:
                bad(field, "must be >= 1")
        if self.num_train < 0:
            bad("num_train", "must be >= 0 (0 = all)")

    @classmethod
    def smoke(cls, **overrides) -> "Config":
        """A tiny run (c1=8, c2=16, 200 digits, 1 epoch of S1 and S2, 2 of R-STDP) for tests."""
        fields = dict(c1=8, c2=16, per_class=2, epochs=(1, 1, 2), num_train=200, batch=8, decide_every=10,
                      rstdp_chunk=100)
        return cls(**{**fields, **overrides})

    def net(self) -> net.NetConfig:
        return net.NetConfig(c1=self.c1, c2=self.c2, per_class=self.per_class)

    def rates(self) -> tuple[float, ...]:
        return tuple(self.rstdp_scale * r for r in RSTDP_RATES)

    def record(self) -> dict:
        """The run's identity as written to ``config.json`` (a resume must match it)."""
        return {"net": self.net()._asdict(), "epochs": self.epochs, "num_train": self.num_train, "batch": self.batch,
                "decide_every": self.decide_every, "rstdp_chunk": self.rstdp_chunk, "seed": self.seed,
                "dataset": "mnist5k", "dropout": self.dropout, "shifts": self.shifts,
                "distortions": self.distortions, "rstdp_decay": self.rstdp_decay, "stdp_only": self.stdp_only,
                "rstdp_rates": self.rates()}


def rstdp_epoch_plan(seed, epoch, epochs, num_examples, chunk, decay="none"):
    """What R-STDP epoch ``epoch`` of ``epochs`` uses, a pure function of the seed:
    ``(order, rate factor, dropout key)``. The order visits ``num_examples`` rounded down to
    whole ``chunk``s; ``decay="linear"`` scales the rates by ``1 - epoch / epochs``."""
    visited = (num_examples // chunk) * chunk
    order = jnp.asarray(np.random.default_rng([seed, 3, epoch]).permutation(num_examples)[:visited])
    factor = 1.0 - epoch / epochs if decay == "linear" else 1.0
    return order, factor, jax.random.fold_in(jax.random.key(seed), 3000 + epoch)


def run(cfg: Config, workdir: str, *, command: str = "", log=print) -> dict:
    """Trains (or resumes) the network of ``cfg`` in ``workdir``; returns ``metrics.json``'s content.

    SIGINT/SIGTERM stop it at the next batch and ``cfg.stop_after`` after
    that many epochs, both with every finished epoch checkpointed, by raising
    :class:`jaxspike.train.resume.Stopped` (its ``code``: 128 + signal, or 0).

    Raises:
      jaxspike.train.resume.RunMismatch: ``workdir`` holds checkpoints of a run with other settings.
    """
    os.makedirs(workdir, exist_ok=True)
    with resume.SignalCatcher() as stop:
        return _run(cfg, workdir, stop, command, log)


def _run(cfg: Config, workdir: str, stop: resume.SignalCatcher, command: str, log) -> dict:
    netcfg = cfg.net()
    seed = cfg.seed
    ckpts = resume.EpochCheckpoints(workdir, {**cfg.record(), "command": command})

    train = data.load("mnist5k", "train")
    test = data.load("mnist5k", "test")
    x_train, y_train = train.images, train.labels
    if cfg.num_train:
        # The file is sorted by digit: take a class-balanced subset.
        keep = np.random.default_rng([seed, 99]).permutation(len(y_train))[: cfg.num_train]
        x_train, y_train = x_train[keep], y_train[keep]
    n = len(y_train)

    # The whole training state, checkpointed after every epoch of every stage. Steps count
    # finished epochs: S1 ends at step e1, S2 at e1 + e2, R-STDP at e1 + e2 + e3. Everything else
    # (data order, keys, the STDP rate schedule) is a pure function of (seed, stage, epoch).
    e1, e2, e3 = cfg.epochs
    state = {"params": net.init_params(jax.random.key(seed), netcfg)._asdict(), "scales": jnp.array([0.9, 0.1]),
             "stage_s": jnp.zeros(4), "convergence": jnp.zeros(2)}
    start, state = ckpts.restore(state)
    if start:
        log(f"resuming {workdir} from its checkpoint after epoch step {start} "
            f"(S1 {min(start, e1)}/{e1}, S2 {min(max(start - e1, 0), e2)}/{e2}, R-STDP {max(start - e1 - e2, 0)}/{e3})")
    params = net.Params(**state["params"])
    stage_s = np.asarray(state["stage_s"], np.float64)
    convergence = np.asarray(state["convergence"], np.float64)
    total = e1 + e2 + (0 if cfg.stdp_only else e3)

    def save(done, **updates):
        state.update(updates, stage_s=jnp.asarray(stage_s, jnp.float32), convergence=jnp.asarray(convergence, jnp.float32))
        ckpts.save(done, state)
        if cfg.stop_after and done >= cfg.stop_after and done < total:
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
        step = jax.jit(net.make_stdp_step(netcfg, layer), donate_argnums=(0,))
        for epoch in range(max(start - first, 0), count):
            t0 = time.time()
            seen = epoch * data.steps_per_epoch(n, cfg.batch) * cfg.batch
            # Separate, reproducible order per layer and epoch.
            for idx in data.batch_indices(n, cfg.batch, seed * 10 + layer, epoch):
                check_signal(f"during S{layer} epoch {epoch}")
                params, m = step(params, jnp.asarray(x_train[idx]), seen)
                seen += cfg.batch
            m = {k: float(v) for k, v in m.items()}
            stage_s[layer - 1] += time.time() - t0
            convergence[layer - 1] = m["convergence"]
            log(f"S{layer} epoch {epoch}: {seen} images, {stage_s[layer - 1]:.0f}s, {m}")
            save(first + epoch + 1, params=params._asdict())
    times = {"stdp1_s": float(stage_s[0]), "stdp2_s": float(stage_s[1])}
    metrics = {"convergence1": float(convergence[0]), "convergence2": float(convergence[1])}
    if start:
        metrics["resumed_from_step"] = start

    if cfg.stdp_only:
        times["train_total_s"] = times["stdp1_s"] + times["stdp2_s"]
        metrics["times"] = times
        with open(os.path.join(workdir, "metrics.json"), "w") as f:
            json.dump(metrics, f, indent=1)
        np.savez(os.path.join(workdir, "params.npz"), w1=np.asarray(params.w1), w2=np.asarray(params.w2))
        _filters_png(params.w1, os.path.join(workdir, "filters1.png"))
        ckpts.close()
        return metrics

    feat_fn = jax.jit(lambda p, x: net.features(p, x, netcfg))

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
    if cached is not None and cached["f_rstdp"].shape[0] == n * (1 + cfg.shifts + cfg.distortions):
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
        f_rstdp = [f_train] + [all_features(data.shift_images(x_train, dy, dx))[0] for dy, dx in SHIFT_ORDER[: cfg.shifts]]
        distort = jax.jit(augment.distort_images)
        distort_key = jax.random.fold_in(jax.random.key(seed), 5000)
        for k in range(cfg.distortions):
            f_rstdp.append(all_features(np.asarray(distort(jax.random.fold_in(distort_key, k), x_train)))[0])
        f_rstdp = np.concatenate(f_rstdp)
        times["features_s"] = time.time() - t0
        with open(cache + ".tmp", "wb") as f:  # written whole, then renamed: never a torn cache
            np.savez(f, f_rstdp=f_rstdp.astype(bool), e_train=e_train, f_test=f_test.astype(bool), e_test=e_test,
                     features_s=times["features_s"], **{f"aux_{k}": v for k, v in aux_test.items()})
        os.replace(cache + ".tmp", cache)
    f_train = f_rstdp[:n]  # the originals come first
    y_rstdp = np.tile(y_train, len(f_rstdp) // n)
    log(f"features{' (from ' + cache + ')' if cached is not None else ''}: {times['features_s']:.0f}s, "
        f"S2 pooled firing {f_train.mean():.3f}, R-STDP set {len(y_rstdp)} digits")

    epoch_fn = jax.jit(net.make_rstdp_epoch(netcfg, batch=cfg.rstdp_chunk, decide_every=cfg.decide_every,
                                            dropout=cfg.dropout), donate_argnums=(0,))
    decide = jax.jit(lambda w, f: net.decide(w, f, netcfg)[0])
    f_rstdp_j, y_rstdp_j, f_test_j = jnp.asarray(f_rstdp), jnp.asarray(y_rstdp), jnp.asarray(f_test)
    w3, scales = params.w3, state["scales"]
    rates = jnp.array(cfg.rates())
    hist_path = os.path.join(workdir, "history.jsonl")
    if not start and os.path.exists(hist_path):
        os.remove(hist_path)  # a fresh run: drop an older run's history
    hist = io.MetricsWriter(hist_path, resume_step=start)
    n_rstdp = len(y_rstdp)
    for epoch in range(max(start - e1 - e2, 0), e3):
        check_signal(f"before R-STDP epoch {epoch}")
        t0 = time.time()
        order, decay, key = rstdp_epoch_plan(seed, epoch, e3, n_rstdp, cfg.rstdp_chunk, cfg.rstdp_decay)
        w3, scales, hits = epoch_fn(w3, scales, f_rstdp_j, y_rstdp_j, order, rates * decay, True, key)
        test_acc = float(np.mean(np.asarray(decide(w3, f_test_j)) == test.labels))
        stage_s[3] += time.time() - t0
        rec = {"step": e1 + e2 + epoch + 1, "epoch": epoch, "train_acc_online": float(hits) / len(order),
               "test_acc": test_acc, "time_s": float(stage_s[3])}
        hist.write(rec)
        log(f"R-STDP epoch {epoch}: {rec}")
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
    events = net.synaptic_events(aux_test)
    metrics.update({f"test_{k}": v for k, v in events.items()})
    metrics["test_energy_mem"] = energy.summary(energy.per_sample_aux(net.energy_counts(events, netcfg)),
                                                net.energy_layers(netcfg))
    times["train_total_s"] = times["stdp1_s"] + times["stdp2_s"] + times["features_s"] + times["rstdp_s"]
    metrics["times"] = times
    with open(os.path.join(workdir, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=1)
    np.savez(os.path.join(workdir, "params.npz"), **{k: np.asarray(v) for k, v in params._asdict().items()})
    _filters_png(params.w1, os.path.join(workdir, "filters1.png"))
    _history_png(history, metrics["probe_fired_test_acc"], os.path.join(workdir, "rstdp_accuracy.png"))
    ckpts.close()
    os.remove(cache)
    return metrics


# ---------------------------------------------------------------------------
# Figures.


def _filters_png(w1, path):
    """Each S1 map's kernel back-projected through the DoG kernels (its preferred input)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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


# ---------------------------------------------------------------------------
# The frozen front end a run leaves.


def default_dir() -> str:
    """``$JAXSPIKE_CACHE/stdp_frontend`` (``~/.cache/jaxspike/stdp_frontend``): the configs' ``:stdp`` run folder."""
    return os.path.join(os.path.expanduser(os.environ.get("JAXSPIKE_CACHE", "~/.cache/jaxspike")), "stdp_frontend")


def load_frontend(spec: str) -> stdp_frontend.STDPFrontEnd:
    """The front end of a run of :func:`run`: its ``params.npz`` (``w1``, ``w2``) and thresholds.

    ``spec`` is ``PATH`` (the run folder or its ``params.npz``) with optional
    ``?layers=1|2&output=spikes|cumulative&steps=N&slope=...``
    (:func:`jaxspike.models.stdp_frontend.parse_spec`). Thresholds and DoG
    settings come from the run's ``config.json`` when present, unless the
    spec names them (``?dog_threshold=20&thr1=12``). Read once, before
    training; models take the result as an argument.
    """
    path, fields = stdp_frontend.spec_fields(spec)
    npz = path if path.endswith(".npz") else os.path.join(path, "params.npz")
    if not os.path.exists(npz):
        raise FileNotFoundError(
            f"STDP front end {spec!r}: no {npz}; train one with "
            f"`python -m launch.stdp --workdir={os.path.dirname(npz) or '.'} --stdp_only` (S1 + S2, a few minutes)"
        )
    run_cfg = os.path.join(os.path.dirname(npz), "config.json")
    from_run = {}
    if os.path.exists(run_cfg):
        with open(run_cfg) as f:
            saved = json.load(f).get("net", {})
        defaults = stdp_frontend.FrontEndConfig()
        from_run = {k: type(getattr(defaults, k))(saved[k]) for k in ("thr1", "thr2", "dog_threshold", "norm_radius")
                    if k in saved}
    cfg = stdp_frontend.FrontEndConfig(**{**from_run, **fields})  # the spec's own options win
    with np.load(npz) as params:
        return stdp_frontend.STDPFrontEnd(params["w1"], params["w2"] if "w2" in params else None, cfg)
