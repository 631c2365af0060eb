"""Tables, sample grids and sweep plots of GAN runs (the tables of ``results/gan.md``).

    python -m launch.gan_report --rows=NAME=DIR,NAME=DIR,... --headline=NAME --analog=NAME \
        [--t_runs=DIR,DIR,...] [--p_runs=LABEL=DIR,...] [--walk=PNG] [--notes=MD] \
        [--out=FILE.md] [--figures=DIR] [--tables=targets,results,...]
    python -m launch.gan_report --summary=results/gan_runs.jsonl --rows=NAME,NAME,... [...]

Each ``--rows`` entry is ``NAME=DIR``, a run folder or a seed-sweep folder
(``seed_<k>/`` runs, summarised as mean +- std), or, with ``--summary`` (a
page's summary file, ``launch.summarize_runs``), a bare ``NAME``: that row's
records; read by :mod:`launch.reporting`. The target check compares
``--headline`` (the default spiking GAN) with ``--analog`` (its analog twin at
the same number of steps). ``--t_runs`` (differing in ``model.num_steps``)
and ``--p_runs`` (``LABEL=DIR``, e.g. ``0.2=DIR``; ``LABEL=ROW`` with a
summary) give the plots of quality against T and against the noise firing
probability. ``--walk`` embeds a latent-walk picture made by
``launch.gan_walk``; ``--notes`` (markdown) is copied in after the tables.
``--tables`` writes only the named sections (``targets``, ``results``, ``spaces``,
``training``, ``t_sweep``, ``p_sweep``, ``walk``, ``samples``, ``notes``,
``commands``) without the page heading; with no ``--out`` the markdown goes
to stdout.
"""

from __future__ import annotations

import os

from absl import app, flags

from launch import reporting
from launch.reporting import cell, num_seeds, value

_ROWS = flags.DEFINE_string("rows", "", "Comma-separated NAME=DIR (run folder or seed-sweep folder) or, with "
                            "--summary, NAME (that row's records; none: every row of the summary).")
_SUMMARY = flags.DEFINE_string("summary", "", "A results page's summary file (launch.summarize_runs).")
_HEADLINE = flags.DEFINE_string("headline", None, "Row NAME of the default spiking GAN (target check).")
_ANALOG = flags.DEFINE_string("analog", None, "Row NAME of its analog twin at the same number of steps.")
_T_RUNS = flags.DEFINE_string("t_runs", "", "Comma-separated run folders (or summary rows) differing in model.num_steps (T).")
_P_RUNS = flags.DEFINE_string("p_runs", "", "Comma-separated LABEL=DIR runs differing in the noise firing probability.")
_WALK = flags.DEFINE_string("walk", "", "PNG of a latent walk (launch.gan_walk) to show.")
_NOTES = flags.DEFINE_string("notes", "", "Markdown file appended after the tables.")
_OUT = flags.DEFINE_string("out", "", "Markdown file to write (empty: stdout).")
_FIGURES = flags.DEFINE_string("figures", "", "Folder for the PNG figures (empty: a temporary folder, not kept).")
_TABLES = flags.DEFINE_string("tables", "", "Comma-separated sections to write (empty: the whole page).")

SECTIONS = ("targets", "results", "spaces", "training", "t_sweep", "p_sweep", "walk", "samples", "notes", "commands")

# The GAN targets on mnist5k.
TARGET_ENTROPY = 2.2
TARGET_RECALL = 0.5
ENERGY_FRACTION = 1.0 / 3.0

# (column title, metrics key, format)
COLUMNS = (
    ("feature FID", "eval/fid", "{:.1f}"),
    ("IS", "eval/inception_score", "{:.2f}"),
    ("precision", "eval/precision", "{:.2f}"),
    ("recall", "eval/recall", "{:.2f}"),
    ("class entropy", "eval/class_entropy", "{:.2f}"),
    ("spikes / sample", "energy/spikes_per_sample", "{:.0f}"),
    ("energy uJ / sample", "energy_uj", "{:.2f}"),
    ("train s", "train_s", "{:.0f}"),
)


