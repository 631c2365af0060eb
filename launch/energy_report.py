"""Memory-inclusive energy of trained runs: spiking vs analog twins, per hardware profile.

    python -m launch.energy_report --runs=runs/svae,runs/sgan/seed_0 [--out=table.md] [--json=rows.jsonl]

Prints (or writes) the table of :mod:`launch.energy_tables` for the run folders given: training
runs of :mod:`jaxspike.train` (a parent of ``seed_<k>`` folders is averaged over them) and runs
of the local-learning routes (``launch.stdp``, ``launch.rbm``).
"""

from __future__ import annotations

import json
import os

from absl import app, flags

from launch import energy_tables

flags.DEFINE_list("runs", None, "Run folders (or parents of seed_<k> folders), NAME=DIR to name a row.")
flags.DEFINE_string("out", "", "Write the markdown table here (default: print it).")
flags.DEFINE_string("json", "", "Also write one JSON line per run (the report's headline and layer spike rates).")
flags.mark_flags_as_required(["runs"])
FLAGS = flags.FLAGS


def main(argv):
    del argv
    named, records = [], []
    for item in FLAGS.runs:
        name, _, path = item.rpartition("=")
        name = name or os.path.basename(os.path.normpath(path))
        dirs = energy_tables.run_dirs(path)
        rows = [energy_tables.price_run(d) for d in dirs]
        named.append((name, energy_tables.mean_rows(rows), len(rows)))
        records += [{"run": name, "dir": d, **r} for d, r in zip(dirs, rows)]
    text = energy_tables.table(named)
    if FLAGS.out:
        with open(FLAGS.out, "w") as f:
            f.write(text)
    else:
        print(text)
    if FLAGS.json:
        with open(FLAGS.json, "w") as f:
            for r in records:
                f.write(json.dumps(r, sort_keys=True) + "\n")


if __name__ == "__main__":
    app.run(main)
