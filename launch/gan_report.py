"""Tables, sample grids and sweep plots of GAN runs (``results/gan.md``).

    python -m launch.gan_report --rows=NAME=DIR,NAME=DIR,... --headline=NAME --analog=NAME \
        [--t_runs=DIR,DIR,...] [--p_runs=LABEL=DIR,...] [--walk=results/gan/walk.png] \
        [--notes=results/gan/notes.md] --out=results/gan.md --figures=results/gan

Each ``--rows`` entry is a run folder or a seed-sweep folder (``seed_<k>/``
runs, summarised as mean +- std), read by :mod:`launch.reporting`. The target
check compares ``--headline`` (the default spiking GAN) with ``--analog``
(its analog twin at the same number of steps). ``--t_runs`` (differing in
``model.num_steps``) and ``--p_runs`` (``LABEL=DIR``, e.g. ``0.2=DIR``)
give the plots of quality against T and against the noise firing
probability. ``--walk`` embeds a latent-walk picture made by
``launch.gan_walk``; ``--notes`` (markdown) is copied in after the tables.
"""

from __future__ import annotations

import os

from absl import app, flags

from launch import reporting
from launch.reporting import cell, load_entry, mean_std, run_summary

_ROWS = flags.DEFINE_string("rows", None, "Comma-separated NAME=DIR (run folder or seed-sweep folder).")
_HEADLINE = flags.DEFINE_string("headline", None, "Row NAME of the default spiking GAN (target check).")
_ANALOG = flags.DEFINE_string("analog", None, "Row NAME of its analog twin at the same number of steps.")
_T_RUNS = flags.DEFINE_string("t_runs", "", "Comma-separated run folders differing in model.num_steps (T).")
_P_RUNS = flags.DEFINE_string("p_runs", "", "Comma-separated LABEL=DIR runs differing in the noise firing probability.")
_WALK = flags.DEFINE_string("walk", "", "PNG of a latent walk (launch.gan_walk) to show.")
_NOTES = flags.DEFINE_string("notes", "", "Markdown file appended after the tables.")
_OUT = flags.DEFINE_string("out", "results/gan.md", "Markdown file to write.")
_FIGURES = flags.DEFINE_string("figures", "results/gan", "Folder for the PNG figures.")
flags.mark_flags_as_required(["rows"])

# Targets of issue 6 on mnist5k.
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
    m = summary["config"]["model"]
    variant = "analog" if m["name"] == "analog_gan" else ("hybrid" if m["disc"] == "analog" else None)
    return reporting.command(summary, workdir, "gan", variant)


def _target_lines(headline: list[dict], analog: list[dict]) -> list[str]:
    h = {k: mean_std([r[k] for r in headline])[0] for k in ("eval/fid", "eval/class_entropy", "eval/recall", "energy_uj")}
    a = {k: mean_std([r[k] for r in analog])[0] for k in ("eval/fid", "energy_uj")}
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


def _sweep_section(title: str, xlabel: str, labelled: list[tuple[str, dict, str]], plot: str, rel) -> list[str]:
    _plot([r for _, r, _ in labelled], [x for x, _, _ in labelled], xlabel, plot)
    lines = [f"## {title}", "", f"![{title}]({rel(plot)})", "",
             f"| {xlabel} | steps | " + " | ".join(c[0] for c in COLUMNS) + " |", "|---:|---:|" + "---:|" * len(COLUMNS)]
    for x, r, _ in labelled:
        lines.append(f"| {x} | {r['step']} | " + " | ".join(cell([r], key, fmt) for _, key, fmt in COLUMNS) + " |")
    return lines + [""]


def _training_section(loaded) -> list[str]:
    """FID / class entropy / recall of each row at every evaluation step (mean +- std over seeds)."""
    steps = sorted({e["step"] for _, _, runs in loaded for r in runs for e in r["evals"]})
    if len(steps) < 2:
        return []
    lines = ["## Quality over training", "",
             "Each row's evaluations during training (the same 1,000-sample scoring), mean ± std over seeds.", "",
             "| run | step | feature FID | class entropy | recall |", "|---|---:|---:|---:|---:|"]
    for name, _, runs in loaded:
        for step in steps:
            at = [e for r in runs for e in r["evals"] if e["step"] == step]
            if at:
                lines.append(f"| {name} | {step} | " + " | ".join(
                    cell(at, key, fmt) for key, fmt in (("eval/fid", "{:.1f}"), ("eval/class_entropy", "{:.2f}"),
                                                        ("eval/recall", "{:.2f}"))) + " |")
    return lines + [""]


