"""A results page's summary file from run folders: one JSON line per run and seed.

    python -m launch.summarize_runs --runs=NAME=DIR,DIR,... --out=results/gan_runs.jsonl

Each ``--runs`` entry is a run folder written by ``launch.train``, a folder of
``seed_<k>/`` runs or a folder written by ``launch.convert``, optionally named (``NAME=DIR``; unnamed: the folder's name,
or its parent's for a ``seed_<k>`` folder). A record holds the row name, the
seed, the config it ran (``launch/configs/<family>.py[:variant]``) and the
fields that differ from today's config (older field names translated), the
last evaluation (``eval/*``, ``energy/*`` totals, ``test/*``), every
evaluation over training when there were several, training seconds and the
loop's last logged steps/s (:func:`launch.reporting.record`); of a
``launch.convert`` folder, one record per row (the analog original, then each
T) with its scores and energy, the first naming the command. The report
tools (``launch.gan_report``, ``launch.vae_report``, ``launch.convert_report``)
read such a file with ``--summary`` instead of the run folders.

Records already in ``--out`` whose row is not written again are kept, in
their place (rows whose run folders are gone stay as the page published them);
``--nokeep`` overwrites the file instead.

``--val_rstdp=LOG,...`` summarises per-epoch logs of ``launch.val_rstdp``
instead (named ``seed<S>_<variant>.jsonl``): one record per log with the
final and mean-of-the-last-10-epochs validation and test accuracy.
The work is done by :mod:`launch.reporting` (``run_records``, ``val_rstdp_record``, ``merge``).
"""

from __future__ import annotations

import json
import os

from absl import app, flags

from launch import reporting

_RUNS = flags.DEFINE_string("runs", "", "Comma-separated [NAME=]DIR: run folders or folders of seed_<k>/ runs.")
_VAL_RSTDP = flags.DEFINE_string("val_rstdp", "", "Comma-separated launch.val_rstdp logs, seed<S>_<variant>.jsonl.")
_OUT = flags.DEFINE_string("out", None, "The summary file (.jsonl) to write.")
_KEEP = flags.DEFINE_bool("keep", True, "Keep the records of --out whose rows are not written again.")
flags.mark_flags_as_required(["out"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected positional arguments: {argv[1:]}")
    if bool(_RUNS.value) == bool(_VAL_RSTDP.value):
        raise app.UsageError("give --runs or --val_rstdp (one of them)")
    try:
        if _RUNS.value:
            records, key = reporting.run_records(_RUNS.value), (lambda r: r["row"])
        else:
            records = [reporting.val_rstdp_record(p.strip()) for p in _VAL_RSTDP.value.split(",") if p.strip()]
            key = lambda r: (r["variant"], r["seed"])  # noqa: E731
    except (ValueError, FileNotFoundError) as err:
        raise app.UsageError(str(err)) from None
    if _KEEP.value and os.path.exists(_OUT.value):
        records = reporting.merge(reporting.read_rows(_OUT.value), records, key)
    os.makedirs(os.path.dirname(os.path.abspath(_OUT.value)), exist_ok=True)
    with open(_OUT.value, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
    print(f"wrote {len(records)} records to {_OUT.value} ({os.path.getsize(_OUT.value)} bytes)")


if __name__ == "__main__":
    app.run(main)
