"""launch.vae_report on hand-made run folders (no training: seconds)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from jaxspike.train import io
from launch import vae_report
from launch.configs import vae as vae_config


def _run(path, *, fid, entropy, mse, energy_pj, analog=False, overrides=None, step=100):
    os.makedirs(path, exist_ok=True)
    config = vae_config.get_config("analog" if analog else None).to_dict()
    for dotted, value in (overrides or {}).items():
        node = config
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    io.write_json(os.path.join(path, "config.json"), {**config, "image_shape": [28, 28, 1], "num_train": 4000})
    rows = [
        {"step": step, "loss": 100.0, "time/elapsed_s": 12.5},
        {"step": step, "eval/fid": fid, "eval/inception_score": 3.0, "eval/precision": 0.5, "eval/recall": 0.4,
         "eval/class_entropy": entropy, "test/elbo": -120.0, "test/mse": mse,
         "energy/spikes_per_sample": 1000.0, "energy/energy_pj": energy_pj},
    ]
    with open(os.path.join(path, "metrics.jsonl"), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    io.save_image_grid(os.path.join(path, f"samples_{step}.png"), np.zeros((4, 28, 28, 1), np.float32))


def test_report_tables_targets_and_commands(tmp_path):
    spiking = str(tmp_path / "svae")
    analog = str(tmp_path / "avae")
    sweep = str(tmp_path / "sweep")
    _run(spiking, fid=80.0, entropy=2.25, mse=0.031, energy_pj=0.5e6, overrides={"model.prior": "uniform_rate"})
    _run(analog, fid=90.0, entropy=2.28, mse=0.02, energy_pj=2.6e6, analog=True)
    for seed, fid in ((0, 100.0), (1, 110.0)):
        _run(os.path.join(sweep, f"seed_{seed}"), fid=fid, entropy=2.0, mse=0.04, energy_pj=1e6,
             overrides={"model.coding": "rate", "seeds": "0,1", "total_steps": 100})
        # A sweep launched by hand often keeps its logs beside the runs; they are not runs.
        open(os.path.join(sweep, f"seed_{seed}.log"), "w").close()
    t_runs = []
    for t in (4, 8):
        t_runs.append(str(tmp_path / f"t{t}"))
        _run(t_runs[-1], fid=100.0 / t, entropy=2.0, mse=0.03, energy_pj=1e5 * t, overrides={"model.num_steps": t})
    out = str(tmp_path / "results" / "vae.md")
    text = vae_report.build([("default", spiking), ("analog", analog), ("latency", sweep)], "default", "analog",
                            t_runs, "", out, str(tmp_path / "results" / "vae"), analog_like="latency")
    assert open(out).read() == text
    assert "the counterpart prior, latency | 80.0 vs 105.0 | **met** |" in text
    # Targets: FID 80 <= 90 met, entropy 2.25 met, MSE 0.031 missed, energy 0.5 <= 2.6/3 met.
    assert "| feature FID <= analog twin's | 80.0 vs 90.0 | **met** |" in text
    assert "| reconstruction MSE <= 0.03 | 0.0310 | **missed** |" in text
    assert "0.50 vs 2.60 uJ (0.19x) | **met** |" in text
    # Two seeds: mean +- sample std (100, 110 -> 105 +- 7.1).
    latency = next(line for line in text.splitlines() if line.startswith("| latency |"))
    assert "105.0 ± 7.1" in latency and "| 2 |" in latency
    # Commands are the flags that differ from the config file.
    assert f"--workdir={spiking} --config.model.prior=uniform_rate" in text
    assert "launch/configs/vae.py:analog" in text
    assert "--config.model.coding=rate" in text and "--config.total_steps=100 --seeds=0,1" in text
    assert os.path.exists(tmp_path / "results" / "vae" / "quality_vs_T.png")
    assert os.path.exists(tmp_path / "results" / "vae" / "default_samples.png")


def test_report_bad_inputs_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="not NAME=DIR"):
        vae_report.parse_rows("just_a_dir")
    with pytest.raises(ValueError, match="neither metrics.jsonl nor seed_"):
        vae_report.load_entry(str(tmp_path))
    run = str(tmp_path / "r")
    _run(run, fid=1.0, entropy=2.0, mse=0.01, energy_pj=1.0)
    with pytest.raises(ValueError, match="--headline='nope' is not a NAME"):
        vae_report.build([("r", run)], "nope", None, [], "", str(tmp_path / "x.md"), str(tmp_path / "f"))


def test_train_seconds_sums_resumed_segments():
    from launch import reporting

    # A run killed after step 200 (logged at 20 s) and resumed: the resumed process counts from 0 again.
    rows = [{"step": s, "time/elapsed_s": t} for s, t in ((100, 10.0), (200, 20.0), (300, 8.0), (400, 18.0))]
    assert reporting.train_seconds(rows) == 38.0
    assert reporting.train_seconds(rows[:2]) == 20.0
    assert np.isnan(reporting.train_seconds([]))


def test_summary_records_stand_in_for_run_folders(tmp_path):
    """launch.summarize_runs' records give the report the tables and commands of the run folders."""
    from launch import reporting

    spiking, analog, sweep = (str(tmp_path / n) for n in ("svae", "avae", "sweep"))
    _run(spiking, fid=80.0, entropy=2.25, mse=0.031, energy_pj=0.5e6, overrides={"model.prior": "uniform_rate"})
    _run(analog, fid=90.0, entropy=2.28, mse=0.02, energy_pj=2.6e6, analog=True)
    for seed, fid in ((0, 100.0), (1, 110.0)):
        _run(os.path.join(sweep, f"seed_{seed}"), fid=fid, entropy=2.0, mse=0.04, energy_pj=1e6,
             overrides={"model.coding": "rate", "seed": seed})
    records = reporting.run_records(f"default={spiking},analog={analog},{sweep}")
    assert [(r["row"], r["seed"]) for r in records] == [("default", 0), ("analog", 0), ("sweep", 0), ("sweep", 1)]
    assert records[0]["config"] == "launch/configs/vae.py" and records[0]["overrides"] == {"model.prior": "uniform_rate"}
    assert records[1]["config"] == "launch/configs/vae.py:analog" and records[1]["overrides"] == {}
    summary = tmp_path / "vae_runs.jsonl"
    summary.write_text("".join(json.dumps(r) + "\n" for r in records))
    folders = [("default", spiking), ("analog", analog), ("sweep", sweep)]
    from_folders = vae_report.build(folders, "default", "analog", [], "", "", str(tmp_path / "f1"),
                                    tables=["targets", "results"])
    from_summary = vae_report.build(vae_report.parse_rows("", str(summary)), "default", "analog", [], "", "",
                                    str(tmp_path / "f2"), summary=str(summary), tables=["targets", "results"])
    assert from_summary == from_folders and "| sweep |" in from_summary and "105.0 ± 7.1" in from_summary
    commands = vae_report.build(vae_report.parse_rows("sweep", str(summary)), None, None, [], "", "",
                                str(tmp_path / "f3"), summary=str(summary), tables=["commands"])
    assert "--workdir=runs/vae/sweep/seed_K --config.model.coding=rate --config.seed=K" in commands


