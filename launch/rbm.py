"""Trains the spiking RBM by event-driven contrastive divergence on mnist5k, then samples it: flags,
then :mod:`jaxspike.local.rbm` (training, sampling, outputs and resume are described there).

    python -m launch.rbm --workdir=/tmp/rbm                    # 60 epochs, ~15 min on one core
    python -m launch.rbm --workdir=/tmp/rbm_smoke --smoke
    python -m launch.rbm --workdir=/tmp/rbm --sample_only --sample_steps=3000

``--sample_only`` skips training and samples the ``params.npz`` an earlier
run left in ``--workdir`` (its ``config.json`` gives the network and the
seed), adding the new rows to its ``metrics.json``. Rerunning a training
command in the same ``--workdir`` resumes from the last finished epoch (the
sampling flags may change). Exit codes: 0 done (or stopped by
``--stop_after``), 1 bad flags or a folder holding another run, 128+N
signal N (after the last checkpoint).
"""

from __future__ import annotations

import json
import sys

from absl import app, flags

_WORKDIR = flags.DEFINE_string("workdir", None, "Run folder.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed.")
_HIDDEN = flags.DEFINE_integer("hidden", 500, "Hidden units.")
_EPOCHS = flags.DEFINE_integer("epochs", 60, "Passes over the train set.")
_BATCH = flags.DEFINE_integer("batch", 50, "Parallel network copies per update.")
_LR = flags.DEFINE_float("lr", 0.05, "eCD learning rate eta.")
_LR_END = flags.DEFINE_float("lr_end", 0.005, "eta at the last epoch (linear decay).")
_WEIGHT_DECAY = flags.DEFINE_float("weight_decay", 1e-4, "L2 decay on w and u.")
_PHASE_STEPS = flags.DEFINE_integer("phase_steps", 10, "Steps per phase (data, model).")
_BURN_IN = flags.DEFINE_integer("burn_in", 2, "Gated-off steps at the start of each phase.")
_TRACE_DECAY = flags.DEFINE_float("trace_decay", 0.0, "STDP trace decay lambda (0 = same-step coincidences).")
_NUM_SAMPLES = flags.DEFINE_integer("num_samples", 1000, "Samples to score (multiple of 10).")
_SAMPLE_STEPS = flags.DEFINE_integer("sample_steps", 1000, "Free-running steps per sample (from a random hidden state).")
_AVERAGE = flags.DEFINE_integer("average", 20, "Last steps averaged into the image.")
_LABEL_COPIES = flags.DEFINE_integer("label_copies", 1, "Label units per class (a population that spikes together).")
_PERSISTENT = flags.DEFINE_bool("persistent", True, "Model phase continues persistent chains across updates "
                                 "(Tieleman 2008) instead of starting from the data phase (CD).")
_LABEL_GAIN = flags.DEFINE_float("label_gain", 1.0, "Scale of the clamped label's drive while sampling.")
_ANNEAL = flags.DEFINE_integer("anneal_steps", 0, "The --label_gain sampler lowers the gain linearly to 1 over this "
                               "many steps, then runs the trained model (0 = constant gain).")
_SAMPLE_ONLY = flags.DEFINE_bool("sample_only", False, "No training: sample and score the params.npz in --workdir.")
_STOP_AFTER = flags.DEFINE_integer("stop_after", 0, "Stop once this many epochs are finished and checkpointed; "
                                   "rerun without it to continue. 0 = run to the end.")
_SMOKE = flags.DEFINE_bool("smoke", False, "Tiny run (32 hidden, 200 digits, 2 epochs, 20 samples) to test the code path.")

flags.mark_flags_as_required(["workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected positional arguments: {argv[1:]}")
    from jaxspike.local import rbm
    from jaxspike.train import resume

    smoke = _SMOKE.value
    command = " ".join(sys.argv)
    try:
        sampling = rbm.Sampling(num_samples=20 if smoke else _NUM_SAMPLES.value,
                                sample_steps=20 if smoke else _SAMPLE_STEPS.value, average=_AVERAGE.value,
                                label_gain=_LABEL_GAIN.value, anneal_steps=_ANNEAL.value)
        cfg = rbm.Config(seed=_SEED.value, hidden=32 if smoke else _HIDDEN.value, epochs=2 if smoke else _EPOCHS.value,
                         batch=_BATCH.value, lr=_LR.value, lr_end=_LR_END.value, weight_decay=_WEIGHT_DECAY.value,
                         phase_steps=_PHASE_STEPS.value, burn_in=_BURN_IN.value, trace_decay=_TRACE_DECAY.value,
                         label_copies=_LABEL_COPIES.value, persistent=_PERSISTENT.value,
                         num_train=200 if smoke else 0, stop_after=_STOP_AFTER.value)
    except ValueError as err:
        raise app.UsageError(str(err)) from None
    if _SAMPLE_ONLY.value:
        try:
            params, rbm_cfg, metrics, seed = rbm.load_run(_WORKDIR.value)  # the trained run's seed keys the samples
        except FileNotFoundError as err:
            raise app.UsageError(f"--sample_only: {err}") from None
    else:
        resume.quiet_checkpoint_logs()
        try:
            params, rbm_cfg, metrics = rbm.train(cfg, sampling, _WORKDIR.value, command=command,
                                                 log=lambda m: print(m, flush=True))
        except resume.Stopped as err:  # checkpoints saved, nothing to sample yet
            print(f"launch.rbm: {err}", file=sys.stderr, flush=True)
            sys.exit(err.code)
        except resume.RunMismatch as err:
            raise app.UsageError(str(err)) from None
        seed = cfg.seed
    metrics = rbm.sample_and_score(_WORKDIR.value, params, rbm_cfg, metrics, seed, sampling, command=command)
    print(json.dumps(metrics, indent=1))


if __name__ == "__main__":
    app.run(main)
