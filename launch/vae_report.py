"""Tables, sample grids and the T-sweep plot of spiking-VAE runs (``results/vae.md``).

    python -m launch.vae_report \
        --rows="default=runs/svae,analog=runs/avae,rate/ST=runs/sweep_rate_st,..." \
        --headline=default --analog=analog \
        --tsweep=runs/t4,runs/t8,runs/t16,runs/t32 \
        --notes=results/vae/notes.md --out=results/vae.md --figures=results/vae

Each ``--rows`` entry is ``NAME=DIR``: a run folder written by ``launch.train``
(``metrics.jsonl``, ``config.json``), or a seed sweep's folder holding
``seed_<k>/`` runs, whose seeds are summarised as mean +- standard deviation.
Every number comes from the last evaluation row of ``metrics.jsonl``
(``eval/*`` sample quality of 1,000 prior samples, ``test/*`` scores of the
test split, ``energy/*`` of one generation pass). The command of each row is
rebuilt from its ``config.json`` as the flags that differ from
``launch/configs/vae.py`` (or its ``:analog`` variant). The target check
compares ``--headline`` with ``--analog``; ``--analog_like`` adds one more line comparing it
with another twin (the analog twin given the counterpart of the spiking prior). ``--notes`` (markdown) is copied in
after the tables.
"""

from __future__ import annotations

import os

from absl import app, flags

from launch import reporting
from launch.reporting import cell, load_entry, mean_std, run_summary

_ROWS = flags.DEFINE_string("rows", None, "Comma-separated NAME=DIR (run folder or seed-sweep folder).")
_HEADLINE = flags.DEFINE_string("headline", None, "Row NAME of the default spiking VAE (target check).")
_ANALOG = flags.DEFINE_string("analog", None, "Row NAME of its analog twin at the same number of steps.")
_ANALOG_LIKE = flags.DEFINE_string(
    "analog_like", None, "Row NAME of a twin with the counterpart of the headline's prior (an extra, non-target line).")
_TSWEEP = flags.DEFINE_string("tsweep", "", "Comma-separated run folders differing in model.num_steps (T).")
_NOTES = flags.DEFINE_string("notes", "", "Markdown file appended after the tables.")
_OUT = flags.DEFINE_string("out", "results/vae.md", "Markdown file to write.")
_FIGURES = flags.DEFINE_string("figures", "results/vae", "Folder for the PNG figures.")
flags.mark_flags_as_required(["rows"])

# Targets of issue 5 on mnist5k: column key, how it is checked, and its text.
TARGET_ENTROPY = 2.2
TARGET_MSE = 0.03
ENERGY_FRACTION = 1.0 / 3.0

# (column title, metrics key, format)
COLUMNS = (
    ("test ELBO (nats)", "test/elbo", "{:.1f}"),
    ("recon MSE", "test/mse", "{:.4f}"),
    ("feature FID", "eval/fid", "{:.1f}"),
    ("IS", "eval/inception_score", "{:.2f}"),
    ("precision", "eval/precision", "{:.2f}"),
    ("recall", "eval/recall", "{:.2f}"),
    ("class entropy", "eval/class_entropy", "{:.2f}"),
    ("spikes / sample", "energy/spikes_per_sample", "{:.0f}"),
    ("energy uJ / sample", "energy_uj", "{:.2f}"),
)


def command(summary: dict, workdir: str) -> str:
    """``launch.train`` command of a VAE run (flags that differ from ``launch/configs/vae.py``)."""
    analog = summary["config"]["model"]["name"] == "analog_vae"
    return reporting.command(summary, workdir, "vae", "analog" if analog else None)


