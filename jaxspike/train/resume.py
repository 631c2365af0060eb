"""Interruption and resume, shared by every launcher.

* :class:`SignalCatcher` turns SIGINT/SIGTERM into a flag a loop polls, so a
  job stops at a clean point instead of dying inside a step.
* :func:`config_diffs` lists the fields in which a run folder's saved
  ``config.json`` and a new launch's config differ (a resume must not mix
  two configs).
* :class:`EpochCheckpoints` gives epoch-based training programs (the
  local-learning routes of :mod:`jaxspike.local`, outside :func:`jaxspike.train.train`'s step
  loop) the same contract as the training loop: a checkpoint after every
  epoch, and a rerun of the same command in the same folder continues from
  the newest readable one.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from typing import Any, Iterable

import jax

from jaxspike.train import io

log = logging.getLogger("jaxspike.train")

__all__ = ["SignalCatcher", "Stopped", "RunMismatch", "NoUsableCheckpoint", "config_diffs", "abstract", "restore_newest", "EpochCheckpoints",
           "quiet_checkpoint_logs"]


def quiet_checkpoint_logs() -> None:
    """Orbax logs every save at INFO through absl: keep the console for progress,
    unless the user asked for a verbosity (``--verbosity``/``-v``)."""
    from absl import flags
    from absl import logging as absl_logging

    present = "verbosity" in flags.FLAGS and flags.FLAGS["verbosity"].present
    if absl_logging.get_verbosity() >= absl_logging.INFO and not present:
        absl_logging.set_verbosity(absl_logging.WARNING)
    logging.getLogger("jaxspike.train").setLevel(logging.INFO)


class SignalCatcher:
    """Context manager: SIGINT/SIGTERM set ``self.signum`` instead of killing.

    Only installed from the main thread. A second Ctrl-C stops at once.
    """

    def __init__(self):
        self.signum: int | None = None
        self._old: dict[int, Any] = {}

    def _handle(self, signum, frame):
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum
        log.warning("received signal %d: stopping at the next safe point", signum)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        return False


class RunMismatch(ValueError):
    """A run folder holds checkpoints of a run with other settings; the message names the fields."""


class Stopped(Exception):
    """A launcher stops early with its checkpoints saved (a signal, or a ``--stop_after`` limit).

    ``code`` is the process exit status to use: 128 + signal, or 0.
    """

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


def abstract(tree: Any, sharding=None) -> Any:
    """Shape/dtype (and optionally sharding) stand-ins for restoring ``tree``."""
    return jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)


class NoUsableCheckpoint(RuntimeError):
    """A run folder holds checkpoints but none passes its checks; they are left in place."""


def restore_newest(ckpts: list[io.Checkpointer], abstract_state: Any) -> tuple[int, list[Any]] | None:
    """Newest step readable and verified in every run's checkpoints, and the states; ``None`` if
    the folders hold no checkpoint at all.

    Incomplete step folders are reported and ignored. Checkpoints newer than
    the step found (failing their checks, or not matched by the other runs
    of a sweep) are moved aside, so the run can save those steps again;
    older ones are never touched.

    Raises:
      NoUsableCheckpoint: there are checkpoints, but none passes (a run never
        silently restarts from step 0 past them).
    """
    for c in ckpts:
        for step in c.incomplete_steps():
            log.warning("step folder %s holds no complete checkpoint and is ignored", c.step_dir(step))
    common = set(ckpts[0].all_steps())
    for c in ckpts[1:]:
        common &= set(c.all_steps())
    found = None
    for step in sorted(common, reverse=True):
        states = []
        for c in ckpts:
            restored = c.try_restore(step, abstract_state)
            if restored is None:
                break
            states.append(restored)
        if len(states) == len(ckpts):
            found = (step, states)
            break
    if found is None and any(c.all_steps() for c in ckpts):
        raise NoUsableCheckpoint(
            f"no checkpoint in {ckpts[0].directory} passes its checks (the warnings above say why); they are left "
            "in place: move them away to start over, or use another --workdir"
        )
    for c in ckpts:
        c.discard([s for s in c.all_steps() if found is not None and s > found[0]])
    return found


def config_diffs(saved: dict, new: dict, keys: Iterable[str] | None = None) -> list[str]:
    """``"field: saved X != new Y"`` for each leaf that differs (tuples compare as lists).

    ``keys``: the top-level fields to compare (default: all of both).
    """
    diffs: list[str] = []

    def walk(a, b, prefix):
        if isinstance(a, dict) and isinstance(b, dict):
            for k in sorted(set(a) | set(b)):
                walk(a.get(k), b.get(k), f"{prefix}.{k}" if prefix else k)
        elif a != b:
            diffs.append(f"{prefix}: saved {a!r} != new {b!r}")

    saved, new = io.to_builtin(saved), io.to_builtin(new)
    for key in sorted(set(saved) | set(new)) if keys is None else keys:
        walk(saved.get(key), new.get(key), key)
    return diffs


class EpochCheckpoints:
    """Per-epoch orbax checkpoints of a launcher's whole training state.

    ``state`` is any pytree of arrays (weights, carried scalars, elapsed
    times); steps count finished epochs. Opening takes the folder's lock
    (:class:`jaxspike.train.io.RunLock`: one job per folder), then, if the
    folder holds a checkpoint, checks ``config`` against its
    ``config.json`` (all fields but those in ``ignore``) and raises
    :class:`RunMismatch` naming the differing fields, so a resume cannot mix
    two configs; then (re)writes ``config.json``.
    """

    def __init__(self, workdir: str, config: dict, ignore: Iterable[str] = ("command",), keep: int = 2):
        path = os.path.join(workdir, "config.json")
        ignore = set(ignore)
        self.lock = io.RunLock(workdir)
        self.ckpt = io.Checkpointer(os.path.join(workdir, "checkpoints"), keep=keep)
        self.resuming = bool(self.ckpt.all_steps())
        if self.resuming and os.path.exists(path):
            saved = io.read_json(path)
            keys = (set(saved) | set(config)) - ignore
            diffs = config_diffs(saved, config, sorted(keys))
            if diffs:
                self.close()
                raise RunMismatch(
                    f"workdir {workdir!r} holds checkpoints of a run with a different config "
                    f"({'; '.join(diffs[:5])}); use a fresh --workdir or the same flags"
                )
        io.write_json(path, config)

    def restore(self, template: Any) -> tuple[int, Any]:
        """``(step, state)`` of the newest readable checkpoint, else ``(0, template)``.

        Unreadable (partial, corrupt) checkpoints are reported, moved aside
        and skipped, as in the training loop.
        """
        found = restore_newest([self.ckpt], abstract(template))
        return (found[0], found[1][0]) if found else (0, template)

    def save(self, step: int, state: Any) -> None:
        self.ckpt.save(step, state)

    def close(self) -> None:
        self.ckpt.close()
        self.lock.release()
