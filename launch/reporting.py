"""Reading runs for the results pages (``launch.vae_report``, ``launch.gan_report``, ``launch.convert_report``).

A row of a results table is one of

* a run folder written by ``launch.train`` (``metrics.jsonl``, ``config.json``),
* a seed sweep's folder of ``seed_<k>/`` runs, or
* the records of a results page's summary file (``results/<page>_runs.jsonl``,
  written by ``launch.summarize_runs``): one JSON line per run and seed with
  its row name, the config it ran (``config``: ``launch/configs/<f>.py[:variant]``
  and ``overrides``: the fields that differ from it, in today's field names),
  its last evaluation, every evaluation over training (``evals``), its
  training time and steps/s.

A summary record stands in for its run folder: the report tools read both
the same way. Rows whose run folders are gone are kept as the mean over their
seeds as the page published it: such a record has ``seeds`` (a list) and a
``std`` dict instead of one ``seed``.

Every number of a run is read from the last evaluation row of its
``metrics.jsonl``; seeds are summarised as mean +- sample standard deviation.
"""

from __future__ import annotations

import copy
import glob
import importlib
import json
import math
import os
import re
import shutil

# The numbers a summary record keeps of a run's last evaluation (those it has).
FINAL_KEYS = (
    "eval/fid", "eval/inception_score", "eval/precision", "eval/recall", "eval/class_entropy",
    "eval/coverage", "eval/density", "energy/energy_pj", "energy/spikes_per_sample", "energy/synops",
    "energy/macs", "mode_collapse",
    # the second feature space, pixels and copying (jaxspike.metrics.evaluate_samples)
    "eval/space2/fid", "eval/space2/precision", "eval/space2/recall", "eval/space2/coverage",
    "eval/mid_grey_frac", "eval/ref_mid_grey_frac", "eval/memorisation", "eval/memorisation_base",
)
# The numbers it keeps of every evaluation over training.
EVAL_KEYS = ("eval/fid", "eval/inception_score", "eval/precision", "eval/recall", "eval/class_entropy",
             "eval/coverage", "eval/density")
# config.json fields that say where a run ran, not what it trained.
_NOT_CONFIG = ("image_shape", "num_train", "num_devices", "progress", "seed", "seeds", "prior_fit")
# Fields renamed since older runs: the neuron settings moved under model.neuron.
_RENAMED = {
    "model.beta": "model.neuron.beta",
    "model.threshold": "model.neuron.threshold",
    "model.surrogate": "model.neuron.surrogate",
    "model.learn_neuron": "model.neuron.learn",
    "frontend_cache": "model.frontend_cache",
}


def parse_pairs(spec: str, flag: str) -> list[tuple[str, str]]:
    """``"NAME=DIR,NAME=DIR"`` -> ``[(NAME, DIR), ...]``; ``flag`` names the flag in errors."""
    pairs = []
    for part in [p for p in spec.split(",") if p.strip()]:
        if "=" not in part:
            raise ValueError(f"--{flag} entry {part!r} is not NAME=DIR")
        name, path = part.split("=", 1)
        pairs.append((name.strip(), path.strip()))
    return pairs


def parse_rows(spec: str, flag: str, summary: str = "") -> list[tuple[str, str | None]]:
    """``--rows`` entries: ``NAME=DIR`` (a run or sweep folder) or, with a summary file, a bare
    ``NAME`` (its records of that row; ``None`` as the source). No entries and a summary: every
    row of the summary, in file order."""
    entries: list[tuple[str, str | None]] = []
    for part in [p.strip() for p in (spec or "").split(",") if p.strip()]:
        if "=" in part:
            name, path = part.split("=", 1)
            entries.append((name.strip(), path.strip()))
        elif summary:
            entries.append((part, None))
        else:
            raise ValueError(f"--{flag} entry {part!r} is not NAME=DIR (a bare NAME needs --summary)")
    if not entries and summary:
        entries = [(name, None) for name in row_names(read_summary(summary))]
    return entries


