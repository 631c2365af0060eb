"""The training loop: devices, data feeding, checkpoints, logging, evaluation.

This module, :mod:`~jaxspike.train.io` and :mod:`~jaxspike.train.resume` are
the only imperative code. :func:`train` runs a config in a work directory
and knows nothing of the model: ``config.model.name`` picks a family
(:mod:`jaxspike.families`), which turns the config into an
:class:`~jaxspike.objective.Objective`, and the loop runs that:

* **runs and seeds** - ``config.seed`` trains one model in ``workdir``;
  ``config.seeds = "0,1,2,3"`` trains all listed seeds in one compiled
  program (the same step under ``jax.vmap`` over a leading seed axis), each
  with its own data order, keys, folder ``workdir/seed_<k>/``, metrics,
  checkpoints and samples. A sweep's seed is *not* bit-identical to that
  seed trained alone: the batched products sum in another order, equal to
  float32 rounding at first (``tests/test_train.py`` checks rtol 1e-4 over
  the first steps), then the runs drift apart as training amplifies the
  differences (results/bench.md gives the measured drift);
* **devices** - a 1-D :class:`jax.sharding.Mesh` with axis ``"data"`` over
  ``config.num_devices`` devices (0 = all, over all processes): the batch is
  sharded along it, the state is replicated;
* **resume** - a work directory holding checkpoints resumes from the newest
  readable one (unreadable ones are reported by name and skipped);
* **evaluation** - every ``eval_every`` steps: sample quality
  (``eval/...``, incl. ``eval/class_entropy``), a mode-collapse flag
  (``mode_collapse``: class entropy below ``config.mode_collapse_entropy``,
  with a warning), the energy report of one generation pass (``energy/...``,
  per generated sample) and the objective's held-out scores averaged over
  the test split (``test/...``);
* **safety** - a non-finite metric stops the run with
  :class:`NonFiniteLossError` naming the step and term; SIGINT/SIGTERM save
  a checkpoint, then raise :class:`TrainingInterrupted`.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import sys
import time
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxspike import data as data_lib
from jaxspike import energy as energy_lib
from jaxspike import families
from jaxspike.objective import ConfigError, Objective
from jaxspike.train import config as config_lib
from jaxspike.train import io
from jaxspike.train import resume as resume_lib
from jaxspike.train import state as state_lib

log = logging.getLogger("jaxspike.train")

__all__ = [
    "NonFiniteLossError",
    "TrainingInterrupted",
    "TrainResult",
    "make_mesh",
    "initialize_distributed",
    "train",
    "load_trained",
    "generate_samples",
]


class NonFiniteLossError(FloatingPointError):
    """A loss term became NaN or infinite.

    Attributes:
      step: the update (1-based, as in ``metrics.jsonl``) that produced it.
      term: name of the first non-finite term.
      seed: the seed of the run (sweeps) or ``None``.
    """

    def __init__(self, message: str, step: int, term: str, seed: int | None):
        super().__init__(message)
        self.step, self.term, self.seed = step, term, seed


class TrainingInterrupted(KeyboardInterrupt):
    """SIGINT/SIGTERM arrived; a checkpoint of ``step`` was saved first."""

    def __init__(self, step: int, signum: int):
        super().__init__(f"training interrupted by signal {signum} at step {step}; checkpoint saved")
        self.step, self.signum = step, signum


class TrainResult(NamedTuple):
    """What :func:`train` returns.

    Attributes:
      state: the final state (stacked over seeds for sweeps).
      step: number of updates applied.
      last_metrics: the last logged metrics row of each run.
      run_dirs: folder of each run (one per seed).
      num_compiles: how many times the train step was compiled (1 expected).
      headline: the objective's primary metric names.
    """

    state: Any
    step: int
    last_metrics: list[dict]
    run_dirs: list[str]
    num_compiles: int
    headline: tuple[str, ...] = ("loss",)


def make_mesh(num_devices: int = 0) -> Mesh:
    """A 1-D mesh with axis ``"data"`` over the first ``num_devices`` devices (0 = all)."""
    devices = jax.devices()
    if num_devices == 0:
        num_devices = len(devices)
    if num_devices > len(devices):
        raise ConfigError(f"config.num_devices={num_devices} but only {len(devices)} devices are visible")
    if jax.process_count() > 1 and num_devices != len(devices):
        raise ConfigError(f"config.num_devices={num_devices}: multi-host runs use all {len(devices)} devices (set 0)")
    return Mesh(np.asarray(devices[:num_devices]), ("data",))


def initialize_distributed(coordinator_address: str | None = None, num_processes: int | None = None,
                           process_id: int | None = None) -> None:
    """``jax.distributed.initialize``; ``None`` arguments are auto-detected (SLURM, TPU, ...)."""
    jax.distributed.initialize(coordinator_address=coordinator_address or None,
                               num_processes=num_processes, process_id=process_id)
    log.info("process %d of %d, %d local / %d global devices", jax.process_index(), jax.process_count(),
             jax.local_device_count(), jax.device_count())


# ---------------------------------------------------------------------------
# Helpers of the loop.


def _config_changes(path: str, config_dict: dict, allow_change: tuple[str, ...]) -> list[str]:
    """The differences between a run folder's saved config and ``config_dict`` that ``allow_change`` permits.

    Raises:
      ConfigError: other differences (a resume must not mix two configs), named.
    """
    if not os.path.exists(path):
        return []
    diffs = resume_lib.config_diffs(io.read_json(path), config_dict, config_lib.RESUME_KEYS)
    allowed = [d for d in diffs if any(d.split(":")[0] == a or d.startswith(a + ".") for a in allow_change)]
    refused = [d for d in diffs if d not in allowed]
    if refused:
        fields = ",".join(d.split(":")[0] for d in refused)
        raise ConfigError(
            f"workdir {os.path.dirname(path)!r} holds a run with a different config ({'; '.join(refused[:5])}); "
            f"use a fresh --workdir, the same config, or resume with the change: --allow_change={fields}"
        )
    return allowed


def _splits(config) -> tuple[str, str]:
    """``(training split, scored split)``: train / test, or train_fit / validation for screening."""
    return ("train_fit", "validation") if config.data.validation else ("train", "test")


def load_splits(config) -> tuple[data_lib.Dataset, data_lib.Dataset]:
    """The training and the scored split of ``config.data``: train / test, or train_fit / validation."""
    data_dir = config.data.data_dir or None
    # Sets too large for memory (celeb_a) train on their first data.max_examples images (0 = all).
    limit = int(config.data.max_examples) or None
    return tuple(data_lib.load(config.data.name, split, data_dir=data_dir, binarize=config.data.binarize,
                               max_examples=limit) for split in _splits(config))


def _flatten(prefix: str, value: Any, out: dict) -> dict:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}/{k}", v, out)
    else:
        out[prefix] = value
    return out


def _example_batch(batch_size: int, image_shape) -> dict:
    """A zero batch for shape-only state initialisation (``eval_shape``). It has
    the training batch size, so batch-dependent layers (minibatch std) are valid."""
    return {"image": jnp.zeros((batch_size,) + tuple(image_shape), jnp.float32),
            "label": jnp.zeros((batch_size,), jnp.int32)}


def generate_samples(sample, state, key, num: int, chunk: int) -> np.ndarray:
    """``num`` samples of ``sample(state, key, chunk)`` in chunks (chunk ``i`` uses ``fold_in(key, i)``)."""
    out = []
    for i in range(int(math.ceil(num / chunk))):
        out.append(np.asarray(jax.device_get(sample(state, jax.random.fold_in(key, i), chunk))))
    return np.concatenate(out, axis=-4)[..., :num, :, :, :] if out else np.zeros((0,))


def _grid_columns(images: np.ndarray) -> tuple[np.ndarray, int]:
    """``[N, H, W, C]`` -> a square grid; ``[N, K, H, W, C]`` -> rows of ``K``-tuples."""
    n = images.shape[0]
    side = int(math.ceil(math.sqrt(n)))
    if images.ndim == 5:
        k = images.shape[1]
        return images.reshape((n * k,) + images.shape[2:]), k * side
    return images, side


# ---------------------------------------------------------------------------
# The loop.


def train(config: ml_collections.ConfigDict, workdir: str, *, allow_change: tuple[str, ...] = ()) -> TrainResult:
    """Trains ``config`` in ``workdir`` (resuming if it holds checkpoints).

    The whole config is checked before the folder is touched; then the
    folder's lock is taken (one job per folder). A folder holding
    checkpoints resumes only with the same config, except for the fields
    (or sections) named in ``allow_change``, e.g.
    ``("optimizer.learning_rate",)``: such changes are logged and recorded
    in ``metrics.jsonl``. A folder without a checkpoint takes any config.

    Args:
      config: :func:`jaxspike.train.base_config` plus the family's sections
        (as built by ``launch/configs/*.py``).
      workdir: the run folder (created if missing).
      allow_change: config fields a resume may change.

    Returns:
      A :class:`TrainResult`.

    Raises:
      ConfigError: an unusable config field (the message names it).
      jaxspike.train.io.RunFolderBusy: another job trains in ``workdir``.
      jaxspike.train.resume.NoUsableCheckpoint: checkpoints exist but none passes its checks.
      jaxspike.train.io.CheckpointWriteError, OSError: the folder cannot be written.
      NonFiniteLossError: a loss term became NaN/inf.
      TrainingInterrupted: SIGINT/SIGTERM (after saving a checkpoint).
    """
    config_lib.validate(config)
    seeds = config_lib.parse_seeds(config.seeds)
    sweep = bool(seeds)
    if not sweep:
        seeds = [int(config.seed)]
    mesh = make_mesh(int(config.num_devices))
    batch_size = int(config.batch_size)
    if batch_size % mesh.size:
        raise ConfigError(
            f"config.batch_size={batch_size} is not divisible by the {mesh.size} devices of the 'data' mesh axis; "
            f"use a multiple of {mesh.size} or set config.num_devices"
        )
    train_ds, test_ds = load_splits(config)
    if batch_size > len(train_ds.labels):
        raise ConfigError(f"config.batch_size={batch_size} exceeds the {len(train_ds.labels)} training examples")
    image_shape = data_lib.image_shape(train_ds)
    objective = families.build(config, image_shape)

    workdir = os.path.abspath(workdir)
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise ConfigError(f"--workdir={workdir!r} is a file, not a folder")
    run_dirs = [os.path.join(workdir, f"seed_{s}") for s in seeds] if sweep else [workdir]
    config_dict = config.to_dict()
    meta = {"image_shape": list(image_shape), "num_train": len(train_ds.labels), "num_devices": mesh.size}
    with io.RunLock(workdir):
        ckpts = [io.Checkpointer(os.path.join(d, "checkpoints"), int(config.keep_checkpoints)) for d in run_dirs]
        try:
            changes = []
            if any(c.all_steps() for c in ckpts):
                changes = _config_changes(os.path.join(workdir, "config.json"), config_dict, tuple(allow_change))
            if io.is_writer():
                io.write_json(os.path.join(workdir, "config.json"), {**config_dict, **meta})
                if sweep:
                    for s, d in zip(seeds, run_dirs):
                        # Each seed folder reads as a single run of that seed.
                        io.write_json(os.path.join(d, "config.json"), {**config_dict, "seed": s, "seeds": "", **meta})
            return _train(config, objective, train_ds, test_ds, image_shape, seeds, sweep, mesh, run_dirs, ckpts,
                          changes)
        finally:
            for c in ckpts:
                c.close()


def _train(config, objective, train_ds, test_ds, image_shape, seeds, sweep, mesh, run_dirs, ckpts, changes):
    """The rest of :func:`train`, with the folder locked and its checkpointers open."""
    batch_size, total = int(config.batch_size), int(config.total_steps)
    replicated = NamedSharding(mesh, P())
    batch_sharding = NamedSharding(mesh, P(None, "data") if sweep else P("data"))
    streams = [state_lib.seed_streams(s) for s in seeds]
    order_seeds = [state_lib.data_seed(st.data_key) for st in streams]
    example = _example_batch(batch_size, image_shape)
    init_state = jax.jit(lambda key: objective.init(key, example), out_shardings=replicated)

    abstract_state = resume_lib.abstract(jax.eval_shape(init_state, streams[0].init_key), replicated)
    restored = resume_lib.restore_newest(ckpts, abstract_state)
    if restored is not None:
        start, states = restored
        log.info("resuming %s from step %d", os.path.dirname(run_dirs[0]) if sweep else run_dirs[0], start)
    else:
        start, states = 0, [init_state(st.init_key) for st in streams]
    # Built inside jit so that multi-host runs get global (replicated)
    # arrays; device_put cannot target devices of other processes.
    if sweep:
        state = jax.jit(state_lib.stack_states, out_shardings=replicated)(states)
        run_keys = jax.jit(
            lambda: jnp.stack([state_lib.seed_streams(s).run_key for s in seeds]), out_shardings=replicated
        )()
    else:
        state = states[0]
        run_keys = jax.jit(lambda: state_lib.seed_streams(seeds[0]).run_key, out_shardings=replicated)()

    def step_fn(state, batch, run_key):
        # Step s draws its randomness from fold_in(run_key, s): a resumed run replays it exactly.
        return objective.step(state, batch, jax.random.fold_in(run_key, state.step))

    if sweep:
        step_fn = jax.vmap(step_fn, in_axes=(0, 0, 0))
    jit_step = jax.jit(
        step_fn,
        donate_argnums=(0,),
        in_shardings=(replicated, batch_sharding, replicated),
        out_shardings=(replicated, replicated),
    )
    runner = _Runner(config, objective, train_ds, test_ds, seeds, sweep, order_seeds, run_dirs, ckpts,
                     batch_sharding, start)
    runner.record_changes(start, changes)
    state, last_rows = runner.run(jit_step, state, run_keys, start, total)
    num_compiles = jit_step._cache_size() if hasattr(jit_step, "_cache_size") else -1
    return TrainResult(state, max(start, total), last_rows, run_dirs, num_compiles, objective.headline)


def _seed_vmap(fn: Callable, sweep: bool) -> Callable:
    """``fn(state, *args)`` over a sweep's leading seed axis of the state (the other arguments shared)."""
    if not sweep:
        return fn
    return lambda state, *args: jax.vmap(lambda s: fn(s, *args))(state)


class _Runner:
    """The imperative part of :func:`train`: feeding, logging, saving, evaluating."""

    def __init__(self, config, objective: Objective, train_ds, test_ds, seeds, sweep, order_seeds, run_dirs, ckpts,
                 batch_sharding, start):
        self.config, self.objective = config, objective
        self.train_ds, self.test_ds = train_ds, test_ds
        self.seeds, self.sweep, self.order_seeds = seeds, sweep, order_seeds
        self.run_dirs, self.ckpts = run_dirs, ckpts
        self.last_saved = start or None  # the newest checkpoint known to exist and to have passed its checks
        self.batch_sharding = batch_sharding
        self.writers = [io.MetricsWriter(os.path.join(d, "metrics.jsonl"), start) for d in run_dirs] if io.is_writer() else []
        self.boards = [io.TensorBoardWriter(d, start) for d in run_dirs] if io.is_writer() else []
        self.last_rows: list[dict] = [{} for _ in run_dirs]
        self.eval_key = jax.random.key(int(config.eval_seed))
        # Over a sweep's leading seed axis: the state is stacked, keys and images are shared.
        self.sample = jax.jit(_seed_vmap(objective.sample, sweep), static_argnums=2)
        self.figures = jax.jit(_seed_vmap(objective.figures, sweep))
        self.energy = jax.jit(_seed_vmap(objective.energy, sweep), static_argnums=2)
        self.evaluate_split = jax.jit(_seed_vmap(objective.evaluate, sweep))
        self.energy_shapes = None  # the generation pass's layer shapes, traced at the first evaluation
        # Elapsed time counts from here, so it includes precomputing (e.g. cached front-end features).
        self.t0 = time.perf_counter()
        self.extras = objective.precompute(train_ds.images)
        self.precompute_s = None
        if self.extras:
            self.precompute_s = time.perf_counter() - self.t0
            log.info("precomputed %s for %d training images in %.1f s", ", ".join(self.extras),
                     len(train_ds.images), self.precompute_s)
        self.start = start

    # -- data ---------------------------------------------------------------
    def host_batch(self, step: int) -> dict:
        bs = int(self.config.batch_size)
        batches = [data_lib.get_batch(self.train_ds, bs, s, step, self.extras) for s in self.order_seeds]
        if self.sweep:
            return {k: np.stack([b[k] for b in batches]) for k in batches[0]}
        return batches[0]

    def place(self, batch: dict) -> dict:
        # Every process computes the same global batch (a pure function of
        # seed and step) and hands over the shards of its own devices.
        return {
            k: jax.make_array_from_callback(v.shape, self.batch_sharding, lambda idx, v=v: v[idx])
            for k, v in batch.items()
        }

    # -- checks and logs -----------------------------------------------------
    def check_and_log(self, step: int, metrics: dict, bar) -> None:
        values = {k: np.asarray(v) for k, v in jax.device_get(metrics).items()}
        # Report the primary loss terms first, the totals and diagnostics after.
        first = [k for k in self.objective.headline if k in values and k != "loss"]
        core = first + [k for k in values if k not in first and k not in ("loss", "grad_norm", "param_norm")
                        and not k.startswith(("fire/", "latent_", "rate/")) and not k.endswith("grad_norm")]
        order = core + (["loss"] if "loss" in values else []) + [k for k in values if k not in core and k != "loss"]
        total_name = "loss" if "loss" in values else next(iter(order), None)
        for name in order:
            vals = np.atleast_1d(values[name])
            bad = np.flatnonzero(~np.isfinite(vals))
            if bad.size:
                seed = self.seeds[int(bad[0])] if self.sweep else None
                where = f" (seed {seed})" if self.sweep else ""
                if self.last_saved is None:
                    after = "no checkpoint was saved before it"
                else:
                    after = (f"the last checkpoint, step {self.last_saved}, stays in "
                             f"{self.ckpts[int(bad[0]) if self.sweep else 0].directory}; to resume from it with a "
                             "lower learning rate add --allow_change=optimizer and the new rate")
                raise NonFiniteLossError(
                    f"non-finite loss at step {step}{where}: term {name!r} = {vals[bad[0]]} "
                    f"({total_name} = {np.atleast_1d(values[total_name])[bad[0] if self.sweep else 0]}); {after}",
                    step, name, seed,
                )
        if step % int(self.config.log_every) and step != int(self.config.total_steps):
            return
        elapsed = time.perf_counter() - self.t0
        timing = {"time/elapsed_s": elapsed, "time/steps_per_s": (step - self.start) / max(elapsed, 1e-9)}
        if self.precompute_s is not None:
            timing["time/precompute_s"] = self.precompute_s
        for i in range(len(self.run_dirs)):
            row = {"step": step, **{k: float(np.atleast_1d(v)[i] if self.sweep else v) for k, v in values.items()}}
            row.update(timing)
            self.last_rows[i] = row
            if self.writers:
                self.writers[i].write(row)
                self.boards[i].scalars(row)
        if bar is not None:
            names = ("loss",) + tuple(k for k in self.objective.headline if k != "loss")
            shown = {k: float(np.mean(values[k])) for k in names if k in values}
            bar.set_postfix({k: f"{v:.4g}" for k, v in shown.items()}, refresh=False)

    # -- outputs -------------------------------------------------------------
    def save(self, step: int, state) -> None:
        for i, c in enumerate(self.ckpts):
            c.save(step, state_lib.unstack_state(state, i) if self.sweep else state)
        self.last_saved = step

    def record_changes(self, step: int, changes: list[str]) -> None:
        """Logs the config changes a resume was allowed, and records them in ``metrics.jsonl``."""
        if not changes:
            return
        log.warning("resuming at step %d with a changed config: %s", step, "; ".join(changes))
        for writer in self.writers:
            writer.write({"step": step, "config_change": "; ".join(changes)})

    def write_grids(self, step: int, state) -> None:
        n = int(self.config.num_grid)
        # Evenly spaced test images: splits may be sorted by class (mnist5k is), and the
        # first n would all be zeros.
        spread = np.linspace(0, len(self.test_ds.images) - 1, n).astype(int)
        figures = jax.device_get(self.figures(state, self.eval_key, jnp.asarray(self.test_ds.images[spread])))
        if not io.is_writer():
            return
        for i, d in enumerate(self.run_dirs):
            for name, images in figures.items():
                images, cols = _grid_columns(np.asarray(images[i] if self.sweep else images))
                grid = io.image_grid(images, cols)
                io.save_png(os.path.join(d, f"{name}_{step}.png"), grid)
                self.boards[i].image(name, step, grid)

    def score_test_split(self, state) -> dict[str, np.ndarray]:
        """Means of ``objective.evaluate`` (batch means) over the whole test split (``[S]`` per name for sweeps)."""
        bs, num = int(self.config.batch_size), len(self.test_ds.images)
        key = jax.random.fold_in(self.eval_key, 2)
        sums: dict[str, np.ndarray] = {}
        for i, lo in enumerate(range(0, num, bs)):
            images = self.test_ds.images[lo : lo + bs]
            scores = jax.device_get(self.evaluate_split(state, jnp.asarray(images), jax.random.fold_in(key, i)))
            if not scores:
                return {}
            for name, value in scores.items():
                sums[name] = sums.get(name, 0.0) + np.asarray(value, np.float64) * len(images)
        return {name: total / num for name, total in sums.items()}

    def evaluate(self, step: int, state) -> None:
        from jaxspike import metrics as metrics_lib  # local: eval is optional

        cfg = self.config
        k_eval, k_fwd = jax.random.split(jax.random.fold_in(self.eval_key, 1))
        samples = generate_samples(self.sample, state, k_eval, int(cfg.eval_num_samples), int(cfg.batch_size))
        layers = jax.device_get(self.energy(state, k_fwd, int(cfg.batch_size)))
        test = self.score_test_split(state)
        min_entropy = float(cfg.mode_collapse_entropy)
        for i, d in enumerate(self.run_dirs):
            row = {"step": step}
            row.update({f"test/{k}": float(v[i] if self.sweep else v) for k, v in test.items()})
            s = samples[i] if self.sweep else samples
            scores = metrics_lib.evaluate_samples(s, cfg.data.name, data_dir=cfg.data.data_dir or None,
                                                  reference=_splits(cfg)[1])
            _flatten("eval", scores, row)
            if "class_entropy" in scores:
                collapsed = bool(scores["class_entropy"] < min_entropy)
                row["mode_collapse"] = collapsed
                if collapsed:
                    log.warning(
                        "step %d%s: mode collapse: class entropy of the samples %.3f nats < %.3f "
                        "(config.mode_collapse_entropy); class histogram %s", step,
                        f" seed {self.seeds[i]}" if self.sweep else "", scores["class_entropy"], min_entropy,
                        scores.get("class_histogram"),
                    )
            if layers:
                aux_i = jax.tree_util.tree_map(lambda a: np.asarray(a)[i], layers) if self.sweep else layers
                _flatten("energy", energy_lib.energy_report(aux_i), row)
                memory = self.memory_energy(state, k_fwd, aux_i)
                if memory:
                    _flatten("energy_mem", memory, row)
            self.last_rows[i] = {**self.last_rows[i], **row}
            if self.writers:
                self.writers[i].write(row)
                self.boards[i].scalars(row)
            log.info("step %d eval%s: %s", step, f" seed {self.seeds[i]}" if self.sweep else "",
                     {k: v for k, v in row.items() if k in ("eval/fid", "eval/inception_score", "eval/class_entropy")})

    def memory_energy(self, state, key, aux) -> dict:
        """The memory-inclusive energy headline of one generation pass (:func:`jaxspike.energy.memory_energy_report`):
        spiking / twin ratios per hardware profile and twin, crossover spike rates. ``{}`` when the
        pass has no spiking layers the shapes can be read from (an analog twin)."""
        if self.energy_shapes is None:
            one = state_lib.unstack_state(state, 0) if self.sweep else state
            num = int(self.config.batch_size)
            try:
                self.energy_shapes = energy_lib.layer_shapes(lambda s, k: self.objective.energy(s, k, num), one, key)
            except ValueError as err:
                log.info("no memory-inclusive energy report: %s", err)
                self.energy_shapes = {}
        if not self.energy_shapes or not any(s.spiking for s in self.energy_shapes.values()):
            return {}
        try:
            return energy_lib.headline(energy_lib.memory_energy_report(aux, self.energy_shapes))
        except ValueError as err:  # layers without a shape (a frozen front end): say so once
            log.info("no memory-inclusive energy report: %s", err)
            self.energy_shapes = {}
            return {}

    def should_stop(self, stop: resume_lib.SignalCatcher, done: int) -> bool:
        """Whether to checkpoint and stop after update ``done``.

        Multi-host: a signal may reach the processes at different steps, and
        a checkpoint needs all of them, so the flag is agreed on (any process
        stopping stops all) every ``log_every`` updates.
        """
        if jax.process_count() == 1:
            return stop.signum is not None
        if done % int(self.config.log_every):
            return False
        from jax.experimental import multihost_utils

        flags = multihost_utils.process_allgather(np.int32(stop.signum or 0))
        if stop.signum is None and np.any(flags):
            stop.signum = int(np.max(flags))
        return bool(np.any(flags))

    # -- main loop -----------------------------------------------------------
    def run(self, jit_step, state, run_keys, start: int, total: int):
        cfg = self.config
        if start >= total:
            log.info("already trained to step %d >= total_steps %d; nothing to do", start, total)
            for board in self.boards:
                board.close()
            return state, self.last_rows
        show = bool(cfg.progress) and io.is_writer()
        bar = None
        if show:
            from tqdm import tqdm

            bar = tqdm(total=total, initial=start, desc="train", unit="step", dynamic_ncols=True,
                       mininterval=1.0, file=sys.stderr)
        pending = None
        try:
            with resume_lib.SignalCatcher() as stop:
                next_batch = self.host_batch(start)
                for step in range(start, total):
                    done = step + 1
                    state, metrics = jit_step(state, self.place(next_batch), run_keys)
                    # While the device works: check the previous step, prepare the next batch.
                    if pending is not None:
                        self.check_and_log(*pending, bar)
                    pending = (done, metrics)
                    if done < total:
                        next_batch = self.host_batch(done)
                    stopping = self.should_stop(stop, done)
                    is_ckpt = done % int(cfg.checkpoint_every) == 0 or done == total or stopping
                    is_grid = bool(cfg.num_grid) and (
                        done == total or (cfg.sample_every and done % int(cfg.sample_every) == 0)
                    )
                    is_eval = bool(cfg.eval_every) and (done % int(cfg.eval_every) == 0 or done == total)
                    if is_ckpt or is_grid or is_eval:
                        self.check_and_log(*pending, bar)
                        pending = None
                    if is_ckpt:
                        self.save(done, state)
                    if is_grid:
                        self.write_grids(done, state)
                    if is_eval:
                        self.evaluate(done, state)
                    if bar is not None:
                        bar.update(1)
                    if stopping:
                        raise TrainingInterrupted(done, stop.signum or signal.SIGTERM)
        finally:
            if bar is not None:
                bar.close()
            for board in self.boards:
                board.close()
        return state, self.last_rows


# ---------------------------------------------------------------------------
# Trained models.


def evaluate_run(config: ml_collections.ConfigDict, objective: Objective, state, workdir: str, step: int) -> dict:
    """Scores one run's ``state`` as the loop scores its last step, into ``workdir``.

    Writes the sample and reconstruction grids (``config.num_grid``) and,
    when ``config.eval_every`` is set, the evaluation row (``test/...``,
    ``eval/...``, ``energy/...``) into ``workdir/metrics.jsonl``; returns the
    row (``{}`` without evaluation). For tools that change a trained state
    outside the loop (e.g. ``launch.fit_prior``).
    """
    train_ds, test_ds = load_splits(config)
    runner = _Runner(config, objective, train_ds, test_ds, [int(config.seed)], False, [0], [workdir], [], None, step)
    try:
        if int(config.num_grid):
            runner.write_grids(step, state)
        if int(config.eval_every):
            runner.evaluate(step, state)
    finally:
        for board in runner.boards:
            board.close()
    return runner.last_rows[0]


def load_trained(workdir: str):
    """``(config, objective, state, image_shape)`` of the newest readable checkpoint in ``workdir``.

    ``objective.sample(state, key, num)`` draws images from it.

    Raises:
      FileNotFoundError: ``workdir`` has no ``config.json`` or no readable checkpoint.
    """
    workdir = os.path.abspath(workdir)
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"--workdir={workdir!r} holds no config.json; is it a training run folder?")
    saved = families.upgrade(io.read_json(path))
    if saved.get("seeds"):
        names = ", ".join(f"seed_{s}" for s in config_lib.parse_seeds(saved["seeds"]))
        raise FileNotFoundError(f"--workdir={workdir!r} is a seed sweep; pass one of its runs: {names}")
    image_shape = tuple(saved.pop("image_shape"))
    for extra in ("num_train", "num_devices"):
        saved.pop(extra, None)
    config = ml_collections.ConfigDict(saved)
    objective = families.build(config, image_shape)
    example = _example_batch(int(config.batch_size), image_shape)
    key = state_lib.seed_streams(int(config.seed)).init_key
    abstract = jax.eval_shape(lambda k: objective.init(k, example), key)
    sharding = NamedSharding(make_mesh(1 if jax.process_count() == 1 else 0), P())
    ckpt_dir = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(ckpt_dir):
        raise FileNotFoundError(f"--workdir={workdir!r} has no checkpoints/ folder; train it first")
    ckpt = io.Checkpointer(ckpt_dir, int(config.keep_checkpoints))
    try:
        for step in reversed(ckpt.all_steps()):
            state = ckpt.try_restore(step, resume_lib.abstract(abstract, sharding))
            if state is not None:
                return config, objective, state, image_shape
    finally:
        ckpt.close()
    raise FileNotFoundError(f"--workdir={workdir!r} has no readable checkpoint in {ckpt_dir}")
