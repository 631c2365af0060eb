"""Trains the STDP / R-STDP digit network (Mozafari et al. 2019) on mnist5k: flags, then
:func:`jaxspike.local.stdp.run` (stages, outputs and resume are described there).

    python -m launch.stdp --workdir=/tmp/stdp
    python -m launch.stdp --workdir=/tmp/stdp_smoke --smoke
    python -m launch.stdp --workdir=$HOME/.cache/jaxspike/stdp_frontend --stdp_only   # S1 + S2: a front end
    python -m launch.stdp --workdir=/tmp/stdp_best --rstdp_scale=4 --shifts=8 --epochs3=60 --rstdp_decay=linear --dropout=0.25
    python -m launch.stdp --workdir=/tmp/stdp_c250 --c2=250 --rstdp_scale=4 --shifts=8 --epochs3=60 --rstdp_decay=linear --dropout=0.25

Rerunning a command in the same ``--workdir`` resumes from the last finished
epoch. Exit codes: 0 done (or stopped by ``--stop_after``), 1 bad flags or a
folder holding another run, 128+N signal N (after the last checkpoint).
"""

from __future__ import annotations

import json
import sys

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
_DROPOUT = flags.DEFINE_float("dropout", 0.0, "R-STDP: probability that a decision map sits out an example.")
_SHIFTS = flags.DEFINE_integer("shifts", 0, "R-STDP set: the digits plus this many one-pixel shifted copies (0-8).")
_DISTORTIONS = flags.DEFINE_integer("distortions", 0, "R-STDP set: plus this many randomly distorted copies.")
_RSTDP_DECAY = flags.DEFINE_enum("rstdp_decay", "none", ["none", "linear"], "R-STDP rates per epoch: constant, or "
                                 "times 1 - epoch / epochs3.")
_NUM_TRAIN = flags.DEFINE_integer("num_train", 0, "Use only this many training digits (0 = all 4,000).")
_STDP_ONLY = flags.DEFINE_bool("stdp_only", False, "Stop after S1 and S2: a frozen front end (jaxspike.local.stdp.load_frontend).")
_STOP_AFTER = flags.DEFINE_integer("stop_after", 0, "Stop once this many epochs (S1, S2, R-STDP in turn) are finished "
                                   "and checkpointed; rerun without it to continue. 0 = run to the end.")
_SMOKE = flags.DEFINE_bool("smoke", False, "Tiny run (c1=8, c2=16, 200 digits, 1 epoch of S1 and S2, 2 of R-STDP).")

flags.mark_flags_as_required(["workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected positional arguments: {argv[1:]}")
    from jaxspike.local import stdp
    from jaxspike.train import resume

    run_flags = dict(seed=_SEED.value, rstdp_scale=_RSTDP_SCALE.value, dropout=_DROPOUT.value, shifts=_SHIFTS.value,
                     distortions=_DISTORTIONS.value, rstdp_decay=_RSTDP_DECAY.value, stdp_only=_STDP_ONLY.value,
                     stop_after=_STOP_AFTER.value)
    try:
        if _SMOKE.value:
            cfg = stdp.Config.smoke(**run_flags)
        else:
            cfg = stdp.Config(c1=_C1.value, c2=_C2.value, per_class=_PER_CLASS.value, batch=_BATCH.value,
                              epochs=(_EPOCHS1.value, _EPOCHS2.value, _EPOCHS3.value), decide_every=_DECIDE_EVERY.value,
                              num_train=_NUM_TRAIN.value, **run_flags)
    except ValueError as err:
        raise app.UsageError(str(err)) from None
    resume.quiet_checkpoint_logs()
    try:
        metrics = stdp.run(cfg, _WORKDIR.value, command=" ".join(sys.argv), log=lambda m: print(m, flush=True))
    except resume.Stopped as err:
        print(f"launch.stdp: {err}", file=sys.stderr, flush=True)
        sys.exit(err.code)
    except resume.RunMismatch as err:
        raise app.UsageError(str(err)) from None
    print(json.dumps(metrics, indent=1))


if __name__ == "__main__":
    app.run(main)