def _target_lines(headline: list[dict], analog: list[dict]) -> list[str]:
    h = {k: mean_std([r[k] for r in headline])[0] for k in ("eval/fid", "eval/class_entropy", "test/mse", "energy_uj")}
    a = {k: mean_std([r[k] for r in analog])[0] for k in ("eval/fid", "energy_uj")}
    verdict = lambda ok: "**met**" if ok else "**missed**"  # noqa: E731
    return [
        f"| feature FID <= analog twin's | {h['eval/fid']:.1f} vs {a['eval/fid']:.1f} | {verdict(h['eval/fid'] <= a['eval/fid'])} |",
        f"| class entropy >= {TARGET_ENTROPY} nats | {h['eval/class_entropy']:.2f} | "
        f"{verdict(h['eval/class_entropy'] >= TARGET_ENTROPY)} |",
        f"| reconstruction MSE <= {TARGET_MSE} | {h['test/mse']:.4f} | {verdict(h['test/mse'] <= TARGET_MSE)} |",
        f"| energy per generated sample <= 1/3 of the analog twin's | {h['energy_uj']:.2f} vs "
        f"{a['energy_uj']:.2f} uJ ({h['energy_uj'] / a['energy_uj']:.2f}x) | "
        f"{verdict(h['energy_uj'] <= ENERGY_FRACTION * a['energy_uj'])} |",
    ]


