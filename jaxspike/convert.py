"""ANN-to-SNN conversion of feed-forward ReLU networks (the SNN Toolbox route).

A trained analog network of dense / convolution / transposed-convolution
layers with ReLU becomes a network of integrate-and-fire neurons with reset by
subtraction, whose firing rates approximate the ReLU activations (Rueckauer et
al. 2017, "Conversion of continuous-valued deep networks to efficient
event-driven networks", Front. Neurosci.; Diehl et al. 2015):

1. batch normalisation is folded into the preceding linear layer;
2. data-based normalisation: ``lambda_l`` = the ``percentile`` (default
   99.9) of layer ``l``'s ReLU activations on a calibration set, and
   ``W_l <- W_l lambda_{l-1} / lambda_l``, ``b_l <- b_l / lambda_l``, so a
   neuron at threshold 1 fires at rate ``a_l / lambda_l`` (at most one spike
   per step; activations above ``lambda_l`` saturate);
3. biases are constant input currents, every step;
4. the output layer is a non-spiking integrator whose time-averaged
   membrane is the analog pre-activation (``W_L lambda_{L-1}`` rescales
   rates back to activations); the output nonlinearity (sigmoid) is applied
   to it.

Networks are described by a list of :class:`Layer` records (see
:func:`from_analog_generator` and :func:`from_analog_vae_decoder` for the
jaxspike analog models); anything else gets an error naming the layer.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxspike import cells, encoding, layers

Array = jax.Array

LINEAR_KINDS = ("dense", "conv", "conv_transpose")
SUPPORTED = LINEAR_KINDS + ("relu", "reshape", "batchnorm", "sigmoid")

__all__ = [
    "Layer",
    "SUPPORTED",
    "analog_forward",
    "fold_batchnorm",
    "normalize",
    "convert",
    "run_snn",
    "from_analog_generator",
    "from_analog_vae_decoder",
]


class Layer(NamedTuple):
    """One layer of a feed-forward network.

    ``kind`` is one of :data:`SUPPORTED`. Linear layers hold ``kernel``
    (dense ``[in, out]``; convolutions HWIO) and ``bias``, plus ``strides``
    and ``padding`` for convolutions; ``reshape`` holds the per-example
    ``shape``; ``batchnorm`` holds ``scale``, ``bias``, ``mean``, ``var``,
    ``eps``.
    """

    kind: str
    kernel: Any = None
    bias: Any = None
    strides: tuple[int, int] = (1, 1)
    padding: Any = "SAME"
    shape: tuple[int, ...] | None = None
    scale: Any = None
    mean: Any = None
    var: Any = None
    eps: float = 1e-5
    name: str = ""


def _check_supported(net: Sequence[Layer]) -> None:
    for i, layer in enumerate(net):
        if layer.kind not in SUPPORTED:
            raise ValueError(
                f"layer {i} ({layer.name or layer.kind!r}) of kind {layer.kind!r} cannot be converted; "
                f"supported kinds: {SUPPORTED}"
            )


def _linear(layer: Layer, x: Array) -> Array:
    if layer.kind == "dense":
        y = x @ layer.kernel
    elif layer.kind == "conv":
        y = jax.lax.conv_general_dilated(
            x, layer.kernel, layer.strides, layer.padding, dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
    else:
        y = jax.lax.conv_transpose(
            x, layer.kernel, layer.strides, layer.padding, dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
    return y + layer.bias if layer.bias is not None else y


def analog_forward(net: Sequence[Layer], x: Array, *, return_activations: bool = False):
    """Runs the analog network on ``x [B, ...]``.

    Returns the output, and with ``return_activations`` also the list of
    post-ReLU activations in order (the quantities conversion approximates).
    """
    _check_supported(net)
    acts = []
    for layer in net:
        if layer.kind in LINEAR_KINDS:
            x = _linear(layer, x)
        elif layer.kind == "relu":
            x = jax.nn.relu(x)
            acts.append(x)
        elif layer.kind == "reshape":
            x = x.reshape((x.shape[0],) + tuple(layer.shape))
        elif layer.kind == "batchnorm":
            x = (x - layer.mean) / jnp.sqrt(layer.var + layer.eps) * layer.scale + layer.bias
        elif layer.kind == "sigmoid":
            x = jax.nn.sigmoid(x)
    return (x, acts) if return_activations else x


def fold_batchnorm(net: Sequence[Layer]) -> list[Layer]:
    """Folds every batch-norm layer into the linear layer right before it."""
    _check_supported(net)
    out: list[Layer] = []
    for i, layer in enumerate(net):
        if layer.kind != "batchnorm":
            out.append(layer)
            continue
        if not out or out[-1].kind not in LINEAR_KINDS:
            raise ValueError(f"batchnorm layer {i} ({layer.name!r}) must follow a dense/conv layer to be folded")
        prev = out.pop()
        gain = layer.scale / jnp.sqrt(layer.var + layer.eps)  # per output channel
        bias = prev.bias if prev.bias is not None else 0.0
        out.append(prev._replace(kernel=prev.kernel * gain, bias=(bias - layer.mean) * gain + layer.bias))
    return out


def normalize(net: Sequence[Layer], calibration: Array, percentile: float = 99.9) -> tuple[list[Layer], list[float]]:
    """Data-based weight normalisation (Rueckauer et al. 2017, sec. 2.2).

    Args:
      net: the analog network (batch norm already folded).
      calibration: ``[N, ...]`` inputs whose activations set the scales.
      percentile: of each ReLU layer's activations (100 = the maximum).

    Returns:
      ``(normalised net, lambdas)``, one ``lambda`` per ReLU layer.
    """
    if not 0.0 < percentile <= 100.0:
        raise ValueError(f"percentile must lie in (0, 100], got {percentile}")
    net = fold_batchnorm(net)
    _, acts = analog_forward(net, calibration, return_activations=True)
    lambdas = []
    for a in acts:
        lam = float(np.percentile(np.asarray(a), percentile))
        lambdas.append(lam if lam > 0 else 1.0)  # a dead layer: keep its scale
    out, prev_lam, relu_i = [], 1.0, 0
    for i, layer in enumerate(net):
        if layer.kind in LINEAR_KINDS:
            following = [l.kind for l in net[i + 1 :] if l.kind != "reshape"]
            if following and following[0] == "relu":
                lam = lambdas[relu_i]
                layer = layer._replace(kernel=layer.kernel * (prev_lam / lam), bias=layer.bias / lam)
                prev_lam, relu_i = lam, relu_i + 1
            else:  # output layer: rescale incoming rates back to activations
                layer = layer._replace(kernel=layer.kernel * prev_lam)
        out.append(layer)
    return out, lambdas


class SpikingNet(NamedTuple):
    """A converted network: normalised layers plus the percentile scales."""

    layers: list[Layer]
    lambdas: list[float]
    output_activation: str  # "sigmoid" or "none"


def convert(net: Sequence[Layer], calibration: Array, percentile: float = 99.9) -> SpikingNet:
    """Converts an analog ReLU network; see the module docstring.

    The network must be linear layers each followed by a ReLU, except the
    last linear layer, optionally followed by a sigmoid; reshapes may sit
    anywhere.
    """
    _check_supported(net)
    kinds = [l.kind for l in net if l.kind != "reshape" and l.kind != "batchnorm"]
    if not kinds or kinds[0] not in LINEAR_KINDS:
        raise ValueError("the network must start with a dense/conv/conv_transpose layer")
    if kinds[-1] == "sigmoid":
        kinds, out_act = kinds[:-1], "sigmoid"
    else:
        out_act = "none"
    if "sigmoid" in kinds:
        raise ValueError("a sigmoid can only be the network's last layer")
    expected = (["linear", "relu"] * len(kinds))[: len(kinds)]
    got = ["linear" if k in LINEAR_KINDS else k for k in kinds]
    if got != expected[: len(got)] or got[-1] != "linear":
        raise ValueError(f"expected alternating linear/relu layers ending with a linear layer, got {kinds}")
    normed, lambdas = normalize(net, calibration, percentile)
    return SpikingNet([l for l in normed if l.kind != "sigmoid"], lambdas, out_act)


def _spiking_layer(layer: Layer, cell) -> Any:
    if layer.kind == "dense":
        return layers.SpikingDense(layer.kernel.shape[1], cell=cell)
    kh, kw = layer.kernel.shape[:2]
    cls = layers.SpikingConv if layer.kind == "conv" else layers.SpikingConvTranspose
    return cls(layer.kernel.shape[-1], cell=cell, kernel_size=(kh, kw), strides=layer.strides, padding=layer.padding)


def run_snn(
    snn: SpikingNet,
    x: Array,
    num_steps: int,
    *,
    key: Array | None = None,
    input_mode: str = "direct",
):
    """Simulates the converted network for ``num_steps`` steps.

    Args:
      snn: from :func:`convert`.
      x: ``[B, ...]`` analog input. ``input_mode="direct"`` feeds it as a
        constant current each step (the first layer then does
        multiply-accumulates); ``"bernoulli"`` codes it (values in [0, 1]) as
        Bernoulli spikes drawn from ``key``.
      num_steps: ``T``.

    Returns:
      ``(output [B, ...], rates, aux)``: the output (after the sigmoid, if
      any), the firing rate ``[B, ...]`` of each hidden layer, and the
      per-layer operation counts (for :mod:`jaxspike.energy`).
    """
    num_steps = encoding.check_num_steps(num_steps)
    if input_mode == "direct":
        seq, kind = encoding.direct(x, num_steps), "analog"
    elif input_mode == "bernoulli":
        if key is None:
            raise ValueError("input_mode='bernoulli' needs a PRNG key")
        seq, kind = encoding.rate(key, x, num_steps), "spikes"
    else:
        raise ValueError(f"input_mode must be 'direct' or 'bernoulli', got {input_mode!r}")
    return _simulate(snn, seq, kind)


def _simulate(snn: "SpikingNet", seq: Array, kind: str):
    if_cell = cells.integrate_and_fire(1.0)
    linear_idx = [i for i, l in enumerate(snn.layers) if l.kind in LINEAR_KINDS]
    rates, aux = [], {}
    for i, layer in enumerate(snn.layers):
        if layer.kind == "reshape":
            seq = seq.reshape(seq.shape[:2] + tuple(layer.shape))
            continue
        if layer.kind == "relu":
            continue  # the IF neurons are the ReLU
        params = {"kernel": layer.kernel, "bias": layer.bias}
        is_out = i == linear_idx[-1]
        cell = cells.leaky_integrator(0.0) if is_out else if_cell
        module = _spiking_layer(layer, cell).clone(input_kind=kind)
        seq, aux[f"layer{len(aux)}"] = module.apply({"params": params}, seq)
        kind = "spikes"
        if not is_out:
            rates.append(jnp.mean(seq, axis=0))
    out = jnp.mean(seq, axis=0)  # time-averaged membrane = analog pre-activation
    if snn.output_activation == "sigmoid":
        out = jax.nn.sigmoid(out)
    return out, rates, aux


# ---------------------------------------------------------------------------
# Noise as spikes: how a converted generator is driven by a Bernoulli spike process.

NOISE_CODINGS = ("uniform_rate", "binary_tonic", "gaussian_quantile")


def noise_spikes(key: Array, noise: Array, num_steps: int, coding: str) -> Array:
    """Input spike trains ``[T, B, Z]`` that stand for the analog noise ``[B, Z]``.

    * ``uniform_rate`` - for a generator trained on ``u ~ U(0, 1)``: each unit
      fires ``Bernoulli(u)`` each step, so its rate tends to ``u``
      (``T``-step rate error ``~ sqrt(u (1-u) / T)``).
    * ``binary_tonic`` - for a generator trained on binary noise ``b``: unit
      ``i`` fires at every step iff ``b_i = 1``; exact at any ``T``, but
      the randomness is the one draw of ``b``.
    * ``gaussian_quantile`` - for a generator trained on Gaussian ``z``, with
      no retraining: fire ``Bernoulli(Phi(z))`` (the Gaussian quantile as a
      rate); :func:`quantile_input_layer` adapts the first layer to read
      rates as ``z ~ sqrt(2 pi) (rate - 1/2)``, the linearised inverse CDF,
      which compresses the tails (|z| > 1).
    """
    num_steps = encoding.check_num_steps(num_steps)
    if coding == "uniform_rate":
        return encoding.rate(key, jnp.clip(noise, 0.0, 1.0), num_steps)
    if coding == "binary_tonic":
        return encoding.direct((noise > 0.5).astype(noise.dtype), num_steps)
    if coding == "gaussian_quantile":
        p = jax.scipy.stats.norm.cdf(noise)
        return encoding.rate(key, p, num_steps)
    raise ValueError(f"noise coding must be one of {NOISE_CODINGS}, got {coding!r}")


def quantile_input_layer(net: Sequence[Layer]) -> list[Layer]:
    """First dense layer rewired to read rates ``r`` as ``z ~ sqrt(2 pi)(r - 1/2)``."""
    net = list(net)
    first = net[0]
    if first.kind != "dense":
        raise ValueError(f"gaussian_quantile needs a dense first layer, got {first.kind!r} ({first.name!r})")
    gain = float(np.sqrt(2.0 * np.pi))
    net[0] = first._replace(kernel=first.kernel * gain, bias=first.bias - 0.5 * gain * jnp.sum(first.kernel, axis=0))
    return net


def run_snn_on_spikes(snn: "SpikingNet", spikes: Array):
    """Like :func:`run_snn`, for an input that is already a spike train ``[T, B, ...]``."""
    return _simulate(snn, spikes, "spikes")


# ---------------------------------------------------------------------------
# Extractors for jaxspike's analog models.


def _dense(p, name):
    return Layer("dense", kernel=p["kernel"], bias=p["bias"], name=name)


def _convt(p, strides, name):
    return Layer("conv_transpose", kernel=p["kernel"], bias=p["bias"], strides=strides, padding="SAME", name=name)


def from_analog_generator(generator, params) -> list[Layer]:
    """The layer list of a :class:`jaxspike.models.gan.AnalogGenerator`."""
    h, w, c = generator.image_shape
    if generator.arch == "mlp":
        n = len(generator.hidden)
        net = []
        for i in range(n):
            net += [_dense(params[f"Dense_{i}"], f"Dense_{i}"), Layer("relu")]
        net += [_dense(params[f"Dense_{n}"], f"Dense_{n}"), Layer("sigmoid")]
        return net
    ch = generator.channels
    return [
        _dense(params["Dense_0"], "Dense_0"), Layer("relu"),
        Layer("reshape", shape=(h // 4, w // 4, ch[0])),
        _convt(params["ConvTranspose_0"], (2, 2), "ConvTranspose_0"), Layer("relu"),
        _convt(params["ConvTranspose_1"], (2, 2), "ConvTranspose_1"), Layer("sigmoid"),
    ]


def from_analog_vae_decoder(vae, params) -> list[Layer]:
    """The decoder of a :class:`jaxspike.models.vae.AnalogVAE` as a layer list."""
    h, w, c = vae.image_shape
    net = []
    num_dense = 1 if vae.arch == "conv" else len(vae.decoder)
    for i in range(num_dense):
        net += [_dense(params[f"dec_layers_{i}"], f"dec_layers_{i}"), Layer("relu")]
    if vae.arch == "conv":
        net.append(Layer("reshape", shape=(h // 4, w // 4, vae.channels[-1])))
        net += [_convt(params["deconv_layers_0"], (2, 2), "deconv_layers_0"), Layer("relu")]
        net += [_convt(params["out_layer"], (2, 2), "out_layer")]
    else:
        net += [_dense(params["out_layer"], "out_layer")]
    return net + [Layer("sigmoid")]
