"""The diffusion family: a spiking U-Net denoiser (``model.name = "diffusion"``) and its analog twin (``"analog_diffusion"``).

Denoising diffusion (Sohl-Dickstein et al. 2015; Ho et al. 2020, "Denoising
diffusion probabilistic models"): images ``x_0`` in [0, 1] are mapped to
[-1, 1] and noised by the forward process
``q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I)``, whose marginal
is ``q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I)`` with
``abar_t = prod_{s <= t} (1 - beta_s)``. The denoiser
``eps_theta(x_t, t)`` (:class:`jaxspike.models.unet.SpikingUNet` or
:class:`~jaxspike.models.unet.AnalogUNet`) is trained on the
epsilon-prediction loss ``E_{t, x_0, eps} ||eps - eps_theta(x_t, t)||^2``
(Ho et al. 2020, eq. 14), ``t`` uniform. Samples start from ``N(0, I)`` and
take ``sample_steps`` denoising steps on an evenly spaced subsequence of the
``timesteps`` steps:

* ``"ddpm"``: ancestral sampling from the posterior
  ``q(x_{t'} | x_t, x_0)`` of the respaced process (Ho et al. 2020, eqs. 6-7;
  respacing as Nichol & Dhariwal 2021, "Improved denoising diffusion
  probabilistic models", sec. 4);
* ``"ddim"``: the non-Markovian sampler of Song, Meng & Ermon 2021,
  "Denoising diffusion implicit models", eq. 12, with noise ``eta``
  (0: deterministic; 1: the same distribution as ``"ddpm"``).

Schedules: ``"linear"`` betas (Ho et al. 2020) and ``"cosine"``
``abar_t`` (Nichol & Dhariwal 2021, eq. 17). Samples come from an
exponential moving average of the weights (:class:`DiffusionState`).

Everything here is a pure function with explicit keys; step index ``i`` in
``0 .. timesteps - 1`` stands for the process's step ``t = i + 1``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxspike import cells
from jaxspike import energy as energy_lib
from jaxspike import objective as obj
from jaxspike.models.unet import AnalogUNet, SpikingUNet

Array = jax.Array
Denoiser = Callable[[Array, Array], tuple[Array, dict]]

__all__ = [
    "SAMPLERS",
    "SCHEDULES",
    "Diffusion",
    "DiffusionState",
    "Schedule",
    "build",
    "cosine_schedule",
    "ddim_step",
    "ddpm_step",
    "ema_update",
    "eps_loss",
    "linear_schedule",
    "make_model",
    "make_schedule",
    "per_call",
    "q_sample",
    "sample",
    "sampling_steps",
    "to_images",
    "to_process",
]

SCHEDULES = ("linear", "cosine")
SAMPLERS = ("ddpm", "ddim")
MAX_BETA = 0.999  # the cosine schedule's clip near t = T (Nichol & Dhariwal 2021)


# ---------------------------------------------------------------------------
# The process.


class Schedule(NamedTuple):
    """A noise schedule: ``betas [N]`` and ``alpha_bars [N]`` (``abar_i = prod_{j <= i} (1 - beta_j)``), float32."""

    betas: Array
    alpha_bars: Array


def _schedule(betas: np.ndarray) -> Schedule:
    betas = np.asarray(betas, np.float64)
    return Schedule(jnp.asarray(betas, jnp.float32), jnp.asarray(np.cumprod(1.0 - betas), jnp.float32))


def linear_schedule(timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> Schedule:
    """Betas linear from ``beta_start`` to ``beta_end`` over ``timesteps`` steps (Ho et al. 2020: 1e-4 to 0.02 over 1000)."""
    return _schedule(np.linspace(beta_start, beta_end, timesteps, dtype=np.float64))


def cosine_schedule(timesteps: int, s: float = 0.008, max_beta: float = MAX_BETA) -> Schedule:
    """``abar_t = f(t) / f(0)``, ``f(t) = cos((t / N + s) / (1 + s) pi / 2)^2``; betas clipped at ``max_beta``.

    Nichol & Dhariwal 2021, eq. 17: the signal decays evenly in
    log-SNR, rather than being destroyed well before ``t = N`` as with linear
    betas at small image sizes.
    """
    steps = np.arange(timesteps + 1, dtype=np.float64) / timesteps
    f = np.cos((steps + s) / (1.0 + s) * np.pi / 2.0) ** 2
    betas = np.minimum(1.0 - f[1:] / f[:-1], max_beta)
    return _schedule(betas)


def q_sample(schedule: Schedule, x0: Array, t: Array, noise: Array) -> Array:
    """A draw of ``q(x_t | x_0)``: ``sqrt(abar_t) x_0 + sqrt(1 - abar_t) noise``; ``t [B]`` step indices."""
    ab = schedule.alpha_bars[t].reshape((-1,) + (1,) * (x0.ndim - 1))
    return jnp.sqrt(ab) * x0 + jnp.sqrt(1.0 - ab) * noise


def eps_loss(denoise: Denoiser, schedule: Schedule, x0: Array, key: Array) -> tuple[Array, dict]:
    """Per-example epsilon-prediction loss ``mean_pixels (eps - eps_theta(x_t, t))^2`` (Ho et al. 2020, eq. 14).

    ``x0 [B, H, W, C]`` in [-1, 1]; ``t`` uniform over the steps and the noise
    are drawn from ``key``. Returns ``([B] losses, denoiser aux)``.
    """
    k_t, k_noise = jax.random.split(key)
    num = schedule.betas.shape[0]
    t = jax.random.randint(k_t, (x0.shape[0],), 0, num)
    noise = jax.random.normal(k_noise, x0.shape, x0.dtype)
    eps, aux = denoise(q_sample(schedule, x0, t, noise), t)
    return jnp.mean((eps - noise) ** 2, axis=tuple(range(1, x0.ndim))), aux


def sampling_steps(timesteps: int, num: int) -> np.ndarray:
    """``num`` step indices evenly spaced from ``timesteps - 1`` down to 0, descending (Song et al. 2021, sec. 4.2)."""
    if not 1 <= num <= timesteps:
        raise ValueError(f"sampling takes 1 to timesteps={timesteps} steps, got {num}")
    return np.round(np.linspace(timesteps - 1, 0, num)).astype(np.int32)


def _predicted_x0(x_t, eps, ab_t, clip: bool):
    """``x_0`` implied by ``eps`` (optionally clipped to [-1, 1]) and the ``eps`` consistent with it."""
    x0 = (x_t - jnp.sqrt(1.0 - ab_t) * eps) / jnp.sqrt(ab_t)
    if clip:
        x0 = jnp.clip(x0, -1.0, 1.0)
        eps = (x_t - jnp.sqrt(ab_t) * x0) / jnp.sqrt(1.0 - ab_t)
    return x0, eps


def ddpm_step(x_t: Array, eps: Array, ab_t: Array, ab_prev: Array, noise: Array, *, clip: bool = True) -> Array:
    """One ancestral step ``x_t -> x_{t'}`` (``t' < t``), a draw of the posterior ``q(x_{t'} | x_t, x_0)``.

    With ``alpha = abar_t / abar_t'`` and ``beta = 1 - alpha`` (the respaced
    process's step) and ``x_0`` predicted from ``eps`` (Ho et al. 2020, eqs. 6-7)::

        mean = sqrt(abar_t') beta / (1 - abar_t) x_0 + sqrt(alpha) (1 - abar_t') / (1 - abar_t) x_t
        var  = (1 - abar_t') / (1 - abar_t) beta

    ``ab_prev = 1`` (the last step) gives ``x_0``.
    """
    x0, _ = _predicted_x0(x_t, eps, ab_t, clip)
    alpha = ab_t / ab_prev
    beta = 1.0 - alpha
    mean = (jnp.sqrt(ab_prev) * beta * x0 + jnp.sqrt(alpha) * (1.0 - ab_prev) * x_t) / (1.0 - ab_t)
    var = (1.0 - ab_prev) / (1.0 - ab_t) * beta
    return mean + jnp.sqrt(var) * noise


def ddim_step(x_t: Array, eps: Array, ab_t: Array, ab_prev: Array, noise: Array, *, eta: float = 0.0,
              clip: bool = True) -> Array:
    """One DDIM step ``x_t -> x_{t'}`` (Song et al. 2021, eqs. 12 and 16)::

        x_t' = sqrt(abar_t') x_0 + sqrt(1 - abar_t' - sigma^2) eps + sigma noise,
        sigma = eta sqrt((1 - abar_t') / (1 - abar_t)) sqrt(1 - abar_t / abar_t')

    ``eta = 0`` is deterministic; ``eta = 1`` equals :func:`ddpm_step`.
    """
    x0, eps = _predicted_x0(x_t, eps, ab_t, clip)
    sigma = eta * jnp.sqrt((1.0 - ab_prev) / (1.0 - ab_t) * (1.0 - ab_t / ab_prev))
    return jnp.sqrt(ab_prev) * x0 + jnp.sqrt(jnp.maximum(1.0 - ab_prev - sigma**2, 0.0)) * eps + sigma * noise


def sample(denoise: Denoiser, schedule: Schedule, key: Array, shape: tuple[int, ...], *, sampler: str = "ddim",
           num_steps: int = 50, eta: float = 0.0, clip: bool = True, keep: int = 0):
    """Draws ``x_0 [B, H, W, C]`` in [-1, 1] with ``num_steps`` denoiser calls.

    Args:
      denoise: ``(x_t [B, ...], t [B]) -> (eps, aux)``.
      schedule: the noise schedule the denoiser was trained on.
      key: ``x_T`` and the steps' noise are drawn from it.
      shape: ``(B, H, W, C)``.
      sampler: ``"ddpm"`` or ``"ddim"`` (see the module docstring).
      num_steps: denoiser calls ``K`` (evenly spaced steps, :func:`sampling_steps`).
      eta: DDIM's noise (``"ddim"`` only).
      clip: clip each predicted ``x_0`` to [-1, 1].
      keep: also return this many predicted-``x_0`` snapshots, evenly spaced
        over the calls (0 = none).

    Returns:
      ``(x_0, aux)``: ``aux`` is the denoiser's aux of every call stacked on a
      leading ``[K]`` axis, plus ``"x0_path" [keep, B, ...]`` when ``keep``.
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
    ts = sampling_steps(int(schedule.betas.shape[0]), num_steps)
    ab = schedule.alpha_bars
    ab_t = ab[ts]
    ab_prev = jnp.concatenate([ab[ts[1:]], jnp.ones((1,), ab.dtype)])
    k_init, k_steps = jax.random.split(key)
    x_init = jax.random.normal(k_init, shape)

    def body(x_t, inputs):
        t, a_t, a_prev, k = inputs
        eps, aux = denoise(x_t, jnp.full((shape[0],), t, jnp.int32))
        noise = jax.random.normal(k, shape)
        if sampler == "ddpm":
            x_prev = ddpm_step(x_t, eps, a_t, a_prev, noise, clip=clip)
        else:
            x_prev = ddim_step(x_t, eps, a_t, a_prev, noise, eta=eta, clip=clip)
        x0, _ = _predicted_x0(x_t, eps, a_t, clip)
        return x_prev, (aux, x0 if keep else None)

    x0, (aux, path) = jax.lax.scan(body, x_init, (jnp.asarray(ts), ab_t, ab_prev, jax.random.split(k_steps, len(ts))))
    if keep:
        aux = {**aux, "x0_path": path[np.round(np.linspace(0, len(ts) - 1, keep)).astype(int)]}
    return x0, aux


def to_process(images: Array) -> Array:
    """Images in [0, 1] -> the process's [-1, 1]."""
    return 2.0 * images - 1.0


def to_images(x: Array) -> Array:
    """The process's [-1, 1] -> images in [0, 1] (clipped)."""
    return jnp.clip((x + 1.0) / 2.0, 0.0, 1.0)


def per_call(aux: dict) -> dict:
    """Stacked ``[K, B]`` layer counts of a sampler run -> ``{"call_<k>": counts of call k}``.

    The energy of a generated image is the sum over its ``K`` denoiser calls;
    kept per call, each call's layers keep their own shapes in the
    memory-inclusive energy model (:func:`jaxspike.energy.layer_shapes`),
    which prices one pass of each layer.
    """
    num = jax.tree_util.tree_leaves(aux)[0].shape[0]
    width = len(str(num - 1))
    return {f"call_{k:0{width}d}": jax.tree_util.tree_map(lambda a, k=k: a[k], aux) for k in range(num)}


def ema_update(ema, params, decay: float, step: Array):
    """Exponential moving average of the weights with a warm-up.

    ``ema <- d ema + (1 - d) params``, ``d = min(decay, (1 + n) / (10 + n))``
    after ``n`` updates (the ``num_updates`` warm-up of TensorFlow's
    ``ExponentialMovingAverage``), so short runs are not dominated by the
    initial weights. Ho et al. 2020 sample from an EMA of decay 0.9999.
    """
    n = jnp.asarray(step, jnp.float32)
    d = jnp.minimum(decay, (1.0 + n) / (10.0 + n))
    return jax.tree_util.tree_map(lambda e, p: d * e + (1.0 - d) * p, ema, params)


# ---------------------------------------------------------------------------
# Settings and state.


@dataclasses.dataclass(frozen=True)
class Diffusion:
    """The process settings (``config.loss``); the defaults are the library's.

    Attributes:
      schedule: ``"linear"`` or ``"cosine"``.
      timesteps: steps ``N`` of the forward process.
      beta_start, beta_end: the linear schedule's first and last beta.
      cosine_s: the cosine schedule's offset ``s``.
      sampler: ``"ddpm"`` or ``"ddim"``, used by ``sample``, the figures,
        the evaluation and the energy report.
      sample_steps: denoiser calls per generated image ``K``.
      eta: DDIM's noise (0 = deterministic).
      clip_denoised: clip each predicted ``x_0`` to [-1, 1] while sampling.
      ema_decay: decay of the weight average samples are drawn from, in [0, 1).
      spike_weight: loss per spike of the denoiser's spiking layers, per
        example and call (an activity penalty; 0 = off; spiking model only).
    """

    schedule: str = "cosine"
    timesteps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02
    cosine_s: float = 0.008
    sampler: str = "ddim"
    sample_steps: int = 50
    eta: float = 0.0
    clip_denoised: bool = True
    ema_decay: float = 0.999
    spike_weight: float = 0.0

    def __post_init__(self):
        def bad(field, what):
            raise ValueError(f"Diffusion {field}={getattr(self, field)!r}: {what}")

        if self.schedule not in SCHEDULES:
            bad("schedule", f"supported: {', '.join(SCHEDULES)}")
        if self.sampler not in SAMPLERS:
            bad("sampler", f"supported: {', '.join(SAMPLERS)}")
        if not obj.is_int(self.timesteps) or self.timesteps < 2:
            bad("timesteps", "must be an int >= 2")
        if not obj.is_int(self.sample_steps) or not 1 <= self.sample_steps <= self.timesteps:
            bad("sample_steps", f"must be an int in [1, timesteps={self.timesteps}]")
        if not 0.0 < self.beta_start < self.beta_end < 1.0:
            bad("beta_start", f"needs 0 < beta_start < beta_end={self.beta_end} < 1")
        if not self.cosine_s > 0:
            bad("cosine_s", "must be > 0")
        if not 0.0 <= self.eta <= 1.0:
            bad("eta", "must lie in [0, 1]")
        if not isinstance(self.clip_denoised, bool):
            bad("clip_denoised", "must be True or False")
        if not 0.0 <= self.ema_decay < 1.0:
            bad("ema_decay", "must lie in [0, 1)")
        if not self.spike_weight >= 0:
            bad("spike_weight", "must be >= 0 (0 = off)")


def make_schedule(process: Diffusion) -> Schedule:
    """The :class:`Schedule` of the settings."""
    if process.schedule == "linear":
        return linear_schedule(process.timesteps, process.beta_start, process.beta_end)
    return cosine_schedule(process.timesteps, process.cosine_s)


@flax.struct.dataclass
class DiffusionState:
    """The state of a diffusion objective.

    Attributes:
      step: ``int32 []`` number of optimiser updates applied so far.
      params: the denoiser's parameters.
      opt_state: the optimiser state.
      ema: the moving average of ``params`` samples are drawn from.
    """

    step: Array
    params: Any
    opt_state: Any
    ema: Any


# ---------------------------------------------------------------------------
# Config -> model and objective.

_MODEL_FIELDS = ("name", "num_steps", "channels", "num_blocks", "emb_dim", "neuron", "current_norm", "readout_beta")
_NAMES = ("diffusion", "analog_diffusion")
# Layer names whose counts are not spikes of the denoiser (real-valued inputs, currents, membranes).
_SILENT = ("embed", "skip", "readout")


def make_model(config, image_shape: tuple[int, ...]) -> SpikingUNet | AnalogUNet:
    """The denoiser of ``config.model`` (checked), for images of ``image_shape``.

    The analog twin reads ``channels``, ``num_blocks``, ``emb_dim`` and
    ``current_norm`` of the same config; the spiking fields are ignored.
    """
    m = config.model
    obj.check_fields("model", m, _MODEL_FIELDS)
    obj.require(m.name in _NAMES, "model.name", m.name, f"the diffusion family trains {' or '.join(_NAMES)}")
    channels = obj.check_widths("model.channels", m.channels)
    for field, low in (("num_blocks", 1), ("emb_dim", 2)):
        obj.require(obj.is_int(m[field]) and m[field] >= low, f"model.{field}", m[field], f"must be an int >= {low}")
    obj.require(m.emb_dim % 2 == 0, "model.emb_dim", m.emb_dim, "the sinusoidal embedding needs an even size")
    obj.require(isinstance(m.current_norm, bool), "model.current_norm", m.current_norm, "must be True or False")
    factor = 2 ** (len(channels) - 1)
    obj.require(image_shape[0] % factor == 0 and image_shape[1] % factor == 0, "model.channels", channels,
                f"{len(channels)} resolutions need H and W divisible by {factor}; the images are {image_shape}")
    common = dict(channels=channels, num_blocks=int(m.num_blocks), emb_dim=int(m.emb_dim), current_norm=m.current_norm)
    if m.name == "analog_diffusion":
        return AnalogUNet(**common)
    obj.require(obj.is_int(m.num_steps) and m.num_steps >= 1, "model.num_steps", m.num_steps,
                "spike steps T per denoiser call must be an int >= 1")
    obj.require(0.0 <= m.readout_beta <= 1.0, "model.readout_beta", m.readout_beta, "must lie in [0, 1]")
    neuron = obj.build("model.neuron", cells.Neuron, dict(m.neuron))
    return SpikingUNet(num_steps=int(m.num_steps), neuron=neuron, readout_beta=float(m.readout_beta), **common)


def build(config, image_shape: tuple[int, ...]) -> obj.Objective:
    """The objective of a diffusion config (``diffusion`` or ``analog_diffusion``); every field checked.

    The state is a :class:`DiffusionState`; ``sample``, ``energy`` and
    ``figures`` use its weight average, ``evaluate`` gives the held-out
    epsilon-prediction error ``eps_mse`` of the average.
    """
    image_shape = tuple(int(d) for d in image_shape)
    model = make_model(config, image_shape)
    process = obj.build("loss", Diffusion, dict(config.loss))
    obj.require(isinstance(model, SpikingUNet) or not process.spike_weight, "loss.spike_weight", process.spike_weight,
                "the analog twin has no spikes to penalise")
    obj.validate_optimizer(config.optimizer, ("learning_rate",))
    optimizer = obj.make_optimizer(config.optimizer, total_steps=config.total_steps)
    schedule = make_schedule(process)
    x_example = jnp.zeros((2,) + image_shape, jnp.float32)
    t_example = jnp.zeros((2,), jnp.int32)
    try:  # shapes only: widths unfit for the image surface here as ConfigErrors
        abstract = jax.eval_shape(lambda k: model.init(k, x_example, t_example)["params"], jax.random.key(0))
    except (TypeError, ValueError) as err:
        raise obj.ConfigError(f"config.model: {err}") from None
    macs_per_call = None
    if isinstance(model, AnalogUNet):
        macs_per_call = energy_lib.analog_macs(model, abstract, x_example, t_example)
    return diffusion_objective(model, image_shape, schedule, process, optimizer, macs_per_call=macs_per_call)


def diffusion_objective(model, image_shape: tuple[int, ...], schedule: Schedule, process: Diffusion,
                        optimizer: optax.GradientTransformation, *, macs_per_call: float | None = None) -> obj.Objective:
    """The epsilon-prediction objective of a denoiser ``model``.

    Args:
      model: a :class:`SpikingUNet` or :class:`AnalogUNet`.
      image_shape: ``(H, W, C)`` of the images.
      schedule: the noise schedule.
      process: the sampler, EMA and loss settings.
      optimizer: an optax transformation.
      macs_per_call: the twin's multiply-accumulates per image and call
        (dot and convolution products); its energy adds the normalisation's.
    """
    spiking = isinstance(model, SpikingUNet)

    def denoiser(params) -> Denoiser:
        return lambda x_t, t: model.apply({"params": params}, x_t, t)

    def loss(params, batch: dict, key: Array):
        per_example, aux = eps_loss(denoiser(params), schedule, to_process(batch["image"]), key)
        eps_mse = jnp.mean(per_example)
        terms = {"eps_mse": eps_mse}
        value = eps_mse
        if spiking:
            spiking_layers = {k: v for k, v in aux.items() if not k.endswith(_SILENT)}
            if process.spike_weight:
                spikes = jnp.mean(sum(v["spike_count"] for v in spiking_layers.values()))
                value = value + process.spike_weight * spikes
                terms["spikes"] = spikes
            terms["aux"] = {"layers": spiking_layers}
        terms["loss"] = value
        return value, terms

    base_step = obj.make_train_step(loss, optimizer)

    def init(key: Array, batch: dict) -> DiffusionState:
        images = batch["image"]
        params = model.init(key, images, jnp.zeros((images.shape[0],), jnp.int32))["params"]
        return DiffusionState(step=jnp.zeros((), jnp.int32), params=params, opt_state=optimizer.init(params), ema=params)

    def step(state: DiffusionState, batch: dict, key: Array):
        inner, metrics = base_step(obj.TrainState(step=state.step, params=state.params, opt_state=state.opt_state),
                                   batch, key)
        ema = ema_update(state.ema, inner.params, process.ema_decay, state.step)
        return DiffusionState(step=inner.step, params=inner.params, opt_state=inner.opt_state, ema=ema), metrics

    def generate(state: DiffusionState, key: Array, num: int, keep: int = 0):
        shape = (num,) + tuple(image_shape)
        x0, aux = sample(denoiser(state.ema), schedule, key, shape, sampler=process.sampler,
                         num_steps=process.sample_steps, eta=process.eta, clip=process.clip_denoised, keep=keep)
        return to_images(x0), aux

    def sample_images(state: DiffusionState, key: Array, num: int):
        return generate(state, key, num)[0]

    def energy(state: DiffusionState, key: Array, num: int):
        # The whole generation of one image: every denoiser call of the sampler, each with its counts.
        _, aux = generate(state, key, num)
        if spiking:
            return per_call(aux)
        macs = process.sample_steps * macs_per_call + jnp.sum(aux["norm_macs"], axis=0)  # [B]
        return {"denoiser": {"macs": macs}}

    def evaluate(state: DiffusionState, images: Array, key: Array):
        per_example, _ = eps_loss(denoiser(state.ema), schedule, to_process(images), key)
        return {"eps_mse": jnp.mean(per_example)}

    def figures(state: DiffusionState, key: Array, images: Array):
        num = images.shape[0]
        samples, aux = generate(state, key, num, keep=_SNAPSHOTS)
        rows = min(num, _TRAJECTORIES)
        path = to_images(aux["x0_path"][:, :rows])  # [S, rows, H, W, C]
        return {"samples": samples, "trajectory": jnp.swapaxes(path, 0, 1)}

    return obj.Objective(init=init, step=step, sample=sample_images, energy=energy, evaluate=evaluate,
                         figures=figures, precompute=obj.no_precompute, headline=("eps_mse",))


_SNAPSHOTS = 8  # predicted-x_0 snapshots per row of the trajectory figure
_TRAJECTORIES = 16  # rows of the trajectory figure
