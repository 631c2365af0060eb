"""Run-folder files: config, metrics log, image grids and orbax checkpoints.

A run folder is self-describing::

    workdir/
      config.json          the ConfigDict of the run (plus the data's image shape)
      metrics.jsonl        one JSON object per log step: {"step": s, "loss": ...}
      events.out.tfevents.*  the same scalars and the PNG grids for TensorBoard
      checkpoints/<step>/  orbax checkpoints of the TrainState, the last N kept
      samples_<step>.png   grid of generated images
      recons_<step>.png    test images (odd columns) next to their reconstructions

Only process 0 writes the plain files; every process takes part in the
checkpoint (orbax coordinates multi-host saves).
"""

from __future__ import annotations

import json
import logging
import math
import os
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


class TensorBoardWriter:
    """TensorBoard event files in a run folder: every numeric metric and the image grids.

    Written with ``tensorboardX`` (no TensorFlow needed); view with
    ``tensorboard --logdir RUN``. On resume from step ``s``, events after
    ``s`` left by the interrupted run are purged, as :class:`MetricsWriter`
    drops their lines.
    """

    def __init__(self, run_dir: str, resume_step: int = 0):
        from tensorboardX import SummaryWriter  # local: only the training loop writes events

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


class Checkpointer:
    """Orbax checkpoints of one run, keeping the last ``keep``.

    Restoring walks the saved steps from the newest: an unreadable
    (corrupt or partial) checkpoint is reported with a warning naming its
    step and folder, moved aside to ``checkpoints/corrupt_<step>`` so later
    saves at that step are not blocked, and the previous one is tried.
    """

    def __init__(self, directory: str, keep: int = 3):
        self.directory = os.path.abspath(directory)
        self.keep = keep
        self._open()

    def _open(self) -> None:
        options = ocp.CheckpointManagerOptions(max_to_keep=self.keep, create=True, enable_async_checkpointing=False)
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def all_steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def step_dir(self, step: int) -> str:
        return os.path.join(self.directory, str(step))

    def save(self, step: int, state: Any) -> None:
        if step in self.manager.all_steps():
            return
        self.manager.save(step, args=ocp.args.StandardSave(state), force=True)
        self.manager.wait_until_finished()

    def try_restore(self, step: int, abstract_state: Any) -> Any | None:
        """The state saved at ``step``, or ``None`` (with a warning) if it cannot be read."""
        try:
            return self.manager.restore(step, args=ocp.args.StandardRestore(abstract_state))
        except Exception as err:  # noqa: BLE001 - any failure means "unusable checkpoint"
            first = str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__
            log.warning(
                "checkpoint at step %d (%s) is corrupt or incomplete and is skipped: %s: %s",
                step,
                self.step_dir(step),
                type(err).__name__,
                first,
            )
            return None

    def discard(self, steps: Iterable[int]) -> None:
        """Moves unreadable checkpoints aside (``corrupt_<step>``) and reopens the manager."""
        steps = list(steps)
        if not steps:
            return
        self.manager.close()
        if is_writer():
            for step in steps:
                src = self.step_dir(step)
                dst = os.path.join(self.directory, f"corrupt_{step}")
                if os.path.exists(dst):
                    dst = f"{dst}_{os.getpid()}"
                if os.path.exists(src):
                    os.replace(src, dst)
                    log.warning("moved unreadable checkpoint %s to %s", src, dst)
        self._open()

    def close(self) -> None:
        self.manager.close()
