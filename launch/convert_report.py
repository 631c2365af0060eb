"""Tables and plots of conversion sweeps (the ``metrics.jsonl`` that ``launch.convert`` writes).

    python -m launch.convert_report --runs=NAME=DIR,NAME=DIR,... --out=results/convert

Prints a markdown table (one row per run and T, plus each analog original) and
writes ``<out>/fid_vs_T.png`` and ``<out>/fid_vs_energy.png``.
"""

from __future__ import annotations

import json
import os

from absl import app, flags

_RUNS = flags.DEFINE_string("runs", None, "Comma-separated NAME=converted_run_dir pairs.")
_OUT = flags.DEFINE_string("out", "results/convert", "Folder for the PNG plots.")
flags.mark_flags_as_required(["runs"])


def main(argv):
    del argv
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = []
    for part in _RUNS.value.split(","):
        name, path = part.split("=", 1)
        with open(os.path.join(path, "metrics.jsonl")) as f:
            rows = [json.loads(line) for line in f if line.strip()]
        runs.append((name, rows))
    print("| run | T | feature FID | FID / analog | IS | class entropy | pixel MAE vs analog | spikes/sample | energy nJ/sample |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, rows in runs:
        analog = rows[0]
        for r in rows:
            t = "analog" if r["kind"] == "analog" else str(r["T"])
            energy = "-" if r.get("energy_nj") is None else f"{r['energy_nj']:.0f}"
            spikes = f"{r['spikes_per_sample']:.0f}" if "spikes_per_sample" in r else "-"
            mae = f"{r['pixel_mae_vs_analog']:.4f}" if "pixel_mae_vs_analog" in r else "-"
            print(f"| {name} | {t} | {r['fid']:.1f} | {r['fid'] / analog['fid']:.3f} | {r['inception_score']:.2f} | "
                  f"{r['class_entropy']:.2f} | {mae} | {spikes} | {energy} |")
    os.makedirs(_OUT.value, exist_ok=True)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, rows in runs:
        conv = [r for r in rows if r["kind"] == "converted"]
        line = ax.plot([r["T"] for r in conv], [r["fid"] for r in conv], "o-", label=name)[0]
        ax.axhline(rows[0]["fid"], color=line.get_color(), ls="--", lw=0.8)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("time steps T")
    ax.set_ylabel("feature FID (dashed: analog original)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(_OUT.value, "fid_vs_T.png"), dpi=110)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, rows in runs:
        conv = [r for r in rows if r["kind"] == "converted"]
        line = ax.plot([r["energy_nj"] for r in conv], [r["fid"] for r in conv], "o-", label=name)[0]
        if rows[0].get("energy_nj"):
            ax.plot([rows[0]["energy_nj"]], [rows[0]["fid"]], "*", ms=12, color=line.get_color())
    ax.set_xscale("log")
    ax.set_xlabel("energy per sample, nJ (star: analog original)")
    ax.set_ylabel("feature FID")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(_OUT.value, "fid_vs_energy.png"), dpi=110)


if __name__ == "__main__":
    app.run(main)
