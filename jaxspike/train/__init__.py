"""The training system: it runs any model family's objective and knows no model.

* :mod:`~jaxspike.train.config` - the loop's own config fields (:func:`base_config`) and their checks;
* :mod:`~jaxspike.train.state` - seed streams, stacking states over seeds;
* :mod:`~jaxspike.train.io` - run-folder files and orbax checkpoints;
* :mod:`~jaxspike.train.resume` - signals, config checks and epoch checkpoints for resuming;
* :mod:`~jaxspike.train.loop` - :func:`train`, devices, resume, evaluation.
"""

from jaxspike.objective import ConfigError
from jaxspike.train.config import base_config, parse_seeds, validate
from jaxspike.train.loop import (
    NonFiniteLossError,
    TrainingInterrupted,
    TrainResult,
    evaluate_run,
    generate_samples,
    initialize_distributed,
    load_splits,
    load_trained,
    make_mesh,
    train,
)
from jaxspike.train.state import SeedStreams, data_seed, seed_streams

__all__ = [
    "ConfigError",
    "base_config",
    "parse_seeds",
    "validate",
    "NonFiniteLossError",
    "TrainingInterrupted",
    "TrainResult",
    "evaluate_run",
    "generate_samples",
    "initialize_distributed",
    "load_splits",
    "load_trained",
    "make_mesh",
    "train",
    "SeedStreams",
    "data_seed",
    "seed_streams",
]
