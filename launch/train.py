"""Trains a config in a run folder (resumes if the folder holds a checkpoint).

    python -m launch.train --config=launch/configs/vae.py --workdir=/tmp/svae
    python -m launch.train --config=launch/configs/vae.py:smoke --workdir=/tmp/smoke
    python -m launch.train --config=launch/configs/vae.py --workdir=/tmp/sweep --seeds=0,1,2,3
    python -m launch.train --config=launch/configs/vae.py --workdir=W --config.model.latent=64
    python -m launch.train --config=... --workdir=W --allow_change=optimizer.learning_rate \\
        --config.optimizer.learning_rate=3e-4   # resume W's last checkpoint with a lower rate

Multi-host (one process per host, see docs/cluster.md)::

    python -m launch.train --multihost --coordinator_address=host0:1234 \\
        --num_processes=2 --process_id=$RANK --config=... --workdir=/shared/W

Exit codes, each with one line on stderr:

    0        done (or nothing left to do)
    1        a loss term became NaN or infinite (the line names the step, the term and the last checkpoint)
    2        a bad flag or config field (named), or no usable data
    3        the run folder is in use by another job (named: host, pid, start time)
    4        the run folder cannot be written or read (disk full, read-only, no usable checkpoint)
    128 + N  stopped by signal N after saving a checkpoint (130 after a second Ctrl-C, without one)
"""

from __future__ import annotations

import logging
import sys

from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Python config file, optionally with a variant: launch/configs/vae.py:smoke.", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run folder: config.json, metrics.jsonl, checkpoints/, PNGs.")
_SEEDS = flags.DEFINE_string("seeds", None, "Comma-separated seeds, e.g. 0,1,2,3: one vmapped sweep (sets config.seeds).")
_ALLOW_CHANGE = flags.DEFINE_list("allow_change", [], "Config fields or sections (e.g. optimizer.learning_rate) a "
                                  "resume may change; the change is recorded in metrics.jsonl.")
_MULTIHOST = flags.DEFINE_bool("multihost", False, "Call jax.distributed.initialize (one process per host).")
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "host:port of process 0, reachable by all hosts (multihost; default: auto-detect)."
)
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes (multihost; default: auto-detect).")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's rank in [0, num_processes) (multihost).")

flags.mark_flags_as_required(["config", "workdir"])

EXIT_NONFINITE, EXIT_CONFIG, EXIT_BUSY, EXIT_IO = 1, 2, 3, 4


def _fail(message: str, code: int) -> None:
    print(f"launch.train: error: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


def _quiet_shutdown() -> None:
    """Silences what interpreter shutdown prints after an interruption: asyncio's "Event loop is
    closed" from the checkpoint library's threads says nothing the exit line does not."""
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    default = sys.unraisablehook

    def hook(unraisable):
        if isinstance(unraisable.exc_value, RuntimeError) and "Event loop is closed" in str(unraisable.exc_value):
            return
        default(unraisable)

    sys.unraisablehook = hook


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected positional arguments: {argv[1:]}")
    _quiet_shutdown()
    from jaxspike import train  # local: flags are parsed (and XLA set up) first
    from jaxspike.train import io, resume

    resume.quiet_checkpoint_logs()

    if not _MULTIHOST.value and any(f.present for f in (flags.FLAGS["coordinator_address"],
                                                         flags.FLAGS["num_processes"], flags.FLAGS["process_id"])):
        _fail("--coordinator_address/--num_processes/--process_id need --multihost", EXIT_CONFIG)
    if _MULTIHOST.value:
        try:
            train.initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
        except (ValueError, RuntimeError) as err:
            _fail(f"--multihost: jax.distributed.initialize failed ({err}); pass --coordinator_address, "
                  "--num_processes and --process_id, or run under a scheduler jax can auto-detect", EXIT_CONFIG)
    config = _CONFIG.value
    if _SEEDS.value is not None:
        try:
            train.parse_seeds(_SEEDS.value)
        except train.ConfigError as err:
            _fail(str(err), EXIT_CONFIG)
        config.seeds = _SEEDS.value
    try:
        result = train.train(config, _WORKDIR.value, allow_change=tuple(_ALLOW_CHANGE.value))
    except (train.ConfigError, FileNotFoundError) as err:
        _fail(str(err), EXIT_CONFIG)
    except io.RunFolderBusy as err:
        _fail(str(err), EXIT_BUSY)
    except (resume.NoUsableCheckpoint, OSError) as err:  # CheckpointWriteError is an OSError
        _fail(f"{err}" if isinstance(err, (resume.NoUsableCheckpoint, io.CheckpointWriteError))
              else f"{type(err).__name__}: {err}", EXIT_IO)
    except train.NonFiniteLossError as err:
        _fail(str(err), EXIT_NONFINITE)
    except train.TrainingInterrupted as err:
        _fail(str(err), 128 + err.signum)
    except KeyboardInterrupt:
        _fail("interrupted twice: stopped without saving; the folder keeps its last checkpoint", 130)
    last = result.last_metrics[0] if result.last_metrics else {}
    shown = {k: round(v, 4) for k, v in last.items() if k in ("loss",) + result.headline}
    print(f"launch.train: done, step {result.step}, {len(result.run_dirs)} run(s) in {_WORKDIR.value}; {shown}")


if __name__ == "__main__":
    app.run(main)
