"""Spiking layers: a synapse (dense, convolution, transposed convolution) feeding a cell,
run over time with one ``lax.scan`` helper.

Inputs and outputs are time-major ``[T, B, ...]`` (features last: ``[T, B, N]``
for dense layers, ``[T, B, H, W, C]`` for convolutions). Layers compute in
float32: spikes given as bool or another float type are cast; integer arrays
are refused (code images first, :mod:`jaxspike.encoding`).

Two ways to run a layer over time give identical spikes:

* **hoisted** - the synapse of all ``T*B`` rows is one matmul/convolution
  outside the scan; only the elementwise membrane recurrence is scanned.
  Fast (one large GEMM), but holds the ``[T, B, N]`` currents and their
  gradient.
* **per-step** - the synapse is applied inside the scan to ``x_t``. Smaller
  GEMMs, no ``[T, B, N]`` current buffer; combined with ``remat_chunk`` it
  keeps memory O(T / chunk + chunk) in the backward pass.

``hoist=None`` (default) hoists unless each step's product has at least
:data:`HOIST_BELOW_ROWS` rows (batch x spatial positions) *and* the
``[T, B, N]`` currents exceed :data:`HOIST_MAX_BYTES`; ``remat_chunk`` always
runs per step. ``current_norm=True`` standardises each example's current at
each step before the cell (:func:`_normalise_current`) (see ``bench/lif_layer.py`` and README.md for the measurements
behind this). ``rate_grad=theta > 0`` keeps the spikes but backpropagates
through the layer's firing-rate map instead of the per-step surrogate
(:meth:`_SpikingLayer._rate_gradient`).

Convolution synapses run as XLA's own convolution or as patches + GEMM
(``conv_impl``; the default on CPU runs every backward pass and the
transposed convolution's forward as GEMMs, where XLA's convolutions run at a
fraction of its GEMM speed, and keeps XLA's forward convolution, which does
not; ``bench/conv_layer.py``). The GEMM forms give the same spikes up to the
summation order of each current.

Each layer returns ``(outputs, aux)``. ``aux`` holds per-example counts the
energy model needs, gathered in the same pass:

* ``spike_count`` ``[B]`` - output spikes summed over time and neurons;
* ``firing_rate`` ``[B]`` - spikes per neuron per step;
* ``synops`` ``[B]`` - accumulate operations: input events (non-zero
  inputs) times the synapses each one drives, exact for padded/strided
  convolutions, plus one addition per neuron and step for the bias;
* ``macs`` ``[B]`` - the same count when the layer is declared to receive
  real-valued input (``input_kind="analog"``), where each event is a
  multiply-accumulate.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxspike import cells as cells_lib
from jaxspike import encoding

Array = jax.Array

__all__ = [
    "scan_time",
    "SpikingDense",
    "SpikingConv",
    "SpikingConvTranspose",
    "DenseReadout",
    "CONV_IMPLS",
    "conv_impl_for_backend",
    "READOUT_MODES",
]

READOUT_MODES = ("mean", "last", "max", "sequence")

# Auto placement threshold: per-step GEMMs with fewer rows than this are run
# as one hoisted [T*rows, ...] product instead (measured on 2 CPU cores).
HOIST_BELOW_ROWS = 64
# ... and layers whose [T, B, N] currents fit in this many bytes are hoisted too.
HOIST_MAX_BYTES = 8 * 2**20
# GEMM convolutions run over chunks of images whose patches take about this many bytes.
GEMM_CHUNK_BYTES = 2**20


def scan_time(
    step: Callable[[Any, Any], tuple[Any, Any]],
    carry: Any,
    xs: Any,
    *,
    unroll: int = 1,
    remat_chunk: int = 0,
) -> tuple[Any, Any]:
    """``lax.scan`` over the leading (time) axis, optionally rematerialised.

    With ``remat_chunk = K > 0`` the sequence is cut into chunks of ``K``
    steps; each chunk's forward pass is recomputed in the backward pass
    (``jax.checkpoint``), so only one carry per chunk is stored. A remainder
    of ``T mod K`` steps runs as a plain scan. ``K ~ sqrt(T)`` balances
    stored carries against recomputation (Chen et al. 2016, "Training deep
    nets with sublinear memory cost").
    """
    num_steps = jax.tree_util.tree_leaves(xs)[0].shape[0]
    if remat_chunk < 0:
        raise ValueError(f"remat_chunk must be >= 0, got {remat_chunk}")
    if not remat_chunk or remat_chunk >= num_steps:
        return jax.lax.scan(step, carry, xs, unroll=unroll)

    n_chunks, rem = divmod(num_steps, remat_chunk)

    # Chunks are cut by dynamic slicing inside the loop rather than by
    # reshaping a sliced copy of ``xs``: when T is not a multiple of the chunk,
    # the copy alone would cost as much memory as the inputs.
    @jax.checkpoint
    def run_chunk(c, chunk_idx):
        start = chunk_idx * remat_chunk
        x_chunk = jax.tree_util.tree_map(
            lambda a: jax.lax.dynamic_slice_in_dim(a, start, remat_chunk, axis=0), xs
        )
        return jax.lax.scan(step, c, x_chunk, unroll=unroll)

    carry, ys = jax.lax.scan(run_chunk, carry, jnp.arange(n_chunks))
    ys = jax.tree_util.tree_map(lambda a: a.reshape((n_chunks * remat_chunk,) + a.shape[2:]), ys)
    if rem:
        tail = jax.tree_util.tree_map(lambda a: a[n_chunks * remat_chunk :], xs)
        carry, ys_tail = jax.lax.scan(step, carry, tail, unroll=unroll)
        ys = jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a, b], 0), ys, ys_tail)
    return carry, ys


def _flat_batch(x: Array, feature_ndim: int) -> tuple[Array, tuple[int, ...]]:
    lead = x.shape[: x.ndim - feature_ndim]
    return x.reshape((-1,) + x.shape[x.ndim - feature_ndim :]), lead


class _SpikingLayer(nn.Module):
    """Shared machinery: params of synapse and cell, scan over time, aux counts.

    Subclasses define ``feature_ndim`` (axes per example), ``_synapse_params``,
    ``_synapse`` (``params, x[N, *in] -> current[N, *out]``) and
    ``_event_fanout`` (exact number of synapses driven by the input events).
    """

    features: int
    cell: cells_lib.Cell | None = None  # None: the default cells.lif()
    use_bias: bool = True
    kernel_init: Callable = nn.initializers.lecun_normal()
    bias_init: Callable = nn.initializers.zeros_init()
    hoist: bool | None = None
    remat_chunk: int = 0
    unroll: int = 1
    input_kind: str = "spikes"
    current_norm: bool = False
    rate_grad: float = 0.0
    record_membrane: bool = False  # aux["membrane"]: the cell's membrane v_t, [T, B, *out]

    feature_ndim = 1

    def _get_cell(self) -> cells_lib.Cell:
        return self.cell if self.cell is not None else cells_lib.lif()

    def _check_input(self, x_seq: Array) -> None:
        if not (jnp.issubdtype(x_seq.dtype, jnp.floating) or x_seq.dtype == jnp.bool_):
            raise ValueError(
                f"{type(self).__name__} takes spikes (or currents) as a float or bool array, got {x_seq.dtype}; "
                "code integer images first (jaxspike.encoding.rate / latency)"
            )
        if x_seq.ndim != 2 + self.feature_ndim:
            raise ValueError(
                f"{type(self).__name__} expects input [T, B, {self._axes_doc}] "
                f"({2 + self.feature_ndim} axes), got shape {tuple(x_seq.shape)}"
            )
        encoding.check_time_major(x_seq, "layer input", min_ndim=2 + self.feature_ndim)
        if self.input_kind not in ("spikes", "analog"):
            raise ValueError(f"input_kind must be 'spikes' or 'analog', got {self.input_kind!r}")

    def _check_in_features(self, in_shape, axis: int) -> None:
        """A clear error when the input's feature size differs from the trained kernel's."""
        if self.has_variable("params", "kernel"):
            k_shape = self.get_variable("params", "kernel").shape
            if k_shape[axis] != in_shape[-1]:
                raise ValueError(
                    f"{type(self).__name__} {self.name!r} has a kernel for {k_shape[axis]} input "
                    f"features but got input with {in_shape[-1]} (input feature shape {tuple(in_shape)})"
                )

    def _counts(self, x_seq: Array, params, out_shape, num_steps: int) -> dict[str, Array]:
        """Exact synaptic-operation counts per example ``[B]``."""
        events = jnp.sum((x_seq != 0).astype(jnp.float32), axis=0)  # [B, *in]
        ops = self._event_fanout(events, params)  # [B]
        if self.use_bias:
            ops = ops + float(np.prod(out_shape)) * num_steps
        zero = jnp.zeros_like(ops)
        if self.input_kind == "analog":
            return {"synops": zero, "macs": ops}
        return {"synops": ops, "macs": zero}

    @nn.compact
    def __call__(self, x_seq: Array, state0=None):
        """Runs the layer over time.

        Args:
          x_seq: ``[T, B, *in_features]`` input spikes (or currents).
          state0: initial cell state; zeros by default.

        Returns:
          ``(spikes [T, B, *out_features], aux)``.
        """
        self._check_input(x_seq)
        # Membranes and currents are float32: bool or other float spike arrays are cast.
        x_seq = x_seq.astype(jnp.float32)
        cell = self._get_cell()
        num_steps, batch = x_seq.shape[:2]
        in_shape = x_seq.shape[2:]
        params = self._synapse_params(in_shape)
        out_shape = jax.eval_shape(
            lambda p, x: self._synapse(p, x), params, jax.ShapeDtypeStruct((1,) + in_shape, x_seq.dtype)
        ).shape[1:]
        cell_params = cell.init_params(out_shape)
        if cell_params:
            cell_params = self.param("cell", lambda _: cell.init_params(out_shape))
        state = state0 if state0 is not None else cell.init_state((batch,) + out_shape, x_seq.dtype)
        if self.hoist is not None:
            hoist = self.hoist
        else:
            # Auto: with remat the synapse must run per step (no [T, B, N] current buffer).
            # Otherwise hoist when the per-step product is too small for an efficient GEMM,
            # or when the [T, B, N] currents are small enough to stay in cache; a larger
            # buffer costs more memory traffic (written, re-read, and again for its
            # gradient) than the per-step GEMMs lose (bench/lif_layer.py, svae_step.py).
            rows = batch * int(np.prod(in_shape[:-1]))
            current_bytes = num_steps * batch * int(np.prod(out_shape)) * x_seq.dtype.itemsize
            hoist = not self.remat_chunk and (rows < HOIST_BELOW_ROWS or current_bytes <= HOIST_MAX_BYTES)
        # A non-spiking cell (leaky integrator readout) emits membranes, not spikes.
        counts_spikes = cell.name != "leaky_integrator"
        if self.current_norm:
            n_feat = out_shape[-1]
            norm = {
                "scale": self.param("norm_scale", nn.initializers.ones_init(), (n_feat,)),
                "offset": self.param("norm_offset", nn.initializers.zeros_init(), (n_feat,)),
            }

        def step(carry, inp):
            st, count = carry
            current = inp if hoist else self._synapse(params, inp)
            if self.current_norm:
                current = _normalise_current(current, norm)
            st, spikes = cell.step(cell_params, st, current)
            if counts_spikes:
                count = count + jnp.sum(spikes.reshape(batch, -1), axis=1)
            return (st, count), ((spikes, st.v) if self.record_membrane else spikes)

        if hoist:
            flat, _ = _flat_batch(x_seq, self.feature_ndim)
            xs = self._synapse(params, flat).reshape((num_steps, batch) + out_shape)
        else:
            xs = x_seq
        if self.record_membrane and not hasattr(state, "v"):
            raise ValueError(f"record_membrane needs a cell whose state has a membrane v; {cell.name!r} has none")
        count0 = jnp.zeros((batch,), x_seq.dtype)
        (state, count), ys = scan_time(
            step, (state, count0), xs, unroll=self.unroll, remat_chunk=self.remat_chunk
        )
        spikes, membrane = ys if self.record_membrane else (ys, None)
        if self.rate_grad:
            spikes = self._rate_gradient(spikes, x_seq, params, norm if self.current_norm else None)
        aux = {
            "spike_count": count,
            "firing_rate": count / (num_steps * float(np.prod(out_shape))),
            **self._counts(x_seq, params, out_shape, num_steps),
        }
        if self.current_norm:  # mean, variance, scale and shift: counted as 4 MACs per neuron and step
            aux["macs"] = aux["macs"] + 4.0 * float(np.prod(out_shape)) * num_steps
        if self.record_membrane:
            aux["membrane"] = membrane
        return spikes, aux

    def _rate_gradient(self, spikes: Array, x_seq: Array, params, norm) -> Array:
        """Spikes whose backward pass goes through the firing-rate map, not the per-step surrogate.

        The forward value is the exact spike train. The gradient is that of
        ``clip(mean_t I_t / theta, 0, 1)``, the firing rate of an
        integrate-and-fire neuron with reset by subtraction driven by the
        mean current (exact as T grows), spread evenly over the T steps:
        differentiation on spike representation (Meng et al. 2022, "Training
        high-performance low-latency spiking neural networks by
        differentiation on spike representation"). ``theta = rate_grad``.
        """
        if self.current_norm:  # normalisation is per step, so average the normalised currents
            num_steps, batch = x_seq.shape[:2]
            flat, _ = _flat_batch(x_seq, self.feature_ndim)
            current = _normalise_current(self._synapse(params, flat), norm)
            mean_current = jnp.mean(current.reshape((num_steps, batch) + current.shape[1:]), axis=0)
        else:  # the synapse is affine, so the mean current is the synapse of the mean input
            mean_current = self._synapse(params, jnp.mean(x_seq, axis=0))
        rate = jnp.clip(mean_current / self.rate_grad, 0.0, 1.0)
        return jax.lax.stop_gradient(spikes) + (rate - jax.lax.stop_gradient(rate))[None]


def _normalise_current(current: Array, norm: dict) -> Array:
    """Per-example, per-step normalisation of a layer's input current.

    Each example's current at each step is standardised over all its neurons
    (features and positions) and rescaled by a learned per-feature
    ``scale`` and ``offset``, as layer normalisation (Ba et al. 2016) does for
    pre-activations. It keeps the membrane drive near the threshold whatever
    the weights learn, the job threshold-dependent batch norm does for deep
    SNNs (Zheng et al. 2021, "Going deeper with directly-trained larger
    spiking neural networks"), without batch statistics at sampling time.
    """
    axes = tuple(range(1, current.ndim))
    mean = jnp.mean(current, axis=axes, keepdims=True)
    var = jnp.var(current, axis=axes, keepdims=True)
    return (current - mean) * jax.lax.rsqrt(var + 1e-5) * norm["scale"] + norm["offset"]


class SpikingDense(_SpikingLayer):
    """Dense synapse + spiking cell: ``I_t = x_t W + b``, ``s_t = cell(I_t)``.

    Input ``[T, B, N_in]``, output ``[T, B, features]``.
    """

    feature_ndim = 1
    _axes_doc = "N"

    def _synapse_params(self, in_shape):
        if self.features < 1:
            raise ValueError(f"SpikingDense needs features >= 1, got {self.features}")
        self._check_in_features(in_shape, 0)
        p = {"kernel": self.param("kernel", self.kernel_init, (in_shape[-1], self.features))}
        if self.use_bias:
            p["bias"] = self.param("bias", self.bias_init, (self.features,))
        return p

    def _synapse(self, params, x):
        y = x @ params["kernel"]
        return y + params["bias"] if "bias" in params else y

    def _event_fanout(self, events, params):
        return jnp.sum(events, axis=-1) * self.features


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


# --- convolution as patches + GEMM -------------------------------------------
#
# Both synapses are one ``lax.conv_general_dilated``: a convolution slides its
# window with stride s over the padded input; a transposed convolution
# (``lax.conv_transpose``, kernel not flipped) slides it with stride 1 over the
# input dilated by s (s - 1 zeros between pixels) and padded. XLA:CPU runs
# the native forms, above all the transposed one and every backward pass
# (backward-filter, backward-input), at a small fraction of its GEMM speed
# (``bench/conv_layer.py``); these functions run them as GEMMs over chunks
# of images that stay in cache, forward and backward (a GEMM's transpose is
# two GEMMs, a patch extraction's is an overlap-add).


class _ConvAxis(NamedTuple):
    """One spatial axis of a (transposed) convolution, padding resolved.

    ``stride`` is the window stride of a convolution, the input dilation of a
    transposed one; ``pad`` pads the (dilated) input, as ``lax`` does.
    """

    size: int
    kernel: int
    stride: int
    pad: tuple[int, int]
    transposed: bool

    @property
    def out(self) -> int:
        if self.transposed:
            return (self.size - 1) * self.stride + 1 + sum(self.pad) - self.kernel + 1
        return (self.size + sum(self.pad) - self.kernel) // self.stride + 1


def _transpose_pad(kernel: int, stride: int, padding: str) -> tuple[int, int]:
    """The dilated input's padding ``lax.conv_transpose`` uses for "SAME"/"VALID"."""
    if padding == "SAME":
        total = kernel + stride - 2
        before = kernel - 1 if stride > kernel - 1 else -(-total // 2)
    elif padding == "VALID":
        total = kernel + stride - 2 + max(kernel - stride, 0)
        before = kernel - 1
    else:
        raise ValueError(f"padding must be 'SAME', 'VALID' or a ((lo, hi), (lo, hi)) sequence, got {padding!r}")
    return before, total - before


def _conv_axes(in_hw, kernel_hw, strides, padding, transposed: bool) -> tuple[_ConvAxis, _ConvAxis]:
    """The two spatial axes of a layer's synapse; explicit padding is taken as ``lax`` takes it."""
    strides = _pair(strides)
    if isinstance(padding, str):
        if transposed:
            pads = [_transpose_pad(k, s, padding) for k, s in zip(kernel_hw, strides)]
        else:
            if padding not in ("SAME", "VALID"):
                raise ValueError(f"padding must be 'SAME', 'VALID' or a ((lo, hi), (lo, hi)) sequence, got {padding!r}")
            pads = jax.lax.padtype_to_pads(in_hw, kernel_hw, strides, padding)
    else:
        pads = [tuple(int(v) for v in p) for p in padding]
        if len(pads) != 2 or any(len(p) != 2 for p in pads):
            raise ValueError(f"explicit padding must be ((lo, hi), (lo, hi)), got {padding!r}")
    axes = tuple(
        _ConvAxis(int(n), int(k), int(s), (int(p[0]), int(p[1])), transposed)
        for n, k, s, p in zip(in_hw, kernel_hw, strides, pads)
    )
    if any(a.out < 1 for a in axes):
        raise ValueError(f"the convolution leaves no output: input {tuple(in_hw)}, kernel {tuple(kernel_hw)}, "
                         f"strides {strides}, padding {padding!r}")
    return axes


def _fanout(axis: _ConvAxis) -> np.ndarray:
    """``[size]``: outputs along one axis whose window reads each input position.

    A convolution's synapses factor over the two axes, so the synapses an
    input pixel drives (per output channel) are the outer product of the two
    axes' fanouts: exact for any padding and stride, and data-independent.
    """
    s_window, s_input = (1, axis.stride) if axis.transposed else (axis.stride, 1)
    pos = np.arange(axis.out)[:, None] * s_window + np.arange(axis.kernel)[None, :] - axis.pad[0]
    src = pos // s_input
    hit = (pos % s_input == 0) & (src >= 0) & (src < axis.size)
    return np.bincount(src[hit], minlength=axis.size).astype(np.float64)


def _pad_hw(x: Array, pads) -> Array:
    """Zero-pads (negative: crops) the two spatial axes of ``[N, H, W, C]``."""
    config = ((0, 0, 0), (pads[0][0], pads[0][1], 0), (pads[1][0], pads[1][1], 0), (0, 0, 0))
    return jax.lax.pad(x, jnp.zeros((), x.dtype), config)


def _patches(x: Array, window: tuple[int, int], strides: tuple[int, int], pads, out_hw) -> Array:
    """``[N, H, W, C]`` -> ``[N, H', W', kh*kw*C]``, features ordered (row, column, channel).

    The order of an HWIO kernel reshaped to ``[kh*kw*C, O]``, so a
    convolution is ``patches @ kernel.reshape(-1, O)``.
    """
    xp = _pad_hw(x, pads)
    (kh, kw), (sh, sw), (ho, wo) = window, strides, out_hw
    n, c = x.shape[0], x.shape[-1]
    taps = [
        jax.lax.slice(xp, (0, i, j, 0), (n, i + sh * (ho - 1) + 1, j + sw * (wo - 1) + 1, c), (1, sh, sw, 1))
        for i in range(kh)
        for j in range(kw)
    ]
    return taps[0] if len(taps) == 1 else jnp.concatenate(taps, axis=-1)


def _matmul_last(x: Array, w: Array) -> Array:
    """``[..., K] @ [K, M]`` as one GEMM over all leading axes."""
    return (x.reshape(-1, x.shape[-1]) @ w).reshape(x.shape[:-1] + w.shape[-1:])


def _chunk_size(n: int, floats_per_image: int, itemsize: int) -> int:
    """Images per chunk: about :data:`GEMM_CHUNK_BYTES` of patches, dividing ``n`` where that costs little."""
    most = max(1, GEMM_CHUNK_BYTES // max(1, floats_per_image * itemsize))
    if most >= n:
        return n
    # A size dividing n spares appending the remainder's output (a copy of the whole output).
    return next((d for d in range(most, (most + 1) // 2 - 1, -1) if n % d == 0), most)


def _chunked(
    block: Callable[..., Array],
    x: Array,
    weights: tuple[Array, ...],
    floats_per_image: int,
    primal: Callable[..., Array] | None = None,
) -> Array:
    """``block(x, *weights)`` over chunks of the images of ``x [N, ...]`` (``block`` treats images independently).

    A layer's patches are ``kh*kw`` times its input; built for all rows at
    once they stream through memory twice (written, then read by the GEMM)
    and again in the backward pass, at several times the GEMM's own cost on
    XLA:CPU. In chunks of about :data:`GEMM_CHUNK_BYTES` every patch copy and
    GEMM operand stays in cache. The backward pass is written out
    (``custom_vjp``) as one loop over the same chunks: each chunk's patches
    are rebuilt in cache and give its input gradient and its share of the
    weight gradients, so the only residual is the input itself (inside a
    scan over time, the scan's own input: nothing is stacked). ``primal``,
    when given, computes the same forward value another way (XLA's own
    convolution, where that is faster than the chunked GEMMs).
    """
    n = x.shape[0]
    per = _chunk_size(n, floats_per_image, x.dtype.itemsize)
    groups, full = n // per, (n // per) * per
    whole = groups == 1 and full == n

    def split(a):  # [n, ...] -> [groups, per, ...], [n - full, ...]
        return a[:full].reshape((groups, per) + a.shape[1:]), a[full:]

    def join(head, tail):
        head = head.reshape((full,) + head.shape[2:])
        return head if tail is None else jnp.concatenate([head, tail], axis=0)

    def forward(x, weights):
        if primal is not None:
            return primal(x, *weights)
        if whole:
            return block(x, *weights)
        head, tail = split(x)
        return join(jax.lax.map(lambda xc: block(xc, *weights), head), block(tail, *weights) if full < n else None)

    def chunk_vjp(xc, ct_c, weights):
        return jax.vjp(block, xc, *weights)[1](ct_c)  # the primal output is unused: dead code

    @jax.custom_vjp
    def op(x, weights):
        return forward(x, weights)

    def op_fwd(x, weights):
        return forward(x, weights), (x, weights)

    def op_bwd(res, ct):
        x, weights = res
        if whole:
            dx, *dws = chunk_vjp(x, ct, weights)
            return dx, tuple(dws)

        def body(acc, args):
            dx_c, *dws = chunk_vjp(*args, weights)
            return tuple(a + d for a, d in zip(acc, dws)), dx_c

        (x_head, x_tail), (ct_head, ct_tail) = split(x), split(ct)
        dws, dx_head = jax.lax.scan(body, tuple(jnp.zeros_like(w) for w in weights), (x_head, ct_head))
        dx_tail = None
        if full < n:
            dx_tail, *dws_tail = chunk_vjp(x_tail, ct_tail, weights)
            dws = tuple(a + d for a, d in zip(dws, dws_tail))
        return join(dx_head, dx_tail), dws

    op.defvjp(op_fwd, op_bwd)
    return op(x, tuple(weights))


def _bias_args(bias: Array | None) -> tuple[Array, ...]:
    return () if bias is None else (bias,)


def _plus_bias(y: Array, *bias: Array) -> Array:
    return y + bias[0] if bias else y


def _conv_gemm(
    x: Array,
    kernel: Array,
    axes: tuple[_ConvAxis, _ConvAxis],
    bias: Array | None = None,
    native_forward: bool = False,
) -> Array:
    """Convolution ``[N, H, W, I]`` x HWIO kernel (+ bias) -> ``[N, H', W', O]``: patches @ kernel.

    ``native_forward``: the forward value by ``lax.conv_general_dilated``
    (the currents XLA computes), the backward pass by the chunked GEMMs.
    """
    kh, kw, c_in, c_out = kernel.shape
    strides, pads, out_hw = tuple(a.stride for a in axes), [a.pad for a in axes], [a.out for a in axes]

    def block(xc, w, *b):
        return _plus_bias(_matmul_last(_patches(xc, (kh, kw), strides, pads, out_hw), w), *b)

    def primal(xs, w, *b):
        y = jax.lax.conv_general_dilated(xs, w.reshape(kernel.shape), strides, pads, dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return _plus_bias(y, *b)

    w = kernel.reshape(kh * kw * c_in, c_out)
    per_image = out_hw[0] * out_hw[1] * (kh * kw * c_in + c_out)
    return _chunked(block, x, (w,) + _bias_args(bias), per_image, primal if native_forward else None)


class _Phases(NamedTuple):
    """Sub-pixel plan of one axis of a transposed convolution.

    Output ``o = s a + r`` (phase ``r``) reads inputs ``a + offset[r] + m`` with
    kernel taps ``taps[r][m]``, ``m < n``; taps past the kernel are zero.
    """

    n: int  # taps per phase
    count: int  # outputs per phase (the last phases may need one less)
    offset: tuple[int, ...]  # per phase, into the patch grid
    taps: np.ndarray  # [s, n]
    pad: tuple[int, int]  # of the input, for the patch grid
    positions: int  # patch grid length


def _phases(axis: _ConvAxis) -> _Phases:
    s, k, before = axis.stride, axis.kernel, axis.pad[0]
    n, count = -(-k // s), -(-axis.out // s)
    first = [(before - r) % s for r in range(s)]
    start = [(r + first[r] - before) // s for r in range(s)]
    lo, hi = min(start), max(start)
    taps = np.array([[min(first[r] + s * m, k) for m in range(n)] for r in range(s)])  # k: the zero tap
    return _Phases(n, count, tuple(v - lo for v in start), taps, (-lo, hi + count + n - 1 - axis.size), count + hi - lo)


def _subpixel_kernel(kernel: Array, ph: _Phases, pw: _Phases) -> Array:
    """HWIO kernel -> ``[n_h*n_w*I, s_h*s_w*O]``: each output phase's taps, side by side."""
    zero_tap = jnp.pad(kernel, ((0, 1), (0, 1), (0, 0), (0, 0)))
    sub = zero_tap[ph.taps][:, :, pw.taps]  # [s_h, n_h, s_w, n_w, I, O]
    return sub.transpose(1, 3, 4, 0, 2, 5).reshape(ph.n * pw.n * kernel.shape[2], -1)


def _conv_transpose_subpixel(
    x: Array, kernel: Array, axes: tuple[_ConvAxis, _ConvAxis], bias: Array | None = None
) -> Array:
    """Transposed convolution as one stride-1 patch GEMM for all output phases, then depth-to-space.

    A stride-s transposed convolution is s*s stride-1 convolutions of the
    undilated input, one per output phase ``(o_h mod s, o_w mod s)``, each with
    the kernel taps of that phase (Shi et al. 2016, "Real-time single image and
    video super-resolution using an efficient sub-pixel convolutional neural
    network"). Every phase reads an ``n x n`` window (``n = ceil(k / s)``) of
    the same patch grid, shifted by at most a pixel, so one patch extraction
    and one GEMM with ``s*s*O`` columns serve all phases; no multiplication by
    the dilation's zeros.
    """
    ph, pw = _phases(axes[0]), _phases(axes[1])
    (s_h, s_w), c_out = (axes[0].stride, axes[1].stride), kernel.shape[3]

    def block(xc, w, *b):
        cols = _patches(xc, (ph.n, pw.n), (1, 1), (ph.pad, pw.pad), (ph.positions, pw.positions))
        out = _matmul_last(cols, w).reshape(cols.shape[:3] + (s_h, s_w, c_out))
        rows = jnp.stack([out[:, o : o + ph.count, :, r] for r, o in enumerate(ph.offset)], axis=2)
        grid = jnp.stack([rows[:, :, :, o : o + pw.count, q] for q, o in enumerate(pw.offset)], axis=4)
        grid = grid.reshape(xc.shape[0], ph.count * s_h, pw.count * s_w, c_out)
        return _plus_bias(grid[:, : axes[0].out, : axes[1].out], *b)

    w = _subpixel_kernel(kernel, ph, pw)
    return _chunked(block, x, (w,) + _bias_args(bias), ph.positions * pw.positions * (w.shape[0] + w.shape[1]))


def _conv_transpose_overlap_add(
    x: Array, kernel: Array, axes: tuple[_ConvAxis, _ConvAxis], bias: Array | None = None
) -> Array:
    """Transposed convolution as its adjoint's GEMM: each input pixel's ``kh*kw*O`` products, overlap-added.

    Input pixel ``i`` adds ``x_i K[k]`` to output ``s i + pad_before - k``.
    Cheaper than the sub-pixel form when ``kh*kw*O`` is small next to the
    patch width ``n*n*I`` (an image layer with one or three channels).
    """
    kh, kw, c_in, c_out = kernel.shape
    (ah, aw), (h, wd) = axes, x.shape[1:3]

    def block(xc, w, *b):
        cols = _matmul_last(xc, w).reshape(xc.shape[:3] + (kh, kw, c_out))
        out = None
        for i in range(kh):
            for j in range(kw):
                lo_h, lo_w = ah.pad[0] - i, aw.pad[0] - j
                config = (
                    (0, 0, 0),
                    (lo_h, ah.out - lo_h - (h - 1) * ah.stride - 1, ah.stride - 1),
                    (lo_w, aw.out - lo_w - (wd - 1) * aw.stride - 1, aw.stride - 1),
                    (0, 0, 0),
                )
                term = jax.lax.pad(cols[:, :, :, i, j], jnp.zeros((), cols.dtype), config)
                out = term if out is None else out + term
        return _plus_bias(out, *b)

    w = kernel.transpose(2, 0, 1, 3).reshape(c_in, kh * kw * c_out)
    return _chunked(block, x, (w,) + _bias_args(bias), h * wd * kh * kw * c_out + ah.out * aw.out * c_out)


def _conv_transpose_gemm(
    x: Array, kernel: Array, axes: tuple[_ConvAxis, _ConvAxis], bias: Array | None = None
) -> Array:
    """Transposed convolution (+ bias) as GEMMs, by whichever form moves fewer floats per input pixel."""
    kh, kw, c_in, c_out = kernel.shape
    if kh * kw * c_out < _phases(axes[0]).n * _phases(axes[1]).n * c_in:
        return _conv_transpose_overlap_add(x, kernel, axes, bias)
    return _conv_transpose_subpixel(x, kernel, axes, bias)


CONV_IMPLS = ("auto", "gemm", "gemm_backward", "native")


def conv_impl_for_backend(backend: str | None = None, transposed: bool = False) -> str:
    """What ``conv_impl="auto"`` runs on ``backend`` (default: JAX's default backend).

    On CPU, measured with ``bench/conv_layer.py`` on 2 cores: XLA's forward
    convolution runs near GEMM speed (``"gemm_backward"`` keeps it and runs
    only the backward pass as GEMMs, 0.75-1.0x the time of ``"gemm"``), but its
    transposed convolution, forward or backward, and the backward passes of
    every convolution are 5-50x slower than their GEMMs (``"gemm"`` for
    transposed convolutions). Elsewhere XLA's own (``"native"``): GPU and
    TPU convolution kernels are at least as fast as their GEMMs.
    """
    if (backend or jax.default_backend()) != "cpu":
        return "native"
    return "gemm" if transposed else "gemm_backward"


class SpikingConv(_SpikingLayer):
    """2-D convolution synapse + spiking cell, NHWC.

    Input ``[T, B, H, W, C_in]``, output ``[T, B, H', W', features]``.
    Kernel HWIO ``[kh, kw, C_in, features]``; ``padding`` is "SAME", "VALID"
    or explicit ``((lo, hi), (lo, hi))``, as in ``lax.conv_general_dilated``.

    ``conv_impl`` picks how the synapse runs: ``"native"``
    (``lax.conv_general_dilated`` and its autodiff), ``"gemm"`` (patches +
    GEMM, forward and backward: the same spikes up to the summation order of
    each current), ``"gemm_backward"`` (XLA's forward convolution, so the
    same spikes as ``"native"``, and the GEMM backward pass) or ``"auto"``
    (:func:`conv_impl_for_backend`).
    """

    kernel_size: int | Sequence[int] = 3
    strides: int | Sequence[int] = 1
    padding: str | Sequence[tuple[int, int]] = "SAME"
    conv_impl: str = "auto"

    feature_ndim = 3
    _axes_doc = "H, W, C"
    _transposed = False

    def _synapse_params(self, in_shape):
        if self.features < 1:
            raise ValueError(f"{type(self).__name__} needs features >= 1, got {self.features}")
        if self.conv_impl not in CONV_IMPLS or (self._transposed and self.conv_impl == "gemm_backward"):
            choices = tuple(c for c in CONV_IMPLS if not (self._transposed and c == "gemm_backward"))
            raise ValueError(f"{type(self).__name__} takes conv_impl in {choices}, got {self.conv_impl!r}")
        self._check_in_features(in_shape, 2)
        kh, kw = _pair(self.kernel_size)
        p = {"kernel": self.param("kernel", self.kernel_init, (kh, kw, in_shape[-1], self.features))}
        if self.use_bias:
            p["bias"] = self.param("bias", self.bias_init, (self.features,))
        return p

    def _axes(self, in_hw, kernel_hw) -> tuple[_ConvAxis, _ConvAxis]:
        return _conv_axes(in_hw, kernel_hw, self.strides, self.padding, self._transposed)

    def _native(self, x, kernel):
        return jax.lax.conv_general_dilated(
            x,
            kernel,
            window_strides=_pair(self.strides),
            padding=self.padding if isinstance(self.padding, str) else tuple(self.padding),
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )

    def _conv(self, x, kernel, bias=None):
        impl = conv_impl_for_backend(transposed=self._transposed) if self.conv_impl == "auto" else self.conv_impl
        if impl == "native":
            y = self._native(x, kernel)
            return y if bias is None else y + bias
        axes = self._axes(x.shape[1:3], kernel.shape[:2])
        if self._transposed:
            return _conv_transpose_gemm(x, kernel, axes, bias)
        return _conv_gemm(x, kernel, axes, bias, native_forward=impl == "gemm_backward")

    def _synapse(self, params, x):
        return self._conv(x, params["kernel"], params.get("bias"))

    def _event_fanout(self, events, params):
        # Each event drives, in all output channels, every output whose window
        # covers it: a fixed per-position count (_fanout), no convolution.
        fan_h, fan_w = (_fanout(a) for a in self._axes(events.shape[1:3], params["kernel"].shape[:2]))
        reach = jnp.asarray(np.outer(fan_h, fan_w), events.dtype)
        return jnp.einsum("bhwc,hw->b", events, reach) * self.features


class SpikingConvTranspose(SpikingConv):
    """2-D transposed convolution synapse + spiking cell (decoders, generators).

    Upsamples by ``strides``; input ``[T, B, H, W, C_in]``. The synapse is
    ``lax.conv_transpose`` (kernel not flipped; explicit ``padding`` pads the
    dilated input, as there); ``conv_impl="gemm"`` runs it as one sub-pixel
    patch GEMM or as its adjoint's GEMM plus an overlap-add, forward and
    backward (``"gemm_backward"`` is not offered: XLA:CPU's forward
    transposed convolution is itself the slow part).
    """

    _transposed = True

    def _native(self, x, kernel):
        return jax.lax.conv_transpose(
            x,
            kernel,
            strides=_pair(self.strides),
            padding=self.padding if isinstance(self.padding, str) else tuple(self.padding),
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )


class DenseReadout(nn.Module):
    """Non-spiking dense output layer; returns its membrane read out over time.

    Membrane of a leaky integrator fed ``I_t = x_t W + b``:
    ``v_t = beta v_{t-1} + I_t``. With ``beta = 0`` the membrane is the input
    current itself, so ``mode="mean"`` gives ``mean_t(x_t W + b)``.

    For ``mode`` in ``("mean", "last")`` the readout is linear in the input
    sequence, so it is computed as one matmul on a time-weighted sum of the
    inputs (``B`` rows instead of ``T*B``); ``"max"`` and ``"sequence"`` run
    the integrator over time.

    Returns ``(readout, aux)``: ``[B, features]`` (or ``[T, B, features]`` for
    ``"sequence"``) and the same operation counts as the spiking layers.
    """

    features: int
    mode: str = "mean"
    beta: float = 0.0
    use_bias: bool = True
    input_kind: str = "spikes"
    kernel_init: Callable = nn.initializers.lecun_normal()
    bias_init: Callable = nn.initializers.zeros_init()

    @nn.compact
    def __call__(self, x_seq: Array):
        encoding.check_time_major(x_seq, "readout input", min_ndim=3)
        if not (jnp.issubdtype(x_seq.dtype, jnp.floating) or x_seq.dtype == jnp.bool_):
            raise ValueError(f"DenseReadout takes spikes (or currents) as a float or bool array, got {x_seq.dtype}")
        x_seq = x_seq.astype(jnp.float32)
        if x_seq.ndim != 3:
            raise ValueError(f"DenseReadout expects input [T, B, N], got shape {tuple(x_seq.shape)}")
        if self.mode not in READOUT_MODES:
            raise ValueError(f"readout mode must be one of {READOUT_MODES}, got {self.mode!r}")
        if not 0.0 <= self.beta <= 1.0:
            raise ValueError(f"readout beta must lie in [0, 1], got {self.beta!r}")
        num_steps, batch, n_in = x_seq.shape
        kernel = self.param("kernel", self.kernel_init, (n_in, self.features))
        bias = self.param("bias", self.bias_init, (self.features,)) if self.use_bias else 0.0

        if self.mode in ("mean", "last"):
            # v_T = sum_k beta^(T-1-k) I_k; mean_t v_t = sum_k c_k I_k with
            # c_k = (1/T) sum_{t>=k} beta^(t-k).
            powers = self.beta ** np.arange(num_steps, dtype=np.float64)
            if self.mode == "last":
                weights = powers[::-1]
            else:
                weights = np.cumsum(powers)[::-1] / num_steps
            weights = jnp.asarray(weights, x_seq.dtype)
            x_w = jnp.tensordot(weights, x_seq, axes=(0, 0))
            out = x_w @ kernel + bias * jnp.sum(weights)
        else:
            currents = (x_seq.reshape(-1, n_in) @ kernel + bias).reshape(num_steps, batch, self.features)
            if self.beta == 0.0:  # no memory: the membrane is the current
                v_mem = currents
            else:
                integ = cells_lib.leaky_integrator(self.beta)
                _, v_mem = jax.lax.scan(
                    lambda st, i: integ.step({}, st, i),
                    integ.init_state(currents.shape[1:], currents.dtype),
                    currents,
                )
            out = v_mem if self.mode == "sequence" else jnp.max(v_mem, axis=0)

        events = jnp.sum((x_seq != 0).astype(jnp.float32), axis=(0, 2))
        ops = events * self.features + (self.features * num_steps if self.use_bias else 0.0)
        zero = jnp.zeros_like(ops)
        aux = {
            "spike_count": zero,
            "firing_rate": zero,
            "synops": ops if self.input_kind == "spikes" else zero,
            "macs": ops if self.input_kind == "analog" else zero,
        }
        return out, aux
