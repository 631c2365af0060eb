"""Tables, sample grids and the T-sweep plot of spiking-VAE runs (the tables of ``results/vae.md``).

    python -m launch.vae_report \
        --rows="default=runs/svae,analog=runs/avae,rate/ST=runs/sweep_rate_st,..." \
        --headline=default --analog=analog \
        --tsweep=runs/t4,runs/t8,runs/t16,runs/t32 [--notes=MD] [--out=FILE.md] [--figures=DIR]
    python -m launch.vae_report --summary=results/vae_runs.jsonl --tsweep=t4,t8,... [--rows=NAME,...] \
        --headline=default --analog=analog --tables=targets,results,tsweep

Each ``--rows`` entry is ``NAME=DIR``: a run folder written by ``launch.train``
(``metrics.jsonl``, ``config.json``), or a seed sweep's folder holding
``seed_<k>/`` runs, whose seeds are summarised as mean +- standard deviation;
or, with ``--summary`` (a page's summary file, ``launch.summarize_runs``), a
bare ``NAME``: that row's records. With a summary and no ``--rows``, every row
of the summary not named in ``--tsweep`` is a row, in file order.
Every number comes from the last evaluation row of ``metrics.jsonl``
(``eval/*`` sample quality of 1,000 prior samples, ``test/*`` scores of the
test split, ``energy/*`` of one generation pass). The command of each row is
rebuilt from its ``config.json`` as the flags that differ from
``launch/configs/vae.py`` (or its ``:analog`` variant). The target check
compares ``--headline`` with ``--analog``; ``--analog_like`` adds one more line comparing it
with another twin (the analog twin given the counterpart of the spiking prior). ``--notes`` (markdown) is copied in
after the tables. ``--tables`` writes only the named sections (``targets``, ``results``, ``tsweep``,
``samples``, ``notes``, ``commands``) without the page heading; with no ``--out`` the markdown
goes to stdout.
"""

from __future__ import annotations

import os
import re

from absl import app, flags

from launch import reporting
from launch.reporting import cell, load_entry, num_seeds, value  # noqa: F401 (load_entry: for callers)

_ROWS = flags.DEFINE_string("rows", "", "Comma-separated NAME=DIR (run folder or seed-sweep folder) or, with "
                            "--summary, NAME (that row's records).")
_SUMMARY = flags.DEFINE_string("summary", "", "A results page's summary file (launch.summarize_runs).")
_HEADLINE = flags.DEFINE_string("headline", None, "Row NAME of the default spiking VAE (target check).")
_ANALOG = flags.DEFINE_string("analog", None, "Row NAME of its analog twin at the same number of steps.")
_ANALOG_LIKE = flags.DEFINE_string(
    "analog_like", None, "Row NAME of a twin with the counterpart of the headline's prior (an extra, non-target line).")
_TSWEEP = flags.DEFINE_string("tsweep", "", "Comma-separated run folders (or summary rows) differing in model.num_steps (T).")
_NOTES = flags.DEFINE_string("notes", "", "Markdown file appended after the tables.")
_OUT = flags.DEFINE_string("out", "", "Markdown file to write (empty: stdout).")
_FIGURES = flags.DEFINE_string("figures", "", "Folder for the PNG figures (empty: a temporary folder, not kept).")
_TABLES = flags.DEFINE_string("tables", "", "Comma-separated sections to write (empty: the whole page).")

SECTIONS = ("targets", "results", "spaces", "tsweep", "samples", "notes", "commands")

# The VAE targets on mnist5k.
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


def fit_command(fit: dict, workdir: str) -> str:
    """``launch.fit_prior`` command of a refitted run (its ``config.json``'s ``prior_fit`` record)."""
    source = fit["source"]
    if os.path.isabs(source) and not os.path.relpath(source).startswith(".."):
        source = os.path.relpath(source)
    if os.path.basename(workdir) == "seed_K":  # one line for a row's seeds: the source's seed is K too
        source = re.sub(r"seed_\d+$", "seed_K", source)
    extra = "".join(f" --{name}={fit[name]}" for name, default in (("iters", 50), ("seed", 0))
                    if fit.get(name, default) != default)
    return (f"python -m launch.fit_prior --workdir={source} --out={workdir} "
            f"--num_components={fit['num_components']}{extra}")


