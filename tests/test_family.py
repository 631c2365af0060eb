"""A model family defined here, in a few lines, trains through the library's loop unchanged.

The toy family learns one image (a logit per pixel) by regressing the
training digits, with a keyed noise term so that the step's key matters;
it plugs in by name (:func:`jaxspike.families.register`) and nothing under
``jaxspike/train/`` knows it.
"""

from __future__ import annotations

import os
import pathlib
import re

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from jaxspike import families, objective, train
from jaxspike.train import io


def build_toy(config, image_shape):
    """``config.model.name = "toy"``: one learned image, drawn with pixel noise of ``model.noise``."""
    objective.require(config.model.noise >= 0, "model.noise", config.model.noise, "must be >= 0")

    def init(key, batch):
        return {"logits": 0.1 * jax.random.normal(key, image_shape)}

    def sample(params, key, num):
        noise = config.model.noise * jax.random.normal(key, (num,) + image_shape)
        return jnp.clip(jax.nn.sigmoid(params["logits"]) + noise, 0.0, 1.0)

    def loss(params, batch, key):
        value = jnp.mean((batch["image"] - sample(params, key, batch["image"].shape[0])) ** 2)
        return value, {"loss": value}

    return objective.loss_objective(
        init, loss, optax.adam(config.optimizer.learning_rate),
        sample=sample,
        energy=lambda params, key, num: {},
        evaluate=lambda params, images, key: {"mse": jnp.mean((images - sample(params, key, images.shape[0])) ** 2)},
        figures=lambda params, key, images: {"samples": sample(params, key, images.shape[0])},
    )


def toy_config(**overrides) -> ml_collections.ConfigDict:
    config = train.base_config()
    config.update(batch_size=8, total_steps=6, log_every=1, checkpoint_every=2, sample_every=0, num_grid=4,
                  num_devices=1, progress=False)
    config.model = ml_collections.ConfigDict({"name": "toy", "noise": 0.05})
    config.optimizer = ml_collections.ConfigDict({"learning_rate": 0.05})
    config.update(overrides)
    return config


@pytest.fixture(scope="module", autouse=True)
def toy_family():
    families.register("toy", build_toy)
    yield


def _rows(workdir):
    return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in io.read_metrics(os.path.join(workdir, "metrics.jsonl"))]


def test_toy_family_trains_and_resumes_through_the_loop(tmp_path):
    whole = train.train(toy_config(), str(tmp_path / "whole"))
    rows = _rows(str(tmp_path / "whole"))
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert rows[-1]["loss"] < rows[0]["loss"]  # it learns
    assert os.path.exists(tmp_path / "whole" / "samples_6.png")
    # Cut after 4 steps (a checkpoint at 4), then the same command resumes to 6.
    train.train(toy_config(total_steps=4), str(tmp_path / "cut"))
    resumed = train.train(toy_config(), str(tmp_path / "cut"))
    assert _rows(str(tmp_path / "cut")) == rows
    for a, b in zip(jax.tree_util.tree_leaves(whole.state), jax.tree_util.tree_leaves(resumed.state)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # The trained run loads and samples like any family's.
    _, obj, state, shape = train.load_trained(str(tmp_path / "whole"))
    assert obj.sample(state, jax.random.key(0), 3).shape == (3,) + tuple(shape)


def test_toy_family_sweep_and_held_out_scores(tmp_path, monkeypatch):
    from jaxspike import metrics as metrics_lib

    monkeypatch.setattr(metrics_lib, "evaluate_samples", lambda samples, dataset, **kw: {"fid": 1.0})
    config = toy_config(seeds="0,1", total_steps=2, eval_every=2, eval_num_samples=10)
    result = train.train(config, str(tmp_path))
    for seed in (0, 1):
        last = _rows(str(tmp_path / f"seed_{seed}"))[-1]
        assert last["eval/fid"] == 1.0 and 0.0 < last["test/mse"] < 1.0
        assert not any(k.startswith("energy/") for k in last)  # the toy reports no energy
    assert [int(s) for s in result.state.step] == [2, 2]


def test_family_errors_name_the_field(tmp_path):
    with pytest.raises(objective.ConfigError, match=r"config.model.noise=-1.0: must be >= 0"):
        train.train(toy_config(model=ml_collections.ConfigDict({"name": "toy", "noise": -1.0})), str(tmp_path))
    assert not os.listdir(tmp_path)  # nothing was written
    with pytest.raises(objective.ConfigError, match=r"config.model.name='nope': unknown model; supported: .*toy"):
        train.train(toy_config(model=ml_collections.ConfigDict({"name": "nope"})), str(tmp_path))
    with pytest.raises(ValueError, match="built-in"):
        families.register("gan", build_toy)


def test_the_training_system_names_no_model_family():
    """jaxspike/train/ is generic: no family or route is named in it."""
    root = pathlib.Path(__file__).resolve().parents[1] / "jaxspike" / "train"
    found = [f"{p.name}:{i}" for p in root.glob("*.py") for i, line in enumerate(p.read_text().splitlines(), 1)
             if re.search(r"vae|gan|rbm|stdp", line, re.I)]
    assert not found, found
