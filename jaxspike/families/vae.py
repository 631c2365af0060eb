"""The VAE family: the spiking VAE (``model.name = "fc_vae"``) and its analog twin (``"analog_vae"``).

Everything that turns a VAE config into a trainable
:class:`~jaxspike.objective.Objective` lives here: the negative ELBO of each
model (:func:`elbo_loss`, :func:`analog_elbo_loss`), the loss settings
(:class:`ELBO`, ``config.loss``), the checks of ``config.model``, and the
functions the training loop calls (sampling from the prior, the energy of
one generation pass, test-split scores, sample and reconstruction grids).
The modules themselves are :class:`jaxspike.models.vae.SpikingVAE` and
:class:`jaxspike.models.vae.AnalogVAE`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxspike import cells, losses
from jaxspike import energy as energy_lib
from jaxspike import objective as obj
from jaxspike.local import stdp as local_stdp
from jaxspike.models import stdp_frontend
from jaxspike.models.gan import AnalogDiscriminator
from jaxspike.models.vae import LIKELIHOODS, AnalogVAE, SpikingVAE

Array = jax.Array

__all__ = ["ELBO", "Adversary", "AdversarialState", "build", "make_model", "elbo_loss", "analog_elbo_loss",
           "annealed", "vae_objective", "posterior_probs", "fit_mixture_prior"]

# Fields of config.model that configure the family, not the flax module.
_FAMILY_FIELDS = ("name", "frontend", "frontend_cache")
# The analog twin reads these fields of a spiking VAE config (the rest are spiking-only).
_ANALOG_FIELDS = ("arch", "latent", "encoder", "decoder", "channels", "latent_kind", "prior_p", "num_components")
# The analog twin's loss reads these fields of config.loss.
_ANALOG_LOSS_FIELDS = ("likelihood", "sigma", "kl_weight")


@dataclasses.dataclass(frozen=True)
class ELBO:
    """The loss settings of a VAE (``config.loss``); the defaults are the library's.

    Attributes:
      likelihood: ``"bernoulli"`` (cross-entropy on grey levels) or
        ``"gaussian"`` (squared error around the pixel means, std ``sigma``).
      sigma: the Gaussian likelihood's standard deviation.
      kl_weight: weight of the KL term (1 = the ELBO).
      mmd_weight: weight of FSVAE's PSP-filtered MMD between posterior and
        prior spike probabilities (:func:`jaxspike.losses.mmd_psp`).
      free_bits: nats per latent unit (summed over time) below which its KL
        costs nothing (Kingma et al. 2016); 0 = off.
      spike_weight: nats per decoder spike (per example), an activity penalty
        on the layers whose events every generated sample pays for; 0 = off.
      temperature_start, temperature_end, temperature_steps: the relaxed
        estimator's temperature, annealed geometrically over the updates
        (:func:`annealed`).
      kl_warmup_steps: the KL weight ramps linearly from 0 over this many
        updates; 0 = off.
      prior_full_kl: with a learned mixture prior and free bits, train the
        prior on the full KL (the posterior held fixed) and apply the floor
        to the encoder only. Without it, a unit below the floor sends no
        gradient to the prior either, and the components stay where they
        started.
    """

    likelihood: str = "bernoulli"
    sigma: float = 0.1
    kl_weight: float = 1.0
    mmd_weight: float = 0.0
    free_bits: float = 0.0
    spike_weight: float = 0.0
    temperature_start: float = 1.0
    temperature_end: float = 1.0
    temperature_steps: int = 1
    kl_warmup_steps: int = 0
    prior_full_kl: bool = False

    def __post_init__(self):
        def bad(field, what):
            raise ValueError(f"ELBO {field}={getattr(self, field)!r}: {what}")

        if self.likelihood not in LIKELIHOODS:
            bad("likelihood", f"must be one of {LIKELIHOODS}")
        if not self.sigma > 0:
            bad("sigma", "must be > 0")
        for field in ("kl_weight", "mmd_weight", "free_bits", "spike_weight"):
            if not getattr(self, field) >= 0:
                bad(field, "must be >= 0 (0 = off)")
        for field in ("temperature_start", "temperature_end"):
            if not getattr(self, field) > 0:
                bad(field, "temperatures must be > 0")
        for field, low in (("temperature_steps", 1), ("kl_warmup_steps", 0)):
            if not obj.is_int(getattr(self, field)) or getattr(self, field) < low:
                bad(field, f"must be an int >= {low}")

    def terms(self) -> dict:
        """The keyword arguments of :func:`elbo_loss` that do not change over training."""
        return dict(likelihood=self.likelihood, sigma=self.sigma, kl_weight=self.kl_weight,
                    mmd_weight=self.mmd_weight, free_bits=self.free_bits, spike_weight=self.spike_weight,
                    prior_full_kl=self.prior_full_kl)


@dataclasses.dataclass(frozen=True)
class Adversary:
    """An adversarial term on the reconstructions (``config.loss.adversary``); ``weight = 0`` is off.

    A pointwise likelihood makes the decoder output the mean of every digit
    its code could stand for, so edges come out grey even when the code is
    informative (the analog twin's reconstructions are as grey). With
    ``weight > 0`` a discriminator learns to tell training digits from their
    reconstructions, and the VAE adds ``weight * softplus(-D(x_hat))`` per
    example to its loss (VAE/GAN: Larsen et al. 2016, "Autoencoding beyond
    pixels using a learned similarity metric", here on reconstructions only).
    The discriminator is an analog LeakyReLU MLP used only in training: it
    adds nothing to a generated sample's energy. Its loss is the
    non-saturating one with an R1 penalty on real digits (Mescheder et al.
    2018).

    Attributes:
      weight: nats per example of the adversarial term (0 = off).
      hidden: the discriminator's hidden widths.
      learning_rate: its Adam learning rate (b1 = 0.5).
      r1_gamma: its R1 weight (0 = off).
      start: updates before the term reaches the VAE (the discriminator
        learns from the first); a decoder that meets the term before it can
        reconstruct never learns to (Esser et al. 2021 start theirs late too).
    """

    weight: float = 0.0
    hidden: tuple[int, ...] = (512, 256)
    learning_rate: float = 2e-4
    r1_gamma: float = 1.0
    start: int = 0

    def __post_init__(self):
        object.__setattr__(self, "hidden", tuple(self.hidden))
        if not self.weight >= 0:
            raise ValueError(f"Adversary weight={self.weight!r}: must be >= 0 (0 = off)")
        if not (self.hidden and all(obj.is_int(n) and n >= 1 for n in self.hidden)):
            raise ValueError(f"Adversary hidden={self.hidden!r}: layer widths must be ints >= 1")
        if not self.learning_rate > 0:
            raise ValueError(f"Adversary learning_rate={self.learning_rate!r}: must be > 0")
        if not self.r1_gamma >= 0:
            raise ValueError(f"Adversary r1_gamma={self.r1_gamma!r}: must be >= 0 (0 = off)")
        if not obj.is_int(self.start) or self.start < 0:
            raise ValueError(f"Adversary start={self.start!r}: must be an int >= 0 (updates)")


@flax.struct.dataclass
class AdversarialState:
    """The state of a VAE trained with an :class:`Adversary`: the VAE's
    parameters and optimiser state under the names :class:`~jaxspike.objective.TrainState`
    uses, and the discriminator's."""

    step: Array
    params: Any
    opt_state: Any
    d_params: Any
    d_opt: Any


def annealed(start: float, end: float, steps: int, step) -> Array:
    """Geometric schedule from ``start`` to ``end`` over ``steps`` updates, then ``end``.

    ``start * (end / start) ** min(step / steps, 1)`` (the exponential
    temperature annealing of Jang et al. 2017).
    """
    frac = jnp.clip(jnp.asarray(step, jnp.float32) / max(int(steps), 1), 0.0, 1.0)
    return start * (end / start) ** frac


def _nll(logits: Array, images: Array, likelihood: str, sigma: float) -> Array:
    targets = images.reshape(images.shape[0], -1)
    if likelihood == "bernoulli":
        return losses.bernoulli_nll(logits, targets)
    if likelihood == "gaussian":
        return losses.gaussian_nll(logits, targets, sigma)
    raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")


def elbo_loss(
    model: SpikingVAE,
    params,
    images: Array,
    key: Array,
    *,
    temperature: float = 1.0,
    likelihood: str = "bernoulli",
    sigma: float = 0.1,
    kl_weight: float = 1.0,
    mmd_weight: float = 0.0,
    free_bits: float = 0.0,
    spike_weight: float = 0.0,
    prior_full_kl: bool = False,
    train: bool = True,
    features: Array | None = None,
    frontend: stdp_frontend.STDPFrontEnd | None = None,
):
    """Training loss of the spiking VAE (batch mean) and its terms, among them the true ELBO.

    ``loss = NLL(x | logits) + kl_weight * KL_fb + mmd_weight * MMD_psp(q, p)
    + spike_weight * S_dec``
    where ``KL = sum_{t,l} KL(Bern(q_t) || Bern(p_t))`` and, with
    ``free_bits = lambda > 0``, ``KL_fb = sum_l max(lambda, E_batch sum_t KL_l)``:
    a latent unit pays nothing until it carries ``lambda`` nats (Kingma et
    al. 2016, "Improved variational inference with inverse autoregressive
    flow"). Without it, Adam turns even a tiny but consistent KL gradient
    into full-size steps that silence the latent before the decoder learns to
    read it (posterior collapse). ``S_dec`` (``terms["dec_spikes"]``) is the
    number of spikes per example of the decoder's hidden layers, the layers
    whose events drive the synaptic operations of every generated sample;
    its surrogate gradient lowers their firing rates (an activity
    regulariser, as in Zenke & Vogels 2021, "The remarkable robustness of
    surrogate gradient learning"). ``terms["elbo"] = -(NLL + KL)`` is always
    the unmodified bound; ``terms`` also carries the model ``aux``.
    ``prior_full_kl`` (mixture prior): the floor shields the encoder only;
    the prior's parameters follow the gradient of the full KL with the
    posterior held fixed (the loss value is unchanged).
    ``features``, ``frontend``: a frozen STDP front end and its cached output
    (see :meth:`SpikingVAE.encode`).
    """
    logits, aux = model.apply({"params": params}, images, key, train=train, temperature=temperature,
                              features=features, frontend=frontend)
    recon = _nll(logits, images, likelihood, sigma)
    kl_component = 0.0
    if model.prior == "uniform_rate":
        kl_units = losses.uniform_rate_kl_per_unit(aux["q"], aux["z"])  # [B, L], a one-sample estimate
    elif model.prior == "mixture":
        prior = (params["component_logits"], params["mixture_logits"])
        # With prior_full_kl and a floor, this KL reaches the encoder only; the prior gets the full KL below.
        shielded = jax.lax.stop_gradient(prior) if prior_full_kl and free_bits > 0 else prior
        kl_units, kl_component, r = losses.bernoulli_mixture_kl(aux["q"], *shielded)  # [B, L], [B], [B, K]
    else:
        kl_units = losses.bernoulli_kl_per_unit(aux["q"], aux["p"])  # [B, L], summed over time
    kl = jnp.sum(kl_units, axis=1) + kl_component
    terms = {"recon": jnp.mean(recon), "kl": jnp.mean(kl)}
    if model.prior == "mixture":
        # Components in use: the perplexity of the batch's mean component posterior.
        r_bar = jnp.mean(r, axis=0)
        terms["mix_perplexity"] = jnp.exp(-jnp.sum(r_bar * jnp.log(jnp.maximum(r_bar, 1e-30))))
    if free_bits > 0:
        kl_penalty = jnp.sum(jnp.maximum(free_bits, jnp.mean(kl_units, axis=0))) + jnp.mean(kl_component)
        if prior_full_kl and model.prior == "mixture":
            pri_units, pri_component, _ = losses.bernoulli_mixture_kl(jax.lax.stop_gradient(aux["q"]), *prior)
            prior_kl = jnp.mean(jnp.sum(pri_units, axis=1) + pri_component)
            kl_penalty = kl_penalty + prior_kl - jax.lax.stop_gradient(prior_kl)  # gradient only, value unchanged
    else:
        kl_penalty = jnp.mean(kl)
    loss = jnp.mean(recon) + kl_weight * kl_penalty
    if spike_weight:
        dec = [v["spike_count"] for k, v in aux["layers"].items() if k.startswith(("dec", "deconv"))]
        dec_spikes = jnp.mean(sum(dec))
        loss = loss + spike_weight * dec_spikes
        terms["dec_spikes"] = dec_spikes
    if mmd_weight:
        mmd = losses.mmd_psp(aux["q"], aux["p"])
        loss = loss + mmd_weight * jnp.mean(mmd)
        terms["mmd"] = jnp.mean(mmd)
    terms["loss"] = loss
    terms["elbo"] = -jnp.mean(recon + kl)
    terms["aux"] = aux
    terms["logits"] = logits
    return loss, terms


def analog_elbo_loss(
    model: AnalogVAE,
    params,
    images: Array,
    key: Array,
    *,
    likelihood: str = "bernoulli",
    sigma: float = 0.1,
    kl_weight: float = 1.0,
    train: bool = True,
):
    """Negative ELBO of the analog twin, the Gaussian KL in closed form (Kingma & Welling 2014)."""
    logits, aux = model.apply({"params": params}, images, key, train=train)
    recon = _nll(logits, images, likelihood, sigma)
    if model.latent_kind == "bernoulli":
        kl = losses.bernoulli_kl(aux["q"], model.prior_p)
    elif model.prior == "mixture":
        kl_units, kl_component, _ = losses.gaussian_mixture_kl(
            aux["mu"], aux["logvar"], params["component_means"], params["component_logvars"], params["mixture_logits"]
        )
        kl = jnp.sum(kl_units, axis=1) + kl_component
    else:
        kl = losses.gaussian_kl(aux["mu"], aux["logvar"])
    loss = jnp.mean(recon + kl_weight * kl)
    return loss, {"loss": loss, "recon": jnp.mean(recon), "kl": jnp.mean(kl), "elbo": -jnp.mean(recon + kl), "aux": aux,
                  "logits": logits}


# ---------------------------------------------------------------------------
# The mixture prior fitted to the aggregate posterior after training.


def posterior_probs(model: SpikingVAE, params, images, key: Array, *, batch_size: int = 500,
                    frontend: stdp_frontend.STDPFrontEnd | None = None) -> Array:
    """The encoder's spike probabilities ``q [N, T, L]`` for ``images [N, H, W, C]`` (eval mode)."""
    if model.estimator == "autoregressive":
        raise ValueError("posterior_probs needs a factorised posterior (estimator 'relaxed' or 'straight_through')")

    @jax.jit
    def probs(x, k):
        def run(m):
            h, _ = m.encode(x, k, frontend=frontend)
            return m.posterior_sample(h, k, train=False)[1]

        return jnp.swapaxes(model.apply({"params": params}, method=run), 0, 1)

    images = jnp.asarray(images)
    parts = [probs(images[lo:lo + batch_size], jax.random.fold_in(key, i))
             for i, lo in enumerate(range(0, images.shape[0], batch_size))]
    return jnp.concatenate(parts, axis=0)


def fit_mixture_prior(q: Array, num_components: int, key: Array, *, iters: int = 50, floor: float = 1e-3):
    """A mixture of ``K`` Bernoulli spike processes fitted to posterior spike probabilities by EM.

    Minimises the training loss's KL bound (:func:`jaxspike.losses.bernoulli_mixture_kl`)
    summed over ``q`` by exact coordinate descent: the E-step is the bound's
    optimal component posterior ``r``, the M-step sets each component's
    firing probabilities to the ``r``-weighted mean of ``q`` and its weight
    to its share of ``r`` (a mixture of Bernoullis fitted to soft data; each
    step lowers the bound). This is ex-post density estimation of the
    aggregate posterior (Ghosh et al. 2020, "From variational to
    deterministic autoencoders"): with a free-bits floor most latent units sit
    at the floor, where the training KL sends the prior no gradient, and the
    components stay near where they started.

    Args:
      q: ``[N, T, L]`` posterior probabilities of the training images.
      num_components: ``K``, ``1 <= K <= N``.
      key: picks the ``K`` posteriors the components start from.
      iters: EM iterations.
      floor: firing probabilities are kept in ``[floor, 1 - floor]``.

    Returns:
      ``(component_logits [K, T, L], mixture_logits [K])``, the parameters of
      :class:`~jaxspike.models.vae.SpikingVAE`'s ``prior="mixture"``.
    """
    if q.ndim != 3:
        raise ValueError(f"q must be [N, T, L] posterior probabilities, got shape {q.shape}")
    n = q.shape[0]
    if not obj.is_int(num_components) or not 1 <= num_components <= n:
        raise ValueError(f"num_components={num_components!r}: need an int in [1, {n}] (the number of posteriors)")
    if not obj.is_int(iters) or iters < 1:
        raise ValueError(f"iters={iters!r}: need an int >= 1")
    if not 0.0 < floor < 0.5:
        raise ValueError(f"floor={floor!r}: need 0 < floor < 0.5")
    flat = jnp.reshape(q, (n, -1)).astype(jnp.float32)
    start = jax.random.choice(key, n, (num_components,), replace=False)
    p0 = jnp.clip(flat[start], 0.05, 0.95)

    def em(_, carry):
        p, log_pi = carry
        log_lik = flat @ jnp.log(p).T + (1.0 - flat) @ jnp.log1p(-p).T + log_pi  # [N, K]
        r = jax.nn.softmax(log_lik, axis=1)
        counts = jnp.sum(r, axis=0)
        p = jnp.clip((r.T @ flat) / jnp.maximum(counts, 1e-12)[:, None], floor, 1.0 - floor)
        return p, jnp.log(jnp.maximum(counts, 1e-12) / n)

    p, log_pi = jax.jit(lambda p, lp: jax.lax.fori_loop(0, iters, em, (p, lp)))(
        p0, jnp.full((num_components,), -jnp.log(num_components)))
    logits = jnp.log(p) - jnp.log1p(-p)
    return logits.reshape((num_components,) + q.shape[1:]), log_pi


# ---------------------------------------------------------------------------
# Config -> model and objective.


def _tuples(fields: dict) -> dict:
    return {k: tuple(v) if isinstance(v, (list, tuple)) else v for k, v in fields.items()}


def make_model(config, image_shape: tuple[int, ...]) -> SpikingVAE | AnalogVAE:
    """The flax module of ``config.model`` (checked), for images of ``image_shape``."""
    m = config.model
    image_shape = tuple(int(d) for d in image_shape)
    if m.name == "analog_vae":
        kwargs = _tuples({f: m[f] for f in _ANALOG_FIELDS if f in m})
        # The spiking mixture prior's twin is the Gaussian mixture; every other prior's is N(0, I).
        kwargs["prior"] = "mixture" if m.get("prior") == "mixture" else "standard"
        model = obj.build("model", AnalogVAE, {"image_shape": image_shape, **kwargs})
        return _checked(model, image_shape)
    if m.name != "fc_vae":
        raise obj.ConfigError(f"config.model.name={m.name!r}: the VAE family trains 'fc_vae' or 'analog_vae'")
    known = set(SpikingVAE.__dataclass_fields__) - {"parent", "name", "image_shape"}
    kwargs = {}
    for field, value in m.items():
        if field in _FAMILY_FIELDS:
            continue
        if field not in known:
            raise obj.ConfigError(f"config.model.{field}: not a field of the spiking VAE (known: "
                                  f"{', '.join(sorted(known | set(_FAMILY_FIELDS)))})")
        kwargs[field] = value
    kwargs = _tuples(kwargs)
    if "neuron" in kwargs:
        kwargs["neuron"] = obj.build("model.neuron", cells.Neuron, dict(kwargs["neuron"]))
    for field in ("num_steps", "latent"):
        obj.require(obj.is_int(m[field]) and m[field] >= 1, f"model.{field}", m[field], "must be an int >= 1")
    for field in ("encoder", "decoder"):
        obj.check_widths(f"model.{field}", m[field])
    model = obj.build("model", SpikingVAE, {"image_shape": image_shape, **kwargs})
    try:
        model._validate()
    except ValueError as err:
        raise obj.ConfigError(f"config.model: {err}") from None
    return _checked(model, image_shape)


def _checked(model, image_shape):
    """Initialises ``model`` on shapes only, so widths unfit for the image size fail here."""
    images = jnp.zeros((2,) + image_shape, jnp.float32)
    try:
        jax.eval_shape(lambda k: model.init(k, images, k), jax.random.key(0))
    except (TypeError, ValueError) as err:
        raise obj.ConfigError(f"config.model: {err}") from None
    return model


def _load_frontend(config, model) -> stdp_frontend.STDPFrontEnd | None:
    spec = config.model.get("frontend", "")
    if not spec:
        return None
    obj.require(isinstance(model, SpikingVAE) and model.arch == "mlp", "model.frontend", spec,
                "an STDP front end feeds the spiking VAE's MLP encoder")
    try:
        return local_stdp.load_frontend(spec)
    except ValueError as err:
        raise obj.ConfigError(f"config.model.frontend={spec!r}: {err}") from None


def build(config, image_shape: tuple[int, ...]) -> obj.Objective:
    """The objective of a VAE config (``fc_vae`` or ``analog_vae``); every field checked."""
    model = make_model(config, image_shape)
    analog = isinstance(model, AnalogVAE)
    loss_fields = dict(config.loss)
    adversary = obj.build("loss.adversary", Adversary, _tuples(dict(loss_fields.pop("adversary", {}))))
    if analog:
        loss_fields = {k: v for k, v in loss_fields.items() if k in _ANALOG_LOSS_FIELDS}
    elbo = obj.build("loss", ELBO, loss_fields)
    obj.validate_optimizer(config.optimizer, ("learning_rate",))
    optimizer = obj.make_optimizer(config.optimizer, total_steps=config.total_steps)
    frontend = _load_frontend(config, model)
    cache = bool(config.model.get("frontend_cache", True))
    return vae_objective(model, elbo, optimizer, frontend=frontend, cache_frontend=cache,
                         adversary=adversary if adversary.weight > 0 else None)


def vae_objective(model, elbo: ELBO, optimizer, *, frontend=None, cache_frontend: bool = False,
                  adversary: Adversary | None = None) -> obj.Objective:
    """The negative-ELBO objective of ``model`` (a :class:`SpikingVAE` or :class:`AnalogVAE`).

    Args:
      model: the VAE module (its ``image_shape`` fixes the data shape).
      elbo: the loss settings.
      optimizer: an optax transformation.
      frontend: a frozen STDP front end feeding the encoder, or ``None``.
      cache_frontend: with a front end, compute its features once per
        training image (``precompute``) and read them from the batch
        (``batch["frontend"]``) instead of running the front end every step.
        The spikes are the same; the front end needs no gradient here (its
        weights are constants and nothing upstream of it learns).
      adversary: an adversarial term on the reconstructions (the state is
        then an :class:`AdversarialState`), or ``None``.
    """
    analog = isinstance(model, AnalogVAE)
    fixed = elbo.terms() if not analog else {k: getattr(elbo, k) for k in _ANALOG_LOSS_FIELDS}
    loss_fn = analog_elbo_loss if analog else elbo_loss
    front = {} if analog else {"frontend": frontend}
    relaxed = not analog and model.estimator == "relaxed"
    macs = _decoder_macs(model) if analog else None

    def scheduled(step) -> dict:
        kwargs = dict(fixed)
        if relaxed:
            kwargs["temperature"] = annealed(elbo.temperature_start, elbo.temperature_end, elbo.temperature_steps, step)
        if elbo.kl_warmup_steps and not analog:
            ramp = jnp.clip(jnp.asarray(step, jnp.float32) / elbo.kl_warmup_steps, 0.0, 1.0)
            kwargs["kl_weight"] = kwargs["kl_weight"] * ramp
        return kwargs

    def init(key: Array, batch: dict):
        k_params, k_fwd = jax.random.split(key)
        return model.init(k_params, batch["image"], k_fwd, **front)["params"]

    def loss(params, batch: dict, key: Array):
        extra = {"features": batch["frontend"]} if "frontend" in batch else {}
        value, terms = loss_fn(model, params, batch["image"], key, **scheduled(batch["step"]), **front, **extra)
        aux = terms["aux"]
        # Non-spiking readouts have firing rate 0 by construction: log only the layers that spike.
        silent_by_design = {"to_latent"} | ({"readout"} if getattr(model, "readout", "") == "membrane" else set())
        spiking = {
            k: v for k, v in aux["layers"].items()
            if k not in silent_by_design and isinstance(v, dict) and "firing_rate" in v
        }
        kept = {k: aux[k] for k in ("q", "z") if k in aux}
        return value, {**terms, "aux": {"layers": spiking, **kept}}

    def sample(params, key: Array, num: int):
        images, _ = model.apply({"params": params}, key, num, method="generate")
        return images

    def reconstruct(params, images: Array, key: Array):
        return model.apply({"params": params}, images, key, method="reconstruct", **front)

    def energy(params, key: Array, num: int):
        # Energy per generated sample: one generation pass (prior -> decoder), the same pass
        # for the spiking model and its twin.
        if analog:
            # Every input of every decoder layer is a MAC; drawing z costs none.
            zero = jnp.zeros((num,))
            return {"analog": {"spike_count": zero, "firing_rate": zero, "synops": zero, "macs": zero + macs}}
        _, aux = model.apply({"params": params}, key, num, method="generate")
        return aux

    def evaluate(params, images: Array, key: Array):
        # The bound with a sampled latent: hard spikes for the spiking model (the relaxed
        # estimator's eval mode), z = mu + sigma * eps for the analog twin.
        k_elbo, k_rec = jax.random.split(key)
        _, terms = loss_fn(model, params, images, k_elbo, train=analog, **fixed, **front)
        recon = reconstruct(params, images, k_rec)
        mse = jnp.mean((recon - images) ** 2)
        return {"elbo": terms["elbo"], "recon": terms["recon"], "kl": terms["kl"], "mse": mse}

    def figures(params, key: Array, images: Array):
        k_gen, k_rec = jax.random.split(key)
        recons = reconstruct(params, images, k_rec)
        return {"samples": sample(params, k_gen, images.shape[0]), "recons": jnp.stack([images, recons], axis=1)}

    precompute = obj.no_precompute
    if cache_frontend and frontend is not None:
        def precompute(images):
            one = lambda image: frontend.first_bins(image[None], model.num_steps)[0]  # noqa: E731
            # Vectorised over 256 images at a time (lax.map's batch_size), one compiled program.
            first = jax.jit(lambda x: jax.lax.map(one, x, batch_size=256))(images)
            return {"frontend": np.asarray(first)}

    objective = obj.loss_objective(
        init, loss, optimizer, sample=sample, energy=energy, evaluate=evaluate, figures=figures,
        precompute=precompute, headline=("recon", "kl"),
    )
    if adversary is None:
        return objective
    return _with_adversary(objective, init, loss, optimizer, adversary, model.image_shape)


def _with_adversary(objective: obj.Objective, init_params, loss, optimizer, adv: Adversary, image_shape) -> obj.Objective:
    """``objective`` trained with :class:`Adversary` ``adv``: the same sampling, energy,
    evaluation and figures (they read ``state.params``), a two-network state and step."""
    disc = AnalogDiscriminator(arch="mlp", hidden=adv.hidden)
    d_tx = optax.adam(adv.learning_rate, b1=0.5)
    shape = tuple(image_shape)

    def init(key: Array, batch: dict) -> AdversarialState:
        params = init_params(key, batch)  # the same VAE as without the adversary
        d_params = disc.init(jax.random.fold_in(key, 1), batch["image"])["params"]
        return AdversarialState(step=jnp.zeros((), jnp.int32), params=params, opt_state=optimizer.init(params),
                                d_params=d_params, d_opt=d_tx.init(d_params))

    def critic(d_params, images):
        return disc.apply({"params": d_params}, images)[0]

    def vae_total(params, d_params, inputs, key):
        value, terms = loss(params, inputs, key)
        fake = jax.nn.sigmoid(terms["logits"]).reshape((-1,) + shape)
        adv_g = jnp.mean(losses.gan_g_loss("ns", critic(d_params, fake)))
        weight = jnp.where(inputs["step"] >= adv.start, adv.weight, 0.0)
        return value + weight * adv_g, (terms, fake, adv_g)

    def d_total(d_params, real, fake):
        batch = real.shape[0]
        logits = critic(d_params, jnp.concatenate([real, fake], axis=0))
        d_loss = jnp.mean(losses.gan_d_loss("ns", logits[:batch], logits[batch:]))
        metrics = {"adv/d_loss": d_loss, "adv/d_real": jnp.mean(logits[:batch]), "adv/d_fake": jnp.mean(logits[batch:])}
        total = d_loss
        if adv.r1_gamma:
            r1 = jnp.mean(losses.r1_penalty(lambda x: critic(d_params, x), real))
            total = total + 0.5 * adv.r1_gamma * r1
            metrics["adv/r1"] = r1
        return total, metrics

    def step(state: AdversarialState, batch: dict, key: Array):
        # The VAE steps against the current discriminator; the discriminator then learns on
        # the same reconstructions (no second VAE pass).
        inputs = {**batch, "step": state.step}
        (_, (terms, fake, adv_g)), grads = jax.value_and_grad(vae_total, has_aux=True)(
            state.params, state.d_params, inputs, key)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        (_, d_metrics), d_grads = jax.value_and_grad(d_total, has_aux=True)(
            state.d_params, batch["image"], jax.lax.stop_gradient(fake))
        d_updates, d_opt = d_tx.update(d_grads, state.d_opt, state.d_params)
        d_params = optax.apply_updates(state.d_params, d_updates)
        metrics = obj.summarize_terms(terms)
        metrics.update(d_metrics, **{"adv/g_loss": adv_g, "grad_norm": optax.tree.norm(grads),
                                      "param_norm": optax.tree.norm(params), "adv/d_grad_norm": optax.tree.norm(d_grads)})
        return AdversarialState(step=state.step + 1, params=params, opt_state=opt_state, d_params=d_params,
                                d_opt=d_opt), metrics

    return objective._replace(init=init, step=step)


def _decoder_macs(model: AnalogVAE) -> float:
    """Multiply-accumulates per generated sample of the twin's decoder (shapes only)."""
    images = jax.ShapeDtypeStruct((2,) + tuple(model.image_shape), jnp.float32)
    abstract = jax.eval_shape(lambda k: model.init(k, jnp.zeros(images.shape), k)["params"], jax.random.key(0))
    z = jax.ShapeDtypeStruct((2, model.latent), jnp.float32)
    return energy_lib.analog_macs(model, abstract, z, method="decode")