def read_rows(path: str) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def train_seconds(rows: list[dict]) -> float:
    """Wall time of training from the log rows' ``time/elapsed_s``, summed over resumed segments.

    Each process (the first one and every resume) counts ``elapsed_s`` from
    its own start, so a drop marks a resume and the segment before it is added.
    """
    if not rows:
        return float("nan")
    total, prev = 0.0, 0.0
    for r in rows:
        t = r["time/elapsed_s"]
        if t < prev:
            total += prev
        prev = t
    return total + prev


# --- configs -------------------------------------------------------------------------------------


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        name = f"{prefix}.{k}" if prefix else k
        if isinstance(v, dict):
            out.update(_flatten(v, name))
        else:
            out[name] = v
    return out


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


def config_arg(config: dict) -> str:
    """``launch/configs/<family>.py[:variant]`` that a run's config starts from."""
    m = config["model"]
    if "gan" in m["name"]:
        variant = "analog" if m["name"] == "analog_gan" else ("hybrid" if m.get("disc") == "analog" else None)
        if variant is None and m.get("discriminator", {}).get("frontend"):
            variant = "stdp"
        family = "gan"
    else:
        variant = "analog" if m["name"] == "analog_vae" else ("stdp" if m.get("frontend") else None)
        family = "vae"
    return f"launch/configs/{family}.py" + (f":{variant}" if variant else "")


def base_config(arg: str) -> dict:
    """Today's config dict of ``launch/configs/<family>.py[:variant]``."""
    path, _, variant = arg.partition(":")
    name = os.path.splitext(os.path.basename(path))[0]
    return importlib.import_module(f"launch.configs.{name}").get_config(variant or None).to_dict()


def _migrate(flat: dict) -> dict:
    """An older run's flattened config in today's field names (``model.slope`` is the
    surrogate's parameter: ``model.neuron.slope`` or, for arctan, ``model.neuron.alpha``)."""
    from jaxspike import surrogates

    out = {}
    for name, value in flat.items():
        if name == "model.slope":
            surrogate = flat.get("model.surrogate", flat.get("model.neuron.surrogate", "fast_sigmoid"))
            name = f"model.neuron.{surrogates.PARAMETER.get(surrogate, 'slope')}"
        out[_RENAMED.get(name, name)] = value
    return out


def overrides(config: dict, arg: str | None = None) -> tuple[str, dict, list[str]]:
    """(config arg, the fields of ``config`` that differ from it, fields today's config lacks).

    ``config`` is a run's ``config.json``; field names of older runs are
    translated to today's. Where a run lacks a field that today's config has,
    the field did not exist then and its default is what ran.
    """
    arg = arg or config_arg(config)
    base = _flatten(base_config(arg))
    ran = _migrate(_flatten({k: v for k, v in config.items() if k not in _NOT_CONFIG}))
    diff, unknown = {}, []
    for name, value in sorted(ran.items()):
        if name not in base:
            unknown.append(name)
        elif _plain(base[name]) != value:
            diff[name] = value
    if config.get("seeds"):
        diff["seeds"] = config["seeds"]
    return arg, diff, unknown


def full_config(arg: str, fields: dict) -> dict:
    """Today's config of ``arg`` with ``fields`` (dotted names) set."""
    config = copy.deepcopy(base_config(arg))
    for dotted, value in fields.items():
        if dotted in ("seeds", "seed"):
            config[dotted] = value
            continue
        node = config
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return config


def command_line(arg: str, fields: dict, workdir: str, seed: int | None = None) -> str:
    """``launch.train`` command of a run: the config arg, then each differing field as a flag."""
    flags_ = []
    for name, value in sorted(fields.items()):
        if name in ("seed", "seeds"):
            continue
        text = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else value
        flags_.append(f"--config.{name}={text}")
    if fields.get("seeds"):
        flags_.append(f"--seeds={fields['seeds']}")
    elif seed:
        flags_.append(f"--config.seed={seed}")
    return " ".join([f"python -m launch.train --config={arg} --workdir={workdir}", *flags_])


def command(summary: dict, workdir: str, config_name: str | None = None, variant: str | None = None) -> str:
    """``launch.train`` command of a run (a run folder's summary or a summary record): the
    config fields that differ from ``launch/configs/<config_name>.py`` (its ``variant``)."""
    if "overrides" in summary:
        arg, fields = summary["config_arg"], summary["overrides"]
    else:
        arg = (f"launch/configs/{config_name}.py" + (f":{variant}" if variant else "")) if config_name else None
        arg, fields, _ = overrides(summary["config"], arg)
    return command_line(arg, fields, workdir, summary["config"].get("seed", 0))