def _plot_tsweep(runs: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = sorted(runs, key=lambda r: r["config"]["model"]["num_steps"])
    ts = [r["config"]["model"]["num_steps"] for r in runs]
    fig, axes = plt.subplots(1, 3, figsize=(10, 3))
    for ax, key, label in zip(axes, ("eval/fid", "eval/class_entropy", "energy_uj"),
                              ("feature FID", "class entropy (nats)", "energy uJ / sample")):
        ax.plot(ts, [r[key] for r in runs], "o-")
        ax.set_xscale("log", base=2)
        ax.set_xticks(ts, [str(t) for t in ts])
        ax.set_xlabel("time steps T")
        ax.set_ylabel(label)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def build(entries: list[tuple[str, str]], headline: str | None, analog: str | None, tsweep: list[str],
          notes: str, out: str, figures: str, analog_like: str | None = None) -> str:
    """Writes the figures into ``figures`` and returns the markdown (also written to ``out``)."""
    os.makedirs(figures, exist_ok=True)
    loaded = [(name, path, load_entry(path)) for name, path in entries]
    by_name = {name: runs for name, _, runs in loaded}
    for flag, name in (("--headline", headline), ("--analog", analog), ("--analog_like", analog_like)):
        if name and name not in by_name:
            raise ValueError(f"{flag}={name!r} is not a NAME of --rows ({', '.join(by_name)})")
    rel = lambda p: os.path.relpath(p, os.path.dirname(os.path.abspath(out)) or ".")  # noqa: E731
    lines = ["# Spiking VAE on mnist5k", "",
             "Written by `python -m launch.vae_report` (see its docstring) from the run folders below; "
             "values are mean ± std over seeds where a row has several. Sample quality: 1,000 prior "
             "samples scored in the feature space of the project's mnist5k classifier "
             "(`jaxspike.metrics.evaluate_samples`); ELBO and MSE: the 1,000 test digits; energy: one "
             "generation pass (prior -> decoder) per sample at 0.9 pJ/AC, 4.6 pJ/MAC "
             "(`jaxspike.energy`).", ""]
    if headline and analog:
        lines += ["## Targets (issue 5)", "", "| target | measured | |", "|---|---|---|",
                  *_target_lines(by_name[headline], by_name[analog])]
        if analog_like:
            h = mean_std([r["eval/fid"] for r in by_name[headline]])[0]
            a = mean_std([r["eval/fid"] for r in by_name[analog_like]])[0]
            lines.append(f"| (not an issue target) feature FID <= the twin with the counterpart prior, {analog_like} | "
                         f"{h:.1f} vs {a:.1f} | {'**met**' if h <= a else '**missed**'} |")
        lines.append("")
    head = "| run | coding | estimator | prior | T | steps | seeds | " + " | ".join(c[0] for c in COLUMNS) + " | train s |"
    lines += ["## Results", "", head, "|" + "---|" * 7 + "---:|" * (len(COLUMNS) + 1)]
    for name, _, runs in loaded:
        m = runs[0]["config"]["model"]
        spiking = m["name"] != "analog_vae"
        mixture = m.get("prior") == "mixture"
        k = f" (K = {m.get('num_components', 64)})" if mixture else ""
        desc = [m.get("coding", "-") if spiking else "analog",
                m.get("estimator", "-") if spiking else "gaussian",
                (m.get("prior", "-") + k) if spiking else ("Gaussian mixture" + k if mixture else "N(0, 1)"),
                str(m.get("num_steps", "-")) if spiking else "-"]
        cells = [cell(runs, key, fmt) for _, key, fmt in COLUMNS]
        lines.append(f"| {name} | " + " | ".join(desc) + f" | {runs[0]['step']} | {len(runs)} | " + " | ".join(cells)
                     + f" | {cell(runs, 'train_s', '{:.0f}')} |")
    lines.append("")
    if tsweep:
        truns = [run_summary(p) for p in tsweep]
        plot = os.path.join(figures, "quality_vs_T.png")
        _plot_tsweep(truns, plot)
        lines += ["## Sample quality against T", "", f"![quality vs T]({rel(plot)})", "",
                  "| T | steps | " + " | ".join(c[0] for c in COLUMNS) + " |", "|---:|---:|" + "---:|" * len(COLUMNS)]
        for r in sorted(truns, key=lambda r: r["config"]["model"]["num_steps"]):
            lines.append(f"| {r['config']['model']['num_steps']} | {r['step']} | "
                         + " | ".join(cell([r], key, fmt) for _, key, fmt in COLUMNS) + " |")
        lines.append("")
    lines += ["## Samples", "", "Prior samples of each row's first seed at its last step (and, for the "
              "headline row, test digits next to their reconstructions).", ""]
    for name, _, runs in loaded:
        slug = "".join(ch if ch.isalnum() else "_" for ch in name).strip("_")
        grid = reporting.copy_grid(runs[0], "samples", os.path.join(figures, f"{slug}_samples.png"))
        if grid:
            lines.append(f"**{name}**: ![{name} samples]({rel(grid)})")
            lines.append("")
        if name == headline:
            rec = reporting.copy_grid(runs[0], "recons", os.path.join(figures, f"{slug}_recons.png"))
            if rec:
                lines += [f"**{name}, reconstructions**: ![{name} reconstructions]({rel(rec)})", ""]
    if notes:
        with open(notes) as f:
            lines += [f.read().rstrip(), ""]
    lines += ["## Commands", "", "Each row's training command, rebuilt from its `config.json` (flags that differ "
              "from the config file):", ""]
    for name, path, runs in loaded:
        lines += [f"- {name}: `{command(reporting.command_summary(path, runs), path)}`"]
    for p in tsweep:
        lines += [f"- T sweep: `{command(run_summary(p), p)}`"]
    text = "\n".join(lines) + "\n"
    with open(out, "w") as f:
        f.write(text)
    return text


def parse_rows(spec: str) -> list[tuple[str, str]]:
    entries = reporting.parse_pairs(spec, "rows")
    if not entries:
        raise ValueError("--rows is empty")
    return entries


def main(argv):
    del argv
    try:
        entries = parse_rows(_ROWS.value)
        tsweep = [p for p in _TSWEEP.value.split(",") if p.strip()]
        build(entries, _HEADLINE.value, _ANALOG.value, tsweep, _NOTES.value, _OUT.value, _FIGURES.value,
              analog_like=_ANALOG_LIKE.value)
    except (ValueError, FileNotFoundError) as err:
        raise app.UsageError(str(err)) from None
    print(f"wrote {_OUT.value} and figures in {_FIGURES.value}")


if __name__ == "__main__":
    app.run(main)
