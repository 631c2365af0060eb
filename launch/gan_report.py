"""Tables and figures of GAN runs (the ``metrics.jsonl`` that ``launch.train`` writes).

    python -m launch.gan_report --runs=NAME=DIR,NAME=DIR --out=results/gan \
        [--t_runs=4=DIR,8=DIR,16=DIR] [--p_runs=0.2=DIR,0.5=DIR,uniform=DIR]

``DIR`` is a run folder, or a seed-sweep folder whose ``seed_<k>/`` runs are
averaged (mean +- standard deviation over seeds). Each run's last evaluation
row is read. Prints a markdown table and copies each run's last sample grid
(seed 0) to ``<out>/<NAME>.png``; ``--t_runs`` / ``--p_runs`` draw feature FID
and class entropy against the number of time steps T / the noise firing
probability p into ``<out>/quality_vs_T.png`` / ``quality_vs_p.png``.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import sys

import numpy as np
from absl import app, flags

_RUNS = flags.DEFINE_string("runs", None, "Comma-separated NAME=run_or_sweep_dir pairs: the table rows.")
_T_RUNS = flags.DEFINE_string("t_runs", "", "Comma-separated T=run_dir pairs for the quality-vs-T plot.")
_P_RUNS = flags.DEFINE_string("p_runs", "", "Comma-separated p=run_dir pairs for the quality-vs-p plot.")
_OUT = flags.DEFINE_string("out", "results/gan", "Folder for the PNG figures.")
flags.mark_flags_as_required(["runs"])

# (column title, metrics.jsonl key, format, scale)
COLUMNS = (
    ("feature FID", "eval/fid", "{:.1f}", 1.0),
    ("IS", "eval/inception_score", "{:.2f}", 1.0),
    ("precision", "eval/precision", "{:.2f}", 1.0),
    ("recall", "eval/recall", "{:.2f}", 1.0),
    ("class entropy", "eval/class_entropy", "{:.2f}", 1.0),
    ("spikes/sample", "energy/spikes_per_sample", "{:.0f}", 1.0),
    ("energy uJ/sample", "energy/energy_pj", "{:.2f}", 1e-6),
)


def _fail(message: str) -> None:
    print(f"launch.gan_report: error: {message}", file=sys.stderr)
    sys.exit(2)


def _pairs(text: str, flag: str) -> list[tuple[str, str]]:
    pairs = []
    for part in (p for p in text.split(",") if p):
        if "=" not in part:
            _fail(f"--{flag}: {part!r} is not NAME=DIR")
        name, path = part.split("=", 1)
        pairs.append((name, path))
    return pairs


def run_folders(path: str) -> list[str]:
    """The run folders of ``path``: its ``seed_<k>/`` folders, or ``path`` itself."""
    seeds = sorted(glob.glob(os.path.join(path, "seed_*")), key=lambda p: int(re.sub(r"\D", "", os.path.basename(p))))
    folders = seeds or [path]
    for f in folders:
        if not os.path.exists(os.path.join(f, "metrics.jsonl")):
            _fail(f"{f!r} has no metrics.jsonl; is it a launch.train run folder?")
    return folders


def last_eval(folder: str) -> dict:
    """The last metrics row holding ``eval/fid``, with the step and the training rate added."""
    with open(os.path.join(folder, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    evals = [r for r in rows if "eval/fid" in r]
    if not evals:
        _fail(f"{folder!r}: no evaluation row (eval/fid) in metrics.jsonl")
    return evals[-1]


def summarize(path: str) -> tuple[dict[str, tuple[float, float]], int, int]:
    """Mean and standard deviation over seeds of every column; also the step and the seed count."""
    rows = [last_eval(f) for f in run_folders(path)]
    stats = {}
    for _, key, _, scale in COLUMNS:
        values = [r[key] * scale for r in rows if key in r]
        if values:
            stats[key] = (float(np.mean(values)), float(np.std(values)))
    return stats, int(rows[0]["step"]), len(rows)


def _cell(stats, key, fmt) -> str:
    if key not in stats:
        return "-"
    mean, std = stats[key]
    return fmt.format(mean) + (f" ± {fmt.format(std)}" if std > 0 else "")


def table(runs: list[tuple[str, str]]) -> str:
    lines = ["| run | steps | seeds | " + " | ".join(c[0] for c in COLUMNS) + " |",
             "|---|---:|---:|" + "---:|" * len(COLUMNS)]
    for name, path in runs:
        stats, step, num = summarize(path)
        lines.append(f"| {name} | {step} | {num} | " + " | ".join(_cell(stats, k, f) for _, k, f, _ in COLUMNS) + " |")
    return "\n".join(lines)


def _curve(pairs, xlabel, out_png):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [name for name, _ in pairs]
    rows = [summarize(path)[0] for _, path in pairs]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    x = np.arange(len(pairs))
    ax.plot(x, [r["eval/fid"][0] for r in rows], "o-", color="C0")
    ax.set_ylabel("feature FID", color="C0")
    ax.set_xticks(x, labels)
    ax.set_xlabel(xlabel)
    ax2 = ax.twinx()
    ax2.plot(x, [r["eval/class_entropy"][0] for r in rows], "s--", color="C1")
    ax2.set_ylabel("class entropy (nats)", color="C1")
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected positional arguments: {argv[1:]}")
    runs = _pairs(_RUNS.value, "runs")
    os.makedirs(_OUT.value, exist_ok=True)
    print(table(runs))
    for name, path in runs:
        grids = sorted(glob.glob(os.path.join(run_folders(path)[0], "samples_*.png")),
                       key=lambda p: int(re.sub(r"\D", "", os.path.basename(p))))
        if grids:
            shutil.copyfile(grids[-1], os.path.join(_OUT.value, f"{name}.png"))
    if _T_RUNS.value:
        _curve(_pairs(_T_RUNS.value, "t_runs"), "time steps T", os.path.join(_OUT.value, "quality_vs_T.png"))
    if _P_RUNS.value:
        _curve(_pairs(_P_RUNS.value, "p_runs"), "noise firing probability p", os.path.join(_OUT.value, "quality_vs_p.png"))


if __name__ == "__main__":
    app.run(main)