# --- runs ----------------------------------------------------------------------------------------


def run_summary(run_dir: str) -> dict:
    """The last evaluation of one run folder, plus its config and training time."""
    rows = read_rows(os.path.join(run_dir, "metrics.jsonl"))
    evals = [r for r in rows if "eval/fid" in r]
    if not evals:
        raise ValueError(f"{run_dir}/metrics.jsonl has no evaluation row (eval/fid); was eval_every > 0?")
    last = dict(evals[-1])
    # Every evaluation of the run, for curves over training.
    last["evals"] = [{k: r[k] for k in ("step", *EVAL_KEYS) if k in r} for r in evals]
    train = [r for r in rows if "time/elapsed_s" in r and r["step"] <= last["step"]]
    last["train_s"] = train_seconds(train)
    if train and "time/steps_per_s" in train[-1]:
        last["steps_per_s"] = train[-1]["time/steps_per_s"]
    last["energy_uj"] = last["energy/energy_pj"] / 1e6
    with open(os.path.join(run_dir, "config.json")) as f:
        last["config"] = json.load(f)
    last["dir"] = run_dir
    return last


def seed_dirs(path: str) -> list[str]:
    """The ``seed_<k>/`` run folders of a sweep folder, by seed (logs such as ``seed_0.log`` are not runs)."""
    seeds = [p for p in glob.glob(os.path.join(path, "seed_*")) if os.path.isdir(p) and p.rsplit("_", 1)[1].isdigit()]
    return sorted(seeds, key=lambda p: int(p.rsplit("_", 1)[1]))


def load_entry(path: str) -> list[dict]:
    """One summary per seed: ``path`` is a run folder or a sweep folder of ``seed_<k>/`` runs."""
    if os.path.exists(os.path.join(path, "metrics.jsonl")):
        return [run_summary(path)]
    seeds = seed_dirs(path)
    if not seeds:
        raise ValueError(f"{path} holds neither metrics.jsonl nor seed_<k>/ runs")
    return [run_summary(p) for p in seeds]


def command_summary(path: str | None, runs: list[dict]) -> dict:
    """The summary whose config rebuilds an entry's command: a vmapped sweep's own
    ``config.json`` (it holds ``seeds``) when ``path`` is a sweep folder, else the run's."""
    if path is None:
        return runs[0]
    sweep_config = os.path.join(path, "config.json")
    if not os.path.exists(os.path.join(path, "metrics.jsonl")) and os.path.exists(sweep_config):
        with open(sweep_config) as f:
            return {**runs[0], "config": json.load(f)}
    return runs[0]


# --- summary files -------------------------------------------------------------------------------


def record(run: dict, row: str) -> dict:
    """The summary-file record of one run (a :func:`run_summary`)."""
    arg, fields, unknown = overrides(run["config"])
    rec = {"row": row, "seed": run["config"].get("seed", 0), "config": arg, "overrides": fields,
           "step": run["step"]}
    rec.update({k: run[k] for k in FINAL_KEYS if k in run})
    rec.update({k: v for k, v in run.items() if k.startswith("test/")})
    rec["train_s"] = run["train_s"]
    if "steps_per_s" in run:
        rec["steps_per_s"] = run["steps_per_s"]
    if len(run["evals"]) > 1:
        rec["evals"] = run["evals"]
    if "prior_fit" in run["config"]:  # a run refitted by launch.fit_prior
        rec["prior_fit"] = run["config"]["prior_fit"]
    if unknown:
        rec["fields_gone"] = {name: _flatten(run["config"]).get(name) for name in unknown}
    return rec


VAL_TAIL = 10  # epochs averaged in a val_rstdp record


def _name(path: str) -> str:
    path = os.path.normpath(path)
    base = os.path.basename(path)
    return os.path.basename(os.path.dirname(path)) if re.fullmatch(r"seed_\d+", base) else base


