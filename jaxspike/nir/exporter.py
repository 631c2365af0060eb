"""jaxspike -> NIR: a :class:`~jaxspike.nir.network.Network` (or a whole model) as a NIR graph.

Each layer becomes a synapse node and a neuron node, named ``<stage>`` and
``<stage>_cell``:

* :class:`~jaxspike.layers.SpikingDense` -> ``Affine`` (``Linear`` without
  bias; ``weight = kernel.T``) + the cell's node (:mod:`jaxspike.nir.neurons`);
* :class:`~jaxspike.layers.SpikingConv` -> ``Conv2d`` (``weight`` OIHW). NIR's
  padding is symmetric; jaxspike's ``"SAME"`` at stride 2 pads
  ``(lo, hi) = (0, 1)``. Such a kernel is exported padded with ``|hi - lo|``
  zero rows (in front when ``hi > lo``) under the symmetric padding
  ``max(lo, hi)``, which computes the same map; node metadata
  ``jaxspike_padding`` lets :func:`~jaxspike.nir.importer.from_nir` restore
  the original kernel and padding;
* :class:`~jaxspike.layers.SpikingConvTranspose` -> ``jaxspike.ConvTranspose2d``;
* :class:`~jaxspike.layers.DenseReadout` -> ``Affine`` + ``LI`` (``I`` for
  ``beta = 1``) + ``jaxspike.Readout(mode)`` unless ``mode="sequence"``;
* :class:`~jaxspike.nir.network.Flatten` -> ``Flatten`` over ``(C, H, W)``;
  jaxspike flattens ``(H, W, C)``, so the rows of the dense layer it feeds are
  permuted to NIR's channel-first order (exact, a relabelling);
  :class:`~jaxspike.nir.network.Unflatten` -> ``jaxspike.Unflatten`` with the
  columns of the dense layer before it permuted the same way;
* :class:`~jaxspike.nir.network.Bernoulli` / ``Readout`` -> their extension nodes.

``input_kind="analog"`` and ``use_bias=False`` of conv layers travel as
metadata; execution choices (``hoist``, ``remat_chunk``, ``unroll``) do not
change spikes and are not exported; ``rate_grad`` changes only gradients and
is dropped; ``current_norm`` has no NIR node and is refused.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import nir
import numpy as np

from jaxspike import cells, layers
from jaxspike.nir import network as net_lib
from jaxspike.nir import neurons, nodes

__all__ = [
    "Exported",
    "to_nir",
    "conv_padding",
    "conv_transpose_padding",
    "discriminator_network",
    "generator_network",
    "vae_encoder_network",
    "converted_network",
]

Array = jax.Array


class Exported(NamedTuple):
    """A model as a :class:`~jaxspike.nir.network.Network`: ``to_nir(*exported)`` gives its graph.

    Attributes:
      network: the stages.
      params: ``{stage name: params}``, the model's own arrays.
      input_shape: per-step input features, jaxspike layout (``(N,)`` or ``(H, W, C)``).
    """

    network: net_lib.Network
    params: dict
    input_shape: tuple[int, ...]


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if np.ndim(v) == 0 else tuple(int(x) for x in v)


def conv_padding(padding, in_hw, kernel_hw, strides) -> tuple[tuple[int, int], tuple[int, int]]:
    """Explicit ``((lo, hi), (lo, hi))`` of a :class:`~jaxspike.layers.SpikingConv` padding."""
    if isinstance(padding, str):
        return tuple(
            tuple(int(p) for p in pads) for pads in jax.lax.padtype_to_pads(in_hw, kernel_hw, strides, padding)
        )
    return tuple((int(lo), int(hi)) for lo, hi in padding)


def conv_transpose_padding(padding, kernel_hw, strides) -> tuple[tuple[int, int], tuple[int, int]]:
    """Explicit padding of the stride-dilated input of a :class:`~jaxspike.layers.SpikingConvTranspose`.

    For ``"SAME"``/``"VALID"`` it is ``jax.lax.conv_transpose``'s own rule
    (``pad_len = k + s - 2`` [+ ``max(k - s, 0)`` for VALID], ``lo = k - 1``
    if ``s > k - 1`` (always for VALID) else ``ceil(pad_len / 2)``); explicit
    pads pass through.
    """
    if not isinstance(padding, str):
        return tuple((int(lo), int(hi)) for lo, hi in padding)
    pads = []
    for k, s in zip(kernel_hw, strides):
        if padding == "SAME":
            pad_len = k + s - 2
            lo = k - 1 if s > k - 1 else int(np.ceil(pad_len / 2))
        elif padding == "VALID":
            pad_len = k + s - 2 + max(k - s, 0)
            lo = k - 1
        else:
            raise ValueError(f"conv transpose padding must be 'SAME', 'VALID' or explicit pairs, got {padding!r}")
        pads.append((lo, pad_len - lo))
    return tuple(pads)


def _symmetric_kernel(kernel_oihw: np.ndarray, pads, where: str) -> tuple[np.ndarray, tuple[int, int]]:
    """The kernel zero-bordered so that a symmetric padding computes the asymmetric one.

    With symmetric padding ``P >= max(lo, hi)`` and ``P - lo`` zeros in front
    of the kernel and ``P - hi`` behind, every window covers the same inputs
    with the same weights and the output has the same size. ``P`` is the
    smallest that gives a square kernel (NIR infers Conv2d shapes from
    ``weight.shape[2]`` alone).
    """
    kernel_hw = kernel_oihw.shape[2:]
    sym = [max(lo, hi) for lo, hi in pads]
    size = [2 * p - lo - hi + k for p, (lo, hi), k in zip(sym, pads, kernel_hw)]
    short = int(np.argmin(size))
    gap = max(size) - size[short]
    if gap % 2:
        raise ValueError(
            f"{where}: NIR's Conv2d assumes a square kernel; this one's is {size[0]}x{size[1]} after padding"
        )
    sym[short] += gap // 2
    width = [(0, 0), (0, 0)] + [(p - lo, p - hi) for p, (lo, hi) in zip(sym, pads)]
    return np.pad(kernel_oihw, width), tuple(sym)


def _nir_shape(shape: Sequence[int]) -> np.ndarray:
    shape = tuple(int(s) for s in shape)
    return np.array((shape[2], shape[0], shape[1]) if len(shape) == 3 else shape, dtype=np.int64)


def _np(x) -> np.ndarray:
    return np.asarray(jax.device_get(x))


def _stage_shapes(network: net_lib.Network, params: dict, input_shape) -> list[tuple[tuple, tuple, bool]]:
    """``(input features, output features, output still has a time axis)`` per stage."""
    shapes, shape, timed = [], tuple(input_shape), True
    key = jax.random.key(0)
    for name, stage in zip(network.names, network.stages):
        lead = (2, 1) if timed else (1,)
        x = jax.ShapeDtypeStruct(lead + shape, jnp.float32)
        variables = {"params": params[name]} if name in params else {}
        if not timed and not (isinstance(stage, net_lib.Readout) and stage.mode == "none"):
            raise ValueError(f"stage {name!r} follows a readout over time; only Readout(mode='none') can")
        args = (key,) if isinstance(stage, net_lib.Bernoulli) else ()
        out = jax.eval_shape(lambda x, s=stage, v=variables, a=args: s.apply(v, x, *a)[0], x)
        out_timed = timed and not (
            (isinstance(stage, net_lib.Readout) and stage.mode != "none")
            or (isinstance(stage, layers.DenseReadout) and stage.mode != "sequence")
        )
        out_shape = tuple(out.shape[2:] if out_timed else out.shape[1:])
        shapes.append((shape, out_shape, out_timed))
        shape, timed = out_shape, out_timed
    return shapes


def _is_dense(stage) -> bool:
    return isinstance(stage, (layers.SpikingDense, layers.DenseReadout))


def _layer_cell(stage, name: str) -> cells.Cell:
    if isinstance(stage, layers.DenseReadout):
        return cells.leaky_integrator(stage.beta)
    if stage.current_norm:
        raise ValueError(f"stage {name!r}: current_norm (per-step current normalisation) has no NIR node")
    return stage._get_cell()


def _emit_layer(out: list, name, stage, p, in_shape, out_shape, row_perm, col_perm, dt, allow_extensions):
    """Appends the ``(name, node)`` pairs of one layer: synapse, neuron, readout over time if any."""
    where = f"stage {name!r}"
    kernel = _np(p["kernel"]).astype(np.float32)
    bias = _np(p["bias"]).astype(np.float32) if "bias" in p else None
    cell = _layer_cell(stage, name)
    cell_params = {k: _np(v) for k, v in (p.get("cell") or {}).items()}
    meta = {}
    if getattr(stage, "input_kind", "spikes") != "spikes":
        meta["jaxspike_input_kind"] = stage.input_kind
    if bias is None and not _is_dense(stage):  # NIR convolutions always carry a bias
        meta["jaxspike_use_bias"] = 0

    if _is_dense(stage):
        if row_perm is not None:
            kernel = kernel[row_perm]
        if col_perm is not None:
            kernel = kernel[:, col_perm]
            bias = None if bias is None else bias[col_perm]
            cell_params = {k: v[col_perm] if np.ndim(v) else v for k, v in cell_params.items()}
        weight = np.ascontiguousarray(kernel.T)
        synapse = (
            nir.Linear(weight=weight, metadata=meta)
            if bias is None
            else nir.Affine(weight=weight, bias=bias, metadata=meta)
        )
    elif isinstance(stage, layers.SpikingConvTranspose):
        if not allow_extensions:
            raise ValueError(f"{where}: a transposed convolution has no standard NIR node (jaxspike.ConvTranspose2d)")
        strides = _pair(stage.strides)
        kh, kw = kernel.shape[:2]
        pads = conv_transpose_padding(stage.padding, (kh, kw), strides)
        synapse = nodes.ConvTranspose2d(
            input_shape=in_shape[:2],
            weight=np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)),
            stride=strides,
            padding=np.array(pads),
            bias=bias if bias is not None else np.zeros(kernel.shape[-1], np.float32),
            metadata=meta,
        )
    else:  # SpikingConv
        strides = _pair(stage.strides)
        kh, kw = kernel.shape[:2]
        pads = conv_padding(stage.padding, in_shape[:2], (kh, kw), strides)
        weight, sym = _symmetric_kernel(kernel.transpose(3, 2, 0, 1), pads, where)
        if weight.shape != kernel.transpose(3, 2, 0, 1).shape:
            meta["jaxspike_padding"] = np.array(pads, dtype=np.int64)
        synapse = nir.Conv2d(
            input_shape=tuple(int(v) for v in in_shape[:2]),
            weight=np.ascontiguousarray(weight),
            stride=strides,
            padding=sym,
            dilation=(1, 1),
            groups=1,
            bias=bias if bias is not None else np.zeros(kernel.shape[-1], np.float32),
            metadata=meta,
        )
    out.append((name, synapse))

    neuron = neurons.cell_to_node(
        cell, cell_params, tuple(out_shape), dt=dt, allow_extensions=allow_extensions, where=where
    )
    if isinstance(stage, layers.DenseReadout):
        neuron.metadata["jaxspike_module"] = "DenseReadout"
    out.append((f"{name}_cell", neuron))
    if isinstance(stage, layers.DenseReadout) and stage.mode != "sequence":
        if not allow_extensions:
            raise ValueError(f"{where}: a readout over time (mode={stage.mode!r}) has no standard NIR node")
        out.append((f"{name}_readout", nodes.Readout(shape=[stage.features], mode=stage.mode)))


def to_nir(
    network: net_lib.Network,
    params: dict,
    input_shape: Sequence[int],
    *,
    dt: float = neurons.DT,
    allow_extensions: bool = True,
    metadata: dict | None = None,
) -> nir.NIRGraph:
    """The NIR graph of ``network`` with ``params``.

    Args:
      network: the stages (see :mod:`jaxspike.nir.network`).
      params: ``{stage name: params}``.
      input_shape: per-step input features in jaxspike layout: ``(N,)`` or
        ``(H, W, C)`` (NIR's ``Input`` gets ``(C, H, W)``).
      dt: the step length NIR's time constants are expressed in (see
        :mod:`jaxspike.nir.neurons`); stored as graph metadata ``jaxspike_dt``.
      allow_extensions: ``False`` refuses, with a one-line reason, anything
        needing a ``jaxspike.*`` node (reset by subtraction, transposed
        convolutions, Bernoulli sources, readouts over time), so that the graph
        is standard NIR.
      metadata: extra graph metadata (str / number / array values).

    Returns:
      A type-checked :class:`nir.NIRGraph` ``input -> ... -> output``.
    """
    names, stages = tuple(network.names), tuple(network.stages)
    if len(names) != len(stages):
        raise ValueError(f"network has {len(names)} names for {len(stages)} stages")
    shapes = _stage_shapes(network, params, tuple(input_shape))
    row_perm: dict[int, np.ndarray] = {}
    col_perm: dict[int, np.ndarray] = {}
    for i, stage in enumerate(stages):
        in_shape, out_shape, _ = shapes[i]
        if isinstance(stage, net_lib.Flatten) and stage.order == "hwc" and len(in_shape) == 3:
            if i + 1 >= len(stages) or not _is_dense(stages[i + 1]):
                raise ValueError(
                    f"stage {names[i]!r}: a jaxspike (H, W, C) Flatten must feed a dense layer to be exported "
                    f"(NIR flattens channels first); use Flatten(order='chw')"
                )
            row_perm[i + 1] = net_lib.hwc_to_chw_index(in_shape)
        if isinstance(stage, net_lib.Unflatten) and stage.order == "hwc" and len(out_shape) == 3:
            prev = stages[i - 1] if i else None
            if (
                prev is None
                or not _is_dense(prev)
                or (isinstance(prev, layers.DenseReadout) and prev.mode != "sequence")
            ):
                raise ValueError(
                    f"stage {names[i]!r}: a jaxspike (H, W, C) Unflatten must follow a dense layer to be exported; "
                    f"use Unflatten(order='chw')"
                )
            col_perm[i - 1] = net_lib.hwc_to_chw_index(out_shape)

    out: list[tuple[str, nir.NIRNode]] = []
    for i, (name, stage) in enumerate(zip(names, stages)):
        in_shape, out_shape, _ = shapes[i]
        if isinstance(stage, (layers.SpikingDense, layers.SpikingConv, layers.DenseReadout)):
            if name not in params:
                raise ValueError(f"no params for stage {name!r}; params has {sorted(params)}")
            _emit_layer(
                out,
                name,
                stage,
                params[name],
                in_shape,
                out_shape,
                row_perm.get(i),
                col_perm.get(i),
                dt,
                allow_extensions,
            )
        elif isinstance(stage, net_lib.Flatten):
            if len(in_shape) > 1:
                out.append((name, nir.Flatten(input_type={"input": _nir_shape(in_shape)}, start_dim=0, end_dim=-1)))
        elif isinstance(stage, net_lib.Unflatten):
            if not allow_extensions:
                raise ValueError(f"stage {name!r}: NIR has no reshape node (jaxspike.Unflatten)")
            out.append(
                (name, nodes.Unflatten(input_type={"input": _nir_shape(in_shape)}, output_shape=_nir_shape(out_shape)))
            )
        elif isinstance(stage, net_lib.Bernoulli):
            if not allow_extensions:
                raise ValueError(f"stage {name!r}: NIR has no stochastic (Bernoulli) node")
            out.append((name, nodes.Bernoulli(shape=_nir_shape(in_shape), input=stage.input)))
        elif isinstance(stage, net_lib.Readout):
            if not allow_extensions:
                raise ValueError(f"stage {name!r}: NIR has no readout-over-time node")
            out.append((name, nodes.Readout(shape=_nir_shape(in_shape), mode=stage.mode, activation=stage.activation)))
        else:
            raise ValueError(f"stage {name!r} of type {type(stage).__name__} has no NIR export")

    graph_nodes = {"input": nir.Input(input_type=_nir_shape(input_shape))}
    taken = set(graph_nodes)
    for name, node in out:
        if name in taken or name == "output":
            raise ValueError(f"two NIR nodes would be named {name!r}; rename a stage")
        graph_nodes[name] = node
        taken.add(name)
    final_shape = shapes[-1][1] if shapes else tuple(input_shape)
    graph_nodes["output"] = nir.Output(output_type=_nir_shape(final_shape))
    order = list(graph_nodes)
    edges = list(zip(order[:-1], order[1:]))
    meta = {"jaxspike_dt": float(dt), **(metadata or {})}
    return nir.NIRGraph(nodes=graph_nodes, edges=edges, metadata=meta, type_check=True)


# ---------------------------------------------------------------------------
# Whole models as networks.


def _unbound(module):
    return module.clone(parent=None, name=None)


def _check_off(model, fields: dict[str, Any], what: str) -> None:
    for field, off in fields.items():
        if getattr(model, field) != off:
            raise ValueError(f"{what} with {field}={getattr(model, field)!r} has no NIR export")


def discriminator_network(model, params: dict, image_shape: Sequence[int]) -> Exported:
    """A :class:`~jaxspike.models.gan.SpikingDiscriminator` from its coded input spikes to its logit.

    The graph's input is the spike train the model's coding makes of an image
    (``model.coding``; outside the graph), ``[T, B, H*W*C]`` for the MLP and
    ``[T, B, H, W, C]`` for the conv model; its output is ``[B, 1]``, the
    logit (time-mean of the readout membrane).
    """
    _check_off(model, {"mbstd_group": 0, "current_norm": False}, "a discriminator")
    bound = model.bind({"params": params})
    stages = [(layer.name, _unbound(layer)) for layer in bound.feature_layers]
    h, w, c = (int(v) for v in image_shape)
    if model.arch == "conv":
        stages.append(("flatten", net_lib.Flatten()))
        input_shape = (h, w, c)
    else:
        input_shape = (h * w * c,)
    stages.append(("head", _unbound(bound.head)))
    return _exported(stages, params, input_shape)


def generator_network(model, params: dict) -> Exported:
    """A :class:`~jaxspike.models.gan.SpikingGenerator` from noise firing probabilities to its image.

    Its first stage is a :class:`~jaxspike.nir.network.Bernoulli` source: the
    input is the firing probability of every noise unit at every step
    (``[T, B, Z]``; ``model.noise_p`` everywhere for the fixed-rate noise);
    the output is the image, ``[B, H*W*C]`` (MLP) or ``[B, H, W, C]`` (conv).
    With the key ``k_s`` of ``k_p, k_s = jax.random.split(key)`` it draws the
    spikes ``model.generate(key, num)`` draws.
    """
    _check_off(model, {"current_norm": False}, "a generator")
    if model.readout == "first_spike_interp":
        raise ValueError(
            "readout='first_spike_interp' reads the membrane between steps and has no NIR export; "
            "use readout='first_spike'"
        )
    bound = model.bind({"params": params})
    h, w, _ = model.image_shape
    stages = [("noise", net_lib.Bernoulli())]
    stages += [(layer.name, _unbound(layer)) for layer in bound.hidden_layers]
    if model.arch == "conv":
        stages.append(("unflatten", net_lib.Unflatten((h // 4, w // 4, model.channels[0]))))
        stages += [(layer.name, _unbound(layer)) for layer in bound.deconvs]
    stages.append(("out_layer", _unbound(bound.out_layer)))
    if model.readout == "membrane":
        mode = "none" if model.arch == "mlp" else "mean"  # the MLP's DenseReadout already averages over time
        stages.append(("image", net_lib.Readout(mode, "sigmoid")))
    else:
        stages.append(("image", net_lib.Readout("mean" if model.readout == "rate" else "first_spike")))
    return _exported(stages, params, (model.noise_dim,))


def vae_encoder_network(model, params: dict, *, sample: bool = False) -> Exported:
    """A :class:`~jaxspike.models.vae.SpikingVAE` encoder, coded input spikes -> latent logits ``[T, B, L]``.

    ``sample=True`` appends the Bernoulli latent (``jaxspike.Bernoulli`` on
    the logits), so the output is the latent spike train ``z``. The input
    coding stays outside the graph, as for the discriminator.
    """
    _check_off(model, {"current_norm": False}, "a VAE encoder")
    if model.estimator == "autoregressive":
        raise ValueError("the autoregressive posterior samples candidates inside its recurrence and has no NIR export")
    bound = model.bind({"params": params})
    stages = [(layer.name, _unbound(layer)) for layer in bound.enc_layers]
    h, w, c = model.image_shape
    if model.arch == "conv":
        stages.append(("flatten", net_lib.Flatten()))
        input_shape = (h, w, c)
    else:
        input_shape = (h * w * c,)
    stages.append(("to_latent", _unbound(bound.to_latent)))
    if sample:
        stages.append(("latent", net_lib.Bernoulli("logit")))
    return _exported(stages, params, input_shape)


def converted_network(snn, input_shape: Sequence[int], *, input_kind: str = "analog") -> Exported:
    """A converted network (:class:`jaxspike.convert.SpikingNet`) as IF layers and an integrator readout.

    Mirrors :func:`jaxspike.convert.run_snn`: hidden layers of
    integrate-and-fire neurons (threshold 1, reset by subtraction), the last
    linear layer a non-spiking integrator whose time-mean (then the sigmoid,
    if any) is the output. ``input_kind``: ``"analog"`` for the direct input
    current, ``"spikes"`` for a Bernoulli-coded input.
    """
    from jaxspike import convert  # local: convert is a client of the layers, not of this package

    linear = [i for i, layer in enumerate(snn.layers) if layer.kind in convert.LINEAR_KINDS]
    if not linear:
        raise ValueError("the converted network has no linear layer")
    stages, params = [], {}
    rank, size = len(input_shape), int(np.prod(input_shape))  # of the current activations
    for i, layer in enumerate(snn.layers):
        if layer.kind == "relu":
            continue  # the IF neurons are the ReLU
        if layer.kind == "reshape":
            target = tuple(int(v) for v in layer.shape)
            if len(target) == 1 and rank == 3:
                stages.append((f"flatten{i}", net_lib.Flatten()))
            elif len(target) == 3 and rank == 1:
                stages.append((f"unflatten{i}", net_lib.Unflatten(target)))
            elif not (len(target) == rank == 1 and target[0] == size):
                raise ValueError(f"reshape to {target} (layer {i}) has no NIR export")
            rank = len(target)
            continue
        if layer.kind not in convert.LINEAR_KINDS:
            raise ValueError(f"layer {i} ({layer.name or layer.kind!r}) of kind {layer.kind!r} has no NIR export")
        cell = cells.leaky_integrator(0.0) if i == linear[-1] else cells.integrate_and_fire(1.0)
        kind = input_kind if i == linear[0] else "spikes"
        if layer.kind == "dense":
            module = layers.SpikingDense(layer.kernel.shape[1], cell=cell, input_kind=kind)
            rank, size = 1, int(layer.kernel.shape[1])
        else:
            kh, kw = layer.kernel.shape[:2]
            cls = layers.SpikingConv if layer.kind == "conv" else layers.SpikingConvTranspose
            module = cls(
                layer.kernel.shape[-1],
                cell=cell,
                kernel_size=(kh, kw),
                strides=layer.strides,
                padding=layer.padding,
                input_kind=kind,
            )
            rank = 3
        name = layer.name or f"layer{i}"
        stages.append((name, module))
        params[name] = {"kernel": layer.kernel, "bias": layer.bias}
    stages.append(("readout", net_lib.Readout("mean", "sigmoid" if snn.output_activation == "sigmoid" else "identity")))
    return _exported(stages, params, tuple(int(v) for v in input_shape))


def _exported(stages, params, input_shape) -> Exported:
    names = tuple(name for name, _ in stages)
    network = net_lib.Network(names=names, stages=tuple(stage for _, stage in stages))
    return Exported(network, {name: params[name] for name in names if name in params}, tuple(input_shape))
