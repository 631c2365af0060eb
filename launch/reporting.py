"""Reading run folders for the results pages (``launch.vae_report``, ``launch.gan_report``).

A row of a results table is a run folder written by ``launch.train``
(``metrics.jsonl``, ``config.json``) or a seed sweep's folder of
``seed_<k>/`` runs; every number is read from the last evaluation row of
``metrics.jsonl`` and seeds are summarised as mean +- sample standard
deviation.
"""

from __future__ import annotations

import glob
import json
import math
import os
import shutil


def parse_pairs(spec: str, flag: str) -> list[tuple[str, str]]:
    """``"NAME=DIR,NAME=DIR"`` -> ``[(NAME, DIR), ...]``; ``flag`` names the flag in errors."""
    pairs = []
    for part in [p for p in spec.split(",") if p.strip()]:
        if "=" not in part:
            raise ValueError(f"--{flag} entry {part!r} is not NAME=DIR")
        name, path = part.split("=", 1)
        pairs.append((name.strip(), path.strip()))
    return pairs


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


def run_summary(run_dir: str) -> dict:
    """The last evaluation of one run folder, plus its config and training time."""
    rows = read_rows(os.path.join(run_dir, "metrics.jsonl"))
    evals = [r for r in rows if "eval/fid" in r]
    if not evals:
        raise ValueError(f"{run_dir}/metrics.jsonl has no evaluation row (eval/fid); was eval_every > 0?")
    last = dict(evals[-1])
    # Every evaluation of the run (step, FID, class entropy, recall), for curves over training.
    last["evals"] = [{k: r[k] for k in ("step", "eval/fid", "eval/class_entropy", "eval/recall") if k in r}
                     for r in evals]
    train = [r for r in rows if "time/elapsed_s" in r and r["step"] <= last["step"]]
    last["train_s"] = train_seconds(train)
    last["energy_uj"] = last["energy/energy_pj"] / 1e6
    with open(os.path.join(run_dir, "config.json")) as f:
        last["config"] = json.load(f)
    last["dir"] = run_dir
    return last


def load_entry(path: str) -> list[dict]:
    """One summary per seed: ``path`` is a run folder or a sweep folder of ``seed_<k>/`` runs."""
    if os.path.exists(os.path.join(path, "metrics.jsonl")):
        return [run_summary(path)]
    # Only ``seed_<k>`` folders: a sweep folder may also hold logs such as ``seed_0.log``.
    seeds = [p for p in glob.glob(os.path.join(path, "seed_*")) if os.path.isdir(p) and p.rsplit("_", 1)[1].isdigit()]
    seeds.sort(key=lambda p: int(p.rsplit("_", 1)[1]))
    if not seeds:
        raise ValueError(f"{path} holds neither metrics.jsonl nor seed_<k>/ runs")
    return [run_summary(p) for p in seeds]


def command_summary(path: str, runs: list[dict]) -> dict:
    """The summary whose config rebuilds an entry's command: a vmapped sweep's own
    ``config.json`` (it holds ``seeds``) when ``path`` is a sweep folder, else the run's."""
    sweep_config = os.path.join(path, "config.json")
    if not os.path.exists(os.path.join(path, "metrics.jsonl")) and os.path.exists(sweep_config):
        with open(sweep_config) as f:
            return {**runs[0], "config": json.load(f)}
    return runs[0]


def mean_std(values: list[float]) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return mean, std


def cell(runs: list[dict], key: str, fmt: str) -> str:
    values = [r[key] for r in runs if key in r]
    if not values:
        return "-"
    mean, std = mean_std(values)
    return fmt.format(mean) + (f" ± {fmt.format(std)}" if len(values) > 1 else "")


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        name = f"{prefix}.{k}" if prefix else k
        if isinstance(v, dict):
            out.update(_flatten(v, name))
        else:
            out[name] = v
    return out


def command(summary: dict, workdir: str, config_name: str, variant: str | None = None) -> str:
    """``launch.train`` command of a run: the config fields that differ from
    ``launch/configs/<config_name>.py`` (its ``variant``, if given)."""
    import importlib

    base_config = importlib.import_module(f"launch.configs.{config_name}").get_config(variant)
    cfg = summary["config"]
    base = _flatten(base_config.to_dict())
    ran = _flatten({k: v for k, v in cfg.items() if k not in ("image_shape", "num_train", "num_devices")})
    flags_ = []
    for name, value in sorted(ran.items()):
        if name in ("progress", "seed", "seeds"):
            continue
        default = base.get(name)
        same = (list(default) if isinstance(default, tuple) else default) == value
        if not same:
            text = ",".join(map(str, value)) if isinstance(value, list) else value
            flags_.append(f"--config.{name}={text}")
    seeds = cfg.get("seeds") or ""
    if seeds:
        flags_.append(f"--seeds={seeds}")
    elif cfg.get("seed", 0):
        flags_.append(f"--config.seed={cfg['seed']}")
    config_arg = f"launch/configs/{config_name}.py" + (f":{variant}" if variant else "")
    return " ".join([f"python -m launch.train --config={config_arg} --workdir={workdir}", *flags_])


def copy_grid(summary: dict, kind: str, dest: str) -> str | None:
    """Copies the run's ``<kind>_<step>.png`` grid of its last evaluation to ``dest``."""
    src = os.path.join(summary["dir"], f"{kind}_{summary['step']}.png")
    if not os.path.exists(src):
        return None
    shutil.copyfile(src, dest)
    return dest