# The numbers a record keeps of each row of a launch.convert folder (one row per T, and the analog original).
CONVERT_KEYS = ("kind", "T", "fid", "inception_score", "precision", "recall", "class_entropy", "coverage", "density",
                "space2/fid", "space2/precision", "space2/recall", "space2/coverage", "mid_grey_frac",
                "ref_mid_grey_frac", "memorisation", "memorisation_base",
                "pixel_mae_vs_analog", "spikes_per_sample", "synops", "macs", "energy_nj")


def convert_records(name: str, path: str) -> list[dict]:
    """One record per row of a ``launch.convert`` folder; the analog original's names the command."""
    rows = read_rows(os.path.join(path, "metrics.jsonl"))
    with open(os.path.join(path, "config.json")) as f:
        config = json.load(f)
    records = [{"row": name, **{k: r[k] for k in CONVERT_KEYS if k in r}} for r in rows]
    records[0].update({"coding": config.get("coding"), "command": config.get("command")})
    return records


def run_records(spec: str) -> list[dict]:
    """Records of ``[NAME=]DIR`` entries: ``launch.train`` runs, seed sweeps or ``launch.convert`` folders."""
    records = []
    for part in [p.strip() for p in spec.split(",") if p.strip()]:
        name, path = part.split("=", 1) if "=" in part else (_name(part), part)
        name, path = name.strip(), path.strip()
        metrics = os.path.join(path, "metrics.jsonl")
        if os.path.exists(metrics) and "kind" in (read_rows(metrics) or [{}])[0]:
            records += convert_records(name, path)
        else:
            runs = load_entry(path)
            sweep = command_summary(path, runs)["config"].get("seeds")  # a vmapped sweep's folder says so
            records += [record({**run, "config": {**run["config"], "seeds": sweep}} if sweep else run, name)
                        for run in runs]
    return records


def val_rstdp_record(path: str) -> dict:
    """Final and last-``VAL_TAIL``-epoch accuracies of one ``launch.val_rstdp`` log (both of its formats:
    ``val``/``test`` per epoch, or ``val_max``/``test_max`` with the ``top3`` and ``mapsum`` readouts
    and a last line of tail-averaged weights)."""
    match = re.fullmatch(r"seed(\d+)_(.+)\.jsonl", os.path.basename(path))
    if not match:
        raise ValueError(f"{path}: a val_rstdp log is named seed<S>_<variant>.jsonl")
    rows = read_rows(path)
    epochs = [r for r in rows if "epoch" in r]
    if len(epochs) < VAL_TAIL:
        raise ValueError(f"{path} has {len(epochs)} epochs, fewer than {VAL_TAIL}")
    rec = {"variant": match.group(2), "seed": int(match.group(1)), "epochs": len(epochs)}
    readouts = ("max", "top3", "mapsum") if "val_max" in epochs[0] else ("",)
    for readout in readouts:
        for split in ("val", "test"):
            key = f"{split}_{readout}" if readout else split
            out = f"{split}_{readout}" if readout not in ("", "max") else split
            rec[f"{out}_final"] = epochs[-1][key]
            rec[f"{out}_mean{VAL_TAIL}"] = round(sum(r[key] for r in epochs[-VAL_TAIL:]) / VAL_TAIL, 6)
    if "train" in epochs[-1] or "train_online" in epochs[-1]:
        rec["train_final"] = epochs[-1].get("train", epochs[-1].get("train_online"))
    rec["s_per_epoch"] = round(epochs[-1]["s"] / len(epochs), 2)
    averaged = [r for r in rows if "avg10" in r]
    if averaged:  # weights averaged over the last 5 / 10 / 20 epochs, max readout
        rec.update({f"{split}_{avg}": averaged[-1][avg][f"{split}_max"] for avg in ("avg5", "avg10", "avg20")
                    for split in ("val", "test")})
    return rec


def merge(old: list[dict], new: list[dict], key) -> list[dict]:
    """``new`` records replace ``old`` ones of the same ``key``; other old records keep their place."""
    fresh = {key(r) for r in new}
    out, placed = [], set()
    for r in old:
        if key(r) in fresh:
            if key(r) not in placed:
                out += [n for n in new if key(n) == key(r)]
                placed.add(key(r))
        else:
            out.append(r)
    return out + [n for n in new if key(n) not in placed]