def command(summary: dict, workdir: str) -> str:
    """``launch.train`` command of a VAE run (flags that differ from ``launch/configs/vae.py``);
    ``launch.fit_prior``'s for a run it refitted."""
    if "prior_fit" in summary["config"]:
        return fit_command(summary["config"]["prior_fit"], workdir)
    if "overrides" in summary:  # a summary record names its config
        return reporting.command(summary, workdir)
    analog = summary["config"]["model"]["name"] == "analog_vae"
    return reporting.command(summary, workdir, "vae", "analog" if analog else None)


def _target_lines(headline: list[dict], analog: list[dict]) -> list[str]:
    h = {k: value(headline, k) for k in ("eval/fid", "eval/class_entropy", "test/mse", "energy_uj")}
    a = {k: value(analog, k) for k in ("eval/fid", "energy_uj")}
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


def _head(tables, title: str, *intro: str) -> list[str]:
    """A section's heading and intro: none when only tables are written (the page has its own)."""
    return [] if tables is not None else [f"## {title}", "", *intro] + ([""] if intro else [])


def build(entries: list[tuple[str, str | None]], headline: str | None, analog: str | None, tsweep: list[str],
          notes: str, out: str, figures: str, analog_like: str | None = None, summary: str = "",
          tables: list[str] | None = None) -> str:
    """Writes the figures into ``figures`` and returns the markdown (also written to ``out`` if given).

    ``entries``: ``(NAME, DIR)`` pairs, ``DIR`` None for a row of the ``summary`` file; ``tsweep``:
    run folders or summary rows; ``tables``: the sections to write (None: the whole page).
    """
    import tempfile

    for t in tables or ():
        if t not in SECTIONS:
            raise ValueError(f"--tables entry {t!r} is not one of {', '.join(SECTIONS)}")
    want = lambda section: tables is None or section in tables  # noqa: E731
    figures = figures or tempfile.mkdtemp(prefix="vae_report_")
    os.makedirs(figures, exist_ok=True)
    loaded = reporting.load(entries, summary)
    by_name = {name: runs for name, _, runs in loaded}
    for flag, name in (("--headline", headline), ("--analog", analog), ("--analog_like", analog_like)):
        if name and name not in by_name:
            raise ValueError(f"{flag}={name!r} is not a NAME of --rows ({', '.join(by_name)})")
    base = os.path.dirname(os.path.abspath(out)) if out else os.getcwd()
    rel = lambda p: os.path.relpath(p, base)  # noqa: E731
    lines = []
    if tables is None:
        lines += ["# Spiking VAE on mnist5k", "",
                  "Written by `python -m launch.vae_report` (see its docstring) from the runs below; "
                  "values are mean ± std over seeds where a row has several. Sample quality: 1,000 prior "
                  "samples scored in the feature space of the project's mnist5k classifier "
                  "(`jaxspike.metrics.evaluate_samples`); ELBO and MSE: the 1,000 test digits; energy: one "
                  "generation pass (prior -> decoder) per sample at 0.9 pJ/AC, 4.6 pJ/MAC "
                  "(`jaxspike.energy`).", ""]
    if headline and analog and want("targets"):
        lines += _head(tables, "Targets") + ["| target | measured | |", "|---|---|---|",
                  *_target_lines(by_name[headline], by_name[analog])]
        if analog_like:
            h = value(by_name[headline], "eval/fid")
            a = value(by_name[analog_like], "eval/fid")
            lines.append(f"| (not a target) feature FID <= the twin with the counterpart prior, {analog_like} | "
                         f"{h:.1f} vs {a:.1f} | {'**met**' if h <= a else '**missed**'} |")
        lines.append("")
    if want("results"):
        head = ("| run | coding | estimator | prior | T | steps | seeds | " + " | ".join(c[0] for c in COLUMNS)
                + " | train s |")
        lines += _head(tables, "Results") + [head, "|" + "---|" * 7 + "---:|" * (len(COLUMNS) + 1)]
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
            lines.append(f"| {name} | " + " | ".join(desc) + f" | {runs[0]['step']} | {num_seeds(runs)} | "
                         + " | ".join(cells) + f" | {cell(runs, 'train_s', '{:.0f}')} |")
        lines.append("")
    if want("spaces"):
        lines += _head(tables, "Both feature spaces", reporting.SPACES_INTRO) + reporting.spaces_table(loaded) + [""]
    truns = [reporting.load_one(p, summary) for p in tsweep]
    if truns and want("tsweep"):
        plot = os.path.join(figures, "quality_vs_T.png")
        _plot_tsweep([r for r, _ in truns], plot)
        lines += _head(tables, "Sample quality against T", f"![quality vs T]({rel(plot)})") + [
            "| T | steps | " + " | ".join(c[0] for c in COLUMNS) + " |", "|---:|---:|" + "---:|" * len(COLUMNS)]
        for r, _ in sorted(truns, key=lambda rp: rp[0]["config"]["model"]["num_steps"]):
            lines.append(f"| {r['config']['model']['num_steps']} | {r['step']} | "
                         + " | ".join(cell([r], key, fmt) for _, key, fmt in COLUMNS) + " |")
        lines.append("")
    if want("samples"):
        grids = []
        for name, _, runs in loaded:
            slug = "".join(ch if ch.isalnum() else "_" for ch in name).strip("_")
            grid = reporting.copy_grid(runs[0], "samples", os.path.join(figures, f"{slug}_samples.png"))
            if grid:
                grids += [f"**{name}**: ![{name} samples]({rel(grid)})", ""]
            if name == headline:
                rec = reporting.copy_grid(runs[0], "recons", os.path.join(figures, f"{slug}_recons.png"))
                if rec:
                    grids += [f"**{name}, reconstructions**: ![{name} reconstructions]({rel(rec)})", ""]
        if grids:
            lines += _head(tables, "Samples", "Prior samples of each row's first seed at its last step (and, for "
                           "the headline row, test digits next to their reconstructions).") + grids
    if notes and want("notes"):
        with open(notes) as f:
            lines += [f.read().rstrip(), ""]
    if want("commands"):
        lines += _head(tables, "Commands", "Each row's training command, rebuilt from its config (flags that "
                       "differ from the config file):")
        for name, path, runs in loaded:
            if path is None:
                lines += reporting.commands(name, path, runs, "vae", command)
            else:
                lines += [f"- {name}: `{command(reporting.command_summary(path, runs), path)}`"]
        for r, p in truns:
            lines += [f"- T sweep: `{command(r, reporting.workdir(r.get('row', ''), p, r, 'vae'))}`"]
        lines.append("")
    text = "\n".join(lines).rstrip("\n") + "\n"
    if out:
        with open(out, "w") as f:
            f.write(text)
    return text


def parse_rows(spec: str, summary: str = "", exclude: list[str] = ()) -> list[tuple[str, str | None]]:
    entries = [e for e in reporting.parse_rows(spec, "rows", summary) if spec or e[0] not in exclude]
    if not entries:
        raise ValueError("--rows is empty")
    return entries


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected positional arguments: {argv[1:]}")
    try:
        tsweep = [p for p in _TSWEEP.value.split(",") if p.strip()]
        entries = parse_rows(_ROWS.value, _SUMMARY.value, tsweep)
        tables = [t.strip() for t in _TABLES.value.split(",") if t.strip()] or None
        text = build(entries, _HEADLINE.value, _ANALOG.value, tsweep, _NOTES.value, _OUT.value, _FIGURES.value,
                     analog_like=_ANALOG_LIKE.value, summary=_SUMMARY.value, tables=tables)
    except (ValueError, FileNotFoundError) as err:
        raise app.UsageError(str(err)) from None
    if _OUT.value:
        print(f"wrote {_OUT.value}" + (f" and figures in {_FIGURES.value}" if _FIGURES.value else ""))
    else:
        print(text, end="")


if __name__ == "__main__":
    app.run(main)
