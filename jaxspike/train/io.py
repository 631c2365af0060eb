"""Run-folder files: config, metrics log, image grids and orbax checkpoints.

A run folder is self-describing::

    workdir/
      config.json          the ConfigDict of the run (plus the data's image shape)
      metrics.jsonl        one JSON object per log step: {"step": s, "loss": ...}
      events.out.tfevents.*  the same scalars and the PNG grids for TensorBoard
      run.lock             held by the job training in the folder (one job per folder)
      checkpoints/<step>/  verified checkpoints of the state (Checkpointer), the last N kept
      samples_<step>.png   grid of generated images
      recons_<step>.png    test images (odd columns) next to their reconstructions

Only process 0 writes the plain files; every process takes part in the
checkpoint (orbax coordinates multi-host saves).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import socket
import time
from typing import Any, Iterable

import jax
import numpy as np
import orbax.checkpoint as ocp

log = logging.getLogger("jaxspike.train")

__all__ = [
    "is_writer",
    "to_builtin",
    "write_json",
    "read_json",
    "MetricsWriter",
    "TensorBoardWriter",
    "read_metrics",
    "image_grid",
    "save_image_grid",
    "save_png",
    "Checkpointer",
    "CheckpointWriteError",
    "RunFolderBusy",
    "RunLock",
]


def is_writer() -> bool:
    """Whether this process writes the run folder's plain files."""
    return jax.process_index() == 0


def to_builtin(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): to_builtin(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_builtin(v) for v in value]
    if isinstance(value, (np.generic, np.ndarray)) or isinstance(value, jax.Array):
        arr = np.asarray(value)
        return arr.item() if arr.ndim == 0 else arr.tolist()
    return value


def write_json(path: str, obj: Any) -> None:
    """Writes ``obj`` as indented JSON atomically (write then rename)."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(to_builtin(obj), f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def read_json(path: str) -> Any:
    with open(path) as f:
        return json.load(f)


class MetricsWriter:
    """Appends one JSON line per log step to ``metrics.jsonl``.

    On resume from step ``s`` the lines of steps after ``s`` (written by the
    interrupted run after its last checkpoint) are dropped first, so the file
    of a resumed run equals that of an uninterrupted one.
    """

    def __init__(self, path: str, resume_step: int = 0):
        self.path = path
        if os.path.exists(path):
            kept = [r for r in read_metrics(path) if r.get("step", 0) <= resume_step]
            with open(path, "w") as f:
                for row in kept:
                    f.write(json.dumps(row, sort_keys=True) + "\n")

    def write(self, row: dict) -> None:
        row = to_builtin(row)
        with open(self.path, "a") as f:
            f.write(json.dumps(row, sort_keys=True) + "\n")


def _summary_writer_class():
    """``tensorboardX.SummaryWriter``, imported without PyTorch.

    At import, tensorboardX imports torch whenever it is installed, only to accept torch
    tensors (about 8 s of CPU per process here); this writer logs floats and numpy grids.
    When torch is not imported yet, it is kept out of sys.modules while tensorboardX loads
    and left importable afterwards.
    """
    import sys

    if "tensorboardX" in sys.modules or "torch" in sys.modules:
        from tensorboardX import SummaryWriter

        return SummaryWriter
    sys.modules["torch"] = None  # type: ignore[assignment]  # `import torch` raises ImportError
    try:
        from tensorboardX import SummaryWriter
    finally:
        if sys.modules.get("torch", 0) is None:
            del sys.modules["torch"]
    return SummaryWriter


class TensorBoardWriter:
    """TensorBoard event files in a run folder: every numeric metric and the image grids.

    Written with ``tensorboardX`` (no TensorFlow needed); view with
    ``tensorboard --logdir RUN``. On resume from step ``s``, events after
    ``s`` left by the interrupted run are purged, as :class:`MetricsWriter`
    drops their lines.
    """

    def __init__(self, run_dir: str, resume_step: int = 0):
        SummaryWriter = _summary_writer_class()
        self._writer = SummaryWriter(run_dir, purge_step=resume_step + 1 if resume_step else None,
                                     flush_secs=30)

    def scalars(self, row: dict) -> None:
        step = int(row["step"])
        for name, value in row.items():
            if name != "step" and isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
                self._writer.add_scalar(name, float(value), step)

    def image(self, name: str, step: int, grid: np.ndarray) -> None:
        """``grid``: ``uint8 [H, W]`` or ``[H, W, C]`` as :func:`image_grid` makes it."""
        self._writer.add_image(name, grid if grid.ndim == 3 else grid[..., None], step, dataformats="HWC")

    def close(self) -> None:
        self._writer.close()


def read_metrics(path: str) -> list[dict]:
    """The rows of a ``metrics.jsonl`` file (a torn last line is skipped)."""
    rows = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                log.warning("skipping unreadable line in %s: %.80s", path, line)
    return rows


def image_grid(images: np.ndarray, cols: int | None = None, pad: int = 1) -> np.ndarray:
    """Tiles ``images [N, H, W, C]`` in [0, 1] into one ``uint8`` picture."""
    images = np.clip(np.asarray(images, np.float32), 0.0, 1.0)
    n, h, w, c = images.shape
    cols = cols or int(math.ceil(math.sqrt(n)))
    rows = int(math.ceil(n / cols))
    grid = np.ones((rows * (h + pad) + pad, cols * (w + pad) + pad, c), np.float32)
    for i in range(n):
        r, q = divmod(i, cols)
        grid[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + q * (w + pad) : pad + q * (w + pad) + w] = images[i]
    grid = (grid * 255.0 + 0.5).astype(np.uint8)
    return grid[..., 0] if c == 1 else grid


def save_image_grid(path: str, images: np.ndarray, cols: int | None = None) -> None:
    """Writes ``images [N, H, W, C]`` as one PNG grid."""
    save_png(path, image_grid(images, cols))


def save_png(path: str, picture: np.ndarray) -> None:
    """Writes a ``uint8`` picture (``[H, W]`` or ``[H, W, C]``) as a PNG."""
    from PIL import Image  # local: only needed when writing figures

    Image.fromarray(picture).save(path)


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (disk full, read-only folder, ...); the message says which and why."""