def read_summary(path: str) -> list[dict]:
    records = read_rows(path)
    for i, rec in enumerate(records):
        if "row" not in rec:
            raise ValueError(f"{path} line {i + 1} has no 'row'; is it a summary file (launch.summarize_runs)?")
    return records


def row_names(records: list[dict]) -> list[str]:
    return list(dict.fromkeys(rec["row"] for rec in records))


def from_record(rec: dict) -> dict:
    """A summary record as the run dict :func:`run_summary` gives (``dir`` is None: no files)."""
    run = {k: v for k, v in rec.items() if k not in ("config", "overrides")}
    run["config_arg"], run["overrides"] = rec["config"], dict(rec.get("overrides", {}))
    run["config"] = full_config(rec["config"], run["overrides"])
    run["config"]["seed"] = rec.get("seed", (rec.get("seeds") or [0])[0])
    if "prior_fit" in rec:
        run["config"]["prior_fit"] = rec["prior_fit"]
    run.setdefault("evals", [])
    if "energy_uj" not in run and "energy/energy_pj" in run:
        run["energy_uj"] = run["energy/energy_pj"] / 1e6
    run["dir"] = None
    return run


def summary_entry(records: list[dict], row: str, path: str) -> list[dict]:
    runs = [from_record(rec) for rec in records if rec["row"] == row]
    if not runs:
        raise ValueError(f"{path} has no row {row!r} (rows: {', '.join(row_names(records))})")
    return runs


def load(entries: list[tuple[str, str | None]], summary: str = "") -> list[tuple[str, str | None, list[dict]]]:
    """``(name, source, runs)`` per entry of :func:`parse_rows` (a source ``None``: the summary's row)."""
    records = read_summary(summary) if summary else []
    return [(name, path, load_entry(path) if path is not None else summary_entry(records, name, summary))
            for name, path in entries]


def load_one(spec: str, summary: str = "") -> tuple[dict, str | None]:
    """One run: a run folder, or (with a summary file) a row name with a single record."""
    if os.path.isdir(spec) or not summary:
        return run_summary(spec), spec
    runs = summary_entry(read_summary(summary), spec, summary)
    if len(runs) != 1:
        raise ValueError(f"{summary} row {spec!r} has {len(runs)} records; a sweep point is one run")
    return runs[0], None


def workdir(name: str, path: str | None, run: dict, page: str, seeds: int = 1) -> str:
    """Where a run's command writes: its own folder, or ``runs/<page>/<row>`` for a record
    (``/seed_<k>`` added when the row has ``seeds`` > 1 separate runs)."""
    if run.get("dir"):
        return run["dir"]
    if path is not None:
        return path
    slug = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in name)
    separate_seed = seeds > 1 and "seed" in run and not run["overrides"].get("seeds")
    return f"runs/{page}/{slug}" + (f"/seed_{run['seed']}" if separate_seed else "")


def commands(name: str, path: str | None, runs: list[dict], page: str, command_fn) -> list[str]:
    """One ``- name: `command``` line per run (per seed of a record kept as a mean over seeds); a
    summary row's seeds trained as separate runs of one command share one line, seed ``K``."""
    separate = [s for r in runs if not r.get("overrides", {}).get("seeds")
                for s in (r["seeds"] if r.get("seeds") else [r.get("seed")])]
    same = len({json.dumps([r.get("config_arg"), r.get("overrides")], sort_keys=True) for r in runs}) == 1
    if path is None and same and runs[0].get("overrides", {}).get("seeds"):  # one vmapped sweep
        return [f"- {name}: `{command_fn(runs[0], workdir(name, None, runs[0], page))}`"]
    if path is None and same and len(separate) > 1 and None not in separate:
        one = {**runs[0], "seed": "K", "config": {**runs[0]["config"], "seed": "K"}}
        seeds = ", ".join(str(s) for s in separate)
        return [f"- {name} (seed K = {seeds}): `{command_fn(one, f'runs/{page}/{name}/seed_K')}`"]
    lines = []
    for r in runs:
        seeds = r.get("seeds")
        if seeds and not r.get("overrides", {}).get("seeds"):
            for s in seeds:  # separate runs per seed, kept only as their mean
                one = {**r, "seed": s, "config": {**r["config"], "seed": s}}
                lines.append(f"- {name}: `{command_fn(one, f'runs/{page}/{name}/seed_{s}')}`")
        else:
            lines.append(f"- {name}: `{command_fn(r, workdir(name, path, r, page, len(runs)))}`")
    return lines


