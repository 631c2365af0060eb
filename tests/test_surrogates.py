import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxspike import surrogates

POINTS = jnp.array([-1.5, -0.3, -0.04, 0.0, 0.02, 0.25, 0.6, 2.0], jnp.float32)


def _analytic(name, u, p):
    u = np.asarray(u, np.float64)
    if name == "fast_sigmoid":
        return 1.0 / (1.0 + p * np.abs(u)) ** 2
    if name == "arctan":
        return (p / 2) / (1 + (np.pi / 2 * p * u) ** 2)
    if name == "sigmoid":
        s = 1 / (1 + np.exp(-p * u))
        return p * s * (1 - s)
    if name == "triangle":
        return np.maximum(0.0, 1 - np.abs(u) / p) / p
    if name == "boxcar":
        return np.where(np.abs(u) < p / 2, 1 / p, 0.0)
    if name == "straight_through":
        return np.full_like(u, p)
    raise AssertionError(name)


@pytest.mark.parametrize(
    "name,param",
    [("fast_sigmoid", 25.0), ("fast_sigmoid", 5.0), ("arctan", 2.0), ("arctan", 4.0),
     ("sigmoid", 25.0), ("triangle", 1.0), ("triangle", 0.5), ("boxcar", 1.0),
     ("boxcar", 0.3), ("straight_through", 1.0)],
)
def test_gradient_matches_formula(name, param):
    spike = surrogates.get(name, **{surrogates.PARAMETER[name]: param})
    grads = jax.vmap(jax.grad(spike))(POINTS)
    np.testing.assert_allclose(grads, _analytic(name, POINTS, param), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", sorted(surrogates.SURROGATES))
def test_forward_is_strict_heaviside(name):
    spike = surrogates.get(name)
    out = spike(POINTS)
    np.testing.assert_array_equal(out, (np.asarray(POINTS) > 0).astype(np.float32))
    assert out.dtype == POINTS.dtype
    assert spike(jnp.float32(0.0)) == 0.0  # tie: no spike at exactly threshold


def test_peaks_documented_scaling():
    # snnTorch's arctan (alpha=2) peaks at 1; the triangle is a tent of unit area.
    assert float(jax.grad(surrogates.arctan(2.0))(0.0)) == pytest.approx(1.0)
    assert float(jax.grad(surrogates.fast_sigmoid(25.0))(0.0)) == pytest.approx(1.0)
    assert float(jax.grad(surrogates.sigmoid(8.0))(0.0)) == pytest.approx(2.0)
    tent = jax.vmap(jax.grad(surrogates.triangle(0.5)))(jnp.linspace(-1, 1, 4001))
    assert float(jnp.sum(tent) * (2 / 4000)) == pytest.approx(1.0, abs=1e-3)
    # A true tent: slopes on both sides, zero outside the support.
    g = jax.grad(surrogates.triangle(1.0))
    assert float(g(0.5)) == pytest.approx(0.5) and float(g(-0.5)) == pytest.approx(0.5)
    assert float(g(1.2)) == 0.0


def test_bad_parameters_and_names():
    with pytest.raises(ValueError, match="slope"):
        surrogates.fast_sigmoid(0.0)
    with pytest.raises(ValueError, match="width"):
        surrogates.triangle(-1.0)
    with pytest.raises(ValueError, match="unknown surrogate"):
        surrogates.get("relu")
    with pytest.raises(ValueError, match="'arctan' takes 'alpha'"):
        surrogates.get("arctan", beta=2.0)


def test_parameters_are_passed_by_name_and_others_ignored():
    """A neuron description carries every parameter; each surrogate reads only its own."""
    g = jax.grad(surrogates.get("arctan", alpha=4.0, slope=99.0, width=7.0))
    assert float(g(0.0)) == pytest.approx(2.0)  # peak alpha / 2
    g = jax.grad(surrogates.get("triangle", alpha=4.0, width=0.5))
    assert float(g(0.0)) == pytest.approx(2.0)  # peak 1 / width
    with pytest.raises(TypeError):
        surrogates.get("fast_sigmoid", 10.0)  # positional parameters are refused


def test_works_under_jit_and_vmap():
    spike = surrogates.arctan()
    f = jax.jit(jax.vmap(jax.grad(lambda u: spike(u) * 3.0)))
    np.testing.assert_allclose(f(POINTS), 3.0 * _analytic("arctan", POINTS, 2.0), rtol=1e-5)