class RunFolderBusy(RuntimeError):
    """Another job holds the run folder's lock; the message names it (host, pid, start time)."""


def _digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _files(root: str) -> list[str]:
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, files in os.walk(root) for f in files)


def _all_finite(tree: Any) -> bool:
    for leaf in jax.tree_util.tree_leaves(tree):
        value = np.asarray(jax.device_get(leaf)) if not jax.dtypes.issubdtype(getattr(leaf, "dtype", np.float32), jax.dtypes.prng_key) else None
        if value is not None and np.issubdtype(value.dtype, np.inexact) and not np.isfinite(value).all():
            return False
    return True


class Checkpointer:
    """Checkpoints of one run, each complete or absent, keeping the last ``keep``.

    Layout: ``<directory>/<step>/state/`` (an orbax StandardSave of the
    state) and ``<step>/manifest.json`` (the SHA-256 of every file under
    ``state/``). A step is written into ``<step>.partial/`` and renamed to
    ``<step>/`` only once its state and manifest are on disk, so a step
    folder exists only when complete; an interrupted save leaves a
    ``.partial`` folder that is ignored (and replaced by the next save of
    that step). Folders of the older layout (orbax's CheckpointManager:
    ``<step>/default/`` with its ``commit_success.txt``) are read too.

    Restoring a step verifies it: every file against the manifest, then
    every floating-point leaf of the state finite. A step folder that is
    incomplete or fails a check is reported by name and skipped, never a
    reason to distrust older steps.
    """

    def __init__(self, directory: str, keep: int = 3):
        self.directory = os.path.abspath(directory)
        self.keep = keep
        self._orbax = ocp.Checkpointer(ocp.StandardCheckpointHandler())
        if is_writer():
            os.makedirs(self.directory, exist_ok=True)

    def step_dir(self, step: int) -> str:
        return os.path.join(self.directory, str(step))

    def _state_dir(self, step: int) -> tuple[str, str | None]:
        """``(orbax item folder, manifest path or None for the older layout)``."""
        d = self.step_dir(step)
        if os.path.exists(os.path.join(d, "manifest.json")):
            return os.path.join(d, "state"), os.path.join(d, "manifest.json")
        return os.path.join(d, "default"), None

    def _numbered(self) -> list[int]:
        if not os.path.isdir(self.directory):
            return []
        return sorted(int(n) for n in os.listdir(self.directory) if n.isdigit() and os.path.isdir(self.step_dir(int(n))))

    def _complete(self, step: int) -> bool:
        d = self.step_dir(step)
        if os.path.exists(os.path.join(d, "manifest.json")):
            return True
        return os.path.exists(os.path.join(d, "default", "commit_success.txt"))  # the older layout

    def all_steps(self) -> list[int]:
        """Steps whose folder is complete (not yet verified: see :meth:`try_restore`)."""
        return [s for s in self._numbered() if self._complete(s)]

    def incomplete_steps(self) -> list[int]:
        """Numbered step folders that hold no complete checkpoint (an interrupted copy, a stray ``mkdir``)."""
        return [s for s in self._numbered() if not self._complete(s)]

    def save(self, step: int, state: Any) -> None:
        """Writes ``state`` as step ``step`` (no-op if that step is already saved), then prunes old steps.

        Raises:
          CheckpointWriteError: the folder cannot be written (one line: which and why).
        """
        if step in self.all_steps():
            return
        final, partial = self.step_dir(step), self.step_dir(step) + ".partial"
        try:
            if is_writer() and os.path.exists(partial):
                shutil.rmtree(partial)
            _sync(f"jaxspike_ckpt_clear_{step}")
            self._orbax.save(os.path.join(partial, "state"), args=ocp.args.StandardSave(state), force=True)
            _sync(f"jaxspike_ckpt_saved_{step}")
            if is_writer():
                root = os.path.join(partial, "state")
                write_json(os.path.join(partial, "manifest.json"),
                           {"step": int(step), "sha256": {f: _digest(os.path.join(root, f)) for f in _files(root)}})
                if os.path.exists(final):  # an incomplete folder of this step: keep it aside
                    os.replace(final, _aside(final, "incomplete"))
                os.replace(partial, final)
        except Exception as err:  # noqa: BLE001 - every failure here is "this checkpoint was not written"
            if is_writer() and os.path.exists(partial):
                shutil.rmtree(partial, ignore_errors=True)
            raise CheckpointWriteError(f"could not write checkpoint step {step} in {self.directory}: "
                                       f"{type(err).__name__}: {_first_line(err)}") from None
        _sync(f"jaxspike_ckpt_done_{step}")
        if is_writer():
            for old in self.all_steps()[: -self.keep]:
                shutil.rmtree(self.step_dir(old), ignore_errors=True)

    def try_restore(self, step: int, abstract_state: Any) -> Any | None:
        """The verified state saved at ``step``, or ``None`` (with a warning saying why)."""
        item, manifest = self._state_dir(step)
        reason = None
        if manifest is not None:
            try:
                expected = read_json(manifest)["sha256"]
                found = _files(item)
                if found != sorted(expected):
                    reason = f"its files differ from the manifest ({len(found)} found, {len(expected)} listed)"
                else:
                    bad = [f for f in found if _digest(os.path.join(item, f)) != expected[f]]
                    if bad:
                        reason = f"{len(bad)} file(s) fail their checksum, e.g. {bad[0]}"
            except (OSError, ValueError, KeyError) as err:
                reason = f"unreadable manifest: {type(err).__name__}: {_first_line(err)}"
        state = None
        if reason is None:
            try:
                state = self._orbax.restore(item, args=ocp.args.StandardRestore(abstract_state))
            except Exception as err:  # noqa: BLE001 - any failure means "unusable checkpoint"
                reason = f"{type(err).__name__}: {_first_line(err)}"
        if reason is None and not _all_finite(state):
            reason = "it holds NaN or infinite values"
        if reason is not None:
            log.warning("checkpoint at step %d (%s) is corrupt or incomplete and is skipped: %s",
                        step, self.step_dir(step), reason)
            return None
        return state

    def discard(self, steps: Iterable[int]) -> None:
        """Moves the folders of ``steps`` aside (``corrupt_<step>``): kept for inspection, out of the way of new saves."""
        if not is_writer():
            return
        for step in steps:
            src = self.step_dir(step)
            if os.path.exists(src):
                dst = _aside(src, "corrupt")
                os.replace(src, dst)
                log.warning("moved checkpoint folder %s aside to %s", src, dst)

    def close(self) -> None:
        self._orbax.close()