# --- table cells ---------------------------------------------------------------------------------


def mean_std(values: list[float]) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return mean, std


def num_seeds(runs: list[dict]) -> int:
    return sum(len(r["seeds"]) if r.get("seeds") else 1 for r in runs)


def value(runs: list[dict], key: str) -> float:
    """Mean over seeds (a record kept as a mean gives its mean)."""
    if len(runs) == 1 and runs[0].get("seeds"):
        return runs[0][key]
    return mean_std([r[key] for r in runs])[0]


def cell(runs: list[dict], key: str, fmt: str) -> str:
    if len(runs) == 1 and runs[0].get("seeds") and key in runs[0]:
        r = runs[0]  # kept as the page published it: mean and std over its seeds
        std = r.get("std", {}).get(key)
        return fmt.format(r[key]) + (f" ± {fmt.format(std)}" if len(r["seeds"]) > 1 and std is not None else "")
    values = [r[key] for r in runs if key in r and not (isinstance(r[key], float) and math.isnan(r[key]))]
    if not values:
        return "-"
    mean, std = mean_std(values)
    return fmt.format(mean) + (f" ± {fmt.format(std)}" if len(values) > 1 else "")


def copy_grid(summary: dict, kind: str, dest: str) -> str | None:
    """Copies the run's ``<kind>_<step>.png`` grid of its last evaluation to ``dest``."""
    if not summary.get("dir"):
        return None
    src = os.path.join(summary["dir"], f"{kind}_{summary['step']}.png")
    if not os.path.exists(src):
        return None
    shutil.copyfile(src, dest)
    return dest


# Both feature spaces, pixels and copying: (column title, metrics key, format).
SPACE_COLUMNS = (
    ("FID", "eval/fid", "{:.1f}"),
    ("FID (space 2)", "eval/space2/fid", "{:.1f}"),
    ("precision", "eval/precision", "{:.2f}"),
    ("precision (space 2)", "eval/space2/precision", "{:.2f}"),
    ("recall", "eval/recall", "{:.2f}"),
    ("recall (space 2)", "eval/space2/recall", "{:.2f}"),
    ("coverage", "eval/coverage", "{:.2f}"),
    ("coverage (space 2)", "eval/space2/coverage", "{:.2f}"),
    ("mid-grey share", "eval/mid_grey_frac", "{:.3f}"),
    ("memorisation", "eval/memorisation", "{:.2f}"),
)
SPACES_INTRO = ("Mid-grey share: pixels in (0.1, 0.9); memorisation: samples nearer a training digit than any test "
                "digit (`results/README.md`).")


def spaces_table(loaded: list[tuple[str, str | None, list[dict]]]) -> list[str]:
    """Markdown rows: every run in both feature spaces, its mid-grey share and memorisation,
    then the real test digits' own mid-grey share and memorisation base rate."""
    lines = ["| run | " + " | ".join(c[0] for c in SPACE_COLUMNS) + " |", "|---|" + "---:|" * len(SPACE_COLUMNS)]
    for name, _, runs in loaded:
        lines.append(f"| {name} | " + " | ".join(cell(runs, key, fmt) for _, key, fmt in SPACE_COLUMNS) + " |")
    refs = [(value(runs, "eval/ref_mid_grey_frac"), value(runs, "eval/memorisation_base"))
            for _, _, runs in loaded if all(k in runs[0] for k in ("eval/ref_mid_grey_frac", "eval/memorisation_base"))]
    if refs:
        lines.append("| real test digits | " + " | ".join(["-"] * (len(SPACE_COLUMNS) - 2))
                     + f" | {refs[0][0]:.3f} | {refs[0][1]:.2f} |")
    return lines
