"""The GEMM convolutions of jaxspike.layers against XLA's own (lax.conv_general_dilated / conv_transpose)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxspike import cells, layers

DN = ("NHWC", "HWIO", "NHWC")


def _native(x, kernel, transposed, strides, padding):
    pad = padding if isinstance(padding, str) else tuple(padding)
    if transposed:
        return jax.lax.conv_transpose(x, kernel, (strides, strides), pad, dimension_numbers=DN)
    return jax.lax.conv_general_dilated(x, kernel, (strides, strides), pad, dimension_numbers=DN)


def _gemm(x, kernel, transposed, strides, padding, form=None):
    axes = layers._conv_axes(x.shape[1:3], kernel.shape[:2], strides, padding, transposed)
    fn = {
        None: layers._conv_transpose_gemm if transposed else layers._conv_gemm,
        "subpixel": layers._conv_transpose_subpixel,
        "overlap_add": layers._conv_transpose_overlap_add,
        "native_forward": lambda *args: layers._conv_gemm(*args, native_forward=True),
    }[form]
    return fn(x, kernel, axes)


def _arrays(shape_x, shape_k, seed=0):
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.standard_normal(shape_x), jnp.float32), jnp.asarray(rng.standard_normal(shape_k), jnp.float32)


# (transposed, kernel, stride, padding, (H, W), form); explicit pads stay within the
# kernel (see test_padding_past_the_kernel for the others)
GEOMETRIES = [
    (False, 3, 1, "SAME", (6, 5), None),
    (False, 3, 2, "SAME", (7, 6), None),
    (False, 3, 2, "VALID", (7, 7), None),
    (False, 4, 2, "SAME", (5, 7), None),
    (False, 2, 3, ((1, 0), (0, 1)), (7, 8), None),
    (False, 1, 1, "VALID", (3, 4), None),
    (False, 3, 2, "SAME", (7, 6), "native_forward"),
    (False, 2, 3, ((1, 0), (0, 1)), (7, 8), "native_forward"),
    (True, 4, 2, "SAME", (5, 4), "subpixel"),
    (True, 4, 2, "SAME", (5, 4), "overlap_add"),
    (True, 3, 2, "SAME", (5, 5), "subpixel"),
    (True, 3, 2, "VALID", (4, 5), "overlap_add"),
    (True, 5, 3, ((2, 1), (0, 4)), (3, 4), "subpixel"),
    (True, 2, 3, "SAME", (3, 3), "subpixel"),  # stride past the kernel: phases without taps
    (True, 3, 1, "SAME", (5, 6), "subpixel"),  # stride 1: a plain convolution
    (True, 4, 2, ((3, 2), (1, 3)), (4, 3), "overlap_add"),
]


@pytest.mark.parametrize("transposed,k,s,padding,hw,form", GEOMETRIES)
def test_gemm_convolution_and_its_gradients_match_lax(transposed, k, s, padding, hw, form):
    x, kernel = _arrays((2,) + hw + (3,), (k, k, 3, 4))
    ref = _native(x, kernel, transposed, s, padding)
    got = jax.jit(_gemm, static_argnums=(2, 3, 4, 5))(x, kernel, transposed, s, padding, form)
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    if form == "native_forward":  # XLA's own forward: the very same currents
        np.testing.assert_array_equal(got, ref)
    cot = jnp.asarray(np.random.default_rng(1).standard_normal(ref.shape), jnp.float32)
    want = jax.jit(jax.grad(lambda a, b: jnp.sum(_native(a, b, transposed, s, padding) * cot), (0, 1)))(x, kernel)
    have = jax.jit(jax.grad(lambda a, b: jnp.sum(_gemm(a, b, transposed, s, padding, form) * cot), (0, 1)))(x, kernel)
    for a, b in zip(have, want):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("transposed", [False, True])
def test_padding_past_the_kernel(transposed):
    # Pads of k or more (and negative pads) are valid lax padding, but XLA's own input gradient
    # of them is wrong (garbage values on jax 0.10.2), so the truth here is the transposed
    # Jacobian, from forward mode.
    padding = ((3, -1), (0, 4))
    x, kernel = _arrays((1, 5, 4, 2), (2, 2, 2, 3))
    ref = _native(x, kernel, transposed, 1, padding)
    np.testing.assert_allclose(_gemm(x, kernel, transposed, 1, padding), ref, rtol=1e-5, atol=1e-5)
    cot = jnp.asarray(np.random.default_rng(1).standard_normal(ref.shape), jnp.float32)
    have = jax.grad(lambda a, b: jnp.sum(_gemm(a, b, transposed, 1, padding) * cot), (0, 1))(x, kernel)
    for arg, got in enumerate(have):
        jac = jax.jacfwd(lambda a, b: _native(a, b, transposed, 1, padding), arg)(x, kernel)
        want = jnp.tensordot(cot, jac, axes=cot.ndim)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("transposed", [False, True])
def test_chunks_with_a_remainder_give_the_same_result(monkeypatch, transposed):
    x, kernel = _arrays((7, 6, 6, 3), (4, 4, 3, 5) if transposed else (3, 3, 3, 5))

    def run(a, b):  # traced afresh on each call: GEMM_CHUNK_BYTES is read while tracing
        return jax.jit(jax.value_and_grad(lambda a, b: jnp.sum(jnp.sin(_gemm(a, b, transposed, 2, "SAME"))), (0, 1)))(a, b)

    whole, grads = run(x, kernel)
    def traced():  # a fresh function: jax caches traces by function
        return str(jax.make_jaxpr(lambda a, b: _gemm(a, b, transposed, 2, "SAME"))(x, kernel))

    assert "scan" not in traced()
    monkeypatch.setattr(layers, "GEMM_CHUNK_BYTES", 2 * (6272 if transposed else 1152))  # two images a chunk
    assert "scan" in traced()
    chunked, grads_chunked = run(x, kernel)
    np.testing.assert_allclose(chunked, whole, rtol=1e-6, atol=1e-6)
    for a, b in zip(grads_chunked, grads):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def _spikes(shape, p=0.3, seed=0):
    return jnp.asarray((np.random.default_rng(seed).random(shape) < p).astype(np.float32))


LAYERS = {
    "conv3s1": lambda **kw: layers.SpikingConv(5, kernel_size=3, strides=1, **kw),
    "conv3s2_valid": lambda **kw: layers.SpikingConv(5, kernel_size=3, strides=2, padding="VALID", **kw),
    "conv_explicit": lambda **kw: layers.SpikingConv(5, kernel_size=(3, 2), strides=(2, 1), padding=((1, 2), (0, 1)), **kw),
    "deconv4s2": lambda **kw: layers.SpikingConvTranspose(5, kernel_size=4, strides=2, **kw),
    "deconv4s2_to_one": lambda **kw: layers.SpikingConvTranspose(1, kernel_size=4, strides=2, **kw),  # overlap-add
    "deconv3s2_valid": lambda **kw: layers.SpikingConvTranspose(5, kernel_size=3, strides=2, padding="VALID", **kw),
}
PATHS = {"hoisted": dict(hoist=True), "per_step": dict(hoist=False), "remat": dict(hoist=False, remat_chunk=3)}
CASES = [(name, "hoisted", "gemm") for name in LAYERS] + [
    ("conv_explicit", "per_step", "gemm"),
    ("deconv4s2", "per_step", "gemm"),
    ("conv3s2_valid", "remat", "gemm"),
    ("deconv4s2_to_one", "remat", "gemm"),
    ("conv3s1", "hoisted", "gemm_backward"),
    ("conv_explicit", "per_step", "gemm_backward"),
    ("conv3s2_valid", "remat", "gemm_backward"),
]


@pytest.mark.parametrize("name,path,impl", CASES)
def test_layer_spikes_gradients_and_synops_match_the_native_convolution(name, path, impl):
    x = _spikes((7, 2, 7, 5, 3))
    cell = cells.lif(0.8, 0.5)
    native = LAYERS[name](cell=cell, conv_impl="native", record_membrane=True, **PATHS[path])
    gemm = native.clone(conv_impl=impl)
    params = jax.jit(native.init)(jax.random.key(1), x)["params"]

    def loss(layer, p, inp):
        spikes, aux = layer.apply({"params": p}, inp)
        weights = jnp.arange(1.0, spikes.shape[0] + 1.0)[:, None, None, None, None]
        return jnp.sum(spikes * weights), (spikes, aux)

    run = jax.jit(jax.grad(loss, argnums=(1, 2), has_aux=True), static_argnums=0)
    want, (ref, aux_ref) = run(native, params, x)
    have, (got, aux) = run(gemm, params, x)
    assert float(ref.sum()) > 0
    # A different summation order may only flip a spike whose membrane lies at the threshold.
    near = np.abs(np.asarray(aux_ref["membrane"]) - 0.5) < 1e-5
    assert np.all((np.asarray(got) == np.asarray(ref)) | near)
    np.testing.assert_allclose(aux["membrane"], aux_ref["membrane"], rtol=1e-5, atol=1e-5)
    for key in ("synops", "spike_count", "firing_rate"):
        np.testing.assert_array_equal(aux[key], aux_ref[key], err_msg=key)
    assert np.array_equal(got, ref)  # the gradients below are only comparable on equal spikes
    if impl == "gemm_backward":  # XLA's forward convolution: the very same membranes
        np.testing.assert_array_equal(aux["membrane"], aux_ref["membrane"])
    for a, b in zip(jax.tree_util.tree_leaves(have), jax.tree_util.tree_leaves(want)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", list(LAYERS))
def test_synops_equal_the_old_convolution_count(name):
    # The count before: the per-example event map convolved with a ones kernel, summed, times features.
    x = _spikes((3, 2, 7, 5, 3), p=0.4, seed=3)
    layer = LAYERS[name](use_bias=False)
    variables = jax.jit(layer.init)(jax.random.key(0), x)
    _, aux = jax.jit(layer.apply)(variables, x)
    kernel = variables["params"]["kernel"]
    events = jnp.sum(jnp.sum((x != 0).astype(jnp.float32), axis=0), axis=-1, keepdims=True)
    ones = jnp.ones(kernel.shape[:2] + (1, 1), jnp.float32)
    native = layer.clone(conv_impl="native")
    reach = native.apply(variables, events, method=lambda m, e: m._conv(e, ones))
    np.testing.assert_array_equal(aux["synops"], jnp.sum(reach, axis=(1, 2, 3)) * kernel.shape[-1])


def test_conv_impl_is_checked_and_auto_picks_gemms_on_cpu():
    assert layers.conv_impl_for_backend("cpu") == "gemm_backward"
    assert layers.conv_impl_for_backend("cpu", transposed=True) == "gemm"
    assert layers.conv_impl_for_backend("gpu") == layers.conv_impl_for_backend("tpu", transposed=True) == "native"
    x = _spikes((2, 1, 4, 4, 2))
    with pytest.raises(ValueError, match="conv_impl"):
        layers.SpikingConv(3, conv_impl="fft").init(jax.random.key(0), x)
    with pytest.raises(ValueError, match="conv_impl"):
        layers.SpikingConvTranspose(3, conv_impl="gemm_backward").init(jax.random.key(0), x)
    with pytest.raises(ValueError, match="padding"):
        layers.SpikingConv(3, padding="FULL").init(jax.random.key(0), x)
