"""Training: pure state and steps, and the imperative loop.

* :mod:`~jaxspike.train.state` - :class:`TrainState`, seed streams;
* :mod:`~jaxspike.train.steps` - ``make_train_step`` and objectives (pure);
* :mod:`~jaxspike.train.io` - run-folder files and orbax checkpoints;
* :mod:`~jaxspike.train.resume` - signals, config checks and epoch checkpoints for resuming;
* :mod:`~jaxspike.train.loop` - :func:`train`, devices, resume, evaluation.
"""

from jaxspike.train.state import TrainState, SeedStreams, seed_streams, data_seed, create_train_state
from jaxspike.train.steps import (
    Objective,
    Program,
    make_train_step,
    make_sweep_step,
    make_vae_objective,
    make_gan_objective,
    summarize_terms,
)
from jaxspike.train.loop import (
    ConfigError,
    NonFiniteLossError,
    TrainingInterrupted,
    TrainResult,
    train,
    load_trained,
    generate_samples,
    make_mesh,
    make_objective,
    make_gan_models,
    make_optimizer,
    make_program,
    validate_config,
    parse_seeds,
    initialize_distributed,
)

__all__ = [
    "TrainState",
    "SeedStreams",
    "seed_streams",
    "data_seed",
    "create_train_state",
    "Objective",
    "make_train_step",
    "make_sweep_step",
    "Program",
    "make_vae_objective",
    "make_gan_objective",
    "summarize_terms",
    "ConfigError",
    "NonFiniteLossError",
    "TrainingInterrupted",
    "TrainResult",
    "train",
    "load_trained",
    "generate_samples",
    "make_mesh",
    "make_objective",
    "make_gan_models",
    "make_optimizer",
    "make_program",
    "validate_config",
    "parse_seeds",
    "initialize_distributed",
]