def test_older_field_names_become_todays_flags(tmp_path):
    """A run of an older config (neuron settings on model, slope naming the arctan's alpha) gives today's flags."""
    from launch import reporting

    run = str(tmp_path / "old")
    _run(run, fid=1.0, entropy=2.0, mse=0.01, energy_pj=1.0)
    config = json.load(open(os.path.join(run, "config.json")))
    neuron = config["model"].pop("neuron")
    config["model"].update(beta=0.95, threshold=neuron["threshold"], surrogate="arctan", slope=3.0, learn_neuron=True)
    config["frontend_cache"] = config["model"].pop("frontend_cache") and False
    io.write_json(os.path.join(run, "config.json"), config)
    rec = reporting.record(reporting.run_summary(run), "old")
    assert rec["overrides"] == {"model.frontend_cache": False, "model.neuron.alpha": 3.0, "model.neuron.beta": 0.95,
                                "model.neuron.learn": True}
    line = reporting.commands("old", None, [reporting.from_record(rec)], "vae", vae_report.command)[0]
    assert line.endswith("--workdir=runs/vae/old --config.model.frontend_cache=False --config.model.neuron.alpha=3.0 "
                         "--config.model.neuron.beta=0.95 --config.model.neuron.learn=True`")


def test_published_rows_and_other_summaries(tmp_path):
    """A row kept as its published mean +- std prints as published; val_rstdp logs and merging."""
    from launch import reporting

    rec = {"row": "kept", "seeds": [0, 1, 2], "config": "launch/configs/vae.py", "overrides": {"seeds": "0,1,2"},
           "step": 3000, "eval/fid": 69.9, "test/mse": 0.021, "energy_uj": 0.59, "std": {"eval/fid": 4.8, "test/mse": 0.0002}}
    runs = [reporting.from_record(rec)]
    assert reporting.cell(runs, "eval/fid", "{:.1f}") == "69.9 ± 4.8"
    assert reporting.cell(runs, "test/mse", "{:.4f}") == "0.0210 ± 0.0002"
    assert reporting.cell(runs, "energy_uj", "{:.2f}") == "0.59" and reporting.num_seeds(runs) == 3
    assert reporting.commands("kept", None, runs, "vae", vae_report.command) == [
        "- kept: `python -m launch.train --config=launch/configs/vae.py --workdir=runs/vae/kept --seeds=0,1,2`"]

    log = tmp_path / "seed1_d0.25_pc30.jsonl"
    log.write_text("".join(json.dumps({"epoch": e, "train": 0.5, "val": 0.9 + e / 1000, "test": 0.8, "s": 10 * (e + 1)})
                           + "\n" for e in range(12)))
    val = reporting.val_rstdp_record(str(log))
    assert (val["variant"], val["seed"], val["epochs"], val["val_final"]) == ("d0.25_pc30", 1, 12, 0.911)
    assert val["val_mean10"] == pytest.approx(0.9065) and val["s_per_epoch"] == 10.0
    with pytest.raises(ValueError, match="seed<S>_<variant>"):
        reporting.val_rstdp_record(str(tmp_path / "log.jsonl"))

    old = [{"row": "a", "v": 1}, {"row": "b", "v": 1}, {"row": "b", "v": 2}, {"row": "c", "v": 1}]
    new = [{"row": "b", "v": 3}, {"row": "d", "v": 1}]
    assert reporting.merge(old, new, lambda r: r["row"]) == [old[0], new[0], old[3], new[1]]


