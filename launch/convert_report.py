"""Tables and plots of conversion sweeps (the ``metrics.jsonl`` that ``launch.convert`` writes).

    python -m launch.convert_report --runs=NAME=DIR,NAME=DIR,... [--out=results/convert]
    python -m launch.convert_report --summary=results/convert_runs.jsonl [--runs=NAME,...] [--out=...]

Prints a markdown table (one row per run and T, plus each analog original) and,
with ``--out``, writes ``<out>/fid_vs_T.png`` and ``<out>/fid_vs_energy.png``.
Each ``--runs`` entry is ``NAME=DIR``, a converted run folder, or, with
``--summary`` (a page's summary file, ``launch.summarize_runs``), a bare
``NAME``: that row's records (no ``--runs``: every row of the summary). Rows
kept from a published table carry their ``FID / analog`` as published
(``fid_over_analog``), since their unrounded FIDs are not kept.
"""

from __future__ import annotations

import json
import os

from absl import app, flags

from launch import reporting

_RUNS = flags.DEFINE_string("runs", "", "Comma-separated NAME=converted_run_dir pairs or, with --summary, NAMEs.")
_SUMMARY = flags.DEFINE_string("summary", "", "A results page's summary file (launch.summarize_runs).")
_OUT = flags.DEFINE_string("out", "", "Folder for the PNG plots (empty: no plots).")


def load_runs(spec: str, summary: str = "") -> list[tuple[str, list[dict]]]:
    """``(NAME, rows)`` per entry: a converted folder's ``metrics.jsonl`` rows or a summary row's records."""
    records = reporting.read_summary(summary) if summary else []
    runs = []
    for name, path in reporting.parse_rows(spec, "runs", summary):
        if path is None:
            rows = [r for r in records if r["row"] == name]
            if not rows:
                raise ValueError(f"{summary} has no row {name!r}")
        else:
            with open(os.path.join(path, "metrics.jsonl")) as f:
                rows = [json.loads(line) for line in f if line.strip()]
        runs.append((name, rows))
    if not runs:
        raise ValueError("--runs is empty")
    return runs


def _fmt(row: dict, key: str, fmt: str) -> str:
    return fmt.format(row[key]) if row.get(key) is not None else "-"


def table(runs: list[tuple[str, list[dict]]]) -> str:
    """One row per T, scored in both feature spaces (rows kept from a page that scored only the
    first show "-" in the second)."""
    lines = ["| run | T | feature FID | FID / analog | FID (space 2) | space 2 / analog | recall | recall (space 2) | "
             "IS | class entropy | mid-grey share | pixel MAE vs analog | spikes/sample | energy nJ/sample |",
             "|---|---:|" + "---:|" * 12]
    for name, rows in runs:
        analog = rows[0]
        for r in rows:
            t = "analog" if r["kind"] == "analog" else str(r["T"])
            ratio = r.get("fid_over_analog", r["fid"] / analog["fid"])
            ratio2 = r["space2/fid"] / analog["space2/fid"] if "space2/fid" in r and "space2/fid" in analog else None
            cells = [f"{r['fid']:.1f}", f"{ratio:.3f}", _fmt(r, "space2/fid", "{:.1f}"),
                     "-" if ratio2 is None else f"{ratio2:.3f}", _fmt(r, "recall", "{:.2f}"),
                     _fmt(r, "space2/recall", "{:.2f}"), f"{r['inception_score']:.2f}", f"{r['class_entropy']:.2f}",
                     _fmt(r, "mid_grey_frac", "{:.3f}"), _fmt(r, "pixel_mae_vs_analog", "{:.4f}"),
                     _fmt(r, "spikes_per_sample", "{:.0f}"), _fmt(r, "energy_nj", "{:.0f}")]
            lines.append(f"| {name} | {t} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(runs: list[tuple[str, list[dict]]], out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(out, exist_ok=True)
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
    fig.savefig(os.path.join(out, "fid_vs_T.png"), dpi=110)
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
    fig.savefig(os.path.join(out, "fid_vs_energy.png"), dpi=110)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected positional arguments: {argv[1:]}")
    try:
        runs = load_runs(_RUNS.value, _SUMMARY.value)
    except (ValueError, FileNotFoundError) as err:
        raise app.UsageError(str(err)) from None
    print(table(runs), end="")
    if _OUT.value:
        plot(runs, _OUT.value)


if __name__ == "__main__":
    app.run(main)