def build(entries, headline, analog, t_runs, p_runs, walk, notes, out, figures) -> str:
    """Writes the figures into ``figures`` and returns the markdown (also written to ``out``)."""
    if not entries:
        raise ValueError("--rows is empty")
    os.makedirs(figures, exist_ok=True)
    loaded = [(name, path, load_entry(path)) for name, path in entries]
    by_name = {name: runs for name, _, runs in loaded}
    for flag, name in (("--headline", headline), ("--analog", analog)):
        if name and name not in by_name:
            raise ValueError(f"{flag}={name!r} is not a NAME of --rows ({', '.join(by_name)})")
    rel = lambda p: os.path.relpath(p, os.path.dirname(os.path.abspath(out)) or ".")  # noqa: E731
    lines = ["# Spiking GAN on mnist5k", "",
             "Written by `python -m launch.gan_report` (see its docstring) from the run folders below; values "
             "are mean ± std over seeds where a row has several. Sample quality: 1,000 samples of the generator "
             "EMA scored in the feature space of the project's mnist5k classifier "
             "(`jaxspike.metrics.evaluate_samples`) against the 1,000 test digits; energy: one generator pass "
             "per sample at 0.9 pJ/AC, 4.6 pJ/MAC (`jaxspike.energy`); train s: wall time of training.", ""]
    if headline and analog:
        lines += ["## Targets (issue 6)", "", "| target | measured | |", "|---|---|---|",
                  *_target_lines(by_name[headline], by_name[analog]), ""]
    lines += ["## Results", "", "| run | generator | discriminator | T | steps | seeds | "
              + " | ".join(c[0] for c in COLUMNS) + " |", "|" + "---|" * 6 + "---:|" * len(COLUMNS)]
    for name, _, runs in loaded:
        lines.append(f"| {name} | " + " | ".join(describe(runs[0]["config"])) + f" | {runs[0]['step']} | {len(runs)} | "
                     + " | ".join(cell(runs, key, fmt) for _, key, fmt in COLUMNS) + " |")
    lines.append("")
    lines += _training_section(loaded)
    t_summaries = sorted(((run_summary(p), p) for p in t_runs), key=lambda rp: rp[0]["config"]["model"]["num_steps"])
    if t_summaries:
        lines += _sweep_section("Sample quality against T", "T",
                                [(str(r["config"]["model"]["num_steps"]), r, p) for r, p in t_summaries],
                                os.path.join(figures, "quality_vs_T.png"), rel)
    p_summaries = [(label, run_summary(p), p) for label, p in p_runs]
    if p_summaries:
        lines += _sweep_section("Sample quality against the noise firing probability", "noise p", p_summaries,
                                os.path.join(figures, "quality_vs_p.png"), rel)
    if walk:
        lines += ["## Latent walk", "", "Each row interpolates the noise units' firing probabilities between two "
                  "random vectors in [0, 1]^Z (`launch.gan_walk`).", "", f"![latent walk]({rel(walk)})", ""]
    lines += ["## Samples", "", "Samples of each row's first seed at its last evaluation.", ""]
    for name, _, runs in loaded:
        slug = "".join(ch if ch.isalnum() else "_" for ch in name).strip("_")
        grid = reporting.copy_grid(runs[0], "samples", os.path.join(figures, f"{slug}.png"))
        if grid:
            lines += [f"**{name}**: ![{name} samples]({rel(grid)})", ""]
    if notes:
        with open(notes) as f:
            lines += [f.read().rstrip(), ""]
    lines += ["## Commands", "", "Each run's training command, rebuilt from its `config.json` (flags that differ "
              "from the config file):", ""]
    for name, path, runs in loaded:
        for r in runs:
            lines.append(f"- {name}: `{_command(r, r['dir'])}`")
    for r, p in t_summaries:
        lines.append(f"- T sweep: `{_command(r, p)}`")
    for label, r, p in p_summaries:
        lines.append(f"- p = {label}: `{_command(r, p)}`")
    text = "\n".join(lines) + "\n"
    with open(out, "w") as f:
        f.write(text)
    return text


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected positional arguments: {argv[1:]}")
    try:
        build(reporting.parse_pairs(_ROWS.value, "rows"), _HEADLINE.value, _ANALOG.value,
              [p for p in _T_RUNS.value.split(",") if p.strip()], reporting.parse_pairs(_P_RUNS.value, "p_runs"),
              _WALK.value, _NOTES.value, _OUT.value, _FIGURES.value)
    except (ValueError, FileNotFoundError) as err:
        raise app.UsageError(str(err)) from None
    print(f"wrote {_OUT.value} and figures in {_FIGURES.value}")


if __name__ == "__main__":
    app.run(main)
