"""The training system's own config fields: their defaults, in one place, and their checks.

A run config is :func:`base_config` plus the sections its model family reads
(``model``, ``loss``, ``optimizer``: checked by the family, see
:mod:`jaxspike.families`). The fields here are the same for every family.
"""

from __future__ import annotations

from typing import Any

import ml_collections

from jaxspike import data as data_lib
from jaxspike.objective import ConfigError, is_int, require

__all__ = ["base_config", "validate", "parse_seeds", "MODE_COLLAPSE_ENTROPY", "RESUME_KEYS"]

MODE_COLLAPSE_ENTROPY = 1.5  # nats; ln 10 = 2.30 is a uniform spread over 10 classes
# Config sections that must match for a run folder to be resumed.
RESUME_KEYS = ("data", "model", "loss", "optimizer", "batch_size", "seed", "seeds")


def base_config() -> ml_collections.ConfigDict:
    """Every field the training loop reads, with its default."""
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.seeds = ""  # comma-separated seeds ("0,1,2,3") train a vmapped sweep; "" = one run of `seed`

    config.data = ml_collections.ConfigDict()
    config.data.name = "mnist5k"
    config.data.data_dir = ""  # TFDS data_dir ("" = TFDS default); unused by mnist5k
    config.data.binarize = False
    config.data.max_examples = 0  # train/test on the first N images of each split (0 = all)
    # Screening: train on train_fit and score (eval/*, test/*) on the validation split held out of
    # the training digits, never on the test split (mnist5k: 40 per class).
    config.data.validation = False

    config.batch_size = 128  # global batch, split over the devices
    config.total_steps = 3000
    config.num_devices = 0  # 0 = all devices of all processes

    config.log_every = 50
    config.checkpoint_every = 500
    config.keep_checkpoints = 3
    config.sample_every = 1000  # PNG grids; the last step always writes one; 0 = last step only
    config.num_grid = 64  # images per PNG grid; 0 = no grids
    config.eval_every = 0  # sample quality + energy report every N steps and at the end; 0 = off
    config.eval_num_samples = 1000
    config.eval_seed = 0  # noise of sample grids and evaluation (fixed across steps)
    config.mode_collapse_entropy = MODE_COLLAPSE_ENTROPY  # flag samples whose class entropy falls below (nats)
    config.progress = True
    return config


def parse_seeds(seeds: Any) -> list[int]:
    """``"0,1,2,3"`` (or a sequence of ints) -> ``[0, 1, 2, 3]``; ``""`` -> ``[]``."""
    if isinstance(seeds, (list, tuple)):
        parts = [str(s) for s in seeds]
    else:
        parts = [p.strip() for p in str(seeds or "").split(",") if p.strip()]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise ConfigError(f"--seeds / config.seeds must be comma-separated non-negative integers, got {seeds!r}") from None
    if any(v < 0 for v in values):
        raise ConfigError(f"--seeds / config.seeds must be non-negative, got {seeds!r}")
    if len(set(values)) != len(values):
        raise ConfigError(f"--seeds / config.seeds lists a seed twice: {seeds!r}")
    return values


def validate(config: ml_collections.ConfigDict) -> None:
    """Checks the loop's fields; raises :class:`ConfigError` naming the first missing or unusable one."""
    missing = [k for k in base_config() if k not in config]
    missing += [f"data.{k}" for k in base_config().data if "data" in config and k not in config.data]
    if missing:
        raise ConfigError(f"config lacks the training field(s) {', '.join(missing)} "
                          "(start from jaxspike.train.base_config())")
    known = set(base_config()) | {"model", "loss", "optimizer"}
    unknown = sorted(set(config) - known)
    if unknown:
        raise ConfigError(f"config.{unknown[0]}: unknown field (the loop reads {', '.join(sorted(base_config()))}; "
                          "a family reads model, loss and optimizer)")
    require(config.data.name in data_lib.DATASETS, "data.name", config.data.name,
            f"unknown dataset; supported: {', '.join(data_lib.DATASETS)}")
    for field, low in (("batch_size", 1), ("total_steps", 1), ("log_every", 1), ("checkpoint_every", 1),
                       ("keep_checkpoints", 1), ("num_grid", 0), ("sample_every", 0), ("eval_every", 0),
                       ("num_devices", 0), ("seed", 0), ("eval_seed", 0)):
        require(is_int(config[field]) and config[field] >= low, field, config[field], f"must be an int >= {low}")
    require(isinstance(config.data.validation, bool), "data.validation", config.data.validation, "must be True or False")
    require(not config.data.validation or config.data.name == "mnist5k", "data.validation", config.data.validation,
            "a validation split exists for mnist5k only")
    require(is_int(config.data.max_examples) and config.data.max_examples >= 0, "data.max_examples",
            config.data.max_examples, "must be an int >= 0 (0 = all)")
    if config.eval_every:
        require(config.eval_num_samples >= 10, "eval_num_samples", config.eval_num_samples, "evaluation needs >= 10 samples")
    require(config.mode_collapse_entropy >= 0, "mode_collapse_entropy", config.mode_collapse_entropy, "must be >= 0 nats")
    parse_seeds(config.seeds)