def describe(config: dict) -> list[str]:
    """Generator, discriminator and T of a run, for the table."""
    m = config["model"]
    if m["name"] == "analog_gan":
        noise = {"gaussian": "Gaussian", "uniform": "U(0,1)", "binary": "binary"}.get(m.get("noise", "gaussian"), m.get("noise"))
        return [f"analog ({noise} noise)", "analog", "-"]
    noise = "U(0,1) rates" if m.get("noise_rates") == "uniform" else f"p = {m['noise_p']}"
    gen = f"spiking, {m['generator']['readout']} readout, {noise}"
    d = m["discriminator"]
    disc = f"spiking, {d['coding']} code" if m["disc"] == "spiking" else "analog"
    if m["disc"] == "spiking" and d.get("frontend"):
        disc = "spiking, STDP front end"
    g_steps = m["generator"].get("num_steps", 0)
    steps = f"G {g_steps}, D {m['num_steps']}" if g_steps and g_steps != m["num_steps"] else str(m["num_steps"])
    return [gen, disc, steps]


def _command(summary: dict, workdir: str) -> str:
    if "overrides" in summary:  # a summary record names its config
        return reporting.command(summary, workdir)
    m = summary["config"]["model"]
    variant = "analog" if m["name"] == "analog_gan" else ("hybrid" if m["disc"] == "analog" else None)
    return reporting.command(summary, workdir, "gan", variant)


def _target_lines(headline: list[dict], analog: list[dict]) -> list[str]:
    h = {k: value(headline, k) for k in ("eval/fid", "eval/class_entropy", "eval/recall", "energy_uj")}
    a = {k: value(analog, k) for k in ("eval/fid", "energy_uj")}
    steps = {int(r["step"]) for r in headline + analog}
    if len(steps) != 1:
        raise ValueError(f"the target check compares the headline and analog rows at the same step; their last "
                         f"evaluations are at steps {sorted(steps)}")
    verdict = lambda ok: "**met**" if ok else "**missed**"  # noqa: E731
    return [
        f"| feature FID <= analog twin's (both at {steps.pop()} steps) | {h['eval/fid']:.1f} vs {a['eval/fid']:.1f} | "
        f"{verdict(h['eval/fid'] <= a['eval/fid'])} |",
        f"| class entropy >= {TARGET_ENTROPY} nats | {h['eval/class_entropy']:.2f} | "
        f"{verdict(h['eval/class_entropy'] >= TARGET_ENTROPY)} |",
        f"| recall >= {TARGET_RECALL} | {h['eval/recall']:.2f} | {verdict(h['eval/recall'] >= TARGET_RECALL)} |",
        f"| energy per generated sample <= 1/3 of the analog twin's | {h['energy_uj']:.2f} vs {a['energy_uj']:.2f} uJ "
        f"({h['energy_uj'] / a['energy_uj']:.2f}x) | {verdict(h['energy_uj'] <= ENERGY_FRACTION * a['energy_uj'])} |",
    ]


def _plot(runs: list[dict], xs: list[str], xlabel: str, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(10, 3))
    for ax, key, label in zip(axes, ("eval/fid", "eval/class_entropy", "energy_uj"),
                              ("feature FID", "class entropy (nats)", "energy uJ / sample")):
        ax.plot(range(len(xs)), [r[key] for r in runs], "o-")
        ax.set_xticks(range(len(xs)), xs)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(label)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _head(tables, title: str, *intro: str) -> list[str]:
    """A section's heading and intro: none when only tables are written (the page has its own)."""
    return [] if tables is not None else [f"## {title}", "", *intro] + ([""] if intro else [])


