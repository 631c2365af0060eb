"""Launch configs (``ml_collections``), one file per model family, and what they share."""

from __future__ import annotations

import dataclasses

import ml_collections

from jaxspike import cells


def neuron(**fields) -> ml_collections.ConfigDict:
    """Every field of :class:`jaxspike.cells.Neuron`, its defaults overridden by ``fields``
    (so each can be set from the command line: ``--config.model.neuron.alpha=4``)."""
    return ml_collections.ConfigDict(dataclasses.asdict(cells.Neuron(**fields)))


def variants(arg: str | None, allowed: tuple[str, ...]) -> list[str]:
    """The variants of a config argument like ``"analog+smoke"``, each checked against ``allowed``."""
    chosen = [v for v in (arg or "").split("+") if v]
    for v in chosen:
        if v not in allowed:
            raise ValueError(f"unknown config variant {v!r}; use one of {', '.join(allowed)} (joined by '+')")
    return chosen


def adam(learning_rate: float, *, grad_clip: float = 0.0, lr_decay_from: float = 1.0) -> ml_collections.ConfigDict:
    """``config.optimizer`` for Adam (``name="adamw"`` uses ``weight_decay``), every field settable from the command line."""
    optimizer = ml_collections.ConfigDict()
    optimizer.name = "adam"
    optimizer.learning_rate = learning_rate
    optimizer.b1 = 0.9
    optimizer.b2 = 0.999
    optimizer.weight_decay = 1e-4  # adamw only
    optimizer.grad_clip = grad_clip  # global-norm clipping, 0 = off
    optimizer.lr_decay_from = lr_decay_from  # constant until this fraction of total_steps, then linear to 0
    return optimizer


def shrink(config: ml_collections.ConfigDict) -> None:
    """The ``smoke`` variants' loop settings: 4 steps of batch 8, everything logged, no evaluation."""
    config.batch_size = 8
    config.total_steps = 4
    config.log_every = 1
    config.checkpoint_every = 2
    config.sample_every = 2
    config.num_grid = 4
    config.eval_every = 0  # evaluation trains a classifier on first use: not in smoke runs
    config.eval_num_samples = 16
    config.progress = False


def use_full_data(config: ml_collections.ConfigDict, name: str) -> None:
    """Points ``config`` at the TFDS set ``name`` with the long-run schedule of the full-data variants.

    ``celeb_a`` (~163k images of 64x64x3) does not fit in memory whole: it
    trains on its first 50,000 images (2.5 GB as float32).
    """
    config.data.name = name
    config.total_steps = 50_000
    config.checkpoint_every = 2000
    config.sample_every = 2000
    config.eval_every = 5000
    config.eval_num_samples = 5000
    if name == "celeb_a":
        config.data.max_examples = 50_000
