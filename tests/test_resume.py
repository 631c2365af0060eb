"""jaxspike.train.resume: config comparison and the epoch checkpoints of the local-learning launchers."""

from __future__ import annotations

import logging

import jax.numpy as jnp
import numpy as np
import pytest

from jaxspike.train import resume


def test_config_diffs_names_each_differing_leaf():
    saved = {"net": {"c1": 30, "c2": 100}, "epochs": [2, 2, 60], "seed": 0, "command": "a"}
    new = {"net": {"c1": 30, "c2": 250}, "epochs": (2, 2, 60), "seed": 1, "command": "b"}
    assert resume.config_diffs(saved, new, ["net", "epochs", "seed"]) == [
        "net.c2: saved 100 != new 250",
        "seed: saved 0 != new 1",
    ]  # a tuple equals the list JSON gave back
    assert "command: saved 'a' != new 'b'" in resume.config_diffs(saved, new)
    assert resume.config_diffs(saved, dict(saved)) == []


def _state(value):
    return {"w": jnp.full((3, 2), value, jnp.float32), "scales": jnp.array([0.9, 0.1]), "n": jnp.asarray(value, jnp.int32)}


def test_epoch_checkpoints_restore_the_newest_and_skip_a_corrupt_one(tmp_path, caplog):
    config = {"seed": 0, "epochs": (1, 2), "command": "x"}
    ckpts = resume.EpochCheckpoints(str(tmp_path), config)
    assert not ckpts.resuming
    step, state = ckpts.restore(_state(0))
    assert step == 0 and float(state["w"][0, 0]) == 0.0  # nothing saved: the template back
    for s in (1, 2, 3):
        ckpts.save(s, _state(s))
    ckpts.close()
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["2", "3"]  # the last two kept

    again = resume.EpochCheckpoints(str(tmp_path), {**config, "command": "y"})  # the command may differ
    assert again.resuming
    step, state = again.restore(_state(0))
    assert step == 3
    np.testing.assert_array_equal(state["w"], np.full((3, 2), 3.0))
    assert int(state["n"]) == 3 and state["n"].dtype == jnp.int32
    again.close()

    for path in (tmp_path / "checkpoints" / "3").rglob("*"):
        if path.is_file():
            path.write_bytes(b"garbage")
    third = resume.EpochCheckpoints(str(tmp_path), config)
    with caplog.at_level(logging.WARNING, logger="jaxspike.train"):
        step, state = third.restore(_state(0))
    assert step == 2 and int(state["n"]) == 2
    assert any("step 3" in r.getMessage() for r in caplog.records)
    assert (tmp_path / "checkpoints" / "corrupt_3").is_dir()
    third.save(3, _state(30))  # the step is free again
    third.close()


def test_epoch_checkpoints_refuse_another_config(tmp_path):
    config = {"seed": 0, "dropout": 0.25, "num_samples": 100, "command": "x"}
    ckpts = resume.EpochCheckpoints(str(tmp_path), config)
    ckpts.save(1, _state(1))
    ckpts.close()
    with pytest.raises(ValueError, match=r"different config \(dropout: saved 0.25 != new 0.5\)"):
        resume.EpochCheckpoints(str(tmp_path), {**config, "dropout": 0.5})
    # Fields named in ``ignore`` may change.
    resume.EpochCheckpoints(str(tmp_path), {**config, "num_samples": 10}, ignore=("command", "num_samples")).close()