def _sweep_section(title: str, xlabel: str, labelled: list[tuple[str, dict, str]], plot: str, rel,
                   tables=None) -> list[str]:
    _plot([r for _, r, _ in labelled], [x for x, _, _ in labelled], xlabel, plot)
    lines = _head(tables, title, f"![{title}]({rel(plot)})") + [
        f"| {xlabel} | steps | " + " | ".join(c[0] for c in COLUMNS) + " |", "|---:|---:|" + "---:|" * len(COLUMNS)]
    for x, r, _ in labelled:
        lines.append(f"| {x} | {r['step']} | " + " | ".join(cell([r], key, fmt) for _, key, fmt in COLUMNS) + " |")
    return lines + [""]


def _training_section(loaded, tables=None) -> list[str]:
    """FID / class entropy / recall of each row at every evaluation step (mean +- std over seeds)."""
    steps = sorted({e["step"] for _, _, runs in loaded for r in runs for e in r["evals"]})
    if len(steps) < 2:
        return []
    lines = _head(tables, "Quality over training", "Each row's evaluations during training (the same 1,000-sample "
                  "scoring), mean ± std over seeds.") + [
        "| run | step | feature FID | class entropy | recall |", "|---|---:|---:|---:|---:|"]
    for name, _, runs in loaded:
        for step in steps:
            at = [e for r in runs for e in r["evals"] if e["step"] == step]
            if at:
                lines.append(f"| {name} | {step} | " + " | ".join(
                    cell(at, key, fmt) for key, fmt in (("eval/fid", "{:.1f}"), ("eval/class_entropy", "{:.2f}"),
                                                        ("eval/recall", "{:.2f}"))) + " |")
    return lines + [""]