def test_convert_summary_and_report_cli(tmp_path):
    """launch.summarize_runs on a launch.convert folder, then launch.convert_report from the summary."""
    import subprocess
    import sys

    conv = tmp_path / "agan_converted"
    conv.mkdir()
    (conv / "config.json").write_text(json.dumps({"coding": "uniform_rate", "command": "launch/convert.py --Ts=4"}))
    rows = [{"T": 0, "kind": "analog", "fid": 100.0, "inception_score": 4.0, "class_entropy": 2.1, "energy_nj": 2525.0,
             "space2/fid": 300.0},
            {"T": 4, "kind": "converted", "fid": 110.0, "inception_score": 3.9, "class_entropy": 2.0,
             "space2/fid": 330.0, "recall": 0.5, "space2/recall": 0.45, "mid_grey_frac": 0.15,
             "pixel_mae_vs_analog": 0.12, "spikes_per_sample": 481.0, "energy_nj": 312.0, "sim_s": 1.0}]
    (conv / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    summary = tmp_path / "convert_runs.jsonl"
    run = lambda *args: subprocess.run([sys.executable, "-m", *args], cwd=repo, capture_output=True, text=True,  # noqa: E731
                                       timeout=120)
    out = run("launch.summarize_runs", f"--runs=GAN u={conv}", f"--out={summary}")
    assert out.returncode == 0, out.stderr[-2000:]
    records = [json.loads(line) for line in summary.read_text().splitlines()]
    assert [r["kind"] for r in records] == ["analog", "converted"] and records[0]["coding"] == "uniform_rate"
    assert "sim_s" not in records[1]
    out = run("launch.convert_report", f"--summary={summary}")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "| GAN u | 4 | 110.0 | 1.100 | 330.0 | 1.100 | 0.50 | 0.45 | 3.90 | 2.00 | 0.150 | 0.1200 | 481 | 312 |" in out.stdout
    assert out.stdout == run("launch.convert_report", f"--runs=GAN u={conv}").stdout


def test_a_vmapped_sweep_summarises_to_one_command(tmp_path):
    from launch import reporting

    sweep = str(tmp_path / "sweep")
    for seed in (0, 1):
        _run(os.path.join(sweep, f"seed_{seed}"), fid=100.0 + seed, entropy=2.0, mse=0.04, energy_pj=1e6,
             overrides={"seeds": "0,1", "seed": seed})
    runs = [reporting.from_record(r) for r in reporting.run_records(f"rs={sweep}")]
    assert reporting.commands("rs", None, runs, "vae", vae_report.command) == [
        "- rs: `python -m launch.train --config=launch/configs/vae.py --workdir=runs/vae/rs --seeds=0,1`"]
    # As the loop writes a sweep: each seed folder reads as a single run, the sweep's own config.json holds seeds.
    for seed in (0, 1):
        config = io.read_json(os.path.join(sweep, f"seed_{seed}", "config.json"))
        io.write_json(os.path.join(sweep, f"seed_{seed}", "config.json"), {**config, "seeds": ""})
    io.write_json(os.path.join(sweep, "config.json"), {**config, "seed": 0, "seeds": "0,1"})
    runs = [reporting.from_record(r) for r in reporting.run_records(f"rs={sweep}")]
    assert reporting.commands("rs", None, runs, "vae", vae_report.command) == [
        "- rs: `python -m launch.train --config=launch/configs/vae.py --workdir=runs/vae/rs --seeds=0,1`"]


def test_both_spaces_table_and_a_refitted_runs_command(tmp_path):
    trained, fitted = str(tmp_path / "svae"), str(tmp_path / "svae_fit")
    _run(trained, fid=70.0, entropy=2.28, mse=0.021, energy_pj=0.6e6)
    _run(fitted, fid=30.0, entropy=2.29, mse=0.021, energy_pj=0.7e6, overrides={"model.num_components": 512})
    for path, extra in ((trained, {"eval/space2/fid": 180.0, "eval/space2/recall": 0.25}),
                        (fitted, {"eval/space2/fid": 80.0, "eval/space2/recall": 0.56})):
        with open(os.path.join(path, "metrics.jsonl"), "a") as f:
            f.write(json.dumps({"step": 100, "eval/fid": 30.0 if path == fitted else 70.0, "eval/recall": 0.4,
                                "eval/mid_grey_frac": 0.2, "eval/ref_mid_grey_frac": 0.088,
                                "eval/memorisation": 0.9, "eval/memorisation_base": 0.67,
                                "energy/energy_pj": 1e6, **extra}) + "\n")
    # A refitted run: launch.fit_prior's record, no training rows.
    config = io.read_json(os.path.join(fitted, "config.json"))
    config["prior_fit"] = {"source": trained, "split": "train", "num_components": 512, "iters": 50, "seed": 0}
    io.write_json(os.path.join(fitted, "config.json"), config)
    text = vae_report.build([("trained", trained), ("fitted", fitted)], None, None, [], "", "", str(tmp_path / "f"),
                            tables=["spaces", "commands"])
    assert "| trained | 70.0 | 180.0 | - | - | 0.40 | 0.25 | - | - | 0.200 | 0.90 |" in text
    assert "| fitted | 30.0 | 80.0 |" in text and "| real test digits |" in text and "| 0.088 | 0.67 |" in text
    assert f"- fitted: `python -m launch.fit_prior --workdir={trained} --out={fitted} --num_components=512`" in text
    assert "- trained: `python -m launch.train --config=launch/configs/vae.py" in text
