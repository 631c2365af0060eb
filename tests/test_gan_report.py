"""launch.gan_report's row descriptions and target check (no training: milliseconds)."""

from __future__ import annotations

import pytest

from launch import gan_report
from launch.configs import gan as gan_config


def _config(variant=None, **model):
    config = gan_config.get_config(variant).to_dict()
    config["model"].update(model)
    return config


def test_describe_names_the_analog_twins_noise():
    assert gan_report.describe(_config("analog"))[0] == "analog (Gaussian noise)"
    assert gan_report.describe(_config("analog", noise="uniform"))[0] == "analog (U(0,1) noise)"
    assert gan_report.describe(_config("analog", noise="binary"))[0] == "analog (binary noise)"


def test_describe_shows_a_generator_with_its_own_T():
    assert gan_report.describe(_config())[2] == "8"
    config = _config()
    config["model"]["generator"]["num_steps"] = 16
    assert gan_report.describe(config)[2] == "G 16, D 8"


def _summary(fid, energy_uj, step=100):
    return {"eval/fid": fid, "eval/class_entropy": 2.25, "eval/recall": 0.6, "energy_uj": energy_uj, "step": step}


def test_target_check_verdicts_follow_the_numbers():
    lines = gan_report._target_lines([_summary(20.0, 0.3)], [_summary(17.0, 2.5)])
    assert "20.0 vs 17.0" in lines[0] and "**missed**" in lines[0]
    assert "**met**" in lines[1] and "**met**" in lines[2] and "**met**" in lines[3]
    lines = gan_report._target_lines([_summary(15.0, 1.0), _summary(17.0, 1.0)], [_summary(17.0, 2.5)])
    assert "16.0 vs 17.0" in lines[0] and "**met**" in lines[0]
    assert "**missed**" in lines[3]  # 1.0 uJ > 2.5 / 3


def test_target_check_refuses_different_steps():
    with pytest.raises(ValueError, match="same step"):
        gan_report._target_lines([_summary(20.0, 0.3, step=100)], [_summary(17.0, 2.5, step=200)])