def _aside(path: str, kind: str) -> str:
    """A free name ``<parent>/<kind>_<step>[_n]`` for a step folder moved aside."""
    base = os.path.join(os.path.dirname(path), f"{kind}_{os.path.basename(path)}")
    dst, n = base, 1
    while os.path.exists(dst):
        dst, n = f"{base}_{n}", n + 1
    return dst


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:300] if text else type(err).__name__


def _sync(name: str) -> None:
    """A barrier of all processes (multi-host saves); nothing on one process."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


class RunLock:
    """One job per run folder: an exclusive ``fcntl`` lock on ``<workdir>/run.lock``.

    Taken before anything else is written; the file then names its holder
    (host, pid, start time) for the message a second job gets. The kernel
    drops the lock when the holding process ends, however it ends, so a
    crashed job leaves no stale lock behind. Only process 0 of a multi-host
    job takes it.
    """

    def __init__(self, workdir: str):
        self.path = os.path.join(os.path.abspath(workdir), "run.lock")
        self._fd = None
        if not is_writer():
            return
        import fcntl

        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 4096).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise RunFolderBusy(f"{os.path.dirname(self.path)} is in use by {holder}; wait for it or use another "
                                "--workdir") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"host {socket.gethostname()} pid {os.getpid()} since "
                     f"{time.strftime('%Y-%m-%d %H:%M:%S')}".encode())
        os.fsync(fd)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            import fcntl

            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()
        return False
