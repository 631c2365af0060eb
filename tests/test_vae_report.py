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