def build(entries, headline, analog, t_runs, p_runs, walk, notes, out, figures, summary="", tables=None) -> str:
    """Writes the figures into ``figures`` and returns the markdown (also written to ``out`` if given).

    ``entries``: ``(NAME, DIR)`` pairs, ``DIR`` None for a row of the ``summary`` file; ``t_runs``:
    run folders or summary rows; ``p_runs``: ``(LABEL, DIR or summary row)``; ``tables``: the
    sections to write (None: the whole page).
    """
    import tempfile

    if not entries:
        raise ValueError("--rows is empty")
    for t in tables or ():
        if t not in SECTIONS:
            raise ValueError(f"--tables entry {t!r} is not one of {', '.join(SECTIONS)}")
    want = lambda section: tables is None or section in tables  # noqa: E731
    figures = figures or tempfile.mkdtemp(prefix="gan_report_")
    os.makedirs(figures, exist_ok=True)
    loaded = reporting.load(entries, summary)
    by_name = {name: runs for name, _, runs in loaded}
    for flag, name in (("--headline", headline), ("--analog", analog)):
        if name and name not in by_name:
            raise ValueError(f"{flag}={name!r} is not a NAME of --rows ({', '.join(by_name)})")
    base = os.path.dirname(os.path.abspath(out)) if out else os.getcwd()
    rel = lambda p: os.path.relpath(p, base)  # noqa: E731
    lines = []
    if tables is None:
        lines += ["# Spiking GAN on mnist5k", "",
                  "Written by `python -m launch.gan_report` (see its docstring) from the runs below; values "
                  "are mean ± std over seeds where a row has several. Sample quality: 1,000 samples of the generator "
                  "EMA scored in the feature space of the project's mnist5k classifier "
                  "(`jaxspike.metrics.evaluate_samples`) against the 1,000 test digits; energy: one generator pass "
                  "per sample at 0.9 pJ/AC, 4.6 pJ/MAC (`jaxspike.energy`); train s: wall time of training.", ""]
    if headline and analog and want("targets"):
        lines += _head(tables, "Targets") + ["| target | measured | |", "|---|---|---|",
                  *_target_lines(by_name[headline], by_name[analog]), ""]
    if want("results"):
        lines += _head(tables, "Results") + ["| run | generator | discriminator | T | steps | seeds | "
                                             + " | ".join(c[0] for c in COLUMNS) + " |",
                                             "|" + "---|" * 6 + "---:|" * len(COLUMNS)]
        for name, _, runs in loaded:
            lines.append(f"| {name} | " + " | ".join(describe(runs[0]["config"])) + f" | {runs[0]['step']} | "
                         f"{num_seeds(runs)} | " + " | ".join(cell(runs, key, fmt) for _, key, fmt in COLUMNS) + " |")
        lines.append("")
    if want("spaces"):
        lines += _head(tables, "Both feature spaces", reporting.SPACES_INTRO) + reporting.spaces_table(loaded) + [""]
    if want("training"):
        lines += _training_section(loaded, tables)
    t_summaries = sorted((reporting.load_one(p, summary) for p in t_runs),
                         key=lambda rp: rp[0]["config"]["model"]["num_steps"])
    if t_summaries and want("t_sweep"):
        lines += _sweep_section("Sample quality against T", "T",
                                [(str(r["config"]["model"]["num_steps"]), r, p) for r, p in t_summaries],
                                os.path.join(figures, "quality_vs_T.png"), rel, tables)
    p_summaries = [(label, *reporting.load_one(p, summary)) for label, p in p_runs]
    if p_summaries and want("p_sweep"):
        lines += _sweep_section("Sample quality against the noise firing probability", "noise p", p_summaries,
                                os.path.join(figures, "quality_vs_p.png"), rel, tables)
    if walk and want("walk"):
        lines += _head(tables, "Latent walk", "Each row interpolates the noise units' firing probabilities between "
                       "two random vectors in [0, 1]^Z (`launch.gan_walk`).") + [f"![latent walk]({rel(walk)})", ""]
    if want("samples"):
        grids = []
        for name, _, runs in loaded:
            slug = "".join(ch if ch.isalnum() else "_" for ch in name).strip("_")
            grid = reporting.copy_grid(runs[0], "samples", os.path.join(figures, f"{slug}.png"))
            if grid:
                grids += [f"**{name}**: ![{name} samples]({rel(grid)})", ""]
        if grids:
            lines += _head(tables, "Samples", "Samples of each row's first seed at its last evaluation.") + grids
    if notes and want("notes"):
        with open(notes) as f:
            lines += [f.read().rstrip(), ""]
    if want("commands"):
        lines += _head(tables, "Commands", "Each run's training command, rebuilt from its config (flags that "
                       "differ from the config file):")
        for name, path, runs in loaded:
            lines += reporting.commands(name, path, runs, "gan", _command)
        for r, p in t_summaries:
            lines.append(f"- T sweep: `{_command(r, reporting.workdir(r.get('row', ''), p, r, 'gan'))}`")
        for label, r, p in p_summaries:
            lines.append(f"- p = {label}: `{_command(r, reporting.workdir(r.get('row', ''), p, r, 'gan'))}`")
        lines.append("")
    text = "\n".join(lines).rstrip("\n") + "\n"
    if out:
        with open(out, "w") as f:
            f.write(text)
    return text


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected positional arguments: {argv[1:]}")
    try:
        entries = reporting.parse_rows(_ROWS.value, "rows", _SUMMARY.value)
        tables = [t.strip() for t in _TABLES.value.split(",") if t.strip()] or None
        text = build(entries, _HEADLINE.value, _ANALOG.value, [p for p in _T_RUNS.value.split(",") if p.strip()],
                     reporting.parse_pairs(_P_RUNS.value, "p_runs"),
                     _WALK.value, _NOTES.value, _OUT.value, _FIGURES.value, _SUMMARY.value, tables)
    except (ValueError, FileNotFoundError) as err:
        raise app.UsageError(str(err)) from None
    if _OUT.value:
        print(f"wrote {_OUT.value}" + (f" and figures in {_FIGURES.value}" if _FIGURES.value else ""))
    else:
        print(text, end="")


if __name__ == "__main__":
    app.run(main)
