"""Model families: each turns its config into a :class:`jaxspike.objective.Objective`.

A family is a module with ``build(config, image_shape) -> Objective`` that
checks every field it reads (``config.model``, ``config.loss``,
``config.optimizer``) and raises :class:`jaxspike.objective.ConfigError`
naming the first bad one, before the training loop writes anything.
``config.model.name`` picks the family:

====================  ==================================  ============================================
``model.name``        module                              trains
====================  ==================================  ============================================
``fc_vae``            :mod:`jaxspike.families.vae`        spiking VAE, Bernoulli spike latent
``analog_vae``        :mod:`jaxspike.families.vae`        its analog twin
``gan``               :mod:`jaxspike.families.gan`        spiking GAN (spiking or analog D)
``analog_gan``        :mod:`jaxspike.families.gan`        its analog twin
``diffusion``         :mod:`jaxspike.families.diffusion`  spiking U-Net denoiser, DDPM / DDIM sampling
``analog_diffusion``  :mod:`jaxspike.families.diffusion`  its analog twin
====================  ==================================  ============================================

A new family needs no change to the training loop: give its module's
``build`` a name with :func:`register` (or add it to the table above) and
set ``config.model.name``.
"""

from __future__ import annotations

import importlib
from typing import Callable

from jaxspike.objective import ConfigError, Objective

__all__ = ["build", "register", "names", "upgrade"]

Builder = Callable[..., Objective]

_MODULES = {
    "fc_vae": "jaxspike.families.vae",
    "analog_vae": "jaxspike.families.vae",
    "gan": "jaxspike.families.gan",
    "analog_gan": "jaxspike.families.gan",
    "diffusion": "jaxspike.families.diffusion",
    "analog_diffusion": "jaxspike.families.diffusion",
}
_REGISTERED: dict[str, Builder] = {}


def register(name: str, build: Builder) -> None:
    """Makes ``config.model.name = name`` train with ``build(config, image_shape) -> Objective``."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"a family needs a non-empty name, got {name!r}")
    if name in _MODULES:
        raise ValueError(f"{name!r} is a built-in model name; choose another")
    _REGISTERED[name] = build


def names() -> tuple[str, ...]:
    """Every model name a config may give."""
    return tuple(_MODULES) + tuple(_REGISTERED)


def builder(name: str) -> Builder:
    """The ``build`` function of ``config.model.name = name``."""
    if name in _REGISTERED:
        return _REGISTERED[name]
    if name not in _MODULES:
        raise ConfigError(f"config.model.name={name!r}: unknown model; supported: {', '.join(names())}")
    return importlib.import_module(_MODULES[name]).build


def build(config, image_shape: tuple[int, ...]) -> Objective:
    """The objective of ``config`` for images of ``image_shape`` (``(H, W, C)``).

    A field the family reads but the config lacks is a :class:`ConfigError`
    naming it.
    """
    try:
        name = config.model.name
    except AttributeError:
        raise ConfigError("config.model.name is missing: it names the model family") from None
    build_fn = builder(name)
    try:
        return build_fn(config, tuple(int(d) for d in image_shape))
    except (AttributeError, KeyError) as err:
        raise ConfigError(f"config (model {name!r}) lacks a field the model needs: {err}") from None


# Neuron fields that older configs kept on config.model, now under config.model.neuron.
_NEURON_FIELDS = {"beta": "beta", "threshold": "threshold", "surrogate": "surrogate", "learn_neuron": "learn"}


def upgrade(saved: dict) -> dict:
    """A run folder's saved config (``config.json``) of an older layout in today's field names.

    The neuron settings moved from ``model`` to ``model.neuron`` (``slope``
    becomes the named parameter of the surrogate it shaped: ``alpha`` for
    arctan), and ``frontend_cache`` into ``model``. Today's configs pass
    through unchanged.
    """
    from jaxspike import surrogates

    saved = dict(saved)
    model = dict(saved.get("model", {}))
    if "frontend_cache" in saved:
        model.setdefault("frontend_cache", saved.pop("frontend_cache"))
    moved = {new: model.pop(old) for old, new in _NEURON_FIELDS.items() if old in model}
    if "slope" in model:
        surrogate = moved.get("surrogate", "fast_sigmoid")
        moved[surrogates.PARAMETER.get(surrogate, "slope")] = model.pop("slope")
    if moved:
        model["neuron"] = {**moved, **model.get("neuron", {})}
    if model:
        saved["model"] = model
    return saved
